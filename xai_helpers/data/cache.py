"""Decode every image once: converted, resized and stored as a compact uint8 array.

Training epochs read from the cached array, never from the image files again. The cache file
is keyed by the content of the image files (a SHA-1 of their bytes), the image size and the
colour mode, so a changed file or size builds a new cache, and the same data reuses it across
runs. Building decodes in parallel on all cores with a tqdm progress bar.

The cache scales past memory: it is built chunk by chunk straight into a memory-mapped ``.npy``
file (at most a few chunks of decoded images are held at once) and opened with
``mmap_mode="r"``, so the operating system pages images in as batches ask for them and a
dataset larger than RAM (100k RGB images at 224 px are ~15 GB) can be used.

Files that cannot be used (missing or a dangling link, zero bytes, not an image, truncated, too
large, too small to mean anything) are not fatal: they come back as ``{path, reason, problem}``
entries (:data:`PROBLEMS`) and are left out of the array, so a run reports them and goes on. What
the decoder changes silently in a file it can use (a CMYK, 16-bit, palette or transparent image, the
first frame of an animation, an upscaled small image) is recorded per image
(:attr:`ImageCache.conversions`) and counted in the audit.

A cache file is checked before it is trusted (:func:`check_cache_file`): its size against what its ``.npy`` header
says (an interrupted copy or a full disk leaves it short) and its bytes against the CRC-32 written beside
it (``array_digest`` in the ``.json``). A damaged cache is rebuilt from the images where they are, else refused
with the file, the problem and what rebuilds it (:class:`~xai_helpers.errors.CorruptCacheError`).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
import zlib
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd
from PIL import Image, ImageFile, UnidentifiedImageError

from ..atomic import write_text_atomic
from ..paths import project_root
from ..progress import tqdm
from .metadata import file_header
from ..errors import CorruptCacheError, ImageReadError, ParameterError

CACHE_VERSION = 3  # 2: file_info holds (width, height, mode, format, jpeg_quality); 3: conversions, problems
#: How a non-square image becomes square before it is resized: ``squash`` stretches it (every pixel
#: kept, shapes distorted), ``center_crop`` keeps its central square (shapes kept, borders lost),
#: ``pad`` adds black borders to a square (everything kept, smaller content).
RESIZE_MODES = ("squash", "center_crop", "pad")
#: Images with more pixels than this are reported as too large instead of decoded.
MAX_PIXELS = 100_000_000
#: Images narrower or lower than this many pixels are reported as too small and left out: a 1x1
#: "image" upscaled to the input size is a flat square, not a sample of the class.
MIN_SIDE = 8

#: Why a file is left out (the ``problem`` of an unreadable entry), in words for the audit.
PROBLEMS = {
    "cannot_open": "cannot be opened (missing, a dangling link, no permission)",
    "empty": "empty file (0 bytes)",
    "not_an_image": "not an image",
    "undecodable": "truncated or corrupt",
    "too_large": f"too large (over {MAX_PIXELS:,} pixels)",
    "too_small": f"too small (under {MIN_SIDE} px a side)",
}


def file_digest(path: str | os.PathLike) -> str:
    """SHA-1 of a file's bytes (hex)."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_digests(paths: Sequence[str | os.PathLike], progress: bool = False) -> list[str]:
    """SHA-1 of each file, never failing on one: ``'empty'`` for a 0-byte file and
    ``'unreadable:<path>'`` for one that cannot be read (vanished, a dangling link, no permission):
    unique per path, so two unreadable files are never taken for duplicates. The decoder then
    reports why each of those is left out (:func:`load_image`).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); (d / "a.png").write_bytes(b"x"); (d / "b.png").touch()
    1
    >>> (d / "c.png").symlink_to(d / "gone.png")
    >>> [x[:12] for x in file_digests([d / "a.png", d / "b.png", d / "c.png"])]
    ['11f6ad8ec52a', 'empty', 'unreadable:/']
    """
    out = []
    for p in tqdm(paths, desc="hashing files", disable=not progress, leave=False):
        try:
            out.append(file_digest(p) if os.stat(p).st_size else "empty")
        except OSError:
            out.append(f"unreadable:{p}")
    return out


