"""The package's one Gaussian blur against scipy's, the independent reference."""
import numpy as np
import pytest
import torch
from scipy import ndimage

from xai_helpers.blur import gaussian_blur, kernel_size


@pytest.mark.parametrize("sigma", [0.5, 1.0, 3.0, 6.4])
def test_blur_equals_scipy_gaussian_filter_with_mirror_padding(sigma):
    """torchvision's reflection padding is scipy's 'mirror'; the kernel covers ceil(3 sigma) each side."""
    x = np.random.default_rng(0).random((2, 3, 64, 48))
    radius = (kernel_size(sigma, 48) - 1) // 2
    ref = ndimage.gaussian_filter(x, sigma=(0, 0, sigma, sigma), mode="mirror", truncate=radius / sigma)
    np.testing.assert_allclose(gaussian_blur(x, sigma), ref, atol=1e-12)
    out = gaussian_blur(torch.from_numpy(x.astype(np.float32)), sigma)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-5)


def test_blur_kernel_is_capped_by_the_image_side():
    x = np.random.default_rng(1).random((1, 1, 6, 6))
    out = gaussian_blur(x, 30.0)  # a kernel wider than reflection padding allows would raise in torchvision
    assert out.shape == x.shape and np.isfinite(out).all()
    with pytest.raises(ValueError, match="sigma"):
        gaussian_blur(x, 0.0)
    with pytest.raises(ValueError, match="floating-point"):
        gaussian_blur(np.zeros((1, 1, 8, 8), np.uint8), 1.0)
