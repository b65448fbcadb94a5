import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xai_helpers.data.layouts import detect_layout, scan_dataset
from xai_helpers.data.synthetic import (GENERATOR, SYNTHETIC_CLASSES, GeneratedDataError, draw_slice,
                                        make_synthetic_dataset)


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
    assert json.loads((root / "synthetic.json").read_text())["settings"]["n_per_class"] == 4
    assert detect_layout(root) == "synthetic"
    index = scan_dataset(root)
    assert index.classes == sorted(SYNTHETIC_CLASSES)
    assert (index.rows.groupby(["split", "class"]).size() == [2, 2, 2, 4, 4, 4]).all()
    for row in index.rows.itertuples():
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



def _user_dataset(folder):
    """A user's own dataset that happens to sit beside a file named synthetic.json."""
    for split in ("train", "test", "masks"):
        (folder / split / "scans").mkdir(parents=True)
        (folder / split / "scans" / "patient1.png").write_bytes(b"precious")
    return folder


@pytest.mark.parametrize("marker_text", ["{not json", '{"n_per_class": 2}', "[1, 2]",
                                         '{"generator": "someone else", "files": {}}'])
def test_a_foreign_or_unreadable_marker_never_deletes_anything(tmp_path, marker_text):
    root = _user_dataset(tmp_path / "data")
    (root / "synthetic.json").write_text(marker_text)
    with pytest.raises(GeneratedDataError, match="nothing was deleted"):
        make_synthetic_dataset(root, n_per_class=2, progress=False)
    assert all((root / split / "scans" / "patient1.png").read_bytes() == b"precious"
               for split in ("train", "test", "masks"))
    assert (root / "synthetic.json").read_text() == marker_text


def test_regeneration_removes_only_what_the_generator_wrote(tmp_path):
    root = make_synthetic_dataset(tmp_path / "syn", n_per_class=3, progress=False)
    record = json.loads((root / "synthetic.json").read_text())
    assert record["generator"] == GENERATOR and record["settings"]["seed"] == 0
    assert len(record["files"]) == 2 * 3 * (3 + 4) and len(record["content_digest"]) == 40
    # a file of the user's among the generated ones stops the regeneration, naming it
    mine = root / "train" / "no_lesion" / "my_scan.png"
    mine.write_bytes(b"mine")
    with pytest.raises(GeneratedDataError, match="my_scan.png"):
        make_synthetic_dataset(root, n_per_class=2, progress=False)
    assert mine.read_bytes() == b"mine" and len(list((root / "train" / "no_lesion").iterdir())) == 4
    # a generated file edited since: also refused
    mine.unlink()
    edited = next((root / "test" / "ring_lesion").iterdir())
    edited.write_bytes(b"edited")
    with pytest.raises(GeneratedDataError, match="changed since"):
        make_synthetic_dataset(root, n_per_class=2, progress=False)
    assert edited.read_bytes() == b"edited"
    # a tampered file list is refused too
    tampered = {**record, "files": {**record["files"], "train/extra.png": "0" * 40}}
    (root / "synthetic.json").write_text(json.dumps(tampered))
    with pytest.raises(GeneratedDataError, match="content digest"):
        make_synthetic_dataset(root, n_per_class=2, progress=False)


def test_the_generated_external_set_is_protected_the_same_way(tmp_path):
    from xai_helpers.steps.stress import SYNTHETIC_EXTERNAL, load_external

    data_root = tmp_path / "synthetic"
    external = _user_dataset(tmp_path / "synthetic_external")
    (external / "synthetic.json").write_text("{}")
    params = {"external_data_root": None, "external_dataset": "auto", "dataset": "synthetic",
              "data_root": str(data_root), "synthetic_per_class": 6, "class_map": {}, "generalization_per_class": 2,
              "image_size": 32, "seed": 0, "resize_mode": "squash"}
    with pytest.raises(GeneratedDataError, match="nothing was deleted"):
        load_external(params, list(SYNTHETIC_CLASSES), grey=True, progress=False)
    assert (external / "train" / "scans" / "patient1.png").read_bytes() == b"precious"
    assert SYNTHETIC_EXTERNAL["seed"] == 1


def test_prepared_masks_one_per_image_and_none_only_where_an_image_has_none(tmp_path):
    from xai_helpers.config import resolve_params
    from xai_helpers.steps import load_prepared, prepare_data

    params = resolve_params({"run_dir": str(tmp_path / "run"), "data_root": str(tmp_path / "syn"),
                             "synthetic_per_class": 4, "folds": 2})
    data = prepare_data(params, progress=False)
    rows = np.arange(len(data.splits))
    missing = 3
    Path(data.splits["mask"].iloc[missing]).unlink()  # one image loses its mask file
    data = load_prepared(params, progress=False)
    masks = data.masks(rows)
    assert len(masks) == len(rows) and masks[missing] is None
    assert all(m is not None and m.shape == (64, 64) and m.dtype == bool for k, m in enumerate(masks) if k != missing)
    lesion = data.labels != data.class_names.index("no_lesion")
    assert all(masks[k].any() == lesion[k] for k in rows if k != missing)
    stacked = data.mask_array(rows)
    assert stacked.shape == (len(rows), 64, 64) and not stacked[missing].any()
