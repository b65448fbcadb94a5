"""Data audit: what is in a dataset folder, and what is wrong with it.

Counts per split and class, image sizes and colour modes, files left out with the reason, what the
decoder converted, exact duplicates (identical bytes, SHA-1) and near duplicates (perceptual hash
within a Hamming distance), within a split and across splits, and class imbalance. Duplicates across the train and
test splits silently inflate test accuracy; the audit names them so that the splits can drop them.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

import numpy as np
import pandas as pd
from PIL import Image
from scipy.fft import dct
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .cache import PROBLEMS
from .layouts import DatasetIndex

#: Perceptual hash used for near duplicates, and the default Hamming distance threshold (of 64 bits).
NEAR_DUPLICATE_HASH = ("pHash as ImageHash's phash (DCT of the 32x32 Lanczos-resized 8-bit grey image, 8x8 low "
                       "frequencies vs their median, 64 bits)")
NEAR_DUPLICATE_THRESHOLD = 4


def perceptual_hash(images: np.ndarray) -> np.ndarray:
    """64-bit pHash of each image of a ``(N, C, H, W)`` uint8 array, as ``uint64``.

    The ImageHash package's ``phash`` (Zauner 2010), bit for bit: the image converted to 8-bit
    grey (ITU-R 601 luma for RGB), resized to 32x32 with a Lanczos filter, transformed with an
    unnormalised 2-D DCT-II; the 8x8 lowest frequencies (DC included) are compared with their
    median. Bit ``63 - k`` is the ``k``-th coefficient in row-major order, so the integer equals
    ``int(str(imagehash.phash(img)), 16)`` (a test checks it).

    Examples
    --------
    >>> flat = np.full((1, 1, 64, 64), 128, np.uint8)
    >>> int(perceptual_hash(flat)[0])  # every coefficient but DC is 0: only DC lies above the median
    9223372036854775808
    """
    out = np.empty(len(images), dtype=np.uint64)
    weights = (1 << np.arange(63, -1, -1, dtype=np.uint64))
    for i, img in enumerate(images):
        pil = Image.fromarray(img[0]) if img.shape[0] == 1 else Image.fromarray(img.transpose(1, 2, 0))
        small = np.asarray(pil.convert("L").resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
        coeffs = dct(dct(small, axis=0), axis=1)[:8, :8]
        bits = (coeffs > np.median(coeffs)).ravel().astype(np.uint64)
        out[i] = np.sum(bits * weights, dtype=np.uint64)
    return out


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    x = x.astype(np.uint64)
    return np.array([bin(int(v)).count("1") for v in x.ravel()]).reshape(x.shape)


def _bands(threshold: int) -> list[tuple[int, int]]:
    """``threshold + 1`` disjoint bit ranges ``(shift, width)`` covering the 64 bits (pigeonhole)."""
    n = threshold + 1
    widths = [64 // n + (1 if i < 64 % n else 0) for i in range(n)]
    shifts = np.cumsum([0] + widths[:-1]).tolist()
    return list(zip(shifts, widths))


def _close_pairs_by_band(hashes: np.ndarray, threshold: int, block_bytes: int = 1 << 22) -> np.ndarray:
    """Pairs ``(i, j)``, ``i < j``, within ``threshold`` bits, compared only inside the buckets of
    hashes that agree exactly on a band (every pair within ``threshold`` bits agrees on one:
    ``threshold`` differing bits cannot touch all ``threshold + 1`` bands). A bucket is compared
    in blocks of at most ``block_bytes`` distances, so memory stays bounded however large it is."""
    found = []
    for shift, width in _bands(threshold):
        key = (hashes >> np.uint64(shift)) & np.uint64((1 << width) - 1)
        order = np.argsort(key, kind="stable")
        sorted_key = key[order]
        starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])
        ends = np.r_[starts[1:], len(key)]
        for a, b in zip(starts[ends - starts > 1], ends[ends - starts > 1]):
            members = np.sort(order[a:b])
            step = max(1, block_bytes // len(members))
            for s in range(0, len(members) - 1, step):
                rows = members[s:s + step]
                d = _popcount(hashes[rows, None] ^ hashes[None, members])
                ii, jj = np.nonzero(d <= threshold)
                keep = members[jj] > rows[ii]
                if keep.any():
                    found.append(np.stack([rows[ii[keep]], members[jj[keep]]], axis=1))
    if not found:
        return np.zeros((0, 2), dtype=np.int64)
    return np.unique(np.concatenate(found), axis=0)


def near_duplicate_pairs(hashes: np.ndarray, threshold: int = NEAR_DUPLICATE_THRESHOLD) -> list[tuple[int, int]]:
    """Index pairs ``(i, j)``, ``i < j``, whose hashes differ in at most ``threshold`` bits.

    Sub-quadratic: the 64 bits are cut into ``threshold + 1`` bands, and only pairs that agree
    exactly on some band are compared (two hashes within ``threshold`` bits always do, by the
    pigeonhole principle), so the pairs found are exactly those of the exhaustive comparison
    (:func:`near_duplicate_pairs_exhaustive`) at a cost that grows with the number of images
    sharing a band value instead of with the square of the number of images, in bounded memory.

    Examples
    --------
    >>> near_duplicate_pairs(np.array([0b1011, 0b1010, 0xFFFF0000], np.uint64), threshold=1)
    [(0, 1)]
    """
    hashes = np.asarray(hashes, dtype=np.uint64)
    if len(hashes) < 2:
        return []
    return [(int(i), int(j)) for i, j in _close_pairs_by_band(hashes, threshold)]


def near_duplicate_pairs_exhaustive(hashes: np.ndarray, threshold: int = NEAR_DUPLICATE_THRESHOLD,
                                    block: int = 2048) -> list[tuple[int, int]]:
    """The same pairs as :func:`near_duplicate_pairs` by comparing every pair (O(n^2); the reference)."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    pairs = []
    for s in range(0, len(hashes), block):
        d = _popcount(hashes[s:s + block, None] ^ hashes[None, :])
        ii, jj = np.nonzero(d <= threshold)
        ii = ii + s
        keep = ii < jj
        pairs.extend(zip(ii[keep].tolist(), jj[keep].tolist()))
    return sorted(pairs)


