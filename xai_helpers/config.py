"""Notebook parameters: one declarative table, the named profiles, and the validation they drive.

Every parameter is one :class:`Param` row of :data:`PARAMETERS`: its name, its default (the ``demo``
profile, what a reader gets when opening a notebook by hand), the notebook step that owns it, the
check that validates and normalises a value, whether the data notebook 01 prepared fixes it, and its
documentation. That one table drives

* :func:`resolve_params`, which every notebook's first cell calls (a broken parameter stops with one
  :class:`~xai_helpers.errors.ParameterError` naming the parameter and what it accepts, before any
  work starts), and :data:`DEFAULTS`;
* :func:`check_against_prepared`, the one check that later notebooks agree with the prepared data;
* :data:`STEP_PARAMETERS`, which step's record the report reads each parameter from;
* the ``parameters`` cell of every notebook (:func:`parameters_cell`; ``make notebooks`` writes it,
  a test keeps it equal) and the parameter table of ``docs/running.md`` (:func:`parameter_table_markdown`, checked
  by a test).

Defaults are written here and nowhere else.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from .baselines import BASELINE_NAMES
from .cam_metrics import FILLS
from .cams import STUDY_METHODS, available_methods
from .data.cache import RESIZE_MODES
from .data.layouts import LAYOUTS, detect_layout
from .data.splits import LEAK_POLICIES
from .errors import DatasetError, ParameterError, RunFolderRefused
from .inference import resolve_device
from .models import MODEL_NAMES, check_image_size, feature_map_size
from .paths import project_root, resolve_path
from .runfolder import check_run_dir
from .training import SCHEDULES

#: ``precision``: the fast paths where the hardware has them, or plain fp32 (see "Speed", docs/engineering.md).
PRECISIONS = ("auto", "fp32")


@dataclass(frozen=True)
class Param:
    """One notebook parameter: everything the toolkit knows of it, in one place.

    Attributes
    ----------
    name : str
    default : Any
        The ``demo`` profile's value.
    step : str
        The notebook that owns it (``'01'``, ``'02'``, ``'05'``, ``'07'``; ``'run'`` for what every
        notebook of a run shares): the report reads it from that step's record in ``config.json``.
    check : callable
        ``check(value) -> value``: validates one value (alone) and returns it normalised; raises
        :class:`~xai_helpers.errors.ParameterError`. What depends on other parameters is checked
        after every value is (:data:`RELATIONS`).
    doc : str
        What it means (Markdown): the parameter table of ``docs/running.md``.
    prepared : bool
        Fixed by the data notebook 01 prepared: a later notebook refuses another value
        (:func:`check_against_prepared`).
    shown : str, optional
        The default as the table shows it, where the value itself would be long.

    Examples
    --------
    >>> PARAMETER["folds"].default, PARAMETER["folds"].step, PARAMETER["folds"].prepared
    (3, '01', True)
    """

    name: str
    default: Any
    step: str
    check: Callable[[Any], Any]
    doc: str
    prepared: bool = False
    shown: str | None = None


def _one_of(name: str, accepted) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value not in accepted:
            raise ParameterError(f"{name}: unknown value {value!r}; accepted values: {', '.join(map(str, accepted))}")
        return value
    return check


def _cam_models(value: Any) -> Any:
    if value == "all":
        return value
    return _names("cam_models", lambda: MODEL_NAMES)(value)


def _int(name: str, minimum: int, optional: bool = False) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if optional and value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ParameterError(f"{name}: expected an integer >= {minimum}, got {value!r}")
        return value
    return check


def _bool(name: str) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if not isinstance(value, bool):
            raise ParameterError(f"{name}: expected true or false, got {value!r}")
        return value
    return check


def _names(name: str, accepted: Callable[[], Any], empty_ok: bool = True) -> Callable[[Any], list[str]]:
    """A list of names (or a comma-separated string of them), each one of ``accepted()``."""
    def check(value: Any) -> list[str]:
        if value is None and empty_ok:
            value = []
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not empty_ok and not value:
            raise ParameterError(f"{name}: at least one is needed; accepted values: {', '.join(accepted())}")
        for v in value:
            _one_of(name, accepted())(v)
        return list(value)
    return check


def _per_model(name: str, check_one: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A value for every model, or a mapping of model -> value with a ``default`` (``epochs``, ``lr``,
    ``batch_size``, ``lr_schedule``, ``warmup_epochs``); that each model has one is a relation."""
    def check(value: Any) -> Any:
        if not isinstance(value, dict):
            return check_one(value)
        for key in value:
            if key != "default":
                _one_of(name, ("default",) + MODEL_NAMES)(key)
        return {k: check_one(v) for k, v in value.items()}
    return check


