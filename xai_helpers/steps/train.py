"""Step 02: cross-validated training of the CNNs over a run folder.

:func:`train_models` trains every model on every fold of the prepared data (the same folds for
every model, so results are paired), evaluates each fold's best checkpoint on the same held-out
test split, and writes ``metrics.csv`` and ``predictions/``. A (model, fold) whose ``last.pt``
exists with the same settings is not trained again, so an interrupted notebook 02 picks up where
it stopped.
"""
from __future__ import annotations

import hashlib
import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..checkpoints import read_checkpoint, read_checkpoint_meta
from ..atomic import write_bytes_atomic, write_text_atomic
from ..baselines import BASELINE_IMAGE_SIZE, BASELINE_NAMES, baseline_features, fit_baseline, predict_baseline
from ..data.cache import file_digest
from ..data.prepared import PreparedData
from ..evaluation import LARGE_GAP, classification_metrics, predictions_frame
from ..models import MODEL_NAMES, check_image_size, resolve_weights
from ..progress import tqdm
from ..runfolder import RunFolder
from ..inference import BatchPipeline, load_checkpoint, predict_proba, resolve_device
from ..training import TrainConfig, amp_for, fit
from ..errors import CorruptCheckpointError, ParameterError
from ..executor import run_jobs


def fold_seed(seed: int, model: str, fold: int) -> int:
    """Seed of one (model, fold) fit, CNN or baseline: independent of which other models or folds are run.

    Parameters
    ----------
    seed : int
        The run's ``seed``.
    model : str
        One of :data:`xai_helpers.models.MODEL_NAMES` or :data:`xai_helpers.baselines.BASELINE_NAMES`.
    fold : int

    Returns
    -------
    int
        ``1000 * seed + 10 * fold + k``, ``k`` the CNN's index in ``MODEL_NAMES`` (0-3) or 5 + the
        baseline's index in ``BASELINE_NAMES``.

    Examples
    --------
    >>> fold_seed(0, "resnet50", 1), fold_seed(0, "densenet121", 1), fold_seed(1, "resnet50", 0)
    (10, 11, 1000)
    >>> fold_seed(0, "baseline_hgb", 1), fold_seed(0, "baseline_logreg", 1)
    (15, 16)
    """
    k = MODEL_NAMES.index(model) if model in MODEL_NAMES else 5 + BASELINE_NAMES.index(model)
    return int(seed) * 1000 + fold * 10 + k


def per_model(value: Any, model: str, name: str = "lr") -> Any:
    """``value`` for ``model``: the value itself, or from a mapping with per-model values and a ``default``.

    ``epochs``, ``lr``, ``batch_size``, ``lr_schedule`` and ``warmup_epochs`` may be set per model this way.

    Parameters
    ----------
    value : number or dict
        A parameter that may be set per model (``epochs``, ``lr``, ``batch_size``, ``warmup_epochs``).
    model : str
    name : str
        The parameter's name, for the error.

    Returns
    -------
    The model's value.

    Raises
    ------
    ValueError
        When the mapping has neither ``model`` nor ``default``.

    Examples
    --------
    >>> per_model({"default": 32, "vgg16": 16}, "vgg16", "batch_size"), per_model(32, "vgg16")
    (16, 32)
    """
    if isinstance(value, dict):
        if model in value:
            return value[model]
        if "default" not in value:
            raise ParameterError(f"{name}: no value for {model} and no 'default' in {value}")
        return value["default"]
    return value


