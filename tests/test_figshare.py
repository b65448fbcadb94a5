"""The Figshare brain tumour set (expert masks, patients): the .mat reader on files built like MATLAB v7.3's,
the converted folders on the real set, masks through every resize rule, patient-disjoint splits, and copies of a
slice flipped left-right found as leaks."""
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import shared_dataset
from xai_helpers.config import resolve_params
from xai_helpers.data.cache import load_image
from xai_helpers.data.figshare import WINDOW_PERCENTILES, read_mat_slice, window_to_uint8
from xai_helpers.data.layouts import detect_layout, scan_dataset
from xai_helpers.data.prepared import PreparedData
from xai_helpers.errors import DatasetError


def _write_mat(path, image, label, pid, mask):
    """A slice as MATLAB -v7.3 writes it: an HDF5 file behind a 512-byte MATLAB header, column-major arrays
    (so stored transposed), the patient ID as uint16 character codes, the label as a double."""
    import h5py

    with h5py.File(path, "w", userblock_size=512) as f:
        g = f.create_group("cjdata")
        g["image"] = np.asarray(image, np.int16).T
        g["label"] = np.array([[float(label)]])
        g["PID"] = np.array([[ord(c)] for c in pid], dtype=np.uint16)
        g["tumorMask"] = np.asarray(mask, np.uint8).T
        g["tumorBorder"] = np.array([[1.0, 2.0, 3.0, 4.0]])
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan 1 00:00:00 2017 HDF5 schema 1.00 ."
    with open(path, "r+b") as f:
        f.write(header.ljust(116, b" "))