def _folder(name: str, required: bool = True) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value is None and not required:
            return None
        if not value or not str(value).strip():
            raise ParameterError(f"{name}: a folder is required")
        return str(resolve_path(value))
    return check


def _run_dir(value: Any) -> str:
    if value is None or not str(value).strip():
        raise ParameterError("run_dir: a folder is required (a new or empty folder, or an earlier run folder), "
                             "e.g. runs/<name>")
    path = str(resolve_path(value))
    try:
        check_run_dir(path, project_root())
    except RunFolderRefused as err:
        raise ParameterError(str(err)) from None
    return path


def _device(value: Any) -> str:
    dev = str(value)
    if not (dev in ("auto", "cpu", "cuda", "mps") or dev.startswith("cuda:")):
        raise ParameterError(f"device: unknown value {dev!r}; accepted values: auto, cpu, cuda, cuda:N, mps")
    resolve_device(dev)  # a device this machine lacks is refused here, not in notebook 02 after the data work
    return dev


def _weights(value: Any) -> str:
    if value is None:
        return "none"
    if value in ("none", "imagenet", "auto"):
        return value
    if not Path(resolve_path(value)).is_file():
        raise ParameterError(
            f"weights: {value!r} is neither 'none', 'imagenet', 'auto' nor an existing checkpoint file")
    return str(resolve_path(value))


def _positive_lr(value: Any) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise ParameterError(f"lr: expected a positive number (or a mapping of model -> number), got {value!r}")
    return float(value)


def _severities(value: Any) -> list[int]:
    sev = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(sev, (list, tuple)) or not sev or any(
            isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 5 for v in sev):
        raise ParameterError(f"corruption_severities: expected a list of integers in 1..5, got {value!r}")
    return sorted(set(sev))


def _class_map(value: Any) -> dict[str, str]:
    value = {} if value is None else value
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ParameterError(f"class_map: expected a mapping of external class -> training class, got {value!r}")
    return value


def _ray_address(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ParameterError(f"ray_address: expected null (a Ray instance started for the run), 'auto', host:port "
                             f"or ray://host:10001, got {value!r}")
    return value.strip()


def _fit_resources(value: Any) -> dict[str, float] | None:
    if value is None:
        return None
    ok = isinstance(value, dict) and set(value) <= {"gpus", "cpus"} and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in value.values())
    if not ok or value.get("cpus", 1) <= 0:
        raise ParameterError(f"fit_resources: expected a mapping with gpus (>= 0) and cpus (> 0), e.g. "
                             f"{{gpus: 1, cpus: 2}}, got {value!r}")
    return dict(value)


_LAYOUT_NAMES = ", ".join(f"`{name}`" for name in LAYOUTS)