def train_config(params: dict[str, Any], model: str, fold: int) -> TrainConfig:
    """The :class:`~xai_helpers.training.TrainConfig` of one (model, fold) from the notebook parameters.

    Parameters
    ----------
    params : dict
        Resolved notebook parameters (``epochs``, ``batch_size``, ``lr``, ``patience``,
        ``freeze_epochs``, ``class_weighted``, ``seed``, ``device``).
    model : str
    fold : int

    Returns
    -------
    TrainConfig

    Examples
    --------
    >>> from xai_helpers.config import resolve_params
    >>> config = train_config(resolve_params({}), "vgg16", 2)
    >>> config.lr, config.seed, config.epochs
    (0.0001, 22, 6)
    """
    return TrainConfig(epochs=int(per_model(params["epochs"], model, "epochs")),
                       batch_size=int(per_model(params["batch_size"], model, "batch_size")),
                       warmup_epochs=float(per_model(params["warmup_epochs"], model, "warmup_epochs")),
                       schedule=per_model(params["lr_schedule"], model, "lr_schedule"),
                       lr=float(per_model(params["lr"], model, "lr")), patience=params["patience"],
                       freeze_epochs=params["freeze_epochs"], class_weighted=params["class_weighted"],
                       seed=fold_seed(params["seed"], model, fold), device=params["device"],
                       amp=params["precision"] == "auto", channels_last=params["precision"] == "auto")


