"""Explanation metrics, per image, every method of a batch evaluated in batched forwards.

=============================  =================================================================
metric                         definition (per image; ``Y`` = softmax score of the target class on
                               the input, ``O`` = the same on the input multiplied by the map)
=============================  =================================================================
``confidence_increase``        ``O - Y``: the study's "confidence increase", pytorch-grad-cam's
                               ``CamMultImageConfidenceChange`` with ``ClassifierOutputSoftmaxTarget``
                               (the normalised input tensor is multiplied by the map, so where the map
                               is 0 the pixel becomes 0 of the normalised input: ImageNet's mean
                               colour, a warm grey; other fills: :data:`FILLS`)
``confidence_rising``          ``1 if O - Y > 0 else 0``: whether the score rises under that same
                               perturbation, pytorch-grad-cam's ``IncreaseInConfidence``; its mean
                               is the share of images whose score rises (``share_rising``)
``average_drop_pct``           ``100 * max(0, Y - O') / Y`` (Chattopadhay et al. 2018, "Average Drop"
                               is its mean; a rise counts as 0; relative, unlike the library's
                               ``DropInConfidence``), where ``O'`` is the score on the *image* in
                               [0, 1] multiplied by the map (black where the map is 0, then normalised
                               as usual), as the paper defines it (``E = L ∘ I``)
``increase_in_confidence_pct`` ``100 * [O' > Y]`` (Chattopadhay et al. 2018, "Increase in Confidence"
                               is its mean; the same black-fill ``O'``, a different perturbation from
                               ``confidence_rising``'s)
``deletion_auc``               area under the target score as the most salient pixels are removed
                               first (set to the fill: ImageNet's mean colour by default), Petsiuk et
                               al. 2018; ties in the map are removed in a seeded random order; lower is
                               better
``insertion_auc``              area under the score as the most salient pixels are inserted first
                               into a blurred copy, Petsiuk et al. 2018; ties in a seeded random
                               order; higher is better
``pointing_game``              1 if the map's maximum lies inside the lesion mask or strictly closer
                               than a tolerance to it (Zhang et al. 2018; TorchRay's ``d² < tol²``);
                               a constant map points nowhere: a miss. The tolerance is our
                               convention: Zhang et al.'s 15 px, taken as 15 px at 224 px and scaled
                               with the image size
``energy_in_mask``             share of the map's total mass inside the mask (Wang et al. 2020)
``iou``                        IoU of ``map >= 0.5`` and the mask
``mask_auroc``                 AUROC of the map's pixel values against the mask (threshold-free: the
                               probability that a lesion pixel outscores a background pixel; 0.5 is
                               chance), ties counted half
``road_morf``, ``road_lerf``   ROAD (Rong et al. 2022): the change of the score (after - before)
                               when the most (least) relevant pixels are removed and imputed by noisy
                               linear imputation, averaged over the percentiles; ``road_combined`` =
                               ``(road_lerf - road_morf) / 2`` (higher is better), as
                               pytorch-grad-cam's ``ROADCombined``
``randomisation_spearman``     model-parameter randomisation test (Adebayo et al. 2018): Spearman
                               correlation between the map of the trained model and of a copy with
                               every layer re-initialised (cascading, top to bottom); near 1 means
                               the map does not depend on what the model learnt (a failed check)
=============================  =================================================================

Masks: only images with a non-empty lesion mask get localisation scores (NaN otherwise). Every
localisation score is read against two maps that ignore the image (:func:`baseline_maps`): a centred
Gaussian (``centre_prior``: lesions and tumours often sit near the centre and cover much of it) and a
seeded uniform random map (``uniform_random``: its expected energy in the mask is the mask's area share).
"""
from __future__ import annotations

import copy
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from scipy.ndimage import distance_transform_edt
from scipy.stats import rankdata
from torch import nn

from .blur import gaussian_blur
from .cams import compute_cams
from .models import IMAGENET_MEAN, IMAGENET_STD
from .stats import paired_bootstrap

CONFIDENCE_METRICS = ("confidence_increase", "confidence_rising", "average_drop_pct", "increase_in_confidence_pct")
PERTURBATION_METRICS = ("deletion_auc", "insertion_auc", "road_morf", "road_lerf", "road_combined")
SANITY_METRICS = ("randomisation_spearman",)
LOCALISATION_METRICS = ("pointing_game", "energy_in_mask", "iou", "mask_auroc")
ALL_METRICS = CONFIDENCE_METRICS + PERTURBATION_METRICS + LOCALISATION_METRICS + SANITY_METRICS
ROAD_PERCENTILES = (10, 20, 30, 40, 50, 60, 70, 80, 90)
#: What a pixel removed by confidence increase and deletion becomes (``fill``):
#: ``imagenet_mean``: 0 of the normalised input, i.e. ImageNet's mean colour (0.485, 0.456, 0.406), a warm
#: grey: what pytorch-grad-cam's ``CamMultImageConfidenceChange`` and the study do (the default);
#: ``black``: 0 of the image in [0, 1]; ``dataset_mean``: the mean colour of the images being rated (per
#: channel); ``blur``: a Gaussian-blurred copy of the image (sigma a tenth of the side, as insertion's start).
FILLS = ("imagenet_mean", "black", "dataset_mean", "blur")