@pytest.fixture
def mat_folder(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "figshare_download"
    root.mkdir()
    slices = {}
    for n, (label, pid) in enumerate([(1, "MR040"), (1, "MR040"), (2, "MR041"), (2, "MR041"), (3, "MR042"),
                                      (3, "MR042"), (2, "MR043"), (1, "MR044")], start=1):
        image = rng.integers(0, 900, (40, 48)).astype(np.int16)   # 40 rows x 48 columns: not square
        image[5:15, 30:40] = 3000                                  # a bright tumour, in the mask
        image[0, 0] = 32000                                        # one outlier voxel the window clips
        mask = np.zeros((40, 48), bool)
        mask[5:15, 30:40] = True
        _write_mat(root / f"{n}.mat", image, label, pid, mask)
        slices[n] = (image, label, pid, mask)
    (root / "cvind.mat").write_bytes(b"not a slice")   # the published folds file: not a slice
    (root / "99.mat").write_bytes(b"MATLAB 5.0 MAT-file, broken")  # a slice that cannot be read
    return root, slices


def test_mat_reader_returns_the_slice_as_displayed(mat_folder):
    root, slices = mat_folder
    s = read_mat_slice(root / "3.mat")
    image, label, pid, mask = slices[3]
    assert s["image"].shape == (40, 48) and np.array_equal(s["image"], image)  # transposed back
    assert (s["label"], s["class"], s["patient_id"]) == (2, "glioma", "MR041")
    assert np.array_equal(s["mask"], mask)
    with pytest.raises(DatasetError, match=r"99\.mat: not a slice of the Figshare"):
        read_mat_slice(root / "99.mat")


def test_sixteen_bit_slices_are_windowed_by_their_own_percentiles():
    rng = np.random.default_rng(1)
    image = rng.integers(-200, 4000, (64, 64)).astype(np.int16)
    image[0, :3] = [32767, 32000, -32000]
    out = window_to_uint8(image)
    lo, hi = np.percentile(image.astype(float), WINDOW_PERCENTILES)
    expected = np.clip(np.round((image - lo) / (hi - lo) * 255), 0, 255)
    assert out.dtype == np.uint8 and np.array_equal(out, expected)
    assert out[0, 0] == 255 and out[0, 2] == 0  # the outliers clip, they do not compress the rest
    # 0.5 % of the voxels at or beyond each end (a little more: the nearest values round to 0 and 255 too)
    assert 0.004 < (out == 0).mean() < 0.01 and 0.004 < (out == 255).mean() < 0.01


def test_a_folder_of_mat_files_is_a_dataset_with_patients_and_masks(mat_folder):
    root, slices = mat_folder
    assert detect_layout(root) == "brain_tumor_figshare"
    index = scan_dataset(root)
    assert index.layout == "brain_tumor_figshare" and index.grey
    assert index.classes == ["glioma", "meningioma", "pituitary"] and len(index) == 8
    rows = index.rows.assign(n=index.rows["path"].map(lambda p: int(p.rsplit("/", 1)[1].split(".")[0])))
    for r in rows.to_dict("records"):
        image, label, pid, mask = slices[r["n"]]
        assert r["group"] == f"patient_{pid}" and r["class"] == {1: "meningioma", 2: "glioma", 3: "pituitary"}[label]
        assert np.array_equal(np.asarray(Image.open(r["path"])), window_to_uint8(image))
        assert np.array_equal(np.asarray(Image.open(r["mask"])).astype(bool), mask)
    # reported, not fatal: a slice that cannot be read, and a cvind.mat that is no fold file
    assert [s["path"].rsplit("/", 1)[1] for s in index.skipped] == ["cvind.mat", "99.mat"]
    assert scan_dataset(root).rows["path"].tolist() == index.rows["path"].tolist()  # converted once, reused


def _write_cvind(path, folds, v73):
    """cvind.mat as the download has it (MATLAB v5, a column of doubles), or as MATLAB -v7.3 would write it."""
    column = np.asarray(folds, float)[:, None]
    if v73:
        import h5py

        with h5py.File(path, "w", userblock_size=512) as f:
            f["cvind"] = column.T  # column-major: stored transposed
        with open(path, "r+b") as f:
            f.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, HDF5 schema 1.00 .".ljust(116, b" "))
    else:
        from scipy.io import savemat

        savemat(path, {"cvind": column})


@pytest.mark.parametrize("v73", [False, True])
def test_the_published_folds_give_the_test_split_and_the_folds(mat_folder, tmp_path, v73, monkeypatch):
    """cvind.mat (one fold 1..5 per slice, patient-wise): fold 5 is the test split, folds 1-4 the
    cross-validation folds with folds=4; with another number of folds they are drawn by patient from the
    first four; a broken cvind.mat is reported, and the folds are drawn by patient."""
    from xai_helpers.data.splits import group_report, make_splits

    monkeypatch.setenv("XAI_HELPERS_CACHE", str(tmp_path / "cache"))
    root, slices = mat_folder
    # patients MR040 1, MR041 2, MR042 3, MR043 4, MR044 5 (slices 1-8 by their patient)
    by_patient = {"MR040": 1, "MR041": 2, "MR042": 3, "MR043": 4, "MR044": 5}
    folds = [by_patient[slices[n][2]] for n in range(1, 9)]
    _write_cvind(root / "cvind.mat", folds, v73)
    index = scan_dataset(root)
    rows = index.rows.assign(n=index.rows["path"].map(lambda p: int(p.rsplit("/", 1)[1].split(".")[0])))
    assert rows.set_index("n")["published_fold"].sort_index().tolist() == folds
    assert sorted(rows.loc[rows["split"] == "test", "n"]) == [8]  # MR044's slice: fold 5
    splits, report = make_splits(index.rows, folds=4, seed=0)
    assert report["folds_from"] == "published assignment (folds 1, 2, 3, 4)"
    n = splits["path"].map(lambda p: int(p.rsplit("/", 1)[1].split(".")[0]))
    train = splits["split"] == "train"
    assert dict(zip(n[train], splits.loc[train, "fold"])) == {k: folds[k - 1] - 1 for k in range(1, 8)}
    assert not group_report(splits)["groups_in_several_parts"]
    # another number of folds: drawn by patient from the published training folds (30 patients, 3 classes)
    import pandas as pd

    many = pd.DataFrame({"path": [f"{i}.png" for i in range(60)], "class": [("a", "b", "c")[i % 3] for i in range(60)],
                         "group": [f"patient_{i // 2}" for i in range(60)], "mask": None,
                         "published_fold": [1 + (i // 2) % 5 for i in range(60)]})
    many["split"] = np.where(many["published_fold"] == 5, "test", "train")
    splits3, report3 = make_splits(many, folds=3, seed=0)
    assert report3["folds_from"].startswith("drawn by group") and "4 published training folds" in report3["folds_from"]
    assert set(splits3.loc[splits3["split"] == "test", "path"]) == set(many.loc[many["split"] == "test", "path"])
    assert sorted(splits3.loc[splits3["split"] == "train", "fold"].unique()) == [0, 1, 2]
    assert not group_report(splits3)["groups_in_several_parts"]
    # a broken cvind.mat: reported, and the folds are drawn by patient
    (root / "cvind.mat").write_bytes(b"MATLAB 5.0 MAT-file, broken")
    index = scan_dataset(root)
    assert "published_fold" not in index.rows and (index.rows["split"] == "train").all()
    reasons = {s["path"].rsplit("/", 1)[1]: s["reason"] for s in index.skipped}
    assert "not the published fold file" in reasons["cvind.mat"] and "drawn by patient" in reasons["cvind.mat"]


@pytest.mark.parametrize("mode", ["squash", "center_crop", "pad"])
def test_masks_follow_the_image_through_every_resize_rule(tmp_path, mode):
    image = np.full((30, 60), 40, np.uint8)      # wide: 60 columns, 30 rows
    image[10:20, 38:50] = 250                    # the lesion, bright
    mask = np.zeros((30, 60), bool)
    mask[10:20, 38:50] = True
    Image.fromarray(image).save(tmp_path / "x.png")
    Image.fromarray(mask).save(tmp_path / "x_mask.png")  # 1-bit, as the Figshare masks
    resized = load_image(tmp_path / "x.png", grey=True, size=32, resize_mode=mode)
    import pandas as pd

    splits = pd.DataFrame({"path": [str(tmp_path / "x.png")], "split": "test", "class": ["a"], "fold": -1,
                           "mask": [str(tmp_path / "x_mask.png")]})
    data = PreparedData(splits, resized[None, None], ["a"], np.array([0]), {"resize_mode": mode})
    got = data.masks(np.array([0]))[0]
    bright = resized > 145
    assert got.shape == (32, 32) and got.any()
    iou = (got & bright).sum() / (got | bright).sum()
    assert iou > 0.6, (mode, iou)                 # on the lesion, not where a squashed mask would be
    squashed = np.asarray(Image.fromarray(mask).convert("L").resize((32, 32), Image.Resampling.NEAREST)) > 127
    if mode != "squash":
        assert not np.array_equal(got, squashed)


def _real_slices(n):
    root = shared_dataset("brain_tumor_figshare")
    return sorted((root / "images" / "glioma").glob("*.jpg"))[:n], sorted((root / "images" / "pituitary")
                                                                           .glob("*.jpg"))[:n]


@pytest.mark.shared_data
def test_a_flipped_reencoded_copy_of_a_test_slice_is_found_and_dropped(tmp_path):
    from xai_helpers.steps import prepare_data

    glioma, pituitary = _real_slices(6)
    root = tmp_path / "brain"
    for split, picks in (("train", slice(0, 5)), ("test", slice(5, 6))):
        for cls, files in (("glioma", glioma), ("pituitary", pituitary)):
            (root / split / cls).mkdir(parents=True)
            for f in files[picks]:
                shutil.copy(f, root / split / cls / f.name)
    with Image.open(glioma[5]) as im:  # the test slice, flipped left-right and re-encoded into training
        im.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(root / "train" / "glioma" / "mirrored.jpg", quality=85)
    for policy in ("drop_train", "keep"):
        params = resolve_params({"dataset": "imagefolder", "data_root": str(root), "run_dir": str(tmp_path / policy),
                                 "folds": 2, "leak_policy": policy})
        data = prepare_data(params, progress=False)
        audit = json.loads((tmp_path / policy / "data" / "audit.json").read_text())
        assert audit["cross_split_mirrored_duplicate_groups"] == 1, audit["mirrored_duplicates"]
        group = next(g for g in audit["mirrored_duplicates"] if any(p.endswith("mirrored.jpg") for p in g))
        assert sorted(p.rsplit("/", 2)[1] + "/" + p.rsplit("/", 1)[1] for p in group) == [
            f"glioma/{glioma[5].name}", "glioma/mirrored.jpg"]
        # the perceptual hash alone misses it (adjacent slices of one patient may be near copies of each other)
        assert not any(p.endswith("mirrored.jpg") for g in audit["near_duplicates"] for p in g)
        used = set(data.splits["path"])
        assert (str(root / "train" / "glioma" / "mirrored.jpg") in used) == (policy == "keep")
        assert audit["splits"]["train_images_sharing_a_group_with_test"] == 1


@pytest.mark.shared_data
def test_the_real_set_is_split_by_patient_with_masks_through_the_cache(tmp_path):
    from xai_helpers.steps import prepare_data

    root = shared_dataset("brain_tumor_figshare")
    params = resolve_params({"dataset": "brain_tumor_figshare", "data_root": str(root), "run_dir": str(tmp_path / "r"),
                             "folds": 3})
    data = prepare_data(params, progress=False)
    index = scan_dataset(root)
    assert len(index) == 2609 and index.rows["group"].nunique() == 199 and index.rows["mask"].notna().all()
    patient = dict(zip(index.rows["path"], index.rows["group"]))
    part = np.where(data.splits["split"] == "test", "test", "fold" + data.splits["fold"].astype(str))
    parts_of = data.splits.assign(patient=data.splits["path"].map(patient), part=part).groupby("patient")["part"]
    assert parts_of.nunique().max() == 1  # no patient in two of test and the folds
    audit = json.loads((tmp_path / "r" / "data" / "audit.json").read_text())
    rows = audit["splits"]["groups_per_part_and_class"]
    assert {r["part"] for r in rows} == {"test", "fold0", "fold1", "fold2"}
    assert {r["class"] for r in rows} == {"glioma", "meningioma", "pituitary"}
    test = [r for r in rows if r["part"] == "test"]
    assert 0.12 < sum(r["images"] for r in test) / len(data.splits) < 0.3 and all(r["groups"] >= 3 for r in test)
    # look-alike slices of two patients are counted, and did not join the patients (the split would collapse)
    assert audit["look_alike_groups_across_patients_not_joined"] > 0
    masks = data.mask_array(data.test_rows()[:20])
    assert masks is not None and masks.shape == (20, 64, 64) and masks.any(axis=(1, 2)).all()
