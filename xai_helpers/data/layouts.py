"""Readers for the published folder layouts, and detection of the layout of a folder.

Each layout maps its folder names onto canonical split names (``train``, ``val``, ``test``) and
canonical class names, so that the same class means the same thing across datasets of one task
(e.g. Bhuvaji's ``glioma_tumor`` and Nickparvar's ``glioma`` are both ``glioma``).

:func:`scan_dataset` returns one row per image file with ``path``, ``split``, ``class``,
``group`` (images that must stay in one split: a patient, a lesion; the file itself otherwise)
and ``mask`` (the lesion mask, synthetic data only), in a :class:`DatasetIndex` beside what the
scan found: the layout, the classes, and the files that are not images (``skipped``, never dropped
silently) or are system files (``ignored``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd
from ..errors import DatasetError
from .cache import default_cache_dir
from .figshare import convert_mat_folder, mat_files, scan_converted

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp"}
# system files that are not data: reported under 'ignored', not as problems
_SYSTEM_FILES = {".ds_store", "thumbs.db", "desktop.ini"}


@dataclass
class DatasetIndex:
    """Every image of a dataset folder, and what the scan found beside them.

    Attributes
    ----------
    rows : pandas.DataFrame
        One row per image file: ``path``, ``split``, ``class``, ``group``, ``mask``.
    layout : str
        The layout's name (a key of :data:`LAYOUTS`).
    root : str
        The dataset folder.
    classes : list of str
        Sorted canonical class names.
    grey : bool
        Whether the layout's images are greyscale.
    skipped : list of dict
        ``{path, reason}`` of entries that are not images (reported in the audit).
    ignored : list of str
        System files (``.DS_Store`` and the like).

    Examples
    --------
    >>> import tempfile
    >>> from PIL import Image
    >>> root = Path(tempfile.mkdtemp())
    >>> for c in ("cats", "dogs"):
    ...     (root / c).mkdir(); Image.new("RGB", (8, 8)).save(root / c / "a.png")
    >>> index = scan_dataset(root)
    >>> index.layout, index.classes, len(index)
    ('imagefolder', ['cats', 'dogs'], 2)
    """

    rows: pd.DataFrame
    layout: str
    root: str
    classes: list[str]
    grey: bool
    skipped: list[dict[str, str]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)


@dataclass(frozen=True)
class Layout:
    """One published folder layout.

    Attributes
    ----------
    name : str
        The name the ``dataset`` parameter takes.
    title : str
        What the dataset is, for reports.
    split_folders : dict
        Canonical split name -> accepted folder names (case-insensitive).
    classes : dict
        Folder name (lower case) -> canonical class name. Empty: any class folder, named as is.
    grey : bool
        Whether the images are greyscale (stored with one channel in the cache).
    group_of : callable, optional
        File name -> group key (patient, lesion); default: every file is its own group.
    patient_groups : bool
        The groups are the dataset's own patient IDs, recorded by its authors: near and mirrored
        look-alikes of two patients are reported by the audit but do not join the patients (exact,
        byte-identical copies still do). MRI slices of different patients at the same level hash alike:
        on the Figshare set, 59 of the 603 pHash pairs within 4 bits join two patients (15 of them two
        tumour types), and joining them chains 521 slices into one group.
    """

    name: str
    title: str
    split_folders: dict[str, tuple[str, ...]]
    classes: dict[str, str] = field(default_factory=dict)
    grey: bool = False
    group_of: Callable[[str], str] | None = None
    patient_groups: bool = False


def kermany_patient(filename: str) -> str:
    """Patient key of a Kermany chest X-ray file name.

    ``person1_bacteria_1.jpeg`` -> ``person1``; ``IM-0115-0001.jpeg`` -> ``IM-0115``;
    ``NORMAL2-IM-1427-0001.jpeg`` -> ``NORMAL2-IM-1427``.
    """
    stem = Path(filename).stem
    for pattern in (r"^(person\d+)_", r"^(NORMAL2-IM-\d+)-", r"^(IM-\d+)-"):
        m = re.match(pattern, stem, flags=re.IGNORECASE)
        if m:
            return m.group(1)
    return stem


_TRAIN_TEST = {"train": ("train", "training"), "val": ("val", "valid", "validation"),
               "test": ("test", "testing")}

LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        Layout("synthetic", "Embedded synthetic brain-slice dataset (generated, no download)",
               _TRAIN_TEST, {"no_lesion": "no_lesion", "solid_lesion": "solid_lesion",
                             "ring_lesion": "ring_lesion"}, grey=True),
        Layout("brain_tumor_mri", "Brain Tumor Classification (MRI), Bhuvaji et al. 2020 (Kaggle)",
               _TRAIN_TEST, {"glioma_tumor": "glioma", "meningioma_tumor": "meningioma",
                             "no_tumor": "no_tumor", "pituitary_tumor": "pituitary"}, grey=True),
        Layout("brain_tumor_mri_nickparvar", "Brain Tumor MRI Dataset, Nickparvar 2021 (Kaggle)",
               _TRAIN_TEST, {"glioma": "glioma", "meningioma": "meningioma", "notumor": "no_tumor",
                             "pituitary": "pituitary"}, grey=True),
        Layout("skin_cancer_isic", "Skin Cancer: Malignant vs. Benign, ISIC Archive images (Kaggle)",
               _TRAIN_TEST, {"benign": "benign", "malignant": "malignant"}),
        Layout("ham10000", "HAM10000 dermoscopy, Tschandl et al. 2018 (7 diagnoses, grouped by lesion)",
               _TRAIN_TEST),
        Layout("chest_xray_pneumonia", "Chest X-Ray Images (Pneumonia), Kermany et al. 2018",
               _TRAIN_TEST, {"normal": "normal", "pneumonia": "pneumonia"}, grey=True,
               group_of=kermany_patient),
        Layout("brain_tumor_figshare", "Brain tumour MRI with expert tumour masks and patients, Cheng 2017 (Figshare)",
               {}, {"glioma": "glioma", "meningioma": "meningioma", "pituitary": "pituitary"}, grey=True,
               patient_groups=True),
        Layout("imagefolder", "Any <split>/<class>/* or <class>/* folder tree", _TRAIN_TEST),
    )
}

HAM10000_CLASSES = {"akiec": "actinic_keratosis", "bcc": "basal_cell_carcinoma",
                    "bkl": "benign_keratosis", "df": "dermatofibroma", "mel": "melanoma",
                    "nv": "melanocytic_nevus", "vasc": "vascular_lesion"}

#: Folder name (lower case) -> canonical class name, over every layout (and the canonical names themselves).
CANONICAL_CLASS_NAMES: dict[str, str] = {
    **{v: v for layout in LAYOUTS.values() for v in layout.classes.values()},
    **{v: v for v in HAM10000_CLASSES.values()},
    **{k: v for layout in LAYOUTS.values() for k, v in layout.classes.items()},
    **HAM10000_CLASSES,
}


def canonical_class_name(name: str) -> str:
    """The canonical name of a class folder name, as the published layouts name their classes.

    Every layout's folder names map onto one vocabulary (Bhuvaji's ``glioma_tumor`` and
    Nickparvar's ``glioma`` are both ``glioma``; ``NORMAL`` is ``normal``; HAM10000's ``mel`` is
    ``melanoma``). A name no layout knows is returned lower-cased, spaces and hyphens as ``_``.

    Examples
    --------
    >>> [canonical_class_name(c) for c in ["Glioma_Tumor", "notumor", "PNEUMONIA", "mel", "My Class"]]
    ['glioma', 'no_tumor', 'pneumonia', 'melanoma', 'my_class']
    """
    key = str(name).strip().lower()
    if key in CANONICAL_CLASS_NAMES:
        return CANONICAL_CLASS_NAMES[key]
    return key.replace(" ", "_").replace("-", "_")


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _split_dirs(root: Path, layout: Layout) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in _subdirs(root):
        for split, names in layout.split_folders.items():
            if d.name.lower() in names:
                if split in found:
                    raise DatasetError(f"{root}: two folders for split {split!r}: {found[split].name}, {d.name}")
                found[split] = d
    return found


def detect_layout(root: str | Path) -> str:
    """Name of the layout of the dataset folder ``root`` (see :data:`LAYOUTS`).

    Raises :class:`DatasetError` when ``root`` is missing or holds no recognisable images.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"data_root: folder {root} does not exist")
    if (root / "synthetic.json").is_file():
        return "synthetic"
    if (root / "HAM10000_metadata.csv").is_file() or (root / "HAM10000_metadata").is_file():
        return "ham10000"
    if ((root / "metadata.csv").is_file() and (root / "images").is_dir()) or mat_files(root):
        return "brain_tumor_figshare"
    splits = _split_dirs(root, LAYOUTS["imagefolder"])
    class_dirs = {c.name.lower() for d in splits.values() for c in _subdirs(d)}
    if not splits:
        class_dirs = {c.name.lower() for c in _subdirs(root)}
    for layout in LAYOUTS.values():
        if layout.classes and layout.name != "synthetic" and class_dirs and class_dirs == set(layout.classes):
            return layout.name
    if class_dirs:
        return "imagefolder"
    raise DatasetError(
        f"data_root: no known layout in {root}: expected <split>/<class>/images or <class>/images "
        f"(or HAM10000_metadata.csv); accepted layouts: {', '.join(LAYOUTS)}")


