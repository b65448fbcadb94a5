import hashlib
import json

import numpy as np
from PIL import Image

from xai_helpers.data.layouts import detect_layout, scan_dataset
from xai_helpers.data.synthetic import SYNTHETIC_CLASSES, draw_slice, make_synthetic_dataset


def _digest(root):
    h = hashlib.sha1()
    for p in sorted(root.rglob("*.png")):
        h.update(p.relative_to(root).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_other_seed_other_images(tmp_path):
    a = make_synthetic_dataset(tmp_path / "a", n_per_class=3, seed=5, progress=False)
    b = make_synthetic_dataset(tmp_path / "b", n_per_class=3, seed=5, progress=False)
    c = make_synthetic_dataset(tmp_path / "c", n_per_class=3, seed=6, progress=False)
    assert _digest(a) == _digest(b) != _digest(c)


def test_layout_masks_beside_images_and_class_decided_by_lesion(tmp_path):
    root = make_synthetic_dataset(tmp_path / "syn", n_per_class=4, n_test_per_class=2, progress=False)
    assert json.loads((root / "synthetic.json").read_text())["n_per_class"] == 4
    assert detect_layout(root) == "synthetic"
    index = scan_dataset(root)
    assert index.attrs["classes"] == sorted(SYNTHETIC_CLASSES)
    assert (index.groupby(["split", "class"]).size() == [2, 2, 2, 4, 4, 4]).all()
    for row in index.itertuples():
        mask = np.asarray(Image.open(row.mask)) > 127
        img = np.asarray(Image.open(row.path))
        assert mask.shape == img.shape
        # no lesion <=> empty mask: the class is decided by the lesion
        assert mask.any() == (row[3] != "no_lesion")


def test_regeneration_is_skipped_when_settings_match(tmp_path):
    root = make_synthetic_dataset(tmp_path / "syn", n_per_class=2, progress=False)
    stamp = (root / "train" / "no_lesion").stat().st_mtime_ns
    some = next((root / "train" / "no_lesion").iterdir())
    before = some.stat().st_mtime_ns
    make_synthetic_dataset(root, n_per_class=2, progress=False)
    assert some.stat().st_mtime_ns == before and (root / "train" / "no_lesion").stat().st_mtime_ns == stamp


def test_lesions_are_brighter_structures_inside_the_head():
    rng = np.random.default_rng(0)
    img, mask = draw_slice(rng, 1)
    assert img.dtype == np.uint8 and mask.sum() > 100
    assert img[mask].mean() > img[~mask & (img > 60)].mean() + 40  # solid lesion: bright mass
    img2, mask2 = draw_slice(np.random.default_rng(1), 2)
    # ring lesion: bright rim and dark core inside the mask
    assert img2[mask2].max() > 200 and img2[mask2].min() < 90


def test_other_settings_replace_the_old_images_and_foreign_folders_are_refused(tmp_path):
    import pytest

    root = make_synthetic_dataset(tmp_path / "syn", n_per_class=4, progress=False)
    make_synthetic_dataset(root, n_per_class=2, progress=False)
    assert len(list((root / "train" / "no_lesion").iterdir())) == 2
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("my data")
    with pytest.raises(FileExistsError, match="is not empty and holds no synthetic dataset"):
        make_synthetic_dataset(foreign, n_per_class=2, progress=False)
    assert (foreign / "notes.txt").exists()