#: Every notebook parameter, in the order of the notebooks' ``parameters`` cell.
PARAMETERS: tuple[Param, ...] = (
    # data (notebook 01)
    Param("dataset", "synthetic", "01", _one_of("dataset", ("auto",) + tuple(LAYOUTS)),
          f"`auto` (detect from `data_root`) or a layout: {_LAYOUT_NAMES}", prepared=True),
    Param("data_root", "data/synthetic", "01", _folder("data_root"),
          "the dataset folder as downloaded (for `synthetic`: where it is generated)", prepared=True),
    Param("synthetic_per_class", 100, "01", _int("synthetic_per_class", 4),
          "synthetic only: training-pool images per class (test: a third of that)"),
    Param("max_per_class", None, "01", _int("max_per_class", 2, optional=True),
          "cap on training-pool images per class (`None`: all)"),
    Param("leak_policy", "drop_train", "01", _one_of("leak_policy", LEAK_POLICIES),
          "training images that duplicate a test image (exact or near duplicate, same patient): dropped "
          "(`drop_train`) or kept (`keep`), counted in the audit either way"),
    Param("image_size", 64, "01", _int("image_size", 16),
          "square input size in pixels (64 or more: the CNNs downsample by 32)", prepared=True),
    Param("resize_mode", "squash", "01", _one_of("resize_mode", RESIZE_MODES),
          "how a non-square image becomes square before resizing: `squash` (stretched: every pixel kept, shapes "
          "distorted), `center_crop` (its central square: shapes kept, borders lost), `pad` (black borders to a "
          "square: everything kept, content smaller). Part of the image cache's key; shown in the report's "
          "protocol table", prepared=True),
    # run (every notebook)
    Param("run_dir", "runs/demo", "run", _run_dir, "the run folder"),
    Param("seed", 0, "01", _int("seed", 0), "seeds folds, initialisation, batch order and augmentation"),
    Param("device", "auto", "run", _device,
          "`auto`, `cpu`, `cuda`, `cuda:N`, `mps`; a device this machine lacks is refused at once"),
    Param("interactive", True, "run", _bool("interactive"),
          "widgets (`True`) or static figures (`False`, the runner's setting)"),
    Param("executor", "local", "run", _one_of("executor", ("local", "ray")),
          "where notebook 02's fits and the per-fold work of 05 and 07 run: `local` (one after the other in the "
          "notebook's process) or `ray` (Ray tasks on this machine or a cluster; the `[cluster]` extra). See "
          "\"Running on a cluster\""),
    Param("ray_address", None, "run", _ray_address,
          "with `executor=ray`: `None` starts a new Ray instance for the run, `auto`, `host:port` or "
          "`ray://host:10001` joins a running cluster"),
    Param("fit_resources", None, "run", _fit_resources,
          "with `executor=ray`: what one task asks for, e.g. `{gpus: 1, cpus: 2}` (`None`: on an instance started "
          "for the run one GPU per task on CUDA, else every core for one task at a time; on a cluster, from its "
          "nodes: one GPU per task where there are GPUs, else the smallest node's CPUs); a request no node can "
          "serve is refused before any task runs"),
    Param("data_shared", False, "run", _bool("data_shared"),
          "with `executor=ray`: `True` when every node reads the image cache file at the same path (a cluster "
          "filesystem; tasks read the images from it); `False` sends the cached images through Ray's object store"),
    # training (notebook 02)
    Param("models", ["resnet50", "densenet121", "vgg16", "efficientnet_b0"], "02",
          _names("models", lambda: MODEL_NAMES, empty_ok=False),
          "any of `resnet50`, `densenet121`, `vgg16`, `efficientnet_b0`", shown="all four"),
    Param("baselines", ["baseline_hgb", "baseline_logreg"], "02", _names("baselines", lambda: BASELINE_NAMES),
          "classical baselines fitted beside the CNNs on the same folds and test split, on the cached images "
          "downsampled to 32×32 grey pixels: scikit-learn's `HistGradientBoostingClassifier` and a logistic "
          "regression (`[]`: none). See \"Baselines, shortcuts and shifts\""),
    Param("weights", "none", "02", _weights,
          "`none` (from scratch), `imagenet`, `auto` (ImageNet when the weights can be loaded, else from scratch "
          "with a warning; `metrics.csv`'s `weights` column says which), or a checkpoint file"),
    Param("folds", 3, "01", _int("folds", 2), "k of the k-fold cross-validation (at least 2)", prepared=True),
    Param("epochs", 6, "02", _per_model("epochs", _int("epochs", 1)),
          "maximum epochs per fit (early stopping on validation macro-F1); a number or per model (as `lr`: "
          "`paper_cpu` gives VGG16 4 and the others 8)"),
    Param("batch_size", {"default": 32, "vgg16": 8}, "02", _per_model("batch_size", _int("batch_size", 2)),
          "a number or per model (as `lr`); VGG16's smaller batches give it four times the optimizer steps in "
          "the same epochs (see \"Why VGG16 gets its own batch size\")"),
    Param("lr", {"default": 1e-3, "vgg16": 1e-4}, "02", _per_model("lr", _positive_lr),
          "Adam learning rate, a number or per model (VGG16 has no batch norm and does not train from scratch "
          "at 1e-3)", shown="{default: 1e-3, vgg16: 1e-4}"),
    Param("lr_schedule", {"default": "cosine", "vgg16": "none"}, "02",
          _per_model("lr_schedule", _one_of("lr_schedule", SCHEDULES)),
          "`cosine` (to 0 over the epochs), `step` or `none` (constant); per model as `lr`: VGG16 leaves chance "
          "only after epoch 3 at a constant rate"),
    Param("warmup_epochs", 0, "02", _per_model("warmup_epochs", _int("warmup_epochs", 0)),
          "linear learning-rate warm-up over this many first epochs, step by step; a number or per model"),
    Param("patience", 3, "02", _int("patience", 1),
          "epochs without a better validation macro-F1 before stopping (never before half of `epochs`)"),
    Param("freeze_epochs", 0, "02", _int("freeze_epochs", 0),
          "train only the new head for this many first epochs (with `weights=imagenet`)"),
    Param("class_weighted", False, "02", _bool("class_weighted"),
          "weight the cross-entropy by inverse class frequency"),
    Param("precision", "auto", "02", _one_of("precision", PRECISIONS),
          "`auto`: bf16 autocast where the hardware runs it natively (a CUDA GPU of the Ampere generation or "
          "newer, or a CPU with AVX-512 BF16 or AMX; an older GPU gets fp16 with loss scaling) and channels_last "
          "memory; `fp32`: plain fp32. Each fit records what it ran with in `metrics.csv` "
          "(`precision`) and the report's protocol table"),
    # explanations (notebooks 04, 05)
    Param("cam_model", "resnet50", "05", _one_of("cam_model", MODEL_NAMES),
          "the model notebooks 04, 05 and 07 explain"),
    Param("cam_layer", "layer2", "05", str,
          "target layer (`default`: the architecture's default, `layer4` for ResNet50); `layer2` is 8×8 at 64 px"),
    Param("cam_models", "all", "05", _cam_models,
          "the CNNs notebook 05 explains beside `cam_model` (`all`: every CNN in `models`), each at its layer of "
          "the resolution of `cam_model`'s `cam_layer` (`xai_helpers.models.comparable_layer`: at 64 px and "
          "`layer2`, DenseNet121 `features.transition2.relu`, VGG16 `features.22`, EfficientNet-B0 "
          "`features.4.0.block.0`, all "
          "8×8): maps, confidence and localisation metrics; deletion/insertion, ROAD and the randomisation check "
          "stay `cam_model`'s (`[]`: `cam_model` only)", shown="`all`"),
    Param("cam_methods", list(STUDY_METHODS), "05", _names("cam_methods", available_methods),
          "any of `gradcam`, `gradcam++`, `xgradcam`, `eigengradcam`, `eigengradcam_signed`, `layercam`, or a "
          "pytorch-grad-cam method (`scorecam`, `hirescam`, ...)", shown="the five"),
    Param("explain_per_class", 12, "05", _int("explain_per_class", 1, optional=True),
          "test images per class explained with each fold's model (`None`: every test image)"),
    Param("perturbation_fill", "imagenet_mean", "05", _one_of("perturbation_fill", FILLS),
          "what a pixel removed by confidence increase and deletion becomes: `imagenet_mean` (0 of the normalised "
          "input, ImageNet's mean colour, a warm grey: the study's and pytorch-grad-cam's), `black`, "
          "`dataset_mean` (the explained images' mean colour) or `blur` (a blurred copy); notebook 05 shows "
          "whether the methods' ranking survives each (`xai_fill_sensitivity.csv`)"),
    # generalization (notebook 07)
    Param("external_data_root", None, "07", _folder("external_data_root", required=False),
          "notebook 07's external test set (any layout above); `None`: for `synthetic`, a second synthetic set "
          "with a shifted intensity and noise profile, generated beside `data_root`; for real data, none"),
    Param("external_dataset", "auto", "07", _one_of("external_dataset", ("auto",) + tuple(LAYOUTS)),
          "the external set's layout"),
    Param("class_map", {}, "07", _class_map,
          "external class name → training class name, for names that differ (others match by name; unmatched "
          "classes are reported and left out; a set with no class in common is refused)"),
    Param("corruption_severities", [1, 3, 5], "07", _severities,
          "severities (1..5) of the six corruptions in notebook 07"),
    Param("generalization_per_class", 12, "07", _int("generalization_per_class", 1, optional=True),
          "cap on test and external images per class in notebook 07 (`None`: all)"),
)

