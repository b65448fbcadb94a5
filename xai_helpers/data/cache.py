"""Decode every image once: converted, resized and stored as a compact uint8 array.

Training epochs read from the cached array, never from the image files again. The cache file
is keyed by the content of the image files (a SHA-1 of their bytes), the image size and the
colour mode, so a changed file or size builds a new cache, and the same data reuses it across
runs. Building decodes in parallel on all cores with a tqdm progress bar.

The cache scales past memory: it is built chunk by chunk straight into a memory-mapped ``.npy``
file (at most a few chunks of decoded images are held at once) and opened with
``mmap_mode="r"``, so the operating system pages images in as batches ask for them and a
dataset larger than RAM (100k RGB images at 224 px are ~15 GB) can be used.

Unreadable files (zero bytes, not an image, truncated, too large) are not fatal: they come back
as ``{path, reason}`` entries and are left out of the array, so a run reports them and goes on.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError
from tqdm.auto import tqdm

from ..atomic import write_text_atomic
from ..paths import project_root
from .metadata import file_header

CACHE_VERSION = 2  # 2: file_info holds (width, height, mode, format, jpeg_quality)
#: How a non-square image becomes square before it is resized: ``squash`` stretches it (every pixel
#: kept, shapes distorted), ``center_crop`` keeps its central square (shapes kept, borders lost),
#: ``pad`` adds black borders to a square (everything kept, smaller content).
RESIZE_MODES = ("squash", "center_crop", "pad")
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


def _check_resize_mode(resize_mode: str) -> None:
    if resize_mode not in RESIZE_MODES:
        raise ValueError(f"resize_mode: unknown value {resize_mode!r}; accepted values: {', '.join(RESIZE_MODES)}")


def square_image(img: Image.Image, resize_mode: str = "squash") -> Image.Image:
    """A non-square image made square as :data:`RESIZE_MODES` says (a square one as it is).

    Parameters
    ----------
    img : PIL.Image.Image
    resize_mode : {'squash', 'center_crop', 'pad'}
        ``squash`` returns ``img`` unchanged (the resize then stretches it).

    Returns
    -------
    PIL.Image.Image

    Examples
    --------
    >>> wide = Image.new("L", (30, 10), 255)
    >>> square_image(wide, "center_crop").size, square_image(wide, "pad").size, square_image(wide).size
    ((10, 10), (30, 30), (30, 10))
    """
    _check_resize_mode(resize_mode)
    w, h = img.size
    if w == h or resize_mode == "squash":
        return img
    if resize_mode == "center_crop":
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        return img.crop((left, top, left + side, top + side))
    side = max(w, h)
    canvas = Image.new(img.mode, (side, side), 0)
    canvas.paste(img, ((side - w) // 2, (side - h) // 2))
    return canvas


def load_image(path: str | os.PathLike, grey: bool, size: int | None = None,
               resize_mode: str = "squash") -> np.ndarray:
    """Decode one image file to uint8, greyscale ``(H, W)`` or RGB ``(H, W, 3)``.

    Greyscale, RGBA, palette, CMYK and 16-bit or float images are converted; with ``size`` a
    non-square image is first made square as ``resize_mode`` says (:func:`square_image`), then
    resized (bilinear, antialiased) to ``size`` x ``size``.

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
                if size is not None:
                    img = square_image(img, resize_mode)
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


def _decode_chunk(args: tuple[list[str], bool, int, str]) -> list[tuple[np.ndarray | None, str | None, Any]]:
    paths, grey, size, resize_mode = args
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    out = []
    for p in paths:
        try:
            out.append((load_image(p, grey, size, resize_mode), None, file_header(p)))
        except ImageReadError as err:
            out.append((None, str(err), None))
    return out


