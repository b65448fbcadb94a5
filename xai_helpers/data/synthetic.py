"""The embedded default dataset: procedural, seeded, MRI-like brain slices with a lesion mask.

Nothing is shipped or downloaded: :func:`make_synthetic_dataset` draws every image from a seed
in a few seconds and writes it in the same folder layout as the real datasets
(``<root>/<split>/<class>/<name>.png``), with each lesion mask at the same relative path under
``<root>/masks/`` and the generation settings in ``<root>/synthetic.json``.

Each image is an axial "slice": a dark background, an elliptical head with a bright skull rim,
brain tissue with low-frequency texture, two dark ventricles, a few small bright vessels (in every
class, so that brightness alone decides nothing) and Rician-like noise. The class is decided by the
lesion alone:

=================  ===========================================================================
class              lesion
=================  ===========================================================================
``no_lesion``      none (empty mask)
``solid_lesion``   a round, homogeneous bright mass with a smooth edge
``ring_lesion``    a lobulated mass with a bright enhancing rim around a dark necrotic core
=================  ===========================================================================

Three balanced classes, so chance accuracy is 1/3. Lesions are 10-15 % of the image width in
radius, large enough at 64 px for every CNN to learn the task from scratch in a few epochs.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from ..errors import GeneratedDataError
from ..progress import tqdm

SYNTHETIC_CLASSES = ("no_lesion", "solid_lesion", "ring_lesion")
NATIVE_SIZE = 128
_MARKER = "synthetic.json"


def _smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.standard_normal((size, size)), sigma)
    return field / (field.std() + 1e-8)


def draw_slice(rng: np.random.Generator, label: int, size: int = NATIVE_SIZE,
               brightness: float = 0.0, noise: float = 0.04) -> tuple[np.ndarray, np.ndarray]:
    """Draw one synthetic slice and its lesion mask.

    Parameters
    ----------
    rng : numpy.random.Generator
        The source of all randomness (seeded by the caller).
    label : int
        Index into :data:`SYNTHETIC_CLASSES`.
    size : int
        Side of the square image in pixels.
    brightness : float
        Added to the tissue intensities (a simulated scanner shift; 0 for the default set).
    noise : float
        Standard deviation of the additive noise, in units of the [0, 1] intensity range.

    Returns
    -------
    image : (size, size) uint8 array
    mask : (size, size) bool array, True inside the lesion
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    cy, cx = 0.5 + rng.uniform(-0.04, 0.04, 2)
    ay, ax = rng.uniform(0.40, 0.46), rng.uniform(0.34, 0.41)
    theta = rng.uniform(-0.25, 0.25)
    dy, dx = yy - cy, xx - cx
    ry = dy * np.cos(theta) + dx * np.sin(theta)
    rx = -dy * np.sin(theta) + dx * np.cos(theta)
    head_r = np.sqrt((ry / ay) ** 2 + (rx / ax) ** 2)

    img = np.full((size, size), 0.04, np.float32)
    skull = (head_r <= 1.0) & (head_r > 0.91)
    brain = head_r <= 0.91
    texture = 0.06 * _smooth_noise(rng, size, size / 24) + 0.03 * _smooth_noise(rng, size, size / 64)
    img[brain] = (0.42 + brightness + texture)[brain]
    img[skull] = 0.78 + brightness
    # two ventricles, mirrored about the head's long axis
    for side in (-1, 1):
        vy, vx = ry + 0.02, rx - side * 0.07 * ax / 0.38
        vent = (vy / 0.11) ** 2 + (vx / 0.035) ** 2 <= 1.0
        img[vent & brain] = 0.18 + brightness
    # small bright vessels in every class
    for _ in range(rng.integers(2, 5)):
        a = rng.uniform(0, 2 * np.pi)
        rad = rng.uniform(0.2, 0.8)
        py, px = cy + rad * ay * np.sin(a) * 0.9, cx + rad * ax * np.cos(a) * 0.9
        spot = (yy - py) ** 2 + (xx - px) ** 2 <= rng.uniform(0.008, 0.014) ** 2
        img[spot & brain] = 0.72 + brightness

    mask = np.zeros((size, size), bool)
    if label > 0:
        r = rng.uniform(0.10, 0.15)
        for _ in range(100):  # a centre well inside the brain
            a, rad = rng.uniform(0, 2 * np.pi), rng.uniform(0.0, 0.55)
            ly, lx = cy + rad * ay * np.sin(a), cx + rad * ax * np.cos(a)
            ly_r = (ly - cy) * np.cos(theta) + (lx - cx) * np.sin(theta)
            lx_r = -(ly - cy) * np.sin(theta) + (lx - cx) * np.cos(theta)
            if np.sqrt((ly_r / ay) ** 2 + (lx_r / ax) ** 2) + r / min(ay, ax) < 0.85:
                break
        ang = np.arctan2(yy - ly, xx - lx)
        dist = np.sqrt((yy - ly) ** 2 + (xx - lx) ** 2)
        if label == 1:  # solid: round, homogeneous, smooth edge
            radius = r * (1 + 0.05 * np.sin(2 * ang + rng.uniform(0, 2 * np.pi)))
            inside = dist <= radius
            edge = np.clip((radius - dist) / (0.25 * r), 0, 1)
            img = np.where(inside, img * (1 - edge) + (0.86 + brightness) * edge, img)
        else:  # ring: lobulated outline, bright rim, dark necrotic core
            radius = r * (1 + 0.18 * np.sin(3 * ang + rng.uniform(0, 2 * np.pi))
                          + 0.10 * np.sin(5 * ang + rng.uniform(0, 2 * np.pi)))
            inside = dist <= radius
            core = dist <= 0.55 * radius
            img = np.where(inside, 0.88 + brightness, img)
            img = np.where(core, 0.16 + brightness, img)
        mask = inside
    # Rician-like noise: magnitude of a complex Gaussian around the signal
    n1 = rng.normal(0, noise, (size, size))
    n2 = rng.normal(0, noise, (size, size))
    img = np.sqrt((img + n1) ** 2 + n2 ** 2)
    img = ndimage.gaussian_filter(img, 0.6)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8), mask


