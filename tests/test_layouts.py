"""Every published layout: real folders from ../shared/data where present, generated fixtures otherwise."""
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import shared_dataset
from xai_helpers.data.layouts import DatasetError, detect_layout, kermany_patient, scan_dataset


def _img(path, size=(20, 20), value=100):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size, value, np.uint8)).save(path)


def _tree(root, splits, classes, n=2):
    for s in splits:
        for c in classes:
            for i in range(n):
                _img(root / s / c / f"{c}_{i}.jpg", value=10 * i + len(c))
    return root


@pytest.mark.parametrize("splits, classes, layout, canonical", [
    (("Training", "Testing"), ("glioma_tumor", "meningioma_tumor", "no_tumor", "pituitary_tumor"),
     "brain_tumor_mri", ["glioma", "meningioma", "no_tumor", "pituitary"]),
    (("Training", "Testing"), ("glioma", "meningioma", "notumor", "pituitary"),
     "brain_tumor_mri_nickparvar", ["glioma", "meningioma", "no_tumor", "pituitary"]),
    (("train", "test"), ("benign", "malignant"), "skin_cancer_isic", ["benign", "malignant"]),
    (("train", "val", "test"), ("NORMAL", "PNEUMONIA"), "chest_xray_pneumonia", ["normal", "pneumonia"]),
    (("train", "test"), ("cats", "dogs", "birds"), "imagefolder", ["birds", "cats", "dogs"]),
])
def test_layout_detected_and_classes_canonical(tmp_path, splits, classes, layout, canonical):
    root = _tree(tmp_path / "ds", splits, classes)
    assert detect_layout(root) == layout
    index = scan_dataset(root)
    assert index.layout == layout
    assert index.classes == canonical
    assert set(index.rows["split"]) == {"train", "test"} | ({"val"} if "val" in splits else set())


def test_imagefolder_without_split_folders_is_all_training(tmp_path):
    root = tmp_path / "flat"
    for c in ("a", "b"):
        for i in range(3):
            _img(root / c / f"{i}.png")
    assert detect_layout(root) == "imagefolder"
    index = scan_dataset(root, "imagefolder")
    assert set(index.rows["split"]) == {"train"} and len(index) == 6


def test_ham10000_classes_and_lesion_groups(tmp_path):
    root = tmp_path / "ham"
    meta = pd.DataFrame({"lesion_id": ["HAM_1", "HAM_1", "HAM_2", "HAM_3"],
                         "image_id": ["ISIC_1", "ISIC_2", "ISIC_3", "ISIC_4"],
                         "dx": ["mel", "mel", "nv", "bkl"]})
    meta.to_csv(root.mkdir() or root / "HAM10000_metadata.csv", index=False)
    for i in (1, 2, 3):
        _img(root / "HAM10000_images_part_1" / f"ISIC_{i}.jpg")
    _img(root / "HAM10000_images_part_2" / "ISIC_99.jpg")  # not in the metadata
    assert detect_layout(root) == "ham10000"
    index = scan_dataset(root)
    assert dict(zip(index.rows["path"].str.extract(r"(ISIC_\d+)")[0], index.rows["class"])) == {
        "ISIC_1": "melanoma", "ISIC_2": "melanoma", "ISIC_3": "melanocytic_nevus"}
    assert index.rows.loc[index.rows["class"] == "melanoma", "group"].nunique() == 1
    reasons = {r["reason"] for r in index.skipped}
    assert "listed in HAM10000_metadata.csv but missing" in reasons  # ISIC_4
    assert "image file not listed in HAM10000_metadata.csv" in reasons  # ISIC_99


@pytest.mark.parametrize("name, expected", [
    ("person1_bacteria_1.jpeg", "person1"), ("person1427_virus_2438.jpeg", "person1427"),
    ("IM-0115-0001.jpeg", "IM-0115"), ("NORMAL2-IM-1427-0001.jpeg", "NORMAL2-IM-1427")])
def test_kermany_patient_from_file_name(name, expected):
    assert kermany_patient(name) == expected


def test_bad_inputs_name_the_folder(tmp_path):
    with pytest.raises(DatasetError, match="data_root: folder .*nowhere does not exist"):
        scan_dataset(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="no known layout"):
        detect_layout(empty)
    root = _tree(tmp_path / "skin", ("train", "test"), ("benign", "malignant"))
    for p in (root / "test" / "malignant").iterdir():
        p.unlink()
    with pytest.raises(DatasetError, match=r"test/malignant: class folder is empty"):
        scan_dataset(root)
    root2 = _tree(tmp_path / "skin2", ("train",), ("benign", "malignant"))
    _tree(root2, ("test",), ("benign",))
    with pytest.raises(DatasetError, match="class folders differ between splits"):
        scan_dataset(root2, "imagefolder")
    with pytest.raises(DatasetError, match="class folder 'cats' is not part of layout 'skin_cancer_isic'"):
        scan_dataset(_tree(tmp_path / "pets", ("train", "test"), ("cats", "dogs")), "skin_cancer_isic")
    with pytest.raises(DatasetError, match="dataset: unknown layout 'mnist'"):
        scan_dataset(root2, "mnist")


def test_non_image_files_are_reported_not_dropped_silently(tmp_path):
    root = _tree(tmp_path / "skin", ("train", "test"), ("benign", "malignant"))
    (root / "train" / "benign" / "notes.txt").write_text("hello")
    (root / "train" / "benign" / ".DS_Store").write_bytes(b"\0")
    index = scan_dataset(root)
    assert [r["path"].endswith("notes.txt") for r in index.skipped] == [True]
    assert index.ignored[0].endswith(".DS_Store")


@pytest.mark.shared_data
@pytest.mark.parametrize("name, layout, counts", [
    ("brain_tumor_mri", "brain_tumor_mri", {("train", "glioma"): 826, ("test", "pituitary"): 74}),
    ("skin_cancer_isic", "skin_cancer_isic", {("train", "malignant"): 1196, ("test", "benign"): 360}),
    ("chest_xray_pneumonia", "chest_xray_pneumonia", {("train", "normal"): 1340, ("test", "pneumonia"): 387}),
])
def test_real_datasets_are_recognised(name, layout, counts):
    root = shared_dataset(name)
    assert detect_layout(root) == layout
    index = scan_dataset(root)
    sizes = index.rows.groupby(["split", "class"]).size()
    for key, n in counts.items():
        assert sizes[key] == n
    if layout == "chest_xray_pneumonia":  # patients group several images
        assert index.rows["group"].nunique() < len(index)
