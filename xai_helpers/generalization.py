"""How well trained models generalize: corrupted test images, an external test set, calibration
and the stability of their explanations.

Three kinds of test condition, all on the *same* test images for every model and fold, so the
results stay paired:

* ``clean``: the held-out test split (or a per-class subsample of it);
* a corruption at a severity of 1 (mild) to 5 (severe), applied to the uint8 images before the
  usual normalisation: :data:`CORRUPTIONS` lists them (noise, blur, contrast, JPEG, lower
  resolution and a simulated scanner shift of intensity), in the spirit of Hendrycks &
  Dietterich's ImageNet-C (2019);
* ``external:<name>``: another dataset in any supported layout, its classes mapped onto the
  training classes by name or by an explicit ``class_map`` (:func:`map_classes`); classes that
  cannot be mapped are reported with their image counts, never dropped silently.

This module holds the conditions and their scores; the step over a run folder,
:func:`xai_helpers.steps.run_generalization` (notebook 07), writes ``generalization.csv``
(``model, fold, condition, severity, accuracy, f1_macro, ece, ...``),
``generalization_reliability.csv`` (reliability diagrams), ``generalization_cams.csv`` (rank
correlation of each corrupted image's CAM with its clean CAM) and
``generalization_external.json`` (what the external set held and how it was mapped).
"""
from __future__ import annotations

import io
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from PIL import Image
from sklearn.metrics import f1_score

from .blur import gaussian_blur
from .data.layouts import canonical_class_name
from .evaluation import expected_calibration_error
from .inference import BatchPipeline, predict_proba
from .models import IMAGENET_MEAN, IMAGENET_STD
from .errors import ClassMappingError

#: Parameters of each corruption at severities 1..5.
SEVERITY_LEVELS: dict[str, tuple] = {
    "gaussian_noise": (0.02, 0.04, 0.08, 0.12, 0.18),   # noise sd, fraction of the intensity range
    "gaussian_blur": (0.5, 0.75, 1.0, 1.5, 2.0),         # blur sd in pixels at 64 px (scaled with size)
    "contrast": (0.75, 0.6, 0.45, 0.3, 0.2),             # contrast kept around each image's mean
    "jpeg": (50, 30, 20, 10, 5),                         # JPEG quality
    "low_resolution": (1.5, 2.0, 3.0, 4.0, 6.0),         # downsampling factor (then back up)
    "intensity_shift": ((1.15, 0.02), (1.3, 0.04), (1.5, 0.06), (1.75, 0.08), (2.0, 0.1)),  # (gamma, offset)
}


#: ImageNet-C's parameters at its severities 1..5 (Hendrycks & Dietterich 2019, their reference code), for the
#: corruptions defined the same way here: noise sd in [0, 1], contrast kept around the mean, JPEG quality, and the
#: blur sd in pixels at ImageNet-C's 224 px. Our resolution loss and intensity shift have no such counterpart.
IMAGENET_C_LEVELS: dict[str, tuple[float, ...]] = {
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
    "jpeg": (25, 18, 15, 10, 7),
    "gaussian_blur": (1, 2, 3, 4, 6),
}


def imagenet_c_equivalents() -> pd.DataFrame:
    """How the project's own severity scale maps onto ImageNet-C's, where the two share a definition.

    The severities of :data:`SEVERITY_LEVELS` are this project's own scale (chosen so that a 64 px medical image
    degrades gradually), not ImageNet-C's. For each corruption with a counterpart (:data:`IMAGENET_C_LEVELS`) and
    each of our severities: the ImageNet-C severity whose parameter is nearest (on a log scale), ``'< 1'`` below its
    mildest and ``'> 5'`` beyond its harshest. The blur is compared at 224 px (ours is defined at 64 px and scales
    with the image).

    Returns
    -------
    pandas.DataFrame
        Indexed by corruption, one column per severity of ours.

    Examples
    --------
    >>> table = imagenet_c_equivalents()
    >>> table.loc["gaussian_noise"].tolist()   # our severity 5 is about ImageNet-C's 3
    ['< 1', '< 1', '1', '2', '3']
    """
    rows = {}
    for name, theirs in IMAGENET_C_LEVELS.items():
        ours = np.asarray(SEVERITY_LEVELS[name], dtype=float) * (224 / 64 if name == "gaussian_blur" else 1.0)
        theirs_arr = np.asarray(theirs, dtype=float)
        increasing = theirs_arr[-1] > theirs_arr[0]  # harsher = larger (noise, blur) or smaller (contrast, quality)
        cells = []
        for value in ours:
            mildest, harshest = theirs_arr[0], theirs_arr[-1]
            if (value < mildest / 1.2) if increasing else (value > mildest * 1.2):
                cells.append("< 1")
            elif (value > harshest * 1.2) if increasing else (value < harshest / 1.2):
                cells.append("> 5")
            else:
                cells.append(str(int(np.argmin(np.abs(np.log(theirs_arr) - np.log(value)))) + 1))
        rows[name] = cells
    return pd.DataFrame.from_dict(rows, orient="index", columns=pd.Index(range(1, 6), name="our severity")) \
        .rename_axis("ImageNet-C severity of")


