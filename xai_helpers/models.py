"""The four CNNs of the study (torchvision), their weights and their default CAM target layers.

Default target layers are chosen so that the layer's output is an activation's (GradCAM++'s
``alpha = 1 / (2 + S G)`` with ``S = sum A`` and XGradCAM's ``A / sum A`` assume ``A >= 0``: on signed
activations they flip sign or blow up), and never modified in place later in the forward pass (an
in-place op after the hooked layer changes the stored activations on the CPU, where ``.cpu()`` is a
no-op, but not on CUDA, where it copies):

========================  =========================  ============================================
model                     default target layer       why
========================  =========================  ============================================
``resnet50``              ``layer4``                 last bottleneck stage; its ReLU is inside the
                                                     block, the output goes straight to avgpool
``densenet121``           ``features.relu5``         the ReLU after ``features.norm5``, a module
                                                     here (:class:`DenseNetPostActivation`);
                                                     torchvision applies it as a function in
                                                     ``forward``, so no layer of its model is
                                                     post-activation at that depth: the
                                                     ``denseblock`` outputs are concatenations of
                                                     un-activated convolutions (signed)
``vgg16``                 ``features.29``            the in-place ReLU after the last convolution;
                                                     hooking the conv (``features.28``) would see
                                                     its output overwritten by that ReLU
``efficientnet_b0``       ``features.8``             the final 1x1 conv + BN + SiLU (not in place)
                                                     that feeds the pooling; SiLU's output is at
                                                     least -0.28, nearly non-negative
========================  =========================  ============================================

:data:`LAYER_ACTIVATIONS` says, for every layer the explorer offers, what its output's lower bound is;
the EfficientNet-B0 rows (SiLU) are flagged as nearly non-negative wherever they are shown.

All four downsample by 32, so their last feature map is ``image_size / 32`` on a side: at least
64 px are needed for a 2x2 map. Use :func:`feature_map_size` to check a layer and size.
"""
from __future__ import annotations

import os
import warnings
import functools
from pathlib import Path
from typing import Any, Sequence
from urllib.error import URLError

import pandas as pd
import torch
import torchvision
from torch import nn

from .checkpoints import read_checkpoint
from .errors import (CheckpointMismatchError, CorruptWeightsError, ParameterError, RunFolderError,
                     WeightsUnavailableError)

MODEL_NAMES = ("resnet50", "densenet121", "vgg16", "efficientnet_b0")

DEFAULT_TARGET_LAYERS = {
    "resnet50": "layer4",
    "densenet121": "features.relu5",
    "vgg16": "features.29",
    "efficientnet_b0": "features.8",
}

#: Layers the explorer offers per architecture (shallow to deep), none modified in place later, each the output of
#: an activation, one per resolution (56, 28, 14 and 7 px at 224 px): DenseNet121's are the ReLU that opens each
#: transition (its dense block's output, normalised and activated) and ``features.relu5``; EfficientNet-B0's are
#: the SiLU of the expansion convolution that opens the next stage, at the stage's resolution, and ``features.8``
#: (its MBConv stages end in a BatchNorm projection, no activation: signed).
CAM_LAYER_CHOICES = {
    "resnet50": ("layer1", "layer2", "layer3", "layer4"),
    "densenet121": ("features.transition1.relu", "features.transition2.relu", "features.transition3.relu",
                    "features.relu5"),
    "vgg16": ("features.8", "features.15", "features.22", "features.29"),
    "efficientnet_b0": ("features.3.0.block.0", "features.4.0.block.0", "features.6.0.block.0", "features.8"),
}

#: What bounds each offered layer's output from below: ``relu`` (>= 0, the assumption of GradCAM++ and XGradCAM
#: holds), ``silu`` (>= -0.2785, SiLU's minimum: nearly non-negative, flagged) or ``signed`` (no bound: a BatchNorm
#: or a convolution's output; the two methods' weights can flip sign). Layers not listed are ``signed``
#: (:func:`layer_activation`).
LAYER_ACTIVATIONS = {
    **{("resnet50", layer): "relu" for layer in CAM_LAYER_CHOICES["resnet50"]},
    **{("densenet121", layer): "relu" for layer in CAM_LAYER_CHOICES["densenet121"]},
    **{("vgg16", layer): "relu" for layer in CAM_LAYER_CHOICES["vgg16"]},
    **{("efficientnet_b0", layer): "silu" for layer in CAM_LAYER_CHOICES["efficientnet_b0"]},
}
#: The lower bound of each kind of :data:`LAYER_ACTIVATIONS` (SiLU's minimum, x sigmoid(x) at x = -1.2785).
ACTIVATION_LOWER_BOUNDS = {"relu": 0.0, "silu": -0.27846454, "signed": float("-inf")}

