"""Paired tests between models (same folds, same test images) and between CAM methods (same images).

Every test returns a plain dict with the same keys (``test``, ``n``, ``statistic``, ``p_value``,
``effect_size``, ``ci_low``, ``ci_high``, ``mean_diff``, ``note``), so results stack into the
``stats/paired_tests.csv`` table. Degenerate input gets a stated answer, never a silent NaN:

* fewer than two pairs: ``p_value`` NaN with ``note`` "not testable: n = 1";
* identical results (all differences zero): ``p_value`` 1, statistic 0 (scipy's ``ttest_rel``
  would return NaN here);
* NaN values: the pairs with a NaN are left out and the note says how many.

What the tests assume, in short:

* paired t-test (as in the study): the differences are roughly normal and independent. On
  cross-validation folds they are not independent (the training sets overlap), so it is
  anti-conservative;
* Nadeau-Bengio corrected resampled t-test: inflates the variance by ``1/k + n_test/n_train``
  to account for that overlap (Nadeau & Bengio 2003; Bouckaert & Frank 2004);
* Wilcoxon signed-rank: no normality, only symmetry of the differences; with ``n`` pairs the
  exact two-sided p-value cannot go below ``2 / 2**n`` (0.25 for n = 3);
* McNemar: paired correct/incorrect outcomes of two models on the same test images (exact
  binomial when fewer than 25 discordant pairs);
* Holm (default) or Bonferroni correction across the pairs compared together.
"""
from __future__ import annotations

import itertools
import math
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats as st

COLUMNS = ["comparison", "group", "a", "b", "metric", "test", "n", "statistic", "p_value", "p_adjusted",
           "correction", "effect_size", "ci_low", "ci_high", "mean_a", "mean_b", "mean_diff",
           "normality_p", "min_p_possible", "note"]


def _clean_pairs(a: Sequence[float], b: Sequence[float]) -> tuple[np.ndarray, np.ndarray, str]:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"a, b: expected two 1-D arrays of equal length, got {a.shape} and {b.shape}")
    ok = np.isfinite(a) & np.isfinite(b)
    note = "" if ok.all() else f"{int((~ok).sum())} pair(s) with NaN left out"
    return a[ok], b[ok], note


def _result(test: str, n: int, statistic: float, p: float, d: np.ndarray | None = None,
            ci: tuple[float, float] = (math.nan, math.nan), effect: float = math.nan,
            note: str = "", min_p: float = 0.0) -> dict[str, Any]:
    return {"test": test, "n": int(n), "statistic": float(statistic), "p_value": float(p),
            "effect_size": float(effect), "ci_low": float(ci[0]), "ci_high": float(ci[1]),
            "mean_diff": float(d.mean()) if d is not None and len(d) else math.nan,
            "min_p_possible": float(min_p), "note": note}


def _join(*notes: str) -> str:
    return "; ".join(n for n in notes if n)


def cohens_dz(a: Sequence[float], b: Sequence[float]) -> float:
    """Cohen's d_z of paired samples: mean of the differences over their standard deviation (ddof=1).

    0 when all differences are zero; +-inf when they are equal and non-zero.
    """
    a, b, _ = _clean_pairs(a, b)
    d = a - b
    if len(d) < 2:
        return math.nan
    sd = d.std(ddof=1)
    if sd == 0:
        return 0.0 if d.mean() == 0 else math.copysign(math.inf, d.mean())
    return float(d.mean() / sd)


def _t_based(test: str, d: np.ndarray, var_factor: float, note: str, alpha: float) -> dict[str, Any]:
    n = len(d)
    if n < 2:
        return _result(test, n, math.nan, math.nan, d, note=_join(f"not testable: n = {n}", note))
    mean, sd = d.mean(), d.std(ddof=1)
    if sd <= 1e-9 * abs(mean):  # equal differences up to rounding (0.9-0.8 vs 0.8-0.7)
        sd = 0.0
    se = math.sqrt(var_factor) * sd
    effect = cohens_dz(d, np.zeros_like(d)) if sd > 0 else (0.0 if mean == 0 else math.copysign(math.inf, mean))
    if sd == 0:
        if mean == 0:
            return _result(test, n, 0.0, 1.0, d, (0.0, 0.0), 0.0, _join("all differences are zero", note))
        return _result(test, n, math.copysign(math.inf, mean), 0.0, d, (mean, mean), effect,
                       _join("differences are constant (zero variance)", note))
    t = mean / se
    p = 2 * st.t.sf(abs(t), df=n - 1)
    half = st.t.ppf(1 - alpha / 2, df=n - 1) * se
    return _result(test, n, t, p, d, (mean - half, mean + half), effect, note)


