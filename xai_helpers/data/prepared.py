"""The prepared data of a run: its images aligned with its splits, and the rules that shape them.

:class:`PreparedData` is what :func:`xai_helpers.steps.prepare_data` (notebook 01) returns and
:func:`xai_helpers.steps.load_prepared` gives back to the later notebooks; :func:`label_conflicts`
and :func:`merge_groups` decide which images are left out and which must share a split.
"""
from __future__ import annotations

import warnings

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from PIL import Image

from .audit import connected_groups
from .cache import ImageRows, cache_for, images_for_rows, square_image
from .splits import fold_indices

def read_masks(paths: Sequence[str | None], size: int, resize_mode: str | None) -> list[np.ndarray | None]:
    """Lesion masks at ``size`` x ``size``, each made square by the image's resize rule.

    The rule of :func:`~xai_helpers.data.cache.square_image` (``resize_mode``: squashed, centre-cropped
    or padded; None: squashed), then nearest-neighbour resizing, so the mask stays on the lesion
    whatever the rule; any non-zero pixel is inside the lesion. An empty or missing path gives None;
    a mask file that exists but cannot be read is reported (a warning naming it) and gives None.

    Parameters
    ----------
    paths : sequence of str or None
        One mask file per image (None or ``""``: the image has none).
    size : int
        The cache's side in pixels.
    resize_mode : str or None
        The cache's resize rule.

    Returns
    -------
    list
        ``(size, size)`` bool arrays, or None per image.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "m.png"
    >>> Image.fromarray(np.pad(np.full((4, 8), 255, np.uint8), ((0, 4), (0, 0)))).save(path)  # top half
    >>> [m if m is None else int(m.sum()) for m in read_masks([str(path), None, ""], 4, "squash")]
    [8, None, None]
    """
    out: list[np.ndarray | None] = []
    for p in paths:
        mask = None
        if isinstance(p, str) and p and Path(p).is_file():
            try:
                with Image.open(p) as m:
                    # the image's resize rule: made square as the image was, then resized
                    binary = m.convert("L").point(lambda v: 255 if v else 0)
                    square = square_image(binary, resize_mode) if resize_mode else binary
                    mask = np.asarray(square.resize((size, size), Image.Resampling.NEAREST)) > 127
            except (OSError, SyntaxError, ValueError) as err:  # one bad mask never stops the explanations
                warnings.warn(f"{p}: cannot read the lesion mask ({err}); mask left out, the image's "
                              f"localisation metrics are NaN", stacklevel=2)
        out.append(mask)
    return out


