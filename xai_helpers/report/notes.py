"""The report's prose: why our numbers differ from the published ones, what was measured, what the
explanations show, in sentences generated from a study's run folders."""
from __future__ import annotations



import numpy as np
import pandas as pd

from ..baselines import cnn_rows
from ..stats import pair_p_adjusted
from ..evaluation import LARGE_GAP, validation_test_gap
from .published import PUBLISHED_SETTING
from .study import DatasetRun
from .tables import localisation_table


def difference_notes(runs: list[DatasetRun]) -> list[str]:
    """Plain-language reasons why this study's numbers differ from the published ones.

    Parameters
    ----------
    runs : list of DatasetRun
        From :func:`load_study`.

    Returns
    -------
    list of str
        One note per reason and dataset (markdown).

    Examples
    --------
    >>> from xai_helpers.examples import example_study
    >>> from xai_helpers.report import load_study
    >>> notes = difference_notes(load_study(example_study()))
    >>> any("trained from scratch" in n for n in notes), any("64 px instead of 224 px" in n for n in notes)
    (True, True)
    """
    notes = [f"The published study: {PUBLISHED_SETTING}."]
    for r in runs:
        c, m, a = r.config, r.metrics, r.audit
        parts = []
        weights = set(m["weights"].astype(str)) if "weights" in m else {str(c.get("weights"))}
        if weights == {"none"}:
            parts.append("the CNNs were trained from scratch (no ImageNet weights could be loaded or none were "
                         "asked for), which costs accuracy on small medical datasets")
        elif "imagenet" in weights:
            parts.append("the CNNs started from ImageNet weights, as in the study")
        if c.get("image_size") and c["image_size"] != 224:
            parts.append(f"images were {c['image_size']} px instead of 224 px")
        if c.get("max_per_class"):
            parts.append(capped_pool_note(c["max_per_class"], a.get("splits", {}).get("pool_per_class")))
        dropped = len(a.get("splits", {}).get("dropped_train_images", []))
        if dropped:
            parts.append(f"{dropped} training images that duplicate test images were removed (the published "
                         f"splits leak them, which inflates test accuracy)")
        k = int(m["fold"].nunique())
        parts.append(f"each number is a mean over {k} fold models validated on held-out folds, on the published "
                     f"test split (the study reports a single model)")
        if c.get("explain_per_class"):
            parts.append(f"confidence increase is averaged over {c['explain_per_class']} test images per class "
                         f"per fold at layer {c.get('cam_layer')}")
        notes.append(f"**{r.dataset}**: " + "; ".join(parts) + ".")
        notes += [f"**{r.dataset}** (measured): {n}" for n in measured_notes(r)]
    return notes


def capped_pool_note(max_per_class: int, pool_per_class: dict[str, dict[str, int]] | None) -> str:
    """What a ``max_per_class`` cap left out of the training pool, in words.

    Parameters
    ----------
    max_per_class : int
    pool_per_class : dict or None
        Class -> ``{"available": n, "used": m}`` (``audit.json``'s ``splits``); older runs lack it.

    Returns
    -------
    str

    Examples
    --------
    >>> note = capped_pool_note(1000, {"normal": {"available": 1341, "used": 1000},
    ...                                "pneumonia": {"available": 3875, "used": 1000}})
    >>> note.split(": ")[1]
    '2,000 of 5,216 (38 %; normal 1,000 of 1,341, pneumonia 1,000 of 3,875)'
    >>> capped_pool_note(1500, {"benign": {"available": 1429, "used": 1429}})
    'all 1,429 training-pool images were used (the cap of 1500 per class left none out)'
    """
    note = f"at most {max_per_class} training images per class were used"
    if not pool_per_class:
        return note
    available = sum(v["available"] for v in pool_per_class.values())
    used = sum(v["used"] for v in pool_per_class.values())
    if used == available:
        return f"all {available:,} training-pool images were used (the cap of {max_per_class} per class left none out)"
    # fewer used than available: at least one class was capped, and available > 0
    capped = [f"{c} {v['used']:,} of {v['available']:,}"
              for c, v in pool_per_class.items() if v["used"] < v["available"]]
    return f"{note}: {used:,} of {available:,} ({100 * used / available:.0f} %; {', '.join(capped)})"


def measured_notes(run: DatasetRun, gap_threshold: float = LARGE_GAP) -> list[str]:
    """What the run's own measurements say about its numbers: the audit's flagged shortcuts and
    shifts, and the validation-vs-test gap of the CNNs.

    Parameters
    ----------
    run : DatasetRun
    gap_threshold : float
        A mean validation accuracy this much above the test accuracy is reported.

    Returns
    -------
    list of str

    Examples
    --------
    >>> from xai_helpers.examples import example_study
    >>> from xai_helpers.report import load_study
    >>> measured_notes(load_study(example_study())[0])  # the example study has no audit tables
    []
    """
    notes = []
    if not run.shortcuts.empty:
        flagged = run.shortcuts[run.shortcuts["flagged"].astype(bool)]
        features = [f for f in flagged["feature"] if f != "all"]
        if features:
            notes.append("the data audit flags " + ", ".join(
                f"{f} ({e:.2f})" for f, e in zip(flagged["feature"], flagged["effect_size"]) if f != "all")
                + " as telling the classes apart on the training pool (effect sizes in brackets; "
                  "`data/audit_shortcuts.csv`): a shortcut the CNNs can learn instead of the anatomy")
        tree = flagged[flagged["feature"] == "all"]
        if len(tree):
            notes.append(f"a depth-3 tree on the file metadata alone reaches a balanced accuracy of "
                         f"{tree['statistic'].iloc[0]:.2f} on the training pool")
    if not run.shift.empty:
        flagged = run.shift[run.shift["flagged"].astype(bool)]
        for cls, part in flagged.groupby("class", sort=True):
            notes.append(f"class {cls} shifts from the training pool to the test split in "
                         + ", ".join(f"{f} ({e:.2f})" for f, e in zip(part["feature"], part["effect_size"]))
                         + " (`data/audit_shift.csv`)")
    gap = validation_test_gap(cnn_rows(run.metrics), [])  # class 'all': accuracy
    gaps = gap[gap["gap"] > gap_threshold]
    if len(gaps):
        notes.append("validation accuracy (held-out training folds) exceeds test accuracy by more than "
                     f"{gap_threshold:.2f} for " + ", ".join(
                         f"{r.model} ({r.validation:.2f} vs {r.test:.2f})" for r in gaps.itertuples())
                     + ": the test split is not distributed like the training pool")
    return notes