#: What a directory entry that is neither a folder nor a regular file is, for the audit's ``skipped`` list.
_SPECIAL_FILES = (("is_fifo", "a named pipe"), ("is_socket", "a socket"), ("is_block_device", "a block device"),
                  ("is_char_device", "a character device"))


def _files(folder: Path) -> tuple[list[Path], list[dict[str, str]], list[Path]]:
    """Image files, other entries (``{path, reason}``, reported) and ignorable system files below ``folder``.

    Hidden files and everything in hidden folders (``.DS_Store``, macOS's ``._img.png``
    resource forks, ``.ipynb_checkpoints/``) are never images: they are ignored and listed. A
    symbolic link with an image extension is an image candidate even when it points nowhere (the
    decoder reports it as a dangling link, with its target); a named pipe, socket or device is
    reported as not a regular file and never opened (reading a pipe would wait forever).
    """
    images, others, ignored = [], [], []
    for p in sorted(folder.rglob("*")):
        if not p.is_symlink():
            if p.is_dir():
                continue
            if not p.is_file():
                kind = next((what for test, what in _SPECIAL_FILES if getattr(p, test)()), "not a regular file")
                others.append({"path": str(p), "reason": f"not a regular file ({kind})"})
                continue
        hidden = any(part.startswith(".") for part in p.relative_to(folder).parts)
        if p.name.lower() in _SYSTEM_FILES or hidden:
            ignored.append(p)
        elif p.suffix.lower() in IMAGE_EXTENSIONS:
            images.append(p)
        else:
            others.append({"path": str(p), "reason": "not an image file (extension)"})
    return images, others, ignored


