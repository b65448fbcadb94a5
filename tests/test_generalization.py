"""Corruptions, class mapping, calibration tables, and accuracy under corruption on a trained model."""
import numpy as np
import pytest
import torch
from torch import nn

from xai_helpers.data.synthetic import draw_slice
from xai_helpers.evaluation import expected_calibration_error, reliability_table
from xai_helpers.generalization import (CORRUPTIONS, ClassMappingError, condition_scores, corrupt,
                                        generalization_conditions, map_classes, predict_images,
                                        severity_summary)


def _images(n=6, channels=1, size=64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, channels, size, size), dtype=np.uint8)


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
@pytest.mark.parametrize("channels", [1, 3])
def test_corruptions_keep_shape_and_grow_with_severity(name, channels):
    smooth = np.stack([np.stack([draw_slice(np.random.default_rng([i, 0]), i % 3)[0]] * channels) for i in range(4)])
    out = {s: corrupt(smooth, name, s, seed=1) for s in range(1, 6)}
    for img in out.values():
        assert img.shape == smooth.shape and img.dtype == np.uint8
    change = [np.abs(out[s].astype(float) - smooth).mean() for s in range(1, 6)]
    assert change[0] > 0, f"{name} at severity 1 changes nothing"
    assert change[-1] > change[0] and all(b >= a - 0.2 for a, b in zip(change, change[1:])), (name, change)
    assert np.array_equal(corrupt(smooth, name, 3, seed=1), corrupt(smooth, name, 3, seed=1))


def test_corrupt_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown name 'fog'"):
        corrupt(_images(), "fog", 1)
    with pytest.raises(ValueError, match="severity"):
        corrupt(_images(), "jpeg", 6)
    with pytest.raises(ValueError, match="uint8"):
        corrupt(_images().astype(np.float32), "jpeg", 1)


def test_class_mapping_by_name_by_map_and_refused_without_common_class():
    mapping, unmapped = map_classes(["glioma", "meningioma", "pituitary", "no_tumor", "other"],
                                    ["glioma", "meningioma", "no_tumor", "pituitary"])
    assert mapping == {"glioma": 0, "meningioma": 1, "pituitary": 3, "no_tumor": 2} and unmapped == ["other"]
    mapping, unmapped = map_classes(["nevus", "melanoma", "bcc"], ["benign", "malignant"],
                                    {"nevus": "benign", "melanoma": "malignant"})
    assert mapping == {"nevus": 0, "melanoma": 1} and unmapped == ["bcc"]
    with pytest.raises(ClassMappingError, match="no class in common.*class_map"):
        map_classes(["cat", "dog"], ["benign", "malignant"])
    with pytest.raises(ClassMappingError, match="fish not among the external classes"):
        map_classes(["cat"], ["benign"], {"fish": "benign"})
    with pytest.raises(ClassMappingError, match="tumour not among the training classes"):
        map_classes(["cat"], ["benign"], {"cat": "tumour"})


def test_condition_scores_and_reliability_agree_with_ece():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet([1, 1, 1], 200)
    y = rng.integers(0, 3, 200)
    s = condition_scores(y, probs)
    assert s["accuracy"] == pytest.approx((probs.argmax(1) == y).mean())
    assert s["ece"] == pytest.approx(expected_calibration_error(y, probs))
    rel = reliability_table(y, probs).dropna()
    ece = (rel["count"] * (rel["accuracy"] - rel["confidence"]).abs()).sum() / rel["count"].sum()
    assert ece == pytest.approx(s["ece"])
    # F1 over the classes present: an external set without class 2 is not penalised for it
    only01 = condition_scores([0, 1], np.array([[.9, .05, .05], [.1, .8, .1]]))
    assert only01["f1_macro"] == 1.0


def test_conditions_and_severity_summary():
    conds = generalization_conditions([1, 3])
    assert conds[0] == ("clean", 0) and len(conds) == 1 + 2 * len(CORRUPTIONS)
    import pandas as pd
    table = pd.DataFrame([{"model": "m", "fold": f, "condition": c, "severity": s, "accuracy": a}
                          for f in (0, 1) for c, s, a in [("clean", 0, .9), ("jpeg", 1, .8), ("jpeg", 3, .5),
                                                          ("external:x", 0, .4)]])
    summary = severity_summary(table)
    assert summary[summary.condition == "jpeg"][["severity", "accuracy"]].values.tolist() == [[0, .9], [1, .8], [3, .5]]


class _TinyCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveMaxPool2d(1))
        self.head = nn.Linear(16, 2)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


def _lesion_images(n_per_class, seed):
    imgs, labels = [], []
    for c in (1, 2):  # solid_lesion, ring_lesion: told apart by fine detail
        for i in range(n_per_class):
            imgs.append(draw_slice(np.random.default_rng([seed, c, i]), c, size=64)[0][None])
            labels.append(c - 1)
    return np.stack(imgs), np.array(labels)