def cross_near_duplicates(hashes: np.ndarray, reference: np.ndarray,
                          threshold: int = NEAR_DUPLICATE_THRESHOLD) -> np.ndarray:
    """Which of ``hashes`` lie within ``threshold`` bits of any of the ``reference`` hashes.

    Banded like :func:`near_duplicate_pairs`: only hashes that agree with a reference hash on
    one of ``threshold + 1`` bands are compared, so the cost does not grow as ``len(hashes) *
    len(reference)``.

    Examples
    --------
    >>> cross_near_duplicates(np.array([0b1111, 0xFF00], np.uint64), np.array([0b0111], np.uint64)).tolist()
    [True, False]
    """
    hashes = np.asarray(hashes, dtype=np.uint64)
    reference = np.asarray(reference, dtype=np.uint64)
    near = np.zeros(len(hashes), dtype=bool)
    if len(reference) == 0 or len(hashes) == 0:
        return near
    for shift, width in _bands(threshold):
        mask = np.uint64((1 << width) - 1)
        ref_key = (reference >> np.uint64(shift)) & mask
        order = np.argsort(ref_key, kind="stable")
        ref_sorted = ref_key[order]
        todo = np.flatnonzero(~near)
        key = (hashes[todo] >> np.uint64(shift)) & mask
        lo = np.searchsorted(ref_sorted, key, side="left")
        hi = np.searchsorted(ref_sorted, key, side="right")
        counts = hi - lo
        if not counts.any():
            continue
        which = np.repeat(np.arange(len(todo)), counts)
        starts = np.repeat(lo, counts)
        offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        partner = order[starts + offsets]
        close = _popcount(hashes[todo[which]] ^ reference[partner]) <= threshold
        near[todo[which[close]]] = True
    return near