#: The table by name.
PARAMETER: dict[str, Param] = {p.name: p for p in PARAMETERS}

#: The shared notebook parameters and their defaults (the ``demo`` profile), from :data:`PARAMETERS`.
DEFAULTS: dict[str, Any] = {p.name: p.default for p in PARAMETERS}

#: Which step's recorded parameters the report takes each parameter from (``config.json``'s ``steps``).
STEP_PARAMETERS: dict[str, tuple[str, ...]] = {
    step: tuple(p.name for p in PARAMETERS if p.step == step) for step in ("01", "02", "05", "07")}


#: What a run folder recorded before a parameter existed ran with (the only value there was then):
#: for the protocol tables and prepared-data checks of older run folders, never a default.
RECORDED_BEFORE: dict[str, Any] = {"warmup_epochs": 0, "resize_mode": "squash", "perturbation_fill": "imagenet_mean"}


def _data_root_exists(p: dict[str, Any]) -> None:
    if p["dataset"] != "synthetic" and not Path(p["data_root"]).is_dir():
        raise ParameterError(f"data_root: folder {p['data_root']} does not exist; point it at the downloaded "
                             f"dataset (dataset={p['dataset']!r})")


def _models_fit_image_size(p: dict[str, Any]) -> None:
    for m in p["models"]:
        check_image_size(m, p["image_size"])
    if p["cam_layer"] != "default":
        feature_map_size(p["cam_model"], p["image_size"], p["cam_layer"])