def make_synthetic_dataset(root: str | Path, n_per_class: int = 150, n_test_per_class: int | None = None,
                           seed: int = 0, size: int = NATIVE_SIZE, brightness: float = 0.0,
                           noise: float = 0.04, progress: bool = True) -> Path:
    """Write the synthetic dataset to ``root`` (skipped when the same one is already there).

    Parameters
    ----------
    root : path
        Folder to write; created if missing.
    n_per_class : int
        Images per class in ``train/`` (the training pool that the folds split).
    n_test_per_class : int, optional
        Images per class in ``test/``; defaults to a third of ``n_per_class`` (at least 4).
    seed : int
        Everything is drawn from this seed: same seed, same bytes.
    size : int
        Native image side in pixels (the preprocessing cache resizes).
    brightness, noise : float
        Acquisition profile (see :func:`draw_slice`); change them for an external-site variant.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    pathlib.Path
        ``root``.

    Examples
    --------
    >>> import tempfile
    >>> root = make_synthetic_dataset(tempfile.mkdtemp(), n_per_class=4, progress=False)
    >>> sorted(p.name for p in (root / "train").iterdir())
    ['no_lesion', 'ring_lesion', 'solid_lesion']
    """
    root = Path(root)
    if n_test_per_class is None:
        n_test_per_class = max(4, n_per_class // 3)
    settings = {"n_per_class": n_per_class, "n_test_per_class": n_test_per_class, "seed": seed,
                "size": size, "brightness": brightness, "noise": noise,
                "classes": list(SYNTHETIC_CLASSES), "version": 2}  # bump when drawing changes
    marker = root / _MARKER
    if marker.is_file() or marker.is_symlink():
        recorded = _read_marker(marker)
        if recorded.get("settings") == settings and _generated_files_intact(root, recorded):
            return root
        # a generation of ours with other settings (or damaged): remove exactly the files it wrote
        _remove_generated(root, recorded)
    elif root.is_dir() and any(root.iterdir()):
        raise FileExistsError(f"data_root: {root} is not empty and holds no synthetic dataset "
                              f"({_MARKER} missing); choose an empty or new folder for dataset='synthetic'")
    jobs = [(split, c, i) for split, n in (("train", n_per_class), ("test", n_test_per_class))
            for c in range(len(SYNTHETIC_CLASSES)) for i in range(n)]
    files: dict[str, str] = {}
    # one independent stream per image: the same image whatever n_per_class is
    for split, c, i in tqdm(jobs, desc="synthetic images", disable=not progress):
        child = np.random.default_rng([seed, {"train": 0, "test": 1}[split], c, i])
        img, mask = draw_slice(child, c, size, brightness, noise)
        rel = Path(split) / SYNTHETIC_CLASSES[c] / f"{split}_{SYNTHETIC_CLASSES[c]}_{i:04d}.png"
        for base, arr in ((Path("."), img), (Path("masks"), mask.astype(np.uint8) * 255)):
            path = root / base / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(path)
            files[(base / rel).as_posix()] = hashlib.sha1(path.read_bytes()).hexdigest()
    content = hashlib.sha1(json.dumps(files, sort_keys=True).encode()).hexdigest()
    record = {"generator": GENERATOR, "settings": settings, "content_digest": content, "files": files}
    tmp = marker.with_name(f".{marker.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, marker)
    return root


#: Who wrote a synthetic dataset folder: checked before any file in it is removed.
GENERATOR = "xai_helpers.data.synthetic.make_synthetic_dataset"


def _read_marker(marker: Path) -> dict:
    """The marker's record; an error (never a licence to delete) when it is not one of ours."""
    try:
        record = json.loads(marker.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise GeneratedDataError(f"{marker}: unreadable synthetic-dataset marker ({err}); nothing was deleted. "
                                 f"If the folder holds a dataset of yours, point data_root elsewhere") from None
    if (not isinstance(record, dict) or record.get("generator") != GENERATOR
            or not isinstance(record.get("files"), dict)):
        raise GeneratedDataError(f"{marker}: not a marker written by {GENERATOR} (no generator and file list; an "
                                 f"older version or another program); nothing was deleted. Point data_root at a "
                                 f"new folder, or delete the folder yourself if it is a generated dataset")
    content = hashlib.sha1(json.dumps(record["files"], sort_keys=True).encode()).hexdigest()
    if record.get("content_digest") != content:
        raise GeneratedDataError(f"{marker}: its file list does not match its content digest; nothing was deleted")
    return record


def _generated_files_intact(root: Path, record: dict) -> bool:
    listed = record["files"]
    return all((root / rel).is_file() for rel in listed) and not _foreign_files(root, listed)


def _foreign_files(root: Path, listed: dict) -> list[Path]:
    """Files under the generated sub-folders that the marker does not list (a user's, say)."""
    out = []
    for sub in ("train", "test", "masks"):
        for p in sorted((root / sub).rglob("*")) if (root / sub).is_dir() else []:
            if (p.is_file() or p.is_symlink()) and p.relative_to(root).as_posix() not in listed:
                out.append(p)
    return out


def _remove_generated(root: Path, record: dict) -> None:
    """Delete the files the marker lists, each only if its bytes are still the ones written, then
    the empty folders and the marker; anything else stops the removal with the file's name."""
    listed = record["files"]
    foreign = _foreign_files(root, listed)
    changed = [rel for rel, digest in listed.items()
               if (root / rel).is_file() and hashlib.sha1((root / rel).read_bytes()).hexdigest() != digest]
    if foreign or changed:
        first = foreign[0] if foreign else root / changed[0]
        raise GeneratedDataError(
            f"{root}: holds {len(foreign)} file(s) the synthetic generator did not write and {len(changed)} it wrote "
            f"but that have changed since (e.g. {first}); nothing was deleted. Move them away or point data_root at "
            f"a new folder")
    for rel in listed:
        (root / rel).unlink(missing_ok=True)
    for sub in ("masks", "test", "train"):
        for d in sorted((root / sub).rglob("*"), reverse=True) if (root / sub).is_dir() else []:
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
        if (root / sub).is_dir() and not any((root / sub).iterdir()):
            (root / sub).rmdir()
    (root / _MARKER).unlink()


def mask_path(image_path: str | Path, root: str | Path) -> Path:
    """Path of the lesion mask that belongs to ``image_path`` of a synthetic dataset at ``root``."""
    rel = Path(image_path).resolve().relative_to(Path(root).resolve())
    return Path(root) / "masks" / rel
