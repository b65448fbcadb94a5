"""Steps 03 and 05: every paired test a run folder supports, and the paper-style table.

Notebooks 03 and 05 both call :func:`run_paired_tests`, so ``stats/paired_tests.csv`` is complete
whichever ran last; notebook 03 then writes ``stats/summary_table.csv`` with
:func:`summary_table_for_run`.
"""
from __future__ import annotations

from typing import Any, Sequence

import pandas as pd

import numpy as np

from ..baselines import cnn_rows, is_baseline
from ..cam_metrics import ALL_METRICS
from ..runfolder import RunFolder
from ..stats import (COLUMNS, HEADLINE_TEST, compare_methods, compare_models, compare_predictions, pair_p_adjusted,
                     summary_table)

#: ``comparison`` of the tests between each CNN and the best baseline (their own Holm family).
BASELINE_COMPARISON = "cnn_vs_baseline"


def run_paired_tests(params: dict[str, Any], correction: str = "holm") -> pd.DataFrame:
    """Every paired test the run folder supports, written to ``stats/paired_tests.csv``.

    * between CNNs over folds (``metrics.csv``): paired t, corrected resampled t, Wilcoxon on
      accuracy, balanced accuracy and macro-F1;
    * between CNNs on the same test images (``predictions/``): McNemar and the paired randomisation
      test over images (with a bootstrap interval), per fold and over the fold models;
    * between each CNN and the best baseline (by mean test accuracy), the same tests, with
      ``comparison`` = ``'cnn_vs_baseline'``: their own Holm families, so adding the baselines
      leaves the CNN-vs-CNN p-values as they were;
    * between CAM methods on the same images (``xai_per_image.csv``, when notebook 05 has run):
      paired t and Wilcoxon of every explanation metric, overall and per true class.

    Notebooks 03 and 05 both call this, so the table is complete whichever ran last.

    Parameters
    ----------
    params : dict
        Resolved notebook parameters (``run_dir`` is read).
    correction : {'holm', 'bonferroni'}
        Multiple-comparison correction within each ``holm_family``.

    Returns
    -------
    pandas.DataFrame
        The table written to ``stats/paired_tests.csv`` (columns :data:`xai_helpers.stats.COLUMNS`).

    Examples
    --------
    >>> params = tiny_run()  # one model: no model pair: an empty table
    >>> tests = run_paired_tests(params)
    >>> list(tests.columns) == COLUMNS, RunFolder(params["run_dir"]).paired_tests_file.is_file()
    (True, True)
    """
    run = RunFolder(params["run_dir"])
    run.claim()
    metrics = run.read_metrics()
    fold_metrics = ("accuracy", "balanced_accuracy", "f1_macro")
    cnns = cnn_rows(metrics)
    parts = [compare_models(cnns, fold_metrics, correction)]
    preds = {}
    for r in metrics[["model", "fold"]].itertuples(index=False):
        f = run.predictions_file(r.model, int(r.fold))
        if f.is_file():
            preds[(r.model, int(r.fold))] = pd.read_csv(f)
    cnn_preds = {k: v for k, v in preds.items() if not is_baseline(k[0])}
    if cnn_preds:
        parts.append(compare_predictions(cnn_preds, correction))
    best = best_baseline(metrics)
    if best is not None and len(cnns):
        pairs = [(m, best) for m in dict.fromkeys(cnns["model"])]
        parts.append(compare_models(metrics, fold_metrics, correction, pairs=pairs, comparison=BASELINE_COMPARISON))
        if any(is_baseline(m) for m, _ in preds) and cnn_preds:
            parts.append(compare_predictions(preds, correction, pairs=pairs, comparison=BASELINE_COMPARISON))
    if run.xai_per_image_file.is_file():
        per_image = pd.read_csv(run.xai_per_image_file)
        parts.append(compare_methods(per_image, ALL_METRICS, correction))
    filled = [p for p in parts if len(p)]
    # a run with one model (and no CAM metrics yet) has no pair to test: an empty table, not an error
    tests = pd.concat(filled, ignore_index=True) if filled else pd.DataFrame(columns=COLUMNS)
    run.write_csv(tests, run.paired_tests_file)
    return tests


