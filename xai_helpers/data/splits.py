"""Leak-free splits: a fixed test split, and stratified, grouped k-fold folds of the training pool.

The published test split is kept as the held-out test set, evaluated by every fold of every
model. The training pool (published ``train`` plus any published ``val``) is divided into ``k``
folds with scikit-learn's :class:`~sklearn.model_selection.StratifiedGroupKFold`: fold ``f``'s
model validates (early stopping) on fold ``f`` and trains on the others. Groups (a patient, a
lesion, a set of duplicate images) never straddle two folds, and a group that also appears in the
test split is handled by ``leak_policy``.

The result is saved as ``runs/<name>/data/splits.csv`` (``path``, ``split``, ``class``, ``group``,
``fold``; ``fold`` is -1 on test rows) so that a run can be repeated exactly.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold
from ..errors import ParameterError

LEAK_POLICIES = ("drop_train", "keep")


def make_splits(index: pd.DataFrame, folds: int, seed: int, max_per_class: int | None = None,
                leak_policy: str = "drop_train", test_fraction: float = 0.2) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Assign every image to the test split or to one fold of the training pool.

    Parameters
    ----------
    index : pandas.DataFrame
        The rows of :func:`~xai_helpers.data.layouts.scan_dataset` (columns ``path``, ``split``,
        ``class``, ``group``).
    folds : int
        Number of cross-validation folds (>= 2).
    seed : int
        Seeds the fold assignment and any subsampling.
    max_per_class : int, optional
        Keep at most this many training-pool images per class (whole groups, seeded).
    leak_policy : {'drop_train', 'keep'}
        What to do with training-pool images whose group also appears in the test split:
        drop them from training (default) or keep them (reported either way).
    test_fraction : float
        Used only when the dataset has no test split: the share of groups drawn as test.

    Returns
    -------
    splits : pandas.DataFrame
        Columns ``path``, ``split`` (``train`` or ``test``), ``class``, ``group``, ``fold``
        (and ``mask`` when the index has it).
    report : dict
        What was dropped and why (with ``max_per_class``: ``pool_per_class``, the images
        available and used per class).

    Examples
    --------
    >>> idx = pd.DataFrame({"path": list("abcdefgh"), "split": ["train"] * 6 + ["test"] * 2,
    ...                     "class": list("xyxyxyxy"), "group": list("abcdefgh")})
    >>> s, report = make_splits(idx, folds=3, seed=0)
    >>> sorted(s.loc[s.split == "train", "fold"].unique().tolist())
    [0, 1, 2]
    """
    if leak_policy not in LEAK_POLICIES:
        raise ParameterError(f"leak_policy: unknown value {leak_policy!r}; accepted values: {', '.join(LEAK_POLICIES)}")
    if folds < 2:
        raise ParameterError(f"folds: at least 2 folds are needed, got {folds}")
    df = index.copy()
    df["split"] = df["split"].replace({"val": "train"})
    rng = np.random.default_rng(seed)
    report: dict[str, object] = {}

    if not (df["split"] == "test").any():
        groups = df["group"].to_numpy()
        n_splits = max(2, int(round(1 / test_fraction)))
        sgkf = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        _, test_idx = next(sgkf.split(df, df["class"], groups))
        df.loc[df.index[test_idx], "split"] = "test"
        report["test_drawn_from_train"] = int(len(test_idx))

    test_groups = set(df.loc[df["split"] == "test", "group"])
    leaking = (df["split"] == "train") & df["group"].isin(test_groups)
    report["train_images_sharing_a_group_with_test"] = int(leaking.sum())
    report["dropped_train_images"] = []  # recorded under either policy: empty when nothing was dropped
    if leak_policy == "drop_train" and leaking.any():
        report["dropped_train_images"] = df.loc[leaking, "path"].tolist()
        df = df.loc[~leaking]

    pool = df[df["split"] == "train"]
    if max_per_class is not None:
        keep = []
        for _, part in pool.groupby("class", sort=True):
            groups = np.array(sorted(part["group"].unique()), dtype=object)
            rng.shuffle(groups)
            sizes = part.groupby("group").size()
            chosen, total = [], 0
            for g in groups:
                if total >= max_per_class:
                    break
                chosen.append(g)
                total += int(sizes[g])
            keep.append(part[part["group"].isin(chosen)])
        new_pool = pd.concat(keep)
        report["subsampled_away"] = int(len(pool) - len(new_pool))
        available, used = pool["class"].value_counts(), new_pool["class"].value_counts()
        report["pool_per_class"] = {str(c): {"available": int(available[c]), "used": int(used.get(c, 0))}
                                    for c in sorted(available.index)}
        df = pd.concat([new_pool, df[df["split"] == "test"]])
        pool = new_pool

    published = (sorted(pool["published_fold"].unique()) if "published_fold" in pool.columns
                 and len(pool) and pool["published_fold"].notna().all() else [])
    n_groups = pool.groupby("class")["group"].nunique()
    too_few = n_groups[n_groups < folds]
    if len(too_few) and len(published) != folds:  # the published assignment is taken as it is
        raise ParameterError(
            f"folds: {folds} folds need at least {folds} groups per class in the training pool; "
            + ", ".join(f"{c} has {n}" for c, n in too_few.items()))
    df = df.sort_values(["split", "class", "path"]).reset_index(drop=True)
    df["fold"] = -1
    is_pool = (df["split"] == "train").to_numpy()
    fold_col = np.full(len(df), -1)
    pool_pos = np.flatnonzero(is_pool)
    if published and len(published) == folds:  # the dataset's own (patient-wise) assignment
        fold_col[pool_pos] = df.loc[is_pool, "published_fold"].map({p: f for f, p in enumerate(published)})
        report["folds_from"] = f"published assignment (folds {', '.join(str(int(p)) for p in published)})"
    else:
        sgkf = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        for f, (_, val_idx) in enumerate(sgkf.split(pool_pos, df.loc[is_pool, "class"], df.loc[is_pool, "group"])):
            fold_col[pool_pos[val_idx]] = f
        report["folds_from"] = "drawn by group, stratified by class"
        if published:
            report["folds_from"] += (f" (folds={folds} differs from the {len(published)} published training folds, "
                                     f"so they are drawn from those images)")
    df["fold"] = fold_col
    cols = ["path", "split", "class", "group", "fold"] + (["mask"] if "mask" in df.columns else [])
    return df[cols], report


