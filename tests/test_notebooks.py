"""The whole notebook sequence in the quick profile, and the run-folder contract it must leave."""
import ast
import json
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from xai_helpers.cams import STUDY_METHODS
from xai_helpers.config import DEFAULTS
from xai_helpers.run import list_notebooks

NOTEBOOKS = list_notebooks()


def test_numbered_notebooks_exist():
    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_clean_and_has_the_shared_parameters(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"  # papermill needs a kernelspec
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code)
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    values = {}
    for node in ast.parse(params[0].source).body:
        values[node.targets[0].id] = ast.literal_eval(node.value)
    assert values == DEFAULTS  # the same parameters, with the demo defaults, in every notebook
    assert "matplotlib.use" not in "".join(c.source for c in code)  # it would drop the plots
    assert sum(c.cell_type == "markdown" for c in nb.cells) >= 3


@pytest.mark.slow
def test_quick_run_leaves_every_artefact_of_the_contract(quick_run):
    run = Path(quick_run["run_dir"])
    config = json.loads((run / "config.json").read_text())
    assert config["interactive"] is False and config["folds"] == quick_run["folds"]
    assert sorted(p.name for p in (run / "notebooks").glob("*.ipynb")) == [p.name for p in NOTEBOOKS]
    for p in (run / "notebooks").glob("*.ipynb"):  # executed copies carry their outputs
        nb = nbformat.read(p, as_version=4)
        assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code")

    models, folds = quick_run["models"], range(quick_run["folds"])
    metrics = pd.read_csv(run / "metrics.csv")
    assert {"dataset", "model", "fold", "accuracy", "f1_macro"} <= set(metrics.columns)
    assert sorted(zip(metrics.model, metrics.fold)) == sorted((m, f) for m in models for f in folds)
    assert metrics["accuracy"].between(0, 1).all()

    splits = pd.read_csv(run / "data" / "splits.csv")
    classes = sorted(splits["class"].unique())
    for m in models:
        for f in folds:
            pred = pd.read_csv(run / "predictions" / f"{m}_fold{f}.csv")
            assert list(pred.columns) == ["path", "true", "pred"] + [f"prob_{c}" for c in classes]
            assert len(pred) == (splits.split == "test").sum()
            assert pred.filter(like="prob_").sum(axis=1).round(4).eq(1).all()

    tests = pd.read_csv(run / "stats" / "paired_tests.csv")
    assert {"comparison", "a", "b", "metric", "test", "n", "statistic", "p_value", "p_adjusted", "effect_size",
            "ci_low", "ci_high"} <= set(tests.columns)
    model_pairs = {frozenset(p) for p in zip(tests.loc[tests.comparison == "models", "a"],
                                            tests.loc[tests.comparison == "models", "b"])}
    assert len(model_pairs) == len(models) * (len(models) - 1) // 2
    cam_pairs = {frozenset(p) for p in zip(tests.loc[tests.comparison == "cams", "a"],
                                          tests.loc[tests.comparison == "cams", "b"])}
    assert len(cam_pairs) == len(STUDY_METHODS) * (len(STUDY_METHODS) - 1) // 2

    per_image = pd.read_csv(run / "xai_per_image.csv")
    assert {"model", "fold", "layer", "method", "path", "class", "pred", "confidence_increase"} <= set(per_image.columns)
    xai = pd.read_csv(run / "xai_metrics.csv")
    assert {"model", "method", "class", "n", "confidence_increase"} <= set(xai.columns)
    assert sorted(zip(xai.method, xai["class"])) == sorted((m, c) for m in STUDY_METHODS for c in classes)
    assert per_image["pointing_game"].notna().any()  # synthetic masks give localisation scores

    figures = {p.name for p in (run / "figures").glob("*.png")}
    assert {"cam_grid.png", "explorer_static.png", "test_metrics.png", "xai_confidence_increase.png"} <= figures
    assert (run / "figures" / "cam_grid.pdf").is_file()


@pytest.mark.slow
def test_a_notebook_reruns_alone_on_an_existing_run_folder(quick_run):
    from xai_helpers.run import execute

    run = Path(quick_run["run_dir"])
    before = (run / "stats" / "paired_tests.csv").stat().st_mtime_ns
    execute(quick_run, list_notebooks(["03"]), progress=False)
    assert (run / "stats" / "paired_tests.csv").stat().st_mtime_ns > before
