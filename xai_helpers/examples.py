"""Small run folders built on demand, for the examples in the docs (and the tests that use them).

Every docstring example that needs a run folder calls one of these, so an example copied into a
notebook works as it is:

* :func:`tiny_run`: the parameters of a run folder that notebooks 01 and 02 have prepared and trained
  (6 synthetic images per class, ResNet50, 2 folds, 1 epoch: seconds on 2 cores; nothing is learnt);
* :func:`example_study`: a study folder of two dataset runs as notebooks 01-05 leave them, with chosen
  numbers and no training (:func:`fake_study`), for the report's examples.

Both are built once per process in a temporary folder, removed when the process ends.

Examples
--------
>>> from xai_helpers.report import load_study
>>> [r.dataset for r in load_study(example_study())]
['brain_tumor_figshare', 'brain_tumor_mri', 'skin_cancer_isic']
"""
from __future__ import annotations

import atexit
import copy
import json
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .checkpoints import save_checkpoint
from .run import resolve_run_params
from .stats import compare_methods, compare_models, compare_predictions
from .steps import prepare_data, train_models
from .training import TrainConfig

_BUILT: dict[str, Any] = {}


def _workdir() -> Path:
    if "root" not in _BUILT:
        root = Path(tempfile.mkdtemp(prefix="xai_helpers_examples_"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        _BUILT["root"] = root
    return _BUILT["root"]


def tiny_run() -> dict[str, Any]:
    """Parameters of a tiny run folder prepared and trained by notebooks 01 and 02 (built once per process).

    Returns
    -------
    dict
        Resolved parameters (the ``quick`` profile on 6 synthetic images per class, ResNet50 only);
        a fresh copy on every call.

    Examples
    --------
    >>> params = tiny_run()
    >>> params["models"], (Path(params["run_dir"]) / "metrics.csv").is_file()
    (['resnet50'], True)
    """
    if "tiny_run" not in _BUILT:
        root = _workdir() / "tiny"
        params = resolve_run_params("quick", {
            "run_dir": str(root / "run"), "data_root": str(root / "synthetic"), "synthetic_per_class": 6,
            "models": ["resnet50"], "explain_per_class": 1, "generalization_per_class": 2,
            "corruption_severities": [1]})
        train_models(prepare_data(params, progress=False), params, progress=False)
        _BUILT["tiny_run"] = params
    return copy.deepcopy(_BUILT["tiny_run"])


def example_study() -> Path:
    """A study folder of two dataset runs with chosen numbers (:func:`fake_study`), built once per process.

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> sorted(p.name for p in example_study().iterdir() if (p / "metrics.csv").is_file())
    ['brain_tumor_figshare', 'brain_tumor_mri', 'skin_cancer_isic']
    """
    if "example_study" not in _BUILT:
        _BUILT["example_study"] = fake_study(_workdir() / "study")
    return _BUILT["example_study"]


#: The models of the fake runs.
FAKE_MODELS = ["resnet50", "densenet121"]


#: The target layer of each fake model's localisation rows (the layers of the same resolution at 224 px).
FAKE_LAYERS = {"resnet50": "layer4", "densenet121": "features.relu5"}


def fake_run(folder: Path, dataset: str, classes: list[str], accuracy: dict[str, float], ci: dict[str, float],
             weights: str = "none", image_size: int = 64,
             localisation: dict[str, dict[str, float]] | None = None) -> pd.DataFrame:
    """A run folder as notebooks 01-05 leave it, with chosen accuracies and confidence increases, built
    without training.

    Parameters
    ----------
    folder : pathlib.Path
        Created; must not exist.
    dataset : str
    classes : list of str
    accuracy : dict
        Model -> mean test accuracy (:data:`FAKE_MODELS`).
    ci : dict
        CAM method -> mean confidence increase.
    weights : str
    image_size : int
    localisation : dict, optional
        Model -> map (CAM method or baseline map) -> mean mask AUROC on masked test images; each image's
        score is drawn around it, its pointing-game hit with that probability. Without it the run has
        no lesion masks.

    Returns
    -------
    pandas.DataFrame
        The ``metrics.csv`` written.

    Examples
    --------
    >>> m = fake_run(Path(tempfile.mkdtemp()) / "run", "skin_cancer_isic", ["benign", "malignant"],
    ...              {"resnet50": 0.8, "densenet121": 0.7}, {"gradcam": 0.05})
    >>> m.groupby("model")["accuracy"].mean().round(2).to_dict()
    {'densenet121': 0.7, 'resnet50': 0.8}
    """
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = [{"dataset": dataset, "model": m, "fold": f, "weights": weights,
             "accuracy": accuracy[m] + 0.01 * (f - 1), "balanced_accuracy": accuracy[m],
             "f1_macro": accuracy[m] - 0.02 + 0.01 * f, "n_train": 200, "n_val": 100, "n_test": 90,
             "train_seconds": 10.0}
            for m in FAKE_MODELS for f in range(3)]
    metrics = pd.DataFrame(rows)
    metrics.to_csv(folder / "metrics.csv", index=False)
    # the same 90 test images for every fold: each model right on its accuracy's share of them
    truth = [classes[i % len(classes)] for i in range(90)]
    wrong = {c: classes[(k + 1) % len(classes)] for k, c in enumerate(classes)}
    predictions = {(m, f): pd.DataFrame({"path": [f"t{i}.png" for i in range(90)], "true": truth,
                                         "pred": [t if i < round(90 * accuracy[m]) else wrong[t]
                                                  for i, t in enumerate(truth)]})
                   for m in FAKE_MODELS for f in range(3)}
    for f in range(3):  # what the fits used, as their checkpoints record it
        ckpt = folder / "checkpoints" / f"resnet50_fold{f}"
        ckpt.mkdir(parents=True)
        save_checkpoint({"arch": "resnet50", "config": asdict(TrainConfig(epochs=8, seed=f))}, ckpt / "last.pt")
    per_image = pd.DataFrame([{"model": "resnet50", "fold": f, "layer": "layer4", "method": meth,
                               "path": f"{c}_{i}.png", "class": c,
                               "confidence_increase": ci[meth] + rng.normal(0, 0.01)}
                              for f in range(3) for meth in ci for c in classes for i in range(8)])
    # the share of images whose score rises: 3x the method's mean change, drawn per image (own stream, so the
    # confidence increases above stay what the summary tests expect)
    rises = np.random.default_rng(1).random(len(per_image))
    per_image["increase_in_confidence_pct"] = 100.0 * (rises < 3 * per_image["method"].map(ci))
    if localisation:  # every model explains the same 8 images per class; its own stream, as above
        draw = np.random.default_rng(2)
        loc = pd.DataFrame([{"model": m, "fold": f, "layer": FAKE_LAYERS[m], "method": meth, "path": f"{c}_{i}.png",
                             "class": c, "mask_auroc": float(np.clip(auroc + draw.normal(0, 0.03), 0, 1)),
                             "pointing_game": float(draw.random() < auroc)}
                            for m, maps in localisation.items() for f in range(3) for meth, auroc in maps.items()
                            for c in classes for i in range(8)])
        keys = ["model", "fold", "layer", "method", "path", "class"]
        per_image = per_image.merge(loc, on=keys, how="outer")  # baseline maps: localisation columns only
    per_image.to_csv(folder / "xai_per_image.csv", index=False)
    xai = per_image.groupby(["model", "method", "class"]).agg(n=("path", "size"),
                                                              confidence_increase=("confidence_increase", "mean"))
    xai.reset_index().to_csv(folder / "xai_metrics.csv", index=False)
    (folder / "stats").mkdir()
    tests = pd.concat([compare_models(metrics, ("accuracy", "f1_macro")),
                       compare_predictions(predictions, n_boot=100, n_boot_images=2000),
                       compare_methods(per_image, ["confidence_increase", "mask_auroc", "pointing_game"])],
                      ignore_index=True)
    tests.to_csv(folder / "stats" / "paired_tests.csv", index=False)
    (folder / "config.json").write_text(json.dumps({"dataset": dataset, "image_size": image_size, "epochs": 8,
                                                    "cam_model": "resnet50",
                                                    "max_per_class": 150, "explain_per_class": 8,
                                                    "cam_layer": "layer4", "weights": weights}))
    (folder / "data").mkdir()
    (folder / "data" / "audit.json").write_text(json.dumps({"exact_duplicate_groups": 3, "near_duplicate_groups": 5,
                                                            "splits": {"dropped_train_images": ["a", "b"]}}))
    return metrics


def fake_study(root: Path) -> Path:
    """Three dataset runs (skin cancer, brain tumour MRI, the Figshare set with lesion masks) and a folder
    that is not a run, under ``root``.

    On the Figshare run both models are explained and scored against the masks: ResNet50's GradCAM and
    XGradCAM localise clearly better than the centre prior, its EigenGradCAM worse; no method of
    DenseNet121's beats the prior.

    Parameters
    ----------
    root : pathlib.Path

    Returns
    -------
    pathlib.Path
        ``root``.

    Examples
    --------
    >>> root = fake_study(Path(tempfile.mkdtemp()))
    >>> (root / "skin_cancer_isic" / "metrics.csv").is_file()
    True
    """
    fake_run(root / "skin_cancer_isic", "skin_cancer_isic", ["benign", "malignant"],
             {"resnet50": 0.80, "densenet121": 0.70}, {"gradcam": 0.05, "xgradcam": 0.06, "layercam": 0.01})
    fake_run(root / "brain_tumor_mri", "brain_tumor_mri", ["glioma", "meningioma"],
             {"resnet50": 0.90, "densenet121": 0.91}, {"gradcam": 0.10, "xgradcam": 0.11, "layercam": 0.02},
             weights="imagenet", image_size=224)
    fake_run(root / "brain_tumor_figshare", "brain_tumor_figshare", ["glioma", "meningioma", "pituitary"],
             {"resnet50": 0.88, "densenet121": 0.86},
             {"gradcam": 0.02, "xgradcam": 0.03, "eigengradcam": -0.05, "layercam": 0.01},
             weights="imagenet", image_size=224,
             localisation={"resnet50": {"gradcam": 0.86, "xgradcam": 0.88, "eigengradcam": 0.62, "layercam": 0.78,
                                        "centre_prior": 0.78, "uniform_random": 0.50},
                           "densenet121": {"gradcam": 0.70, "xgradcam": 0.69, "eigengradcam": 0.71,
                                           "layercam": 0.72, "centre_prior": 0.78, "uniform_random": 0.50}})
    (root / "notebooks").mkdir()  # a folder without metrics.csv is not a dataset run
    return root
