"""Steps 03 and 05: every paired test a run folder supports, and the paper-style table.

Notebooks 03 and 05 both call :func:`run_paired_tests`, so ``stats/paired_tests.csv`` is complete
whichever ran last; notebook 03 then writes ``stats/summary_table.csv`` with
:func:`summary_table_for_run`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd


from ..baselines import BASELINE_COMPARISON, baseline_verdict, best_baseline, best_cnn, cnn_rows, is_baseline
from ..cam_metrics import ALL_METRICS
from ..runfolder import RunFolder
from ..stats import (COLUMNS, compare_methods, compare_models, compare_predictions, paired_bootstrap, summary_table)

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




@dataclass
class BootstrapExample:
    """The paired bootstrap worked by hand on two models' predictions (notebook 03's example).

    Attributes
    ----------
    a, b : str
        The two models (``a`` the better by mean test accuracy), fold ``fold``'s checkpoints.
    images : pandas.DataFrame
        The ``n_images`` drawn test images: ``image``, ``true``, ``<a> correct``, ``<b> correct``, ``difference``.
    small, full : dict
        :func:`xai_helpers.stats.paired_bootstrap` of the accuracy difference on those images and on the whole
        test split (``observed``, ``distribution``, ``ci_low``, ``ci_high``).
    n_test : int
        Test images in the whole split.

    Examples
    --------
    >>> r = {"observed": 0.1, "distribution": np.zeros(3), "ci_low": 0.0, "ci_high": 0.2}
    >>> BootstrapExample("a", "b", 0, pd.DataFrame(), r, r, 90).n_test
    90
    """

    a: str
    b: str
    fold: int
    images: pd.DataFrame
    small: dict[str, Any]
    full: dict[str, Any]
    n_test: int


def bootstrap_example(params: dict[str, Any], n_images: int = 10, fold: int = 0,
                      n_boot: int = 2000) -> BootstrapExample | None:
    """The accuracy difference of the best and the worst CNN (by mean test accuracy) on ``n_images`` test images
    drawn with ``params['seed']``, and its paired bootstrap interval, beside the same on every test image.

    Parameters
    ----------
    params : dict
        Resolved notebook parameters (``run_dir``, ``seed``).
    n_images : int
    fold : int
        Whose predictions are compared.
    n_boot : int
        Bootstrap resamples.

    Returns
    -------
    BootstrapExample or None
        None with fewer than two CNNs.

    Examples
    --------
    >>> from xai_helpers.examples import tiny_run
    >>> bootstrap_example(tiny_run()) is None  # one CNN: nothing to compare
    True
    """
    run = RunFolder(params["run_dir"])
    means = cnn_rows(run.read_metrics()).groupby("model")["accuracy"].mean().sort_values(ascending=False)
    if len(means) < 2:
        return None
    a, b = means.index[0], means.index[-1]
    preds = {m: pd.read_csv(run.predictions_file(m, fold)).set_index("path") for m in (a, b)}
    test = preds[a].join(preds[b]["pred"].rename("pred_b"))
    correct_a = (test["pred"] == test["true"]).to_numpy(float)
    correct_b = (test["pred_b"] == test["true"]).to_numpy(float)
    drawn = np.sort(np.random.default_rng(params["seed"]).choice(len(test), min(n_images, len(test)), replace=False))

    def difference(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return (x - y).mean(axis=1)

    images = pd.DataFrame({"image": [Path(p).name for p in test.index[drawn]], "true": test["true"].to_numpy()[drawn],
                           f"{a} correct": correct_a[drawn].astype(int), f"{b} correct": correct_b[drawn].astype(int)})
    images["difference"] = images[f"{a} correct"] - images[f"{b} correct"]
    small = paired_bootstrap(difference, correct_a[drawn], correct_b[drawn], n_boot=n_boot, seed=params["seed"])
    full = paired_bootstrap(difference, correct_a, correct_b, n_boot=n_boot, seed=params["seed"])
    return BootstrapExample(a, b, fold, images, small, full, len(test))


#: What the ``effect_size`` of each test's rows is (by the test's name, its prefix for the McNemar and randomisation
#: variants): Cohen's d_z (the mean difference over the standard deviation of the differences) for the t-tests, the
#: matched-pairs rank-biserial correlation for Wilcoxon, and the difference of accuracy (or F1) itself for McNemar and
#: the randomisation tests.
EFFECT_SIZE_KINDS = {"paired_t": "d_z", "corrected_t": "d_z", "wilcoxon": "rank-biserial",
                     "mcnemar": "difference", "randomisation": "difference"}


def effect_size_kind(test: str) -> str:
    """The kind of effect size a test's rows carry (:data:`EFFECT_SIZE_KINDS`).

    Parameters
    ----------
    test : str
        The ``test`` column of ``stats/paired_tests.csv``.

    Returns
    -------
    str
        ``'d_z'``, ``'rank-biserial'``, ``'difference'``, or ``''`` for a test not listed.

    Examples
    --------
    >>> effect_size_kind("corrected_t"), effect_size_kind("mcnemar_exact"), effect_size_kind("randomisation_images")
    ('d_z', 'difference', 'difference')
    """
    for name, kind in EFFECT_SIZE_KINDS.items():
        if test == name or test.startswith(name + "_"):
            return kind
    return ""


def readable_tests(tests: pd.DataFrame) -> pd.DataFrame:
    """The columns of ``stats/paired_tests.csv`` a reader needs, named for reading: the pair, the metric, the test,
    the mean difference with its interval, the Holm-adjusted p and the effect size (all columns stay in the csv).

    Parameters
    ----------
    tests : pandas.DataFrame
        Rows of ``stats/paired_tests.csv`` (:func:`run_paired_tests`).

    Returns
    -------
    pandas.DataFrame
        ``pair`` (``a − b``), ``metric``, ``test``, ``n``, ``difference``, ``interval``, ``p (Holm)``,
        ``effect size`` and ``effect size kind`` (:data:`EFFECT_SIZE_KINDS`: Cohen's d_z, the rank-biserial
        correlation or the difference itself, by test) (and ``group`` when the rows have several).

    Examples
    --------
    >>> t = pd.DataFrame({"a": ["resnet50"], "b": ["vgg16"], "metric": ["accuracy"], "test": ["paired_t"],
    ...                   "n": [3], "mean_diff": [0.051], "ci_low": [0.01], "ci_high": [0.09], "ci_level": [0.95],
    ...                   "p_adjusted": [0.0312], "effect_size": [1.91], "group": ["all"]})
    >>> readable_tests(t).iloc[0].to_dict()  # doctest: +NORMALIZE_WHITESPACE
    {'pair': 'resnet50 − vgg16', 'metric': 'accuracy', 'test': 'paired_t', 'n': 3, 'difference': 0.051,
     'interval': '[0.010, 0.090] (95 %)', 'p (Holm)': 0.0312, 'effect size': 1.91, 'effect size kind': 'd_z'}
    """
    def interval(r) -> str:
        if pd.isna(r.ci_low) or pd.isna(r.ci_high):
            return ""
        level = f" ({r.ci_level:.0%})".replace("%", " %") if pd.notna(r.ci_level) else ""
        return f"[{r.ci_low:.3f}, {r.ci_high:.3f}]{level}"

    out = pd.DataFrame({"pair": tests["a"] + " − " + tests["b"], "metric": tests["metric"], "test": tests["test"],
                        "n": tests["n"], "difference": tests["mean_diff"].round(4),
                        "interval": [interval(r) for r in tests.itertuples()],
                        "p (Holm)": tests["p_adjusted"].round(4), "effect size": tests["effect_size"].round(3),
                        "effect size kind": tests["test"].map(effect_size_kind)})
    if "group" in tests and tests["group"].nunique() > 1:
        out.insert(0, "group", tests["group"])
    return out.reset_index(drop=True)
