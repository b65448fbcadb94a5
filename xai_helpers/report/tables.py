"""The study's tables: performance with marks, baselines, confidence increase per CAM method, the published
numbers beside ours, the protocol and generalization, one row per dataset (and model, method, class)."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..config import RECORDED_BEFORE
from ..cam_metrics import BASELINE_MAPS, POINTING_TOLERANCE_AT_224, localisation_summary
from ..data.figshare import WINDOW_PERCENTILES
from ..models import activation_note, feature_map_size
from ..baselines import baseline_verdict, best_baseline, best_cnn, cnn_rows, is_baseline
from ..stats import (FOLD_TEST, HEADLINE_TEST, pair_p_adjusted, paired_bootstrap, significance_mark, summary_table,
                     wilson_interval)
from .published import PUBLISHED, PUBLISHED_CAM_SETTING, PUBLISHED_COMPUTED_ON
from .study import DatasetRun


def _mark(tests: pd.DataFrame, comparison: str, group: str, metric: str, test: str, a: str, b: str,
          cam_model: str | None = None) -> str:
    p = pair_p_adjusted(tests, comparison, group, metric, test, a, b, cam_model=cam_model)
    return "" if p is None else significance_mark(p)


def performance_table(runs: list[DatasetRun], metric_names=("accuracy", "f1_macro"),
                      test: str = HEADLINE_TEST, second_test: str | None = FOLD_TEST) -> pd.DataFrame:
    """Mean ± std over folds per dataset and model, marked against the dataset's best model.

    The mark is the Holm-adjusted significance of ``test`` between the model and the best one by
    mean of the first metric ("ref"): by default the paired randomisation test over test images of the
    fold models' results (:data:`~xai_helpers.stats.HEADLINE_TEST`). With ``second_test`` (default the
    corrected resampled t-test over the fold scores) a column ``<metric> (<second_test>)`` gives its mark too.
    The marked cells are :func:`xai_helpers.stats.summary_table`'s, as in notebook 03.

    Parameters
    ----------
    runs : list of DatasetRun
        From :func:`load_study`.
    metric_names : sequence of str
        Columns of ``metrics.csv``.
    test, second_test : str
        The ``test`` of ``paired_tests.csv`` behind the marks (``second_test`` None: one mark only).

    Returns
    -------
    pandas.DataFrame
        ``dataset, model, kind`` ('CNN' or 'baseline'), ``folds, weights``, then
        ``"0.8000 ± 0.0100 (ref)"``-style cells per metric (and per metric and ``second_test``), and
        with baselines in the run ``vs best baseline`` (:func:`baseline_verdict`). The reference is
        the best CNN.

    Examples
    --------
    >>> from xai_helpers.examples import example_study
    >>> from xai_helpers.report import load_study
    >>> table = performance_table(load_study(example_study())).set_index(["dataset", "model"])
    >>> table.loc["skin_cancer_isic", "accuracy"].to_dict()
    {'resnet50': '0.8000 ± 0.0100 (ref)', 'densenet121': '0.7000 ± 0.0100 **'}
    """
    rows = []
    for r in runs:
        best = best_cnn(r.metrics, metric_names[0])
        baseline = best_baseline(r.metrics)
        # the marked cells: one function and one labelling with notebook 03's summary table
        marked = summary_table(r.metrics, r.tests, tuple(metric_names), test, reference=best, second_test=second_test)
        for model, part in r.metrics.groupby("model", sort=False):
            row = {"dataset": r.dataset, "model": model, "kind": "baseline" if is_baseline(model) else "CNN",
                   "folds": int(part["fold"].nunique()),
                   "weights": ", ".join(sorted(part["weights"].astype(str).unique())) if "weights" in part else
                   str(r.config.get("weights") or ""), **marked.loc[model].to_dict()}
            if baseline is not None:
                row["vs best baseline"] = ("best baseline" if model == baseline else "" if is_baseline(model)
                                           else baseline_verdict(r.metrics, r.tests, model, baseline))
            rows.append(row)
    return pd.DataFrame(rows)


def baseline_warnings(runs: list[DatasetRun]) -> list[str]:
    """One line per dataset where a CNN's mean test accuracy is not above the best baseline's.

    Parameters
    ----------
    runs : list of DatasetRun

    Returns
    -------
    list of str

    Examples
    --------
    >>> from xai_helpers.examples import example_study
    >>> from xai_helpers.report import load_study
    >>> baseline_warnings(load_study(example_study()))  # the example study has no baselines
    []
    """
    out = []
    for r in runs:
        baseline = best_baseline(r.metrics)
        if baseline is None:
            continue
        means = r.metrics.groupby("model")["accuracy"].mean()
        losers = [m for m in dict.fromkeys(cnn_rows(r.metrics)["model"]) if means[m] <= means[baseline]]
        if losers:
            out.append(f"**{r.dataset}: {', '.join(losers)} not above the best baseline** ({baseline}, mean test "
                       f"accuracy {means[baseline]:.3f}, a classifier on 32x32 grey pixels): "
                       + ", ".join(f"{m} {means[m]:.3f}" for m in losers)
                       + ". The CNN has learnt no more than a trivial model here; see the data audit's shortcuts "
                         "and shifts before reading its explanations.")
    return out


def confidence_table(runs: list[DatasetRun], metric: str = "confidence_increase") -> pd.DataFrame:
    """``metric`` per dataset, class and CAM method (mean over folds and images), marked against
    the best method of that class by the Holm-adjusted paired t-test on the same images.

    Parameters
    ----------
    runs : list of DatasetRun
        From :func:`load_study`.
    metric : str
        A column of ``xai_metrics.csv``.

    Returns
    -------
    pandas.DataFrame
        ``dataset, class, method, <metric>, n, mark``.

    Examples
    --------
    >>> from xai_helpers.examples import example_study
    >>> from xai_helpers.report import load_study
    >>> conf = confidence_table(load_study(example_study()))
    >>> best = conf[(conf["dataset"] == "brain_tumor_mri") & (conf["class"] == "glioma")]
    >>> best.sort_values("confidence_increase").iloc[-1][["method", "mark"]].tolist()
    ['xgradcam', 'ref']
    """
    rows = []
    for r in runs:
        if r.xai.empty or metric not in r.xai:
            continue
        # xai_metrics.csv: mean per (model, method, class) over every fold's images
        for (model, cls), part in r.xai.groupby(["model", "class"], sort=True):
            values = part.set_index("method")[metric].dropna()  # the localisation baselines have no confidence
            if values.empty:
                continue
            best = str(values.idxmax())
            for method, value in values.items():
                mark = "ref" if method == best else _mark(r.tests, "cams", str(cls), metric, "paired_t", method,
                                                          best, cam_model=str(model))
                rows.append({"dataset": r.dataset, "model": model, "class": cls, "method": method,
                             metric: float(value), "mark": mark, "n": int(part.set_index("method").loc[method, "n"])})
    return pd.DataFrame(rows)


def confidence_wide(conf: pd.DataFrame, metric: str = "confidence_increase") -> pd.DataFrame:
    """:func:`confidence_table` as the report and notebook 06 show it: one row per dataset, explained CNN and method,
    one column per class, each cell ``value mark`` (the mark against the class's best method of that CNN).

    Parameters
    ----------
    conf : pandas.DataFrame
        :func:`confidence_table`.
    metric : str
        Its value column.

    Returns
    -------
    pandas.DataFrame
        ``dataset, model, method`` and one column per class (empty cells for classes of another dataset).

    Examples
    --------
    >>> from xai_helpers.examples import example_study
    >>> from xai_helpers.report import load_study
    >>> wide = confidence_wide(confidence_table(load_study(example_study())))
    >>> list(wide.columns[:3]), wide.iloc[0]["model"]
    (['dataset', 'model', 'method'], 'resnet50')
    """
    if conf.empty:
        return pd.DataFrame(columns=["dataset", "model", "method"])
    cells = conf.assign(cell=[f"{v:.4f} {m}".strip() for v, m in zip(conf[metric], conf["mark"])])
    wide = cells.pivot_table(index=["dataset", "model", "method"], columns="class", values="cell", aggfunc="first",
                             sort=False)
    return wide.reset_index().rename_axis(columns=None).fillna("")  # a class of another dataset: no cell


#: How the Figshare set's 16-bit slices become 8-bit (the .mat download; a converted folder is read as given).
FIGSHARE_WINDOW_RULE = (f"per slice, the {WINDOW_PERCENTILES[0]}–{WINDOW_PERCENTILES[1]} percentile window mapped to "
                        f"0–255 (when read from the .mat download; converted folders are read as given)")

#: The localisation scores of the report's "Do the maps point at the lesion?" table, threshold-free first.
LOCALISATION_SHOWN = ("mask_auroc", "pointing_game")


def _place(values: pd.Series, order: list) -> pd.Series:
    """Each value's index in ``order``; values not in it come after all of it."""
    return values.map(lambda v: order.index(v) if v in order else len(order))


def localisation_table(runs: list[DatasetRun], metrics=LOCALISATION_SHOWN, n_boot: int = 2000) -> pd.DataFrame:
    """Do the maps point at the lesion? Mean localisation score per dataset, explained CNN and map, with its
    95 % bootstrap interval over the masked images (:func:`xai_helpers.cam_metrics.localisation_summary`),
    and the maps that ignore the image (``centre_prior``, ``uniform_random``) as rows beside the CAM methods.

    ``vs centre_prior``: the Holm-adjusted paired t-test over images of the method against the centre
    prior (``stats/paired_tests.csv``, the family of that CNN and layer), as a mark with the direction:
    ``>`` (above the prior), ``<`` (below), ``ns`` or ``n/a``.

    Parameters
    ----------
    runs : list of DatasetRun
        From :func:`load_study`.
    metrics : sequence of str
        Localisation columns of ``xai_per_image.csv``.
    n_boot : int
        Bootstrap resamples (seed 0).

    Returns
    -------
    pandas.DataFrame
        ``dataset, model, layer, metric, method, n_images, mean, ci_low, ci_high, vs centre_prior``, ``layer output``
        (:func:`xai_helpers.models.activation_note`: empty after a ReLU, else a flag: GradCAM++ and XGradCAM
        assume non-negative activations) and ``tolerance`` (the pointing game's, in pixels and map cells); empty
        when no run has lesion masks.

    Examples
    --------
    >>> from xai_helpers.examples import example_study
    >>> from xai_helpers.report import load_study
    >>> loc = localisation_table(load_study(example_study()), ["mask_auroc"], n_boot=200)
    >>> sorted(set(loc["dataset"])), sorted(set(loc["model"]))
    (['brain_tumor_figshare'], ['densenet121', 'resnet50'])
    >>> r = loc[loc["model"] == "resnet50"].set_index("method")
    >>> r.loc["xgradcam", "vs centre_prior"], r.loc["eigengradcam", "vs centre_prior"]
    ('> ***', '< ***')
    """
    parts = []
    for r in runs:
        if r.per_image.empty:
            continue
        summary = localisation_summary(r.per_image, metrics, n_boot=n_boot)
        if summary.empty:
            continue
        marks = []
        for row in summary.itertuples(index=False):
            if row.method in BASELINE_MAPS:
                marks.append("")
                continue
            p = pair_p_adjusted(r.tests, "cams", "all", row.metric, "paired_t", row.method, "centre_prior",
                                cam_model=str(row.model), cam_layer=str(row.layer))
            prior = summary[(summary["model"] == row.model) & (summary["layer"] == row.layer)
                            & (summary["metric"] == row.metric) & (summary["method"] == "centre_prior")]
            if p is None or prior.empty:
                marks.append("n/a")
                continue
            mark = significance_mark(p)
            side = ">" if row.mean > prior["mean"].iloc[0] else "<"
            marks.append(mark if mark in ("ns", "n/a") else f"{side} {mark}")
        summary["vs centre_prior"] = marks
        # the explained model first, the others as trained; the CAM methods as asked for, the baselines last
        order = {"metric": list(metrics), "model": [r.config.get("cam_model")] + list(r.config.get("models") or []),
                 "method": list(r.config.get("cam_methods") or [])}
        # a value's place in its order (unlisted ones after, as they came); the baselines after every method
        summary = summary.sort_values(["metric", "model", "method"], kind="stable", key=lambda col, order=order: (
            _place(col, order[col.name]) + (len(order["method"]) + 1) * col.isin(BASELINE_MAPS)))
        summary.insert(0, "dataset", r.dataset)
        summary["layer output"] = [activation_note(str(m), str(layer)) for m, layer in
                                   zip(summary["model"], summary["layer"])]
        summary["tolerance"] = [pointing_tolerance_note(str(m), str(layer), r.config.get("image_size"))
                                if metric == "pointing_game" else "" for m, layer, metric in
                                zip(summary["model"], summary["layer"], summary["metric"])]
        parts.append(summary.drop(columns="group"))
    if not parts:
        return pd.DataFrame()
    return pd.concat(parts, ignore_index=True)[["dataset", "model", "layer", "metric", "method", "n_images", "mean",
                                                "ci_low", "ci_high", "vs centre_prior", "layer output", "tolerance"]]


def pointing_tolerance_note(model: str, layer: str, image_size: int | None) -> str:
    """The pointing game's tolerance at ``image_size`` in pixels and in cells of ``layer``'s map (a map of 8x8
    cells upsampled to 64 px has cells of 8 px: a tolerance of 4.3 px is about half a cell).

    Examples
    --------
    >>> pointing_tolerance_note("resnet50", "layer2", 64)
    'a hit within 4.3 px = 0.54 cells of the 8×8 map'
    """
    if not image_size:
        return ""
    tolerance = POINTING_TOLERANCE_AT_224 * int(image_size) / 224
    try:
        h, _ = feature_map_size(model, int(image_size), layer)
    except Exception:  # noqa: BLE001 - a layer this version does not know: the pixels alone
        return f"a hit within {tolerance:.1f} px"
    return f"a hit within {tolerance:.1f} px = {tolerance * h / int(image_size):.2f} cells of the {h}×{h} map"


def fill_sensitivity_table(runs: list[DatasetRun]) -> pd.DataFrame:
    """Does the ranking of the CAM methods survive the choice of what a removed pixel becomes? One row per dataset,
    metric and fill (``xai_fill_sensitivity.csv``, :func:`xai_helpers.cam_metrics.fill_sensitivity`): the ranking,
    best first, and Kendall's tau with the study's fill (``imagenet_mean``).

    Parameters
    ----------
    runs : list of DatasetRun

    Returns
    -------
    pandas.DataFrame
        ``dataset, model, metric, fill, n_images, ranking, kendall_tau, same_order``; empty when no run has the file.

    Examples
    --------
    >>> fill_sensitivity_table([]).empty
    True
    """
    columns = ["dataset", "model", "metric", "fill", "n_images", "ranking", "kendall_tau", "same_order"]
    parts = [r.fill_sensitivity.assign(dataset=r.dataset) for r in runs if not r.fill_sensitivity.empty]
    if not parts:
        return pd.DataFrame(columns=columns)
    table = pd.concat(parts, ignore_index=True)
    return table.sort_values(["dataset", "metric"], kind="stable")[columns].reset_index(drop=True)


def published_comparison(runs: list[DatasetRun]) -> pd.DataFrame:
    """The published numbers next to this study's, for the datasets the study folder holds.

    Parameters
    ----------
    runs : list of DatasetRun
        From :func:`load_study`.

    Returns
    -------
    pandas.DataFrame
        One row per published number (:data:`PUBLISHED`): ``computed_on`` (the dataset ours is computed
        on: the published one, or its stand-in of :data:`PUBLISHED_COMPUTED_ON` when the study holds it:
        the glioma rows on the Figshare set), ``ours``, its Wilson interval (accuracy), ``n``,
        ``difference`` and the source; ``ours`` is NaN for a dataset not in the study.

    Examples
    --------
    >>> from xai_helpers.examples import example_study
    >>> from xai_helpers.report import load_study
    >>> pub = published_comparison(load_study(example_study()))
    >>> pub.loc[pub["quantity"] == "accuracy", ["published", "ours"]].round(4).values.tolist()
    [[0.8631, 0.8]]
    >>> sorted(set(pub.loc[pub["class"] == "glioma", "computed_on"]))
    ['brain_tumor_figshare']
    """
    rows = []
    by_dataset = {r.dataset: r for r in runs}
    for pub in PUBLISHED.to_dict("records"):
        computed_on = PUBLISHED_COMPUTED_ON.get((pub["quantity"], pub["dataset"]), pub["dataset"])
        if computed_on not in by_dataset:
            computed_on = pub["dataset"]
        r = by_dataset.get(computed_on)
        ours, spread, n, n_test = np.nan, np.nan, 0, 0
        lo = hi = np.nan
        if r is not None and pub["quantity"] == "accuracy":
            part = r.metrics.loc[r.metrics["model"] == pub["model"]]
            vals = part["accuracy"].dropna()
            if len(vals):
                ours, n = float(vals.mean()), len(vals)
                n_test = int(part["n_test"].median()) if "n_test" in part else 0
                spread = float(vals.std(ddof=1)) if len(vals) > 1 else np.nan
                lo, hi = wilson_interval(ours, n_test)
        readings: dict[str, Any] = {}
        if r is not None and pub["quantity"] == "confidence_increase":
            x = r.xai
            sel = x[(x["model"] == pub["model"]) & (x["method"] == pub["method"]) & (x["class"] == pub["class"])] \
                if not x.empty else x
            if len(sel):
                ours = float(sel[pub["quantity"]].iloc[0])
                n = int(sel["n_images"].iloc[0] if "n_images" in sel else sel["n"].iloc[0])
            readings = confidence_readings(r, pub["model"], pub["method"], pub["class"], pub["published"])
            lo, hi = readings.pop("change_ci_low", np.nan), readings.pop("change_ci_high", np.nan)
        rows.append({**{k: v for k, v in pub.items() if k != "source"}, "computed_on": computed_on, "ours": ours,
                     "ours_std": spread,
                     "ours_ci_low": lo, "ours_ci_high": hi, "n": n, "n_test": n_test,
                     "difference": ours - pub["published"] if np.isfinite(ours) else np.nan,
                     "difference_ci": (f"[{lo - pub['published']:+.4f}, {hi - pub['published']:+.4f}]"
                                       if np.isfinite(lo) else ""),
                     "fill": readings.get("fill", ""),
                     "share_rising": readings.get("share_rising", np.nan),
                     "share_ci_low": readings.get("share_ci_low", np.nan),
                     "share_ci_high": readings.get("share_ci_high", np.nan),
                     "black_share_rising": readings.get("black_share_rising", np.nan),
                     "black_share_ci_low": readings.get("black_share_ci_low", np.nan),
                     "black_share_ci_high": readings.get("black_share_ci_high", np.nan),
                     "reading": readings.get("reading", ""), "setting": readings.get("setting", ""),
                     "source": pub["source"]})
    return pd.DataFrame(rows)


def confidence_readings(run: DatasetRun, model: str, method: str, cls: str, published: float,
                        n_boot: int = 4999, seed: int = 0) -> dict[str, Any]:
    """Three readings of a published "confidence increase", with 95 % intervals over images.

    Two perturbations, named by what a pixel the map removes becomes:

    * the run's fill (``perturbation_fill``; by default 0 of the normalised input, ImageNet's mean colour:
      pytorch-grad-cam's ``CamMultImageConfidenceChange``, the study's): the mean change of the class score
      (``confidence_increase``, in [-1, 1]) and the share of images whose score rises under that same
      perturbation (``share_rising``: the mean of ``confidence_increase > 0``, pytorch-grad-cam's
      ``IncreaseInConfidence``, in [0, 1]);
    * black (the image in [0, 1] times the map, Chattopadhay et al. 2018): the share of images whose score
      rises (``black_share_rising``: their "Increase in Confidence" / 100, in [0, 1]).

    Each image's value is first averaged over the fold models (as in the paired tests), then the
    images are resampled (percentile bootstrap, :func:`xai_helpers.stats.paired_bootstrap`).
    ``reading`` says which reading has the published value's sign and lies nearest to it, and
    ``setting`` where this run's target layer or image size differ from the study's.

    Parameters
    ----------
    run : DatasetRun
    model, method, cls : str
        The published row's model, CAM method and class.
    published : float
    n_boot, seed : int

    Returns
    -------
    dict
        ``change_ci_low``, ``change_ci_high``, ``share_rising``, ``share_ci_low``, ``share_ci_high``,
        ``black_share_rising``, ``black_share_ci_low``, ``black_share_ci_high``, ``fill``, ``reading``,
        ``setting`` (only ``setting`` and ``fill`` when the run has no such images).

    Examples
    --------
    >>> from xai_helpers.examples import example_study
    >>> from xai_helpers.report import load_study
    >>> confidence_readings(load_study(example_study())[0], "resnet50", "xgradcam", "glioma", 0.12)["setting"]
    'layer layer4 at 224 px: as published'
    """
    out: dict[str, Any] = {}
    layer = run.config.get("cam_layer")
    layer = PUBLISHED_CAM_SETTING["layer"] if layer in (None, "default") and model == "resnet50" else layer
    size = run.config.get("image_size")
    differs = [f"layer {layer} (published {PUBLISHED_CAM_SETTING['layer']})"
               if layer != PUBLISHED_CAM_SETTING["layer"] else f"layer {layer}",
               f"{size} px (published {PUBLISHED_CAM_SETTING['image_size']})"
               if size != PUBLISHED_CAM_SETTING["image_size"] else f"{size} px"]
    same = layer == PUBLISHED_CAM_SETTING["layer"] and size == PUBLISHED_CAM_SETTING["image_size"]
    out["setting"] = " at ".join(differs) + (": as published" if same else ": differs from the study")
    out["fill"] = run.config.get("perturbation_fill", RECORDED_BEFORE["perturbation_fill"])
    x = run.per_image
    if x.empty or "confidence_increase" not in x:
        return out
    sel = x[(x["model"] == model) & (x["method"] == method) & (x["class"] == cls)].dropna(
        subset=["confidence_increase"]).copy()
    # whether the score rises on the mean change's own perturbation (runs before the column: the same, derived)
    sel["rising"] = (sel["confidence_increase"] > 0).astype(float)
    columns = ["confidence_increase", "rising"] + (["increase_in_confidence_pct"]
                                                   if "increase_in_confidence_pct" in sel else [])
    per = sel.groupby("path")[columns].mean()
    if len(per) < 2:
        return out

    def interval(values: np.ndarray) -> dict[str, float]:
        return paired_bootstrap(lambda a: a.mean(axis=1), values, n_boot=n_boot, seed=seed)

    change = interval(per["confidence_increase"].to_numpy())
    share = interval(per["rising"].to_numpy())
    out.update(change_ci_low=change["ci_low"], change_ci_high=change["ci_high"], share_rising=share["observed"],
               share_ci_low=share["ci_low"], share_ci_high=share["ci_high"])
    candidates = {"mean change": change["observed"], "share rising": share["observed"]}
    black = per["increase_in_confidence_pct"].dropna().to_numpy() / 100 if "increase_in_confidence_pct" in per \
        else np.array([])
    if len(black) >= 2:
        b = interval(black)
        out.update(black_share_rising=b["observed"], black_share_ci_low=b["ci_low"], black_share_ci_high=b["ci_high"])
        candidates["black-fill share rising"] = b["observed"]
    same_sign = {k: v for k, v in candidates.items() if np.sign(v) == np.sign(published)}
    if same_sign:
        best = min(same_sign, key=lambda k: abs(same_sign[k] - published))
        out["reading"] = f"{best} (sign and scale nearest the published {published:g})"
    else:
        out["reading"] = f"none has the published sign ({published:g})"
    return out


def protocol_table(runs: list[DatasetRun]) -> pd.DataFrame:
    """How each dataset was run: sizes, weights, folds, epochs, caps, duplicates removed.

    Parameters
    ----------
    runs : list of DatasetRun
        From :func:`load_study`.

    Returns
    -------
    pandas.DataFrame
        One row per dataset (the report shows it transposed).

    Examples
    --------
    >>> from xai_helpers.examples import example_study
    >>> from xai_helpers.report import load_study
    >>> table = protocol_table(load_study(example_study())).set_index("dataset")
    >>> int(table.loc["brain_tumor_mri", "image_size"]), table.loc["skin_cancer_isic", "weights"]
    (224, 'none')
    """
    rows = []
    for r in runs:
        c, m, a = r.config, r.metrics, r.audit
        weights = ", ".join(sorted(m["weights"].astype(str).unique())) if "weights" in m else str(c.get("weights"))
        t = r.training
        rows.append({
            "dataset": r.dataset, "run folder": r.name, "image_size": t.get("image_size", c.get("image_size")),
            "weights": weights, "folds": int(m["fold"].nunique()), "max epochs": t.get("epochs", c.get("epochs")),
            "lr": t.get("lr", str(c.get("lr"))), "batch size": t.get("batch_size", c.get("batch_size")),
            "learning-rate warm-up (epochs)": t.get("warmup_epochs", str(c.get("warmup_epochs",
                                                                                 RECORDED_BEFORE["warmup_epochs"]))),
            "max_per_class": c.get("max_per_class"),
            "non-square images (resize_mode)": c.get("resize_mode", RECORDED_BEFORE["resize_mode"]),
            "baselines (32x32 grey pixels)": ", ".join(sorted(m.loc[m["model"].map(is_baseline), "model"].unique()))
            or "none",
            "train images / fold": int(m["n_train"].median()) if "n_train" in m else None,
            "test images": int(m["n_test"].median()) if "n_test" in m else None,
            "test split": a.get("splits", {}).get("test_split"),
            "cross-validation folds": a.get("splits", {}).get("folds_from"),
            "16-bit intensities to 8-bit": (FIGSHARE_WINDOW_RULE if r.dataset == "brain_tumor_figshare" else None),
            "exact duplicate groups": a.get("exact_duplicate_groups"),
            "near duplicate groups": a.get("near_duplicate_groups"),
            "train images dropped as test copies": len(a.get("splits", {}).get("dropped_train_images", [])),
            "optimizer": r.training.get("optimizer"),
            "learning-rate schedule": r.training.get("schedule"),
            "minimum epochs (before early stopping)": r.training.get("min_epochs"),
            "early-stopping patience": r.training.get("patience"),
            "augmentation (flips, affine, brightness/contrast)": r.training.get("augment"),
            "BatchNorm recalibrated before each validation (images, class-stratified)":
                (f"{r.training.get('recalibrate_bn')} ({r.training.get('bn_calibration_images')})"
                 if r.training else None),
            "class-weighted loss": r.training.get("class_weighted"),
            "precision (per fit, metrics.csv)": (", ".join(sorted(m["precision"].astype(str).unique()))
                                                 if "precision" in m else "fp32"),
            "explained model": c.get("cam_model"),
            "explained class": "the predicted class" if c.get("cam_model") else None,
            "explained images / class / fold": c.get("explain_per_class") or "all",
            "CAM layer": c.get("cam_layer"),
            "training time (s)": round(float(m["train_seconds"].sum()), 0) if "train_seconds" in m else None,
        })
    return pd.DataFrame(rows)


def generalization_summary(runs: list[DatasetRun]) -> pd.DataFrame:
    """Mean accuracy per dataset and model: clean, each corruption at its worst severity, external.

    Parameters
    ----------
    runs : list of DatasetRun
        From :func:`load_study`.

    Returns
    -------
    pandas.DataFrame
        Empty when notebook 07 has run on none of the datasets.

    Examples
    --------
    >>> from xai_helpers.examples import example_study
    >>> from xai_helpers.report import load_study
    >>> generalization_summary(load_study(example_study())).empty  # notebook 07 has not run there
    True
    """
    rows = []
    for r in runs:
        g = r.generalization
        if g.empty:
            continue
        worst = g["severity"].max()
        for model, part in g.groupby("model", sort=False):
            row = {"dataset": r.dataset, "model": model,
                   "clean": part.loc[part["condition"] == "clean", "accuracy"].mean()}
            for cond, sub in part.groupby("condition", sort=False):
                if cond == "clean":
                    continue
                if cond.startswith("external:"):
                    row[cond] = sub["accuracy"].mean()
                else:
                    row[f"{cond} (sev {worst})"] = sub.loc[sub["severity"] == worst, "accuracy"].mean()
            row["ece clean"] = part.loc[part["condition"] == "clean", "ece"].mean()
            ext = part[part["condition"].str.startswith("external:")]
            if len(ext):
                row["ece external"] = ext["ece"].mean()
                row["external: what was scored"] = external_note(r)
                flagged = r.external.get("shift_flagged")
                row["external shift (flagged, generalization_shift.csv)"] = (
                    ", ".join(flagged) if flagged else "none flagged" if flagged is not None else "not audited")
                row["warnings"] = "; ".join(external_warnings(
                    float(ext["accuracy"].mean()), float(row["clean"]), float(ext["ece"].mean()),
                    r.external.get("majority_class_rate")))
            rows.append(row)
    return pd.DataFrame(rows)


#: An external accuracy this far below the clean test accuracy, or an ECE above this, is a warning.
EXTERNAL_DROP_WARNING = 0.15
EXTERNAL_ECE_WARNING = 0.2


def external_warnings(external_accuracy: float, clean_accuracy: float, external_ece: float,
                      majority_class_rate: float | None) -> list[str]:
    """Warning signs of an external accuracy, in words (empty when there is none).

    Parameters
    ----------
    external_accuracy, clean_accuracy, external_ece : float
        Means over the fold models.
    majority_class_rate : float or None
        Share of the external set's largest class: what always answering it scores.

    Returns
    -------
    list of str

    Examples
    --------
    >>> for line in external_warnings(0.55, 0.9, 0.3, 0.6):
    ...     print(line)
    WARNING: 0.35 below the clean test accuracy
    WARNING: below the majority-class rate 0.60
    WARNING: ECE 0.30 > 0.2
    """
    out = []
    if clean_accuracy - external_accuracy > EXTERNAL_DROP_WARNING:
        out.append(f"WARNING: {clean_accuracy - external_accuracy:.2f} below the clean test accuracy")
    if majority_class_rate is not None and np.isfinite(majority_class_rate) and external_accuracy < majority_class_rate:
        out.append(f"WARNING: below the majority-class rate {majority_class_rate:.2f}")
    if np.isfinite(external_ece) and external_ece > EXTERNAL_ECE_WARNING:
        out.append(f"WARNING: ECE {external_ece:.2f} > {EXTERNAL_ECE_WARNING:g}")
    return out


def external_note(run: DatasetRun) -> str:
    """What an external accuracy stands on: the classes scored, those left unmapped, and the
    training images found in the external set and left out.

    Parameters
    ----------
    run : DatasetRun

    Returns
    -------
    str
        Empty when the run has no external set.

    Examples
    --------
    >>> from xai_helpers.examples import example_study
    >>> from xai_helpers.report import load_study
    >>> external_note(load_study(example_study())[0])
    ''
    """
    e = run.external
    if not e:
        return ""
    parts = [f"classes scored: {', '.join(e.get('classes_evaluated', [])) or 'none'}"]
    unmapped = e.get("unmapped_classes") or {}
    if unmapped:
        parts.append("NOT scored (no matching class): " + ", ".join(f"{c} ({n} images)" for c, n in unmapped.items()))
    overlap = e.get("training_overlap")
    if overlap:
        parts.append(f"training images found and left out: {overlap.get('exact', 0)} byte copies, "
                     f"{overlap.get('near', 0)} near copies"
                     + (f", {overlap['mirrored']} mirrored copies" if overlap.get("mirrored") else ""))
    elif e.get("checked_against_training") is False or "training_overlap" not in e:
        parts.append("not checked against the training images")
    return "; ".join(parts)