def fit_fingerprint(data: PreparedData, fold: int, params: dict[str, Any]) -> str:
    """SHA-1 of everything a fit depends on besides its :class:`TrainConfig`.

    The fold's training, validation and test rows (path and class of each, in order), the image
    cache they come from (its file is keyed by the files' content, the size and the colour
    mode), the image size and the weights asked for (a checkpoint file by its content). A fit is
    reused only when this and its ``TrainConfig`` are unchanged.

    Parameters
    ----------
    data : PreparedData
    fold : int
    params : dict
        Resolved notebook parameters (``image_size``, ``weights``).

    Returns
    -------
    str
        40 hexadecimal digits.

    Examples
    --------
    >>> import numpy as np
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
    last, best = ckpt_dir / "last.pt", ckpt_dir / "best.pt"
    if not last.is_file() or not best.is_file():
        return False, ""
    try:
        meta = read_checkpoint_meta(last)
        read_checkpoint(best)  # the weights later notebooks load, checked against their digest
    except CorruptCheckpointError as err:
        return False, f"its checkpoint {Path(err.filename).name} is damaged: {err.problem}"
    if meta.get("fingerprint") != fingerprint:
        return False, "its data (splits, cached images, image size) or weights changed since it was trained"
    if meta.get("config") != asdict(config):
        changed = sorted(k for k, v in asdict(config).items() if meta.get("config", {}).get(k) != v)
        return False, f"its training parameters changed ({', '.join(changed)})"
    return True, ""


def _scored(run: RunFolder, model: str, fold: int) -> bool:
    """Whether ``metrics.csv`` has a row of (model, fold) and its test predictions are written."""
    if not run.metrics_file.is_file() or not run.predictions_file(model, fold).is_file():
        return False
    existing = pd.read_csv(run.metrics_file)
    return bool(((existing["model"] == model) & (existing["fold"] == fold)).any())


def train_models(data: PreparedData, params: dict[str, Any], models: Sequence[str] | None = None,
                       folds: Sequence[int] | None = None, progress: bool = True) -> pd.DataFrame:
    """Train and test every model on every fold; append rows to ``metrics.csv`` as folds finish.

    Parameters
    ----------
    data : PreparedData
        From :func:`~xai_helpers.steps.load_prepared`.
    params : dict
        Resolved notebook parameters (``run_dir``, ``models``, ``epochs``, ``lr``, ...).
    models, folds : optional
        Subsets to run (default: ``params['models']`` and every fold).

    Returns
    -------
    pandas.DataFrame
        The full ``metrics.csv``: ``dataset, model, fold, seed, accuracy, balanced_accuracy,
        f1_macro, f1_weighted, roc_auc_ovr, f1_<class>..., recall_<class>..., val_accuracy,
        val_recall_<class>..., best_epoch, epochs_run, n_train, n_val, n_test, train_seconds,
        images_per_second, precision`` (and the baselines' rows, see :func:`train_baselines`).

    Examples
    --------
    >>> from xai_helpers.examples import tiny_run
    >>> from xai_helpers.steps import load_prepared
    >>> params = tiny_run()  # prepared and trained: this call reuses every fit
    >>> metrics = train_models(load_prepared(params), params, progress=False)
    >>> cnn = metrics[metrics["model"] == "resnet50"]  # (and the baselines' rows, when they have run)
    >>> cnn["fold"].tolist(), bool(cnn["accuracy"].between(0, 1).all())
    ([0, 1], True)
    """
    run = RunFolder(params["run_dir"])
    run.claim()
    models = list(models or params["models"])
    folds = list(folds if folds is not None else data.folds)
    for m in models:
        check_image_size(m, params["image_size"])
    jobs = []
    for model, fold in [(m, f) for m in models for f in folds]:  # what is trained and scored already stays
        reusable, why = _reusable(run.checkpoint_dir(model, fold), train_config(params, model, fold),
                                  fit_fingerprint(data, fold, params))
        if reusable and _scored(run, model, fold):
            continue
        if why:
            print(f"{model} fold {fold}: trained again, {why}", flush=True)
        jobs.append((model, fold))
    weights = {m: resolve_weights(m, params["weights"]) for m in dict.fromkeys(m for m, _ in jobs)}
    if params["executor"] == "local":
        device = resolve_device(params["device"])
        pipeline = BatchPipeline(data.images, device)
        for model, fold in tqdm(jobs, desc="models x folds", disable=not progress):
            # in this process the fit writes its checkpoints (and resume.pt) into the run folder itself
            outcome = _fit_and_predict(model, fold, data, params, weights[model], pipeline,
                                       run.checkpoint_dir(model, fold), progress)
            _record_outcome(run, data, model, fold, outcome)
        return pd.read_csv(run.metrics_file)
    shared = _FitInputs(data.without_images() if params["data_shared"] else data, params, weights)
    run_jobs(_fit_job, jobs, shared, params, lambda job, outcome: _record_outcome(run, data, *job, outcome),
             describe=lambda job: f"{job[0]} fold {job[1]}", desc="models x folds", progress=progress)
    return pd.read_csv(run.metrics_file)


@dataclass
class _FitInputs:
    """What every fit task needs: the prepared data (without their images with ``data_shared``: each task reads them
    from the image cache file), the resolved parameters and each model's weights."""

    data: PreparedData
    params: dict[str, Any]
    weights: dict[str, Any]


@dataclass
class _FitOutcome:
    """What one fit leaves for the run folder: its checkpoint files as bytes (None when it wrote them into the run
    folder itself), the test and validation probabilities, and its numbers for ``metrics.csv``."""

    files: dict[str, bytes] | None
    test_probs: np.ndarray
    val_probs: np.ndarray
    stats: dict[str, Any]


def _fit_and_predict(model: str, fold: int, data: PreparedData, params: dict[str, Any], weights: Any,
                     pipeline: BatchPipeline, ckpt_dir: Path, progress: bool) -> _FitOutcome:
    config = train_config(params, model, fold)
    train_rows, val_rows, test_rows = data.fold_rows(fold)
    result = fit(model, pipeline, data.labels, train_rows, val_rows, data.class_names, ckpt_dir, config,
                 weights=weights, image_size=params["image_size"], progress=progress,
                 fingerprint=fit_fingerprint(data, fold, params))
    net, _ = load_checkpoint(result.best_file, pipeline.device)
    stats = dict(seed=config.seed, weights=_weights_label(weights), best_epoch=result.best_epoch,
                 epochs_run=len(result.history), train_seconds=float(result.history["train_seconds"].sum()),
                 images_per_second=result.images_per_second, precision=result.precision)
    amp = amp_for(model, pipeline.device, config.amp)  # tested in the precision it was validated in
    return _FitOutcome(None, predict_proba(net, pipeline, test_rows, batch_size=64, amp=amp),
                      predict_proba(net, pipeline, val_rows, batch_size=64, amp=amp), stats)


def _fit_job(job: tuple[str, int], inputs: _FitInputs) -> _FitOutcome:
    """One (model, fold) fit as a Ray task (:func:`xai_helpers.executor.run_jobs`): trained into a temporary folder
    of the worker, whose checkpoint files come back as bytes for the driver to write into the run folder."""
    model, fold = job
    data = inputs.data if inputs.data.images is not None else inputs.data.with_images()  # data_shared
    pipeline = BatchPipeline(data.images, resolve_device(inputs.params["device"]))
    with tempfile.TemporaryDirectory(prefix=f"xai-fit-{model}-{fold}-") as tmp:
        outcome = _fit_and_predict(model, fold, data, inputs.params, inputs.weights[model], pipeline, Path(tmp),
                                   progress=False)
        outcome.files = {p.name: p.read_bytes() for p in sorted(Path(tmp).iterdir())
                         if p.is_file() and p.name != "resume.pt"}
    return outcome


def _record_outcome(run: RunFolder, data: PreparedData, model: str, fold: int, outcome: _FitOutcome) -> None:
    """Write one fit into the run folder: its checkpoint files (from a task), then predictions and its metrics row."""
    if outcome.files is not None:
        ckpt_dir = run.checkpoint_dir(model, fold)
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        for name in sorted(outcome.files, key=lambda n: n == "last.pt"):  # last.pt (what resume checks) last
            write_bytes_atomic(ckpt_dir / name, outcome.files[name])
        (ckpt_dir / "resume.pt").unlink(missing_ok=True)
    _record_fit(run, data, model, fold, outcome.test_probs, outcome.val_probs, **outcome.stats)


def _record_fit(run: RunFolder, data: PreparedData, name: str, fold: int, test_probs: np.ndarray,
                val_probs: np.ndarray, *, seed: int, weights: str, best_epoch: float, epochs_run: float,
                train_seconds: float, images_per_second: float, precision: str) -> None:
    """What every fit of notebook 02, CNN or baseline, leaves: its test predictions in ``predictions/``
    and one ``metrics.csv`` row (test scores, validation scores, sizes, timing), written under the run
    folder's lock by read-modify-write, so another run's rows (other models) are kept."""
    train_rows, val_rows, test_rows = data.fold_rows(fold)
    y_test = data.labels[test_rows]
    scores = classification_metrics(y_test, test_probs, data.class_names)
    scores.pop("confusion_matrix")
    scores.update(validation_scores(data, val_rows, val_probs))
    run.write_csv(predictions_frame(data.splits["path"].iloc[test_rows], y_test, test_probs, data.class_names),
                  run.predictions_file(name, fold))
    row = {"dataset": data.info["layout"], "model": name, "fold": fold, "seed": seed, "weights": weights,
           **scores, "best_epoch": best_epoch, "epochs_run": epochs_run, "n_train": len(train_rows),
           "n_val": len(val_rows), "n_test": len(test_rows), "train_seconds": train_seconds,
           "images_per_second": images_per_second, "precision": precision}
    run.update_csv(pd.DataFrame([row]), run.metrics_file, keys=("model", "fold"), arrange=_in_model_order)


def validation_scores(data: PreparedData, val_rows: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """``val_accuracy`` and ``val_recall_<class>`` of a fold's model on its validation rows.

    Beside the test split's ``accuracy`` and ``recall_<class>`` they show the validation-vs-test
    gap per class (notebook 02), the sign of a test split that differs from the training pool.

    Parameters
    ----------
    data : PreparedData
    val_rows : int array
    probs : (len(val_rows), K) array
        The model's probabilities on ``val_rows``.

    Returns
    -------
    dict

    Examples
    --------
    >>> splits = pd.DataFrame({"path": list("abc"), "split": "train", "class": list("xyy"), "fold": 0})
    >>> data = PreparedData(splits, np.zeros((3, 1, 4, 4), np.uint8), ["x", "y"], np.array([0, 1, 1]), {})
    >>> validation_scores(data, np.array([0, 1, 2]), np.array([[.9, .1], [.8, .2], [.3, .7]]))
    {'val_accuracy': 0.6666666666666666, 'val_recall_x': 1.0, 'val_recall_y': 0.5}
    """
    scores = classification_metrics(data.labels[val_rows], probs, data.class_names)
    return {"val_accuracy": scores["accuracy"],
            **{f"val_recall_{c}": scores[f"recall_{c}"] for c in data.class_names}}


def train_baselines(data: PreparedData, params: dict[str, Any], folds: Sequence[int] | None = None,
                    progress: bool = True) -> pd.DataFrame:
    """Fit the classical baselines on every fold, test them on the test split, like the CNNs.

    Each baseline of ``params['baselines']`` (see :mod:`xai_helpers.baselines`) is fitted on the
    fold's training rows, seeded, and scored on the same test split (and its validation rows) as
    the CNNs; rows go to ``metrics.csv`` and ``predictions/`` under the baseline's name. A fit is
    reused when its fingerprint (data, fold, seed) is unchanged.

    Parameters
    ----------
    data : PreparedData
    params : dict
        Resolved notebook parameters (``run_dir``, ``baselines``, ``seed``, ``image_size``).
    folds : optional
        Subset of folds (default: every fold).
    progress : bool

    Returns
    -------
    pandas.DataFrame
        The full ``metrics.csv``.

    Examples
    --------
    >>> from xai_helpers.examples import tiny_run
    >>> from xai_helpers.steps import load_prepared
    >>> params = tiny_run()
    >>> metrics = train_baselines(load_prepared(params), params, progress=False)
    >>> sorted(set(metrics["model"]))
    ['baseline_hgb', 'baseline_logreg', 'resnet50']
    """
    run = RunFolder(params["run_dir"])
    run.claim()
    names = list(params["baselines"])
    folds = list(folds if folds is not None else data.folds)
    if not names:
        return run.read_metrics() if run.metrics_file.is_file() else pd.DataFrame()
    jobs = []
    for name in names:
        for fold in folds:
            seed = fold_seed(params["seed"], name, fold)
            fingerprint = hashlib.sha1(json.dumps([fit_fingerprint(data, fold, params), name, seed,
                                                   BASELINE_IMAGE_SIZE]).encode()).hexdigest()
            record = run.checkpoint_dir(name, fold) / "baseline.json"
            if (record.is_file() and json.loads(record.read_text()).get("fingerprint") == fingerprint
                    and _scored(run, name, fold)):
                continue
            jobs.append((name, fold, seed, fingerprint))
    if jobs:
        # every row: the folds' training, validation and test rows cover them all
        inputs = _BaselineInputs(baseline_features(data.images, np.arange(len(data.labels))), data.labels,
                                 {fold: data.fold_rows(fold) for fold in folds}, len(data.class_names))
        run_jobs(_baseline_job, jobs, inputs, params, lambda job, out: _record_baseline(run, data, job, out),
                 describe=lambda job: f"{job[0]} fold {job[1]}", desc="baselines x folds", progress=progress)
    return pd.read_csv(run.metrics_file)


@dataclass
class _BaselineInputs:
    """What every baseline fit needs: the 32×32 grey features of every row, the labels, each fold's (train,
    validation, test) rows and the number of classes."""

    features: np.ndarray
    labels: np.ndarray
    rows: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]
    n_classes: int


def _baseline_job(job: tuple[str, int, int, str], inputs: _BaselineInputs) -> tuple[np.ndarray, np.ndarray, float, str]:
    """One baseline fit (in the notebook's process, or as a Ray task): test and validation probabilities, seconds,
    the fitted model in words."""
    name, fold, seed, _ = job
    train_rows, val_rows, test_rows = inputs.rows[fold]
    started = time.perf_counter()
    model = fit_baseline(name, inputs.features[train_rows], inputs.labels[train_rows], seed)
    seconds = time.perf_counter() - started
    return (predict_baseline(model, inputs.features[test_rows], inputs.n_classes),
            predict_baseline(model, inputs.features[val_rows], inputs.n_classes), seconds, repr(model))


def _record_baseline(run: RunFolder, data: PreparedData, job: tuple[str, int, int, str],
                     outcome: tuple[np.ndarray, np.ndarray, float, str]) -> None:
    name, fold, seed, fingerprint = job
    test_probs, val_probs, seconds, model = outcome
    train_rows = data.fold_rows(fold)[0]
    _record_fit(run, data, name, fold, test_probs, val_probs, seed=seed, weights="none", best_epoch=np.nan,
                epochs_run=np.nan, train_seconds=seconds, images_per_second=len(train_rows) / max(seconds, 1e-9),
                precision=f"scikit-learn, {BASELINE_IMAGE_SIZE}x{BASELINE_IMAGE_SIZE} grey pixels")
    record = run.checkpoint_dir(name, fold) / "baseline.json"
    record.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(record, json.dumps({"fingerprint": fingerprint, "model": model}))


def gap_notes(gap: pd.DataFrame, run: RunFolder | None = None, threshold: float = LARGE_GAP) -> list[str]:
    """Plain-words notes on validation-vs-test gaps above ``threshold``, each with the audit's
    flagged shifts of that class (``data/audit_shift.csv`` of ``run``).

    Parameters
    ----------
    gap : pandas.DataFrame
        From :func:`validation_test_gap`.
    run : RunFolder, optional
        Whose shift audit to quote.
    threshold : float

    Returns
    -------
    list of str

    Examples
    --------
    >>> g = pd.DataFrame({"model": ["a"], "class": ["x"], "validation": [.9], "test": [.3], "gap": [.6]})
    >>> gap_notes(g)
    ['a, class x: validation 0.90, test 0.30 (gap 0.60); the shift audit has not run.']
    """
    shift = None
    if run is not None and run.audit_shift_file.is_file():
        shift = pd.read_csv(run.audit_shift_file)
    notes = []
    for r in gap[gap["gap"] > threshold].to_dict("records"):
        line = (f"{r['model']}, class {r['class']}: validation {r['validation']:.2f}, test {r['test']:.2f} "
                f"(gap {r['gap']:.2f})")
        if shift is None:
            line += "; the shift audit has not run."
        else:
            flagged = shift[shift["flagged"].astype(bool)]
            if r["class"] != "all":
                flagged = flagged[flagged["class"].astype(str) == str(r["class"])]
            if len(flagged):
                line += "; the audit flags a shift from the training pool to the test split: " + ", ".join(
                    f"{f['feature']}" + (f" ({f['class']})" if r["class"] == "all" else "")
                    + f" (effect {f['effect_size']:.2f})" for f in flagged.to_dict("records")) + "."
            else:
                line += "; no metadata shift flagged for it (the difference lies in the images themselves)."
        notes.append(line)
    return notes


def _in_model_order(table: pd.DataFrame) -> pd.DataFrame:
    """``metrics.csv`` rows in the order of :data:`MODEL_NAMES`, then the baselines (others last), then by fold."""
    order = list(MODEL_NAMES) + list(BASELINE_NAMES)
    rank = table["model"].map(lambda m: order.index(m) if m in order else len(order))
    return table.assign(_rank=rank).sort_values(["_rank", "fold"], kind="stable").drop(columns="_rank")


def _weights_label(weights: str) -> str:
    """'none', 'imagenet', or the checkpoint's file name (metrics.csv's ``weights`` column)."""
    return weights if weights in ("none", "imagenet") else f"checkpoint:{Path(weights).name}"