#: The mirror images the near-duplicate search also matches: left-right (the usual re-use of a slice) and
#: upside-down.
MIRRORS = {"left_right": (slice(None), slice(None), slice(None), slice(None, None, -1)),
           "upside_down": (slice(None), slice(None), slice(None, None, -1), slice(None))}


def mirrored_hashes(images: np.ndarray) -> list[np.ndarray]:
    """:func:`perceptual_hash` of ``images`` flipped each way of :data:`MIRRORS`, one array per mirror.

    Examples
    --------
    >>> img = np.arange(64, dtype=np.uint8).reshape(1, 1, 8, 8)
    >>> bool(mirrored_hashes(img)[0][0] == perceptual_hash(img[..., ::-1])[0])
    True
    """
    return [perceptual_hash(np.ascontiguousarray(images[flip])) for flip in MIRRORS.values()]


def mirrored_duplicate_pairs(images: np.ndarray, hashes: np.ndarray | None = None,
                             threshold: int = NEAR_DUPLICATE_THRESHOLD) -> list[tuple[int, int]]:
    """Index pairs ``(i, j)``, ``i < j``, where one image is a near copy of the other's mirror image.

    A perceptual hash is not mirror-invariant: a slice flipped left-right hashes far from itself. So
    each image is also hashed flipped (:data:`MIRRORS`), and the flipped hashes are searched against
    the unflipped ones with the same banded, sub-quadratic search as :func:`near_duplicate_pairs`
    (on the stacked hashes; only pairs across the two sets are kept). An image and its own mirror
    (a symmetric image) is no pair; pairs that are near copies unflipped are not repeated here.

    Parameters
    ----------
    images : (N, C, H, W) uint8 array
    hashes : (N,) uint64 array, optional
        :func:`perceptual_hash` of ``images`` (computed when not given).
    threshold : int

    Returns
    -------
    list of (int, int)

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> a = (rng.random((1, 1, 8, 8)) * 255).astype(np.uint8).repeat(8, axis=2).repeat(8, axis=3)
    >>> b = (rng.random((1, 1, 8, 8)) * 255).astype(np.uint8).repeat(8, axis=2).repeat(8, axis=3)
    >>> mirrored_duplicate_pairs(np.concatenate([a, b, a[..., ::-1]]))
    [(0, 2)]
    """
    n = len(images)
    hashes = perceptual_hash(images) if hashes is None else np.asarray(hashes, dtype=np.uint64)
    plain = set(near_duplicate_pairs(hashes, threshold))
    found = set()
    for flipped in mirrored_hashes(images):
        for i, j in near_duplicate_pairs(np.concatenate([hashes, flipped]), threshold):
            if i < n <= j and i != j - n:
                pair = (min(i, j - n), max(i, j - n))
                if pair not in plain:
                    found.add(pair)
    return sorted(found)


def connected_groups(n: int, pairs: Sequence[tuple[int, int]]) -> list[list[int]]:
    """Connected components of ``n`` items linked by ``pairs``, as sorted index lists of 2 or more
    (scipy's ``connected_components`` on the sparse graph of the pairs), ordered by first member.

    Examples
    --------
    >>> connected_groups(6, [(0, 3), (3, 5), (1, 2)])
    [[0, 3, 5], [1, 2]]
    """
    if n == 0:
        return []
    edges = np.asarray(list(pairs), dtype=np.int64).reshape(-1, 2)
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    members: dict[int, list[int]] = {}
    for i, c in enumerate(label.tolist()):
        members.setdefault(c, []).append(i)
    return [m for m in members.values() if len(m) > 1]