#: The layer after which each architecture has only global average pooling and one linear layer (so the gradient of
#: a logit is the same at every position of a channel, and GradCAM's and XGradCAM's maps are identical there); None
#: where something else comes between: VGG16's max pooling, 7x7 adaptive pooling and three linear layers after
#: ``features.29``.
POOLED_LINEAR_LAYERS = {
    "resnet50": "layer4",
    "densenet121": "features.relu5",
    "vgg16": None,
    "efficientnet_b0": "features.8",
}

# The classification head of each architecture: (parent module path, index or attribute).
_HEADS = {
    "resnet50": "fc",
    "densenet121": "classifier",
    "vgg16": "classifier.6",
    "efficientnet_b0": "classifier.1",
}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DenseNetPostActivation(torchvision.models.DenseNet):
    """torchvision's DenseNet with its last ReLU as a module, ``features.relu5``, so that a CAM can hook it.

    torchvision applies that ReLU as a function (in place) in ``forward``, after ``features.norm5``: the deepest
    post-activation output of the network then belongs to no module, and hooking ``features`` or ``norm5`` sees
    signed values. Here ``features`` ends in ``relu5`` and ``forward`` pools it directly: the same outputs, the
    same parameters and state dict (a ReLU has none), so every checkpoint loads either way.

    Examples
    --------
    >>> net = _torchvision_model("densenet121").eval()
    >>> type(net.features.relu5).__name__, "features.relu5.weight" in net.state_dict()
    ('ReLU', False)
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(out, 1))


def _torchvision_model(name: str) -> nn.Module:
    """torchvision's ``name`` without weights; DenseNet121's last ReLU a module (:class:`DenseNetPostActivation`)."""
    model = getattr(torchvision.models, name)(weights=None)
    if name == "densenet121":
        model.features.add_module("relu5", nn.ReLU())
        model.__class__ = DenseNetPostActivation
    return model


def layer_activation(name: str, layer: str) -> str:
    """What bounds ``layer``'s output of ``name`` from below: ``'relu'``, ``'silu'`` or ``'signed'``
    (:data:`LAYER_ACTIVATIONS`; ``'default'`` is the architecture's default layer).

    Examples
    --------
    >>> layer_activation("resnet50", "layer2"), layer_activation("efficientnet_b0", "features.8")
    ('relu', 'silu')
    >>> layer_activation("densenet121", "features.denseblock4")  # a concatenation of convolutions
    'signed'
    """
    layer = DEFAULT_TARGET_LAYERS.get(name, layer) if layer in (None, "default") else layer
    return LAYER_ACTIVATIONS.get((name, layer), "signed")


def activation_note(name: str, layer: str) -> str:
    """A flag for tables and the explorer: ``''`` for a layer after a ReLU, else what GradCAM++ and XGradCAM
    assume and this layer does not quite give.

    Examples
    --------
    >>> activation_note("resnet50", "layer4")
    ''
    >>> activation_note("efficientnet_b0", "features.8")
    'SiLU output (>= -0.28): nearly non-negative'
    """
    kind = layer_activation(name, layer)
    return {"relu": "", "silu": "SiLU output (>= -0.28): nearly non-negative",
            "signed": "signed activations: GradCAM++ and XGradCAM assume A >= 0"}[kind]


def _check_name(name: str) -> None:
    if name not in MODEL_NAMES:
        raise ValueError(f"model: unknown model {name!r}; accepted values: {', '.join(MODEL_NAMES)}")


def _replace_head(model: nn.Module, name: str, num_classes: int) -> None:
    path = _HEADS[name]
    parent_path, _, attr = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    old = parent[int(attr)] if attr.isdigit() else getattr(parent, attr)
    new = nn.Linear(old.in_features, num_classes)
    if attr.isdigit():
        parent[int(attr)] = new
    else:
        setattr(parent, attr, new)


def head_parameters(model: nn.Module, name: str) -> list[nn.Parameter]:
    """The parameters of the classification head (trainable while the backbone is frozen)."""
    return list(model.get_submodule(_HEADS[name]).parameters())


def set_backbone_trainable(model: nn.Module, name: str, trainable: bool) -> None:
    """Freeze (``trainable=False``) or unfreeze every parameter outside the head."""
    head = {id(p) for p in head_parameters(model, name)}
    for p in model.parameters():
        if id(p) not in head:
            p.requires_grad_(trainable)


def imagenet_weights_file(name: str) -> Path:
    """Where torchvision looks for the ImageNet checkpoint of ``name`` before downloading it."""
    weights = torchvision.models.get_model_weights(name).DEFAULT
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)


def _imagenet_state_dict(name: str) -> dict[str, torch.Tensor]:
    weights = torchvision.models.get_model_weights(name).DEFAULT
    target = imagenet_weights_file(name)
    try:
        return weights.get_state_dict(progress=False)
    except Exception as err:  # noqa: BLE001 - sorted below: a broken local file, or no download
        if target.exists() and not isinstance(err, URLError):
            raise CorruptWeightsError(
                f"{target}: the ImageNet weights file of {name} in the torch hub folder cannot be loaded "
                f"({type(err).__name__}: {err}); it is probably truncated or corrupt. Delete it, and it is "
                f"downloaded again (or put a good copy of {weights.url} there)") from err
        if not isinstance(err, (URLError, OSError, RuntimeError)):
            raise
        raise WeightsUnavailableError(
            f"ImageNet weights for {name} could not be downloaded ({type(err).__name__}: {err}). "
            f"Offline, download {weights.url} elsewhere and put it at {target} "
            f"(the torch hub checkpoint folder; set TORCH_HOME to move it), or pass weights='none' "
            f"to train from scratch, or weights='<path to a checkpoint>'.") from err


def resolve_weights(name: str, weights: str | os.PathLike | None) -> str:
    """The weights a fit of ``name`` will actually use.

    ``'auto'`` becomes ``'imagenet'`` when torchvision's ImageNet weights of ``name`` can be
    loaded (from the torch hub folder, or downloaded into it) and ``'none'`` otherwise, with a
    warning that names the file to place for next time; any other value is returned as given.

    Examples
    --------
    >>> resolve_weights("resnet50", "none")
    'none'
    """
    if weights is None:
        return "none"
    if weights != "auto":
        return str(weights)
    _check_name(name)
    try:
        _imagenet_state_dict(name)
    except WeightsUnavailableError as err:
        warnings.warn(f"weights='auto': {err} Training {name} from scratch instead.", stacklevel=2)
        return "none"
    return "imagenet"


def build_model(name: str, num_classes: int, weights: str | os.PathLike | None = "none") -> nn.Module:
    """Build one of the four CNNs with a new head for ``num_classes`` classes.

    Parameters
    ----------
    name : {'resnet50', 'densenet121', 'vgg16', 'efficientnet_b0'}
    num_classes : int
        Classes of the new head.
    weights : 'none', 'imagenet' or path
        ``'none'`` trains from scratch; ``'imagenet'`` loads torchvision's ImageNet weights
        (downloaded into the torch hub folder, or taken from there when already present;
        offline without the file it raises :class:`WeightsUnavailableError` saying which file to
        put where); a path loads a checkpoint written by :mod:`xai_helpers.training` (or a plain
        state dict) whose architecture and class count must match.

    Returns
    -------
    torch.nn.Module
        The model, in train mode, on the CPU.

    Examples
    --------
    >>> m = build_model("resnet50", num_classes=3)
    >>> m.fc.out_features
    3
    """
    _check_name(name)
    if num_classes < 2:
        raise ValueError(f"num_classes: at least 2 classes are needed, got {num_classes}")
    model = _torchvision_model(name)
    if weights in (None, "none"):
        _replace_head(model, name, num_classes)
        return model
    if weights == "imagenet":
        model.load_state_dict(_imagenet_state_dict(name))
        _replace_head(model, name, num_classes)
        return model
    _replace_head(model, name, num_classes)
    load_weights(model, name, weights, num_classes)
    return model


def load_weights(model: nn.Module, name: str, path: str | os.PathLike, num_classes: int) -> dict[str, Any]:
    """Load a checkpoint file into ``model``, checking architecture and class count.

    Returns the checkpoint's metadata (empty for a plain state dict).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights: checkpoint file {path} does not exist")
    ckpt = read_checkpoint(path)
    meta: dict[str, Any] = {}
    state = ckpt
    if isinstance(ckpt, dict) and "model_state" in ckpt:
        meta = {k: v for k, v in ckpt.items() if k != "model_state"}
        state = ckpt["model_state"]
        arch = meta.get("arch")
        if arch is not None and arch != name:
            raise CheckpointMismatchError(
                f"{path}: checkpoint is a {arch}, not a {name}; build a {arch} to load it")
        classes = meta.get("class_names")
        if classes is not None and len(classes) != num_classes:
            raise CheckpointMismatchError(
                f"{path}: checkpoint has {len(classes)} classes ({', '.join(classes)}), "
                f"the model {num_classes}")
    head_key = _HEADS[name] + ".weight"
    if head_key in state and state[head_key].shape[0] != num_classes:
        raise CheckpointMismatchError(
            f"{path}: checkpoint head has {state[head_key].shape[0]} classes, the model {num_classes}")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointMismatchError(
            f"{path}: checkpoint does not fit {name} (missing keys: {missing[:3]}..., "
            f"unexpected keys: {unexpected[:3]}...); is it from another architecture?")
    return meta


def default_target_layer(name: str) -> str:
    """Name of the default CAM target layer of ``name`` (see the module docstring)."""
    _check_name(name)
    return DEFAULT_TARGET_LAYERS[name]


def get_layer(model: nn.Module, layer: str) -> nn.Module:
    """The submodule called ``layer`` (dotted path, e.g. ``'layer4'`` or ``'features.29'``)."""
    try:
        return model.get_submodule(layer)
    except AttributeError:
        names = [n for n, _ in model.named_children()]
        raise ParameterError(f"cam_layer: model has no layer {layer!r}; top-level layers: {', '.join(names)}") from None


@functools.lru_cache(maxsize=256)
def feature_map_size(name: str, image_size: int, layer: str | None = None) -> tuple[int, int]:
    """Spatial size of ``layer``'s output for a square input, computed without any arithmetic work.

    The model is built on PyTorch's ``meta`` device, so no memory is used even for VGG16; the answer
    is cached per ``(name, image_size, layer)``.
    """
    _check_name(name)
    layer = layer or DEFAULT_TARGET_LAYERS[name]
    with torch.device("meta"):
        model = _torchvision_model(name)
    shape: list[int] = []
    handle = get_layer(model, layer).register_forward_hook(lambda m, i, o: shape.extend(o.shape[-2:]))
    try:
        with torch.no_grad():
            model.eval()(torch.empty(1, 3, image_size, image_size, device="meta"))
    except RuntimeError as err:
        raise ParameterError(f"image_size: {image_size} px is too small for {name} ({err})") from None
    finally:
        handle.remove()
    return int(shape[0]), int(shape[1])


def comparable_layer(name: str, image_size: int, reference_model: str, reference_layer: str) -> str:
    """The target layer of ``name`` whose map has the resolution of ``reference_model``'s ``reference_layer``.

    Notebook 05 explains every CNN, each at a layer of comparable resolution, so that the maps of
    different architectures are compared at the same coarseness (a 7x7 map cannot point as finely as a
    14x14 one). The rule: among ``name``'s :data:`CAM_LAYER_CHOICES`, the deepest whose output has the
    reference layer's spatial size at ``image_size``; when none has, the one nearest in size (ties: the
    deeper). ``reference_layer`` ``'default'`` is the reference model's default layer. For the reference
    model itself, its own layer.

    Parameters
    ----------
    name : str
        One of :data:`MODEL_NAMES`.
    image_size : int
        Side of the square input in pixels.
    reference_model, reference_layer : str
        The explained model and layer the others follow (``cam_model``, ``cam_layer``).

    Returns
    -------
    str
        A module name of ``name``.

    Examples
    --------
    >>> [comparable_layer(m, 64, "resnet50", "layer2") for m in MODEL_NAMES]
    ['layer2', 'features.transition2.relu', 'features.22', 'features.4.0.block.0']
    >>> [comparable_layer(m, 224, "resnet50", "default") for m in MODEL_NAMES]  # VGG16 has no 7x7 choice
    ['layer4', 'features.relu5', 'features.29', 'features.8']
    """
    _check_name(name)
    _check_name(reference_model)
    if reference_layer in (None, "default"):
        reference_layer = DEFAULT_TARGET_LAYERS[reference_model]
    if name == reference_model:
        return reference_layer
    target = feature_map_size(reference_model, image_size, reference_layer)[0]
    choices = CAM_LAYER_CHOICES[name]
    sizes = [feature_map_size(name, image_size, layer)[0] for layer in choices]
    # deepest first, so that ties go to the deeper layer
    best = min(reversed(range(len(choices))), key=lambda i: abs(sizes[i] - target))
    return choices[best]


def explained_models(cam_model: str, cam_layer: str, cam_models: str | Sequence[str], models: Sequence[str],
                     image_size: int, trained: Sequence[str]) -> list[tuple[str, str]]:
    """The CNNs notebook 05 explains, each with its target layer: ``cam_model`` at ``cam_layer`` first,
    then every CNN of ``cam_models`` at the layer of the same resolution (:func:`comparable_layer`).

    Parameters
    ----------
    cam_model, cam_layer : str
        The study's explained model and its layer.
    cam_models : 'all' or sequence of str
        The other CNNs to explain (``'all'``: every trained one of ``models``).
    models : sequence of str
        The CNNs of the run, in order.
    image_size : int
    trained : sequence of str
        The models with fold rows in ``metrics.csv``.

    Returns
    -------
    list of (model, layer)

    Raises
    ------
    RunFolderError
        When ``cam_model``, or a CNN named in ``cam_models``, has not been trained.

    Examples
    --------
    >>> trained = ["resnet50", "vgg16", "efficientnet_b0", "baseline_hgb"]
    >>> explained_models("resnet50", "layer2", "all", ["vgg16", "resnet50", "efficientnet_b0"], 64, trained)
    [('resnet50', 'layer2'), ('vgg16', 'features.22'), ('efficientnet_b0', 'features.4.0.block.0')]
    >>> explained_models("resnet50", "layer2", [], ["resnet50"], 64, ["resnet50"])
    [('resnet50', 'layer2')]
    """
    trained = set(trained)
    if cam_model not in trained:
        raise RunFolderError(f"metrics.csv: no trained {cam_model}; run notebook 02 with {cam_model} in models "
                             f"first")
    wanted = [m for m in models if m in trained] if cam_models == "all" else list(cam_models)
    missing = [m for m in wanted if m not in trained]
    if missing:
        raise RunFolderError(f"metrics.csv: cam_models {missing} have not been trained; run notebook 02 with them "
                             f"in models, or leave them out of cam_models")
    names = [cam_model] + [m for m in wanted if m != cam_model]
    return [(m, comparable_layer(m, image_size, cam_model, cam_layer)) for m in names]


def check_image_size(name: str, image_size: int) -> None:
    """Raise ``ValueError`` when ``name``'s last feature map would be under 2x2 at ``image_size``."""
    last = {"resnet50": "layer4", "densenet121": "features", "vgg16": "features",
            "efficientnet_b0": "features"}[name]
    h, w = feature_map_size(name, image_size, last)
    if h < 2 or w < 2:
        raise ParameterError(
            f"image_size: {image_size} px gives {name} a last feature map of {h}x{w}; "
            f"at least 2x2 is needed (64 px or more works for all four CNNs)")


def model_overview(names: list[str] | tuple[str, ...], image_size: int):
    """Parameters, last feature map and default CAM layer of each model at ``image_size``.

    Parameters
    ----------
    names : sequence of str
        Names of :data:`MODEL_NAMES`.
    image_size : int
        Side of the square input in pixels.

    Returns
    -------
    pandas.DataFrame
        Indexed by model: ``parameters (M)``, ``default CAM layer``, ``CAM map at this size``
        and the ``ImageNet weights file`` looked for offline.

    Examples
    --------
    >>> model_overview(["resnet50", "vgg16"], 224)[["parameters (M)", "CAM map at this size"]].values.tolist()
    [[25.6, '7x7'], [138.4, '14x14']]
    """

    rows = []
    for name in names:
        with torch.device("meta"):
            n_params = sum(p.numel() for p in getattr(torchvision.models, name)(weights=None).parameters())
        layer = DEFAULT_TARGET_LAYERS[name]
        rows.append({"model": name, "parameters (M)": round(n_params / 1e6, 1),
                     "default CAM layer": layer,
                     "CAM map at this size": "x".join(map(str, feature_map_size(name, image_size, layer))),
                     "ImageNet weights file": imagenet_weights_file(name).name})
    return pd.DataFrame(rows).set_index("model")
