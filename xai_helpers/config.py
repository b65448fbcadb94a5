"""Notebook parameters: their defaults, their validation and the named profiles.

Every notebook has the same ``parameters`` cell (papermill injects overrides after it), and every
notebook turns those values into a validated :class:`dict` with :func:`resolve_params`. The
defaults below are the ``demo`` profile, the one a reader gets when opening a notebook by hand.

A broken parameter stops with one :class:`ParameterError` that names the parameter and the values
it accepts, before any work starts.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable

from .baselines import BASELINE_NAMES
from .cams import STUDY_METHODS, available_methods
from .data.cache import RESIZE_MODES
from .data.layouts import LAYOUTS, DatasetError, detect_layout
from .data.splits import LEAK_POLICIES
from .models import MODEL_NAMES, check_image_size, feature_map_size
from .paths import project_root, resolve_path
from .runfolder import RunFolderRefused, check_run_dir
from .inference import resolve_device
from .training import SCHEDULES
from .errors import ParameterError


#: The shared notebook parameters and their defaults (the ``demo`` profile).
#: Keep in step with the ``parameters`` cell of every notebook (a test checks it).
DEFAULTS: dict[str, Any] = {
    # data
    "dataset": "synthetic",          # 'auto' or a layout name (see xai_helpers.data.LAYOUTS)
    "data_root": "data/synthetic",   # dataset folder; for 'synthetic' it is generated there
    "synthetic_per_class": 100,      # synthetic only: training-pool images per class (test: 1/3 of it)
    "max_per_class": None,           # cap on training-pool images per class (None: all)
    "leak_policy": "drop_train",     # training images duplicating a test image: 'drop_train' or 'keep'
    "image_size": 64,                # pixels, square (>= 64: the CNNs downsample by 32)
    "resize_mode": "squash",         # non-square images to square: 'squash' (stretched), 'center_crop'
                                     # (the central square), 'pad' (black borders to a square)
    # run
    "run_dir": "runs/demo",
    "seed": 0,
    "device": "auto",                # 'auto', 'cpu', 'cuda', 'cuda:0', ...
    "interactive": True,             # False under the runner: static figures instead of widgets
    # training
    "models": ["resnet50", "densenet121", "vgg16", "efficientnet_b0"],
    "baselines": ["baseline_hgb", "baseline_logreg"],  # classical baselines on 32x32 grey pixels, fitted
                                     # on the same folds ([]: none; see xai_helpers.baselines)
    "weights": "none",               # 'none' (from scratch), 'imagenet', 'auto' (ImageNet when it can be
                                     # loaded, else from scratch; recorded per fit), or a checkpoint path
    "folds": 3,                      # k-fold cross-validation on the training pool
    "epochs": 6,                     # at most (early stopping); a number, or per model with a 'default' (as lr)
    "batch_size": {"default": 32, "vgg16": 8},  # a number, or per model with a 'default' (as lr): VGG16
                                     # needs more steps at its small lr (see the README)
    "lr": {"default": 1e-3, "vgg16": 1e-4},  # a number, or per model with a 'default' (VGG16 has no
                                     # batch norm and does not train from scratch at 1e-3)
    "lr_schedule": {"default": "cosine", "vgg16": "none"},  # 'cosine' (to 0 over epochs), 'step', 'none'
                                     # (constant); per model as lr: VGG16 leaves chance only after epoch 3
    "warmup_epochs": 0,              # linear learning-rate warm-up over the first epochs (per model as lr)
    "patience": 3,                   # early stopping on validation macro-F1 (epochs without gain)
    "freeze_epochs": 0,              # train only the new head for this many first epochs
    "class_weighted": False,         # weight the loss by inverse class frequency
    "precision": "auto",             # 'auto': bf16 autocast where the hardware runs it natively (CUDA, or a
                                     # CPU with AVX-512 BF16/AMX) and channels_last; 'fp32': neither
    # explanations
    "cam_model": "resnet50",
    "cam_layer": "layer2",           # 'default' or a module name; layer2 is 8x8 at 64 px (layer4: 2x2)
    "cam_methods": list(STUDY_METHODS),
    "explain_per_class": 12,         # test images per class explained per fold (None: every test image)
    # generalization (notebook 07)
    "external_data_root": None,      # a second dataset to test on (any layout); None: for 'synthetic' a
                                     # shifted synthetic set is generated beside data_root, else none
    "external_dataset": "auto",      # its layout ('auto' or a layout name)
    "class_map": {},                 # external class name -> training class name (others match by name)
    "corruption_severities": [1, 3, 5],  # of 1..5 (see xai_helpers.generalization.CORRUPTIONS)
    "generalization_per_class": 12,      # cap on test / external images per class in notebook 07 (None: all)
}

#: ``precision``: the fast paths where the hardware has them, or plain fp32 (see README, "Speed").
PRECISIONS = ("auto", "fp32")

PROFILES: dict[str, dict[str, Any]] = {
    # The embedded synthetic dataset, all four CNNs, 3 folds; about 10 minutes on 2 CPU cores.
    "demo": {"run_dir": "runs/demo"},
    # The smallest run that exercises every notebook and every artefact (the test suite's).
    "quick": {
        "run_dir": "runs/quick",
        "data_root": "data/synthetic_quick",
        "synthetic_per_class": 12,
        "folds": 2,
        "epochs": 1,
        "batch_size": 16,
        "explain_per_class": 3,
        "corruption_severities": [1, 5],
        "generalization_per_class": 6,
    },
    # The study on the real datasets (one run folder per dataset under runs/paper/), for a GPU:
    # 224 px, ImageNet weights when they can be loaded (else from scratch, stated in the report),
    # Adam at 1e-4, 5 folds, up to 30 epochs with early stopping, CAMs at ResNet50's layer4 on
    # every test image.
    "paper": {
        "run_dir": "runs/paper",
        "image_size": 224,
        "weights": "auto",
        "folds": 5,
        "epochs": 30,
        "batch_size": 32,
        "lr": 1e-4,
        "patience": 5,
        "cam_layer": "default",
        "explain_per_class": None,
        "corruption_severities": [1, 2, 3, 4, 5],
        "generalization_per_class": None,
    },
    # The same path on 2 CPU cores within an hour per dataset (measured: README, "paper_cpu"): 64 px,
    # at most 1500 training images per class (all of brain MRI and skin cancer, 60 % of chest X-ray),
    # 3 folds of at most 8 epochs (VGG16, ~2.3x slower per image than ResNet50: 4), 20 explained and
    # 50 generalization images per class.
    "paper_cpu": {
        "run_dir": "runs/paper_cpu",
        "image_size": 64,
        "weights": "auto",
        "max_per_class": 1500,
        "folds": 3,
        "epochs": {"default": 8, "vgg16": 4},
        "batch_size": 32,
        "cam_layer": "layer2",
        "explain_per_class": 20,
        "generalization_per_class": 50,
    },
}

#: Profiles that run the study on several datasets, one run folder ``<run_dir>/<dataset>`` each
#: (``--set dataset=NAME`` runs one of them). Values: dataset layout -> default ``data_root``.
STUDY_DATASETS: dict[str, dict[str, str]] = {
    profile: {
        "brain_tumor_mri": "../shared/data/brain_tumor_mri",
        "skin_cancer_isic": "../shared/data/skin_cancer_isic",
        "chest_xray_pneumonia": "../shared/data/chest_xray_pneumonia",
    }
    for profile in ("paper", "paper_cpu")
}


def profile_params(profile: str) -> dict[str, Any]:
    """The full parameter set of a named profile (defaults updated by the profile)."""
    if profile not in PROFILES:
        raise ParameterError(
            f"profile: unknown profile {profile!r}; accepted values: {', '.join(sorted(PROFILES))}")
    params = copy.deepcopy(DEFAULTS)
    params.update(copy.deepcopy(PROFILES[profile]))
    return params


def _one_of(name: str, value: Any, accepted) -> None:
    if value not in accepted:
        raise ParameterError(
            f"{name}: unknown value {value!r}; accepted values: {', '.join(map(str, accepted))}")


def _int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ParameterError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return value


def _per_model(name: str, value: Any, models: list[str], check: Callable[[Any], Any]) -> Any:
    """A value for every model, or a mapping of model -> value with a ``default`` (``epochs``, ``lr``,
    ``batch_size``, ``lr_schedule``, ``warmup_epochs``); ``check`` validates and normalises one value."""
    if not isinstance(value, dict):
        return check(value)
    for key in value:
        if key != "default":
            _one_of(name, key, ("default",) + MODEL_NAMES)
    if "default" not in value and not set(models) <= set(value):
        raise ParameterError(f"{name}: the mapping {value} needs a 'default' or a value for every model")
    return {k: check(v) for k, v in value.items()}


def resolve_params(values: dict[str, Any]) -> dict[str, Any]:
    """Validate notebook parameters and return them complete and normalised.

    Parameters
    ----------
    values : dict
        Parameter names to values. Missing names take their :data:`DEFAULTS`; names outside
        :data:`DEFAULTS` are an error.

    Returns
    -------
    dict
        Every parameter, with paths made absolute and lists made lists.

    Raises
    ------
    ParameterError
        Naming the first broken parameter and the values it accepts.

    Examples
    --------
    >>> p = resolve_params({"models": ["resnet50"], "epochs": 2})
    >>> p["models"], p["epochs"]
    (['resnet50'], 2)
    """
    unknown = sorted(set(values) - set(DEFAULTS))
    if unknown:
        raise ParameterError(
            f"unknown parameter(s) {', '.join(unknown)}; accepted parameters: {', '.join(DEFAULTS)}")
    p = copy.deepcopy(DEFAULTS)
    p.update(copy.deepcopy(values))

    _one_of("dataset", p["dataset"], ("auto",) + tuple(LAYOUTS))
    _one_of("leak_policy", p["leak_policy"], LEAK_POLICIES)
    _one_of("precision", p["precision"], PRECISIONS)
    _one_of("resize_mode", p["resize_mode"], RESIZE_MODES)
    if not p["data_root"]:
        raise ParameterError("data_root: a folder is required (the dataset's root folder)")
    p["data_root"] = str(resolve_path(p["data_root"]))
    if p["dataset"] != "synthetic" and not Path(p["data_root"]).is_dir():
        raise ParameterError(
            f"data_root: folder {p['data_root']} does not exist; point it at the downloaded "
            f"dataset (dataset={p['dataset']!r})")
    if p["run_dir"] is None or not str(p["run_dir"]).strip():
        raise ParameterError("run_dir: a folder is required (a new or empty folder, or an earlier run folder), "
                             "e.g. runs/<name>")
    p["run_dir"] = str(resolve_path(p["run_dir"]))
    try:
        check_run_dir(p["run_dir"], project_root())
    except RunFolderRefused as err:
        raise ParameterError(str(err)) from None

    models = p["models"]
    if isinstance(models, str):
        models = [m.strip() for m in models.split(",") if m.strip()]
    if not models:
        raise ParameterError(f"models: at least one model is needed; accepted values: {', '.join(MODEL_NAMES)}")
    for m in models:
        _one_of("models", m, MODEL_NAMES)
    p["models"] = list(models)
    _one_of("cam_model", p["cam_model"], MODEL_NAMES)
    baselines = p["baselines"] or []
    if isinstance(baselines, str):
        baselines = [m.strip() for m in baselines.split(",") if m.strip()]
    for m in baselines:
        _one_of("baselines", m, BASELINE_NAMES)
    p["baselines"] = list(baselines)

    methods = p["cam_methods"]
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    for m in methods:
        _one_of("cam_methods", m, available_methods())
    p["cam_methods"] = list(methods)

    p["image_size"] = _int("image_size", p["image_size"], 16)
    try:
        for m in p["models"]:
            check_image_size(m, p["image_size"])
        if p["cam_layer"] != "default":
            feature_map_size(p["cam_model"], p["image_size"], p["cam_layer"])
    except ValueError as err:
        raise ParameterError(str(err)) from None
    p["epochs"] = _per_model("epochs", p["epochs"], p["models"], lambda v: _int("epochs", v, 1))
    p["folds"] = _int("folds", p["folds"], 2)
    p["seed"] = _int("seed", p["seed"], 0)
    p["batch_size"] = _per_model("batch_size", p["batch_size"], p["models"], lambda v: _int("batch_size", v, 2))
    p["patience"] = _int("patience", p["patience"], 1)
    p["freeze_epochs"] = _int("freeze_epochs", p["freeze_epochs"], 0)
    if not isinstance(p["class_weighted"], bool):
        raise ParameterError(f"class_weighted: expected true or false, got {p['class_weighted']!r}")
    if p["explain_per_class"] is not None:
        p["explain_per_class"] = _int("explain_per_class", p["explain_per_class"], 1)
    if p["generalization_per_class"] is not None:
        p["generalization_per_class"] = _int("generalization_per_class", p["generalization_per_class"], 1)
    sev = p["corruption_severities"]
    if isinstance(sev, int):
        sev = [sev]
    if not isinstance(sev, (list, tuple)) or not sev or any(
            isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 5 for v in sev):
        raise ParameterError("corruption_severities: expected a list of integers in 1..5, "
                             f"got {p['corruption_severities']!r}")
    p["corruption_severities"] = sorted(set(sev))
    if p["class_map"] is None:
        p["class_map"] = {}
    if not isinstance(p["class_map"], dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in p["class_map"].items()):
        raise ParameterError("class_map: expected a mapping of external class -> training class, "
                             f"got {p['class_map']!r}")
    if p["external_dataset"] != "auto":
        _one_of("external_dataset", p["external_dataset"], ("auto",) + tuple(LAYOUTS))
    if p["external_data_root"] is not None:
        p["external_data_root"] = str(resolve_path(p["external_data_root"]))
        if not Path(p["external_data_root"]).is_dir():
            raise ParameterError(f"external_data_root: folder {p['external_data_root']} does not exist")
        if p["external_dataset"] == "auto":  # a folder of no known layout is refused now, not in notebook 07
            try:
                detect_layout(p["external_data_root"])
            except DatasetError as err:
                raise ParameterError(f"external_data_root: {err}") from None
    p["synthetic_per_class"] = _int("synthetic_per_class", p["synthetic_per_class"], 4)
    if p["max_per_class"] is not None:
        p["max_per_class"] = _int("max_per_class", p["max_per_class"], 2)
    p["warmup_epochs"] = _per_model("warmup_epochs", p["warmup_epochs"], p["models"],
                                    lambda v: _int("warmup_epochs", v, 0))
    lr = p["lr"]

    def known_schedule(v: Any) -> str:
        _one_of("lr_schedule", v, SCHEDULES)
        return v

    def positive_lr(v: Any) -> float:
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0:
            raise ParameterError(f"lr: expected a positive number (or a mapping of model -> number), got {lr!r}")
        return float(v)

    p["lr_schedule"] = _per_model("lr_schedule", p["lr_schedule"], p["models"], known_schedule)
    p["lr"] = _per_model("lr", lr, p["models"], positive_lr)
    if not isinstance(p["interactive"], bool):
        raise ParameterError(f"interactive: expected true or false, got {p['interactive']!r}")

    dev = str(p["device"])
    if not (dev in ("auto", "cpu", "cuda", "mps") or dev.startswith("cuda:")):
        raise ParameterError(f"device: unknown value {dev!r}; accepted values: auto, cpu, cuda, cuda:N, mps")
    try:  # a device this machine lacks is refused here, not in notebook 02 after the data work
        resolve_device(dev)
    except ValueError as err:
        raise ParameterError(str(err)) from None
    weights = p["weights"]
    if weights not in ("none", "imagenet", "auto", None):
        if not Path(resolve_path(weights)).is_file():
            raise ParameterError(
                f"weights: {weights!r} is neither 'none', 'imagenet', 'auto' nor an existing checkpoint file")
        p["weights"] = str(resolve_path(weights))
    elif weights is None:
        p["weights"] = "none"
    return p