def audit_dataset(index: DatasetIndex, unreadable: Sequence[dict[str, str]],
                  images: np.ndarray | None = None, image_paths: Sequence[str] | None = None,
                  sizes: Sequence[tuple] | None = None,
                  near_threshold: int = NEAR_DUPLICATE_THRESHOLD,
                  conversions: Sequence[Sequence[str]] | None = None) -> dict[str, Any]:
    """The audit of a scanned dataset, as a JSON-ready dict.

    Parameters
    ----------
    index : DatasetIndex
        From :func:`~xai_helpers.data.layouts.scan_dataset`, its rows with a ``sha1`` column.
    unreadable : list of dict
        ``{path, reason, problem}`` of files left out (cannot be opened, empty, not an image,
        corrupt, too large, too small: :data:`~xai_helpers.data.cache.PROBLEMS`).
    images, image_paths : optional
        Decoded images (``(N, C, H, W)`` uint8) and their paths, for near duplicates.
    sizes : optional
        ``(width, height, mode)`` of every file of ``index`` as stored on disk.
    near_threshold : int
        Hamming distance (of 64 bits) up to which two pHashes are near duplicates.
    conversions : optional
        What the decoder changed in each image of ``image_paths``
        (:attr:`~xai_helpers.data.cache.ImageCache.conversions`).

    Returns
    -------
    dict
        Keys ``n_images``, ``per_split_class``, ``class_imbalance``, ``unreadable``,
        ``left_out`` (count per problem), ``conversions`` (count per conversion, with up to three
        ``conversion_examples`` each),
        ``skipped``, ``exact_duplicate_groups``, ``cross_split_exact_duplicate_groups``,
        ``exact_duplicates``, ``near_duplicate_groups``, ``cross_split_near_duplicate_groups``,
        ``near_duplicates``, ``mirrored_duplicate_groups``, ``cross_split_mirrored_duplicate_groups``,
        ``mirrored_duplicates`` (:func:`mirrored_duplicate_pairs`), ``near_duplicate_hash``,
        ``near_duplicate_threshold`` (and
        ``sizes``/``modes`` when given).
    """
    rows = index.rows
    split_of = dict(zip(rows["path"], rows["split"]))
    audit: dict[str, Any] = {"layout": index.layout, "root": index.root, "n_images": int(len(rows))}
    counts = rows.groupby(["split", "class"]).size()
    audit["per_split_class"] = {f"{s}/{c}": int(n) for (s, c), n in counts.items()}
    per_class = rows.groupby("class").size()
    audit["class_imbalance"] = {"counts": {c: int(n) for c, n in per_class.items()},
                                "max_over_min": float(per_class.max() / max(per_class.min(), 1))}
    audit["unreadable"] = list(unreadable)
    audit["left_out"] = dict(Counter(u.get("problem", "undecodable") for u in unreadable))
    counted: Counter = Counter()
    examples: dict[str, list[str]] = {}
    for path, changed in zip(image_paths or [], conversions or []):
        for what in changed or []:
            counted[what] += 1
            if len(examples.setdefault(what, [])) < 3:
                examples[what].append(str(path))
    audit["conversions"] = dict(counted.most_common())
    audit["conversion_examples"] = examples
    audit["skipped"] = list(index.skipped)
    audit["ignored_system_files"] = list(index.ignored)

    exact_groups = [list(g["path"]) for _, g in rows[rows["sha1"] != "empty"].groupby("sha1") if len(g) > 1]
    audit["exact_duplicates"] = exact_groups
    audit["exact_duplicate_groups"] = len(exact_groups)
    audit["cross_split_exact_duplicate_groups"] = sum(len({split_of[p] for p in g}) > 1 for g in exact_groups)

    audit["near_duplicate_hash"] = NEAR_DUPLICATE_HASH
    audit["near_duplicate_threshold"] = int(near_threshold)
    near: list[list[str]] = []
    mirrored: list[list[str]] = []
    if images is not None and image_paths is not None:
        hashes = perceptual_hash(images)
        near = [[image_paths[i] for i in g]
                for g in connected_groups(len(hashes), near_duplicate_pairs(hashes, near_threshold))]
        mirrored = [[image_paths[i] for i in g] for g in connected_groups(
            len(hashes), mirrored_duplicate_pairs(images, hashes, near_threshold))]
    audit["near_duplicates"] = near
    audit["near_duplicate_groups"] = len(near)
    audit["cross_split_near_duplicate_groups"] = sum(len({split_of[p] for p in g}) > 1 for g in near)
    audit["mirrored_duplicates"] = mirrored
    audit["mirrored_duplicate_groups"] = len(mirrored)
    audit["cross_split_mirrored_duplicate_groups"] = sum(len({split_of[p] for p in g}) > 1 for g in mirrored)
    if sizes is not None:
        audit["sizes"] = {f"{w}x{h}": int(n) for (w, h), n in Counter((w, h) for w, h, *_ in sizes).most_common(20)}
        audit["modes"] = dict(Counter(m for _, _, m, *_ in sizes))
    return audit


