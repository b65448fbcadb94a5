"""The study's steps over a run folder: cross-validated training of the CNNs, and explanations.

:func:`train_and_evaluate` trains every model on every fold of the prepared data (the same
folds for every model, so results are paired), evaluates each fold's best checkpoint on the same
held-out test split, and writes ``metrics.csv`` and ``predictions/``. A (model, fold) whose
``last.pt`` exists with the same settings is not trained again, so an interrupted notebook 02
picks up where it stopped.

:func:`explain_test_images` computes the CAM methods for a sample of test images per class with
each fold's model, and every explanation metric, into ``xai_per_image.csv`` and its aggregate
``xai_metrics.csv``.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .cam_metrics import (ALL_METRICS, aggregate_per_class, confidence_metrics, deletion_insertion, localisation_metrics,
                          randomisation_check, road)
from .cams import compute_cams, resolve_target_layer
from .data.cache import file_digest
from .data.prepare import PreparedData
from .evaluation import classification_metrics, predictions_frame
from .models import MODEL_NAMES, check_image_size, resolve_weights
from .runfolder import RunFolder
from .stats import COLUMNS, compare_methods, compare_models, compare_predictions
from .training import BatchPipeline, TrainConfig, fit, load_checkpoint, predict_proba, resolve_device


def fold_seed(seed: int, model: str, fold: int) -> int:
    """Seed of one (model, fold) fit: independent of which other models or folds are run."""
    return int(seed) * 1000 + fold * 10 + MODEL_NAMES.index(model)


def learning_rate(lr: float | dict[str, float], model: str) -> float:
    """``lr`` for ``model``: a number, or a mapping with per-model values and a ``default``."""
    if isinstance(lr, dict):
        if model in lr:
            return float(lr[model])
        if "default" not in lr:
            raise ValueError(f"lr: no value for {model} and no 'default' in {lr}")
        return float(lr["default"])
    return float(lr)


def train_config(params: dict[str, Any], model: str, fold: int) -> TrainConfig:
    """The :class:`TrainConfig` of one (model, fold) from the notebook parameters."""
    return TrainConfig(epochs=params["epochs"], batch_size=params["batch_size"],
                       lr=learning_rate(params["lr"], model), patience=params["patience"],
                       freeze_epochs=params["freeze_epochs"], class_weighted=params["class_weighted"],
                       seed=fold_seed(params["seed"], model, fold), device=params["device"])


def fit_fingerprint(data: PreparedData, fold: int, params: dict[str, Any]) -> str:
    """SHA-1 of everything a fit depends on besides its :class:`TrainConfig`.

    The fold's training, validation and test rows (path and class of each, in order), the image
    cache they come from (its file is keyed by the files' content, the size and the colour
    mode), the image size and the weights asked for (a checkpoint file by its content). A fit is
    reused only when this and its ``TrainConfig`` are unchanged.

    Examples
    --------
    >>> import pandas as pd
    >>> splits = pd.DataFrame({"path": ["a", "b", "c", "d"], "split": ["train"] * 3 + ["test"],
    ...                        "class": list("xyxy"), "fold": [0, 1, 1, -1]})
    >>> data = PreparedData(splits, np.zeros((4, 1, 8, 8), np.uint8), ["x", "y"], np.array([0, 1, 0, 1]),
    ...                     {"cache_file": "cache/abc.npy", "image_size": 8})
    >>> p = {"weights": "none", "image_size": 8}
    >>> fit_fingerprint(data, 0, p) == fit_fingerprint(data, 0, p) != fit_fingerprint(data, 1, p)
    True
    """
    train_rows, val_rows, test_rows = data.fold_rows(fold)
    paths = data.splits["path"].to_numpy()
    weights = str(params["weights"])
    if weights not in ("none", "imagenet", "auto") and Path(weights).is_file():
        weights = f"checkpoint:{file_digest(weights)}"
    record = {part: [[str(paths[r]), int(data.labels[r])] for r in rows]
              for part, rows in (("train", train_rows), ("val", val_rows), ("test", test_rows))}
    record.update(cache=Path(str(data.info.get("cache_file", ""))).name, image_size=params["image_size"],
                  weights=weights, classes=list(data.class_names))
    return hashlib.sha1(json.dumps(record, sort_keys=True).encode()).hexdigest()


def _reusable(ckpt_dir: Path, config: TrainConfig, fingerprint: str) -> tuple[bool, str]:
    """Whether the fit in ``ckpt_dir`` can be reused, and if not (but one is there) what changed."""
    last = ckpt_dir / "last.pt"
    if not last.is_file() or not (ckpt_dir / "best.pt").is_file():
        return False, ""
    meta = torch.load(last, map_location="cpu", weights_only=True, mmap=True)
    if meta.get("fingerprint") != fingerprint:
        return False, "its data (splits, cached images, image size) or weights changed since it was trained"
    if meta.get("config") != asdict(config):
        changed = sorted(k for k, v in asdict(config).items() if meta.get("config", {}).get(k) != v)
        return False, f"its training parameters changed ({', '.join(changed)})"
    return True, ""


def train_and_evaluate(data: PreparedData, params: dict[str, Any], models: Sequence[str] | None = None,
                       folds: Sequence[int] | None = None, progress: bool = True) -> pd.DataFrame:
    """Train and test every model on every fold; append rows to ``metrics.csv`` as folds finish.

    Parameters
    ----------
    data : PreparedData
        From :func:`~xai_helpers.data.prepare.load_prepared`.
    params : dict
        Resolved notebook parameters (``run_dir``, ``models``, ``epochs``, ``lr``, ...).
    models, folds : optional
        Subsets to run (default: ``params['models']`` and every fold).

    Returns
    -------
    pandas.DataFrame
        The full ``metrics.csv``: ``dataset, model, fold, seed, accuracy, balanced_accuracy,
        f1_macro, f1_weighted, roc_auc_ovr, f1_<class>..., best_epoch, epochs_run, n_train,
        n_val, n_test, train_seconds, images_per_second``.
    """
    run = RunFolder(params["run_dir"])
    run.claim()
    models = list(models or params["models"])
    folds = list(folds if folds is not None else data.folds)
    for m in models:
        check_image_size(m, params["image_size"])
    device = resolve_device(params["device"])
    pipeline = BatchPipeline(data.images, device)
    jobs = [(m, f) for m in models for f in folds]
    weights_used: dict[str, str] = {}
    for model, fold in tqdm(jobs, desc="models x folds", disable=not progress):
        config = train_config(params, model, fold)
        ckpt_dir = run.checkpoint_dir(model, fold)
        train_rows, val_rows, test_rows = data.fold_rows(fold)
        fingerprint = fit_fingerprint(data, fold, params)
        existing = pd.read_csv(run.metrics_file) if run.metrics_file.is_file() else pd.DataFrame()
        has_row = len(existing) and ((existing["model"] == model) & (existing["fold"] == fold)).any()
        reusable, why = _reusable(ckpt_dir, config, fingerprint)
        if has_row and reusable and run.predictions_file(model, fold).is_file():
            continue
        if why:
            print(f"{model} fold {fold}: trained again, {why}", flush=True)
        weights = weights_used.setdefault(model, resolve_weights(model, params["weights"]))
        result = fit(model, pipeline, data.labels, train_rows, val_rows, data.class_names, ckpt_dir, config,
                     weights=weights, image_size=params["image_size"], progress=progress, fingerprint=fingerprint)
        net, _ = load_checkpoint(result.best_file, device)
        probs = predict_proba(net, pipeline, test_rows, batch_size=max(64, params["batch_size"]))
        y_test = data.labels[test_rows]
        scores = classification_metrics(y_test, probs, data.class_names)
        scores.pop("confusion_matrix")
        run.write_csv(predictions_frame(data.splits["path"].iloc[test_rows], y_test, probs, data.class_names),
                      run.predictions_file(model, fold))
        row = {"dataset": data.info["layout"], "model": model, "fold": fold,
                               "seed": config.seed, "weights": _weights_label(weights), **scores, "best_epoch": result.best_epoch,
                               "epochs_run": len(result.history), "n_train": len(train_rows),
                               "n_val": len(val_rows), "n_test": len(test_rows),
                               "train_seconds": float(result.history["train_seconds"].sum()),
                               "images_per_second": result.images_per_second}
        # read-modify-write under the run folder's lock: another run's rows (other models) are kept
        run.update_csv(pd.DataFrame([row]), run.metrics_file, keys=("model", "fold"), arrange=_in_model_order)
        del net
    return pd.read_csv(run.metrics_file)


def _in_model_order(table: pd.DataFrame) -> pd.DataFrame:
    """``metrics.csv`` rows in the order of :data:`MODEL_NAMES` (others last), then by fold."""
    rank = table["model"].map(lambda m: MODEL_NAMES.index(m) if m in MODEL_NAMES else len(MODEL_NAMES))
    return table.assign(_rank=rank).sort_values(["_rank", "fold"], kind="stable").drop(columns="_rank")


def _weights_label(weights: str) -> str:
    """'none', 'imagenet', or the checkpoint's file name (metrics.csv's ``weights`` column)."""
    return weights if weights in ("none", "imagenet") else f"checkpoint:{Path(weights).name}"


def explanation_sample(data: PreparedData, per_class: int | None, seed: int) -> np.ndarray:
    """Rows of up to ``per_class`` test images per class (seeded; the same for every fold).

    ``per_class=None`` takes every test image.
    """
    rng = np.random.default_rng(seed)
    test = data.test_rows()
    if per_class is None:
        return np.sort(test).astype(np.int64)
    chosen = []
    for c in range(len(data.class_names)):
        rows = test[data.labels[test] == c]
        chosen.extend(sorted(rng.choice(rows, size=min(per_class, len(rows)), replace=False).tolist()))
    return np.array(chosen, dtype=np.int64)


def explain_test_images(data: PreparedData, params: dict[str, Any], costly_per_class: int = 2,
                        n_steps: int = 16, progress: bool = True) -> pd.DataFrame:
    """CAMs and explanation metrics of ``params['cam_model']`` on sampled test images, every fold.

    For each fold's best checkpoint: the maps of every method in ``params['cam_methods']`` at
    ``params['cam_layer']`` for ``explain_per_class`` test images per class (one
    forward/backward per batch), confidence metrics for all of them, localisation metrics where
    lesion masks exist, and deletion/insertion AUC on the first ``costly_per_class`` of them per
    class (each costs ``2 * (n_steps + 1)`` forwards per image and method), ROAD (18 imputations
    and forwards per image and method) and the cascading randomisation check on the same subsample.

    Returns
    -------
    pandas.DataFrame
        One row per fold, method and image (written to ``xai_per_image.csv``); the aggregate
        goes to ``xai_metrics.csv``, the randomisation curves to ``xai_randomisation.csv``.
    """
    run = RunFolder(params["run_dir"])
    run.claim()
    model_name = params["cam_model"]
    device = resolve_device(params["device"])
    pipeline = BatchPipeline(data.images, device)
    rows = explanation_sample(data, params["explain_per_class"], params["seed"])
    # the costly metrics use the first costly_per_class sampled images of each class
    labels = data.labels[rows]
    is_costly = np.zeros(len(rows), bool)
    for c in np.unique(labels):
        is_costly[np.flatnonzero(labels == c)[:costly_per_class]] = True
    masks = data.mask_array(rows)
    x = pipeline.batch(torch.as_tensor(rows))
    records = []
    curves: list[pd.DataFrame] = []
    metrics_df = pd.read_csv(run.metrics_file) if run.metrics_file.is_file() else None
    folds = sorted(metrics_df.loc[metrics_df["model"] == model_name, "fold"].unique()) if metrics_df is not None else []
    if not folds:
        raise FileNotFoundError(f"{run.metrics_file}: no trained {model_name}; run notebook 02 with "
                                f"{model_name} in models first")
    for fold in tqdm(folds, desc=f"explaining {model_name}", disable=not progress):
        net, meta = load_checkpoint(run.checkpoint_dir(model_name, int(fold)) / "best.pt", device)
        _, layer_name = resolve_target_layer(net, params["cam_layer"])
        maps, probs = compute_cams(net, x, params["cam_methods"], target_layer=layer_name)
        targets = probs.argmax(axis=1)
        conf = confidence_metrics(net, x, maps, targets, probs=probs, mean=meta["mean"], std=meta["std"])
        sel = np.flatnonzero(is_costly)
        sub_maps = {m: v[sel] for m, v in maps.items()}
        perturb = deletion_insertion(net, x[sel], sub_maps, targets[sel], n_steps=n_steps)
        roads = road(net, x[sel], sub_maps, targets[sel], seed=params["seed"])
        for m in roads:
            perturb[m].update(roads[m])
        rand = randomisation_check(net, model_name, x[sel], params["cam_methods"], layer_name, targets[sel],
                                   seed=params["seed"])
        rand["path"] = data.splits["path"].to_numpy()[rows[sel]][rand["image"].to_numpy()]
        rand.insert(0, "fold", int(fold))
        rand.insert(0, "model", model_name)
        curves.append(rand.drop(columns="image"))
        final = rand[rand["step"] == rand["step"].max()].set_index(["method", "image"])["spearman"]
        for m in perturb:
            perturb[m]["randomisation_spearman"] = np.array([final[(m, i)] for i in range(len(sel))])
        for m in params["cam_methods"]:
            loc = localisation_metrics(maps[m], masks) if masks is not None else {}
            for k, r in enumerate(rows):
                rec = {"model": model_name, "fold": int(fold), "layer": layer_name, "method": m,
                       "path": data.splits["path"].iloc[r], "class": data.class_names[data.labels[r]],
                       "pred": data.class_names[targets[k]], "target": data.class_names[targets[k]],
                       "target_prob": float(probs[k, targets[k]])}
                for key in ("confidence_increase", "average_drop_pct", "increase_in_confidence_pct"):
                    rec[key] = float(conf[m][key][k])
                for key in ("deletion_auc", "insertion_auc", "road_morf", "road_lerf", "road_combined",
                            "randomisation_spearman"):
                    pos = np.flatnonzero(sel == k)
                    rec[key] = float(perturb[m][key][pos[0]]) if len(pos) else np.nan
                for key in ("pointing_game", "energy_in_mask", "iou"):
                    rec[key] = float(loc[key][k]) if loc else np.nan
                records.append(rec)
        del net
    per_image = pd.DataFrame(records)
    run.write_csv(per_image, run.xai_per_image_file)
    run.write_csv(aggregate_per_class(per_image), run.xai_metrics_file)
    if curves:
        run.write_csv(pd.concat(curves, ignore_index=True), run.xai_randomisation_file)
    return per_image


def paired_tests_for_run(params: dict[str, Any], correction: str = "holm") -> pd.DataFrame:
    """Every paired test the run folder supports, written to ``stats/paired_tests.csv``.

    * between models over folds (``metrics.csv``): paired t, corrected resampled t, Wilcoxon on
      accuracy, balanced accuracy and macro-F1;
    * between models on the same test images (``predictions/``): McNemar and paired bootstrap;
    * between CAM methods on the same images (``xai_per_image.csv``, when notebook 05 has run):
      paired t and Wilcoxon of every explanation metric, overall and per true class.

    Notebooks 03 and 05 both call this, so the table is complete whichever ran last.
    """

    run = RunFolder(params["run_dir"])
    run.claim()
    metrics = run.read_metrics()
    parts = [compare_models(metrics, ("accuracy", "balanced_accuracy", "f1_macro"), correction)]
    preds = {}
    for r in metrics[["model", "fold"]].itertuples(index=False):
        f = run.predictions_file(r.model, int(r.fold))
        if f.is_file():
            preds[(r.model, int(r.fold))] = pd.read_csv(f)
    if preds:
        parts.append(compare_predictions(preds, correction))
    if run.xai_per_image_file.is_file():
        per_image = pd.read_csv(run.xai_per_image_file)
        parts.append(compare_methods(per_image, ALL_METRICS, correction))
    filled = [p for p in parts if len(p)]
    # a run with one model (and no CAM metrics yet) has no pair to test: an empty table, not an error
    tests = pd.concat(filled, ignore_index=True) if filled else pd.DataFrame(columns=COLUMNS)
    run.write_csv(tests, run.paired_tests_file)
    return tests
