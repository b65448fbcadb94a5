"""Decode every image once: converted, resized and stored as a compact uint8 array.

Training epochs read from the cached array, never from the image files again. The cache file
is keyed by the content of the image files (a SHA-1 of their bytes), the image size and the
colour mode, so a changed file or size builds a new cache, and the same data reuses it across
runs. Building decodes in parallel on all cores with a tqdm progress bar.

Unreadable files (zero bytes, not an image, truncated, too large) are not fatal: they come back
as ``{path, reason}`` entries and are left out of the array, so a run reports them and goes on.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError
from tqdm.auto import tqdm

from ..paths import project_root

CACHE_VERSION = 1
#: Images with more pixels than this are reported as too large instead of decoded.
MAX_PIXELS = 100_000_000


class ImageReadError(ValueError):
    """An image file cannot be decoded; the message names the file and the reason."""


def file_digest(path: str | os.PathLike) -> str:
    """SHA-1 of a file's bytes (hex)."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    arr = arr.astype(np.float64)
    lo, hi = np.nanmin(arr), np.nanmax(arr)
    if hi <= lo:
        return np.zeros(arr.shape, np.uint8)
    return ((arr - lo) / (hi - lo) * 255).round().astype(np.uint8)


def load_image(path: str | os.PathLike, grey: bool, size: int | None = None) -> np.ndarray:
    """Decode one image file to uint8, greyscale ``(H, W)`` or RGB ``(H, W, 3)``.

    Greyscale, RGBA, palette, CMYK and 16-bit or float images are converted; with ``size`` the
    image is resized (bilinear, antialiased) to ``size`` x ``size``.

    Raises
    ------
    ImageReadError
        For a zero-byte file, a file that is not an image, a truncated file or an image over
        :data:`MAX_PIXELS` pixels; the message names the file.
    """
    path = Path(path)
    try:
        nbytes = path.stat().st_size
    except OSError as err:
        raise ImageReadError(f"{path}: cannot read file ({err.strerror})") from None
    if nbytes == 0:
        raise ImageReadError(f"{path}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
                if w * h > MAX_PIXELS:
                    raise ImageReadError(f"{path}: image too large ({w}x{h} = {w * h:,} pixels, "
                                         f"limit {MAX_PIXELS:,}; raise xai_helpers.data.cache.MAX_PIXELS)")
                if size is not None and img.format == "JPEG":
                    img.draft("L" if grey else "RGB", (size, size))
                img.load()
                if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                    arr = _to_uint8(np.asarray(img))
                    img = Image.fromarray(arr)
                if img.mode in ("RGBA", "LA", "P", "PA"):
                    img = img.convert("RGBA")
                    background = Image.new("RGBA", img.size, (0, 0, 0, 255))
                    img = Image.alpha_composite(background, img)
                img = img.convert("L" if grey else "RGB")
                if size is not None and img.size != (size, size):
                    img = img.resize((size, size), Image.Resampling.BILINEAR)
                return np.asarray(img, dtype=np.uint8)
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError(f"{path}: not an image (cannot identify image file)") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as err:
        raise ImageReadError(f"{path}: image too large ({err})") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(f"{path}: cannot decode image ({err})") from None


def cache_bytes(n_images: int, image_size: int, grey: bool) -> int:
    """Bytes of the uint8 cache of ``n_images`` at ``image_size`` px (1 or 3 channels)."""
    return int(n_images) * (1 if grey else 3) * int(image_size) ** 2


def check_cache_fits(n_images: int, image_size: int, grey: bool, cache_dir: str | os.PathLike,
                     reserve: float = 0.9) -> None:
    """Refuse an image size whose cache would not fit in ``reserve`` of the free disk space.

    Raises
    ------
    ValueError
        Saying what the cache would take and what is free.

    Examples
    --------
    >>> import tempfile
    >>> check_cache_fits(10, 64, True, tempfile.gettempdir())  # 40 kB: fits
    """
    need = cache_bytes(n_images, image_size, grey)
    free = shutil.disk_usage(cache_dir).free
    if need > reserve * free:
        raise ValueError(f"image_size: the image cache of {n_images} images at {image_size} px would take "
                         f"{need / 1e9:.1f} GB, more than the {free / 1e9:.1f} GB free in {cache_dir}; lower "
                         f"image_size (or max_per_class), or free disk space there (XAI_HELPERS_CACHE moves it)")


def _header(path: str) -> tuple[int, int, str] | None:
    try:
        with Image.open(path) as img:
            return img.size[0], img.size[1], img.mode
    except Exception:  # noqa: BLE001 - reported by load_image
        return None


def _decode_chunk(args: tuple[list[str], bool, int]) -> list[tuple[np.ndarray | None, str | None, Any]]:
    paths, grey, size = args
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    out = []
    for p in paths:
        try:
            out.append((load_image(p, grey, size), None, _header(p)))
        except ImageReadError as err:
            out.append((None, str(err), None))
    return out


@dataclass
class ImageCache:
    """Decoded, resized images of a dataset.

    Attributes
    ----------
    images : (N, C, S, S) uint8 array
        ``C`` is 1 for greyscale datasets and 3 for colour ones.
    paths : list of str
        The file of each row of ``images``.
    unreadable : list of dict
        ``{path, reason}`` for every file that could not be decoded (not in ``images``).
    file : pathlib.Path or None
        Where the cache lives on disk.
    file_info : list
        ``(width, height, mode)`` of each file of :attr:`paths` as stored on disk.
    """

    images: np.ndarray
    paths: list[str]
    unreadable: list[dict[str, str]]
    file: Path | None = None
    file_info: list[tuple[int, int, str]] | None = None

    @classmethod
    def load(cls, array_file: str | os.PathLike) -> "ImageCache":
        """Open a cache written by :func:`build_cache` (its ``.npy`` file and ``.json`` beside it)."""
        array_file = Path(array_file)
        meta = json.loads(array_file.with_suffix(".json").read_text())
        bad = set(meta["unreadable_rows"])
        paths = [p for i, p in enumerate(meta["paths"]) if i not in bad]
        unreadable = [{"path": meta["paths"][i], "reason": r} for i, r in zip(meta["unreadable_rows"], meta["reasons"])]
        info = [tuple(x) for x in meta.get("file_info", [])] or None
        return cls(np.load(array_file), paths, unreadable, array_file, info)

    def rows(self, paths: Sequence[str]) -> np.ndarray:
        """Row numbers of ``paths`` in :attr:`images` (KeyError naming a path not cached)."""
        pos = {p: i for i, p in enumerate(self.paths)}
        try:
            return np.array([pos[str(p)] for p in paths], dtype=np.int64)
        except KeyError as err:
            raise KeyError(f"{err.args[0]}: not in the image cache (unreadable or not scanned)") from None


def default_cache_dir() -> Path:
    return Path(os.environ.get("XAI_HELPERS_CACHE", project_root() / "cache"))


def build_cache(paths: Sequence[str | os.PathLike], image_size: int, grey: bool,
                cache_dir: str | os.PathLike | None = None, workers: int | None = None,
                digests: Sequence[str] | None = None, progress: bool = True) -> ImageCache:
    """Decode, convert and resize ``paths`` once, or load the cache built earlier for them.

    Parameters
    ----------
    paths : sequence of paths
        Image files, in the order the array rows will have.
    image_size : int
        Side of the square output, in pixels.
    grey : bool
        Store one greyscale channel (True) or three RGB channels.
    cache_dir : path, optional
        Folder of cache files (default ``<project>/cache`` or ``$XAI_HELPERS_CACHE``).
    workers : int, optional
        Decoding processes (default: all cores).
    digests : sequence of str, optional
        SHA-1 of each file's bytes, when already known (the audit computes them).
    progress : bool
        Show tqdm progress bars.

    Returns
    -------
    ImageCache
    """
    paths = [str(p) for p in paths]
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    if digests is None:
        digests = []
        for p in tqdm(paths, desc="hashing files", disable=not progress, leave=False):
            try:
                digests.append(file_digest(p))
            except OSError:
                digests.append("unreadable")
    key_src = json.dumps([CACHE_VERSION, image_size, bool(grey), list(digests)])
    key = hashlib.sha1(key_src.encode()).hexdigest()[:20]
    array_file = cache_dir / f"{key}_{image_size}px.npy"
    meta_file = array_file.with_suffix(".json")
    if array_file.is_file() and meta_file.is_file():
        cached = ImageCache.load(array_file)
        # the bytes are the same; the files may have moved: rows follow the order of ``paths``
        moved = dict(zip(json.loads(meta_file.read_text())["paths"], paths))
        cached.paths = [moved[p] for p in cached.paths]
        cached.unreadable = [{"path": moved[u["path"]], "reason": u["reason"].replace(u["path"], moved[u["path"]])}
                             for u in cached.unreadable]
        return cached

    check_cache_fits(len(paths), image_size, grey, cache_dir)
    workers = workers or int(os.environ.get("XAI_HELPERS_WORKERS", 0)) or os.cpu_count() or 1
    chunk = max(1, min(64, len(paths) // (workers * 4) or 1))
    chunks = [paths[i:i + chunk] for i in range(0, len(paths), chunk)]
    results: list[tuple[np.ndarray | None, str | None, Any]] = []
    bar = tqdm(total=len(paths), desc=f"decoding images ({image_size}px)", disable=not progress)
    if workers > 1 and len(chunks) > 1:
        try:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for part in pool.map(_decode_chunk, [(c, grey, image_size) for c in chunks]):
                    results.extend(part)
                    bar.update(len(part))
        except BrokenProcessPool:
            raise MemoryError(
                f"a worker decoding the images was killed (most often for lack of memory: {workers} workers "
                f"decoding {len(paths)} images to {image_size} px); lower image_size, or decode with fewer workers "
                f"(XAI_HELPERS_WORKERS=1)") from None
    else:
        for c in chunks:
            part = _decode_chunk((c, grey, image_size))
            results.extend(part)
            bar.update(len(part))
    bar.close()
    channels = 1 if grey else 3
    good = [i for i, r in enumerate(results) if r[0] is not None]
    images = np.empty((len(good), channels, image_size, image_size), np.uint8)
    for row, i in enumerate(good):
        a = results[i][0]
        images[row] = a[None] if grey else a.transpose(2, 0, 1)
    bad_rows = [i for i, r in enumerate(results) if r[0] is None]
    file_info = [results[i][2] for i in good]
    unreadable = [{"path": paths[i], "reason": results[i][1]} for i in bad_rows]
    tmp = array_file.with_name(array_file.name + ".tmp.npy")
    np.save(tmp, images)
    os.replace(tmp, array_file)
    meta_file.write_text(json.dumps({"paths": paths, "unreadable_rows": bad_rows,
                                     "reasons": [r["reason"] for r in unreadable],
                                     "file_info": file_info, "image_size": image_size, "grey": bool(grey)}))
    return ImageCache(images, [paths[i] for i in good], unreadable, array_file, file_info)
