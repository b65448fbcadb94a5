"""From a dataset folder to the run's prepared data: index, audit, splits and image cache.

Notebook 01 calls :func:`prepare_dataset`, which writes ``data/splits.csv``,
``data/audit.json`` and ``data/dataset.json`` into the run folder; later notebooks call
:func:`load_prepared` to get the same images back from the cache.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from ..runfolder import RunFolder, write_text_atomic
from .audit import audit_dataset, connected_groups
from .cache import ImageCache, build_cache, file_digest
from .layouts import LAYOUTS, DatasetError, scan_dataset
from .splits import fold_indices, make_splits
from .synthetic import make_synthetic_dataset

#: Seed of the embedded synthetic dataset: fixed, so that the dataset is the same for every run
#: seed (the run's ``seed`` drives folds, initialisation and augmentation).
SYNTHETIC_DATA_SEED = 0


@dataclass
class PreparedData:
    """Images of one run, aligned row for row with ``splits``.

    Attributes
    ----------
    splits : pandas.DataFrame
        ``path``, ``split``, ``class``, ``group``, ``fold`` (and ``mask``) of every usable image.
    images : (N, C, S, S) uint8 array
        Row ``i`` is the image of ``splits`` row ``i``.
    class_names : list of str
    labels : (N,) int array
        Index into ``class_names`` of every row.
    info : dict
        ``layout``, ``root``, ``grey``, ``image_size``, ``title``.
    audit : dict
        The data audit (see :func:`~xai_helpers.data.audit.audit_dataset`).
    """

    splits: pd.DataFrame
    images: np.ndarray
    class_names: list[str]
    labels: np.ndarray
    info: dict[str, Any]
    audit: dict[str, Any] = field(default_factory=dict)

    @property
    def folds(self) -> list[int]:
        return sorted(int(f) for f in self.splits["fold"].unique() if f >= 0)

    def fold_rows(self, fold: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows of (training, validation, test) images of ``fold``."""
        return fold_indices(self.splits, fold)

    def test_rows(self) -> np.ndarray:
        return np.flatnonzero(self.splits["split"].to_numpy() == "test")

    def masks(self, rows: np.ndarray) -> list[np.ndarray | None]:
        """Lesion masks of ``rows`` at the cache's size: one ``(S, S)`` bool array per image that
        has a mask, None for an image without one (and for every image of a dataset without masks).

        Examples
        --------
        >>> splits = pd.DataFrame({"path": ["a.png", "b.png"], "split": "test", "class": ["x", "y"],
        ...                        "fold": -1, "mask": ["", ""]})
        >>> data = PreparedData(splits, np.zeros((2, 1, 8, 8), np.uint8), ["x", "y"], np.array([0, 1]), {})
        >>> data.masks(np.array([0, 1]))
        [None, None]
        """
        size = self.images.shape[-1]
        out: list[np.ndarray | None] = []
        for r in np.asarray(rows):
            p = self.splits["mask"].iloc[r] if "mask" in self.splits.columns else None
            if isinstance(p, str) and p and Path(p).is_file():
                with Image.open(p) as m:
                    out.append(np.asarray(m.convert("L").resize((size, size), Image.Resampling.NEAREST)) > 127)
            else:
                out.append(None)
        return out

    def mask_array(self, rows: np.ndarray) -> np.ndarray | None:
        """``(B, S, S)`` bool masks of ``rows`` for the localisation metrics: an image without a mask
        gets an empty one (its metrics are NaN); None when no image of ``rows`` has a mask."""
        masks = self.masks(rows)
        if all(m is None for m in masks):
            return None
        size = self.images.shape[-1]
        return np.stack([m if m is not None else np.zeros((size, size), bool) for m in masks])


def _write_json(path: Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, default=str))