def explanation_notes(runs: list[DatasetRun]) -> list[str]:
    """What the confidence increase measures in these runs, and where two methods coincide.

    Parameters
    ----------
    runs : list of DatasetRun
        From :func:`load_study`.

    Returns
    -------
    list of str
        Markdown notes.

    Examples
    --------
    >>> from xai_helpers.examples import example_study
    >>> from xai_helpers.report import load_study
    >>> notes = explanation_notes(load_study(example_study()))
    >>> any("GradCAM and XGradCAM give the same map" in n for n in notes)
    True
    """
    notes = ["The explained class is the model's predicted class; the confidence score is the softmax "
             "probability of that class. `confidence_increase` is the mean change of that probability when the "
             "normalised input is multiplied by the map (pytorch-grad-cam's `CamMultImageConfidenceChange`)."]
    for r in runs:
        model, layer = r.config.get("cam_model"), r.config.get("cam_layer")
        if model == "resnet50" and layer in ("layer4", "default"):
            notes.append(f"**{r.dataset}**: at ResNet50's `layer4` the gradient is spatially constant (global average "
                         f"pooling, then one linear layer), so GradCAM and XGradCAM give the same map and the same "
                         f"numbers there.")
    return notes


def localisation_notes(runs: list[DatasetRun], table: pd.DataFrame | None = None,
                       metric: str = "mask_auroc") -> list[str]:
    """One sentence per dataset and explained CNN: which CAM methods point at the lesion better than the
    centre prior (significantly, Holm-adjusted paired t over images), and whether XGradCAM ranks above
    EigenGradCAM as the study says.

    Parameters
    ----------
    runs : list of DatasetRun
        From :func:`load_study`.
    table : pandas.DataFrame, optional
        :func:`~xai_helpers.report.tables.localisation_table` of ``runs`` (computed when not given).
    metric : str
        The score the sentences are about (default the threshold-free mask AUROC).

    Returns
    -------
    list of str
        Markdown; empty when no run has lesion masks.

    Examples
    --------
    >>> from xai_helpers.examples import example_study
    >>> from xai_helpers.report import load_study
    >>> notes = localisation_notes(load_study(example_study()))
    >>> print(notes[0][:100])
    **brain_tumor_figshare**, resnet50 at `layer4` (mask AUROC, 24 images with a mask): above the centre
    >>> "as the study says" in notes[0], "no CAM method is significantly above" in notes[1]
    (True, True)
    """
    table = localisation_table(runs, (metric,)) if table is None else table
    if table.empty:
        return []
    by_dataset = {r.dataset: r for r in runs}
    label = {"mask_auroc": "mask AUROC", "pointing_game": "pointing game"}.get(metric, metric)
    notes = []
    for (dataset, model, layer), part in table[table["metric"] == metric].groupby(["dataset", "model", "layer"],
                                                                                  sort=False):
        rows = part.set_index("method")
        if "centre_prior" not in rows.index:
            continue
        prior = rows.loc["centre_prior", "mean"]
        cams = rows.drop(index=[m for m in ("centre_prior", "uniform_random") if m in rows.index])
        scored = list(zip(cams.index, cams["mean"], cams["vs centre_prior"]))
        above = [f"{m} {v:.3f}" for m, v, k in scored if k.startswith(">")]
        below = [f"{m} {v:.3f}" for m, v, k in scored if k.startswith("<")]
        rest = [f"{m} {v:.3f}" for m, v, k in scored if not k.startswith((">", "<"))]
        head = (f"**{dataset}**, {model} at `{layer}` ({label}, {int(rows['n_images'].max())} images with a mask): ")
        if above:
            text = f"above the centre prior ({prior:.3f}), significantly: {', '.join(above)}"
        else:
            text = f"no CAM method is significantly above the centre prior ({prior:.3f})"
        if rest:
            text += f"; not significantly different from it: {', '.join(rest)}"
        if below:
            text += f"; significantly below it: {', '.join(below)}"
        if {"xgradcam", "eigengradcam"} <= set(cams.index):
            x, e = cams.loc["xgradcam", "mean"], cams.loc["eigengradcam", "mean"]
            p = pair_p_adjusted(by_dataset[dataset].tests, "cams", "all", metric, "paired_t", "xgradcam",
                                "eigengradcam", cam_model=str(model), cam_layer=str(layer))
            p_text = f"Holm-adjusted paired t p = {p:.2g}" if p is not None and np.isfinite(p) else "not tested"
            if p is not None and np.isfinite(p) and p < 0.05:
                verdict = ("XGradCAM ranks above EigenGradCAM, as the study says" if x > e else
                           "XGradCAM ranks below EigenGradCAM, against the study's claim")
            else:
                verdict = "XGradCAM and EigenGradCAM do not differ significantly (the study ranks XGradCAM above)"
            text += f". {verdict} ({x:.3f} vs {e:.3f}, {p_text})"
        notes.append(head + text + ".")
    return notes
