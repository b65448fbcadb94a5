"""The one Gaussian blur of the package: torchvision's, with a kernel sized from sigma.

Used for the baseline of the insertion metric (:func:`xai_helpers.cam_metrics.deletion_insertion`)
and for the ``gaussian_blur`` corruption of :mod:`xai_helpers.generalization`.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torchvision.transforms.v2.functional import gaussian_blur as _tv_gaussian_blur


def kernel_size(sigma: float, size: int) -> int:
    """Odd kernel width covering three standard deviations each side, at most what ``size`` allows.

    torchvision pads by reflection, which needs a padding smaller than the image side, so the
    kernel is capped at ``2 * size - 1``.

    Parameters
    ----------
    sigma : float
        Standard deviation in pixels (> 0).
    size : int
        The smaller image side in pixels.

    Returns
    -------
    int
        ``2 * ceil(3 * sigma) + 1``, capped at ``2 * size - 1``.

    Examples
    --------
    >>> kernel_size(1.0, 64), kernel_size(6.4, 64), kernel_size(30.0, 8)
    (7, 41, 15)
    """
    if not sigma > 0:
        raise ValueError(f"sigma: expected a positive number, got {sigma!r}")
    return min(2 * math.ceil(3 * sigma) + 1, 2 * int(size) - 1)


def gaussian_blur(images: torch.Tensor | np.ndarray, sigma: float) -> torch.Tensor | np.ndarray:
    """Blur every channel of a batch with an isotropic Gaussian (torchvision, reflection padding).

    Parameters
    ----------
    images : torch.Tensor or numpy.ndarray
        (N, C, H, W) floating-point images. A numpy array is blurred through torch and returned as
        numpy, in its own dtype.
    sigma : float
        Standard deviation in pixels, the same along both axes.

    Returns
    -------
    torch.Tensor or numpy.ndarray
        The blurred batch, same shape, type and dtype as ``images``.

    Examples
    --------
    >>> x = np.zeros((1, 1, 9, 9), np.float32); x[0, 0, 4, 4] = 1.0
    >>> y = gaussian_blur(x, 1.0)
    >>> y.shape, round(float(y.sum()), 4), bool(y[0, 0, 4, 4] < 1)
    ((1, 1, 9, 9), 1.0, True)
    """
    is_numpy = isinstance(images, np.ndarray)
    x = torch.from_numpy(np.ascontiguousarray(images)) if is_numpy else images
    if x.ndim != 4 or not x.is_floating_point():
        raise ValueError(f"images: expected a floating-point (N, C, H, W) batch, got {tuple(x.shape)} {x.dtype}")
    k = kernel_size(sigma, min(x.shape[-2:]))
    out = _tv_gaussian_blur(x, [k, k], [float(sigma), float(sigma)])
    return out.numpy() if is_numpy else out