def paired_t_test(a: Sequence[float], b: Sequence[float], alpha: float = 0.05) -> dict[str, Any]:
    """Paired t-test of ``a - b`` (two-sided), with Cohen's d_z and a (1 - alpha) CI of the mean difference.

    Equals :func:`scipy.stats.ttest_rel` where that is defined.

    Examples
    --------
    >>> r = paired_t_test([0.80, 0.82, 0.85], [0.78, 0.80, 0.80])
    >>> r["n"], round(r["statistic"], 3)
    (3, 3.0)
    """
    a, b, note = _clean_pairs(a, b)
    return _t_based("paired_t", a - b, 1.0 / max(len(a), 1), note, alpha)


def corrected_resampled_t_test(a: Sequence[float], b: Sequence[float], n_train: int, n_test: int,
                               alpha: float = 0.05) -> dict[str, Any]:
    """Nadeau-Bengio corrected resampled t-test of per-fold scores (two-sided).

    ``t = mean(d) / sqrt((1/k + n_test/n_train) * var(d))`` with ``k - 1`` degrees of freedom,
    where ``k`` is the number of folds, ``n_train`` the training images per fold and ``n_test``
    the images each score was measured on (Nadeau & Bengio 2003, Machine Learning 52:239).
    """
    a, b, note = _clean_pairs(a, b)
    if n_train <= 0 or n_test <= 0:
        raise ValueError(f"n_train, n_test: expected positive sizes, got {n_train}, {n_test}")
    k = max(len(a), 1)
    return _t_based("corrected_t", a - b, 1.0 / k + n_test / n_train, note, alpha)


def wilcoxon_min_p(n: int) -> float:
    """Smallest two-sided p-value the exact Wilcoxon signed-rank test can give with ``n`` pairs."""
    return min(1.0, 2.0 / 2 ** n) if n > 0 else 1.0