#: The folder beside the class (or split) folders that holds lesion masks.
MASK_FOLDER = "masks"


def _is_mask_folder(folder: Path) -> bool:
    """A folder named ``masks`` with sub-folders (per class or split) and no image files of its own."""
    return (folder.name == MASK_FOLDER and any(p.is_dir() for p in folder.iterdir())
            and not any(p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS for p in folder.iterdir()))


#: Mask file names tried for an image ``<stem>.<ext>``, in order: ``<stem>.png``, then the names the ISIC
#: challenges and many segmentation sets use.
MASK_NAMES = ("{stem}.png", "{stem}_segmentation.png", "{stem}_Segmentation.png", "{stem}_mask.png")


def find_mask(root: Path, image: Path, class_folder: str, split_folder: str | None) -> str | None:
    """The lesion mask of ``image``, when one exists: ``<root>/masks/<split>/<class>/<name>`` or
    ``<root>/masks/<class>/<name>`` (the class and split folders named as on disk), ``<name>`` one of
    :data:`MASK_NAMES` (``<stem>.png``, ``<stem>_segmentation.png`` as ISIC names them, ...).

    Examples
    --------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp()); (root / "masks" / "test" / "glioma").mkdir(parents=True)
    >>> (root / "masks" / "test" / "glioma" / "a.png").touch()
    >>> find_mask(root, root / "test" / "glioma" / "a.jpg", "glioma", "test").endswith("masks/test/glioma/a.png")
    True
    >>> find_mask(root, root / "test" / "glioma" / "b.jpg", "glioma", "test") is None
    True
    >>> (root / "masks" / "glioma").mkdir(); (root / "masks" / "glioma" / "ISIC_01_segmentation.png").touch()
    >>> find_mask(root, root / "test" / "glioma" / "ISIC_01.jpg", "glioma", "test").endswith("ISIC_01_segmentation.png")
    True
    """
    folders = [f for f in ([root / MASK_FOLDER / split_folder / class_folder] if split_folder is not None else [])
               + [root / MASK_FOLDER / class_folder] if f.is_dir()]
    candidates = [folder / name.format(stem=image.stem) for folder in folders for name in MASK_NAMES]
    return next((str(c) for c in candidates if c.is_file()), None)


