import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import shared_dataset
from xai_helpers.config import resolve_params
from xai_helpers.data.audit import audit_dataset, near_duplicate_pairs, perceptual_hash
from xai_helpers.data.prepared import merge_groups
from xai_helpers.steps import prepare_data


def test_phash_finds_resized_copies_not_other_images():
    rng = np.random.default_rng(0)
    base = (rng.random((64, 64)) * 255).astype(np.uint8)
    smooth = np.asarray(Image.fromarray(base).resize((16, 16)).resize((64, 64), Image.Resampling.BILINEAR))
    resized = np.asarray(Image.fromarray(smooth).resize((48, 48)).resize((64, 64)))
    other = np.asarray(Image.fromarray((rng.random((64, 64)) * 255).astype(np.uint8)).resize((16, 16)).resize((64, 64)))
    hashes = perceptual_hash(np.stack([smooth, resized, other])[:, None])
    assert near_duplicate_pairs(hashes, 4) == [(0, 1)]


def test_duplicates_join_groups_across_patients():
    index = pd.DataFrame({"path": ["a", "b", "c", "d"], "group": ["p1", "p1", "p2", "p3"]})
    assert merge_groups(index, [["b", "c"]]) == ["p1", "p1", "p1", "p3"]


def _write(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def test_audit_of_a_leaky_dataset_and_the_splits_that_fix_it(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "skin"
    imgs = [(np.asarray(Image.fromarray((rng.random((8, 8, 3)) * 255).astype(np.uint8)).resize((64, 64))))
            for _ in range(14)]
    for i in range(6):
        _write(root / "train" / "benign" / f"b{i}.png", imgs[i])
        _write(root / "train" / "malignant" / f"m{i}.png", imgs[6 + i])
    _write(root / "test" / "benign" / "tb.png", imgs[12])
    _write(root / "test" / "malignant" / "tm.png", imgs[13])
    (root / "train" / "benign" / "copy_of_test.png").write_bytes((root / "test" / "benign" / "tb.png").read_bytes())
    _write(root / "train" / "malignant" / "near_copy.png",
           np.asarray(Image.fromarray(imgs[13]).resize((60, 60)).resize((64, 64))))
    (root / "train" / "benign" / "empty.png").write_bytes(b"")
    (root / "train" / "benign" / "fake.png").write_text("not an image")
    params = resolve_params({"dataset": "skin_cancer_isic", "data_root": str(root), "run_dir": str(tmp_path / "run"),
                             "folds": 2})
    data = prepare_data(params, progress=False)
    audit = data.audit
    assert audit["n_images"] == 18
    assert {u["path"].rsplit("/", 1)[-1]: u["reason"].split(": ", 1)[1] for u in audit["unreadable"]} == {
        "empty.png": "empty file (0 bytes)", "fake.png": "not an image (cannot identify image file)"}
    assert audit["cross_split_exact_duplicate_groups"] == 1 and audit["exact_duplicate_groups"] == 1
    assert audit["cross_split_near_duplicate_groups"] >= 2  # the exact copy and the resized copy
    assert audit["near_duplicate_hash"].startswith("pHash") and audit["near_duplicate_threshold"] == 4
    used = {p.rsplit("/", 1)[-1] for p in data.splits["path"]}
    assert {"copy_of_test.png", "near_copy.png", "empty.png", "fake.png"}.isdisjoint(used)
    assert audit["splits"]["train_images_sharing_a_group_with_test"] == 2


@pytest.mark.shared_data
def test_brain_tumor_audit_reports_the_published_cross_split_duplicates(tmp_path):
    root = shared_dataset("brain_tumor_mri")
    from xai_helpers.data.cache import build_cache, file_digest
    from xai_helpers.data.layouts import scan_dataset

    index = scan_dataset(root)
    index.rows["sha1"] = [file_digest(p) for p in index.rows["path"]]
    cache = build_cache(index.rows["path"], 64, grey=True, digests=list(index.rows["sha1"]), progress=False)
    audit = audit_dataset(index, cache.unreadable, cache.images, cache.paths)
    assert audit["n_images"] == 3264 and audit["unreadable"] == []
    assert audit["cross_split_exact_duplicate_groups"] > 0
    assert audit["cross_split_near_duplicate_groups"] >= audit["cross_split_exact_duplicate_groups"]
    splits = {p: s for p, s in zip(index.rows["path"], index.rows["split"])}
    leak = next(g for g in audit["exact_duplicates"] if len({splits[p] for p in g}) > 1)
    assert len({open(p, "rb").read() for p in leak}) == 1  # really byte-identical


@pytest.mark.parametrize("threshold", [0, 4, 6])
def test_banded_near_duplicate_search_finds_exactly_the_exhaustive_pairs(threshold):
    from xai_helpers.data.audit import near_duplicate_pairs_exhaustive

    rng = np.random.default_rng(threshold)
    base = rng.integers(0, 2**63, 3000, dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, 3000, dtype=np.uint64)
    copies = []
    for k in range(600):  # near copies at 0..threshold+2 flipped bits: some in, some just out
        h = base[rng.integers(0, len(base))]
        for bit in rng.choice(64, size=k % (threshold + 3), replace=False):
            h ^= np.uint64(1) << np.uint64(int(bit))
        copies.append(h)
    hashes = np.concatenate([base, np.array(copies, dtype=np.uint64)])
    rng.shuffle(hashes)
    fast = near_duplicate_pairs(hashes, threshold)
    exhaustive = near_duplicate_pairs_exhaustive(hashes, threshold)
    assert len(exhaustive) > 100 and fast == exhaustive


def test_banded_search_on_clustered_hashes_in_small_blocks_finds_the_exhaustive_pairs():
    """Images of one modality share much of their pHash (dark background, centred anatomy): buckets get
    large. Comparing them in blocks (here tiny ones) must not lose or invent a pair."""
    from xai_helpers.data import audit as audit_mod

    rng = np.random.default_rng(5)
    common = np.uint64(rng.integers(0, 2**63))
    noise = rng.integers(0, 2**63, 2500, dtype=np.uint64) & np.uint64(0x0000_0000_00FF_FFFF)
    flips = np.uint64(1) << rng.integers(0, 64, 2500).astype(np.uint64)
    hashes = (common ^ noise) ^ np.where(rng.random(2500) < 0.5, flips, np.uint64(0))
    exhaustive = audit_mod.near_duplicate_pairs_exhaustive(hashes, 4)
    blocked = [tuple(map(int, p)) for p in audit_mod._close_pairs_by_band(hashes, 4, block_bytes=4096)]
    assert len(exhaustive) > 1000 and blocked == exhaustive == audit_mod.near_duplicate_pairs(hashes, 4)


def test_banded_cross_search_agrees_with_comparing_every_pair():
    from xai_helpers.data.audit import _popcount, cross_near_duplicates

    rng = np.random.default_rng(9)
    reference = rng.integers(0, 2**63, 2000, dtype=np.uint64)
    queries = rng.integers(0, 2**63, 1500, dtype=np.uint64)
    for k in range(0, 1500, 3):  # a third are copies of reference hashes with 0..6 flipped bits
        h = reference[rng.integers(0, 2000)]
        for bit in rng.choice(64, size=k % 7, replace=False):
            h ^= np.uint64(1) << np.uint64(int(bit))
        queries[k] = h
    exhaustive = (_popcount(queries[:, None] ^ reference[None, :]) <= 4).any(axis=1)
    assert 200 < exhaustive.sum() < 1500
    np.testing.assert_array_equal(cross_near_duplicates(queries, reference, 4), exhaustive)


@pytest.mark.parametrize("channels", [1, 3])
def test_perceptual_hash_is_imagehash_phash_bit_for_bit(channels):
    import imagehash  # the test extra installs it

    rng = np.random.default_rng(channels)
    fields = rng.integers(0, 256, (40, channels, 6, 6), dtype=np.uint8)
    images = np.stack([np.asarray(Image.fromarray(f[0] if channels == 1 else f.transpose(1, 2, 0))
                                  .resize((64, 64), Image.Resampling.BICUBIC)) for f in fields])
    images = images[:, None] if channels == 1 else images.transpose(0, 3, 1, 2)
    noise = rng.integers(0, 20, images.shape, dtype=np.uint8)  # texture, so no coefficient ties the median
    images = np.clip(images.astype(int) + noise, 0, 255).astype(np.uint8)
    ours = perceptual_hash(images)
    for img, h in zip(images, ours):
        pil = Image.fromarray(img[0] if channels == 1 else img.transpose(1, 2, 0))
        assert int(h) == int(str(imagehash.phash(pil)), 16)