def audit_summary(audit: dict[str, Any], listed: int = 20) -> pd.DataFrame:
    """The audit's headline numbers as a two-column table (for notebook 01).

    Parameters
    ----------
    audit : dict
        ``data/audit.json`` (:func:`audit_dataset`).
    listed : int
        Files listed by name per kind (skipped, left out); the table says how many more
        ``data/audit.json`` holds.

    Returns
    -------
    pandas.DataFrame
        One ``value`` per check (the index: images found, files left out and why, skipped files,
        what the decoder converted, duplicates, label conflicts, leaks dropped, class imbalance),
        then the files skipped and left out.

    Examples
    --------
    >>> table = audit_summary({"n_images": 10, "unreadable": [{"path": "x.png", "reason": "truncated"}]})
    >>> table.iloc[:2].reset_index().values.tolist()
    [['images found', 10], ['files left out (unusable)', 1]]
    >>> audit_summary({"left_out": {"too_small": 2}, "conversions": {"CMYK -> RGB": 3}}).loc[
    ...     ["  left out: too small (under 8 px a side)", "  converted: CMYK -> RGB"], "value"].tolist()
    [2, 3]
    """
    rows = [("images found", audit.get("n_images")),
            ("files left out (unusable)", len(audit.get("unreadable", [])) or sum(audit.get("left_out", {}).values()))]
    for problem, n in audit.get("left_out", {}).items():
        rows.append((f"  left out: {PROBLEMS.get(problem, problem)}", n))
    rows.append(("other files skipped (not images)", len(audit.get("skipped", []))))
    for what, n in audit.get("conversions", {}).items():
        rows.append((f"  converted: {what}", n))
    rows += [("exact duplicate groups", audit.get("exact_duplicate_groups")),
             ("  of which across splits", audit.get("cross_split_exact_duplicate_groups")),
             ("near duplicate groups", audit.get("near_duplicate_groups")),
             ("  of which across splits", audit.get("cross_split_near_duplicate_groups")),
             ("mirrored duplicate groups (a flipped near copy)", audit.get("mirrored_duplicate_groups")),
             ("  of which across splits", audit.get("cross_split_mirrored_duplicate_groups")),
             ("look-alike groups joining two patients (reported, not joined)",
              audit.get("look_alike_groups_across_patients_not_joined", "n/a (no patient IDs)")),
             ("near-duplicate hash", audit.get("near_duplicate_hash")),
             ("near-duplicate threshold (Hamming bits)", audit.get("near_duplicate_threshold")),
             ("class imbalance (largest / smallest class)",
              round(audit.get("class_imbalance", {}).get("max_over_min", float("nan")), 2))]
    conflicts = audit.get("label_conflicts", [])
    rows.append(("label conflicts: identical files under different classes (left out)", len(conflicts)))
    for c in conflicts[:listed]:
        rows.append(("label conflict", f"{', '.join(c['paths'])} ({' vs '.join(c['classes'])})"))
    for key, value in audit.get("splits", {}).items():
        if isinstance(value, (int, float)):
            rows.append((f"splits: {key.replace('_', ' ')}", value))
    if "test_split" in audit.get("splits", {}):
        rows.append(("test split", audit["splits"]["test_split"]))
    for kind, entries in (("label conflict", conflicts), ("skipped", audit.get("skipped", [])),
                          ("left out", audit.get("unreadable", []))):
        if kind != "label conflict":
            rows += [(kind, f"{e['path']}: {e['reason']}") for e in entries[:listed]]
        if len(entries) > listed:
            rows.append((kind, f"... and {len(entries) - listed} more, all in data/audit.json"))
    return pd.DataFrame(rows, columns=["item", "value"], dtype=object).set_index("item")