def _scan_figshare(root: Path) -> tuple[pd.DataFrame, list[dict[str, str]], list[str]]:
    """The Figshare set in either form: converted folders, or the original .mat files (converted once into the
    image cache's folder, :func:`~xai_helpers.data.figshare.convert_mat_folder`)."""
    unreadable: list[dict[str, str]] = []
    if not (root / "metadata.csv").is_file() and mat_files(root):
        root, unreadable = convert_mat_folder(root, default_cache_dir())
    elif not (root / "metadata.csv").is_file():
        raise DatasetError(f"{root}: neither metadata.csv with images/ and masks/ nor N.mat files of the Figshare "
                           f"brain tumour set")
    df, skipped = scan_converted(root)
    return df, unreadable + skipped, []


def _scan_ham10000(root: Path) -> tuple[pd.DataFrame, list[dict[str, str]], list[str]]:
    meta_file = root / "HAM10000_metadata.csv"
    if not meta_file.is_file():
        meta_file = root / "HAM10000_metadata"
    meta = pd.read_csv(meta_file)
    missing_cols = {"image_id", "lesion_id", "dx"} - set(meta.columns)
    if missing_cols:
        raise DatasetError(f"{meta_file}: missing columns {sorted(missing_cols)}")
    images, others, ignored = _files(root)
    by_id = {p.stem: p for p in images}
    rows, unmatched = [], []
    for r in meta.itertuples(index=False):
        p = by_id.pop(str(r.image_id), None)
        if p is None:
            unmatched.append(str(r.image_id))
            continue
        dx = str(r.dx).lower()
        if dx not in HAM10000_CLASSES:
            raise DatasetError(f"{meta_file}: unknown diagnosis {r.dx!r} for {r.image_id}; "
                               f"accepted: {', '.join(HAM10000_CLASSES)}")
        rows.append({"path": str(p), "split": "train", "class": HAM10000_CLASSES[dx],
                     "group": str(r.lesion_id), "mask": None})
    df = pd.DataFrame(rows, columns=["path", "split", "class", "group", "mask"])
    skipped = (others
               + [{"path": str(p), "reason": "image file not listed in HAM10000_metadata.csv"} for p in by_id.values()]
               + [{"path": f"{root}/{i}.*", "reason": "listed in HAM10000_metadata.csv but missing"}
                  for i in unmatched])
    return df, skipped, [str(p) for p in ignored]


