"""What each image file is, besides its pixels: size, aspect, colour mode, format, JPEG quality.

Such properties can tell classes apart by themselves (a shortcut: on the brain MRI dataset the
no-tumour images are smaller than the tumour images) and can differ between the training pool and
the test split (a shift). :func:`file_header` reads them from a file's header without decoding
the pixels (the image cache calls it while decoding); :func:`image_metadata` puts them in a table
with each image's mean intensity, for :mod:`xai_helpers.data.shortcuts`.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
import pandas as pd
from PIL import Image

#: The IJG standard luminance quantisation table (ITU-T T.81, Annex K, Table K.1), natural order.
IJG_LUMINANCE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99])

#: Columns of ``data/audit_metadata.csv`` besides ``path``, ``split`` and ``class``.
NUMERIC_FEATURES = ("width", "height", "aspect_ratio", "jpeg_quality", "mean_intensity")
CATEGORICAL_FEATURES = ("colour_mode", "file_format")


def ijg_table(quality: int) -> np.ndarray:
    """The luminance table libjpeg writes at ``quality`` (1-100): the standard table scaled by
    ``5000 / q`` below 50 and ``200 - 2q`` from 50, rounded, clipped to 1..255 (libjpeg's
    ``jpeg_quality_scaling`` and ``jpeg_add_quant_table``).

    Examples
    --------
    >>> ijg_table(50)[:4].tolist(), ijg_table(100)[:4].tolist()
    ([16, 11, 10, 16], [1, 1, 1, 1])
    """
    q = min(max(int(quality), 1), 100)
    scale = 5000 // q if q < 50 else 200 - 2 * q
    return np.clip((IJG_LUMINANCE * scale + 50) // 100, 1, 255)


#: :func:`ijg_table` of qualities 1..100, one row each: built once, compared with every JPEG's table.
_IJG_TABLES = np.stack([ijg_table(q) for q in range(1, 101)])


def jpeg_quality(quantization: dict[int, Sequence[int]] | None) -> float:
    """Estimated libjpeg quality (1-100) of a JPEG from its quantisation tables, NaN if unknown.

    The quality whose standard luminance table (:func:`ijg_table`) is closest (sum of absolute
    differences) to the file's first table: exact for files written by libjpeg-based encoders
    (PIL, OpenCV, most cameras' software), an approximation for others.

    Parameters
    ----------
    quantization : dict
        ``PIL.Image.quantization`` of an opened JPEG (table id -> 64 values, natural order).

    Returns
    -------
    float

    Examples
    --------
    >>> import io
    >>> buf = io.BytesIO()
    >>> Image.new("L", (16, 16)).save(buf, "JPEG", quality=83)
    >>> jpeg_quality(Image.open(buf).quantization)
    83.0
    """
    if not quantization or 0 not in quantization or len(quantization[0]) != 64:
        return float("nan")
    table = np.asarray(quantization[0], dtype=np.int64)
    errors = np.abs(_IJG_TABLES - table).sum(axis=1)
    return float(int(np.argmin(errors)) + 1)


def file_header(path: str | os.PathLike) -> tuple[int, int, str, str, float] | None:
    """``(width, height, mode, format, jpeg_quality)`` from a file's header, None if unreadable.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.png"
    >>> Image.new("RGB", (30, 20)).save(p)
    >>> file_header(p)[:4]
    (30, 20, 'RGB', 'PNG')
    """
    try:
        with Image.open(path) as img:
            quality = jpeg_quality(getattr(img, "quantization", None)) if img.format == "JPEG" else float("nan")
            return img.size[0], img.size[1], img.mode, str(img.format), quality
    except Exception:  # noqa: BLE001 - the image cache reports unreadable files
        return None


def image_metadata(paths: Sequence[str], headers: Sequence[Sequence[Any]], images: Any,
                   chunk: int = 2048) -> pd.DataFrame:
    """One row per image: ``path, width, height, aspect_ratio, colour_mode, file_format,
    jpeg_quality, mean_intensity``.

    Parameters
    ----------
    paths : sequence of str
    headers : sequence
        :func:`file_header` of each path (as the image cache stores them in ``file_info``).
    images : (N, C, S, S) uint8 array, memory map or ImageRows
        The cached images of ``paths``, row for row: ``mean_intensity`` is the mean grey level
        (0-255; ITU-R 601 luma for colour) of the cached image, read in chunks.
    chunk : int

    Returns
    -------
    pandas.DataFrame

    Examples
    --------
    >>> meta = image_metadata(["a.png"], [(40, 20, "L", "PNG", float("nan"))], np.full((1, 1, 8, 8), 10, np.uint8))
    >>> meta[["width", "aspect_ratio", "colour_mode", "mean_intensity"]].values.tolist()
    [[40, 2.0, 'L', 10.0]]
    """
    if len(paths) != len(headers) or len(paths) != len(images):
        raise ValueError(f"paths, headers, images: {len(paths)}, {len(headers)} and {len(images)} rows; "
                         f"expected one of each per image")
    meta = pd.DataFrame([tuple(h) for h in headers],
                        columns=["width", "height", "colour_mode", "file_format", "jpeg_quality"])
    meta.insert(0, "path", list(paths))
    meta.insert(3, "aspect_ratio", meta["width"] / meta["height"])
    luma = np.array([0.299, 0.587, 0.114])
    means = np.empty(len(paths))
    for s in range(0, len(paths), chunk):
        # the mean of the luma is the luma of the channel means: no float copy of the images
        channel_means = np.asarray(images[np.arange(s, min(s + chunk, len(paths)))]).mean(axis=(2, 3))
        means[s:s + chunk] = channel_means @ luma if channel_means.shape[1] == 3 else channel_means[:, 0]
    meta["mean_intensity"] = means
    return meta
