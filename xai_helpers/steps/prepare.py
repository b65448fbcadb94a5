"""Step 01: from a dataset folder to the run's prepared data (index, audit, splits, image cache).

Notebook 01 calls :func:`prepare_data`, which writes ``data/splits.csv``, ``data/audit.json``
and ``data/dataset.json`` into the run folder; later notebooks call :func:`load_prepared` to get
the same images back from the cache.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from ..atomic import write_text_atomic
from ..data.audit import audit_dataset
from ..data.cache import ImageCache, build_cache, cache_for, changed_files, file_digests, file_records
from ..data.figshare import PUBLISHED_TEST_FOLD
from ..data.layouts import LAYOUTS, scan_dataset
from ..errors import DataChangedError, DatasetError, RunFolderError
from ..data.metadata import image_metadata
from ..data.prepared import PreparedData, label_conflicts, merge_groups
from ..data.shortcuts import shift_notes, shift_table, shortcut_notes, shortcut_table
from ..data.splits import group_report, make_splits
from ..data.synthetic import make_synthetic_dataset
from ..config import RECORDED_BEFORE, check_against_prepared
from ..runfolder import RunFolder

#: Seed of the embedded synthetic dataset: fixed, so that the dataset is the same for every run
#: seed (the run's ``seed`` drives folds, initialisation and augmentation).
SYNTHETIC_DATA_SEED = 0


def _write_json(path: Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, default=str))


def prepare_data(params: dict[str, Any], progress: bool = True) -> PreparedData:
    """Index, audit, split and cache the dataset named by the run's parameters (notebook 01).

    For ``dataset='synthetic'`` the embedded dataset is generated into ``data_root`` first
    (``synthetic_per_class`` images per class). Unreadable files are reported in the audit and
    left out; files sharing a group with the test split are handled by the leak policy. Writes
    ``data/splits.csv``, ``data/audit.json`` and ``data/dataset.json``.

    Parameters
    ----------
    params : dict
        Resolved notebook parameters: ``run_dir``, ``dataset``, ``data_root``, ``image_size``,
        ``folds``, ``seed``, ``max_per_class``, ``leak_policy``, ``synthetic_per_class``.
    progress : bool
        tqdm bars while generating, hashing and decoding.

    Returns
    -------
    PreparedData

    Examples
    --------
    >>> from xai_helpers.examples import tiny_run
    >>> data = prepare_data(tiny_run(), progress=False)
    >>> data.class_names, data.images.shape[1:], data.folds
    (['no_lesion', 'ring_lesion', 'solid_lesion'], (1, 64, 64), [0, 1])
    """
    run = RunFolder(params["run_dir"])
    run.claim()
    root = Path(params["data_root"])
    if params["dataset"] == "synthetic":
        make_synthetic_dataset(root, n_per_class=params["synthetic_per_class"], seed=SYNTHETIC_DATA_SEED,
                               progress=progress)
    index = scan_dataset(root, params["dataset"])
    if len(index.classes) < 2:
        raise DatasetError(f"{root}: only one class ({index.classes[0]!r}, {len(index)} images) was found; "
                           f"a classifier needs at least two. Check that data_root is the dataset's root folder "
                           f"(with one folder per class, or <split>/<class>/ folders)")
    # a file that vanished or cannot be read gets a digest of its own: the decoder reports why, never a crash
    digests = file_digests(index.rows["path"], progress=progress)
    index.rows["sha1"] = digests
    cache = build_cache(index.rows["path"], params["image_size"], index.grey, digests=digests,
                        progress=progress, resize_mode=params["resize_mode"])
    audit = audit_dataset(index, cache.unreadable, images=cache.images, image_paths=cache.paths,
                          sizes=cache.file_info, conversions=cache.conversions)
    conflicts = label_conflicts(index.rows)
    audit["label_conflicts"] = conflicts
    conflicting = {p for group in conflicts for p in group["paths"]}
    usable = index.rows[~index.rows["path"].isin({u["path"] for u in cache.unreadable} | conflicting)]
    usable = usable.drop(columns=["sha1"])
    # duplicates (byte-identical, near-identical or a flipped near copy) share a group: they never straddle
    # splits or folds, and training copies of test images are dropped by the leak policy
    # (where the groups are the dataset's own patient IDs, look-alikes of two patients are reported, not joined)
    look_alikes = audit["near_duplicates"] + audit["mirrored_duplicates"]
    if LAYOUTS[index.layout].patient_groups:
        patient = dict(zip(usable["path"], usable["group"]))
        audit["look_alike_groups_across_patients_not_joined"] = sum(
            len({patient[p] for p in g if p in patient}) > 1 for g in look_alikes)
        look_alikes = []
    usable["group"] = merge_groups(usable, audit["exact_duplicates"] + look_alikes)
    splits, report = make_splits(usable, folds=params["folds"], seed=params["seed"],
                                 max_per_class=params["max_per_class"], leak_policy=params["leak_policy"])
    audit["splits"] = dict(report)
    if "test_drawn_from_train" in audit["splits"]:
        by = "by patient, stratified by class" if LAYOUTS[index.layout].patient_groups else "grouped and stratified"
        audit["splits"]["test_split"] = (f"drawn from the training data ({audit['splits']['test_drawn_from_train']} "
                                         f"images, {by}): {root} has no test split")
        if index.layout not in ("imagefolder", "ham10000") and LAYOUTS[index.layout].split_folders:
            print(f"note: the published layout {index.layout!r} has a test split, but {root} has none; "
                  f"a test split was drawn from the training data instead (the report says so)")
    elif "published_fold" in usable.columns:
        audit["splits"]["test_split"] = (f"the published patient-wise fold {PUBLISHED_TEST_FOLD} (cvind.mat), "
                                         f"held out as the test split")
    else:
        audit["splits"]["test_split"] = "the dataset's own test split"
    audit["splits"]["images_per_split_and_class"] = (
        splits.groupby(["split", "class"]).size()
        .rename("n").reset_index().to_dict("records"))
    groups = group_report(splits)
    audit["splits"]["groups_in_several_parts"] = groups["groups_in_several_parts"]
    crossing = groups["groups_in_several_parts"]
    if params["leak_policy"] == "keep":  # kept on purpose (and counted): only the folds must stay apart
        crossing = {g: parts for g, parts in crossing.items() if len([p for p in parts if p != "test"]) > 1}
    if crossing:  # a guard: make_splits draws the test split and the folds by group
        raise DatasetError(f"{root}: {len(crossing)} group(s) (patients, lesions) sit in more than one of the test "
                           f"split and the folds, e.g. {next(iter(crossing.items()))}; this is a bug, please report it")
    audit["splits"]["groups_per_part_and_class"] = groups["per_part_and_class"]
    info = {"layout": index.layout, "title": LAYOUTS[index.layout].title,
            "root": str(root), "grey": bool(index.grey), "image_size": params["image_size"],
            "class_names": list(index.classes), "cache_file": str(cache.file),
            "resize_mode": params["resize_mode"], "folds": params["folds"]}
    data = PreparedData.from_cache(splits, cache, info, audit)
    run.data_dir.mkdir(parents=True, exist_ok=True)
    audit.update(audit_shortcuts_and_shift(data, cache, run, params["seed"]))
    run.write_csv(splits, run.splits_file)
    sha1 = dict(zip(index.rows["path"], digests))
    run.write_csv(file_records(splits["path"], [sha1[p] for p in splits["path"]]), run.files_file)
    _write_json(run.audit_file, audit)
    _write_json(run.dataset_file, info)
    return data


def audit_shortcuts_and_shift(data: PreparedData, cache: ImageCache, run: RunFolder, seed: int) -> dict[str, Any]:
    """Write ``data/audit_metadata.csv``, ``data/audit_shortcuts.csv`` and ``data/audit_shift.csv``.

    The metadata of every used image (:func:`~xai_helpers.data.metadata.image_metadata`), the
    shortcut audit on the training pool and the shift audit of each class from the training pool
    to the test split (:mod:`xai_helpers.data.shortcuts`).

    Parameters
    ----------
    data : PreparedData
    cache : ImageCache
        Holds every image of ``data`` (its ``file_info`` gives the file headers).
    run : RunFolder
    seed : int
        Of the metadata classifier's folds and permutations.

    Returns
    -------
    dict
        ``shortcuts_flagged`` and ``shifts_flagged`` (feature names, "class: feature" for shifts),
        for ``data/audit.json``.

    Examples
    --------
    >>> from xai_helpers.examples import tiny_run
    >>> run = RunFolder(tiny_run()["run_dir"])
    >>> sorted(pd.read_csv(run.audit_shift_file).columns)[:3], run.audit_metadata_file.is_file()
    (['class', 'effect_size', 'feature'], True)
    """
    info = cache.file_info or []
    rows = cache.rows(data.splits["path"])
    meta = image_metadata(list(data.splits["path"]), [info[i] for i in rows], data.images)
    meta.insert(1, "split", data.splits["split"].to_numpy())
    meta.insert(2, "class", data.splits["class"].to_numpy())
    pool = (meta["split"] != "test").to_numpy()
    shortcuts = shortcut_table(meta[pool], meta["class"][pool], seed=seed)
    shift = shift_table(meta[pool], meta["class"][pool], meta[~pool], meta["class"][~pool])
    run.write_csv(meta, run.audit_metadata_file)
    run.write_csv(shortcuts, run.audit_shortcuts_file)
    run.write_csv(shift, run.audit_shift_file)
    return {"shortcuts_flagged": shortcuts.loc[shortcuts["flagged"], "feature"].tolist(),
            "shifts_flagged": [f"{c}: {f}" for c, f in shift.loc[shift["flagged"], ["class", "feature"]].values]}


def audit_notes(params: dict[str, Any]) -> list[str]:
    """The flagged shortcuts and shifts of a prepared run folder, in plain words (notebook 01).

    Parameters
    ----------
    params : dict
        Resolved notebook parameters (``run_dir``).

    Returns
    -------
    list of str
        One line per flagged row of ``data/audit_shortcuts.csv`` and ``data/audit_shift.csv``;
        empty when nothing is flagged (or the files predate the audit).

    Examples
    --------
    >>> from xai_helpers.examples import tiny_run
    >>> isinstance(audit_notes(tiny_run()), list)
    True
    """
    run = RunFolder(params["run_dir"])
    if not run.audit_metadata_file.is_file():
        return []
    meta = pd.read_csv(run.audit_metadata_file, keep_default_na=False, na_values=[""])
    pool = meta[meta["split"] != "test"]
    test = meta[meta["split"] == "test"]
    notes = shortcut_notes(pd.read_csv(run.audit_shortcuts_file), pool, pool["class"])
    notes += shift_notes(pd.read_csv(run.audit_shift_file), pool, pool["class"], test, test["class"])
    return notes


def load_prepared(params: dict[str, Any], progress: bool = True) -> PreparedData:
    """The prepared data of a run folder (written by notebook 01), images from the cache.

    Parameters
    ----------
    params : dict
        Resolved notebook parameters (``run_dir``, ``image_size``).
    progress : bool
        tqdm bar when the cache has to be rebuilt (another copy of the same files).

    Returns
    -------
    PreparedData
        The same rows, labels and images as :func:`prepare_data` returned.

    Raises
    ------
    RunFolderError
        When notebook 01 has not run on ``run_dir``.
    ParameterError
        When a parameter the prepared data fixes (image size, folds, resize mode, dataset, folder)
        differs from the prepared one (:func:`xai_helpers.config.check_against_prepared`).
    RunFolderError
        When a file listed in ``data/splits.csv`` is no longer in the image cache.

    Examples
    --------
    >>> from xai_helpers.examples import tiny_run
    >>> params = tiny_run()
    >>> data = load_prepared(params)
    >>> len(data.splits) == len(data.images) == len(data.labels), data.info["image_size"]
    (True, 64)
    """
    run = RunFolder(params["run_dir"])
    splits = run.read_splits()
    info = json.loads(run.require(run.dataset_file, "notebook 01").read_text())
    audit = json.loads(run.audit_file.read_text()) if run.audit_file.is_file() else {}
    prepared = prepared_parameters(run)
    check_against_prepared(params, prepared, str(run.root))
    if "mask" in splits.columns and not splits["mask"].astype(bool).any():
        splits = splits.drop(columns=["mask"])
    resize_mode = prepared["resize_mode"]
    check_files_unchanged(run)
    # the cache file is shared by every folder with the same image content (it is keyed by the files' bytes); when
    # it was written for another copy of the data, or is damaged, it is found again (or rebuilt) by content
    cache = cache_for(splits["path"], info.get("cache_file"), info["image_size"], info["grey"], resize_mode,
                      progress=progress)
    missing = sorted(set(splits["path"]) - set(cache.paths))
    if missing:
        raise RunFolderError(f"{len(missing)} file(s) listed in {run.splits_file} are not in the image cache "
                             f"(e.g. {missing[0]}): they were removed or changed since notebook 01; rerun notebook 01")
    return PreparedData.from_cache(splits, cache, info, audit)


def check_files_unchanged(run: RunFolder) -> None:
    """Stop when image files notebook 01 prepared changed or vanished since (``data/files.csv``; run folders
    prepared before it existed are not checked).

    The run stops rather than going on with the image cache's snapshot: its fits, statistics and explanations
    would describe files that are no longer in the data folder, and nothing in the run folder could be recomputed
    from it. Rerunning notebook 01 prepares the data as they are; notebook 02 then retrains the fits whose data
    changed (their fingerprint names the files) and keeps the others.

    Parameters
    ----------
    run : RunFolder

    Raises
    ------
    DataChangedError
        Listing the changed and the missing files.

    Examples
    --------
    >>> from xai_helpers.examples import tiny_run
    >>> check_files_unchanged(RunFolder(tiny_run()["run_dir"]))  # nothing changed: nothing said
    """
    if not run.files_file.is_file():
        return
    changed, missing = changed_files(pd.read_csv(run.files_file, dtype={"path": str}))
    if not changed and not missing:
        return

    def listed(paths: list[str]) -> str:
        return ", ".join(paths[:10]) + (f" and {len(paths) - 10} more" if len(paths) > 10 else "")

    parts = [f"{len(changed)} changed ({listed(changed)})" if changed else "",
             f"{len(missing)} missing ({listed(missing)})" if missing else ""]
    raise DataChangedError(
        f"{run.files_file}: image files changed since notebook 01 prepared this run: "
        f"{'; '.join(p for p in parts if p)}. The run would go on with the old images, which are no longer in "
        f"the data folder: rerun notebook 01 (python -m xai_helpers.run --only 01 with the same run_dir), then "
        f"the notebooks after it")


def prepared_parameters(run: RunFolder) -> dict[str, Any]:
    """What notebook 01 prepared ``run``'s data with: the parameters the prepared data fixes
    (:func:`xai_helpers.config.check_against_prepared`); empty before notebook 01 has run.

    Read from ``data/dataset.json`` (``folds`` from ``config.json``'s record of step 01 for run
    folders prepared before ``dataset.json`` held it; ``resize_mode`` is ``squash`` for those
    prepared before it existed).

    Parameters
    ----------
    run : RunFolder

    Returns
    -------
    dict
        ``dataset`` (the layout), ``data_root``, ``image_size``, ``resize_mode``, ``folds``.

    Examples
    --------
    >>> from xai_helpers.examples import tiny_run
    >>> prepared_parameters(RunFolder(tiny_run()["run_dir"]))
    {'dataset': 'synthetic', 'data_root': ..., 'image_size': 64, 'resize_mode': 'squash', 'folds': 2}
    """
    if not run.dataset_file.is_file():
        return {}
    info = json.loads(run.dataset_file.read_text())
    step01 = run.step_params("01") if run.config_file.is_file() else {}
    folds = info.get("folds", step01.get("folds"))
    return {"dataset": info.get("layout"), "data_root": info.get("root"), "image_size": info.get("image_size"),
            "resize_mode": info.get("resize_mode", RECORDED_BEFORE["resize_mode"]),
            **({"folds": folds} if folds is not None else {})}