def fold_indices(splits: pd.DataFrame, fold: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row positions of (training, validation, test) images for ``fold``."""
    split = splits["split"].to_numpy()
    f = splits["fold"].to_numpy()
    train = np.flatnonzero((split == "train") & (f != fold))
    val = np.flatnonzero((split == "train") & (f == fold))
    test = np.flatnonzero(split == "test")
    if len(val) == 0:
        raise ValueError(f"fold: fold {fold} does not exist in splits (folds: {sorted(set(f[f >= 0]))})")
    return train, val, test


def group_report(splits: pd.DataFrame) -> dict[str, Any]:
    """Images and groups (patients, lesions; with their duplicates joined) per split part and class, and the
    groups found in more than one part (the test split and each validation fold): there must be none.

    Parameters
    ----------
    splits : pandas.DataFrame
        From :func:`make_splits` (``split``, ``fold``, ``class``, ``group``).

    Returns
    -------
    dict
        ``per_part_and_class``: ``{part, class, images, groups}`` rows (``part`` is ``test`` or
        ``fold<k>``); ``groups_in_several_parts``: the groups that cross, with their parts.

    Examples
    --------
    >>> s = pd.DataFrame({"split": ["train", "train", "train", "test"], "fold": [0, 0, 1, -1],
    ...                   "class": ["x", "x", "y", "x"], "group": ["p1", "p1", "p2", "p3"]})
    >>> r = group_report(s)
    >>> r["per_part_and_class"][0], r["groups_in_several_parts"]
    ({'part': 'fold0', 'class': 'x', 'images': 2, 'groups': 1}, {})
    """
    part = np.where(splits["split"].to_numpy() == "test", "test",
                    np.char.add("fold", splits["fold"].astype(int).astype(str).to_numpy()))
    df = splits.assign(part=part)
    rows = [{"part": str(p), "class": str(c), "images": int(len(g)), "groups": int(g["group"].nunique())}
            for (p, c), g in df.groupby(["part", "class"], sort=True)]
    parts_of = df.groupby("group")["part"].unique()
    crossing = {str(g): sorted(map(str, parts)) for g, parts in parts_of.items() if len(parts) > 1}
    return {"per_part_and_class": rows, "groups_in_several_parts": crossing}
