"""Step 07: do the trained models generalize? Every model and fold under every condition.

:func:`run_generalization` scores every trained model and fold on the clean test images, on their
corrupted copies (:data:`xai_helpers.generalization.CORRUPTIONS`) and on an external test set
(:func:`load_external`), and compares each corrupted image's CAM with its clean CAM. It writes
``generalization.csv``, ``generalization_reliability.csv``, ``generalization_cams.csv`` and
``generalization_external.json``.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from ..atomic import write_text_atomic
from ..baselines import cnn_rows
from ..cam_metrics import LOCALISATION_METRICS, baseline_maps, localisation_metrics, spearman_rows
from ..cams import compute_cams, resolve_target_layer
from ..data.audit import NEAR_DUPLICATE_THRESHOLD, cross_near_duplicates, mirrored_hashes, perceptual_hash
from ..data.cache import build_cache, file_digests
from ..data.layouts import scan_dataset
from ..data.metadata import image_metadata
from ..data.prepared import PreparedData, explanation_sample, read_masks
from ..models import explained_models
from ..data.shortcuts import SHIFT_COLUMNS, shift_notes, shift_table
from ..data.synthetic import make_synthetic_dataset
from ..evaluation import reliability_table
from ..executor import run_jobs
from ..generalization import (
    CORRUPTIONS,
    SEVERITY_LEVELS,
    condition_scores,
    corrupt,
    generalization_conditions,
    map_classes,
    predict_images,
    severity_summary,
)
from ..progress import tqdm
from ..runfolder import RunFolder
from ..inference import BatchPipeline, load_checkpoint, resolve_device
from ..training import amp_for

__all__ = ["CORRUPTIONS", "SEVERITY_LEVELS", "SYNTHETIC_EXTERNAL", "STABILITY_COLUMNS", "corruption_examples",
           "describe_external", "load_external", "run_generalization", "severity_summary", "synthetic_external_root",
           "training_fingerprints"]


def synthetic_external_root(params: dict[str, Any]) -> Path:
    """Where the embedded external set goes: ``<data_root>_external``.

    Parameters
    ----------
    params : dict
        Resolved notebook parameters (``data_root``).

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> synthetic_external_root({"data_root": "/data/synthetic"}).as_posix()
    '/data/synthetic_external'
    """
    root = Path(params["data_root"])
    return root.with_name(root.name + "_external")


#: Acquisition profile of the embedded external set: brighter tissue and twice the noise.
SYNTHETIC_EXTERNAL = {"seed": 1, "brightness": 0.08, "noise": 0.08}


def training_fingerprints(data: PreparedData) -> dict[str, Any]:
    """SHA-1 digests and perceptual hashes of a run's training pool (every image not in the test split).

    What :func:`load_external` checks an external set against: byte copies by digest, re-encoded or
    resized copies by the audit's perceptual hash (at the cache's image size, as the audit computes it).

    Parameters
    ----------
    data : PreparedData

    Returns
    -------
    dict
        ``sha1``: set of hex digests; ``phash``: ``(n,)`` uint64 hashes, one per training-pool image;
        ``phash_mirrored``: the hashes of the same images flipped left-right, then upside-down
        (:data:`~xai_helpers.data.audit.MIRRORS`), so a mirrored copy is found too.

    Examples
    --------
    >>> from xai_helpers.examples import tiny_run
    >>> from xai_helpers.steps import load_prepared
    >>> data = load_prepared(tiny_run())
    >>> prints = training_fingerprints(data)
    >>> n_pool = int((data.splits["split"] != "test").sum())
    >>> len(prints["phash"]) == n_pool, len(prints["sha1"]) <= n_pool
    (True, True)
    """
    pool = np.flatnonzero(data.splits["split"].to_numpy() != "test")
    images = data.images[pool]
    return {"sha1": set(file_digests(data.splits["path"].to_numpy()[pool])), "phash": perceptual_hash(images),
            "phash_mirrored": np.concatenate(mirrored_hashes(images))}


def load_external(params: dict[str, Any], class_names: Sequence[str], grey: bool,
                  training: dict[str, Any] | None = None,
                  progress: bool = True) -> tuple[np.ndarray, np.ndarray, dict[str, Any]] | None:
    """Images, training-class labels and a report of the external test set, or None without one.

    ``external_data_root`` names the folder (any layout, detected or named by
    ``external_dataset``); for the embedded synthetic dataset without one, a second synthetic set
    with a shifted acquisition profile (:data:`SYNTHETIC_EXTERNAL`) is generated beside
    ``data_root``. Every split of the external folder is used (it is all unseen data). Every image
    of a mapped class is first checked against the training pool (``training``, from
    :func:`training_fingerprints`): byte copies (same SHA-1) and near duplicates (perceptual hash
    within the audit's threshold) are left out and counted in the report's ``training_overlap``
    (an external set that holds training images measures memory, not generalization; Nickparvar's
    brain dataset contains Bhuvaji's images, for one). Only then is the set capped at
    ``generalization_per_class`` images per class (seeded). Unreadable files are reported.

    Parameters
    ----------
    params : dict
        Resolved notebook parameters: ``external_data_root``, ``external_dataset``, ``class_map``,
        ``dataset``, ``data_root``, ``image_size``, ``generalization_per_class``, ``seed``.
    class_names : sequence of str
        The training classes (labels index them).
    grey : bool
        Whether the training images are grey (the external ones are converted alike).
    training : dict, optional
        :func:`training_fingerprints` of the run; None skips the overlap check.
    progress : bool

    Returns
    -------
    (images, labels, report) or None
        ``(N, C, S, S)`` uint8 images, ``(N,)`` training-class indices and a dict (``name``,
        ``layout``, ``class_mapping``, ``unmapped_classes``, ``classes_evaluated``,
        ``training_overlap``, ``unreadable``, ``images_used``, ``majority_class_rate``, and
        ``metadata``: the :func:`~xai_helpers.data.metadata.image_metadata` of the images used, with
        their training ``class``, a DataFrame kept out of the json; ``paths`` and ``masks``, the images'
        files and lesion masks (:func:`~xai_helpers.data.prepared.read_masks`: ``masks/<class>/<stem>.png``
        beside the images, None where an image has none), also kept out); None when the run has no
        external set.

    Raises
    ------
    ClassMappingError
        When no external class maps onto a training class.

    Examples
    --------
    >>> from xai_helpers.examples import tiny_run
    >>> from xai_helpers.steps import load_prepared
    >>> params = tiny_run()
    >>> data = load_prepared(params)
    >>> images, labels, report = load_external(params, data.class_names, grey=True,
    ...                                        training=training_fingerprints(data), progress=False)
    >>> images.shape[1:], report["unmapped_classes"], report["images_used"] == len(labels)
    ((1, 64, 64), {}, True)
    """
    root = params["external_data_root"]
    layout = params["external_dataset"]
    if root is None:
        if params["dataset"] != "synthetic":
            return None
        root = synthetic_external_root(params)
        make_synthetic_dataset(root, n_per_class=max(4, params["synthetic_per_class"] // 3),
                               progress=progress, **SYNTHETIC_EXTERNAL)
        layout = "synthetic"
    index = scan_dataset(root, layout)
    mapping, unmapped = map_classes(list(index.classes), class_names, params["class_map"])
    counts = index.rows.groupby("class").size().to_dict()
    used = index.rows[index.rows["class"].isin(mapping)]
    digests = file_digests(used["path"], progress=progress)
    cache = build_cache(used["path"], params["image_size"], grey, digests=digests, progress=progress,
                        resize_mode=params["resize_mode"])
    readable = used[used["path"].isin(set(cache.paths))]
    overlap = {"exact": 0, "near": 0, "mirrored": 0, "paths": [], "near_threshold": NEAR_DUPLICATE_THRESHOLD}
    if training is not None and len(readable):
        digest_of = dict(zip(used["path"], digests))
        exact = readable["path"].map(digest_of).isin(training["sha1"]).to_numpy()
        hashes = perceptual_hash(cache.images[cache.rows(readable["path"])])
        near = cross_near_duplicates(hashes, training["phash"]) & ~exact
        mirrored = cross_near_duplicates(hashes, training["phash_mirrored"]) & ~exact & ~near
        found = exact | near | mirrored
        overlap.update(exact=int(exact.sum()), near=int(near.sum()), mirrored=int(mirrored.sum()),
                       paths=readable["path"][found].tolist())
        readable = readable[~found]
    cap = params["generalization_per_class"]
    if cap is not None:
        rng = np.random.default_rng(params["seed"])
        keep = [i for _, g in readable.groupby("class", sort=True)
                for i in rng.choice(g.index.to_numpy(), size=min(cap, len(g)), replace=False)]
        readable = readable.loc[sorted(keep)]
    rows = cache.rows(readable["path"])
    images = cache.images[rows]
    labels = readable["class"].map(mapping).to_numpy().astype(np.int64)
    metadata = image_metadata(list(readable["path"]), [(cache.file_info or [])[i] for i in rows], images)
    metadata.insert(1, "class", [class_names[i] for i in labels])
    name = Path(root).name
    report = {"name": name, "root": str(root), "layout": index.layout,
              "class_mapping": {c: class_names[i] for c, i in mapping.items()},
              "unmapped_classes": {c: int(counts[c]) for c in unmapped},
              "classes_evaluated": sorted({class_names[i] for i in labels}),
              "images_per_class": {c: int(n) for c, n in readable.groupby("class").size().items()},
              "training_overlap": overlap, "checked_against_training": training is not None,
              "unreadable": cache.unreadable, "images_used": int(len(readable)),
              "majority_class_rate": float(np.bincount(labels).max() / len(labels)) if len(labels) else float("nan"),
              "metadata": metadata, "paths": list(readable["path"]),
              "masks": read_masks(readable["mask"].tolist() if "mask" in readable else [None] * len(readable),
                                  params["image_size"], params["resize_mode"])}
    return images, labels, report


def external_shift(run: RunFolder, external_metadata: pd.DataFrame) -> pd.DataFrame:
    """The shift audit between the training pool and an external set, written to
    ``generalization_shift.csv`` (the columns of ``data/audit_shift.csv``).

    Parameters
    ----------
    run : RunFolder
        Its ``data/audit_metadata.csv`` (notebook 01) gives the training pool.
    external_metadata : pandas.DataFrame
        :func:`~xai_helpers.data.metadata.image_metadata` of the external images, with ``class``
        (the training class each maps onto).

    Returns
    -------
    pandas.DataFrame
        :func:`~xai_helpers.data.shortcuts.shift_table`; empty (with its columns) when the run was
        prepared before the audit wrote its metadata.

    Examples
    --------
    >>> from xai_helpers.examples import tiny_run
    >>> run = RunFolder(tiny_run()["run_dir"])
    >>> pool = pd.read_csv(run.audit_metadata_file)
    >>> external = pool[pool["split"] != "test"].assign(width=pool["width"] * 2)
    >>> table = external_shift(run, external)
    >>> float(table.loc[table["feature"] == "width", "effect_size"].min()), run.generalization_shift_file.is_file()
    (1.0, True)
    """
    if run.audit_metadata_file.is_file():
        meta = pd.read_csv(run.audit_metadata_file, keep_default_na=False, na_values=[""])
        pool = meta[meta["split"] != "test"]
        table = shift_table(pool, pool["class"], external_metadata, external_metadata["class"])
    else:
        table = pd.DataFrame(columns=SHIFT_COLUMNS)
    run.write_csv(table, run.generalization_shift_file)
    return table


def external_shift_notes(params: dict[str, Any]) -> list[str]:
    """The flagged rows of ``generalization_shift.csv`` in plain words (notebook 07).

    Parameters
    ----------
    params : dict
        Resolved notebook parameters (``run_dir``).

    Returns
    -------
    list of str
        Empty when nothing is flagged or there is no external set.

    Examples
    --------
    >>> from xai_helpers.examples import tiny_run
    >>> isinstance(external_shift_notes(tiny_run()), list)
    True
    """
    run = RunFolder(params["run_dir"])
    if not run.generalization_shift_file.is_file():
        return []
    table = pd.read_csv(run.generalization_shift_file)
    return shift_notes(table, other_name="the external set") if len(table) else []


LOCALISATION_COLUMNS = ["model", "fold", "layer", "method", "path", "class", "pred", "metric", "value"]


def external_localisation(net: torch.nn.Module, model_name: str, fold: int, layer: str, images: np.ndarray,
                          labels: np.ndarray, masks: np.ndarray, paths: Sequence[str], class_names: Sequence[str],
                          params: dict[str, Any], device: torch.device, mean=None, std=None,
                          batch_size: int = 32) -> pd.DataFrame:
    """Localisation of one fold model's maps on an external set's expert masks, with the baseline maps.

    Each map explains the predicted class at ``layer``; the scores are
    :func:`~xai_helpers.cam_metrics.localisation_metrics` (pointing game, energy in the mask, IoU,
    mask AUROC), and the two maps that ignore the image (:data:`~xai_helpers.cam_metrics.BASELINE_MAPS`)
    are scored the same way, so another hospital's masks test the explanations as notebook 05's do.

    Parameters
    ----------
    net : torch.nn.Module
        The fold model, in eval mode on ``device``.
    model_name : str
    fold : int
    layer : str
        Its target layer (:func:`~xai_helpers.models.explained_models`).
    images : (N, C, S, S) uint8 array
        External images that have a mask.
    labels : (N,) int array
        Their training-class indices.
    masks : (N, S, S) bool array
    paths : sequence of str
        Their files.
    class_names : sequence of str
    params : dict
        ``cam_methods``, ``seed``.
    device : torch.device
    mean, std : sequence of float, optional
        The checkpoint's normalisation.
    batch_size : int

    Returns
    -------
    pandas.DataFrame
        One row per method (and baseline map), image and metric (:data:`LOCALISATION_COLUMNS`).
    """
    _, layer = resolve_target_layer(net, layer)
    rows = []
    pipeline = BatchPipeline(images, device, mean=mean, std=std)
    for start in range(0, len(images), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(images)))
        maps, probs = compute_cams(net, pipeline.batch(idx), params["cam_methods"], target_layer=layer)
        batch_masks = masks[idx.numpy()]
        maps.update(baseline_maps(len(idx), batch_masks.shape[-1], seed=params["seed"] + start))
        preds = probs.argmax(axis=1)
        for method, m in maps.items():
            scores = localisation_metrics(m, batch_masks)
            for k, i in enumerate(idx.tolist()):
                for metric in LOCALISATION_METRICS:
                    rows.append({"model": model_name, "fold": fold, "layer": layer, "method": method,
                                 "path": paths[i], "class": class_names[labels[i]], "pred": class_names[preds[k]],
                                 "metric": metric, "value": float(scores[metric][k])})
    return pd.DataFrame(rows, columns=LOCALISATION_COLUMNS)


STABILITY_COLUMNS = ["model", "fold", "layer", "method", "condition", "severity", "n", "spearman_mean",
                     "spearman_std", "prediction_kept"]


def run_generalization(data: PreparedData, params: dict[str, Any], n_bins: int = 15, cam_images_per_class: int = 8,
                       progress: bool = True) -> pd.DataFrame:
    """Every trained model and fold under every condition; writes the ``generalization*`` files.

    Parameters
    ----------
    data : PreparedData
        The run's prepared data (its test split is the clean condition).
    params : dict
        Resolved parameters: ``run_dir``, ``corruption_severities``, ``generalization_per_class``,
        ``external_data_root``, ``cam_model``, ``cam_layer``, ``cam_methods``, ``seed``, ...
    n_bins : int
        Bins of the expected calibration error and the reliability diagrams.
    cam_images_per_class : int
        Test images per class whose CAMs (``cam_model``, every fold) are compared clean vs
        corrupted.

    Returns
    -------
    pandas.DataFrame
        ``generalization.csv``: ``model, fold, condition, severity, n, accuracy, f1_macro, ece,
        mean_confidence, classes`` (the classes evaluated, ``;``-separated: an external set
        whose classes could not all be mapped is scored on fewer classes than the clean test set).

    Examples
    --------
    >>> from xai_helpers.examples import tiny_run
    >>> from xai_helpers.steps import load_prepared
    >>> params = tiny_run()  # severity 1 only, 2 images per class
    >>> table = run_generalization(load_prepared(params), params, cam_images_per_class=1, progress=False)
    >>> sorted(set(table["condition"]))[:3], len(table) == 2 * (1 + len(CORRUPTIONS) + 1)
    (['clean', 'contrast', 'external:synthetic_external'], True)
    """
    run = RunFolder(params["run_dir"])
    run.claim()
    metrics = cnn_rows(run.read_metrics())  # the baselines have no checkpoint to test
    device = resolve_device(params["device"])
    rows = explanation_sample(data, params["generalization_per_class"], params["seed"])
    clean = data.images[rows]
    y = data.labels[rows]
    conditions = generalization_conditions(params["corruption_severities"])
    image_sets = {}
    for k, (name, sev) in enumerate(tqdm(conditions, desc="corrupting test images", disable=not progress)):
        image_sets[(name, sev)] = clean if name == "clean" else corrupt(clean, name, sev, params["seed"] + k)
    external = load_external(params, data.class_names, bool(data.info.get("grey")),
                             training=training_fingerprints(data), progress=progress)
    if external is not None:
        ext_images, ext_labels, ext_report = external
        ext_key = (f"external:{ext_report['name']}", 0)
        ext_meta = ext_report.pop("metadata")
        ext_paths, ext_masks = ext_report.pop("paths"), ext_report.pop("masks")
        with_mask = np.array([m is not None for m in ext_masks], bool)
        ext_report["images_with_mask"] = int(with_mask.sum())
        shift = external_shift(run, ext_meta)
        ext_report["shift_flagged"] = [f"{c}: {f}" for c, f in shift.loc[shift["flagged"], ["class", "feature"]].values]
        write_text_atomic(run.generalization_external_file, json.dumps(ext_report, indent=2, default=str))
    # CAM stability: the first cam_images_per_class sampled images of each class
    cam_pos = np.concatenate([np.flatnonzero(y == c)[:cam_images_per_class] for c in np.unique(y)])

    # localisation on the external set's expert masks: every CNN of notebook 05, at the same layers
    explained = (dict(explained_models(params["cam_model"], params["cam_layer"], params["cam_models"],
                                       params["models"], params["image_size"], metrics["model"]))
                 if external is not None and with_mask.any() else {})
    jobs = [(r.model, int(r.fold)) for r in metrics[["model", "fold"]].drop_duplicates().itertuples(index=False)]
    inputs = _EvaluationInputs(
        params, data.class_names, image_sets, y, clean, cam_pos, n_bins, explained,
        None if external is None else (ext_key, ext_images, ext_labels, with_mask,
                                       np.stack([m for m in ext_masks if m is not None]) if with_mask.any() else None,
                                       [p for p, w in zip(ext_paths, with_mask) if w]))
    results: dict[tuple[str, int], tuple[list, list, list, list]] = {}
    if params["executor"] == "local":
        for model_name, fold in tqdm(jobs, desc="models x folds", disable=not progress):
            results[(model_name, fold)] = _evaluate_one_model(
                run.checkpoint_dir(model_name, fold) / "best.pt", model_name, fold, inputs, device)
    else:  # Ray tasks: each gets its fold model's checkpoint as bytes, and hands its tables back
        tasks = [(m, f, (run.checkpoint_dir(m, f) / "best.pt").read_bytes()) for m, f in jobs]
        run_jobs(_evaluate_job, tasks, inputs, params, lambda job, out: results.__setitem__(job[:2], out),
                 describe=lambda job: f"evaluating {job[0]} fold {job[1]}", desc="models x folds", progress=progress)
    records, reliability, stability, localisation = [], [], [], []
    for job in jobs:  # in the order of the jobs, whichever finished first
        rec, rel, stab, loc = results[job]
        records += rec
        reliability += rel
        stability += stab
        localisation += loc
    table = pd.DataFrame(records)
    run.write_csv(table, run.generalization_file)
    if reliability:
        run.write_csv(pd.concat(reliability, ignore_index=True), run.generalization_reliability_file)
    # written even when empty (cam_model not trained in this run), so readers find the file
    run.write_csv(pd.DataFrame(stability, columns=STABILITY_COLUMNS), run.generalization_cams_file)
    if localisation:
        run.write_csv(pd.concat(localisation, ignore_index=True), run.generalization_localisation_file)
    elif run.generalization_localisation_file.is_file():  # an earlier external set's: not this run's
        run.generalization_localisation_file.unlink()
    return table


@dataclass
class _EvaluationInputs:
    """What every (model, fold) of notebook 07 is evaluated on (:func:`_evaluate_job`): the parameters, the clean and
    corrupted test images (``image_sets``: (condition, severity) -> images) and their labels ``y``, the images
    whose CAM stability is measured (``cam_pos`` of ``clean``), the calibration bins, the explained CNNs and their
    layers, and the external set (key, images, labels, which have a mask, the masks, their paths) or None."""

    params: dict[str, Any]
    class_names: list[str]
    image_sets: dict[tuple[str, int], np.ndarray]
    y: np.ndarray
    clean: np.ndarray
    cam_pos: np.ndarray
    n_bins: int
    explained: dict[str, str]
    external: tuple | None


def _evaluate_job(job: tuple[str, int, bytes], inputs: _EvaluationInputs):
    """One fold model of notebook 07 as a Ray task (``executor='ray'``): its checkpoint comes as bytes, its rows of
    the generalization tables go back to the driver, which writes them."""
    model_name, fold, checkpoint = job
    with tempfile.TemporaryDirectory(prefix=f"xai-evaluate-{model_name}-{fold}-") as tmp:
        path = Path(tmp) / "best.pt"
        path.write_bytes(checkpoint)
        return _evaluate_one_model(path, model_name, fold, inputs, resolve_device(inputs.params["device"]))


def _evaluate_one_model(checkpoint: Path, model_name: str, fold: int, inputs: _EvaluationInputs,
                        device: torch.device) -> tuple[list, list, list, list]:
    """One fold model's rows of ``generalization.csv``, its reliability tables, CAM stability rows and external
    localisation tables (:func:`run_generalization`)."""
    params, image_sets, clean, cam_pos = inputs.params, inputs.image_sets, inputs.clean, inputs.cam_pos
    records, reliability, stability, localisation = [], [], [], []
    net, meta = load_checkpoint(checkpoint, device)
    mean, std = meta.get("mean"), meta.get("std")
    batch = 64
    amp = amp_for(model_name, device, params["precision"] == "auto")  # as the model was tested in notebook 02
    sets = [(key, imgs, inputs.y) for key, imgs in image_sets.items()]
    if inputs.external is not None:
        ext_key, ext_images, ext_labels, with_mask, ext_masks, ext_mask_paths = inputs.external
        sets.append((ext_key, ext_images, ext_labels))
    for (name, sev), imgs, labels in sets:
        probs = predict_images(net, imgs, device, batch, mean, std, amp=amp)
        records.append({"model": model_name, "fold": fold, "condition": name, "severity": sev,
                        **condition_scores(labels, probs, inputs.n_bins),
                        "classes": ";".join(inputs.class_names[c] for c in sorted(np.unique(labels)))})
        if sev in (0, max(params["corruption_severities"])):
            rel = reliability_table(labels, probs, inputs.n_bins)
            rel.insert(0, "severity", sev)
            rel.insert(0, "condition", name)
            rel.insert(0, "fold", fold)
            rel.insert(0, "model", model_name)
            reliability.append(rel)
    if model_name in inputs.explained and params["cam_methods"]:
        localisation.append(external_localisation(
            net, model_name, fold, inputs.explained[model_name], ext_images[with_mask], ext_labels[with_mask],
            ext_masks, ext_mask_paths, inputs.class_names, params, device, mean, std))
    if model_name == params["cam_model"] and params["cam_methods"]:
        _, layer = resolve_target_layer(net, params["cam_layer"])

        def to_x(imgs):
            return BatchPipeline(imgs[cam_pos], device, mean=mean, std=std).batch(torch.arange(len(cam_pos)))
        clean_maps, clean_probs = compute_cams(net, to_x(clean), params["cam_methods"], target_layer=layer)
        targets = clean_probs.argmax(axis=1)
        for (name, sev), imgs in image_sets.items():
            if name == "clean":
                continue
            maps, probs = compute_cams(net, to_x(imgs), params["cam_methods"], target_layer=layer, targets=targets)
            for method in params["cam_methods"]:
                rho = spearman_rows(clean_maps[method], maps[method])
                stability.append({"model": model_name, "fold": fold, "layer": layer, "method": method,
                                  "condition": name, "severity": sev, "n": len(rho),
                                  "spearman_mean": float(np.mean(rho)), "spearman_std": float(np.std(rho)),
                                  "prediction_kept": float((probs.argmax(axis=1) == targets).mean())})
    return records, reliability, stability, localisation


def corruption_examples(data: PreparedData, params: dict[str, Any], severity: int | None = None,
                        per_class: int = 1) -> tuple[np.ndarray, dict[str, np.ndarray], list[str]]:
    """Test images and their copies under every corruption, for a figure.

    Parameters
    ----------
    data : PreparedData
        The run's prepared data.
    params : dict
        Resolved notebook parameters (``seed``, ``corruption_severities``).
    severity : int, optional
        1..5; default: the highest of ``params['corruption_severities']``.
    per_class : int
        Test images per class (:func:`~xai_helpers.steps.explanation_sample`, seeded).

    Returns
    -------
    images : (B, C, S, S) uint8 array
    views : dict
        Corruption name -> the corrupted copies of ``images``.
    labels : list of str
        The true class of each image.

    Examples
    --------
    >>> from xai_helpers.examples import tiny_run
    >>> from xai_helpers.steps import load_prepared
    >>> params = tiny_run()
    >>> images, views, labels = corruption_examples(load_prepared(params), params)
    >>> sorted(views) == sorted(CORRUPTIONS), labels, views["jpeg"].shape == images.shape
    (True, ['no_lesion', 'ring_lesion', 'solid_lesion'], True)
    """
    severity = max(params["corruption_severities"]) if severity is None else severity
    rows = explanation_sample(data, per_class, params["seed"])
    images = data.images[rows]
    views = {name: corrupt(images, name, severity, params["seed"]) for name in CORRUPTIONS}
    return images, views, [data.class_names[data.labels[r]] for r in rows]


def describe_external(params: dict[str, Any]) -> str:
    """What the external test set of the run held, in words (from ``generalization_external.json``).

    Parameters
    ----------
    params : dict
        Resolved notebook parameters (``run_dir``, ``external_data_root``, ``dataset``).

    Returns
    -------
    str
        Its name and layout, the images used, the class mapping, the classes scored, a warning
        for classes that could not be mapped (they are not scored), and the training images found
        in it and left out; or how to pass one when the run has none.

    Examples
    --------
    >>> describe_external({"run_dir": "runs/none", "external_data_root": None, "dataset": "imagefolder"})
    'no external set: pass external_data_root=<folder> (and class_map if names differ)'
    """
    run = RunFolder(params["run_dir"])
    has_one = params["external_data_root"] is not None or params["dataset"] == "synthetic"
    if not has_one or not run.generalization_external_file.is_file():
        return "no external set: pass external_data_root=<folder> (and class_map if names differ)"
    ext = json.loads(run.generalization_external_file.read_text())
    overlap = ext["training_overlap"]
    lines = [f"external set {ext['name']} ({ext['layout']}): {ext['images_used']} images; classes mapped "
             f"{ext['class_mapping']}",
             f"classes scored: {', '.join(ext['classes_evaluated'])}"]
    if ext["unmapped_classes"]:
        lines.append(f"WARNING: classes with no training class are NOT scored: {ext['unmapped_classes']} "
                     f"(name them with class_map); the external accuracy covers the classes above only")
    lines.append(f"training images found in the external set and left out: {overlap['exact']} byte copies, "
                 f"{overlap['near']} near copies, {overlap.get('mirrored', 0)} mirrored copies (perceptual hash "
                 f"within {overlap['near_threshold']} bits)")
    return "\n".join(lines)


def generalization_findings(table: pd.DataFrame, stability: pd.DataFrame) -> dict[str, Any]:
    """What this run shows, for notebook 07's exercises: computed from its own tables, never a fixed claim.

    Parameters
    ----------
    table : pandas.DataFrame
        ``generalization.csv``: ``model``, ``fold``, ``condition``, ``severity``, ``accuracy``.
    stability : pandas.DataFrame
        ``generalization_cams.csv``: ``method``, ``condition``, ``severity``, ``spearman_mean`` (may be empty).

    Returns
    -------
    dict
        ``worst``: per CNN, the corruption whose highest severity run lowers its mean accuracy most, with the clean
        and corrupted accuracy (a DataFrame); ``stability``: per method, the mean Spearman correlation of its maps
        under blur at the highest severity run, most stable first (a Series, empty without maps); ``sentences``:
        the same in words.

    Examples
    --------
    >>> table = pd.DataFrame({"model": "resnet50", "fold": 0, "condition": ["clean", "contrast", "jpeg"],
    ...                       "severity": [0, 5, 5], "accuracy": [0.9, 0.4, 0.8]})
    >>> cams = pd.DataFrame({"method": ["gradcam", "layercam"], "condition": "gaussian_blur", "severity": 5,
    ...                      "spearman_mean": [0.2, 0.8]})
    >>> findings = generalization_findings(table, cams)
    >>> findings["worst"]["condition"].tolist(), findings["stability"].index.tolist()
    (['contrast'], ['layercam', 'gradcam'])
    """
    sentences = []
    cnn = cnn_rows(table)
    clean = cnn[cnn["condition"] == "clean"].groupby("model")["accuracy"].mean()
    corrupted = cnn[(cnn["condition"] != "clean") & ~cnn["condition"].str.startswith("external")]
    rows = []
    if not corrupted.empty:
        top = corrupted[corrupted["severity"] == corrupted.groupby("condition")["severity"].transform("max")]
        means = top.groupby(["model", "condition", "severity"])["accuracy"].mean().reset_index()
        for model, part in means.groupby("model", sort=False):
            worst = part.loc[part["accuracy"].idxmin()]
            rows.append({"model": model, "condition": worst["condition"], "severity": int(worst["severity"]),
                         "clean accuracy": float(clean.get(model, np.nan)), "accuracy": float(worst["accuracy"])})
            sentences.append(f"{model}: {worst['condition']} at severity {int(worst['severity'])} hurts most "
                             f"(accuracy {clean.get(model, np.nan):.3f} clean, {worst['accuracy']:.3f} corrupted)")
    ranking = pd.Series(dtype=float, name="spearman_mean")
    blur = stability[stability["condition"] == "gaussian_blur"] if len(stability) else stability
    if len(blur):
        blur = blur[blur["severity"] == blur["severity"].max()]
        ranking = blur.groupby("method")["spearman_mean"].mean().sort_values(ascending=False)
        sentences.append(f"under blur at severity {int(blur['severity'].max())}, the maps that move least are "
                         + ", ".join(f"{m} ({v:.3f})" for m, v in ranking.items()) + " (most stable first)")
    return {"worst": pd.DataFrame(rows, columns=["model", "condition", "severity", "clean accuracy", "accuracy"]),
            "stability": ranking, "sentences": sentences}
