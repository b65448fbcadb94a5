"""The Figshare brain tumour set (Cheng 2017): 3,064 T1-weighted contrast-enhanced MRI slices of 233
patients with three tumour types, each slice with the radiologist's tumour outline and its patient.

Users have it in one of two forms, and both are read:

* the **original download**: ``N.mat`` files in MATLAB v7.3 format (HDF5), each a struct ``cjdata``
  with ``image`` (int16, stored transposed, as MATLAB writes column-major arrays), ``label`` (1
  meningioma, 2 glioma, 3 pituitary), ``PID`` (the patient, as character codes), ``tumorMask`` (the
  filled outline) and ``tumorBorder`` (its points); optionally ``cvind.mat``, the published
  patient-wise 5-fold assignment (:func:`read_cvind`): when present, its fold
  :data:`PUBLISHED_TEST_FOLD` is the test split and the other four are the cross-validation folds
  (with ``folds=4``; another ``folds`` draws that many by patient from them);
* a **converted** folder: ``images/<class>/<N>.<ext>``, ``masks/<class>/<N>.png`` and
  ``metadata.csv`` (``slice, class, patient_id, image, mask``, and ``published_fold`` when the download
  had ``cvind.mat``), as ``../shared/data/brain_tumor_figshare``.

The ``.mat`` files are converted once into the converted form (:func:`convert_mat_folder`), in a
folder of the image cache keyed by the files' bytes, so that the rest of the toolkit reads one form.
The 16-bit intensities become 8-bit by a per-slice window (:data:`WINDOW_PERCENTILES`): values at or
below the 0.5th percentile of the slice become 0, at or above the 99.5th 255, linear between, so that
a few very bright voxels (vessels, fat) do not compress the tumour's contrast.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from ..atomic import write_text_atomic
from ..errors import DatasetError

#: ``cjdata.label`` -> canonical class name.
FIGSHARE_LABELS = {1: "meningioma", 2: "glioma", 3: "pituitary"}

#: Percentiles of each slice's intensities that map to 0 and 255 when 16-bit slices become 8-bit.
WINDOW_PERCENTILES = (0.5, 99.5)

#: The published fold (of ``cvind.mat``'s 1..5) held out as the test split; the other four are the folds.
PUBLISHED_TEST_FOLD = 5

#: The columns of a converted folder's ``metadata.csv`` that the reader needs.
METADATA_COLUMNS = ("slice", "class", "patient_id", "image", "mask")


def window_to_uint8(image: np.ndarray, percentiles: tuple[float, float] = WINDOW_PERCENTILES) -> np.ndarray:
    """A 16-bit (or any numeric) slice as uint8 by its own percentile window.

    Parameters
    ----------
    image : 2-D array
    percentiles : (low, high)
        The slice's intensity percentiles that map to 0 and 255 (clipped outside).

    Returns
    -------
    2-D uint8 array

    Examples
    --------
    >>> window_to_uint8(np.arange(1001, dtype=np.int16).reshape(1, -1))[0, [0, 5, 500, 995, 1000]].tolist()
    [0, 0, 128, 255, 255]
    """
    x = np.asarray(image, dtype=np.float64)
    lo, hi = np.percentile(x, percentiles)
    if hi <= lo:
        return np.zeros(x.shape, np.uint8)
    return np.clip(np.round((x - lo) / (hi - lo) * 255), 0, 255).astype(np.uint8)


def read_mat_slice(path: str | os.PathLike) -> dict[str, Any]:
    """One slice of the original download: a MATLAB v7.3 ``N.mat`` file, read with h5py.

    Parameters
    ----------
    path : path

    Returns
    -------
    dict
        ``image`` (2-D int16, rows x columns as displayed: MATLAB's column-major storage transposed
        back), ``label`` (int), ``class`` (:data:`FIGSHARE_LABELS`), ``patient_id`` (str),
        ``mask`` (2-D bool, same shape).

    Raises
    ------
    DatasetError
        Naming the file, when it is not such a file.

    Examples
    --------
    >>> import tempfile, h5py
    >>> p = Path(tempfile.mkdtemp()) / "7.mat"
    >>> with h5py.File(p, "w") as f:
    ...     g = f.create_group("cjdata")
    ...     g["image"] = np.arange(6, dtype=np.int16).reshape(3, 2)         # stored transposed: 2 x 3 shown
    ...     g["label"] = np.array([[2.0]])
    ...     g["PID"] = np.array([[ord(c)] for c in "MR0042"], dtype=np.uint16)
    ...     g["tumorMask"] = np.array([[1, 0], [0, 0], [0, 0]], dtype=np.uint8)
    >>> s = read_mat_slice(p)
    >>> s["image"].tolist(), s["class"], s["patient_id"], s["mask"].tolist()
    ([[0, 2, 4], [1, 3, 5]], 'glioma', 'MR0042', [[True, False, False], [False, False, False]])
    """
    import h5py  # noqa: PLC0415 - only the original .mat download needs it

    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            g = f["cjdata"]
            image = np.asarray(g["image"]).T
            label = int(np.asarray(g["label"]).ravel()[0])
            pid = "".join(chr(int(c)) for c in np.asarray(g["PID"]).ravel() if int(c) != 0).strip()
            mask = np.asarray(g["tumorMask"]).T.astype(bool)
    except (OSError, KeyError) as err:
        raise DatasetError(f"{path}: not a slice of the Figshare brain tumour set (MATLAB v7.3 with cjdata/image, "
                           f"label, PID, tumorMask): {err}") from None
    if label not in FIGSHARE_LABELS:
        raise DatasetError(f"{path}: cjdata/label is {label}; expected 1 (meningioma), 2 (glioma) or 3 (pituitary)")
    if mask.shape != image.shape:
        raise DatasetError(f"{path}: tumorMask {mask.shape} does not match image {image.shape}")
    return {"image": image, "label": label, "class": FIGSHARE_LABELS[label], "patient_id": pid, "mask": mask}


def read_cvind(path: str | os.PathLike, n_slices: int | None = None) -> np.ndarray:
    """The published patient-wise fold of every slice: ``cvind.mat``'s ``cvind``, entry ``N - 1`` for ``N.mat``.

    Read with scipy (MATLAB v5 files, as the download has it) or h5py (v7.3).

    Parameters
    ----------
    path : path
    n_slices : int, optional
        The highest slice number in the folder: the vector must cover it.

    Returns
    -------
    1-D int array
        Folds 1..5.

    Raises
    ------
    DatasetError
        Naming the file, when it holds no such vector.

    Examples
    --------
    >>> import tempfile
    >>> from scipy.io import savemat
    >>> p = Path(tempfile.mkdtemp()) / "cvind.mat"
    >>> savemat(p, {"cvind": np.array([[1], [5], [3]], dtype=float)})
    >>> read_cvind(p).tolist()
    [1, 5, 3]
    """
    import h5py  # noqa: PLC0415 - only the original download needs them
    from scipy.io import loadmat  # noqa: PLC0415
    from scipy.io.matlab import MatReadError  # noqa: PLC0415

    path = Path(path)
    try:
        if h5py.is_hdf5(path):  # MATLAB v7.3
            with h5py.File(path, "r") as f:
                values = np.asarray(f["cvind"])
        else:
            values = np.asarray(loadmat(path)["cvind"])
    except (OSError, KeyError, ValueError, TypeError, IndexError, NotImplementedError, MatReadError) as err:
        # scipy's MATLAB parser fails on a damaged header in several ways; each means "not the fold file"
        raise DatasetError(f"{path}: not the published fold file (a MATLAB vector cvind of folds 1..5): "
                           f"{err}") from None
    folds = values.ravel()
    if folds.size == 0 or not np.all(np.isfinite(folds)) or not np.all(np.isin(folds, [1, 2, 3, 4, 5])):
        raise DatasetError(f"{path}: cvind holds values other than the folds 1..5")
    if n_slices is not None and folds.size < n_slices:
        raise DatasetError(f"{path}: cvind has {folds.size} entries, the folder has slices up to {n_slices}.mat")
    return folds.astype(int)


def mat_files(root: str | os.PathLike) -> list[Path]:
    """The slice files ``<N>.mat`` in ``root`` (``cvind.mat`` and other names are not slices), by N."""
    return sorted((p for p in Path(root).glob("*.mat") if p.stem.isdigit()), key=lambda p: int(p.stem))


def convert_mat_folder(root: str | os.PathLike, out_dir: str | os.PathLike,
                       progress: bool = False) -> tuple[Path, list[dict[str, str]]]:
    """The original ``.mat`` download converted once into the converted form, under ``out_dir``.

    The target folder is named by a digest of the files' names, sizes and modification times, so a
    second call finds it done; it is written to a temporary name and renamed when complete.

    Parameters
    ----------
    root : path
        The folder of ``N.mat`` files.
    out_dir : path
        Where converted folders live (the image cache's folder).
    progress : bool

    Returns
    -------
    (pathlib.Path, list of dict)
        The converted folder (``images/``, ``masks/``, ``metadata.csv``), and ``{path, reason}`` of
        every ``.mat`` file that could not be read (reported and left out, never a failed study).
    """
    from ..progress import tqdm  # noqa: PLC0415 - progress only here

    files = mat_files(root)
    if not files:
        raise DatasetError(f"{root}: no N.mat files of the Figshare brain tumour set")
    cvind = Path(root) / "cvind.mat"
    listed = files + ([cvind] if cvind.is_file() else [])
    stamp = hashlib.sha1(json.dumps([(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in listed]
                                    + [list(WINDOW_PERCENTILES)]).encode()).hexdigest()[:16]
    target = Path(out_dir) / f"figshare_{stamp}"
    failed_file = target / "unreadable.json"
    if (target / "metadata.csv").is_file():
        failed = json.loads(failed_file.read_text()) if failed_file.is_file() else []
        return target, failed
    tmp = Path(out_dir) / f".figshare_{stamp}.{os.getpid()}.tmp"
    rows, failed = [], []
    published = None
    if cvind.is_file():
        try:
            published = read_cvind(cvind)
        except DatasetError as err:  # reported; the folds are then drawn by patient
            failed.append({"path": str(cvind), "reason": f"{err}; the folds are drawn by patient instead"})
    for p in tqdm(files, desc="converting .mat slices", disable=not progress):
        try:
            s = read_mat_slice(p)
        except DatasetError as err:
            failed.append({"path": str(p), "reason": str(err)})
            continue
        for sub in ("images", "masks"):
            (tmp / sub / s["class"]).mkdir(parents=True, exist_ok=True)
        rel = f"{s['class']}/{p.stem}.png"  # the same name under images/ and masks/
        Image.fromarray(window_to_uint8(s["image"])).save(tmp / "images" / rel)
        Image.fromarray(s["mask"]).save(tmp / "masks" / rel)
        rows.append({"slice": int(p.stem), "class": s["class"], "patient_id": s["patient_id"], "image": rel,
                     "mask": rel, "source": str(p),
                     **({"published_fold": int(published[int(p.stem) - 1])}
                        if published is not None and int(p.stem) <= len(published) else {})})
    if not rows:
        raise DatasetError(f"{root}: none of the {len(files)} .mat files could be read: {failed[0]['reason']}")
    if published is not None and max(r["slice"] for r in rows) > len(published):
        failed.append({"path": str(cvind), "reason": f"cvind has {len(published)} entries, but slices up to "
                       f"{max(r['slice'] for r in rows)}.mat were read; the folds are drawn by patient instead"})
        for r in rows:
            r.pop("published_fold", None)
    tmp.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(tmp / "metadata.csv", index=False)
    write_text_atomic(tmp / "unreadable.json", json.dumps(failed))
    os.replace(tmp, target)
    return target, failed


def scan_converted(root: str | os.PathLike) -> tuple[pd.DataFrame, list[dict[str, str]]]:
    """The rows of a converted folder (``metadata.csv`` with ``images/`` and ``masks/``).

    Parameters
    ----------
    root : path

    Returns
    -------
    (pandas.DataFrame, list of dict)
        ``path, split, class, group, mask`` (``group`` = ``patient_<id>``; ``split`` = ``train``, the set
        having no published test split, unless ``metadata.csv`` has ``published_fold``: then fold
        :data:`PUBLISHED_TEST_FOLD` is ``test``, and a ``published_fold`` column goes along for
        :func:`~xai_helpers.data.splits.make_splits`), and ``{path, reason}`` of what was listed but
        is missing or is on disk but not listed.

    Raises
    ------
    DatasetError
        When ``metadata.csv`` lacks a needed column.
    """
    root = Path(root)
    meta_file = root / "metadata.csv"
    meta = pd.read_csv(meta_file, dtype={"patient_id": str})
    missing_cols = set(METADATA_COLUMNS) - set(meta.columns)
    if missing_cols:
        raise DatasetError(f"{meta_file}: missing columns {sorted(missing_cols)}")
    rows, skipped = [], []
    listed = set()
    for r in meta.to_dict("records"):
        image = root / "images" / str(r["image"])
        listed.add(image.resolve())
        if not image.exists() and not image.is_symlink():
            skipped.append({"path": str(image), "reason": "listed in metadata.csv but missing"})
            continue
        mask = root / "masks" / str(r["mask"]) if isinstance(r["mask"], str) and r["mask"] else None
        fold = r.get("published_fold")
        has_fold = fold is not None and not pd.isna(fold)
        rows.append({"path": str(image), "split": "test" if has_fold and int(fold) == PUBLISHED_TEST_FOLD else "train",
                     "class": str(r["class"]), "group": f"patient_{r['patient_id']}",
                     "mask": str(mask) if mask is not None and mask.is_file() else None,
                     "published_fold": int(fold) if has_fold else None})
    for p in sorted((root / "images").rglob("*")):
        if p.is_file() and p.resolve() not in listed and not p.name.startswith("."):
            skipped.append({"path": str(p), "reason": "not listed in metadata.csv"})
    df = pd.DataFrame(rows, columns=["path", "split", "class", "group", "mask", "published_fold"])
    if df["published_fold"].isna().any():  # no published folds (or not for every slice): drawn by patient
        df = df.drop(columns="published_fold")
    return df, skipped