def wilcoxon_test(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Wilcoxon signed-rank test of ``a - b`` (two-sided, scipy's defaults; exact for small n).

    The effect size is the matched-pairs rank-biserial correlation ``(W+ - W-) / (W+ + W-)``.
    """
    a, b, note = _clean_pairs(a, b)
    d = a - b
    n = len(d)
    nz = d[d != 0]
    min_p = wilcoxon_min_p(len(nz))
    if n < 2:
        return _result("wilcoxon", n, math.nan, math.nan, d, note=_join(f"not testable: n = {n}", note))
    if len(nz) == 0:
        return _result("wilcoxon", n, 0.0, 1.0, d, (0.0, 0.0), 0.0, _join("all differences are zero", note), 1.0)
    res = st.wilcoxon(a, b)
    ranks = st.rankdata(np.abs(nz))
    w_plus, w_minus = ranks[nz > 0].sum(), ranks[nz < 0].sum()
    rbc = (w_plus - w_minus) / (w_plus + w_minus)
    extra = ""
    if len(nz) < n:
        extra = f"{n - len(nz)} zero difference(s) dropped (Wilcoxon's zero_method)"
    if min_p > 0.05:
        extra = _join(extra, f"with {len(nz)} non-zero pairs p cannot go below {min_p:.3g}")
    lo, hi = _hodges_lehmann_ci(nz)
    return _result("wilcoxon", n, float(res.statistic), float(res.pvalue), d, (lo, hi), rbc,
                   _join(extra, note), min_p)


def _hodges_lehmann_ci(d: np.ndarray) -> tuple[float, float]:
    """Range of the Walsh averages (a simple, honest interval for tiny n; NaN for n < 2)."""
    if len(d) < 2:
        return math.nan, math.nan
    walsh = [(d[i] + d[j]) / 2 for i in range(len(d)) for j in range(i, len(d))]
    return float(np.min(walsh)), float(np.max(walsh))


def shapiro_p(d: Sequence[float]) -> float:
    """Shapiro-Wilk p-value of the differences (NaN for n < 3 or constant differences)."""
    d = np.asarray(d, dtype=np.float64)
    d = d[np.isfinite(d)]
    if len(d) < 3 or np.ptp(d) == 0:
        return math.nan
    return float(st.shapiro(d).pvalue)


def mcnemar_test(correct_a: Sequence[bool], correct_b: Sequence[bool], exact: bool | None = None) -> dict[str, Any]:
    """McNemar's test on paired correct/incorrect outcomes of two models on the same images.

    With ``exact`` None, the exact binomial test is used when there are fewer than 25 discordant
    pairs, otherwise the chi-square statistic with continuity correction (as statsmodels'
    ``mcnemar``). The effect size is the difference in accuracy ``(b01 - b10) / n``.
    """
    ca = np.asarray(correct_a, dtype=bool)
    cb = np.asarray(correct_b, dtype=bool)
    if ca.shape != cb.shape:
        raise ValueError(f"correct_a, correct_b: lengths differ ({len(ca)} vs {len(cb)})")
    n = len(ca)
    b10 = int((ca & ~cb).sum())  # a right, b wrong
    b01 = int((~ca & cb).sum())
    disc = b10 + b01
    diff = (b10 - b01) / n if n else math.nan
    if disc == 0:
        return {**_result("mcnemar", n, 0.0, 1.0, note="no discordant pairs: the models agree on every image"),
                "effect_size": 0.0, "mean_diff": 0.0}
    if exact is None:
        exact = disc < 25
    if exact:
        p = st.binomtest(min(b10, b01), disc, 0.5).pvalue
        stat = float(min(b10, b01))
        test = "mcnemar_exact"
    else:
        stat = (abs(b10 - b01) - 1) ** 2 / disc
        p = st.chi2.sf(stat, df=1)
        test = "mcnemar_chi2"
    return {**_result(test, n, stat, min(1.0, float(p)), note=f"discordant pairs: a only {b10}, b only {b01}"),
            "effect_size": diff, "mean_diff": diff}


def _bootstrap_indices(n: int, n_boot: int, random_state: int) -> np.ndarray:
    """Indices ``(n_boot, n)`` of ``n_boot`` paired resamples of ``n`` items."""
    return np.random.default_rng(random_state).integers(0, n, (n_boot, n))


def _bootstrap_weights(n: int, n_boot: int, random_state: int) -> np.ndarray:
    """Count weights of ``n_boot`` paired resamples of ``n`` items; row 0 is the observed sample."""
    idx = _bootstrap_indices(n, n_boot, random_state)
    weights = np.zeros((n_boot + 1, n))
    np.add.at(weights, (np.repeat(np.arange(1, n_boot + 1), n), idx.ravel()), 1.0)
    weights[0] = 1.0
    return weights


def paired_bootstrap(statistic, *samples: Sequence[float], n_boot: int = 2000, alpha: float = 0.05,
                     random_state: int = 0) -> dict[str, Any]:
    """Paired (case) bootstrap of any statistic of equal-length samples.

    The same resampled indices are applied to every sample, so pairs stay together (Efron &
    Tibshirani 1993, ch. 6). It draws exactly the resamples :func:`paired_bootstrap_ci` draws
    for the same ``random_state``.

    Parameters
    ----------
    statistic : callable
        ``statistic(*resampled)``: receives, for each sample, an array of shape
        ``(n_boot + 1, n)`` of resampled values (row 0 is the observed sample) and returns
        ``n_boot + 1`` values (one per row).
    *samples : array-like of shape (n,)
        Paired observations.
    n_boot : int
        Number of resamples.
    alpha : float
        The percentile interval covers ``1 - alpha``.
    random_state : int
        Seed of the resampling.

    Returns
    -------
    dict
        ``observed``, ``distribution`` (``n_boot`` values), ``standard_error`` (ddof 1),
        ``ci_low``, ``ci_high`` (percentile interval).

    Examples
    --------
    >>> r = paired_bootstrap(lambda a, b: (a - b).mean(axis=1), [3, 4, 5, 6], [1, 2, 2, 3], n_boot=200)
    >>> r["observed"], r["ci_low"] <= r["observed"] <= r["ci_high"]
    (2.5, True)
    """
    arrays = [np.asarray(x) for x in samples]
    if not arrays or len({len(a) for a in arrays}) != 1 or len(arrays[0]) == 0:
        raise ValueError(f"samples: expected non-empty arrays of equal length, got lengths "
                         f"{[len(a) for a in arrays]}")
    n = len(arrays[0])
    idx = np.vstack([np.arange(n)[None], _bootstrap_indices(n, n_boot, random_state)])
    values = np.asarray(statistic(*[a[idx] for a in arrays]), dtype=np.float64)
    dist = values[1:]
    lo, hi = np.quantile(dist, [alpha / 2, 1 - alpha / 2])
    return {"observed": float(values[0]), "distribution": dist, "standard_error": float(dist.std(ddof=1)),
            "ci_low": float(lo), "ci_high": float(hi)}


def paired_bootstrap_ci(y_true: Sequence[int], pred_a: Sequence[int], pred_b: Sequence[int],
                        metric: str = "accuracy", n_boot: int = 2000, alpha: float = 0.05,
                        random_state: int = 0) -> dict[str, Any]:
    """Percentile bootstrap CI of ``metric(a) - metric(b)`` resampling test images in pairs.

    ``metric``: 'accuracy' or 'f1_macro' (macro over the classes present in ``y_true``, 0 for a
    class never predicted nor present in a resample, as scikit-learn's ``zero_division=0``). The
    p-value is the two-sided bootstrap p (twice the share of resamples on the other side of 0).
    All resamples are evaluated at once from per-image count weights.
    """
    if metric not in ("accuracy", "f1_macro"):
        raise ValueError(f"metric: unknown value {metric!r}; accepted values: accuracy, f1_macro")
    y = np.asarray(y_true)
    pa, pb = np.asarray(pred_a), np.asarray(pred_b)
    n = len(y)
    if n == 0:
        return _result(f"bootstrap_{metric}", 0, math.nan, math.nan, note="not testable: n = 0")
    weights = _bootstrap_weights(n, n_boot, random_state)  # row 0: the observed sample

    def scores(p: np.ndarray) -> np.ndarray:
        if metric == "accuracy":
            return weights @ (p == y).astype(float) / n
        labels = np.unique(y)
        onehot_y = (y[:, None] == labels[None]).astype(float)
        onehot_p = (p[:, None] == labels[None]).astype(float)
        tp = weights @ (onehot_y * onehot_p)
        denom = weights @ onehot_y + weights @ onehot_p
        f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
        return f1.mean(axis=1)

    all_diffs = scores(pa) - scores(pb)
    observed, diffs = float(all_diffs[0]), all_diffs[1:]
    lo, hi = np.quantile(diffs, [alpha / 2, 1 - alpha / 2])
    if np.all(diffs == 0):
        p = 1.0
    else:
        p = min(1.0, 2 * min((diffs <= 0).mean(), (diffs >= 0).mean()))
    return _result(f"bootstrap_{metric}", n, observed, p, np.array([observed]), (lo, hi), observed,
                   note=f"{n_boot} paired bootstrap resamples")


def adjust_pvalues(p: Sequence[float], method: str = "holm") -> np.ndarray:
    """Holm (step-down) or Bonferroni adjusted p-values; NaNs stay NaN and are not counted.

    Examples
    --------
    >>> adjust_pvalues([0.01, 0.04, 0.03], "holm").round(3).tolist()
    [0.03, 0.06, 0.06]
    """
    p = np.asarray(p, dtype=np.float64)
    out = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    m = int(ok.sum())
    if m == 0:
        return out
    pv = p[ok]
    if method == "bonferroni":
        out[ok] = np.minimum(1.0, pv * m)
        return out
    if method != "holm":
        raise ValueError(f"method: unknown correction {method!r}; accepted values: holm, bonferroni")
    order = np.argsort(pv, kind="stable")
    adj = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, (m - rank) * pv[i])
        adj[i] = min(1.0, running)
    out[ok] = adj
    return out


def compare_models(metrics: pd.DataFrame, metric_names: Sequence[str] = ("accuracy", "f1_macro"),
                   correction: str = "holm") -> pd.DataFrame:
    """Paired tests between every pair of models over the same folds, per metric.

    Parameters
    ----------
    metrics : pandas.DataFrame
        ``metrics.csv``: one row per model and fold (``model``, ``fold``, the metrics, and
        ``n_train``/``n_test`` for the corrected t-test).
    metric_names : sequence of str
    correction : {'holm', 'bonferroni'}
        Applied across the model pairs, per metric and test.

    Returns
    -------
    pandas.DataFrame
        Rows with the columns of :data:`COLUMNS`, ``comparison`` = 'models'.
    """
    rows = []
    models = list(dict.fromkeys(metrics["model"]))
    for metric in metric_names:
        if metric not in metrics.columns:
            raise ValueError(f"metric_names: {metric!r} is not a column of metrics.csv")
        wide = metrics.pivot_table(index="fold", columns="model", values=metric, aggfunc="mean")
        for a, b in itertools.combinations(models, 2):
            if a not in wide or b not in wide:
                continue
            va, vb = wide[a].to_numpy(), wide[b].to_numpy()
            base = {"comparison": "models", "group": "all", "a": a, "b": b, "metric": metric,
                    "mean_a": float(np.nanmean(va)) if np.isfinite(va).any() else math.nan,
                    "mean_b": float(np.nanmean(vb)) if np.isfinite(vb).any() else math.nan,
                    "normality_p": shapiro_p(va - vb)}
            tests = [paired_t_test(va, vb), wilcoxon_test(va, vb)]
            if {"n_train", "n_test"} <= set(metrics.columns):
                sub = metrics[metrics["model"].isin([a, b])]
                tests.insert(1, corrected_resampled_t_test(va, vb, int(sub["n_train"].mean()),
                                                           int(sub["n_test"].mean())))
            for r in tests:
                rows.append({**base, **r})
    return _finish(rows, correction)


def compare_predictions(predictions: dict[tuple[str, int], pd.DataFrame], correction: str = "holm",
                        n_boot: int = 1000, random_state: int = 0) -> pd.DataFrame:
    """McNemar and paired bootstrap tests between models on the same test images, per fold.

    Parameters
    ----------
    predictions : dict
        ``(model, fold)`` -> predictions frame (``path``, ``true``, ``pred``).

    Returns
    -------
    pandas.DataFrame
        ``comparison`` = 'models', ``group`` = 'fold<k>', tests ``mcnemar_*`` (metric
        'accuracy') and ``bootstrap_accuracy`` / ``bootstrap_f1_macro``.
    """
    rows = []
    folds = sorted({f for _, f in predictions})
    models = list(dict.fromkeys(m for m, _ in predictions))
    for fold in folds:
        for a, b in itertools.combinations(models, 2):
            if (a, fold) not in predictions or (b, fold) not in predictions:
                continue
            pa = predictions[(a, fold)].set_index("path")
            pb = predictions[(b, fold)].set_index("path").reindex(pa.index)
            if pb["pred"].isna().any():
                raise ValueError(f"predictions of {a} and {b} (fold {fold}) are not on the same test images")
            code = {c: i for i, c in enumerate(sorted(set(pa["true"]) | set(pa["pred"]) | set(pb["pred"])))}
            y = pa["true"].map(code).to_numpy()
            ya, yb = pa["pred"].map(code).to_numpy(), pb["pred"].map(code).to_numpy()
            base = {"comparison": "models", "group": f"fold{fold}", "a": a, "b": b,
                    "normality_p": math.nan}
            ca, cb = ya == y, yb == y
            rows.append({**base, "metric": "accuracy", "mean_a": ca.mean(), "mean_b": cb.mean(),
                         **mcnemar_test(ca, cb)})
            for metric in ("accuracy", "f1_macro"):
                r = paired_bootstrap_ci(y, ya, yb, metric, n_boot=n_boot, random_state=random_state)
                rows.append({**base, "metric": metric, "mean_a": math.nan, "mean_b": math.nan, **r})
    return _finish(rows, correction)


def compare_methods(per_image: pd.DataFrame, metric_names: Sequence[str], correction: str = "holm",
                    by_class: bool = True) -> pd.DataFrame:
    """Paired t-test and Wilcoxon between every pair of CAM methods on the same images.

    Pairs are matched on (``model``, ``fold``, ``layer``, ``path``); each metric is tested over
    all images (``group`` 'all') and, with ``by_class``, within each true class.
    """
    rows = []
    keys = ["model", "fold", "layer", "path"]
    methods = list(dict.fromkeys(per_image["method"]))
    groups: list[tuple[str, pd.DataFrame]] = [("all", per_image)]
    if by_class:
        groups += [(str(c), part) for c, part in per_image.groupby("class", sort=True)]
    for metric in metric_names:
        if metric not in per_image.columns:
            continue
        for group, part in groups:
            wide = part.pivot_table(index=keys, columns="method", values=metric, aggfunc="mean", dropna=False)
            for a, b in itertools.combinations(methods, 2):
                if a not in wide or b not in wide:
                    continue
                va, vb = wide[a].to_numpy(), wide[b].to_numpy()
                if not (np.isfinite(va) & np.isfinite(vb)).any():
                    continue  # metric not computed for these images (e.g. no mask)
                base = {"comparison": "cams", "group": group, "a": a, "b": b, "metric": metric,
                        "mean_a": float(np.nanmean(va)), "mean_b": float(np.nanmean(vb)),
                        "normality_p": shapiro_p(va - vb)}
                for r in (paired_t_test(va, vb), wilcoxon_test(va, vb)):
                    rows.append({**base, **r})
    return _finish(rows, correction)


def _finish(rows: list[dict[str, Any]], correction: str) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=COLUMNS)
    df["correction"] = correction
    df["p_adjusted"] = np.nan
    for _, idx in df.groupby(["comparison", "group", "metric", "test"], sort=False).groups.items():
        df.loc[idx, "p_adjusted"] = adjust_pvalues(df.loc[idx, "p_value"].to_numpy(), correction)
    return df[COLUMNS + [c for c in df.columns if c not in COLUMNS]]


def significance_mark(p: float) -> str:
    """'***' (p < 0.001), '**' (< 0.01), '*' (< 0.05), 'ns', or 'n/a' for NaN."""
    if not np.isfinite(p):
        return "n/a"
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else "ns"


def pair_p_adjusted(tests: pd.DataFrame, comparison: str, group: str, metric: str, test: str,
                    a: str, b: str) -> float | None:
    """The adjusted p of ``test`` between ``a`` and ``b`` (either order) in a paired-tests table,
    or None when the table has no such row."""
    if tests.empty:
        return None
    sel = tests[(tests["comparison"] == comparison) & (tests["group"].astype(str) == group)
                & (tests["metric"] == metric) & (tests["test"] == test)
                & (((tests["a"] == a) & (tests["b"] == b)) | ((tests["a"] == b) & (tests["b"] == a)))]
    return float(sel["p_adjusted"].iloc[0]) if len(sel) else None


def summary_table(metrics: pd.DataFrame, tests: pd.DataFrame, metric_names: Sequence[str] = ("accuracy", "f1_macro"),
                  test: str = "corrected_t", reference: str | None = None) -> pd.DataFrame:
    """Paper-style table: mean ± std over folds per model and metric, marked against ``reference``.

    The mark after each value is the Holm-adjusted significance of ``test`` between that model
    and ``reference`` (default: the model with the best mean of the first metric).
    """
    grouped = metrics.groupby("model", sort=False)
    means = grouped[list(metric_names)].mean()
    stds = grouped[list(metric_names)].std(ddof=1)
    reference = reference or str(means[metric_names[0]].idxmax())
    table = pd.DataFrame(index=means.index)
    for metric in metric_names:
        cells = []
        for model in means.index:
            cell = f"{means.loc[model, metric]:.4f} ± {stds.loc[model, metric]:.4f}" if np.isfinite(
                stds.loc[model, metric]) else f"{means.loc[model, metric]:.4f}"
            if model == reference:
                cell += " (ref)"
            else:
                p = pair_p_adjusted(tests, "models", "all", metric, test, model, reference)
                if p is not None:
                    cell += " " + significance_mark(p)
            cells.append(cell)
        table[metric] = cells
    table.index.name = "model"
    return table
