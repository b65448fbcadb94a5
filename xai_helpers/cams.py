"""Class activation maps: five methods from one forward and one backward pass.

GradCAM, GradCAM++, XGradCAM, EigenGradCAM and LayerCAM are all functions of the same two
tensors of the target layer: its activations ``A`` and the gradient ``G`` of the target class's
logit with respect to them. :func:`compute_cams` runs the model once, takes ``G`` with
``torch.autograd.grad`` only down to the target layer, and evaluates every requested method on
the model's device. Each method is a small pure function ``(A, G) -> raw map`` registered by
name (:func:`register_method`), the same shape as pytorch-grad-cam's ``get_cam_weights``
one level down; one engine does the pass, the ReLU, the scaling and the resizing, exactly as
pytorch-grad-cam 1.5 does (min-max per image, bilinear resize, min-max again), so the maps equal
the library's.

Any other pytorch-grad-cam method (``scorecam``, ``hirescam``, ``ablationcam``, ``fullgrad``,
``eigencam``, ...) goes through the same function by delegating to the library.

Note: at ResNet50's ``layer4`` the gradient is spatially constant (global average pooling then
a linear layer), so GradCAM and XGradCAM give the same map there; pick an earlier layer
(``layer3``, ``layer2``) to see the methods differ.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.models as tvm
from torch import nn

from .models import DEFAULT_TARGET_LAYERS, get_layer
from .errors import LayerModifiedInPlaceError

MethodFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
_METHODS: dict[str, MethodFn] = {}

#: pytorch-grad-cam methods :func:`compute_cams` delegates to the library (see :func:`_library_methods`).
_LIBRARY_METHOD_NAMES = ("scorecam", "hirescam", "ablationcam", "fullgrad", "eigencam", "gradcamelementwise",
                         "randomcam", "kpca_cam", "shapleycam")

#: The study's five methods, in the order the notebooks show them.
STUDY_METHODS = ("gradcam", "gradcam++", "xgradcam", "eigengradcam", "layercam")


#: How figures and tables name the methods (a registered method without an entry is shown by its key).
METHOD_LABELS = {"gradcam": "GradCAM", "gradcam++": "GradCAM++", "xgradcam": "XGradCAM",
                 "eigengradcam": "EigenGradCAM", "layercam": "LayerCAM",
                 "eigengradcam_signed": "EigenGradCAM (sign-corrected)"}


def method_label(name: str) -> str:
    """The method's name as the literature writes it, for figures and tables.

    Parameters
    ----------
    name : str
        A method key (``'gradcam++'``).

    Returns
    -------
    str
        Its label (``'GradCAM++'``), or ``name`` itself for a method without one.

    Examples
    --------
    >>> [method_label(m) for m in STUDY_METHODS]
    ['GradCAM', 'GradCAM++', 'XGradCAM', 'EigenGradCAM', 'LayerCAM']
    >>> method_label("my_cam")
    'my_cam'
    """
    return METHOD_LABELS.get(name, name)


def register_method(name: str) -> Callable[[MethodFn], MethodFn]:
    """Register ``fn(A, G) -> (B, h, w)`` raw map (before ReLU and scaling) under ``name``.

    A name that is already registered (or one of the pytorch-grad-cam methods delegated to the
    library) is refused: replacing a method silently would change every map computed under that
    name. :func:`unregister_method` removes one.

    Parameters
    ----------
    name : str
        The method's key for :func:`compute_cams` (``methods=[name]``).

    Returns
    -------
    callable
        A decorator that registers ``fn`` and returns it unchanged.

    Raises
    ------
    ValueError
        When ``name`` is taken.

    Examples
    --------
    >>> @register_method("gradient_x_activation")
    ... def _gxa(A, G):
    ...     return (G * A).sum(dim=1)
    >>> "gradient_x_activation" in available_methods()
    True
    >>> register_method("gradcam")(_gxa)
    Traceback (most recent call last):
    ...
    ValueError: name: a CAM method 'gradcam' is already registered; choose another name
    >>> unregister_method("gradient_x_activation")
    >>> "gradient_x_activation" in available_methods()
    False
    """
    if name in _METHODS or name in _LIBRARY_METHOD_NAMES:
        raise ValueError(f"name: a CAM method {name!r} is already registered; choose another name")

    def deco(fn: MethodFn) -> MethodFn:
        if name in _METHODS:
            raise ValueError(f"name: a CAM method {name!r} is already registered; choose another name")
        _METHODS[name] = fn
        return fn
    return deco


def unregister_method(name: str) -> None:
    """Remove a method registered with :func:`register_method` (the built-in ones stay)."""
    if name in STUDY_METHODS or name == "eigengradcam_signed":
        raise ValueError(f"name: {name!r} is a built-in method and cannot be removed")
    if name not in _METHODS:
        raise ValueError(f"name: no registered method {name!r}")
    del _METHODS[name]


def _weighted_sum(weights: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    return (weights[:, :, None, None] * A).sum(dim=1)


def gradcam_weights(A: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """GradCAM's channel weights ``(B, C)``: the spatial mean of the gradient."""
    return G.mean(dim=(2, 3))