def summary_table_for_run(params: dict[str, Any], tests: pd.DataFrame,
                          metric_names: Sequence[str] = ("accuracy", "f1_macro")) -> pd.DataFrame:
    """The paper-style table of the run (mean ± std over folds, significance marks), written to
    ``stats/summary_table.csv``.

    Parameters
    ----------
    params : dict
        Resolved notebook parameters (``run_dir`` is read).
    tests : pandas.DataFrame
        From :func:`run_paired_tests`.
    metric_names : sequence of str
        Columns of ``metrics.csv`` to summarise.

    Returns
    -------
    pandas.DataFrame
        :func:`xai_helpers.stats.summary_table` of the run's ``metrics.csv``.

    Examples
    --------
    >>> params = tiny_run()
    >>> table = summary_table_for_run(params, run_paired_tests(params))
    >>> table.loc["resnet50", "kind"], RunFolder(params["run_dir"]).summary_table_file.is_file()
    ('CNN', True)
    """
    run = RunFolder(params["run_dir"])
    run.claim()
    metrics = run.read_metrics()
    table = summary_table(metrics, tests, tuple(metric_names), reference=best_cnn(metrics, metric_names[0]))
    table.insert(0, "kind", ["baseline" if is_baseline(m) else "CNN" for m in table.index])
    best = best_baseline(metrics)
    if best is not None:
        table[f"vs {best}"] = [baseline_verdict(metrics, tests, m, best) if not is_baseline(m) else ""
                               for m in table.index]
    run.write_csv(table.reset_index(), run.summary_table_file)
    return table


def best_baseline(metrics: pd.DataFrame, metric: str = "accuracy") -> str | None:
    """The baseline with the best mean test ``metric`` over folds in ``metrics.csv`` (None without one).

    Parameters
    ----------
    metrics : pandas.DataFrame
        ``metrics.csv``.
    metric : str

    Returns
    -------
    str or None

    Examples
    --------
    >>> m = pd.DataFrame({"model": ["resnet50", "baseline_hgb", "baseline_logreg"], "accuracy": [.9, .7, .6]})
    >>> best_baseline(m)
    'baseline_hgb'
    """
    return _best_of(metrics[metrics["model"].map(is_baseline)], metric)


def best_cnn(metrics: pd.DataFrame, metric: str = "accuracy") -> str | None:
    """The CNN with the best mean test ``metric`` over folds in ``metrics.csv`` (None without one): the
    reference the summary tables mark the other models against.

    Parameters
    ----------
    metrics : pandas.DataFrame
        ``metrics.csv``.
    metric : str

    Returns
    -------
    str or None

    Examples
    --------
    >>> m = pd.DataFrame({"model": ["resnet50", "vgg16", "baseline_hgb"], "accuracy": [.8, .85, .9]})
    >>> best_cnn(m)
    'vgg16'
    """
    return _best_of(cnn_rows(metrics), metric)


def _best_of(rows: pd.DataFrame, metric: str) -> str | None:
    if rows.empty:
        return None
    return str(rows.groupby("model", sort=False)[metric].mean().idxmax())


def baseline_verdict(metrics: pd.DataFrame, tests: pd.DataFrame, model: str, baseline: str,
                     metric: str = "accuracy") -> str:
    """How a CNN's mean test ``metric`` stands against the best baseline's, in words.

    ``'above (+0.120, p_adj 0.001)'`` when the CNN's mean is higher, ``'NOT above (-0.050, ...)'``
    otherwise; the p-value is the Holm-adjusted image-level randomisation test between the two
    (``cnn_vs_baseline`` family), when the tests have it.

    Parameters
    ----------
    metrics, tests : pandas.DataFrame
        ``metrics.csv`` and ``stats/paired_tests.csv``.
    model, baseline : str
    metric : str

    Returns
    -------
    str

    Examples
    --------
    >>> m = pd.DataFrame({"model": ["resnet50", "baseline_hgb"], "accuracy": [.6, .7]})
    >>> baseline_verdict(m, pd.DataFrame(), "resnet50", "baseline_hgb")
    'NOT above (-0.100)'
    """
    means = metrics.groupby("model")[metric].mean()
    diff = float(means[model] - means[baseline])
    p = pair_p_adjusted(tests, BASELINE_COMPARISON, "all", metric, HEADLINE_TEST, model, baseline)
    detail = f"{diff:+.3f}" + (f", p_adj {p:.3g}" if p is not None and np.isfinite(p) else "")
    return f"above ({detail})" if diff > 0 else f"NOT above ({detail})"