@dataclass
class PreparedData:
    """Images of one run, aligned row for row with ``splits``.

    Attributes
    ----------
    splits : pandas.DataFrame
        ``path``, ``split``, ``class``, ``group``, ``fold`` (and ``mask``) of every usable image.
    images : (N, C, S, S) uint8 array or ImageRows
        Row ``i`` is the image of ``splits`` row ``i``: the cache's memory map itself, or a view of
        its rows (:class:`~xai_helpers.data.cache.ImageRows`) that reads only the rows indexed, so a
        dataset larger than memory is never loaded whole. ``images[rows]`` is always an array.
    class_names : list of str
    labels : (N,) int array
        Index into ``class_names`` of every row.
    info : dict
        ``layout``, ``root``, ``grey``, ``image_size``, ``title``.
    audit : dict
        The data audit (see :func:`~xai_helpers.data.audit.audit_dataset`).
    """

    splits: pd.DataFrame
    images: np.ndarray | ImageRows
    class_names: list[str]
    labels: np.ndarray
    info: dict[str, Any]
    audit: dict[str, Any] = field(default_factory=dict)

    def without_images(self) -> "PreparedData":
        """A copy without its images (``images=None``): what a Ray task gets with ``data_shared=True``, to load them
        from the image cache file on its own node (:meth:`with_images`) instead of through the object store.

        Examples
        --------
        >>> data = PreparedData(pd.DataFrame({"path": ["a"]}), np.zeros((1, 1, 2, 2), np.uint8), ["x"], np.zeros(1), {})
        >>> data.without_images().images is None, data.images is not None
        (True, True)
        """
        return replace(self, images=None)

    def with_images(self) -> "PreparedData":
        """The same data with its images read from ``info['cache_file']`` (the image cache, at the same path on
        every node of a cluster with a shared filesystem), in the order of ``splits``; when that file holds another
        copy of the same images, the cache is found by the files' content (:func:`~xai_helpers.data.cache.build_cache`).

        Returns
        -------
        PreparedData
        """
        cache = cache_for(self.splits["path"], self.info.get("cache_file"), self.info["image_size"], self.info["grey"],
                          self.info.get("resize_mode"))  # older run folders: build_cache's default
        return PreparedData.from_cache(self.splits, cache, self.info, self.audit)

    @classmethod
    def from_cache(cls, splits: pd.DataFrame, cache, info: dict[str, Any],
                   audit: dict[str, Any]) -> "PreparedData":
        """The prepared data of ``splits``, its images taken from ``cache`` row for row.

        Parameters
        ----------
        splits : pandas.DataFrame
            ``path``, ``split``, ``class``, ``group``, ``fold`` of every image used.
        cache : ImageCache
            Holds every path of ``splits``.
        info, audit : dict
            ``data/dataset.json`` (``class_names`` gives the label order) and ``data/audit.json``.

        Returns
        -------
        PreparedData

        Examples
        --------
        >>> from xai_helpers.data.cache import ImageCache
        >>> cache = ImageCache(np.arange(3, dtype=np.uint8).reshape(3, 1, 1, 1), ["a", "b", "c"], [])
        >>> splits = pd.DataFrame({"path": ["c", "a"], "split": "train", "class": ["y", "x"], "fold": 0})
        >>> data = PreparedData.from_cache(splits, cache, {"class_names": ["x", "y"]}, {})
        >>> data.images.ravel().tolist(), data.labels.tolist()
        ([2, 0], [1, 0])
        """
        splits = splits.reset_index(drop=True)
        # a memory-mapped cache stays on disk: a view of its rows, read batch by batch
        images = images_for_rows(cache.images, cache.rows(splits["path"]))
        class_names = list(info["class_names"])
        code = {c: i for i, c in enumerate(class_names)}
        labels = splits["class"].map(code).to_numpy()
        return cls(splits, images, class_names, labels.astype(np.int64), info, audit)

    @property
    def folds(self) -> list[int]:
        return sorted(int(f) for f in self.splits["fold"].unique() if f >= 0)

    def fold_rows(self, fold: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows of (training, validation, test) images of ``fold``."""
        return fold_indices(self.splits, fold)

    def test_rows(self) -> np.ndarray:
        return np.flatnonzero(self.splits["split"].to_numpy() == "test")

    def masks(self, rows: np.ndarray) -> list[np.ndarray | None]:
        """Lesion masks of ``rows`` at the cache's size: one ``(S, S)`` bool array per image that
        has a mask, None for an image without one (and for every image of a dataset without masks).
        A mask file that exists but cannot be read is reported (a warning naming it) and left out.
        The mask goes through the image's resize rule (``info['resize_mode']``: squashed, centre-cropped
        or padded to a square, :func:`~xai_helpers.data.cache.square_image`), then nearest-neighbour
        resizing, so it stays on the lesion whatever the rule; any non-zero pixel is inside the lesion.

        Examples
        --------
        >>> splits = pd.DataFrame({"path": ["a.png", "b.png"], "split": "test", "class": ["x", "y"],
        ...                        "fold": -1, "mask": ["", ""]})
        >>> data = PreparedData(splits, np.zeros((2, 1, 8, 8), np.uint8), ["x", "y"], np.array([0, 1]), {})
        >>> data.masks(np.array([0, 1]))
        [None, None]
        """
        # none recorded: stretched, as every image was then
        paths = (self.splits["mask"].iloc[np.asarray(rows)].tolist() if "mask" in self.splits.columns
                 else [None] * len(rows))
        return read_masks(paths, self.images.shape[-1], self.info.get("resize_mode"))

    def mask_array(self, rows: np.ndarray) -> np.ndarray | None:
        """``(B, S, S)`` bool masks of ``rows`` for the localisation metrics: an image without a mask
        gets an empty one (its metrics are NaN); None when no image of ``rows`` has a mask."""
        masks = self.masks(rows)
        if all(m is None for m in masks):
            return None
        size = self.images.shape[-1]
        return np.stack([m if m is not None else np.zeros((size, size), bool) for m in masks])


def label_conflicts(index: pd.DataFrame) -> list[dict[str, Any]]:
    """Byte-identical files (same ``sha1``) filed under different classes.

    Such an image teaches the model both answers and tests it on a coin flip; every copy is left
    out of training and test, and the audit lists them.

    Examples
    --------
    >>> idx = pd.DataFrame({"path": ["a", "b", "c"], "class": ["x", "y", "x"], "sha1": ["1", "1", "2"]})
    >>> label_conflicts(idx)
    [{'sha1': '1', 'classes': ['x', 'y'], 'paths': ['a', 'b']}]
    """
    out = []
    for digest, group in index[index["sha1"] != "empty"].groupby("sha1", sort=True):
        classes = sorted(group["class"].unique())
        if len(classes) > 1:
            out.append({"sha1": str(digest), "classes": classes, "paths": sorted(group["path"])})
    return out


def merge_groups(index: pd.DataFrame, duplicate_groups: list[list[str]]) -> list[str]:
    """Group keys of ``index`` with every duplicate group (lists of paths) joined into one group.

    A duplicate group that links two dataset groups (two patients, say) joins them too, so that no
    copy of an image can sit in another split or fold than the image itself.
    """
    paths = list(index["path"])
    pos = {p: i for i, p in enumerate(paths)}
    first_of_group: dict[str, int] = {}
    pairs = [(first_of_group.setdefault(g, i), i) for i, g in enumerate(index["group"])]
    for group in duplicate_groups:
        members = [pos[p] for p in group if p in pos]
        pairs += [(members[0], j) for j in members[1:]]
    groups = list(index["group"])
    out = list(groups)
    for component in connected_groups(len(paths), pairs):
        for i in component:
            out[i] = groups[component[0]]
    return out


def explanation_sample(data: PreparedData, per_class: int | None, seed: int) -> np.ndarray:
    """Rows of up to ``per_class`` test images per class (seeded; the same for every fold).

    Parameters
    ----------
    data : PreparedData
    per_class : int or None
        Images per class; None takes every test image.
    seed : int

    Returns
    -------
    (n,) int64 array
        Rows of ``data``, class by class, sorted within each class.

    Examples
    --------
    >>> splits = pd.DataFrame({"path": list("abcdef"), "split": "test", "class": list("xxxyyy"), "fold": -1})
    >>> data = PreparedData(splits, np.zeros((6, 1, 8, 8), np.uint8), ["x", "y"], np.array([0, 0, 0, 1, 1, 1]), {})
    >>> rows = explanation_sample(data, 2, seed=0)
    >>> len(rows), data.labels[rows].tolist(), np.array_equal(rows, explanation_sample(data, 2, seed=0))
    (4, [0, 0, 1, 1], True)
    >>> explanation_sample(data, None, seed=0).tolist()
    [0, 1, 2, 3, 4, 5]
    """
    rng = np.random.default_rng(seed)
    test = data.test_rows()
    if per_class is None:
        return np.sort(test).astype(np.int64)
    chosen = []
    for c in range(len(data.class_names)):
        rows = test[data.labels[test] == c]
        chosen.extend(sorted(rng.choice(rows, size=min(per_class, len(rows)), replace=False).tolist()))
    return np.array(chosen, dtype=np.int64)
