"""The CAM explorer, every control driven programmatically on the shared quick run."""
import numpy as np
import pytest

from xai_helpers.steps import load_prepared
from xai_helpers.widgets import CamExplorer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quick_data(quick_run):
    return load_prepared(quick_run, progress=False)


@pytest.fixture
def explorer(quick_data, quick_run):
    """A fresh explorer per test: the tests turn its controls, and must not see each other's settings."""
    return CamExplorer(quick_data, quick_run)


def _state(e):
    return e.current["png"], e.current["row"], e.current["target"], tuple(e.current["methods"])


def test_explorer_renders_original_and_one_overlay_per_method(explorer):
    c = explorer.controls
    assert set(c) == {"mode", "class", "image", "methods", "target", "model", "fold", "layer", "alpha", "cmap"}
    assert explorer.current["png"][:4] == b"\x89PNG" and explorer.image_out.value == explorer.current["png"]
    assert len(explorer.current["maps"]) >= 5 and "predicted probabilities" in explorer.info_out.value


def test_every_control_changes_the_view(explorer):
    c = explorer.controls
    changes = [("alpha", 0.9), ("cmap", "viridis"), ("methods", ("gradcam", "layercam")),
               ("target", "true"), ("target", explorer.data.class_names[-1]), ("layer", "layer3"),
               ("fold", c["fold"].options[-1]), ("image", c["image"].options[-1][1]),
               ("mode", "class"), ("class", explorer.data.class_names[-1]), ("model", "densenet121")]
    for name, value in changes:
        before = _state(explorer)
        if c[name].value == value:
            continue
        c[name].value = value
        assert _state(explorer) != before, name
    assert explorer.current["methods"] == ["gradcam", "layercam"]
    assert c["layer"].value == "features.relu5" and c["fold"].value == 0
    assert explorer.data.labels[explorer.current["row"]] == len(explorer.data.class_names) - 1
    # a layer whose output is not a ReLU's says so in its label (GradCAM++ and XGradCAM assume A >= 0)
    c["model"].value = "efficientnet_b0"
    assert c["layer"].value == "features.8" and "⚑ SiLU output" in c["layer"].label
    assert explorer.current["png"][:4] == b"\x89PNG"
    c["model"].value = "resnet50"
    assert "⚑" not in c["layer"].label


def test_target_class_is_explained(explorer):
    c = explorer.controls
    c["model"].value = "resnet50"
    c["mode"].value = "index"
    for k, name in enumerate(explorer.data.class_names):
        c["target"].value = name
        assert explorer.current["target"] == k


def test_cached_views_are_reused(explorer):
    c = explorer.controls
    c["target"].value = "predicted"
    key_count = len(explorer._cache)
    c["alpha"].value = 0.3
    c["cmap"].value = "magma"
    c["methods"].value = ("gradcam++",)
    assert len(explorer._cache) == key_count  # nothing recomputed


def test_misclassified_and_low_confidence_selections(explorer):
    c = explorer.controls
    c["mode"].value = "misclassified"
    pred = explorer._predictions()
    rows = explorer.candidate_rows()
    paths = explorer.data.splits["path"].to_numpy()[rows]
    assert all(pred.loc[p, "true"] != pred.loc[p, "pred"] for p in paths)
    c["mode"].value = "low confidence"
    rows = explorer.candidate_rows()
    conf = pred.loc[explorer.data.splits["path"].to_numpy()[rows]].filter(like="prob_").max(axis=1).to_numpy()
    assert len(rows) >= 1 and np.all(np.diff(conf) >= 0)