def _every_model_has_a_value(p: dict[str, Any]) -> None:
    for name in ("epochs", "batch_size", "lr", "lr_schedule", "warmup_epochs"):
        value = p[name]
        if isinstance(value, dict) and "default" not in value and not set(p["models"]) <= set(value):
            raise ParameterError(f"{name}: the mapping {value} needs a 'default' or a value for every model")


def _external_folder(p: dict[str, Any]) -> None:
    root = p["external_data_root"]
    if root is None:
        return
    if not Path(root).is_dir():
        raise ParameterError(f"external_data_root: folder {root} does not exist")
    if p["external_dataset"] == "auto":  # a folder of no known layout is refused now, not in notebook 07
        try:
            detect_layout(root)
        except DatasetError as err:
            raise ParameterError(f"external_data_root: {err}") from None


def _ray_installed(p: dict[str, Any]) -> None:
    if p["executor"] == "ray":  # refused before any notebook runs, naming the extra
        from .executor import import_ray  # noqa: PLC0415 - the executor module imports torch; only for ray
        import_ray()


#: Checks between parameters, run in order after every value passed its own check.
RELATIONS: tuple[Callable[[dict[str, Any]], None], ...] = (
    _data_root_exists, _models_fit_image_size, _every_model_has_a_value, _external_folder, _ray_installed)


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
    # The same path on 2 CPU cores within an hour per dataset (measured: "paper_cpu" in docs/running.md): 64 px,
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
        "brain_tumor_figshare": "../shared/data/brain_tumor_figshare",
    }
    for profile in ("paper", "paper_cpu")
}




def profile_params(profile: str) -> dict[str, Any]:
    """The full parameter set of a named profile (defaults updated by the profile).

    Parameters
    ----------
    profile : str
        A key of :data:`PROFILES`.

    Returns
    -------
    dict

    Examples
    --------
    >>> profile_params("quick")["folds"], profile_params("demo")["folds"]
    (2, 3)
    """
    if profile not in PROFILES:
        raise ParameterError(
            f"profile: unknown profile {profile!r}; accepted values: {', '.join(sorted(PROFILES))}")
    params = copy.deepcopy(DEFAULTS)
    params.update(copy.deepcopy(PROFILES[profile]))
    return params


def resolve_params(values: dict[str, Any]) -> dict[str, Any]:
    """Validate notebook parameters and return them complete and normalised.

    Each value passes its :class:`Param`'s check (in the order of :data:`PARAMETERS`), then the
    checks between parameters run (:data:`RELATIONS`).

    Parameters
    ----------
    values : dict
        Parameter names to values. Missing names take their :data:`DEFAULTS`; names outside
        :data:`PARAMETERS` are an error.

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
    merged = {**copy.deepcopy(DEFAULTS), **copy.deepcopy(values)}
    p = {param.name: param.check(merged[param.name]) for param in PARAMETERS}
    for relation in RELATIONS:
        try:
            relation(p)
        except ParameterError:
            raise
        except ValueError as err:
            raise ParameterError(str(err)) from None
    return p


def check_against_prepared(params: dict[str, Any], prepared: dict[str, Any], where: str) -> None:
    """Refuse parameters that contradict the data notebook 01 prepared: the one check every later
    notebook (and :func:`xai_helpers.steps.load_prepared`) runs.

    The parameters marked ``prepared`` in :data:`PARAMETERS` (dataset, data_root, image_size,
    resize_mode, folds) are fixed by the prepared data; a later notebook run with other values
    would state a protocol that was never run. Other parameters may differ (training another subset
    of models is allowed). ``dataset='auto'`` matches any layout.

    Parameters
    ----------
    params : dict
        Resolved notebook parameters.
    prepared : dict
        What notebook 01 prepared with (a parameter missing from it is not checked).
    where : str
        The run folder, for the message.

    Raises
    ------
    ParameterError
        Naming the parameter, both values, and how to proceed.

    Examples
    --------
    >>> check_against_prepared({"image_size": 64, "folds": 3}, {"image_size": 64}, "runs/demo")  # agrees
    >>> check_against_prepared({"image_size": 128}, {"image_size": 64}, "runs/demo")
    Traceback (most recent call last):
    ...
    xai_helpers.errors.ParameterError: image_size: the run folder runs/demo holds data prepared with image_size=64, \