@dataclass
class ImageCache:
    """Decoded, resized images of a dataset.

    Attributes
    ----------
    images : (N, C, S, S) uint8 array
        ``C`` is 1 for greyscale datasets and 3 for colour ones; a read-only memory map of the cache
        file when built or loaded from disk.
    paths : list of str
        The file of each row of ``images``.
    unreadable : list of dict
        ``{path, reason}`` for every file that could not be decoded (not in ``images``).
    file : pathlib.Path or None
        Where the cache lives on disk.
    file_info : list
        ``(width, height, mode, format, jpeg_quality)`` of each file of :attr:`paths` as stored on
        disk (:func:`~xai_helpers.data.metadata.file_header`).
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
        images = np.load(array_file, mmap_mode="r")
        # rows of unreadable files stay unwritten at the end of the file (it is written as it decodes)
        images = images[:meta.get("n_rows", len(images))]
        return cls(images, paths, unreadable, array_file, info)

    def rows(self, paths: Sequence[str]) -> np.ndarray:
        """Row numbers of ``paths`` in :attr:`images` (KeyError naming a path not cached)."""
        pos = {p: i for i, p in enumerate(self.paths)}
        try:
            return np.array([pos[str(p)] for p in paths], dtype=np.int64)
        except KeyError as err:
            raise KeyError(f"{err.args[0]}: not in the image cache (unreadable or not scanned)") from None


class ImageRows:
    """Some rows of an image array (a memory map, usually), read only when indexed.

    What :class:`~xai_helpers.data.prepared.PreparedData` holds when its images are a subset or
    a reordering of the cache's rows: indexing it reads just those rows from the memory map,
    where ``cache.images[rows]`` would copy the whole subset into memory.

    Parameters
    ----------
    base : (N, C, S, S) array
        The cache's array (a ``numpy.memmap`` or an in-memory array).
    rows : sequence of int
        Row ``i`` of this view is row ``rows[i]`` of ``base``.

    Examples
    --------
    >>> view = ImageRows(np.arange(4, dtype=np.uint8).reshape(4, 1, 1, 1), [3, 1])
    >>> view.shape, view[1].ravel().tolist(), np.asarray(view).ravel().tolist()
    ((2, 1, 1, 1), [1], [3, 1])
    """

    def __init__(self, base: np.ndarray, rows: Sequence[int] | np.ndarray):
        self.base = base
        self.rows = np.asarray(rows, dtype=np.int64)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows),) + tuple(self.base.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self.base.dtype

    @property
    def ndim(self) -> int:
        return self.base.ndim

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.base.dtype.itemsize

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, tuple):
            raise TypeError("ImageRows: index rows only (images[rows]), then the array that comes back")
        picked = self.rows[key]
        if np.isscalar(picked):
            return np.asarray(self.base[int(picked)])
        # a memory map reads fastest in file order; give the rows back in the order asked for
        order = np.argsort(picked, kind="stable")
        out = np.empty((len(picked),) + tuple(self.base.shape[1:]), self.base.dtype)
        out[order] = self.base[picked[order]]
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[:]
        return out.astype(dtype) if dtype is not None else out


def images_for_rows(images: np.ndarray, rows: np.ndarray) -> np.ndarray | ImageRows:
    """Rows ``rows`` of a cache array: the array itself when they are all of it in order, a copy
    when it is in memory, an :class:`ImageRows` view when it is a memory map.

    Examples
    --------
    >>> base = np.arange(3, dtype=np.uint8).reshape(3, 1, 1, 1)
    >>> images_for_rows(base, np.arange(3)) is base, images_for_rows(base, np.array([2, 0])).ravel().tolist()
    (True, [2, 0])
    """
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) == len(images) and np.array_equal(rows, np.arange(len(images))):
        return images
    if isinstance(images, np.memmap):
        return ImageRows(images, rows)
    return images[rows]


def default_cache_dir() -> Path:
    return Path(os.environ.get("XAI_HELPERS_CACHE", project_root() / "cache"))


def build_cache(paths: Sequence[str | os.PathLike], image_size: int, grey: bool,
                cache_dir: str | os.PathLike | None = None, workers: int | None = None,
                digests: Sequence[str] | None = None, progress: bool = True,
                resize_mode: str = "squash") -> ImageCache:
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
    resize_mode : {'squash', 'center_crop', 'pad'}
        How non-square images become square (:func:`square_image`); part of the cache's key.

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
    _check_resize_mode(resize_mode)
    # 'squash' keeps the key it had before resize_mode existed, so earlier caches are reused
    key_parts = [CACHE_VERSION, image_size, bool(grey), list(digests)]
    if resize_mode != "squash":
        key_parts.append(resize_mode)
    key_src = json.dumps(key_parts)
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
    channels = 1 if grey else 3
    tmp = array_file.with_name(f"{array_file.name}.{os.getpid()}.tmp.npy")
    # written as the chunks come back, in order: decoded images never pile up in memory; rows of
    # unreadable files are left unwritten at the end (``n_rows`` in the metadata says how many are used)
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                    shape=(len(paths), channels, image_size, image_size))
    good: list[int] = []
    bad_rows: list[int] = []
    reasons: list[str] = []
    file_info: list[Any] = []
    bar = tqdm(total=len(paths), desc=f"decoding images ({image_size}px)", disable=not progress)
    try:
        for part in _decoded_chunks(chunks, grey, image_size, resize_mode, workers):
            for arr, reason, header in part:
                i = len(good) + len(bad_rows)
                if arr is None:
                    bad_rows.append(i)
                    reasons.append(str(reason))
                    continue
                out[len(good)] = arr[None] if grey else arr.transpose(2, 0, 1)
                good.append(i)
                file_info.append(header)
            bar.update(len(part))
        out.flush()
        del out
        os.replace(tmp, array_file)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        bar.close()
    unreadable = [{"path": paths[i], "reason": r} for i, r in zip(bad_rows, reasons)]
    write_text_atomic(meta_file, json.dumps({"paths": paths, "unreadable_rows": bad_rows, "reasons": reasons,
                                     "n_rows": len(good), "file_info": file_info, "image_size": image_size,
                                     "grey": bool(grey), "resize_mode": resize_mode}))
    images = np.load(array_file, mmap_mode="r")[:len(good)]
    return ImageCache(images, [paths[i] for i in good], unreadable, array_file, file_info)


def _decoded_chunks(chunks: list[list[str]], grey: bool, size: int, resize_mode: str,
                    workers: int) -> Iterator[list[tuple[np.ndarray | None, str | None, Any]]]:
    """Decoded chunks in order; with several workers at most ``4 * workers`` chunks are in flight."""
    if workers <= 1 or len(chunks) <= 1:
        for c in chunks:
            yield _decode_chunk((c, grey, size, resize_mode))
        return
    try:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            todo = iter(chunks)
            pending: deque[Future] = deque()
            for c in todo:
                pending.append(pool.submit(_decode_chunk, (c, grey, size, resize_mode)))
                if len(pending) >= 4 * workers:
                    break
            while pending:
                part = pending.popleft().result()
                nxt = next(todo, None)
                if nxt is not None:
                    pending.append(pool.submit(_decode_chunk, (nxt, grey, size, resize_mode)))
                yield part
    except BrokenProcessPool:
        raise MemoryError(
            f"a worker decoding the images was killed (most often for lack of memory: {workers} workers "
            f"decoding {sum(map(len, chunks))} images to {size} px); lower image_size, or decode with fewer "
            f"workers (XAI_HELPERS_WORKERS=1)") from None
