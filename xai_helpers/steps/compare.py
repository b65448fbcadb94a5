"""Steps 03 and 05: every paired test a run folder supports, and the paper-style table.

Notebooks 03 and 05 both call :func:`run_paired_tests`, so ``stats/paired_tests.csv`` is complete
whichever ran last; notebook 03 then writes ``stats/summary_table.csv`` with
:func:`summary_table_for_run`.
"""
from __future__ import annotations

from typing import Any, Sequence

import pandas as pd


from ..baselines import BASELINE_COMPARISON, baseline_verdict, best_baseline, best_cnn, cnn_rows, is_baseline
from ..cam_metrics import ALL_METRICS
from ..runfolder import RunFolder
from ..stats import (COLUMNS, compare_methods, compare_models, compare_predictions, summary_table)

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
    >>> from xai_helpers.examples import tiny_run
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
    >>> from xai_helpers.examples import tiny_run
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


