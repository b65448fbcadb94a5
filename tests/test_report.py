"""The cross-dataset summary: finding dataset runs, the tables, the published comparison, report.md."""
import json
from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest
import torch

from xai_helpers.report import (PUBLISHED, confidence_table, find_dataset_runs, load_study, performance_table,
                                published_comparison, write_report)
from xai_helpers.stats import compare_methods, compare_models, compare_predictions
from xai_helpers.training import TrainConfig

MODELS = ["resnet50", "densenet121"]


def _fake_run(folder, dataset, classes, accuracy, ci, weights="none", image_size=64):
    """A run folder as notebooks 01-05 leave it, with chosen accuracies and confidence increases."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = [{"dataset": dataset, "model": m, "fold": f, "weights": weights,
             "accuracy": accuracy[m] + 0.01 * (f - 1), "balanced_accuracy": accuracy[m],
             "f1_macro": accuracy[m] - 0.02 + 0.01 * f, "n_train": 200, "n_val": 100, "n_test": 90,
             "train_seconds": 10.0}
            for m in MODELS for f in range(3)]
    metrics = pd.DataFrame(rows)
    metrics.to_csv(folder / "metrics.csv", index=False)
    # the same 90 test images for every fold: each model right on its accuracy's share of them
    truth = [classes[i % len(classes)] for i in range(90)]
    wrong = {c: classes[(k + 1) % len(classes)] for k, c in enumerate(classes)}
    predictions = {(m, f): pd.DataFrame({"path": [f"t{i}.png" for i in range(90)], "true": truth,
                                         "pred": [t if i < round(90 * accuracy[m]) else wrong[t]
                                                  for i, t in enumerate(truth)]})
                   for m in MODELS for f in range(3)}
    for f in range(3):  # what the fits used, as their checkpoints record it
        ckpt = folder / "checkpoints" / f"resnet50_fold{f}"
        ckpt.mkdir(parents=True)
        torch.save({"arch": "resnet50", "config": asdict(TrainConfig(epochs=8, seed=f))}, ckpt / "last.pt")
    per_image = pd.DataFrame([{"model": "resnet50", "fold": f, "layer": "layer4", "method": meth,
                               "path": f"{c}_{i}.png", "class": c,
                               "confidence_increase": ci[meth] + rng.normal(0, 0.01)}
                              for f in range(3) for meth in ci for c in classes for i in range(8)])
    xai = per_image.groupby(["model", "method", "class"]).agg(n=("path", "size"),
                                                              confidence_increase=("confidence_increase", "mean"))
    xai.reset_index().to_csv(folder / "xai_metrics.csv", index=False)
    (folder / "stats").mkdir()
    tests = pd.concat([compare_models(metrics, ("accuracy", "f1_macro")),
                       compare_predictions(predictions, n_boot=100, n_boot_images=2000),
                       compare_methods(per_image, ["confidence_increase"])], ignore_index=True)
    tests.to_csv(folder / "stats" / "paired_tests.csv", index=False)
    (folder / "config.json").write_text(json.dumps({"dataset": dataset, "image_size": image_size, "epochs": 8,
                                                    "cam_model": "resnet50",
                                                    "max_per_class": 150, "explain_per_class": 8,
                                                    "cam_layer": "layer4", "weights": weights}))
    (folder / "data").mkdir()
    (folder / "data" / "audit.json").write_text(json.dumps({"exact_duplicate_groups": 3, "near_duplicate_groups": 5,
                                                            "splits": {"dropped_train_images": ["a", "b"]}}))
    return metrics


@pytest.fixture
def study(tmp_path):
    _fake_run(tmp_path / "skin_cancer_isic", "skin_cancer_isic", ["benign", "malignant"],
              {"resnet50": 0.80, "densenet121": 0.70},
              {"gradcam": 0.05, "xgradcam": 0.06, "layercam": 0.01})
    _fake_run(tmp_path / "brain_tumor_mri", "brain_tumor_mri", ["glioma", "meningioma"],
              {"resnet50": 0.90, "densenet121": 0.91},
              {"gradcam": 0.10, "xgradcam": 0.11, "layercam": 0.02}, weights="imagenet", image_size=224)
    (tmp_path / "notebooks").mkdir()  # a folder without metrics.csv is not a dataset run
    return tmp_path


def test_find_dataset_runs_in_a_study_folder_or_a_single_run(study):
    assert [p.name for p in find_dataset_runs(study)] == ["brain_tumor_mri", "skin_cancer_isic"]
    assert find_dataset_runs(study / "skin_cancer_isic") == [study / "skin_cancer_isic"]
    with pytest.raises(FileNotFoundError, match="no run folder with a metrics.csv"):
        load_study(study / "notebooks")


def test_performance_table_mean_std_and_marks(study):
    table = performance_table(load_study(study)).set_index(["dataset", "model"])
    skin = table.loc[("skin_cancer_isic", "resnet50"), "accuracy"]
    assert skin.startswith("0.8000 ± 0.0100") and skin.endswith("ref")
    # densenet121 is 0.10 below, wrong on 9 of the 90 test images resnet50 gets right in every fold and right
    # on none it gets wrong: the image-level bootstrap marks it, and so does the corrected t-test
    assert table.loc[("skin_cancer_isic", "densenet121"), "accuracy"].split()[-1] == "***"
    assert table.loc[("skin_cancer_isic", "densenet121"), "accuracy corrected_t"] in {"*", "**", "***"}
    assert table.loc[("brain_tumor_mri", "densenet121"), "accuracy"].endswith("ref")
    assert table.loc[("brain_tumor_mri", "resnet50"), "weights"] == "imagenet"


def test_confidence_table_and_published_comparison(study):
    runs = load_study(study)
    conf = confidence_table(runs)
    glioma = conf[(conf.dataset == "brain_tumor_mri") & (conf["class"] == "glioma")].set_index("method")
    assert glioma.loc["xgradcam", "mark"] == "ref" and glioma.loc["layercam", "mark"] in {"*", "**", "***"}
    pub = published_comparison(runs).set_index(["quantity", "method"])
    assert len(pub) == len(PUBLISHED)
    acc = pub.loc[("accuracy", "")]
    assert acc["published"] == 0.8631 and acc["ours"] == pytest.approx(0.80) and acc["n"] == 3
    assert acc["difference"] == pytest.approx(0.80 - 0.8631)
    # Wilson interval of 0.80 on the 90 test images, by hand: centre (72 + 1.96^2/2) / (90 + 1.96^2) = 0.78772,
    # half-width 1.96 * sqrt(90 * 0.8 * 0.2 + 1.96^2 / 4) / (90 + 1.96^2) = 0.08186
    assert acc["n_test"] == 90
    assert (acc["ours_ci_low"], acc["ours_ci_high"]) == pytest.approx((0.7059, 0.8696), abs=1e-4)
    assert acc["source"].startswith("Chaddad et al. (2025)") and "arXiv:2503.08420" in acc["source"]
    xg = pub.loc[("confidence_increase", "xgradcam")]
    assert xg["ours"] == pytest.approx(glioma.loc["xgradcam", "confidence_increase"]) and xg["published"] == 0.12


def test_report_states_the_protocol_tables_and_reasons(study):
    path = write_report(study)
    text = path.read_text()
    assert path == study / "report.md"
    for heading in ("## Protocol", "## Classification", "## Confidence increase", "## Next to the published numbers",
                    "## Why the numbers differ", "## Generalization"):
        assert heading in text
    assert "0.8631" in text and "0.8000 ± 0.0100 ref" in text
    assert "**skin_cancer_isic**: the CNNs were trained from scratch" in text
    assert "images were 64 px instead of 224 px" in text
    assert "2 training images that duplicate test images were removed" in text
    assert "**brain_tumor_mri**: the CNNs started from ImageNet weights" in text
    assert "_(notebook 07 has not run)_" in text
    # every protocol choice that changes results, read from the checkpoints
    assert "| learning-rate schedule" in text and "cosine" in text
    assert "BatchNorm recalibrated before each validation" in text and "True (1024)" in text
    assert "4 (half of epochs)" in text and "| augmentation" in text
    assert "predicted class" in text and "softmax" in text
    assert "GradCAM and XGradCAM give the same map" in text  # the fake runs explain layer4
    assert "Source of every published number: Chaddad et al. (2025)" in text
    assert "## Confidence increase per CAM method and class (resnet50)" in text
