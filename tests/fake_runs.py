"""Run folders as notebooks 01-05 leave them, with chosen numbers, built without training: for the
summary tests (tests/test_report.py) and the summary's doctests (conftest.py's ``example_study``)."""
import json
from dataclasses import asdict

import numpy as np
import pandas as pd
import torch

from xai_helpers.stats import compare_methods, compare_models, compare_predictions
from xai_helpers.training import TrainConfig

MODELS = ["resnet50", "densenet121"]


def fake_run(folder, dataset, classes, accuracy, ci, weights="none", image_size=64):
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
    # the share of images whose score rises: 3x the method's mean change, drawn per image (own stream, so the
    # confidence increases above stay what the summary tests expect)
    rises = np.random.default_rng(1).random(len(per_image))
    per_image["increase_in_confidence_pct"] = 100.0 * (rises < 3 * per_image["method"].map(ci))
    per_image.to_csv(folder / "xai_per_image.csv", index=False)
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


def fake_study(root):
    """Two dataset runs (skin cancer, brain tumour) and a folder that is not a run, under ``root``."""
    fake_run(root / "skin_cancer_isic", "skin_cancer_isic", ["benign", "malignant"],
             {"resnet50": 0.80, "densenet121": 0.70}, {"gradcam": 0.05, "xgradcam": 0.06, "layercam": 0.01})
    fake_run(root / "brain_tumor_mri", "brain_tumor_mri", ["glioma", "meningioma"],
             {"resnet50": 0.90, "densenet121": 0.91}, {"gradcam": 0.10, "xgradcam": 0.11, "layercam": 0.02},
             weights="imagenet", image_size=224)
    (root / "notebooks").mkdir()  # a folder without metrics.csv is not a dataset run
    return root
