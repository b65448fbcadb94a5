"""The classical baselines: their features against PIL, their rows beside the CNNs', seeded and reused."""
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from xai_helpers import baselines
from xai_helpers.baselines import baseline_features, cnn_rows


def test_features_are_pil_box_downsampling_of_the_luma_image():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 3, 64, 64), dtype=np.uint8)
    feats = baseline_features(images, [2, 0])
    for row, i in enumerate([2, 0]):
        grey = Image.fromarray(images[i].transpose(1, 2, 0)).convert("L")  # ITU-R 601 luma, rounded to 8 bits
        ref = np.asarray(grey.resize((32, 32), Image.Resampling.BOX), dtype=np.float64) / 255
        assert np.abs(feats[row].reshape(32, 32) - ref).max() < 1.5 / 255


def test_a_memory_mapped_cache_gives_the_same_features(tmp_path):
    from xai_helpers.data.cache import images_for_rows

    arr = np.random.default_rng(1).integers(0, 256, (6, 1, 64, 64), dtype=np.uint8)
    np.save(tmp_path / "c.npy", arr)
    view = images_for_rows(np.load(tmp_path / "c.npy", mmap_mode="r"), [5, 1, 3])
    assert np.array_equal(baseline_features(view, [0, 2], chunk=1), baseline_features(arr, [5, 3]))


@pytest.fixture
def prepared(tmp_path):
    from xai_helpers.config import resolve_params
    from xai_helpers.steps import prepare_data

    params = resolve_params({"run_dir": str(tmp_path / "run"), "data_root": str(tmp_path / "synthetic"),
                             "synthetic_per_class": 12, "folds": 2})
    return prepare_data(params, progress=False), params


def test_baselines_write_rows_and_predictions_seeded_and_reused(prepared, monkeypatch):
    from xai_helpers.runfolder import RunFolder
    from xai_helpers.steps import train_baselines

    data, params = prepared
    metrics = train_baselines(data, params, progress=False)
    run = RunFolder(params["run_dir"])
    assert sorted(zip(metrics.model, metrics.fold)) == [(b, f) for b in baselines.BASELINE_NAMES for f in (0, 1)]
    assert cnn_rows(metrics).empty and metrics["accuracy"].between(0, 1).all()
    assert {"val_accuracy", "recall_no_lesion", "val_recall_no_lesion"} <= set(metrics.columns)
    first = pd.read_csv(run.predictions_file("baseline_hgb", 1))
    assert len(first) == (data.splits.split == "test").sum()
    # the same data and seed: nothing is refitted (fitting would fail here)
    monkeypatch.setattr("xai_helpers.steps.train.fit_baseline", lambda *a, **k: 1 / 0)
    again = train_baselines(data, params, progress=False)
    pd.testing.assert_frame_equal(again, metrics)
    monkeypatch.undo()
    # refitted from scratch with the same seed: the same probabilities
    run.predictions_file("baseline_hgb", 1).unlink()
    train_baselines(data, params, progress=False)
    pd.testing.assert_frame_equal(pd.read_csv(run.predictions_file("baseline_hgb", 1)), first)


def test_unknown_baseline_is_a_parameter_error():
    from xai_helpers.config import ParameterError, resolve_params

    assert resolve_params({"baselines": []})["baselines"] == []
    assert resolve_params({"baselines": "baseline_hgb"})["baselines"] == ["baseline_hgb"]
    with pytest.raises(ParameterError, match="baselines: unknown value 'svm'"):
        resolve_params({"baselines": ["svm"]})


def test_cnn_vs_baseline_tests_leave_the_cnn_pairs_p_values_unchanged():
    """Adding baseline rows must not change a CNN-vs-CNN p-value: the baseline pairs are their own Holm family."""
    from xai_helpers.stats import compare_models
    from xai_helpers.baselines import BASELINE_COMPARISON, best_baseline

    rng = np.random.default_rng(2)
    rows = [{"model": m, "fold": f, "accuracy": a + rng.normal(0, 0.02), "n_train": 100, "n_val": 50}
            for m, a in [("resnet50", .8), ("densenet121", .75), ("vgg16", .7), ("baseline_hgb", .72),
                         ("baseline_logreg", .6)] for f in range(5)]
    metrics = pd.DataFrame(rows)
    cnn_only = compare_models(cnn_rows(metrics), ["accuracy"])
    best = best_baseline(metrics)
    pairs = [(m, best) for m in ("resnet50", "densenet121", "vgg16")]
    both = pd.concat([compare_models(cnn_rows(metrics), ["accuracy"]),
                      compare_models(metrics, ["accuracy"], pairs=pairs, comparison=BASELINE_COMPARISON)])
    models = both[both.comparison == "models"].reset_index(drop=True)
    pd.testing.assert_series_equal(models["p_adjusted"], cnn_only["p_adjusted"])
    vs = both[both.comparison == BASELINE_COMPARISON]
    assert best == "baseline_hgb" and set(vs["b"]) == {"baseline_hgb"} and len(vs) == 3 * 3
    assert set(vs["holm_family"].str.split("/").str[0]) == {BASELINE_COMPARISON}


@pytest.mark.slow
def test_paired_tests_of_a_run_with_baselines_keep_the_cnn_families_as_without(quick_run):
    from xai_helpers.runfolder import RunFolder
    from xai_helpers.stats import compare_models

    run = RunFolder(quick_run["run_dir"])
    metrics, tests = run.read_metrics(), pd.read_csv(run.paired_tests_file)
    assert set(quick_run["baselines"]) <= set(metrics.model)
    expected = compare_models(cnn_rows(metrics), ("accuracy", "balanced_accuracy", "f1_macro"))
    keys = ["a", "b", "metric", "test"]
    got = tests[(tests.comparison == "models") & (tests.group == "all") & tests.test.isin(set(expected.test))]
    merged = expected.merge(got, on=keys, suffixes=("", "_run"))
    assert len(merged) == len(expected) > 0
    assert np.allclose(merged["p_adjusted"], merged["p_adjusted_run"], equal_nan=True)