def _level(name: str, severity: int) -> float:
    if name not in SEVERITY_LEVELS:
        raise ValueError(f"corruption: unknown name {name!r}; accepted values: {', '.join(SEVERITY_LEVELS)}")
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or not 1 <= severity <= 5:
        raise ValueError(f"severity: expected an integer in 1..5, got {severity!r}")
    return SEVERITY_LEVELS[name][int(severity) - 1]


def _as_float(images: np.ndarray) -> np.ndarray:
    return images.astype(np.float32) / 255.0


def _as_uint8(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def _noise(images, level, rng):
    x = _as_float(images)
    return _as_uint8(x + rng.normal(0.0, level, x.shape).astype(np.float32))


def _blur(images, level, rng):
    sigma = level * images.shape[-1] / 64.0
    return _as_uint8(gaussian_blur(_as_float(images), sigma))


def _contrast(images, level, rng):
    x = _as_float(images)
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    return _as_uint8((x - mean) * level + mean)


def _pil_each(images: np.ndarray, transform) -> np.ndarray:
    out = np.empty_like(images)
    for i, img in enumerate(images):
        arr = img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)
        res = np.asarray(transform(Image.fromarray(arr)))
        out[i] = res[None] if img.shape[0] == 1 else res.transpose(2, 0, 1)
    return out


def _jpeg(images, level, rng):
    def compress(im):
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=int(level))
        buf.seek(0)
        with Image.open(buf) as back:
            return back.convert(im.mode)

    return _pil_each(images, compress)


def _low_resolution(images, level, rng):
    size = images.shape[-1]
    small = max(4, int(round(size / level)))
    return _pil_each(images, lambda im: im.resize((small, small), Image.Resampling.BOX)
                     .resize((size, size), Image.Resampling.BILINEAR))


def _intensity_shift(images, level, rng):
    gamma, offset = level
    return _as_uint8(_as_float(images) ** gamma + offset)


#: Corruption name -> ``f(images, level, rng)`` on ``(N, C, S, S)`` uint8 arrays.
CORRUPTIONS: dict[str, Callable[[np.ndarray, float, np.random.Generator], np.ndarray]] = {
    "gaussian_noise": _noise,
    "gaussian_blur": _blur,
    "contrast": _contrast,
    "jpeg": _jpeg,
    "low_resolution": _low_resolution,
    "intensity_shift": _intensity_shift,
}