def test_accuracy_falls_as_corruption_grows_on_a_trained_model():
    torch.manual_seed(0)
    x_train, y_train = _lesion_images(40, seed=1)
    x_test, y_test = _lesion_images(30, seed=2)
    model = _TinyCNN()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    from xai_helpers.inference import BatchPipeline
    pipe = BatchPipeline(x_train, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    for _ in range(150):
        idx = torch.randint(0, len(x_train), (32,), generator=gen)
        loss = nn.functional.cross_entropy(model(pipe.batch(idx)), torch.as_tensor(y_train)[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    clean = condition_scores(y_test, predict_images(model, x_test))["accuracy"]
    assert clean >= 0.85, f"the tiny model did not learn the task (clean accuracy {clean:.2f})"
    for name in ("gaussian_blur", "contrast", "low_resolution"):  # the ones that erase what tells the classes apart
        acc = [clean] + [condition_scores(y_test, predict_images(model, corrupt(x_test, name, s, 0)))["accuracy"]
                         for s in (1, 3, 5)]
        assert acc[-1] < clean - 0.15, (name, acc)
        assert all(b <= a + 0.05 for a, b in zip(acc, acc[1:])), (name, acc)


def _external_folder(root, classes, n=3):
    from PIL import Image
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(draw_slice(np.random.default_rng([9, len(c), i]), 1)[0]).save(root / c / f"{c}_{i}.png")
    return root


def test_external_set_is_mapped_and_unmapped_classes_are_reported(tmp_path):
    from xai_helpers.steps.stress import load_external

    root = _external_folder(tmp_path / "site_b", ["tumour", "no_lesion", "artefact"])
    params = {"external_data_root": str(root), "external_dataset": "imagefolder", "dataset": "brain_tumor_mri",
              "class_map": {"tumour": "solid_lesion"}, "generalization_per_class": 2, "image_size": 32, "seed": 0,
              "resize_mode": "squash"}
    images, labels, report = load_external(params, ["no_lesion", "ring_lesion", "solid_lesion"], grey=True,
                                           progress=False)
    assert images.shape == (4, 1, 32, 32) and images.dtype == np.uint8
    assert sorted(labels.tolist()) == [0, 0, 2, 2]
    assert report["unmapped_classes"] == {"artefact": 3}
    assert report["class_mapping"] == {"no_lesion": "no_lesion", "tumour": "solid_lesion"}
    assert report["images_used"] == 4 and report["name"] == "site_b"
    with pytest.raises(ClassMappingError, match="no class in common"):
        load_external({**params, "class_map": {}}, ["benign", "malignant"], grey=True, progress=False)
    # a real dataset without an external set: none, and nothing is generated
    assert load_external({**params, "external_data_root": None}, ["a", "b"], grey=True) is None


def test_external_copies_of_training_images_are_counted_and_left_out(tmp_path):
    """Byte copies and re-encoded copies of training images in an external set are found, whatever their
    class folder or name, before any per-class cap; `<class>_tumor` folders map onto the brain classes."""
    import shutil
    from types import SimpleNamespace

    import pandas as pd
    from PIL import Image

    from xai_helpers.data.cache import build_cache
    from xai_helpers.steps.stress import load_external, training_fingerprints

    train_root = _external_folder(tmp_path / "train", ["glioma", "meningioma", "no_tumor", "pituitary"], n=4)
    train_paths = sorted(str(p) for p in train_root.rglob("*.png"))
    cache = build_cache(train_paths, 64, grey=True, cache_dir=tmp_path / "cache", progress=False)
    data = SimpleNamespace(splits=pd.DataFrame({"path": train_paths, "split": "train"}),
                           images=cache.images[cache.rows(train_paths)])
    ext = tmp_path / "site_b"
    for folder in ("glioma_tumor", "meningioma_tumor", "no_tumor", "pituitary_tumor"):
        (ext / folder).mkdir(parents=True)
        for i in range(3):  # unrelated images: smooth random fields, nothing like the training slices
            field = np.random.default_rng([77, len(folder), i]).integers(0, 256, (4, 4), dtype=np.uint8)
            Image.fromarray(field).resize((64, 64), Image.Resampling.BICUBIC).save(ext / folder / f"new_{i}.png")
    shutil.copy(train_paths[0], ext / "glioma_tumor" / "renamed_copy.png")                # byte copy
    with Image.open(train_paths[5]) as im:
        im.convert("L").save(ext / "no_tumor" / "reencoded.jpg", quality=85)              # re-encoded
        im.resize((96, 96)).save(ext / "pituitary_tumor" / "resized.png")                  # resized
    with Image.open(train_paths[9]) as im:                                                 # flipped, re-encoded
        im.convert("L").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(ext / "meningioma_tumor" / "mirrored.jpg",
                                                                        quality=90)
    params = {"external_data_root": str(ext), "external_dataset": "imagefolder", "dataset": "brain_tumor_mri",
              "class_map": {}, "generalization_per_class": 2, "image_size": 64, "seed": 0, "resize_mode": "squash"}
    classes = ["glioma", "meningioma", "no_tumor", "pituitary"]
    images, labels, report = load_external(params, classes, grey=True, training=training_fingerprints(data),
                                           progress=False)
    overlap = report["training_overlap"]
    assert (overlap["exact"], overlap["near"], overlap["mirrored"]) == (1, 2, 1)
    assert sorted(p.rsplit("/", 1)[-1] for p in overlap["paths"]) == ["mirrored.jpg", "reencoded.jpg",
                                                                       "renamed_copy.png", "resized.png"]
    assert report["unmapped_classes"] == {}
    assert report["class_mapping"] == {"glioma_tumor": "glioma", "meningioma_tumor": "meningioma",
                                       "no_tumor": "no_tumor", "pituitary_tumor": "pituitary"}
    assert report["classes_evaluated"] == classes
    # the cap comes after the check: 2 per class of the 3 new images each, no copy among them
    assert report["images_used"] == 8 and sorted(np.bincount(labels).tolist()) == [2, 2, 2, 2]
    train_images = data.images.reshape(len(data.images), -1).astype(int)
    assert all(np.abs(train_images - img.reshape(-1)).mean(axis=1).min() > 10 for img in images)


def test_external_set_with_expert_masks_gets_a_localisation_table(tmp_path):
    """Notebook 07 on an external `test/<class>/` folder with `masks/<class>/<stem>.png` beside it writes
    generalization_localisation.csv: one row per model, fold, method (and baseline map), image and
    metric; the centre prior's mask AUROC is scikit-learn's roc_auc_score of that map against the mask."""
    import shutil

    import pandas as pd
    from PIL import Image
    from sklearn.metrics import roc_auc_score

    from xai_helpers.cam_metrics import BASELINE_MAPS, LOCALISATION_METRICS, baseline_maps
    from xai_helpers.data.synthetic import SYNTHETIC_CLASSES
    from xai_helpers.examples import tiny_run
    from xai_helpers.steps import load_prepared
    from xai_helpers.steps.stress import run_generalization

    params = tiny_run()
    # a run folder of our own over the tiny run's checkpoints (the shared one stays as other tests expect it)
    run = tmp_path / "run"
    shutil.copytree(params["run_dir"], run, ignore=shutil.ignore_patterns("checkpoints"))
    (run / "checkpoints").symlink_to(f"{params['run_dir']}/checkpoints")
    ext = tmp_path / "hospital_b"
    masked = {}
    for label, cls in enumerate(SYNTHETIC_CLASSES):
        (ext / "test" / cls).mkdir(parents=True)
        (ext / "masks" / cls).mkdir(parents=True)
        for i in range(2):
            image, mask = draw_slice(np.random.default_rng([99, label, i]), label, brightness=0.1)
            Image.fromarray(image).save(ext / "test" / cls / f"b{i}.png")
            if mask.any():  # no_lesion images have no mask, as in real sets
                Image.fromarray((mask * 255).astype(np.uint8)).save(ext / "masks" / cls / f"b{i}.png")
                masked[str(ext / "test" / cls / f"b{i}.png")] = mask
    params = {**params, "run_dir": str(run), "external_data_root": str(ext), "external_dataset": "auto"}
    run_generalization(load_prepared(params), params, cam_images_per_class=1, progress=False)
    table = pd.read_csv(run / "generalization_localisation.csv")
    assert set(table["path"]) == set(masked)  # only images with a mask
    assert set(table["metric"]) == set(LOCALISATION_METRICS)
    assert set(table["method"]) == set(params["cam_methods"]) | set(BASELINE_MAPS)
    n = len(masked) * (len(params["cam_methods"]) + len(BASELINE_MAPS)) * len(LOCALISATION_METRICS)
    assert len(table) == n * table["fold"].nunique() and table["fold"].nunique() == 2
    assert set(table["model"]) == {"resnet50"} and set(table["layer"]) == {params["cam_layer"]}
    size = params["image_size"]
    prior = baseline_maps(1, size, seed=0)["centre_prior"][0]
    auroc = table[(table["method"] == "centre_prior") & (table["metric"] == "mask_auroc")]
    for path, value in zip(auroc["path"], auroc["value"]):
        mask = np.asarray(Image.fromarray(masked[path]).resize((size, size), Image.Resampling.NEAREST)) > 0
        assert value == pytest.approx(roc_auc_score(mask.ravel(), prior.ravel()))
    assert table["value"].between(0, 1).all()