@register_method("gradcam")
def gradcam(A: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """GradCAM (Selvaraju et al. 2017): channel weights = spatial mean of the gradient."""
    return _weighted_sum(gradcam_weights(A, G), A)


def gradcam_plus_plus_weights(A: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """GradCAM++'s channel weights ``(B, C)``: positive gradients weighted per position by alpha."""
    g2 = G * G
    g3 = g2 * G
    sum_a = A.sum(dim=(2, 3), keepdim=True)
    aij = g2 / (2 * g2 + sum_a * g3 + 1e-6)
    aij = torch.where(G != 0, aij, torch.zeros_like(aij))
    return (G.clamp(min=0) * aij).sum(dim=(2, 3))


@register_method("gradcam++")
def gradcam_plus_plus(A: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """GradCAM++ (Chattopadhay et al. 2018), eq. 19 with exp-gradient approximation, as the library."""
    return _weighted_sum(gradcam_plus_plus_weights(A, G), A)


def xgradcam_weights(A: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """XGradCAM's channel weights ``(B, C)``: the gradient averaged with the normalised activations."""
    sum_a = A.sum(dim=(2, 3), keepdim=True)
    return (G * A / (sum_a + 1e-7)).sum(dim=(2, 3))


@register_method("xgradcam")
def xgradcam(A: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """XGradCAM (Fu et al. 2020): gradients weighted by normalised activations."""
    return _weighted_sum(xgradcam_weights(A, G), A)


@register_method("layercam")
def layercam(A: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """LayerCAM (Jiang et al. 2021): element-wise positive gradient times activation."""
    return (G.clamp(min=0) * A).sum(dim=1)


def _first_components(X: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per image: the projection ``(B, hw)`` of the centred ``(hw, C)`` features on their first principal
    component, and that component ``(B, C)`` (a direction over channels), as pytorch-grad-cam computes it."""
    b, c, h, w = X.shape
    flat = np.nan_to_num(X.detach().cpu().numpy()).reshape(b, c, h * w).transpose(0, 2, 1)  # (B, hw, C)
    proj = np.empty((b, h * w), dtype=np.float32)
    components = np.empty((b, c), dtype=np.float32)
    for i, acts in enumerate(flat):
        centred = acts - acts.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=True)
        proj[i] = centred @ vt[0, :]
        components[i] = vt[0, :]
    return proj, components


def first_component_projection(X: torch.Tensor, sign_correction: bool = False) -> torch.Tensor:
    """Project each image's ``(C, h, w)`` features on their first principal component.

    Exactly pytorch-grad-cam's ``get_2d_projection``: the features are centred over positions and
    decomposed with numpy's float32 SVD (``full_matrices=True``), so the sign of the singular
    vector, which an SVD leaves arbitrary, is the one LAPACK gives the library. With
    ``sign_correction`` the map is then flipped when ``|min| > |max|`` (the library's
    ``get_2d_projection_with_sign_correction``, Chung & Ying 2025), which makes the salient
    region positive whatever LAPACK returned.

    Examples
    --------
    >>> X = torch.zeros(1, 2, 2, 2); X[0, 0, 0, 0] = 4.0
    >>> first_component_projection(X, sign_correction=True).amax().item() > 0
    True
    """
    b, c, h, w = X.shape
    proj, _ = _first_components(X)
    out = torch.from_numpy(proj.reshape(b, h, w)).to(X.device)
    if sign_correction:
        flip = out.amin(dim=(1, 2)).abs() > out.amax(dim=(1, 2)).abs()
        out = torch.where(flip[:, None, None], -out, out)
    return out


@register_method("eigengradcam")
def eigengradcam(A: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """EigenGradCAM, pytorch-grad-cam's map: first principal component of ``G * A``, its sign as
    the library's numpy SVD returns it (the salient region may come out negative and vanish in
    the ReLU; ``eigengradcam_signed`` corrects that)."""
    return first_component_projection(G * A)


@register_method("eigengradcam_signed")
def eigengradcam_signed(A: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """EigenGradCAM with the library's sign correction (salient region made positive): the
    documented corrected variant, not the study's map."""
    return first_component_projection(G * A, sign_correction=True)


def channel_weights(A: torch.Tensor, G: torch.Tensor) -> dict[str, np.ndarray]:
    """How much each channel of the target layer counts in each of the study's five maps: ``(B, C)`` per method.

    GradCAM, GradCAM++ and XGradCAM weight whole channels: their maps are ``Σ_c w_c·A_c`` and these are the
    ``w_c``. The other two have no single weight per channel, so what is returned is the closest thing, said
    in the figure: for EigenGradCAM the first principal component over channels of ``G⊙A`` (the map is the
    projection of ``G⊙A`` on it, its sign as the SVD returns it), for LayerCAM the spatial mean of its
    per-position weights ``ReLU(G)``.

    Parameters
    ----------
    A, G : (B, C, h, w) tensors
        The target layer's activations and the gradient of the explained logit
        (:func:`forward_with_layer`).

    Returns
    -------
    dict
        Method (the study's five) -> ``(B, C)`` float32 array.

    Examples
    --------
    >>> A, G = torch.rand(1, 4, 3, 3), torch.randn(1, 4, 3, 3)
    >>> w = channel_weights(A, G)
    >>> list(w) == list(STUDY_METHODS), w["gradcam"].shape
    (True, (1, 4))
    >>> bool(torch.allclose(_weighted_sum(torch.from_numpy(w["xgradcam"]), A), xgradcam(A, G), atol=1e-6))
    True
    """
    _, components = _first_components(G * A)
    weights = {"gradcam": gradcam_weights(A, G), "gradcam++": gradcam_plus_plus_weights(A, G),
               "xgradcam": xgradcam_weights(A, G), "eigengradcam": torch.from_numpy(components),
               "layercam": G.clamp(min=0).mean(dim=(2, 3))}
    return {m: w.detach().cpu().numpy().astype(np.float32) for m, w in weights.items()}


def _library_methods() -> dict[str, type]:
    import pytorch_grad_cam as pgc  # noqa: PLC0415 - the library (and cv2 with it) only for delegated methods

    classes = {"scorecam": pgc.ScoreCAM, "hirescam": pgc.HiResCAM, "ablationcam": pgc.AblationCAM,
               "fullgrad": pgc.FullGrad, "eigencam": pgc.EigenCAM, "gradcamelementwise": pgc.GradCAMElementWise,
               "randomcam": pgc.RandomCAM, "kpca_cam": pgc.KPCA_CAM, "shapleycam": pgc.ShapleyCAM}
    return {name: classes[name] for name in _LIBRARY_METHOD_NAMES}


def available_methods() -> list[str]:
    """Names :func:`compute_cams` accepts: the single-pass methods, then the delegated ones.

    Returns
    -------
    list of str
        The registered methods (the study's five, ``eigengradcam_signed`` and any added with
        :func:`register_method`), then pytorch-grad-cam's other methods by lower-case name.

    Examples
    --------
    >>> names = available_methods()
    >>> set(STUDY_METHODS) <= set(names[:6]), "eigengradcam_signed" in names[:6], "scorecam" in names
    (True, True, True)
    """
    return list(_METHODS) + [m for m in _library_methods() if m not in _METHODS]


def scale_maps(cams: torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
    """Min-max each map to [0, 1], resize bilinearly to ``size`` (H, W) and min-max again.

    The same steps as pytorch-grad-cam's ``scale_cam_image`` + ``aggregate_multi_layers`` for
    one target layer (OpenCV's bilinear resize uses half-pixel centres, as
    ``align_corners=False`` does).
    """
    def minmax(t: torch.Tensor) -> torch.Tensor:
        t = t - t.amin(dim=(1, 2), keepdim=True)
        return t / (1e-7 + t.amax(dim=(1, 2), keepdim=True))

    cams = minmax(cams.float())
    if size is not None and tuple(cams.shape[-2:]) != tuple(size):
        cams = F.interpolate(cams[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    return minmax(cams.clamp(min=0))


def model_arch(model: nn.Module) -> str | None:
    """Which of the four CNNs ``model`` is (by its torchvision class), or None."""
    for cls, name in ((tvm.ResNet, "resnet50"), (tvm.DenseNet, "densenet121"), (tvm.VGG, "vgg16"),
                      (tvm.EfficientNet, "efficientnet_b0")):
        if isinstance(model, cls):
            return name
    return None


def resolve_target_layer(model: nn.Module, target_layer: str | nn.Module | None) -> tuple[nn.Module, str]:
    """The target module and its name: None/'default' -> the architecture's default layer."""
    if isinstance(target_layer, nn.Module):
        for name, mod in model.named_modules():
            if mod is target_layer:
                return mod, name
        raise ValueError("target_layer: the module given is not part of the model")
    if target_layer in (None, "default"):
        arch = model_arch(model)
        if arch is None:
            raise ValueError("target_layer: not one of the four CNNs; name the layer explicitly")
        target_layer = DEFAULT_TARGET_LAYERS[arch]
    return get_layer(model, target_layer), str(target_layer)


def forward_with_layer(model: nn.Module, x: torch.Tensor, layer: nn.Module,
                       targets: torch.Tensor | None, need_gradients: bool = True):
    """One forward (and backward to ``layer``): ``(activations, gradients, logits, targets)``.

    The part of the network before ``layer`` runs without autograd (nothing recorded, no parameter
    gradient ever computed); ``layer``'s output becomes a fresh leaf that requires grad, and the
    rest of the forward is recorded from there. ``gradients`` is d(logit of the target
    class)/d(activations), summed over the batch (each image's logit depends on its own
    activations only), or None without ``need_gradients``.
    """
    store: dict[str, torch.Tensor] = {}

    def hook(module, inputs, output):
        if need_gradients:
            output = output.detach().requires_grad_(True)
            torch.set_grad_enabled(True)  # record from here on; restored after the forward
        store["a"] = output
        store["version"] = output._version
        return output

    handle = layer.register_forward_hook(hook)
    grad_mode = torch.is_grad_enabled()
    torch.set_grad_enabled(False)
    try:
        logits = model(x)
    except RuntimeError as err:
        if "leaf Variable that requires grad" in str(err) and "in-place" in str(err):
            raise LayerModifiedInPlaceError(_IN_PLACE_MESSAGE) from None
        raise
    finally:
        torch.set_grad_enabled(grad_mode)
        handle.remove()
    if "a" not in store:
        raise ValueError("target_layer: the layer was not called in the forward pass")
    A = store["a"]
    if A._version != store["version"]:
        raise LayerModifiedInPlaceError(_IN_PLACE_MESSAGE)
    if targets is None:
        targets = logits.argmax(dim=1)
    targets = torch.as_tensor(targets, device=logits.device, dtype=torch.long)
    G = None
    if need_gradients:
        score = logits.gather(1, targets[:, None]).sum()
        (G,) = torch.autograd.grad(score, A)
        A = A.detach()
    return A, G, logits.detach(), targets


_IN_PLACE_MESSAGE = ("target_layer: its output is modified in place later in the forward pass (e.g. by an "
                     "in-place ReLU), so its activations cannot be read back; choose the layer after that "
                     "operation (see xai_helpers.models.DEFAULT_TARGET_LAYERS)")


def compute_cams(model: nn.Module, images: torch.Tensor | np.ndarray,
                 methods: Sequence[str] = STUDY_METHODS, target_layer: str | nn.Module | None = None,
                 targets: Sequence[int] | None = None, batch_size: int = 32,
                 as_numpy: bool = True):
    """Class activation maps of several methods from one forward/backward pass per batch.

    Parameters
    ----------
    model : torch.nn.Module
        A classifier; put in eval mode for the call (its mode is restored after).
    images : (B, 3, H, W) tensor or array
        Normalised input batch (moved to the model's device).
    methods : sequence of str
        Names from :func:`available_methods`: ``gradcam``, ``gradcam++``, ``xgradcam``,
        ``eigengradcam``, ``eigengradcam_signed``, ``layercam`` from the single pass; other
        pytorch-grad-cam methods (``scorecam``, ``hirescam``, ...) through the library.
    target_layer : str or module, optional
        Layer to explain; default: the architecture's default (see :mod:`xai_helpers.models`).
    targets : sequence of int, optional
        Class index per image; None explains the predicted class. Maps explain the target
        class's logit (the library's ``ClassifierOutputTarget``).
    batch_size : int
        Images per forward/backward pass.
    as_numpy : bool
        Return numpy arrays (default) or tensors on the model's device.

    Returns
    -------
    maps : dict
        Method name -> ``(B, H, W)`` float32 maps in [0, 1] at the input's resolution.
    probs : (B, K) array
        The model's softmax probabilities.

    Examples
    --------
    >>> import torchvision
    >>> model = torchvision.models.resnet50(num_classes=3)
    >>> maps, probs = compute_cams(model, torch.randn(2, 3, 64, 64), target_layer="layer2")
    >>> sorted(maps), maps["gradcam"].shape, probs.shape
    (['eigengradcam', 'gradcam', 'gradcam++', 'layercam', 'xgradcam'], (2, 64, 64), (2, 3))
    """
    unknown = [m for m in methods if m not in available_methods()]
    if unknown:
        raise ValueError(f"methods: unknown method(s) {unknown}; accepted values: {', '.join(available_methods())}")
    layer, _ = resolve_target_layer(model, target_layer)
    first = next(model.parameters())
    device = first.device
    # a float64 model (a numerical check) keeps float64 through the methods; anything else is float32
    dtype = torch.float64 if first.dtype == torch.float64 else torch.float32
    x_all = torch.as_tensor(images, dtype=dtype)
    if x_all.ndim != 4:
        raise ValueError(f"images: expected a (B, C, H, W) batch, got shape {tuple(x_all.shape)}")
    if targets is not None:
        targets = torch.as_tensor(np.asarray(targets), dtype=torch.long)
        if targets.shape != (x_all.shape[0],):
            raise ValueError(f"targets: expected one class index per image ({x_all.shape[0]}), "
                             f"got {tuple(targets.shape)}")
    size = tuple(x_all.shape[-2:])
    own = [m for m in methods if m in _METHODS]
    delegated = [m for m in methods if m not in _METHODS]
    was_training = model.training
    model.eval()
    out: dict[str, list[torch.Tensor]] = {m: [] for m in methods}
    probs: list[torch.Tensor] = []
    try:
        for i in range(0, x_all.shape[0], batch_size):
            x = x_all[i:i + batch_size].to(device)
            t = None if targets is None else targets[i:i + batch_size]
            A, G, logits, t = forward_with_layer(model, x, layer, t, need_gradients=bool(own))
            probs.append(torch.softmax(logits.float(), dim=1))
            for m in own:
                out[m].append(scale_maps(_METHODS[m](A.to(dtype), G.to(dtype)).clamp(min=0), size))
            del A, G
            for m in delegated:
                out[m].append(torch.as_tensor(_library_cam(model, x, layer, m, t), device=device))
    finally:
        model.train(was_training)
    maps = {m: torch.cat(v) for m, v in out.items()}
    prob = torch.cat(probs)
    if as_numpy:
        return {m: v.cpu().numpy().astype(np.float32) for m, v in maps.items()}, prob.cpu().numpy()
    return maps, prob


def _library_cam(model: nn.Module, x: torch.Tensor, layer: nn.Module, method: str,
                 targets: torch.Tensor) -> np.ndarray:
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: PLC0415 - as above

    cls = _library_methods()[method]
    cam = cls(model=model, target_layers=[layer])
    try:
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in targets])
    finally:
        cam.activations_and_grads.release()