def corrupt(images: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """Apply corruption ``name`` at ``severity`` (1..5) to a uint8 image batch.

    Parameters
    ----------
    images : (N, C, S, S) uint8 array
        ``C`` = 1 or 3, as in the image cache.
    name : str
        One of :data:`CORRUPTIONS`.
    severity : int
        1 (mild) to 5 (severe); the parameters are in :data:`SEVERITY_LEVELS`.
    seed : int
        Seed of the noise (only ``gaussian_noise`` draws random numbers).

    Returns
    -------
    (N, C, S, S) uint8 array

    Examples
    --------
    >>> x = np.full((2, 1, 64, 64), 128, np.uint8)
    >>> bool(corrupt(x, "contrast", 5).std() == 0), bool(corrupt(x, "gaussian_noise", 3).std() > 0)
    (True, True)
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images: expected a (N, 1|3, S, S) uint8 array, got {images.shape} {images.dtype}")
    level = _level(name, severity)
    return CORRUPTIONS[name](images, level, np.random.default_rng(seed))


def map_classes(external_classes: Sequence[str], training_classes: Sequence[str],
                class_map: dict[str, str] | None = None) -> tuple[dict[str, int], list[str]]:
    """Map an external set's class names onto the training classes.

    A class maps through ``class_map`` when it is a key there, else onto the training class of
    the same canonical name (:func:`~xai_helpers.data.layouts.canonical_class_name`: the layouts'
    vocabulary, so ``glioma_tumor`` maps onto ``glioma`` and ``NORMAL`` onto ``normal``). Nothing
    is guessed beyond that.

    Parameters
    ----------
    external_classes, training_classes : sequence of str
    class_map : dict, optional
        External class name -> training class name.

    Returns
    -------
    mapping : dict
        External class name -> index into ``training_classes``.
    unmapped : list of str
        External classes with no training class (their images are left out and reported).

    Raises
    ------
    ClassMappingError
        When no external class maps onto a training class, or ``class_map`` names a class that
        does not exist on either side.

    Examples
    --------
    >>> map_classes(["glioma", "normal"], ["glioma", "no_tumor"], {"normal": "no_tumor"})
    ({'glioma': 0, 'normal': 1}, [])
    >>> map_classes(["glioma_tumor", "no_tumor", "other"], ["glioma", "no_tumor"])
    ({'glioma_tumor': 0, 'no_tumor': 1}, ['other'])
    """
    class_map = dict(class_map or {})
    training = list(training_classes)
    bad_keys = sorted(set(class_map) - set(external_classes))
    bad_values = sorted(set(class_map.values()) - set(training))
    if bad_keys or bad_values:
        raise ClassMappingError(
            "class_map: " + "; ".join(
                ([f"{', '.join(bad_keys)} not among the external classes {list(external_classes)}"] if bad_keys else [])
                + ([f"{', '.join(bad_values)} not among the training classes {training}"] if bad_values else [])))
    canonical = {canonical_class_name(t): i for i, t in enumerate(training)}
    mapping, unmapped = {}, []
    for c in external_classes:
        if c in class_map:
            mapping[c] = training.index(class_map[c])
        elif c in training:
            mapping[c] = training.index(c)
        elif canonical_class_name(c) in canonical:
            mapping[c] = canonical[canonical_class_name(c)]
        else:
            unmapped.append(c)
    if not mapping:
        raise ClassMappingError(
            f"the external set's classes {list(external_classes)} have no class in common with the training "
            f"classes {training}; name the correspondences with the class_map parameter, e.g. "
            f"class_map={{{external_classes[0]!r}: {training[0]!r}}}")
    return mapping, unmapped


def condition_scores(y_true: Sequence[int], probs: np.ndarray, n_bins: int = 15) -> dict[str, float]:
    """Accuracy, macro-F1 (over the classes present in ``y_true``), ECE and mean confidence.

    Examples
    --------
    >>> s = condition_scores([0, 1, 1], np.array([[.9, .1], [.2, .8], [.6, .4]]))
    >>> round(s["accuracy"], 3), round(s["f1_macro"], 3)
    (0.667, 0.667)
    """
    y = np.asarray(y_true)
    probs = np.asarray(probs, dtype=np.float64)
    pred = probs.argmax(axis=1)
    present = sorted(np.unique(y).tolist())
    return {"n": int(len(y)), "accuracy": float((pred == y).mean()),
            "f1_macro": float(f1_score(y, pred, labels=present, average="macro", zero_division=0)),
            "ece": expected_calibration_error(y, probs, n_bins), "mean_confidence": float(probs.max(axis=1).mean())}


def generalization_conditions(severities: Sequence[int]) -> list[tuple[str, int]]:
    """``[('clean', 0), (corruption, severity), ...]`` in a fixed order."""
    return [("clean", 0)] + [(name, int(s)) for name in CORRUPTIONS for s in sorted(severities)]


def predict_images(model, images: np.ndarray, device=None, batch_size: int = 64,
                   mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                   amp: bool = True) -> np.ndarray:
    """Softmax probabilities of ``model`` on a uint8 ``(N, C, S, S)`` batch, normalised like training.

    ``mean``/``std`` default to ImageNet's (what the training pipeline uses); pass a
    checkpoint's own values (``load_checkpoint``'s ``meta``) when it recorded others. ``amp``: under
    autocast where the device runs bf16 natively (:func:`~xai_helpers.training.amp_for` says when).
    """
    device = device or next(model.parameters()).device
    pipeline = BatchPipeline(images, torch.device(device), mean=mean or IMAGENET_MEAN, std=std or IMAGENET_STD)
    return predict_proba(model, pipeline, np.arange(len(images)), batch_size=batch_size, amp=amp)


def severity_summary(table: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """Mean ``metric`` over folds per model, corruption and severity (severity 0 = clean),
    ready for curves of ``metric`` against severity.

    Parameters
    ----------
    table : pandas.DataFrame
        ``generalization.csv``.
    metric : str

    Returns
    -------
    pandas.DataFrame
        ``model, condition, severity, <metric>``; each corruption gets the clean score at severity 0,
        external sets are left out.

    Examples
    --------
    >>> t = pd.DataFrame({"model": "m", "fold": [0, 1, 0, 1], "condition": ["clean", "clean", "jpeg", "jpeg"],
    ...                   "severity": [0, 0, 5, 5], "accuracy": [0.9, 0.8, 0.5, 0.6]})
    >>> severity_summary(t).round(2).values.tolist()
    [['m', 'jpeg', 0, 0.85], ['m', 'jpeg', 5, 0.55]]
    """
    clean = table[table["condition"] == "clean"]
    corr = table[~table["condition"].isin(["clean"]) & ~table["condition"].str.startswith("external:")]
    parts = [corr]
    for name in corr["condition"].unique():
        parts.append(clean.assign(condition=name))
    full = pd.concat(parts, ignore_index=True)
    return (full.groupby(["model", "condition", "severity"], sort=False)[metric].mean()
            .rename(metric).reset_index().sort_values(["model", "condition", "severity"]))