not 128; pass image_size=64, or rerun notebook 01 (or use another run_dir) to prepare the data anew
    """
    for param in PARAMETERS:
        if not param.prepared or param.name not in prepared or param.name not in params:
            continue
        have, asked = prepared[param.name], params[param.name]
        if param.name == "dataset" and asked == "auto":
            continue
        if have is not None and str(have) != str(asked):
            raise ParameterError(f"{param.name}: the run folder {where} holds data prepared with {param.name}={have!r},"
                                 f" not {asked!r}; pass {param.name}={have!r}, or rerun notebook 01 (or use another "
                                 f"run_dir) to prepare the data anew")


#: The first lines of every notebook's ``parameters`` cell.
PARAMETERS_CELL_HEADER = (
    "# Parameters (papermill injects overrides after this cell; names shared by every notebook,\n"
    "# documented in docs/running.md). Defaults: the 'demo' profile on the embedded synthetic dataset.")


def parameters_cell() -> str:
    """The source of every notebook's ``parameters`` cell: one line per :data:`PARAMETERS` row.

    Returns
    -------
    str

    Examples
    --------
    >>> parameters_cell().splitlines()[2:4]
    ["dataset = 'synthetic'", "data_root = 'data/synthetic'"]
    """
    return "\n".join([PARAMETERS_CELL_HEADER] + [f"{p.name} = {p.default!r}" for p in PARAMETERS])


def _shown(param: Param) -> str:
    if param.shown is not None:
        return param.shown
    value = param.default
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, (list, dict)):
        return "`" + yaml.safe_dump(value, default_flow_style=True, sort_keys=False).strip() + "`"
    return f"`{value}`"


def parameter_table_markdown() -> str:
    """The parameter table of ``docs/running.md`` (``parameter | default (demo) | meaning``), from :data:`PARAMETERS`.

    Returns
    -------
    str

    Examples
    --------
    >>> parameter_table_markdown().splitlines()[2]
    '| `dataset` | `synthetic` | `auto` (detect from `data_root`) or a layout: `synthetic`, `brain_tumor_mri`, \
`brain_tumor_mri_nickparvar`, `skin_cancer_isic`, `ham10000`, `chest_xray_pneumonia`, `brain_tumor_figshare`, \
`imagefolder` |'
    """
    rows = ["| parameter | default (demo) | meaning |", "|---|---|---|"]
    rows += [f"| `{p.name}` | {_shown(p)} | {p.doc} |" for p in PARAMETERS]
    return "\n".join(rows)


def write_parameter_cells(folder: str | Path) -> list[Path]:
    """Rewrite the ``parameters`` cell of every paired notebook script ``NN_*.py`` in ``folder`` from the
    table (``make notebooks`` runs this, then jupytext updates the ``.ipynb`` files).

    Parameters
    ----------
    folder : path

    Returns
    -------
    list of pathlib.Path
        The scripts that changed.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "01_x.py").write_text('# %% tags=["parameters"]\\nseed = 5\\n\\n# %%\\nprint(seed)\\n')
    >>> [p.name for p in write_parameter_cells(d)], "seed = 0" in (d / "01_x.py").read_text()
    (['01_x.py'], True)
    """
    cell = re.compile(r'(# %% tags=\["parameters"\]\n)(.*?)(\n(?=# %%)|\Z)', re.S)
    changed = []
    for script in sorted(Path(folder).glob("[0-9][0-9]_*.py")):
        text = script.read_text()
        new = cell.sub(lambda m: m.group(1) + parameters_cell() + m.group(3), text, count=1)
        if new != text:
            script.write_text(new)
            changed.append(script)
    return changed