def prepare_dataset(params: dict[str, Any], progress: bool = True) -> PreparedData:
    """Index, audit, split and cache the dataset named by the run's parameters.

    For ``dataset='synthetic'`` the embedded dataset is generated into ``data_root`` first
    (``synthetic_per_class`` images per class). Unreadable files are reported in the audit and
    left out; files sharing a group with the test split are handled by the leak policy.

    Returns
    -------
    PreparedData
    """
    run = RunFolder(params["run_dir"])
    run.claim()
    root = Path(params["data_root"])
    if params["dataset"] == "synthetic":
        make_synthetic_dataset(root, n_per_class=params["synthetic_per_class"], seed=SYNTHETIC_DATA_SEED,
                               progress=progress)
    index = scan_dataset(root, params["dataset"])
    if len(index.attrs["classes"]) < 2:
        raise DatasetError(f"{root}: only one class ({index.attrs['classes'][0]!r}, {len(index)} images) was found; "
                           f"a classifier needs at least two. Check that data_root is the dataset's root folder "
                           f"(with one folder per class, or <split>/<class>/ folders)")
    digests = [file_digest(p) if Path(p).stat().st_size else "empty" for p in index["path"]]
    index["sha1"] = digests
    cache = build_cache(index["path"], params["image_size"], index.attrs["grey"], digests=digests,
                        progress=progress)
    audit = audit_dataset(index, cache.unreadable, images=cache.images, image_paths=cache.paths,
                          sizes=cache.file_info)
    conflicts = label_conflicts(index)
    audit["label_conflicts"] = conflicts
    conflicting = {p for group in conflicts for p in group["paths"]}
    usable = index[~index["path"].isin({u["path"] for u in cache.unreadable} | conflicting)].copy()
    usable.attrs = dict(index.attrs)
    usable = usable.drop(columns=["sha1"])
    # duplicates (byte-identical or near-identical) share a group: they never straddle splits or folds,
    # and training copies of test images are dropped by the leak policy
    usable["group"] = merge_groups(usable, audit["exact_duplicates"] + audit["near_duplicates"])
    splits = make_splits(usable, folds=params["folds"], seed=params["seed"],
                         max_per_class=params["max_per_class"], leak_policy=params["leak_policy"])
    audit["splits"] = {k: v for k, v in splits.attrs.get("report", {}).items()}
    if "test_drawn_from_train" in audit["splits"]:
        audit["splits"]["test_split"] = (f"drawn from the training data ({audit['splits']['test_drawn_from_train']} "
                                         f"images, grouped and stratified): {root} has no test split")
        if index.attrs["layout"] not in ("imagefolder", "ham10000"):
            print(f"note: the published layout {index.attrs['layout']!r} has a test split, but {root} has none; "
                  f"a test split was drawn from the training data instead (the report says so)")
    else:
        audit["splits"]["test_split"] = "the dataset's own test split"
    audit["splits"]["images_per_split_and_class"] = (
        splits.groupby(["split", "class"]).size()
        .rename("n").reset_index().to_dict("records"))
    info = {"layout": index.attrs["layout"], "title": LAYOUTS[index.attrs["layout"]].title,
            "root": str(root), "grey": bool(index.attrs["grey"]), "image_size": params["image_size"],
            "class_names": list(index.attrs["classes"]), "cache_file": str(cache.file)}
    run.data_dir.mkdir(parents=True, exist_ok=True)
    run.write_csv(splits, run.splits_file)
    _write_json(run.audit_file, audit)
    _write_json(run.dataset_file, info)
    return _assemble(splits, cache, info, audit)


def label_conflicts(index: pd.DataFrame) -> list[dict[str, Any]]:
    """Byte-identical files (same ``sha1``) filed under different classes.

    Such an image teaches the model both answers and tests it on a coin flip; every copy is left
    out of training and test, and the audit lists them.

    Examples
    --------
    >>> idx = pd.DataFrame({"path": ["a", "b", "c"], "class": ["x", "y", "x"], "sha1": ["1", "1", "2"]})
    >>> label_conflicts(idx)
    [{'sha1': '1', 'classes': ['x', 'y'], 'paths': ['a', 'b']}]
    """
    out = []
    for digest, group in index[index["sha1"] != "empty"].groupby("sha1", sort=True):
        classes = sorted(group["class"].unique())
        if len(classes) > 1:
            out.append({"sha1": str(digest), "classes": classes, "paths": sorted(group["path"])})
    return out


def merge_groups(index: pd.DataFrame, duplicate_groups: list[list[str]]) -> list[str]:
    """Group keys of ``index`` with every duplicate group (lists of paths) joined into one group.

    A duplicate group that links two dataset groups (two patients, say) joins them too, so that no
    copy of an image can sit in another split or fold than the image itself.
    """
    paths = list(index["path"])
    pos = {p: i for i, p in enumerate(paths)}
    first_of_group: dict[str, int] = {}
    pairs = [(first_of_group.setdefault(g, i), i) for i, g in enumerate(index["group"])]
    for group in duplicate_groups:
        members = [pos[p] for p in group if p in pos]
        pairs += [(members[0], j) for j in members[1:]]
    groups = list(index["group"])
    out = list(groups)
    for component in connected_groups(len(paths), pairs):
        for i in component:
            out[i] = groups[component[0]]
    return out


def _assemble(splits: pd.DataFrame, cache, info: dict[str, Any], audit: dict[str, Any]) -> PreparedData:
    splits = splits.reset_index(drop=True)
    rows = cache.rows(splits["path"])
    images = cache.images[rows]
    class_names = list(info["class_names"])
    code = {c: i for i, c in enumerate(class_names)}
    labels = splits["class"].map(code).to_numpy()
    return PreparedData(splits, images, class_names, labels.astype(np.int64), info, audit)


def load_prepared(params: dict[str, Any], progress: bool = True) -> PreparedData:
    """The prepared data of a run folder (written by notebook 01), images from the cache."""
    run = RunFolder(params["run_dir"])
    splits = run.read_splits()
    info = json.loads(run.require(run.dataset_file, "notebook 01").read_text())
    audit = json.loads(run.audit_file.read_text()) if run.audit_file.is_file() else {}
    if info["image_size"] != params["image_size"]:
        raise ValueError(f"image_size: the run folder was prepared at {info['image_size']} px, "
                         f"not {params['image_size']}; rerun notebook 01 or pass image_size={info['image_size']}")
    if "mask" in splits.columns and not splits["mask"].astype(bool).any():
        splits = splits.drop(columns=["mask"])
    cache = ImageCache.load(info["cache_file"]) if Path(info.get("cache_file", "")).is_file() else None
    if cache is None or set(splits["path"]) - set(cache.paths):
        # the cache file is shared by every folder with the same image content (it is keyed by the files'
        # bytes); when it was written for another copy of the data, find it again by content, for these paths
        cache = build_cache(splits["path"], info["image_size"], info["grey"], progress=progress)
    missing = sorted(set(splits["path"]) - set(cache.paths))
    if missing:
        raise ValueError(f"{len(missing)} file(s) listed in {run.splits_file} are not in the image cache "
                         f"(e.g. {missing[0]}); rerun notebook 01")
    return _assemble(splits, cache, info, audit)
