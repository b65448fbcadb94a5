"""The study's steps on a tiny synthetic run: reproducible metrics.csv, resumable notebook 02."""
import json

import pandas as pd
import pytest

from xai_helpers.config import resolve_params
from xai_helpers.steps import load_prepared, prepare_data
from xai_helpers.steps.train import fold_seed, per_model, train_config, train_models

TIMING = ["train_seconds", "images_per_second"]


@pytest.fixture(scope="module")
def tiny_params(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    return lambda name: resolve_params({"run_dir": str(root / name), "data_root": str(root / "synthetic"),
                                        "synthetic_per_class": 6, "folds": 2, "epochs": 2, "batch_size": 8,
                                        "models": ["efficientnet_b0", "resnet50"]})


@pytest.fixture(scope="module")
def trained_runs(tiny_params):
    """Two run folders, 'a' and 'b', prepared and trained with the same seed (each test may use them)."""
    frames = {}
    for name in ("a", "b"):
        params = tiny_params(name)
        prepare_data(params, progress=False)
        frames[name] = train_models(load_prepared(params, progress=False), params, progress=False)
    return frames


def test_same_seed_gives_identical_metrics_csv(trained_runs):
    frames = [trained_runs["a"], trained_runs["b"]]
    pd.testing.assert_frame_equal(frames[0].drop(columns=TIMING), frames[1].drop(columns=TIMING))
    assert sorted(zip(frames[0].model, frames[0].fold)) == [("efficientnet_b0", 0), ("efficientnet_b0", 1),
                                                             ("resnet50", 0), ("resnet50", 1)]


def test_rerun_skips_finished_folds_and_trains_missing_ones(tiny_params, trained_runs):
    params = tiny_params("b")
    data = load_prepared(params, progress=False)
    run = params["run_dir"]
    ckpt = f"{run}/checkpoints/resnet50_fold1/last.pt"
    before = pd.read_csv(f"{run}/metrics.csv")
    import os
    stamp = os.stat(ckpt).st_mtime_ns
    # an interrupted notebook 02: one fold's row and checkpoint missing
    before[~((before.model == "efficientnet_b0") & (before.fold == 1))].to_csv(f"{run}/metrics.csv", index=False)
    after = train_models(data, params, progress=False)
    assert os.stat(ckpt).st_mtime_ns == stamp  # finished folds are not trained again
    pd.testing.assert_frame_equal(before.drop(columns=TIMING), after.drop(columns=TIMING))


def test_splits_file_and_audit_written(tiny_params, trained_runs):
    params = tiny_params("a")
    splits = pd.read_csv(f"{params['run_dir']}/data/splits.csv")
    assert list(splits.columns[:5]) == ["path", "split", "class", "group", "fold"]
    audit = json.loads(open(f"{params['run_dir']}/data/audit.json").read())
    for key in ("n_images", "unreadable", "exact_duplicate_groups", "cross_split_exact_duplicate_groups",
                "near_duplicate_groups", "cross_split_near_duplicate_groups", "exact_duplicates", "near_duplicates"):
        assert key in audit
    assert audit["n_images"] == 6 * 3 + 4 * 3


def test_seeds_and_learning_rates_per_model():
    assert fold_seed(0, "resnet50", 1) != fold_seed(0, "resnet50", 2) != fold_seed(0, "vgg16", 1)
    assert per_model({"default": 1e-3, "vgg16": 1e-4}, "vgg16") == 1e-4
    assert per_model({"default": 1e-3, "vgg16": 1e-4}, "resnet50") == 1e-3
    assert per_model(0.01, "vgg16") == 0.01
    with pytest.raises(ValueError, match="batch_size: no value for vgg16"):
        per_model({"resnet50": 8}, "vgg16", "batch_size")
    from xai_helpers.config import resolve_params
    params = resolve_params({"batch_size": {"default": 32, "vgg16": 16}, "warmup_epochs": {"default": 0, "vgg16": 1}})
    vgg, resnet = train_config(params, "vgg16", 0), train_config(params, "resnet50", 0)
    assert (vgg.batch_size, vgg.warmup_epochs, resnet.batch_size, resnet.warmup_epochs) == (16, 1.0, 32, 0.0)
    params = resolve_params({"epochs": {"default": 8, "vgg16": 4}})
    assert (train_config(params, "vgg16", 1).epochs, train_config(params, "densenet121", 1).epochs) == (4, 8)


def _check_predictions_in_fit_precision(params, models, folds):
    """Each fit's test predictions (``predictions/``) are its best checkpoint's, in the precision it trained and
    validated in: ``precision=fp32`` in fp32, ``auto`` under autocast except the CPU's fp32 models."""
    import numpy as np
    import torch

    from xai_helpers.inference import BatchPipeline, load_checkpoint, predict_proba
    from xai_helpers.runfolder import RunFolder
    from xai_helpers.training import amp_for

    data = load_prepared(params, progress=False)
    run = RunFolder(params["run_dir"])
    pipeline = BatchPipeline(data.images, torch.device("cpu"))
    for model in models:
        for fold in folds:
            _, _, test_rows = data.fold_rows(fold)
            written = pd.read_csv(run.predictions_file(model, fold))
            probs = written[[f"prob_{c}" for c in data.class_names]].to_numpy()
            net, _ = load_checkpoint(run.checkpoint_dir(model, fold) / "best.pt")
            amp = amp_for(model, torch.device("cpu"), params["precision"] == "auto")
            np.testing.assert_allclose(probs, predict_proba(net, pipeline, test_rows, amp=amp), rtol=0, atol=1e-6,
                                       err_msg=f"{model} fold {fold}, precision {params['precision']}")


def test_test_predictions_are_made_in_the_precision_the_fit_trained_in(tiny_params, trained_runs):
    _check_predictions_in_fit_precision(tiny_params("a"), ["efficientnet_b0", "resnet50"], [0, 1])
    params = {**tiny_params("fp32"), "precision": "fp32", "models": ["resnet50"]}
    prepare_data(params, progress=False)
    metrics = train_models(load_prepared(params, progress=False), params, folds=[0], progress=False)
    assert metrics["precision"].tolist() == ["fp32"]
    _check_predictions_in_fit_precision(params, ["resnet50"], [0])