def fill_values(x: torch.Tensor, fill: str, mean: Sequence[float] = IMAGENET_MEAN,
                std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """What removed pixels become, in the normalised input's units: a tensor the shape of ``x``.

    Parameters
    ----------
    x : (B, 3, H, W) tensor
        Normalised images (``(image - mean) / std``).
    fill : str
        One of :data:`FILLS`.
    mean, std : sequence of 3 floats
        The normalisation of ``x``.

    Returns
    -------
    torch.Tensor
        A perturbed image is ``x * keep + fill_values(x, fill) * (1 - keep)``.

    Examples
    --------
    >>> x = torch.zeros(1, 3, 4, 4)                        # an image of ImageNet's mean colour
    >>> float(fill_values(x, "imagenet_mean").abs().max())
    0.0
    >>> [round(float(v), 3) for v in fill_values(x, "black")[0, :, 0, 0]]  # 0 in [0, 1]: -mean / std
    [-2.118, -2.036, -1.804]
    """
    if fill not in FILLS:
        raise ValueError(f"fill: unknown value {fill!r}; accepted values: {', '.join(FILLS)}")
    if fill == "imagenet_mean":
        return torch.zeros_like(x)
    mu = torch.as_tensor(mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    sd = torch.as_tensor(std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    if fill == "black":
        return ((0 - mu) / sd).expand_as(x).clone()
    if fill == "dataset_mean":
        return x.mean(dim=(0, 2, 3), keepdim=True).expand_as(x).clone()
    return gaussian_blur(x, max(1.0, x.shape[-1] / 10))


def relevance_rank(cam: np.ndarray, seed: int) -> np.ndarray:
    """Each pixel's rank in a map, most relevant first (0), pixels of equal value in a random order drawn from
    ``seed`` (as Rong et al.'s reference code does by adding tiny noise): the one tie-break of ROAD and of
    deletion/insertion.

    Parameters
    ----------
    cam : array
        A map (any shape).
    seed : int

    Returns
    -------
    numpy.ndarray
        Integer ranks of ``cam``'s shape.

    Examples
    --------
    >>> relevance_rank(np.array([[0.0, 1.0], [0.5, 0.0]]), seed=0)[[0, 1], [1, 0]].tolist()
    [0, 1]
    """
    cam = np.asarray(cam, dtype=np.float64)
    tie_break = np.random.default_rng(seed).permutation(cam.size)
    order = np.lexsort((tie_break, -cam.ravel()))  # most relevant first, ties in random order
    rank = np.empty(cam.size, dtype=np.int64)
    rank[order] = np.arange(cam.size)
    return rank.reshape(cam.shape)


@torch.no_grad()
def _target_scores(model: nn.Module, x: torch.Tensor, targets: torch.Tensor, batch_size: int) -> torch.Tensor:
    out = []
    for i in range(0, x.shape[0], batch_size):
        logits = model(x[i:i + batch_size])
        out.append(torch.softmax(logits.float(), dim=1).gather(1, targets[i:i + batch_size, None])[:, 0])
    return torch.cat(out)


def _as_tensor(a, device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a, device=device).float()


def confidence_metrics(model: nn.Module, images, maps: dict[str, np.ndarray], targets: Sequence[int],
                       batch_size: int = 16, probs: np.ndarray | None = None,
                       mean: Sequence[float] = IMAGENET_MEAN,
                       std: Sequence[float] = IMAGENET_STD,
                       fill: str = "imagenet_mean") -> dict[str, dict[str, np.ndarray]]:
    """Confidence increase and whether it is positive, average drop and increase in confidence, for every method.

    Two perturbations, two readings each:

    * ``confidence_increase`` = ``O - Y`` with ``O`` the score on ``x * map + fill * (1 - map)``; with the
      default ``fill='imagenet_mean'`` that is the normalised input tensor times the map (pytorch-grad-cam's
      ``CamMultImageConfidenceChange``, what the study reports). ``confidence_rising`` is 1 where that same
      change is positive, else 0 (pytorch-grad-cam's ``IncreaseInConfidence``, per image).
    * ``average_drop_pct`` and ``increase_in_confidence_pct`` multiply the image in [0, 1] by the map and
      normalise the product, as Chattopadhay et al. (2018) define them (``E = L ∘ I``: black where the map is
      0, whatever ``fill``).

    Parameters
    ----------
    model : torch.nn.Module
    images : (B, 3, H, W) normalised tensor or array
    maps : dict
        Method -> (B, H, W) maps in [0, 1] (from :func:`~xai_helpers.cams.compute_cams`).
    targets : sequence of int
        The class each map explains.
    batch_size : int
        Images per forward; all methods' perturbed images share the forwards (on a CPU, batches
        larger than about 16 images of 224 px are slower per image).
    probs : (B, K) array, optional
        The model's probabilities on ``images`` when already known (``compute_cams`` returns
        them): saves the forward pass on the unperturbed images.
    mean, std : sequence of 3 floats
        The normalisation of ``images`` (ImageNet's, as the training pipeline's), to recover the
        image in [0, 1].
    fill : str
        What ``confidence_increase``'s removed pixels become (:data:`FILLS`).

    Returns
    -------
    dict
        Method -> {``confidence_increase``, ``confidence_rising``, ``average_drop_pct``,
        ``increase_in_confidence_pct``, ``score``, ``score_after`` (the input with the map's fill),
        ``score_after_image`` (image times map)} -> (B,) arrays.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        x = _as_tensor(images, device)
        t = torch.as_tensor(np.asarray(targets), device=device, dtype=torch.long)
        methods = list(maps)
        if probs is not None:
            y = torch.as_tensor(np.asarray(probs), device=device).float().gather(1, t[:, None])[:, 0]
        else:
            y = _target_scores(model, x, t, batch_size)
        mu = torch.as_tensor(mean, device=device, dtype=x.dtype).view(1, -1, 1, 1)
        sd = torch.as_tensor(std, device=device, dtype=x.dtype).view(1, -1, 1, 1)
        image = x * sd + mu  # the image in [0, 1]
        masks = [_as_tensor(maps[m], device)[:, None] for m in methods]
        filler = fill_values(x, fill, mean, std)  # 0 for imagenet_mean: x * w, the library's perturbation
        stacked = torch.cat([x * w + filler * (1 - w) for w in masks] + [(image * w - mu) / sd for w in masks])
        o_all = _target_scores(model, stacked, t.repeat(2 * len(methods)), batch_size)
    finally:
        model.train(was_training)
    out = {}
    b, k_img = len(t), len(methods) * len(t)
    for k, m in enumerate(methods):
        o = o_all[k * b:(k + 1) * b]
        o_img = o_all[k_img + k * b:k_img + (k + 1) * b]
        out[m] = {"confidence_increase": (o - y).cpu().numpy(),
                  "confidence_rising": ((o - y) > 0).float().cpu().numpy(),
                  "average_drop_pct": (100 * (y - o_img).clamp(min=0) / y.clamp(min=1e-12)).cpu().numpy(),
                  "increase_in_confidence_pct": (100.0 * (o_img > y).float()).cpu().numpy(),
                  "score": y.cpu().numpy(), "score_after": o.cpu().numpy(), "score_after_image": o_img.cpu().numpy()}
    return out


def deletion_insertion(model: nn.Module, images, maps: dict[str, np.ndarray], targets: Sequence[int],
                       n_steps: int = 16, batch_size: int = 16,
                       blur_sigma: float | None = None, fill: str = "imagenet_mean",
                       seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Deletion and insertion AUC (Petsiuk et al. 2018, RISE) for every method.

    Pixels are ranked by the map, highest first; pixels of equal value (a map's zero region after the
    ReLU and min-max scaling is often half the image) in a random order drawn from ``seed + i`` for
    image ``i`` (:func:`relevance_rank`), as ROAD's ties (a fixed order, e.g. raster order, would delete the top rows of
    every tied region first and let the image's layout decide the AUC). Deletion replaces the top
    ``k / n`` of the pixels with the ``fill`` (:func:`fill_values`; by default 0 of the normalised input,
    ImageNet's mean colour) for ``k = 0..n``; insertion
    starts from a Gaussian-blurred copy (:func:`xai_helpers.blur.gaussian_blur`; ``blur_sigma``
    defaults to a tenth of the side) and
    puts the original pixels back in the same order. The AUC is the trapezoidal area under the
    target class's softmax score over the fraction of pixels in [0, 1].

    Returns
    -------
    dict
        Method -> {``deletion_auc``, ``insertion_auc``} -> (B,) arrays, plus the curves
        ``deletion_curve`` and ``insertion_curve`` -> (B, n_steps + 1).
    """
    device = next(model.parameters()).device
    x = _as_tensor(images, device)
    t = torch.as_tensor(np.asarray(targets), device=device, dtype=torch.long)
    b, _, h, w = x.shape
    blurred = gaussian_blur(x, blur_sigma or max(1.0, w / 10))
    filler = fill_values(x, fill)
    fractions = torch.linspace(0, 1, n_steps + 1, device=device)
    was_training = model.training
    model.eval()
    out = {}
    try:
        for m, cam in maps.items():
            cam_np = np.asarray(cam, dtype=np.float64).reshape(b, -1)
            # image i's ties in the order of seed + i, as ROAD's (:func:`relevance_rank`)
            rank = torch.as_tensor(np.stack([relevance_rank(cam_np[i], seed + i) for i in range(b)]), device=device)
            # top[s, b, p]: pixel p of image b is among the top fraction s
            top = (rank[None] < (fractions[:, None, None] * h * w)).float().reshape(n_steps + 1, b, 1, h, w)
            deleted = x[None] * (1 - top) + filler[None] * top
            inserted = blurred[None] * (1 - top) + x[None] * top
            res = {}
            for key, batch in (("deletion", deleted), ("insertion", inserted)):
                flat = batch.reshape(-1, *x.shape[1:])
                scores = _target_scores(model, flat, t.repeat(n_steps + 1), batch_size).reshape(n_steps + 1, b).T
                curve = scores.cpu().numpy()
                res[f"{key}_curve"] = curve
                res[f"{key}_auc"] = np.trapezoid(curve, dx=1.0 / n_steps, axis=1) if hasattr(np, "trapezoid") \
                    else np.trapz(curve, dx=1.0 / n_steps, axis=1)
            out[m] = res
    finally:
        model.train(was_training)
    return out


def fill_sensitivity(model: nn.Module, images, maps: dict[str, np.ndarray], targets: Sequence[int],
                     fills: Sequence[str] = FILLS, n_steps: int = 16, batch_size: int = 16,
                     seed: int = 0) -> pd.DataFrame:
    """Does the ranking of the methods survive the choice of what a removed pixel becomes?

    Rong et al. (2022) argue that removal-based metrics measure the fill as much as the map: the model
    sees an image it never saw in training. This computes, for each fill of :data:`FILLS`, the mean
    ``confidence_increase`` (higher is better) and ``deletion_auc`` (lower is better) of every method on
    the same images, and ranks the methods by each.

    Parameters
    ----------
    model : torch.nn.Module
    images : (B, 3, H, W) normalised tensor
    maps : dict
        Method -> (B, H, W) maps in [0, 1].
    targets : sequence of int
    fills : sequence of str
        The first is the reference the others are compared with (the study's: ``imagenet_mean``).
    n_steps, batch_size, seed : int
        As :func:`deletion_insertion`.

    Returns
    -------
    pandas.DataFrame
        One row per fill and metric: ``n_images``, ``ranking`` (best first, ``>`` between methods),
        ``kendall_tau`` with the first fill's ranking (1: the same order) and ``same_order``, and one
        column per method with its mean.

    Examples
    --------
    >>> import torchvision
    >>> _ = torch.manual_seed(0); net = torchvision.models.resnet18(num_classes=2).eval()
    >>> x = torch.randn(2, 3, 32, 32); rng = np.random.default_rng(0)
    >>> maps = {"a": rng.random((2, 32, 32)), "b": rng.random((2, 32, 32))}
    >>> table = fill_sensitivity(net, x, maps, [0, 1], fills=("imagenet_mean", "black"), n_steps=4)
    >>> table[["fill", "metric", "n_images"]].values.tolist()[:2]
    [['imagenet_mean', 'confidence_increase', 2], ['imagenet_mean', 'deletion_auc', 2]]
    """
    from scipy.stats import kendalltau  # noqa: PLC0415

    methods = list(maps)
    rows = []
    reference: dict[str, list[str]] = {}
    for fill in fills:
        conf = confidence_metrics(model, images, maps, targets, batch_size=batch_size, fill=fill)
        dele = deletion_insertion(model, images, maps, targets, n_steps=n_steps, batch_size=batch_size, fill=fill,
                                  seed=seed)
        for metric, values, higher in (("confidence_increase", {m: conf[m]["confidence_increase"] for m in methods},
                                        True),
                                       ("deletion_auc", {m: dele[m]["deletion_auc"] for m in methods}, False)):
            means = {m: float(np.mean(v)) for m, v in values.items()}
            ranking = sorted(methods, key=lambda m: -means[m] if higher else means[m])
            reference.setdefault(metric, ranking)
            ref = reference[metric]
            tau = float(kendalltau([ref.index(m) for m in methods], [ranking.index(m) for m in methods]).statistic) \
                if len(methods) > 1 else 1.0
            rows.append({"fill": fill, "metric": metric, "better": "higher" if higher else "lower",
                         "n_images": len(np.asarray(targets)), "ranking": " > ".join(ranking),
                         "kendall_tau": tau, "same_order": ranking == ref, **means})
    return pd.DataFrame(rows)


def road_removal_masks(cam: np.ndarray, percentiles: Sequence[int] = ROAD_PERCENTILES,
                       seed: int = 0) -> dict[str, np.ndarray]:
    """Which pixels ROAD removes at each percentile: exactly ``p`` % of them, ties broken at random.

    Pixels are ranked by relevance, highest first; pixels of equal relevance (a map with a zero
    plateau after the ReLU, say) are ordered by a seeded random permutation, as Rong et al.'s
    reference code does by adding tiny noise to the map. At percentile ``p`` MoRF removes the
    ``round(p / 100 * H * W)`` most relevant pixels and LeRF the same number of least relevant ones.
    (pytorch-grad-cam instead thresholds at ``np.percentile``, which removes every tied pixel: a map
    with 53 % zeros loses all of its pixels in its LeRF steps.)

    Parameters
    ----------
    cam : (H, W) array
    percentiles : sequence of int
    seed : int

    Returns
    -------
    dict
        ``morf``, ``lerf`` -> ``(len(percentiles), H, W)`` bool arrays, True where removed.

    Examples
    --------
    >>> cam = np.zeros((4, 5)); cam[0, :3] = 1.0      # 85 % of the pixels tie at 0
    >>> masks = road_removal_masks(cam, percentiles=(10, 50))
    >>> masks["morf"].sum(axis=(1, 2)).tolist(), masks["lerf"].sum(axis=(1, 2)).tolist()
    ([2, 10], [2, 10])
    """
    cam = np.asarray(cam, dtype=np.float64)
    h, w = cam.shape
    n = h * w
    rank = relevance_rank(cam, seed).ravel()
    counts = np.array([int(round(p / 100 * n)) for p in percentiles])
    morf = rank[None, :] < counts[:, None]
    lerf = rank[None, :] >= n - counts[:, None]
    return {"morf": morf.reshape(-1, h, w), "lerf": lerf.reshape(-1, h, w)}


def road(model: nn.Module, images, maps: dict[str, np.ndarray], targets: Sequence[int],
         percentiles: Sequence[int] = ROAD_PERCENTILES, noise: float = 0.01, batch_size: int = 16,
         seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """ROAD scores (Rong et al. 2022, "A consistent and efficient evaluation strategy for attribution
    methods") for every method, with pytorch-grad-cam's noisy linear imputer.

    For each percentile ``p``, MoRF removes exactly ``p`` % of the pixels, the most relevant
    first, and LeRF the least relevant first (:func:`road_removal_masks`: ties broken at random,
    as the paper's reference code does); the removed pixels are imputed by noisy linear
    imputation. The score is the change of the target's softmax score, averaged over the
    percentiles; ``road_combined = (road_lerf - road_morf) / 2`` as the library's ``ROADCombined``.
    Over the symmetric default percentiles this equals the library's averages on maps without
    ties (the library's MoRF at ``p`` removes ``100 - p`` %). The imputation noise and the tie
    break come from ``seed``. All perturbed images of all methods share batched forwards.

    Returns
    -------
    dict
        Method -> {``road_morf``, ``road_lerf``, ``road_combined``} -> (B,) arrays.
    """
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer  # noqa: PLC0415 - its import pulls in cv2

    device = next(model.parameters()).device
    x = _as_tensor(images, device)
    t = torch.as_tensor(np.asarray(targets), device=device, dtype=torch.long)
    imputer = NoisyLinearImputer(noise=0.0)
    gen = torch.Generator().manual_seed(seed)
    x_cpu = x.cpu()
    perturbed, keys = [], []
    for m, cam in maps.items():
        cam = np.asarray(cam, dtype=np.float32)
        for i in range(x.shape[0]):
            removal = road_removal_masks(cam[i], percentiles, seed=seed + i)
            for order in ("morf", "lerf"):
                for removed in removal[order]:
                    img = imputer(x_cpu[i], torch.from_numpy((~removed).astype(np.float32)))
                    removed_t = torch.from_numpy(removed)
                    img = img + noise * torch.randn(img.shape, generator=gen) * removed_t
                    perturbed.append(img)
                    keys.append((m, order, i))
    was_training = model.training
    model.eval()
    try:
        y = _target_scores(model, x, t, batch_size).cpu().numpy()
        stacked = torch.stack(perturbed).to(device)
        idx = torch.as_tensor([k[2] for k in keys], device=device)
        after = _target_scores(model, stacked, t[idx], batch_size).cpu().numpy()
    finally:
        model.train(was_training)
    out: dict[str, dict[str, np.ndarray]] = {}
    sums: dict[tuple[str, str], np.ndarray] = {}
    for (m, order, i), a in zip(keys, after):
        sums.setdefault((m, order), np.zeros(x.shape[0]))[i] += a - y[i]
    for m in maps:
        morf = sums[(m, "morf")] / len(percentiles)
        lerf = sums[(m, "lerf")] / len(percentiles)
        out[m] = {"road_morf": morf, "road_lerf": lerf, "road_combined": (lerf - morf) / 2}
    return out


#: Cascading randomisation steps (top of the network first) for the four CNNs: each step re-initialises
#: one group of modules, and together the steps cover every module with parameters (Adebayo et al.
#: re-initialise every parameterised layer), at most 10 steps per network.
RANDOMISATION_CASCADE: dict[str, tuple[tuple[str, ...], ...]] = {
    "resnet50": (("fc",), ("layer4",), ("layer3",), ("layer2",), ("layer1",), ("conv1", "bn1")),
    "densenet121": (("classifier", "features.norm5"), ("features.denseblock4",),
                    ("features.transition3", "features.denseblock3"),
                    ("features.transition2", "features.denseblock2"),
                    ("features.transition1", "features.denseblock1"), ("features.conv0", "features.norm0")),
    "vgg16": (("classifier",), ("features.24", "features.26", "features.28"),
              ("features.17", "features.19", "features.21"), ("features.10", "features.12", "features.14"),
              ("features.5", "features.7"), ("features.0", "features.2")),
    "efficientnet_b0": (("classifier",), ("features.8",), ("features.7",), ("features.6",), ("features.5",),
                        ("features.4",), ("features.3",), ("features.2",), ("features.1",), ("features.0",)),
}


def cascade_steps(model: nn.Module, arch: str) -> tuple[tuple[str, ...], ...]:
    """The randomisation cascade of ``arch``, checked to cover every parameter of ``model``.

    Raises
    ------
    ValueError
        For an architecture without a cascade, or when a parameter of ``model`` lies in no step
        (the check would then leave part of the trained model in place).

    Examples
    --------
    >>> import torchvision
    >>> len(cascade_steps(torchvision.models.resnet50(num_classes=3), "resnet50"))
    6
    """
    if arch not in RANDOMISATION_CASCADE:
        raise ValueError(f"arch: no randomisation cascade for {arch!r}; known: {', '.join(RANDOMISATION_CASCADE)}")
    steps = RANDOMISATION_CASCADE[arch]
    covered = {id(p) for step in steps for name in step for p in model.get_submodule(name).parameters()}
    missing = [n for n, p in model.named_parameters() if id(p) not in covered]
    if missing:
        raise ValueError(f"RANDOMISATION_CASCADE[{arch!r}] leaves {len(missing)} parameter(s) of the model "
                         f"untouched, e.g. {missing[:3]}")
    return steps


def spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation between ``a[i]`` and ``b[i]`` (flattened), ties ranked by their average.

    A constant map has no ranking: the correlation is then defined as 1 when both maps are constant
    and 0 when only one is (a randomised model often gives an all-zero map after the ReLU, which
    keeps nothing of the trained model's ranking).
    """
    a = np.asarray(a).reshape(len(a), -1)
    b = np.asarray(b).reshape(len(b), -1)
    ra, rb = rankdata(a, axis=1), rankdata(b, axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    va, vb = (ra ** 2).sum(axis=1), (rb ** 2).sum(axis=1)
    denom = np.sqrt(va * vb)
    fallback = np.where((va == 0) & (vb == 0), 1.0, 0.0)
    return np.divide((ra * rb).sum(axis=1), denom, out=fallback, where=denom > 0)


def cascading_randomisation(model: nn.Module, arch: str, seed: int = 0):
    """Yield ``(steps_done, randomised_copy)`` after each step of ``arch``'s cascade (top first).

    One copy of ``model`` is re-initialised cumulatively: every module of the step with a
    ``reset_parameters`` (convolutions, linear layers, BatchNorm's affine parameters) is reset,
    and BatchNorm's running statistics too; ``model`` itself is never changed. The random
    initialisation comes from ``seed`` (the global generator is restored afterwards).

    Examples
    --------
    >>> import torchvision
    >>> net = torchvision.models.resnet50(num_classes=3)
    >>> [done[-1] for done, _ in cascading_randomisation(net, "resnet50")][-1]
    'conv1+bn1'
    """
    steps = cascade_steps(model, arch)
    rnd = copy.deepcopy(model)
    done: list[str] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for step in steps:
            for block in step:
                for mod in rnd.get_submodule(block).modules():
                    if hasattr(mod, "reset_parameters"):
                        mod.reset_parameters()
                    if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                        mod.reset_running_stats()
            done.append("+".join(step))
            yield list(done), rnd


def randomisation_check(model: nn.Module, arch: str, images, methods: Sequence[str], target_layer: str,
                        targets: Sequence[int], seed: int = 0) -> pd.DataFrame:
    """Cascading model-parameter randomisation (Adebayo et al. 2018, "Sanity checks for saliency maps").

    Re-initialises the model's groups of layers one step at a time from the top (see
    :data:`RANDOMISATION_CASCADE`; after the last step every parameterised module is re-initialised) in a
    copy of the model, and after each step computes every method's maps for the same images and
    targets. Returns one row per step, method and image with ``randomised`` (the blocks
    re-initialised so far) and ``spearman`` (rank correlation with the trained model's map).
    """
    base, _ = compute_cams(model, images, methods, target_layer=target_layer, targets=targets)
    rows = []
    for done, rnd in cascading_randomisation(model, arch, seed=seed):
        maps, _ = compute_cams(rnd, images, methods, target_layer=target_layer, targets=targets)
        for m in methods:
            for i, r in enumerate(spearman_rows(base[m], maps[m])):
                rows.append({"randomised": " > ".join(done), "step": len(done), "method": m, "image": i,
                             "spearman": float(r)})
    return pd.DataFrame(rows)


#: The pointing-game tolerance, in pixels at 224 px: Zhang et al.'s (2018) 15 px (stated for their
#: images as given, about 224 px wide after their resize), which we scale with the image size.
POINTING_TOLERANCE_AT_224 = 15.0


def pointing_hits(maps: np.ndarray, masks: np.ndarray, tolerance: float) -> np.ndarray:
    """1.0 where a map's maximum lies inside its mask or strictly closer than ``tolerance`` pixels to it.

    A hit is TorchRay's ``PointingGame.evaluate``: some mask pixel at squared distance
    ``d² < tolerance²`` from the map's maximum (a distance equal to the tolerance is a miss); with
    ``tolerance`` 0 only the mask itself counts. A constant map (all values equal, e.g. all zero)
    has no maximum to point with and is a miss, whatever the mask. The maximum is the first one in
    row-major order when several pixels share it.

    Parameters
    ----------
    maps : (B, H, W) array
    masks : (B, H, W) bool array
    tolerance : float
        In pixels (Euclidean).

    Returns
    -------
    (B,) float array of 0 and 1

    Examples
    --------
    >>> mask = np.zeros((1, 5, 5), bool); mask[0, 0, 0] = True
    >>> m = np.zeros((1, 5, 5)); m[0, 0, 2] = 1           # 2 px from the mask
    >>> pointing_hits(m, mask, 2.0), pointing_hits(m, mask, 2.01), pointing_hits(0 * m, mask, 15.0)
    (array([0.]), array([1.]), array([0.]))
    """
    maps = np.asarray(maps, dtype=np.float64)
    masks = np.asarray(masks, dtype=bool)
    b = maps.shape[0]
    flat = maps.reshape(b, -1)
    peak = flat.argmax(axis=1)
    constant = flat.max(axis=1) == flat.min(axis=1)
    hit = np.zeros(b)
    for i in range(b):
        if constant[i] or not masks[i].any():
            continue
        distance = distance_transform_edt(~masks[i]).ravel()  # to the nearest mask pixel, 0 inside
        d = distance[peak[i]]
        hit[i] = float(d == 0 or d * d < tolerance * tolerance)
    return hit


def localisation_metrics(maps: np.ndarray, masks: np.ndarray, threshold: float = 0.5,
                         tolerance: float | None = None) -> dict[str, np.ndarray]:
    """Pointing game, energy inside the mask and IoU at ``threshold`` of maps vs lesion masks.

    Parameters
    ----------
    maps : (B, H, W) array in [0, 1]
    masks : (B, H, W) bool array
    threshold : float
    tolerance : float, optional
        Pointing game (:func:`pointing_hits`): a hit when the map's maximum is inside the mask or
        strictly closer than this many pixels (Euclidean) to it. Default: our convention, 15 px at
        224 px scaled to the image size (``15 * max(H, W) / 224``: 4.3 px at 64 px; Zhang et al.
        state 15 px on their images as given); 0 asks for the maximum inside the mask.

    Returns
    -------
    dict
        ``pointing_game``, ``energy_in_mask``, ``iou``, ``mask_auroc`` (:func:`mask_auroc`) -> (B,)
        arrays; NaN for empty masks.

    Examples
    --------
    >>> m = np.zeros((1, 4, 4)); m[0, 1, 1] = 1
    >>> mask = np.zeros((1, 4, 4), bool); mask[0, :2, :2] = True
    >>> localisation_metrics(m, mask)["pointing_game"]
    array([1.])
    """
    maps = np.asarray(maps, dtype=np.float64)
    masks = np.asarray(masks, dtype=bool)
    if maps.shape != masks.shape:
        raise ValueError(f"masks: shape {masks.shape} does not match maps {maps.shape}")
    b = maps.shape[0]
    if tolerance is None:
        tolerance = POINTING_TOLERANCE_AT_224 * max(maps.shape[1:]) / 224
    flat, mflat = maps.reshape(b, -1), masks.reshape(b, -1)
    has = mflat.any(axis=1)
    hit = pointing_hits(maps, masks, tolerance)
    energy = (flat * mflat).sum(axis=1) / np.maximum(flat.sum(axis=1), 1e-12)
    above = flat >= threshold
    iou = (above & mflat).sum(axis=1) / np.maximum((above | mflat).sum(axis=1), 1)
    auroc = np.array([mask_auroc(flat[i], mflat[i]) for i in range(b)])
    nan = np.full(b, np.nan)
    return {"pointing_game": np.where(has, hit, nan), "energy_in_mask": np.where(has, energy, nan),
            "iou": np.where(has, iou, nan), "mask_auroc": auroc}


def mask_auroc(values: np.ndarray, mask: np.ndarray) -> float:
    """AUROC of a map's pixel values against a mask: the probability that a random pixel inside the mask
    has a higher value than a random pixel outside it, ties counted half (Mann-Whitney U / (n_in n_out)).

    Parameters
    ----------
    values, mask : arrays of one shape
        The map and the (bool) mask.

    Returns
    -------
    float
        NaN when the mask is empty or covers every pixel.

    Examples
    --------
    >>> mask_auroc(np.array([0.9, 0.8, 0.1, 0.2]), np.array([True, True, False, False]))
    1.0
    >>> mask_auroc(np.zeros(4), np.array([True, False, False, False]))  # a constant map: chance
    0.5
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    m = np.asarray(mask, dtype=bool).ravel()
    n_in, n_out = int(m.sum()), int((~m).sum())
    if n_in == 0 or n_out == 0:
        return float("nan")
    ranks = rankdata(v)
    return float((ranks[m].sum() - n_in * (n_in + 1) / 2) / (n_in * n_out))


#: The maps every CAM method's localisation is read against: they ignore the image.
BASELINE_MAPS = ("centre_prior", "uniform_random")
#: The centre prior's Gaussian standard deviation, as a fraction of the image side.
CENTRE_PRIOR_SIGMA = 0.25


def baseline_maps(n: int, size: int, seed: int) -> dict[str, np.ndarray]:
    """Maps that ignore the image, for reading localisation scores against (:data:`BASELINE_MAPS`).

    ``centre_prior``: a centred Gaussian of standard deviation :data:`CENTRE_PRIOR_SIGMA` of the side,
    scaled to [0, 1] (the same for every image). ``uniform_random``: independent uniform values per
    pixel, seeded (``seed``, then the image's position), whose expected energy in a mask is the mask's
    share of the image and whose expected mask AUROC is 0.5.

    Parameters
    ----------
    n : int
        Images.
    size : int
        Side in pixels.
    seed : int

    Returns
    -------
    dict
        Name -> ``(n, size, size)`` array in [0, 1].

    Examples
    --------
    >>> maps = baseline_maps(2, 5, seed=0)
    >>> int(maps["centre_prior"][0].argmax()), maps["uniform_random"].shape
    (12, (2, 5, 5))
    """
    c = (np.arange(size) - (size - 1) / 2) / (CENTRE_PRIOR_SIGMA * size)
    prior = np.exp(-0.5 * (c[:, None] ** 2 + c[None, :] ** 2))
    prior = (prior - prior.min()) / (prior.max() - prior.min()) if size > 1 else np.ones((1, 1))
    rng = np.random.default_rng(seed)
    return {"centre_prior": np.repeat(prior[None], n, axis=0), "uniform_random": rng.random((n, size, size))}


def aggregate_per_class(per_image: pd.DataFrame, metrics: Sequence[str] = ALL_METRICS) -> pd.DataFrame:
    """Mean of each metric per model, method and true class, with ``n`` rows and ``n_images`` images.

    Every fold's model explains the same images, so ``n`` (rows) is folds x ``n_images``; the
    mean over the rows equals the mean over images of each image's fold average. NaNs (metrics
    computed on a subsample only, localisation without a mask) are left out of each mean;
    ``n_<metric>`` says how many rows each mean is over when that differs from ``n``.
    """
    metrics = [m for m in metrics if m in per_image.columns]
    keys = ["model", "method", "class"]
    g = per_image.groupby(keys, sort=True)
    agg = g[metrics].mean()
    agg.insert(0, "n", g.size())
    if "path" in per_image.columns:
        agg.insert(1, "n_images", g["path"].nunique())
    for m in metrics:
        counts = g[m].count()
        if (counts != agg["n"]).any():
            agg[f"n_{m}"] = counts
    return agg.reset_index()


def localisation_summary(per_image: pd.DataFrame, metrics: Sequence[str] = ("mask_auroc", "pointing_game"),
                         by_class: bool = False, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Mean localisation score per explained model, layer and map, with a 95 % bootstrap interval over images.

    Only images with a lesion mask count. Each image's score is first averaged over the fold models
    that explained it (the unit is the image, as in the paired tests of
    :func:`xai_helpers.stats.compare_methods`); the interval is the percentile bootstrap of the mean
    over those images (:func:`xai_helpers.stats.paired_bootstrap`, ``n_boot`` resamples, ``seed``).
    The baseline maps (:data:`BASELINE_MAPS`) are rows like the CAM methods.

    Parameters
    ----------
    per_image : pandas.DataFrame
        ``xai_per_image.csv``: ``model``, ``layer``, ``method``, ``path``, ``class`` and the metrics.
    metrics : sequence of str
        Of :data:`LOCALISATION_METRICS`.
    by_class : bool
        Also one row per true class (``group`` = the class; else only ``'all'``).
    n_boot, seed : int
        The bootstrap.

    Returns
    -------
    pandas.DataFrame
        ``model, layer, method, group, metric, n_images, mean, ci_low, ci_high``; empty without masks.

    Examples
    --------
    >>> per_image = pd.DataFrame({"model": "resnet50", "layer": "layer2", "fold": [0, 1] * 4,
    ...     "method": ["gradcam"] * 4 + ["centre_prior"] * 4, "class": "glioma",
    ...     "path": ["a", "a", "b", "b"] * 2, "mask_auroc": [0.8, 0.9, 0.6, 0.7, 0.7, 0.7, 0.5, 0.5]})
    >>> s = localisation_summary(per_image, ["mask_auroc"], n_boot=200)
    >>> s[["method", "n_images", "mean"]].round(2).values.tolist()
    [['gradcam', 2, 0.75], ['centre_prior', 2, 0.6]]
    """
    metrics = [m for m in metrics if m in per_image.columns]
    keys = ["model", "layer", "method", "class", "path"]
    columns = ["model", "layer", "method", "group", "metric", "n_images", "mean", "ci_low", "ci_high"]
    rows = []
    for metric in metrics:
        scored = per_image.dropna(subset=[metric])
        if scored.empty:
            continue
        images = scored.groupby(keys, sort=False)[metric].mean().reset_index()
        for (model, layer, method), part in images.groupby(["model", "layer", "method"], sort=False):
            groups = [("all", part)] + ([(str(c), p) for c, p in part.groupby("class", sort=True)] if by_class else [])
            for group, sub in groups:
                values = sub[metric].to_numpy(float)
                boot = paired_bootstrap(lambda v: v.mean(axis=1), values, n_boot=n_boot, seed=seed)
                rows.append({"model": model, "layer": layer, "method": method, "group": group, "metric": metric,
                             "n_images": len(values), "mean": float(values.mean()), "ci_low": boot["ci_low"],
                             "ci_high": boot["ci_high"]})
    return pd.DataFrame(rows, columns=columns)
