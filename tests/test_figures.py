"""Figures: every legend sits beside the data, never on it, and inside the saved image."""
from __future__ import annotations

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from xai_helpers import figures  # noqa: E402

RNG = np.random.default_rng(0)
CLASSES = ["glioma", "meningioma", "no_tumor", "pituitary"]
MODELS = ["resnet50", "densenet121", "vgg16", "efficientnet_b0"]
METHODS = ["gradcam", "gradcam++", "xgradcam", "eigengradcam", "layercam"]


def _audit():
    n = 80
    return pd.DataFrame({"split": RNG.choice(["train", "test"], n), "class": RNG.choice(CLASSES, n),
                         "width": RNG.choice([256, 512], n), "height": 512,
                         "colour_mode": RNG.choice(["L", "RGB"], n), "file_format": RNG.choice(["PNG", "JPEG"], n)})


def _class_counts():
    n = 120
    split = RNG.choice(["train", "test"], n)
    return pd.DataFrame({"split": split, "fold": np.where(split == "test", -1, RNG.integers(0, 3, n)),
                         "class": RNG.choice(CLASSES, n)})


def _histories():
    return {f"{m} fold{k}": pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [1.2, 0.8, 0.5],
                                          "val_f1_macro": [0.3, 0.7, 0.95]}) for m in MODELS for k in range(3)}


def _metrics():
    return pd.DataFrame([{"model": m, "fold": k, "accuracy": RNG.uniform(0.6, 1.0)} for m in MODELS for k in range(3)])


def _xai():
    return pd.DataFrame([{"method": m, "class": c, "confidence_increase": RNG.normal(0, 0.1)}
                         for m in METHODS for c in CLASSES])


def _randomisation():
    steps = ["fc", "fc > layer4", "fc > layer4 > layer3", "fc > layer4 > layer3 > layer2"]
    return pd.DataFrame([{"step": i + 1, "randomised": s, "method": m, "spearman": 1.0 - 0.3 * i}
                         for m in METHODS for i, s in enumerate(steps)])


def _severity(hue, y):
    return pd.DataFrame([{hue: h, "condition": c, "severity": s, y: 1.0 - 0.1 * s}
                         for h in (MODELS if hue == "model" else METHODS)
                         for c in ("gaussian_noise", "blur", "contrast", "jpeg") for s in (0, 1, 3, 5)])


def _reliability():
    return pd.DataFrame([{"model": m, "condition": c, "severity": s, "bin": b, "count": 10,
                          "accuracy": b / 10, "confidence": b / 10 + 0.05}
                         for m in MODELS for c, s in (("clean", 0), ("external", 0), ("gaussian_noise", 5))
                         for b in range(10)])


def _curves():
    frac = np.linspace(0, 1, 11)
    return pd.concat([pd.DataFrame({"method": m, "curve": c, "fraction": frac,
                                    "score": 1 - frac if c == "deletion" else frac, "auc": 0.5})
                      for m in METHODS for c in ("deletion", "insertion")])


def _bootstrap():
    r = {"observed": 0.9, "distribution": RNG.normal(0.9, 0.05, 500).clip(-1, 1), "ci_low": 0.8, "ci_high": 0.98}
    return SimpleNamespace(a="resnet50", b="vgg16", images=pd.DataFrame(index=range(10)), small=r, full=r, n_test=300)


FIGURES = {
    "audit_metadata": lambda: figures.plot_audit_metadata(_audit()),
    "class_counts": lambda: figures.plot_class_counts(_class_counts()),
    "learning_curves": lambda: figures.plot_learning_curves(_histories()),
    "paired_lines": lambda: figures.plot_paired_lines(_metrics(), "accuracy"),
    "xai_metric": lambda: figures.plot_xai_metric(_xai()),
    "randomisation": lambda: figures.plot_randomisation(_randomisation()),
    "corruption_curves": lambda: figures.plot_corruption_curves(
        _severity("model", "accuracy"), chance={"accuracy": (0.25, "no-information rate")}),
    "cam_stability": lambda: figures.plot_cam_stability(_severity("method", "spearman_mean")),
    "reliability": lambda: figures.plot_reliability(_reliability()),
    "deletion_insertion": lambda: figures.plot_deletion_insertion(_curves()),
    "bootstrap_example": lambda: figures.plot_bootstrap_example(_bootstrap()),
}


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_no_legend_covers_a_plot_and_every_legend_is_in_the_image(name):
    fig = FIGURES[name]()
    try:
        fig.canvas.draw()
        legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None] + list(fig.legends)
        assert legends, f"{name}: the figure has a legend to check"
        figure_box = fig.bbox
        for legend in legends:
            box = legend.get_window_extent()
            labels = [t.get_text() for t in legend.get_texts()]
            for ax in fig.axes:
                if ax.get_visible() and ax.axison:
                    assert not box.overlaps(ax.bbox), f"{name}: the legend {labels[:3]} covers the panel " \
                                                      f"{ax.get_title()!r}"
            assert (box.x0 >= figure_box.x0 - 1 and box.x1 <= figure_box.x1 + 1
                    and box.y0 >= figure_box.y0 - 1 and box.y1 <= figure_box.y1 + 1), \
                f"{name}: the legend {labels[:3]} is cut off by the image's edge"
    finally:
        plt.close(fig)


def test_a_legend_beside_its_axes_keeps_every_entry():
    fig, ax = plt.subplots()
    for k in range(3):
        ax.plot([0, 1], [k, k + 1], label=f"fold {k}")
    ax.legend(title="fold")
    figures.legend_beside(ax)
    try:
        legend = ax.get_legend()
        assert [t.get_text() for t in legend.get_texts()] == ["fold 0", "fold 1", "fold 2"]
        assert legend.get_title().get_text() == "fold"
    finally:
        plt.close(fig)
