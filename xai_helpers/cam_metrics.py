"""Explanation metrics, per image, every method of a batch evaluated in batched forwards.

=============================  =================================================================
metric                         definition (per image; ``Y`` = softmax score of the target class on
                               the input, ``O`` = the same on the input multiplied by the map)
=============================  =================================================================
``confidence_increase``        ``O - Y``: the study's "confidence increase", pytorch-grad-cam's
                               ``CamMultImageConfidenceChange`` with ``ClassifierOutputSoftmaxTarget``
                               (the normalised input tensor is multiplied by the map)
``average_drop_pct``           ``100 * max(0, Y - O) / Y`` (Chattopadhay et al. 2018, "Average Drop"
                               is its mean; relative, unlike the library's ``DropInConfidence``)
``increase_in_confidence_pct`` ``100 * [O > Y]`` (Chattopadhay et al. 2018, "Increase in Confidence"
                               is its mean)
``deletion_auc``               area under the target score as the most salient pixels are removed
                               first (set to the dataset mean), Petsiuk et al. 2018; lower is better
``insertion_auc``              area under the score as the most salient pixels are inserted first
                               into a blurred copy, Petsiuk et al. 2018; higher is better
``pointing_game``              1 if the map's maximum lies inside the lesion mask (Zhang et al. 2018)
``energy_in_mask``             share of the map's total mass inside the mask (Wang et al. 2020)
``iou``                        IoU of ``map >= 0.5`` and the mask
=============================  =================================================================

Masks: only images with a non-empty lesion mask get localisation scores (NaN otherwise).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

CONFIDENCE_METRICS = ("confidence_increase", "average_drop_pct", "increase_in_confidence_pct")
PERTURBATION_METRICS = ("deletion_auc", "insertion_auc")
LOCALISATION_METRICS = ("pointing_game", "energy_in_mask", "iou")
ALL_METRICS = CONFIDENCE_METRICS + PERTURBATION_METRICS + LOCALISATION_METRICS


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
                       batch_size: int = 64) -> dict[str, dict[str, np.ndarray]]:
    """Confidence increase, average drop and increase in confidence for every method.

    Parameters
    ----------
    model : torch.nn.Module
    images : (B, 3, H, W) normalised tensor or array
    maps : dict
        Method -> (B, H, W) maps in [0, 1] (from :func:`~xai_helpers.cams.compute_cams`).
    targets : sequence of int
        The class each map explains.
    batch_size : int
        Images per forward; all methods' perturbed images share the forwards.

    Returns
    -------
    dict
        Method -> {``confidence_increase``, ``average_drop_pct``,
        ``increase_in_confidence_pct``, ``score``, ``score_after``} -> (B,) arrays.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        x = _as_tensor(images, device)
        t = torch.as_tensor(np.asarray(targets), device=device, dtype=torch.long)
        methods = list(maps)
        y = _target_scores(model, x, t, batch_size)
        stacked = torch.cat([x * _as_tensor(maps[m], device)[:, None] for m in methods])
        o_all = _target_scores(model, stacked, t.repeat(len(methods)), batch_size)
    finally:
        model.train(was_training)
    out = {}
    for k, m in enumerate(methods):
        o = o_all[k * len(t):(k + 1) * len(t)]
        out[m] = {"confidence_increase": (o - y).cpu().numpy(),
                  "average_drop_pct": (100 * (y - o).clamp(min=0) / y.clamp(min=1e-12)).cpu().numpy(),
                  "increase_in_confidence_pct": (100.0 * (o > y).float()).cpu().numpy(),
                  "score": y.cpu().numpy(), "score_after": o.cpu().numpy()}
    return out


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(3 * sigma))
    k = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (k / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def deletion_insertion(model: nn.Module, images, maps: dict[str, np.ndarray], targets: Sequence[int],
                       n_steps: int = 16, batch_size: int = 64,
                       blur_sigma: float | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Deletion and insertion AUC (Petsiuk et al. 2018, RISE) for every method.

    Pixels are ranked by the map (ties broken by position). Deletion replaces the top ``k / n``
    of the pixels with 0 (the dataset mean of the normalised input) for ``k = 0..n``; insertion
    starts from a Gaussian-blurred copy (``blur_sigma`` defaults to a tenth of the side) and
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
    blurred = _gaussian_blur(x, blur_sigma or max(1.0, w / 10))
    fractions = torch.linspace(0, 1, n_steps + 1, device=device)
    was_training = model.training
    model.eval()
    out = {}
    try:
        for m, cam in maps.items():
            cam_t = _as_tensor(cam, device).reshape(b, -1)
            order = torch.argsort(cam_t, dim=1, descending=True, stable=True)
            rank = torch.empty_like(order)
            rank.scatter_(1, order, torch.arange(h * w, device=device).expand(b, -1))
            # keep[s, b, p]: pixel p of image b is among the top fraction s
            top = (rank[None] < (fractions[:, None, None] * h * w)).float().reshape(n_steps + 1, b, 1, h, w)
            deleted = x[None] * (1 - top)
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


def localisation_metrics(maps: np.ndarray, masks: np.ndarray, threshold: float = 0.5) -> dict[str, np.ndarray]:
    """Pointing game, energy inside the mask and IoU at ``threshold`` of maps vs lesion masks.

    Parameters
    ----------
    maps : (B, H, W) array in [0, 1]
    masks : (B, H, W) bool array
    threshold : float

    Returns
    -------
    dict
        ``pointing_game``, ``energy_in_mask``, ``iou`` -> (B,) arrays; NaN for empty masks.

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
    flat, mflat = maps.reshape(b, -1), masks.reshape(b, -1)
    has = mflat.any(axis=1)
    hit = mflat[np.arange(b), flat.argmax(axis=1)].astype(float)
    energy = (flat * mflat).sum(axis=1) / np.maximum(flat.sum(axis=1), 1e-12)
    above = flat >= threshold
    iou = (above & mflat).sum(axis=1) / np.maximum((above | mflat).sum(axis=1), 1)
    nan = np.full(b, np.nan)
    return {"pointing_game": np.where(has, hit, nan), "energy_in_mask": np.where(has, energy, nan),
            "iou": np.where(has, iou, nan)}


def aggregate_per_class(per_image: pd.DataFrame, metrics: Sequence[str] = ALL_METRICS) -> pd.DataFrame:
    """Mean of each metric per model, method and true class, with ``n`` images.

    NaNs (metrics computed on a subsample only, localisation without a mask) are left out of
    each mean; ``n_<metric>`` says how many images each mean is over when that differs from ``n``.
    """
    metrics = [m for m in metrics if m in per_image.columns]
    keys = ["model", "method", "class"]
    g = per_image.groupby(keys, sort=True)
    agg = g[metrics].mean()
    agg.insert(0, "n", g.size())
    for m in metrics:
        counts = g[m].count()
        if (counts != agg["n"]).any():
            agg[f"n_{m}"] = counts
    return agg.reset_index()