def scan_dataset(root: str | Path, dataset: str = "auto") -> DatasetIndex:
    """Index every image of the dataset at ``root``.

    Parameters
    ----------
    root : path
        The dataset's root folder, as downloaded.
    dataset : str
        ``'auto'`` to detect the layout, or one of :data:`LAYOUTS`.

    Returns
    -------
    DatasetIndex
        ``rows`` with columns ``path``, ``split``, ``class``, ``group``, ``mask``, and the layout,
        root, sorted canonical class names, ``grey``, ``skipped`` (``{path, reason}`` of entries
        that are not images) and ``ignored`` (system files).

    Raises
    ------
    DatasetError
        Missing root, unknown layout, empty class folder, class folders that differ between
        splits, or class folders the layout does not know.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"data_root: folder {root} does not exist")
    name = detect_layout(root) if dataset == "auto" else dataset
    if name not in LAYOUTS:
        raise DatasetError(f"dataset: unknown layout {name!r}; accepted values: auto, {', '.join(LAYOUTS)}")
    layout = LAYOUTS[name]
    if name == "ham10000":
        df, skipped, ignored = _scan_ham10000(root)
    elif name == "brain_tumor_figshare":
        df, skipped, ignored = _scan_figshare(root)
    else:
        splits = _split_dirs(root, layout)
        if not splits:
            if name != "imagefolder":
                raise DatasetError(
                    f"{root}: no split folders for layout {name!r}; expected some of "
                    f"{', '.join(n for names in layout.split_folders.values() for n in names)}")
            splits = {"train": root}  # <class>/* tree: everything is the training pool
        # a folder named masks holds lesion masks (masks/<class>/<stem>.png or masks/<split>/<class>/<stem>.png);
        # one holding image files itself is a class of that name
        class_sets = {s: {c.name for c in _subdirs(d) if not _is_mask_folder(c)} for s, d in splits.items()}
        skipped_folders = [{"path": str(d), "reason": "hidden folder"} for sd in splits.values()
                           for d in sorted(sd.iterdir()) if d.is_dir() and d.name.startswith(".")]
        if splits.get("train") != root:
            split_paths = set(splits.values())
            expected = ", ".join(n for ns in layout.split_folders.values() for n in ns)
            skipped_folders += [{"path": str(d), "reason": ("lesion masks" if _is_mask_folder(d) else
                                                            f"not a split folder of layout {name!r} (expected "
                                                            f"{expected})")}
                                for d in sorted(root.iterdir()) if d.is_dir() and d not in split_paths]
        all_classes = set().union(*class_sets.values())
        for s, cs in class_sets.items():
            if not cs:
                raise DatasetError(f"{splits[s]}: split {s!r} has no class folders")
            if cs != all_classes and s != "val":
                raise DatasetError(
                    f"{root}: class folders differ between splits: {s!r} has {sorted(cs)}, "
                    f"all splits together {sorted(all_classes)}")
        rows, skipped, ignored = [], [], []
        for s, d in splits.items():
            for cdir in _subdirs(d):
                if cdir.name not in class_sets[s]:
                    continue
                key = cdir.name.lower()
                if layout.classes and key not in layout.classes:
                    raise DatasetError(
                        f"{cdir}: class folder {cdir.name!r} is not part of layout {name!r} "
                        f"(expected {', '.join(layout.classes)}); use dataset='imagefolder' for other trees")
                cname = layout.classes.get(key, cdir.name)
                images, others, ign = _files(cdir)
                if not images:
                    raise DatasetError(f"{cdir}: class folder is empty (no image files)")
                skipped += others
                ignored += [str(p) for p in ign]
                for p in images:
                    group = layout.group_of(p.name) if layout.group_of else str(p.relative_to(root))
                    mask = find_mask(root, p, cdir.name, d.name if d != root else None)
                    rows.append({"path": str(p), "split": s, "class": cname, "group": group, "mask": mask})
        df = pd.DataFrame(rows, columns=["path", "split", "class", "group", "mask"])
        skipped = skipped_folders + skipped
    if df.empty:
        raise DatasetError(f"{root}: no image files found for layout {name!r}")
    return DatasetIndex(df, name, str(root), sorted(df["class"].unique()), layout.grey, skipped, ignored)