def file_records(paths: Sequence[str], digests: Sequence[str]) -> pd.DataFrame:
    """What notebook 01 records of each prepared file, so later notebooks notice a change: ``path``, ``bytes``,
    ``mtime_ns`` and ``sha1`` (``data/files.csv``)."""
    rows = []
    for path, digest in zip(paths, digests):
        st = os.stat(path)
        rows.append({"path": str(path), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "sha1": digest})
    return pd.DataFrame(rows, columns=["path", "bytes", "mtime_ns", "sha1"])


def changed_files(records: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The files of :func:`file_records` that changed since (size or modification time differ, and the SHA-1
    confirms it: a file touched or copied without its time is not a change) and those that are gone.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> for name in "abc":
    ...     _ = (d / f"{name}.png").write_bytes(name.encode())
    >>> paths = [str(d / f"{n}.png") for n in "abc"]
    >>> records = file_records(paths, file_digests(paths))
    >>> _ = (d / "a.png").write_bytes(b"changed"); (d / "b.png").unlink(); os.utime(d / "c.png", (1, 1))
    >>> [[pathlib.Path(p).name for p in part] for part in changed_files(records)]
    [['a.png'], ['b.png']]
    """
    changed, missing = [], []
    for path, size, mtime, digest in records[["path", "bytes", "mtime_ns", "sha1"]].itertuples(index=False):
        try:
            st = os.stat(path)
        except OSError:
            missing.append(path)
            continue
        if (st.st_size, st.st_mtime_ns) != (size, mtime) and file_digest(path) != digest:
            changed.append(path)
    return changed, missing


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
        raise ParameterError(f"resize_mode: unknown value {resize_mode!r}; accepted values: {', '.join(RESIZE_MODES)}")


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

    :func:`decode_image` without the list of what was converted.

    Raises
    ------
    ImageReadError
        As :func:`decode_image`.
    """
    return decode_image(path, grey, size, resize_mode)[0]


#: Modes of images with one intensity channel (a palette image counts as colour).
_GREY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def _unopenable(path: Path, err: OSError) -> ImageReadError:
    if path.is_symlink() and not path.exists():
        return ImageReadError(f"{path}: dangling symbolic link (to {os.readlink(path)})", "cannot_open")
    return ImageReadError(f"{path}: cannot open file ({err.strerror or err})", "cannot_open")


def decode_image(path: str | os.PathLike, grey: bool, size: int | None = None,
                 resize_mode: str = "squash") -> tuple[np.ndarray, list[str]]:
    """Decode one image file to uint8, greyscale ``(H, W)`` or RGB ``(H, W, 3)``, and say what changed.

    Greyscale, RGBA, palette, CMYK and 16-bit or float images are converted; with ``size`` a
    non-square image is first made square as ``resize_mode`` says (:func:`square_image`), then
    resized (bilinear, antialiased) to ``size`` x ``size``. Each conversion a reader would want to
    know of is named in the returned list (the audit counts them): ``'CMYK -> RGB'``,
    ``'16/32-bit -> 8-bit (min-max per image)'``, ``'palette -> RGB'`` (or ``-> grey``),
    ``'transparency composited on black'``, ``'alpha channel dropped (fully opaque)'``,
    ``'animation: first frame only'``, ``'colour -> grey'``, ``'grey -> RGB'``,
    ``'upscaled (smaller than image_size)'``, ``'EXIF orientation not applied'``, and other modes as
    ``'<mode> -> RGB'``.

    Raises
    ------
    ImageReadError
        Naming the file, with ``problem`` one of :data:`PROBLEMS`: a file that cannot be opened (a
        dangling link names its target), a zero-byte file, a file that is not an image, a
        truncated one, an image over :data:`MAX_PIXELS` pixels or under :data:`MIN_SIDE` px a side.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "cmyk.jpg"
    >>> Image.new("CMYK", (40, 30), (0, 128, 255, 0)).save(p)
    >>> arr, conversions = decode_image(p, grey=False, size=64)
    >>> arr.shape, conversions
    ((64, 64, 3), ['CMYK -> RGB', 'upscaled (smaller than image_size)'])
    """
    path = Path(path)
    try:
        nbytes = path.stat().st_size
    except OSError as err:
        raise _unopenable(path, err) from None
    if nbytes == 0:
        raise ImageReadError(f"{path}: empty file (0 bytes)", "empty")
    target = "L" if grey else "RGB"
    done: list[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
                if w * h > MAX_PIXELS:
                    raise ImageReadError(f"{path}: image too large ({w}x{h} = {w * h:,} pixels, "
                                         f"limit {MAX_PIXELS:,}; raise xai_helpers.data.cache.MAX_PIXELS)",
                                         "too_large")
                if min(w, h) < MIN_SIDE:
                    raise ImageReadError(f"{path}: image too small ({w}x{h} px; at least {MIN_SIDE} px a side "
                                         f"is needed, xai_helpers.data.cache.MIN_SIDE)", "too_small")
                mode = img.mode
                if getattr(img, "n_frames", 1) > 1:
                    done.append("animation: first frame only")
                if img.getexif().get(0x0112, 1) not in (0, 1):
                    done.append("EXIF orientation not applied")
                if size is not None and img.format == "JPEG":
                    img.draft(target, (size, size))
                img.load()
                if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                    done.append("16/32-bit -> 8-bit (min-max per image)")
                    img = Image.fromarray(_to_uint8(np.asarray(img)))
                if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                    if img.mode == "P":
                        done.append(f"palette -> {'grey' if grey else 'RGB'}")
                    img = img.convert("RGBA")
                    opaque = img.getchannel("A").getextrema()[0] == 255
                    done.append("alpha channel dropped (fully opaque)" if opaque else
                                "transparency composited on black")
                    background = Image.new("RGBA", img.size, (0, 0, 0, 255))
                    img = Image.alpha_composite(background, img)
                elif img.mode == "P":
                    done.append(f"palette -> {'grey' if grey else 'RGB'}")
                elif mode == "CMYK":
                    done.append("CMYK -> RGB")
                elif mode == "1":
                    done.append("1-bit -> 8-bit")
                elif img.mode not in ("L", "RGB", "RGBA"):
                    done.append(f"{img.mode} -> RGB")
                source_grey = mode in _GREY_MODES
                if grey and not source_grey:
                    done.append("colour -> grey")
                elif not grey and source_grey:
                    done.append("grey -> RGB")
                img = img.convert(target)
                if size is not None:
                    img = square_image(img, resize_mode)
                    if min(img.size) < size:
                        done.append("upscaled (smaller than image_size)")
                if size is not None and img.size != (size, size):
                    img = img.resize((size, size), Image.Resampling.BILINEAR)
                return np.asarray(img, dtype=np.uint8), done
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError(f"{path}: not an image (cannot identify image file)", "not_an_image") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as err:
        raise ImageReadError(f"{path}: image too large ({err})", "too_large") from None
    except (FileNotFoundError, PermissionError, IsADirectoryError) as err:
        raise _unopenable(path, err) from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(f"{path}: cannot decode image ({err})", "undecodable") from None


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
        raise ParameterError(f"image_size: the image cache of {n_images} images at {image_size} px would take "
                         f"{need / 1e9:.1f} GB, more than the {free / 1e9:.1f} GB free in {cache_dir}; lower "
                         f"image_size (or max_per_class), or free disk space there (XAI_HELPERS_CACHE moves it)")


def _decode_chunk(args: tuple[list[str], bool, int, str]) -> list[tuple[Any, ...]]:
    """``(array or None, reason or None, problem or None, header, conversions)`` per file of a chunk."""
    paths, grey, size, resize_mode = args
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    out = []
    for p in paths:
        try:
            arr, conversions = decode_image(p, grey, size, resize_mode)
            out.append((arr, None, None, file_header(p), conversions))
        except ImageReadError as err:
            out.append((None, str(err), err.problem, None, None))
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
        ``{path, reason, problem}`` for every file left out of ``images`` (``problem``: a key of
        :data:`PROBLEMS`).
    file : pathlib.Path or None
        Where the cache lives on disk.
    file_info : list
        ``(width, height, mode, format, jpeg_quality)`` of each file of :attr:`paths` as stored on
        disk (:func:`~xai_helpers.data.metadata.file_header`).
    conversions : list of list of str
        What :func:`decode_image` changed in each file of :attr:`paths` (empty lists for most).
    """

    images: np.ndarray
    paths: list[str]
    unreadable: list[dict[str, str]]
    file: Path | None = None
    file_info: list[tuple[int, int, str]] | None = None
    conversions: list[list[str]] | None = None

    @classmethod
    def load(cls, array_file: str | os.PathLike) -> "ImageCache":
        """Open a cache written by :func:`build_cache` (its ``.npy`` file and ``.json`` beside it), checked first
        (:func:`check_cache_file`: a :class:`~xai_helpers.errors.CorruptCacheError` when it is damaged)."""
        array_file = Path(array_file)
        try:
            meta = json.loads(array_file.with_suffix(".json").read_text())
        except (OSError, ValueError) as err:
            raise CorruptCacheError(f"{array_file.with_suffix('.json')}: the image cache's description cannot be "
                                    f"read ({type(err).__name__}); {REBUILD}") from None
        check_cache_file(array_file, meta)
        bad = set(meta["unreadable_rows"])
        paths = [p for i, p in enumerate(meta["paths"]) if i not in bad]
        problems = meta.get("problems") or ["undecodable"] * len(meta["reasons"])
        unreadable = [{"path": meta["paths"][i], "reason": r, "problem": k}
                      for i, r, k in zip(meta["unreadable_rows"], meta["reasons"], problems)]
        info = [tuple(x) for x in meta.get("file_info", [])] or None
        images = np.load(array_file, mmap_mode="r")
        # rows of unreadable files stay unwritten at the end of the file (it is written as it decodes)
        images = images[:meta.get("n_rows", len(images))]
        return cls(images, paths, unreadable, array_file, info, meta.get("conversions"))

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


#: What rebuilds a damaged cache, for the messages.
REBUILD = ("delete it and rerun notebook 01 (python -m xai_helpers.run --only 01 with the same run_dir), which "
           "rebuilds it from the image files")


def array_digest(array_file: str | os.PathLike) -> str:
    """A CRC-32 of a file's bytes, read in 8 MiB blocks (the cache's ``array_digest``): a checksum against
    accidental damage, about 3 GB/s, so checking a cache costs little beside reading it."""
    crc = 0
    with open(array_file, "rb") as f:
        for block in iter(lambda: f.read(8 << 20), b""):
            crc = zlib.crc32(block, crc)
    return f"crc32:{crc:08x}"


def check_cache_file(array_file: str | os.PathLike, meta: dict[str, Any]) -> None:
    """Refuse a cache file that is not what :func:`build_cache` wrote: shorter or longer than its ``.npy`` header
    says, or (where ``meta`` has the digest written with it) of other bytes.

    Parameters
    ----------
    array_file : path
        The ``.npy`` file.
    meta : dict
        Its ``.json`` (``array_digest``, ``array_bytes``; caches written before these existed are checked by their
        header alone).

    Raises
    ------
    CorruptCacheError
        Naming the file, the problem, and what rebuilds it.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "c.npy"
    >>> np.save(path, np.zeros((4, 1, 8, 8), np.uint8))
    >>> check_cache_file(path, {"array_digest": array_digest(path)})
    >>> with open(path, "r+b") as f:
    ...     _ = f.truncate(path.stat().st_size // 2)
    >>> try:
    ...     check_cache_file(path, {})
    ... except CorruptCacheError as err:
    ...     print(str(err).split(";")[0].split(": ", 1)[1])
    the image cache is truncated (192 of 384 bytes)
    """
    array_file = Path(array_file)
    actual = array_file.stat().st_size
    try:
        with open(array_file, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read_header(f)
            expected = f.tell() + int(np.prod(shape)) * np.dtype(dtype).itemsize
    except (OSError, ValueError) as err:
        raise CorruptCacheError(f"{array_file}: the image cache's header is damaged ({err}); {REBUILD}") from None
    if actual != expected:
        what = "truncated" if actual < expected else "longer than its header says"
        raise CorruptCacheError(f"{array_file}: the image cache is {what} ({actual:,} of {expected:,} bytes); "
                                f"{REBUILD}")
    if meta.get("array_digest") and array_digest(array_file) != meta["array_digest"]:
        raise CorruptCacheError(f"{array_file}: the image cache's bytes changed since it was written (its digest "
                                f"differs); {REBUILD}")


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
        digests = file_digests(paths, progress=progress)
    _check_resize_mode(resize_mode)
    # 'squash' keeps the key it had before resize_mode existed, so earlier caches are reused
    key_parts = [CACHE_VERSION, image_size, bool(grey), list(digests)]
    if resize_mode != "squash":
        key_parts.append(resize_mode)
    key_src = json.dumps(key_parts)
    key = hashlib.sha1(key_src.encode()).hexdigest()[:20]
    array_file = cache_dir / f"{key}_{image_size}px.npy"
    meta_file = array_file.with_suffix(".json")
    cached = None
    if array_file.is_file() and meta_file.is_file():
        try:
            cached = ImageCache.load(array_file)
        except CorruptCacheError as err:  # the images are at hand: decode them again
            print(f"{err.args[0].split('; ')[0]}: rebuilding it from the images", flush=True)
            array_file.unlink(missing_ok=True)
            meta_file.unlink(missing_ok=True)
    if cached is not None:
        # the bytes are the same; the files may have moved: rows follow the order of ``paths``
        moved = dict(zip(json.loads(meta_file.read_text())["paths"], paths))
        cached.paths = [moved[p] for p in cached.paths]
        cached.unreadable = [{**u, "path": moved[u["path"]], "reason": u["reason"].replace(u["path"], moved[u["path"]])}
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
    problems: list[str] = []
    file_info: list[Any] = []
    conversions: list[list[str]] = []
    bar = tqdm(total=len(paths), desc=f"decoding images ({image_size}px)", disable=not progress)
    try:
        for part in _decoded_chunks(chunks, grey, image_size, resize_mode, workers):
            for arr, reason, problem, header, changed in part:
                i = len(good) + len(bad_rows)
                if arr is None:
                    bad_rows.append(i)
                    reasons.append(str(reason))
                    problems.append(str(problem))
                    continue
                out[len(good)] = arr[None] if grey else arr.transpose(2, 0, 1)
                good.append(i)
                file_info.append(header)
                conversions.append(changed)
            bar.update(len(part))
        out.flush()
        del out
        os.replace(tmp, array_file)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        bar.close()
    unreadable = [{"path": paths[i], "reason": r, "problem": k} for i, r, k in zip(bad_rows, reasons, problems)]
    write_text_atomic(meta_file, json.dumps({"paths": paths, "unreadable_rows": bad_rows, "reasons": reasons,
                                             "problems": problems, "n_rows": len(good), "file_info": file_info,
                                             "conversions": conversions, "image_size": image_size,
                                             "grey": bool(grey), "resize_mode": resize_mode,
                                             "array_bytes": array_file.stat().st_size,
                                             "array_digest": array_digest(array_file)}))
    images = np.load(array_file, mmap_mode="r")[:len(good)]
    return ImageCache(images, [paths[i] for i in good], unreadable, array_file, file_info, conversions)


def cache_for(paths: Sequence[str], cache_file: str | os.PathLike | None, image_size: int, grey: bool,
              resize_mode: str | None = None, progress: bool = False) -> ImageCache:
    """The image cache of ``paths``: ``cache_file`` (as notebook 01 recorded it) when it is sound and holds them,
    else the cache :func:`build_cache` finds by the files' content (another copy of the same images), or builds.

    The one place a later notebook, or a Ray task on another node, reads the prepared images back. A damaged
    ``cache_file`` (:func:`check_cache_file`) is said in the log and rebuilt from the image files (by
    :func:`build_cache`, which checks every cache it reuses).

    Parameters
    ----------
    paths : sequence of str
        The files the cache must hold (``data/splits.csv``'s ``path``).
    cache_file : path or None
    image_size : int
    grey : bool
    resize_mode : str, optional
        ``None``: :func:`build_cache`'s default (run folders prepared before ``resize_mode`` existed).
    progress : bool

    Returns
    -------
    ImageCache
    """
    cache = None
    if cache_file and Path(cache_file).is_file():
        try:
            cache = ImageCache.load(cache_file)
        except CorruptCacheError:  # build_cache finds the same file by content, says so and decodes the images again
            pass
    if cache is None or set(paths) - set(cache.paths):
        mode = {"resize_mode": resize_mode} if resize_mode is not None else {}
        cache = build_cache(list(paths), image_size, grey, progress=progress, **mode)
    return cache


def _decoded_chunks(chunks: list[list[str]], grey: bool, size: int, resize_mode: str,
                    workers: int) -> Iterator[list[tuple[Any, ...]]]:
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
