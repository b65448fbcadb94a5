"""Figures shared by the notebooks, in one consistent style, saved into the run folder.

Every function returns the matplotlib ``Figure`` (so a notebook shows it) and, given a
:class:`~xai_helpers.runfolder.RunFolder` and a name, saves it as PNG (and PDF where asked)
under ``runs/<name>/figures/``. Nothing here switches the matplotlib backend: calling
``matplotlib.use("Agg")`` inside a notebook silently drops its plots.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from sklearn.metrics import confusion_matrix

from .baselines import is_baseline
from .cams import method_label
from .data.metadata import CATEGORICAL_FEATURES, NUMERIC_FEATURES
from .runfolder import RunFolder

PALETTE = "colorblind"


def set_style() -> None:
    """The notebooks' plotting style (seaborn 'whitegrid', colour-blind palette, readable sizes).

    Examples
    --------
    >>> set_style()
    >>> plt.rcParams["savefig.dpi"], plt.rcParams["image.interpolation"]
    (150.0, 'nearest')
    """
    sns.set_theme(context="notebook", style="whitegrid", palette=PALETTE)
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 150, "savefig.bbox": "tight",
                         "axes.titlesize": 11, "axes.labelsize": 10, "image.interpolation": "nearest"})


def save_figure(fig: plt.Figure, run: RunFolder | None, name: str, pdf: bool = False) -> plt.Figure:
    """Save ``fig`` as ``figures/<name>.png`` (and ``.pdf``) in ``run``.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    run : RunFolder, optional
        Where ``figures/<name>.png`` is saved (nothing is saved without one).
    name : str
        The file name, without extension.
    pdf : bool
        Also write ``figures/<name>.pdf`` (publication quality).

    Returns
    -------
    matplotlib.figure.Figure
        ``fig`` itself, so a plotting function can end with ``return save_figure(...)``.

    Examples
    --------
    >>> import tempfile
    >>> run = RunFolder(tempfile.mkdtemp())
    >>> fig = save_figure(plt.figure(), run, "empty", pdf=True)
    >>> sorted(p.name for p in run.figures_dir.iterdir())
    ['empty.pdf', 'empty.png']
    >>> plt.close(fig)
    """
    if run is not None:
        path = run.figure_file(name)
        fig.savefig(path)
        if pdf:
            fig.savefig(path.with_suffix(".pdf"))
    return fig


def legend_beside(ax: plt.Axes, fontsize: float = 7) -> None:
    """Move ``ax``'s legend, if it has one, to the right of its plot area, where it covers no data.

    A legend inside the axes hides bars or lines (matplotlib's ``loc="best"`` only avoids them
    when it finds room); beside the axes it hides nothing, and ``tight_layout`` makes room for it.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        The axes whose legend moves (one is made from its labelled artists when it has none; nothing
        happens when it has neither).
    fontsize : float
        The entries' and title's size.

    Examples
    --------
    >>> fig, ax = plt.subplots()
    >>> _ = ax.bar([0, 1], [1, 1], label="a")
    >>> legend_beside(ax)
    >>> fig.canvas.draw()
    >>> bool(ax.get_legend().get_window_extent().x0 >= ax.get_window_extent().x1)
    True
    >>> plt.close(fig)
    """
    legend = ax.get_legend()
    if legend is None and not ax.get_legend_handles_labels()[0]:
        return
    title = legend.get_title().get_text() if legend is not None else None
    handles, labels = (legend.legend_handles, [t.get_text() for t in legend.get_texts()]) if legend is not None \
        else ax.get_legend_handles_labels()
    ax.legend(handles, labels, title=title or None, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0,
              frameon=False, fontsize=fontsize, title_fontsize=fontsize)


def _show(img: np.ndarray) -> np.ndarray:
    """(C, H, W) or (H, W) uint8/float image -> something imshow draws (H, W[, 3])."""
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[0] in (1, 3):
        img = img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)
    return img


def _has_mask(masks: Sequence[np.ndarray | None] | np.ndarray | None, i: int) -> bool:
    """Whether image ``i`` has a non-empty lesion mask (``masks`` from ``PreparedData.masks``)."""
    return masks is not None and masks[i] is not None and bool(np.asarray(masks[i]).any())


def plot_samples(images: np.ndarray, labels: Sequence[str], masks: Sequence[np.ndarray | None] | None = None,
                 per_row: int = 6, run: RunFolder | None = None, name: str = "samples") -> plt.Figure:
    """A grid of images titled by class, lesion masks outlined in red where given.

    Parameters
    ----------
    images : (N, C, H, W) array
        uint8 images (grey or RGB).
    labels : sequence of str
        One title per image.
    masks : sequence, optional
        ``(H, W)`` bool mask or None per image (:meth:`PreparedData.masks`).
    per_row : int
        Images per row.
    run : RunFolder, optional
        Where ``figures/<name>.png`` is saved (nothing is saved without one).
    name : str
        The file name, without extension.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = plot_samples(np.zeros((3, 1, 8, 8), np.uint8), ["a", "b", "c"], per_row=2)
    >>> [ax.get_title() for ax in fig.axes]
    ['a', 'b', 'c', '']
    >>> plt.close(fig)
    """
    n = len(images)
    rows = int(np.ceil(n / per_row))
    fig, axes = plt.subplots(rows, per_row, figsize=(1.8 * per_row, 1.9 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i in range(n):
        ax = axes.ravel()[i]
        ax.imshow(_show(images[i]), cmap="gray")
        if _has_mask(masks, i):
            ax.contour(masks[i], levels=[0.5], colors="red", linewidths=0.8)
        ax.set_title(labels[i], fontsize=8)
    fig.tight_layout()
    return save_figure(fig, run, name)


def plot_audit_metadata(metadata: pd.DataFrame | str | Path, run: RunFolder | None = None,
                        name: str = "audit_metadata") -> plt.Figure:
    """The audit's file metadata per class, split by split: one panel per numeric feature (width,
    height, aspect ratio, JPEG quality, mean intensity; box plots) and one per category (colour
    mode, file format; share of images).

    Parameters
    ----------
    metadata : pandas.DataFrame or path
        ``data/audit_metadata.csv`` (``split``, ``class`` and the features).
    run : RunFolder, optional
        Where ``figures/<name>.png`` is saved.
    name : str

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> meta = pd.DataFrame({"split": ["train", "test"] * 4, "class": list("aabb") * 2, "width": [512, 256] * 4,
    ...                      "height": 512, "colour_mode": "L", "file_format": "PNG"})
    >>> fig = plot_audit_metadata(meta)
    >>> [ax.get_title() for ax in fig.axes][:2]
    ['width', 'height']
    >>> plt.close(fig)
    """
    if not isinstance(metadata, pd.DataFrame):
        metadata = pd.read_csv(metadata, keep_default_na=False, na_values=[""])
    numeric = [f for f in NUMERIC_FEATURES if f in metadata and metadata[f].notna().any()]
    categorical = [f for f in CATEGORICAL_FEATURES if f in metadata]
    panels = numeric + categorical
    cols = min(4, len(panels))
    nrows = int(np.ceil(len(panels) / cols))
    fig, axes = plt.subplots(nrows, cols, figsize=(5.6 * cols, 3.2 * nrows), squeeze=False)
    for ax, feature in zip(axes.ravel(), panels):
        if feature in numeric:
            sns.boxplot(data=metadata, x="class", y=feature, hue="split", ax=ax, fliersize=2)
        else:
            share = (metadata.groupby(["class", "split"])[feature].value_counts(normalize=True)
                     .rename("share").reset_index())
            share["split / value"] = share["split"] + ": " + share[feature].astype(str)
            sns.barplot(data=share, x="class", y="share", hue="split / value", ax=ax)
        ax.set_title(feature)
        ax.tick_params(axis="x", rotation=20)
        legend_beside(ax)
    for ax in axes.ravel()[len(panels):]:
        ax.set_visible(False)
    fig.suptitle("file metadata per class and split (a difference between classes: a shortcut; between splits: "
                 "a shift)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, run, name)


def plot_class_counts(splits: pd.DataFrame, run: RunFolder | None = None, name: str = "class_counts") -> plt.Figure:
    """Images per class in the test split and in each fold of the training pool.

    Parameters
    ----------
    splits : pandas.DataFrame
        ``data/splits.csv``: ``split``, ``fold``, ``class`` per image.
    run : RunFolder, optional
        Where ``figures/<name>.png`` is saved (nothing is saved without one).
    name : str
        The file name, without extension.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> splits = pd.DataFrame({"split": ["train", "train", "test"], "fold": [0, 1, -1], "class": ["a", "b", "a"]})
    >>> fig = plot_class_counts(splits)
    >>> sorted(t.get_text() for t in fig.axes[0].get_legend().get_texts())
    ['fold 0', 'fold 1', 'test']
    >>> plt.close(fig)
    """
    df = splits.copy()
    df["part"] = np.where(df["split"] == "test", "test", "fold " + df["fold"].astype(str))
    fig, ax = plt.subplots(figsize=(7, 3.2))
    sns.countplot(data=df, x="class", hue="part", ax=ax)
    legend_beside(ax)
    ax.set_ylabel("images")
    ax.set_title("Images per class: test split and the folds of the training pool")
    fig.tight_layout()
    return save_figure(fig, run, name)


def plot_learning_curves(histories: dict[str, pd.DataFrame], run: RunFolder | None = None,
                         name: str = "learning_curves") -> plt.Figure:
    """Training loss and validation macro-F1 per epoch; one line per (model, fold).

    Parameters
    ----------
    histories : dict
        ``"<model> fold<k>"`` -> that fit's ``history.csv`` (``epoch``, ``train_loss``, ``val_f1_macro``).
    run : RunFolder, optional
        Where ``figures/<name>.png`` is saved (nothing is saved without one).
    name : str
        The file name, without extension.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> h = pd.DataFrame({"epoch": [1, 2], "train_loss": [1.0, 0.7], "val_f1_macro": [0.4, 0.6]})
    >>> fig = plot_learning_curves({"resnet50 fold0": h, "resnet50 fold1": h})
    >>> [(ax.get_title(), ax.get_ylabel()) for ax in fig.axes]
    [('training loss', 'train_loss'), ('validation macro-F1', 'val_f1_macro')]
    >>> plt.close(fig)
    """
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    frames = [h.assign(fit=k, model=k.split(" ")[0]) for k, h in histories.items()]
    if frames:
        df = pd.concat(frames)
        sns.lineplot(data=df, x="epoch", y="train_loss", hue="model", units="fit", estimator=None, ax=axes[0])
        sns.lineplot(data=df, x="epoch", y="val_f1_macro", hue="model", units="fit", estimator=None, ax=axes[1],
                     legend=False)
    if axes[0].get_legend() is not None:  # one legend for both panels, beside the right one
        handles, labels = axes[0].get_legend_handles_labels()
        axes[0].get_legend().remove()
        axes[1].legend(handles, labels, title="model")
        legend_beside(axes[1])
    axes[0].set_title("training loss")
    axes[1].set_title("validation macro-F1")
    fig.tight_layout()
    return save_figure(fig, run, name)


def plot_metric_by_model(metrics: pd.DataFrame, metrics_to_plot: Sequence[str] = ("accuracy", "f1_macro"),
                         chance: dict[str, tuple[float, str]] | None = None, run: RunFolder | None = None,
                         name: str = "test_metrics") -> plt.Figure:
    """Test metrics per model: fold values as points, their mean as a bar.

    Classical baselines (``baseline_*`` rows) are drawn as grey hatched bars, and the best
    baseline's mean as a dotted line: a CNN whose bar does not clear it learnt no more than them.

    Parameters
    ----------
    metrics : pandas.DataFrame
        ``metrics.csv``: one row per model and fold.
    metrics_to_plot : sequence of str
        One panel per column.
    chance : dict, optional
        Metric -> ``(value, label)`` (:func:`xai_helpers.evaluation.chance_levels`: the no-information rate for
        accuracy, 1/K for balanced accuracy), drawn as a dashed line labelled with what it is.
    run : RunFolder, optional
        Where ``figures/<name>.png`` is saved (nothing is saved without one).
    name : str
        The file name, without extension.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> m = pd.DataFrame({"model": ["a", "a", "b", "b"], "accuracy": [0.8, 0.9, 0.5, 0.6], "f1_macro": 0.5})
    >>> fig = plot_metric_by_model(m, chance={"accuracy": (0.62, "no-information rate")})
    >>> [ax.get_title() for ax in fig.axes]
    ['test accuracy (points: folds)', 'test f1_macro (points: folds)']
    >>> plt.close(fig)
    """
    fig, axes = plt.subplots(1, len(metrics_to_plot), figsize=(4.5 * len(metrics_to_plot), 3.5), squeeze=False)
    order = list(dict.fromkeys(metrics["model"]))
    baseline = [m for m in order if is_baseline(m)]
    for ax, metric in zip(axes[0], metrics_to_plot):
        sns.barplot(data=metrics, x="model", y=metric, order=order, errorbar=None, alpha=0.5, ax=ax)
        sns.stripplot(data=metrics, x="model", y=metric, order=order, color="black", size=5, ax=ax)
        for patch, model in zip(ax.patches, order):
            if is_baseline(model):
                patch.set_facecolor("lightgrey")
                patch.set_hatch("//")
        if baseline:
            best = metrics[metrics["model"].isin(baseline)].groupby("model")[metric].mean().max()
            ax.axhline(best, ls=":", color="dimgrey", lw=1)
            ax.text(ax.get_xlim()[1], best, " best baseline", va="center", fontsize=8, color="dimgrey")
        if chance and metric in chance:
            level, label = chance[metric]
            ax.axhline(level, ls="--", color="grey", lw=1)
            ax.text(ax.get_xlim()[1], level, f" {label}", va="center", fontsize=8, color="grey")
        ax.set_ylim(0, 1.02)
        ax.set_title(f"test {metric} (points: folds)")
        ax.tick_params(axis="x", rotation=20)
    fig.tight_layout()
    return save_figure(fig, run, name)


def plot_pvalue_heatmap(tests: pd.DataFrame, metric: str, test: str, comparison: str = "models",
                        group: str = "all", run: RunFolder | None = None, name: str | None = None) -> plt.Figure:
    """Symmetric heatmap of adjusted p-values between every pair (``a``, ``b``).

    Parameters
    ----------
    tests : pandas.DataFrame
        ``stats/paired_tests.csv``.
    metric, test : str
        Which rows (``metric`` and ``test`` columns).
    comparison : {'models', 'cams'}
    group : str
        'all', 'fold<k>' or a class name.
    run : RunFolder, optional
        Where ``figures/<name>.png`` is saved (nothing is saved without one).
    name : str
        The file name, without extension.

    Returns
    -------
    matplotlib.figure.Figure
        With a note instead of a heatmap when no pair matches.

    Examples
    --------
    >>> tests = pd.DataFrame({"comparison": "models", "metric": "accuracy", "test": "paired_t", "group": "all",
    ...                       "a": ["x", "x", "y"], "b": ["y", "z", "z"], "p_adjusted": [0.01, 0.2, 0.5]})
    >>> fig = plot_pvalue_heatmap(tests, "accuracy", "paired_t")
    >>> sorted(t.get_text() for t in fig.axes[0].texts)
    ['0.010', '0.010', '0.200', '0.200', '0.500', '0.500']
    >>> plt.close(fig)
    """
    sel = tests[(tests["comparison"] == comparison) & (tests["metric"] == metric) & (tests["test"] == test)
                & (tests["group"] == group)]
    names = list(dict.fromkeys(list(sel["a"]) + list(sel["b"])))
    if not names:  # one model (or method) only: nothing to compare
        fig, ax = plt.subplots(figsize=(4, 1.2))
        ax.axis("off")
        ax.text(0.5, 0.5, f"{test}: {metric} ({comparison}): no pair to compare", ha="center", va="center")
        return save_figure(fig, run, name or f"pvalues_{comparison}_{metric}_{test}")
    mat = pd.DataFrame(np.nan, index=names, columns=names)
    for r in sel.itertuples():
        mat.loc[r.a, r.b] = mat.loc[r.b, r.a] = r.p_adjusted
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2.5, 1.0 * len(names) + 1.5))
    sns.heatmap(mat.astype(float), annot=True, fmt=".3f", vmin=0, vmax=1, cmap="rocket", ax=ax,
                cbar_kws={"label": "adjusted p"})
    ax.set_title(f"{test}: {metric} ({comparison}, {group}; Holm-adjusted)")
    fig.tight_layout()
    return save_figure(fig, run, name or f"pvalues_{comparison}_{metric}_{test}")


def plot_paired_lines(metrics: pd.DataFrame, metric: str, run: RunFolder | None = None,
                      name: str | None = None) -> plt.Figure:
    """Fold-wise values of ``metric`` per model, the same fold joined by a line (the pairing).

    Parameters
    ----------
    metrics : pandas.DataFrame
        ``metrics.csv``.
    metric : str
        The column plotted.
    run : RunFolder, optional
        Where ``figures/<name>.png`` is saved (nothing is saved without one).
    name : str
        The file name, without extension.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> m = pd.DataFrame({"model": ["a", "a", "b", "b"], "fold": [0, 1, 0, 1], "accuracy": [0.8, 0.9, 0.5, 0.6]})
    >>> fig = plot_paired_lines(m, "accuracy")
    >>> [line.get_ydata().tolist() for line in fig.axes[0].lines]
    [[0.8, 0.5], [0.9, 0.6]]
    >>> plt.close(fig)
    """
    fig, ax = plt.subplots(figsize=(6, 3.5))
    wide = metrics.pivot_table(index="fold", columns="model", values=metric)
    order = list(dict.fromkeys(metrics["model"]))
    wide = wide[order]
    for fold, row in wide.iterrows():
        ax.plot(range(len(order)), row.to_numpy(), marker="o", label=f"fold {fold}")
    ax.set_xticks(range(len(order)), order, rotation=20)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per fold: each line is one fold (paired across models)")
    legend_beside(ax, fontsize=8)
    fig.tight_layout()
    return save_figure(fig, run, name or f"paired_{metric}")


def overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """``image`` (grey or RGB) blended with the coloured ``cam``.

    Parameters
    ----------
    image : (C, H, W) or (H, W) array
        uint8 or [0, 1] float.
    cam : (H, W) array
        Map in [0, 1] (clipped).
    alpha : float
        Weight of the colour map (0: the image only).
    cmap : str
        A matplotlib colour map.

    Returns
    -------
    (H, W, 3) float array
        RGB in [0, 1].

    Examples
    --------
    >>> out = overlay(np.full((1, 2, 2), 255, np.uint8), np.zeros((2, 2)), alpha=0.0)
    >>> out.shape, float(out.min())
    ((2, 2, 3), 1.0)
    """
    img = _show(image).astype(np.float32)
    img = img / 255.0 if img.max() > 1.0 else img
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    heat = plt.get_cmap(cmap)(np.clip(cam, 0, 1))[..., :3]
    return np.clip((1 - alpha) * img + alpha * heat, 0, 1)


def cam_grid(images: np.ndarray, maps: dict[str, np.ndarray], row_labels: Sequence[str],
             masks: Sequence[np.ndarray | None] | None = None, alpha: float = 0.5, cmap: str = "jet",
             run: RunFolder | None = None, name: str = "cam_grid", title: str | None = None,
             pyplot: bool = True) -> plt.Figure:
    """Images x methods: the original, then one overlay per method, with a shared colour bar.

    Lesion masks are outlined (red on the image, white on the overlays); columns are titled with
    the methods' names (:func:`xai_helpers.cams.method_label`). Saved as PNG and PDF (publication
    quality) when ``run`` is given.

    Parameters
    ----------
    images : (N, C, H, W) array
        uint8 or [0, 1] float images.
    maps : dict
        Method -> ``(N, H, W)`` maps in [0, 1], in column order.
    row_labels : sequence of str
        One label per image (left of its row).
    masks : sequence, optional
        ``(H, W)`` bool mask or None per image (:meth:`PreparedData.masks`).
    alpha, cmap : float, str
        Opacity and colour map of the overlays.
    run : RunFolder, optional
        Where to save ``figures/<name>.png`` and ``.pdf``.
    name, title : str
        File name and figure title.
    pyplot : bool
        False draws on a figure that pyplot does not manage (a widget renders it itself, and
        nothing is shown twice in a notebook).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> images = np.zeros((2, 1, 8, 8), np.uint8)
    >>> maps = {"gradcam": np.random.default_rng(0).random((2, 8, 8))}
    >>> fig = cam_grid(images, maps, ["a", "b"], pyplot=False)
    >>> [ax.get_title() for ax in fig.axes[:2]]
    ['image', 'GradCAM']
    """
    methods = list(maps)
    n = len(images)
    figsize = (1.9 * (len(methods) + 1) + 0.6, 1.95 * n + 0.4)
    fig = plt.figure(figsize=figsize) if pyplot else Figure(figsize=figsize)
    axes = fig.subplots(n, len(methods) + 1, squeeze=False)
    for i in range(n):
        ax = axes[i, 0]
        ax.imshow(_show(images[i]), cmap="gray")
        if _has_mask(masks, i):
            ax.contour(masks[i], levels=[0.5], colors="red", linewidths=0.8)
        ax.set_ylabel(row_labels[i], fontsize=8)
        for j, m in enumerate(methods):
            axes[i, j + 1].imshow(overlay(images[i], maps[m][i], alpha, cmap))
            if _has_mask(masks, i):
                axes[i, j + 1].contour(masks[i], levels=[0.5], colors="white", linewidths=0.6)
    for j, label in enumerate(["image"] + [method_label(m) for m in methods]):
        axes[0, j].set_title(label, fontsize=10)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.subplots_adjust(right=0.9, wspace=0.04, hspace=0.08)
    cax = fig.add_axes([0.92, 0.2, 0.015, 0.6])
    fig.colorbar(ScalarMappable(cmap=cmap, norm=Normalize(0, 1)), cax=cax, label="CAM (scaled)")
    if title:
        fig.suptitle(title, fontsize=11)
    if run is not None:
        save_figure(fig, run, name, pdf=True)
    return fig


def plot_xai_metric(xai_metrics: pd.DataFrame, metric: str = "confidence_increase", run: RunFolder | None = None,
                    name: str | None = None) -> plt.Figure:
    """Mean of an explanation metric per method and true class (bars).

    Parameters
    ----------
    xai_metrics : pandas.DataFrame
        ``xai_metrics.csv``: ``method``, ``class`` and the metric.
    metric : str
        The column plotted.
    run : RunFolder, optional
        Where ``figures/<name>.png`` is saved (nothing is saved without one).
    name : str
        The file name, without extension. Default: ``xai_<metric>``.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> xai = pd.DataFrame({"method": ["gradcam", "gradcam", "layercam", "layercam"], "class": ["a", "b", "a", "b"],
    ...                     "confidence_increase": [0.1, 0.2, 0.0, -0.1]})
    >>> fig = plot_xai_metric(xai)
    >>> fig.axes[0].get_title()
    'confidence_increase per CAM method and true class'
    >>> plt.close(fig)
    """
    fig, ax = plt.subplots(figsize=(7, 3.5))
    sns.barplot(data=xai_metrics, x="method", y=metric, hue="class", ax=ax)
    legend_beside(ax)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_title(f"{metric} per CAM method and true class")
    ax.tick_params(axis="x", rotation=15)
    fig.tight_layout()
    return save_figure(fig, run, name or f"xai_{metric}")


def plot_randomisation(curves: pd.DataFrame, run: RunFolder | None = None, name: str = "randomisation") -> plt.Figure:
    """Spearman correlation with the trained model's map as blocks are re-initialised, per method.

    Parameters
    ----------
    curves : pandas.DataFrame
        ``xai_randomisation.csv``: ``step``, ``randomised``, ``method``, ``spearman``.
    run : RunFolder, optional
        Where ``figures/<name>.png`` is saved (nothing is saved without one).
    name : str
        The file name, without extension.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> curves = pd.DataFrame({"step": [1, 2, 1, 2], "randomised": ["fc", "fc > layer4"] * 2,
    ...                        "method": ["gradcam"] * 2 + ["layercam"] * 2, "spearman": [0.9, 0.2, 0.8, 0.5]})
    >>> fig = plot_randomisation(curves)
    >>> [t.get_text() for t in fig.axes[0].get_xticklabels()]
    ['fc', 'layer4']
    >>> plt.close(fig)
    """
    fig, ax = plt.subplots(figsize=(7, 3.5))
    steps = curves.groupby("step")["randomised"].first()
    sns.lineplot(data=curves, x="step", y="spearman", hue="method", marker="o", ax=ax)
    legend_beside(ax)
    ax.set_xticks(steps.index, [r.split(" > ")[-1] for r in steps], rotation=20)
    ax.set_xlabel("re-initialised down to")
    ax.set_ylabel("Spearman with trained map")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_title("Cascading parameter randomisation (Adebayo et al. 2018)")
    fig.tight_layout()
    return save_figure(fig, run, name)


def plot_confusion_matrices(predictions: dict[str, pd.DataFrame], class_names: Sequence[str],
                            run: RunFolder | None = None, name: str = "confusion_matrices") -> plt.Figure:
    """One confusion matrix per model (rows: true class, columns: predicted), summed over folds.

    Parameters
    ----------
    predictions : dict
        Model -> its ``predictions/`` rows (``true``, ``pred`` class names), every fold stacked.
    class_names : sequence of str
    run : RunFolder, optional
        Where ``figures/<name>.png`` is saved (nothing is saved without one).
    name : str
        The file name, without extension.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> pred = pd.DataFrame({"true": ["a", "a", "b"], "pred": ["a", "b", "b"]})
    >>> fig = plot_confusion_matrices({"resnet50": pred}, ["a", "b"])
    >>> [t.get_text() for t in fig.axes[0].texts]
    ['1', '1', '0', '1']
    >>> plt.close(fig)
    """

    fig, axes = plt.subplots(1, len(predictions), figsize=(3.2 * len(predictions) + 0.5, 3.2), squeeze=False)
    for ax, (model, pred) in zip(axes[0], predictions.items()):
        cm = confusion_matrix(pred["true"], pred["pred"], labels=list(class_names))
        sns.heatmap(cm, annot=True, fmt="d", cbar=False, cmap="Blues", ax=ax,
                    xticklabels=class_names, yticklabels=class_names)
        ax.set_title(model)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
    fig.tight_layout()
    return save_figure(fig, run, name)


# --- the study summary (notebook 06) -----------------------------------------------------------
def plot_study_metric(metrics: pd.DataFrame, metric: str = "accuracy", run: RunFolder | None = None,
                      name: str | None = None) -> plt.Figure:
    """``metric`` per model for every dataset (bars: mean over folds; points: folds).

    Parameters
    ----------
    metrics : pandas.DataFrame
        The datasets' ``metrics.csv`` stacked, with their ``dataset`` column.
    metric : str
    run : RunFolder, optional
        Where ``figures/<name>.png`` is saved (nothing is saved without one).
    name : str
        The file name, without extension. Default: ``study_<metric>``.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> m = pd.DataFrame({"dataset": ["skin", "skin", "chest"], "model": "resnet50", "accuracy": [0.8, 0.9, 0.7]})
    >>> fig = plot_study_metric(m)
    >>> [ax.get_title() for ax in fig.axes]
    ['skin', 'chest']
    >>> plt.close(fig)
    """
    datasets = list(dict.fromkeys(metrics["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 3.4), squeeze=False, sharey=True)
    for ax, ds in zip(axes[0], datasets):
        part = metrics[metrics["dataset"] == ds]
        sns.barplot(data=part, x="model", y=metric, ax=ax, errorbar=None, alpha=0.6)
        sns.stripplot(data=part, x="model", y=metric, ax=ax, color="black", size=4)
        ax.set_title(ds)
        ax.set_xlabel("")
        ax.tick_params(axis="x", rotation=30)
        ax.set_ylim(0, 1)
    return save_figure(fig, run, name or f"study_{metric}")


def plot_confidence_heatmaps(conf: pd.DataFrame, metric: str = "confidence_increase", run: RunFolder | None = None,
                             name: str = "study_confidence_increase") -> plt.Figure:
    """``metric`` per CAM method (rows) and class (columns), one heatmap per dataset.

    Parameters
    ----------
    conf : pandas.DataFrame
        :func:`xai_helpers.report.confidence_table`: ``dataset``, ``method``, ``class``, ``metric``.
    metric : str
    run : RunFolder, optional
        Where ``figures/<name>.png`` is saved (nothing is saved without one).
    name : str
        The file name, without extension.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> conf = pd.DataFrame({"dataset": "brain", "method": ["gradcam", "layercam"], "class": "glioma",
    ...                      "confidence_increase": [0.12, 0.08]})
    >>> fig = plot_confidence_heatmaps(conf)
    >>> [t.get_text() for t in fig.axes[0].texts]
    ['0.120', '0.080']
    >>> plt.close(fig)
    """
    datasets = list(dict.fromkeys(conf["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.6 * len(datasets), 3.2), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        wide = conf[conf["dataset"] == ds].pivot_table(index="method", columns="class", values=metric)
        sns.heatmap(wide, annot=True, fmt=".3f", cmap="RdBu_r", center=0, ax=ax, cbar=False)
        ax.set_title(ds)
    return save_figure(fig, run, name)


# --- generalization (notebook 07) --------------------------------------------------------------
def _severity_panels(table: pd.DataFrame, y: str, hue: str, ylabel: str, chance: tuple[float, str] | None = None,
                     errorbar=("ci", 95)) -> plt.Figure:
    """One panel per ``condition`` of ``table``: ``y`` against ``severity``, one line per ``hue``."""
    conditions = list(dict.fromkeys(table["condition"]))
    cols = min(3, len(conditions))
    rows = int(np.ceil(len(conditions) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False, sharey=True)
    for ax in axes.ravel()[len(conditions):]:
        ax.axis("off")
    for ax, cond in zip(axes.ravel(), conditions):
        part = table[table["condition"] == cond]
        sns.lineplot(data=part, x="severity", y=y, hue=hue, marker="o", ax=ax,
                     legend=ax is axes.ravel()[0], errorbar=errorbar)
        if chance is not None:
            ax.axhline(chance[0], ls="--", color="grey", lw=1, label=f"{chance[1]} ({chance[0]:.2f})")
        ax.set_title(cond)
        ax.set_ylabel(ylabel)
        ax.set_xticks(sorted(part["severity"].unique()))
    first, right = axes[0][0], axes[0][len(conditions[:cols]) - 1]
    if first.get_legend() is not None:
        seaborn_legend = first.get_legend()
        handles = list(seaborn_legend.legend_handles)
        labels = [t.get_text() for t in seaborn_legend.get_texts()]
        extra, extra_labels = first.get_legend_handles_labels()  # the chance line, labelled
        handles += [h for h, label in zip(extra, extra_labels) if label not in labels]
        labels += [label for label in extra_labels if label not in labels]
        seaborn_legend.remove()
        right.legend(handles, labels, title=hue)
        legend_beside(right)
    fig.tight_layout()
    return fig


def plot_corruption_curves(summary: pd.DataFrame, metric: str = "accuracy",
                           chance: dict[str, tuple[float, str]] | None = None,
                           run: RunFolder | None = None, name: str | None = None) -> plt.Figure:
    """``metric`` against severity (0 = clean) per corruption, one line per model (dashed: chance, labelled).

    Parameters
    ----------
    summary : pandas.DataFrame
        :func:`xai_helpers.generalization.severity_summary`: ``model``, ``condition``, ``severity``, ``metric``.
    metric : str
    chance : dict, optional
        Metric -> ``(value, label)`` (:func:`xai_helpers.evaluation.chance_levels`); ``metric``'s is drawn dashed
        and named in the legend (for accuracy the no-information rate, not one over the number of classes).
    run : RunFolder, optional
        Where ``figures/<name>.png`` is saved (nothing is saved without one).
    name : str
        The file name, without extension. Default: ``corruption_<metric>``.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> s = pd.DataFrame({"model": "resnet50", "condition": ["jpeg"] * 2 + ["contrast"] * 2, "severity": [0, 5] * 2,
    ...                   "accuracy": [0.9, 0.6, 0.9, 0.4]})
    >>> fig = plot_corruption_curves(s, chance={"accuracy": (0.62, "no-information rate")})
    >>> [ax.get_title() for ax in fig.axes], [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    (['jpeg', 'contrast'], ['resnet50', 'no-information rate (0.62)'])
    >>> plt.close(fig)
    """
    fig = _severity_panels(summary, metric, "model", metric, chance=(chance or {}).get(metric))
    return save_figure(fig, run, name or f"corruption_{metric}")


def plot_reliability(reliability: pd.DataFrame, run: RunFolder | None = None,
                     name: str = "reliability") -> plt.Figure:
    """Reliability diagrams per model: accuracy against confidence per bin, pooled over folds,
    for the clean test set, the external set and each corruption at its highest severity.

    Parameters
    ----------
    reliability : pandas.DataFrame
        ``generalization_reliability.csv``: ``model``, ``condition``, ``severity``, ``bin``, ``count``,
        ``accuracy``, ``confidence``.
    run : RunFolder, optional
        Where ``figures/<name>.png`` is saved (nothing is saved without one).
    name : str
        The file name, without extension.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> rel = pd.DataFrame({"model": "resnet50", "condition": "clean", "severity": 0, "bin": [0, 1],
    ...                     "count": [10, 30], "accuracy": [0.5, 0.9], "confidence": [0.55, 0.95]})
    >>> fig = plot_reliability(rel)
    >>> fig.axes[0].get_title(), fig.axes[0].lines[0].get_xdata().round(2).tolist()
    ('resnet50', [0.55, 0.95])
    >>> plt.close(fig)
    """
    models = list(dict.fromkeys(reliability["model"]))
    fig, axes = plt.subplots(1, len(models), figsize=(3.6 * len(models), 3.4), squeeze=False, sharey=True)
    rel = reliability.copy()
    rel["label"] = np.where(rel["severity"] > 0, rel["condition"] + " " + rel["severity"].astype(str), rel["condition"])
    for ax, model in zip(axes[0], models):
        part = rel[rel["model"] == model]
        for label, sub in part.groupby("label", sort=False):
            pooled = sub.assign(hits=sub["accuracy"] * sub["count"], conf=sub["confidence"] * sub["count"]) \
                .groupby("bin")[["hits", "conf", "count"]].sum()
            pooled = pooled[pooled["count"] > 0]
            style = dict(lw=2.2, color="black") if label == "clean" else dict(lw=1, alpha=0.8)
            ax.plot(pooled["conf"] / pooled["count"], pooled["hits"] / pooled["count"], marker=".", label=label,
                    **style)
        ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
        ax.set_title(model)
        ax.set_xlabel("confidence")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
    axes[0][0].set_ylabel("accuracy")
    legend_beside(axes[0][-1])
    fig.tight_layout()
    return save_figure(fig, run, name)


def plot_cam_stability(stability: pd.DataFrame, run: RunFolder | None = None,
                       name: str = "cam_stability") -> plt.Figure:
    """Rank correlation of corrupted-image CAMs with the clean CAMs against severity, per method.

    Parameters
    ----------
    stability : pandas.DataFrame
        ``generalization_cams.csv``: ``condition``, ``severity``, ``method``, ``spearman_mean``.
    run : RunFolder, optional
        Where ``figures/<name>.png`` is saved (nothing is saved without one).
    name : str
        The file name, without extension.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> st = pd.DataFrame({"condition": "gaussian_noise", "severity": [1, 5], "method": "gradcam",
    ...                    "spearman_mean": [0.9, 0.4]})
    >>> fig = plot_cam_stability(st)
    >>> fig.axes[0].get_title(), fig.axes[0].get_ylabel()
    ('gaussian_noise', 'Spearman with clean map')
    >>> plt.close(fig)
    """
    fig = _severity_panels(stability, "spearman_mean", "method", "Spearman with clean map", errorbar=None)
    return save_figure(fig, run, name)


def plot_corruptions(images: np.ndarray, corrupted: dict[str, np.ndarray], row_labels: Sequence[str],
                     run: RunFolder | None = None, name: str = "corruptions", title: str | None = None) -> plt.Figure:
    """Images (rows): the clean image, then each corrupted version.

    Parameters
    ----------
    images : (N, C, S, S) uint8 array
    corrupted : dict
        Corruption name -> ``(N, C, S, S)`` uint8 copies of ``images``.
    row_labels : sequence of str
        One label per image.
    run : RunFolder, optional
        Where ``figures/<name>.png`` is saved (nothing is saved without one).
    name : str
        The file name, without extension.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> x = np.zeros((1, 1, 8, 8), np.uint8)
    >>> fig = plot_corruptions(x, {"jpeg": x, "contrast": x}, ["glioma"])
    >>> [ax.get_title() for ax in fig.axes]
    ['clean', 'jpeg', 'contrast']
    >>> plt.close(fig)
    """
    cols = ["clean"] + list(corrupted)
    n = len(images)
    fig, axes = plt.subplots(n, len(cols), figsize=(1.8 * len(cols), 1.9 * n + 0.3), squeeze=False)
    for i in range(n):
        for j, col in enumerate(cols):
            img = images[i] if col == "clean" else corrupted[col][i]
            axes[i, j].imshow(_show(img), cmap="gray", vmin=0, vmax=255)
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
        axes[i, 0].set_ylabel(row_labels[i], fontsize=8)
    for j, col in enumerate(cols):
        axes[0, j].set_title(col, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=11)
    return save_figure(fig, run, name)


def plot_channel_weights(weights: pd.DataFrame, top: int = 40, run: RunFolder | None = None,
                         name: str = "channel_weights", title: str | None = None) -> plt.Figure:
    """One image's channel weights per method (:meth:`ExplainedExamples.channel_weights`), side by side.

    The channels are ordered by GradCAM's weight (largest first) and the ``top`` of them by its absolute
    value are drawn, each method's weights divided by their largest magnitude, so the panels compare shapes.

    Parameters
    ----------
    weights : pandas.DataFrame
        One row per channel, one column per method.
    top : int
        How many channels to draw.
    run : RunFolder, optional
    name, title : str

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> w = pd.DataFrame(np.random.default_rng(0).normal(size=(8, 2)), columns=["gradcam", "layercam"])
    >>> fig = plot_channel_weights(w, top=5)
    >>> [ax.get_title() for ax in fig.axes]
    ['GradCAM', 'LayerCAM\\n(mean of its per-position weights)']
    >>> plt.close(fig)
    """
    notes = {"eigengradcam": "\n(first principal component of G⊙A)", "layercam": "\n(mean of its per-position weights)"}
    order = weights.iloc[:, 0].abs().nlargest(min(top, len(weights))).index
    order = weights.loc[order].sort_values(weights.columns[0], ascending=False).index
    fig, axes = plt.subplots(1, len(weights.columns), figsize=(2.6 * len(weights.columns), 2.8), sharey=True,
                             squeeze=False)
    colours = sns.color_palette(PALETTE, len(weights.columns))
    for ax, method, colour in zip(axes[0], weights.columns, colours):
        w = weights.loc[order, method].to_numpy()
        ax.bar(range(len(w)), w / (np.abs(w).max() or 1.0), color=colour, width=0.9)
        ax.axhline(0, color="black", lw=0.6)
        ax.set_title(method_label(method) + notes.get(method, ""), fontsize=9)
        ax.set_xticks([])
        ax.set_xlabel(f"{len(w)} channels, by {method_label(weights.columns[0])}'s weight", fontsize=7)
    axes[0, 0].set_ylabel("weight / largest |weight|")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, run, name)


def plot_masked_inputs(image: np.ndarray, masked: dict[str, np.ndarray], scores: pd.DataFrame,
                       run: RunFolder | None = None, name: str = "masked_inputs") -> plt.Figure:
    """The image, then ``x⊙map`` for each method, titled with the explained class's probability before and after.

    Parameters
    ----------
    image : (C, H, W) array
    masked : dict
        Method -> ``(C, H, W)`` image in [0, 1] (:meth:`ExplainedExamples.masked_inputs`).
    scores : pandas.DataFrame
        Indexed by method, with ``score`` and ``score_after``.
    run : RunFolder, optional
    name : str

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> img = np.zeros((3, 4, 4))
    >>> fig = plot_masked_inputs(img, {"gradcam": img}, pd.DataFrame({"score": [0.9], "score_after": [0.5]},
    ...                          index=["gradcam"]))
    >>> [ax.get_title() for ax in fig.axes]
    ['image\\np = 0.90', 'x ⊙ GradCAM\\np = 0.50 (-0.40)']
    >>> plt.close(fig)
    """
    methods = list(masked)
    fig, axes = plt.subplots(1, len(methods) + 1, figsize=(1.9 * (len(methods) + 1), 2.3), squeeze=False)
    first = scores.iloc[0]["score"]
    axes[0, 0].imshow(_show(image), cmap="gray")
    axes[0, 0].set_title(f"image\np = {first:.2f}", fontsize=9)
    for ax, m in zip(axes[0, 1:], methods):
        ax.imshow(np.transpose(masked[m], (1, 2, 0)) if masked[m].shape[0] == 3 else masked[m][0], cmap="gray")
        after = scores.loc[m, "score_after"]
        ax.set_title(f"x ⊙ {method_label(m)}\np = {after:.2f} ({after - scores.loc[m, 'score']:+.2f})", fontsize=9)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return save_figure(fig, run, name)


def plot_fills(filled: dict[str, np.ndarray], run: RunFolder | None = None, name: str = "fills") -> plt.Figure:
    """An image, then what it becomes with every pixel removed, for each fill (:meth:`ExplainedExamples.filled_images`).

    Parameters
    ----------
    filled : dict
        ``'image'`` and fill name -> ``(C, H, W)`` image in [0, 1].
    run : RunFolder, optional
    name : str

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> img = np.zeros((3, 4, 4))
    >>> fig = plot_fills({"image": img, "imagenet_mean": img + 0.45, "black": img})
    >>> [ax.get_title() for ax in fig.axes]
    ['the image', 'removed: imagenet_mean\\nmean brightness 0.45', 'removed: black\\nmean brightness 0.00']
    >>> plt.close(fig)
    """
    names = list(filled)
    fig, axes = plt.subplots(1, len(names), figsize=(1.9 * len(names), 2.3), squeeze=False)
    for ax, key in zip(axes[0], names):
        img = np.transpose(filled[key], (1, 2, 0))
        ax.imshow(np.clip(img, 0, 1), vmin=0, vmax=1)
        ax.set_title("the image" if key == "image" else f"removed: {key}\nmean brightness {img.mean():.2f}",
                     fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return save_figure(fig, run, name)


def plot_deletion_insertion(curves: pd.DataFrame, run: RunFolder | None = None,
                            name: str = "deletion_insertion") -> plt.Figure:
    """One image's deletion and insertion curves, every method (:meth:`ExplainedExamples.deletion_insertion_curves`).

    Parameters
    ----------
    curves : pandas.DataFrame
        ``method``, ``curve`` (``deletion``/``insertion``), ``fraction``, ``score``, ``auc``.
    run : RunFolder, optional
    name : str

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> c = pd.DataFrame({"method": ["gradcam"] * 4, "curve": ["deletion"] * 2 + ["insertion"] * 2,
    ...                   "fraction": [0, 1] * 2, "score": [0.9, 0.1, 0.2, 0.9], "auc": [0.5] * 2 + [0.55] * 2})
    >>> fig = plot_deletion_insertion(c)
    >>> [ax.get_title() for ax in fig.axes]
    ['deletion: lower is better', 'insertion: higher is better']
    >>> plt.close(fig)
    """
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.2), sharey=True)
    for ax, curve, better in zip(axes, ("deletion", "insertion"), ("lower", "higher")):
        part = curves[curves["curve"] == curve]
        for (method, group), colour in zip(part.groupby("method", sort=False),
                                           sns.color_palette(PALETTE, part["method"].nunique())):
            ax.plot(group["fraction"], group["score"], marker=".", color=colour,
                    label=f"{method_label(method)} (AUC {group['auc'].iloc[0]:.2f})")
        ax.set_xlabel(f"fraction of pixels {'deleted' if curve == 'deletion' else 'put back'}, highest map first")
        ax.set_title(f"{curve}: {better} is better")
        legend_beside(ax)
    axes[0].set_ylabel("probability of the explained class")
    fig.tight_layout()
    return save_figure(fig, run, name)


def plot_randomised_maps(image: np.ndarray, maps: dict[str, dict[str, np.ndarray]], run: RunFolder | None = None,
                         name: str = "randomised_maps", alpha: float = 0.5, cmap: str = "jet") -> plt.Figure:
    """Maps of one image as the cascading randomisation goes: methods by rows, steps by columns.

    Parameters
    ----------
    image : (C, H, W) array
    maps : dict
        Step label (``'trained'``, then the block re-initialised last) -> method -> ``(H, W)`` map
        (:meth:`ExplainedExamples.randomised_maps`).
    run : RunFolder, optional
    name : str
    alpha, cmap : float, str
        As for :func:`overlay`.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> m = {"trained": {"gradcam": np.zeros((4, 4))}, "fc": {"gradcam": np.ones((4, 4))}}
    >>> fig = plot_randomised_maps(np.zeros((1, 4, 4)), m)
    >>> [ax.get_title() for ax in fig.axes]
    ['trained', '… fc']
    >>> plt.close(fig)
    """
    steps = list(maps)
    methods = list(maps[steps[0]])
    fig, axes = plt.subplots(len(methods), len(steps), figsize=(1.5 * len(steps) + 0.8, 1.6 * len(methods) + 0.5),
                             squeeze=False)
    for j, step in enumerate(steps):
        for i, m in enumerate(methods):
            axes[i, j].imshow(overlay(image, maps[step][m], alpha, cmap))
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
            if j == 0:
                axes[i, j].set_ylabel(method_label(m), fontsize=8)
        axes[0, j].set_title(step if j == 0 else f"… {step}", fontsize=8)
    fig.suptitle("re-initialised from the top down to …", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, run, name)


def plot_bootstrap_example(example, run: RunFolder | None = None, name: str = "bootstrap_example") -> plt.Figure:
    """The bootstrap distributions of notebook 03's worked example: few images, then the whole test split.

    Parameters
    ----------
    example : BootstrapExample
        From :func:`xai_helpers.steps.bootstrap_example`.
    run : RunFolder, optional
    name : str

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> r = {"observed": 0.1, "distribution": np.array([0.0, 0.1, 0.2]), "ci_low": 0.0, "ci_high": 0.2}
    >>> ex = SimpleNamespace(a="A", b="B", images=pd.DataFrame(index=range(10)), small=r, full=r, n_test=90)
    >>> [ax.get_title() for ax in plot_bootstrap_example(ex).axes]
    ['10 test images', 'all 90 test images']
    >>> plt.close("all")
    """
    fig, axes = plt.subplots(1, 2, figsize=(12, 3), sharex=True)
    for ax, res, title in ((axes[0], example.small, f"{len(example.images)} test images"),
                           (axes[1], example.full, f"all {example.n_test} test images")):
        ax.hist(res["distribution"], bins=np.linspace(-1, 1, 81), color=sns.color_palette(PALETTE)[0])
        ax.axvspan(res["ci_low"], res["ci_high"], color="grey", alpha=0.25,
                   label=f"95 % interval [{res['ci_low']:.2f}, {res['ci_high']:.2f}]")
        ax.axvline(res["observed"], color="black", lw=1.2, label=f"observed {res['observed']:+.2f}")
        ax.axvline(0, color="red", lw=0.8, ls="--")
        ax.set_title(title)
        ax.set_xlabel(f"accuracy of {example.a} − {example.b}, resampled")
        legend_beside(ax)
    axes[0].set_ylabel("resamples")
    fig.tight_layout()
    return save_figure(fig, run, name)
