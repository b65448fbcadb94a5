"""Paired tests between models (same folds, same test images) and between CAM methods (same images).

Every test returns a plain dict with the same keys (``test``, ``n``, ``statistic``, ``p_value``,
``effect_size``, ``ci_low``, ``ci_high``, ``mean_diff``, ``note``), so results stack into the
``stats/paired_tests.csv`` table. Degenerate input gets a stated answer, never a silent NaN:

* fewer than two pairs: ``p_value`` NaN with ``note`` "not testable: n = 1";
* identical results (all differences zero): ``p_value`` 1, statistic 0 (scipy's ``ttest_rel``
  would return NaN here);
* equal, non-zero differences (zero variance, e.g. three folds each 0.01 apart): the t-tests are
  "not testable: zero variance", ``p_value`` NaN, never 0: three folds that agree are not infinite
  evidence (the Wilcoxon row beside them gives the exact sign-flip p, 0.25 for three folds);
* NaN values: the pairs with a NaN are left out and the note says how many.

No p-value is ever 0, and no significance mark comes from a NaN one (:func:`significance_mark`
says 'n/a').

What the tests assume, in short:

* paired t-test (as in the study): the differences are roughly normal and independent. On
  cross-validation folds they are not independent (the training sets overlap), so it is
  anti-conservative;
* Nadeau-Bengio corrected resampled t-test: inflates the variance by ``1/k + n_val/n_train``
  (the held-out and training sizes of each fold) to account for that overlap (Nadeau & Bengio
  2003; Bouckaert & Frank 2004). Every fold model is scored on the *same* test split, so these
  fold-level tests are conditional on that test set: they say nothing about test-set sampling;
* Wilcoxon signed-rank: no normality, only symmetry of the differences; with ``n`` pairs the
  exact two-sided p-value cannot go below ``2 / 2**n`` (0.25 for n = 3);
* McNemar: paired correct/incorrect outcomes of two models on the same test images (exact
  binomial when fewer than 25 discordant pairs);
* image-level randomisation test (``randomisation_images``, the summary tables' marks): each test
  image's correctness averaged over the fold models; the p-value swaps the two models'
  predictions per image under the null hypothesis (exact, or Monte Carlo), and the interval
  resamples the images (bootstrap). The unit that carries the evidence is the test image, and the
  fold models enter through their average (:func:`image_paired_test`);
* Holm (default) or Bonferroni correction within each family of tests (``holm_family``): one
  comparison (models or CAM methods), one group (all images, one fold or one class), one metric
  and one test family (both McNemar variants form one family), across every pair compared.
"""
from __future__ import annotations

import itertools
import math
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats as st
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import proportion_confint

COLUMNS = ["comparison", "cam_model", "cam_layer", "group", "a", "b", "metric", "test", "n", "statistic", "p_value",
           "p_adjusted", "correction", "holm_family", "effect_size", "ci_low", "ci_high", "ci_level", "mean_a",
           "mean_b", "mean_diff", "normality_p", "min_p_possible", "note"]

#: Tests whose rows are corrected together as one family (a test not listed is its own family).
TEST_FAMILIES = {"mcnemar_exact": "mcnemar", "mcnemar_chi2": "mcnemar"}


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
            note: str = "", min_p: float = 0.0, ci_level: float = math.nan) -> dict[str, Any]:
    return {"test": test, "n": int(n), "statistic": float(statistic), "p_value": float(p),
            "effect_size": float(effect), "ci_low": float(ci[0]), "ci_high": float(ci[1]),
            "ci_level": float(ci_level) if np.isfinite(ci[0]) else math.nan,
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
    effect = cohens_dz(d, np.zeros_like(d)) if sd > 0 else 0.0
    level = 1 - alpha
    if sd == 0:
        if mean == 0:
            return _result(test, n, 0.0, 1.0, d, (0.0, 0.0), 0.0, _join("all differences are zero", note),
                           ci_level=level)
        # n equal differences are not infinite evidence: the t statistic is undefined, not infinite
        return _result(test, n, math.nan, math.nan, d, note=_join(
            f"not testable: zero variance (all {n} differences equal {mean:.6g}; the exact sign-flip p of "
            f"{n} equal signs is {wilcoxon_min_p(n):.3g})", note))
    t = mean / se
    p = 2 * st.t.sf(abs(t), df=n - 1)
    half = st.t.ppf(1 - alpha / 2, df=n - 1) * se
    return _result(test, n, t, p, d, (mean - half, mean + half), effect, note, ci_level=level)


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


def corrected_resampled_t_test(a: Sequence[float], b: Sequence[float], n_train: float, n_test: float,
                               alpha: float = 0.05) -> dict[str, Any]:
    """Nadeau-Bengio corrected resampled t-test of per-resample scores (two-sided).

    ``t = mean(d) / sqrt((1/k + n_test/n_train) * var(d))`` with ``k - 1`` degrees of freedom,
    where ``k`` is the number of resamples, ``n_train`` the training size of each and ``n_test``
    its held-out size (Nadeau & Bengio 2003, Machine Learning 52:239). For k-fold
    cross-validation the held-out part is the validation fold, so ``n_test`` is ``n_val``
    (Bouckaert & Frank 2004): the factor is about ``1/k + 1/(k - 1)``.

    Examples
    --------
    >>> r = corrected_resampled_t_test([0.86, 0.84, 0.88], [0.83, 0.84, 0.85], n_train=200, n_test=100)
    >>> r["n"], round(r["statistic"], 3)
    (3, 1.265)
    """
    a, b, note = _clean_pairs(a, b)
    if not (n_train > 0 and n_test > 0):
        raise ValueError(f"n_train, n_test: expected positive sizes, got {n_train}, {n_test}")
    k = max(len(a), 1)
    factor = 1.0 / k + n_test / n_train
    return _t_based("corrected_t", a - b, factor, _join(note, f"variance factor 1/k + n_val/n_train = {factor:.6g}"),
                    alpha)


def wilcoxon_min_p(n: int) -> float:
    """Smallest two-sided p-value the exact Wilcoxon signed-rank test can give with ``n`` pairs."""
    return min(1.0, 2.0 / 2 ** n) if n > 0 else 1.0


def wilcoxon_test(a: Sequence[float], b: Sequence[float], alpha: float = 0.05) -> dict[str, Any]:
    """Wilcoxon signed-rank test of ``a - b`` (two-sided; zero differences dropped, as scipy's default).

    The p-value is exact (:func:`signed_rank_sign_flip_p`, every sign flip, ties and all) for up to
    :data:`SIGN_FLIP_MAX_N` = 13 *non-zero* differences, and scipy's ``wilcoxon`` above that. scipy
    chooses its method on the number of pairs with the zeros counted, so the two differ where zeros
    push the count past 13: 14 pairs of which one is zero get the exact 0.0171 here and scipy's
    normal approximation 0.0192 (see the example).

    The effect size is the matched-pairs rank-biserial correlation ``(W+ - W-) / (W+ + W-)``; the
    interval is Hollander & Wolfe's distribution-free interval of the pseudo-median of the differences
    (the median of the Walsh averages, not the mean that ``difference`` reports; :func:`signed_rank_ci`), with
    the level it actually achieves in ``ci_level``.

    Examples
    --------
    >>> r = wilcoxon_test([0.9, 0.8, 0.85], [0.7, 0.6, 0.65])
    >>> r["p_value"], r["ci_level"]
    (0.25, 0.75)
    >>> d = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, -12, 13]
    >>> round(wilcoxon_test(d, [0] * 14)["p_value"], 4), round(float(st.wilcoxon(d).pvalue), 4)
    (0.0171, 0.0192)
    """
    a, b, note = _clean_pairs(a, b)
    d = a - b
    n = len(d)
    nz = d[d != 0]
    min_p = wilcoxon_min_p(len(nz))
    if n < 2:
        return _result("wilcoxon", n, math.nan, math.nan, d, note=_join(f"not testable: n = {n}", note))
    if len(nz) == 0:
        return _result("wilcoxon", n, 0.0, 1.0, d, (0.0, 0.0), 0.0, _join("all differences are zero", note), 1.0,
                       ci_level=signed_rank_ci(d, alpha)[2])
    ranks = st.rankdata(np.abs(nz))
    w_plus, w_minus = ranks[nz > 0].sum(), ranks[nz < 0].sum()
    if len(nz) <= SIGN_FLIP_MAX_N:
        p = signed_rank_sign_flip_p(nz)
    else:
        p = float(st.wilcoxon(a, b).pvalue)
    rbc = (w_plus - w_minus) / (w_plus + w_minus)
    extra = ""
    if len(nz) < n:
        extra = f"{n - len(nz)} zero difference(s) dropped (Wilcoxon's zero_method)"
    if min_p > 0.05:
        extra = _join(extra, f"with {len(nz)} non-zero pairs p cannot go below {min_p:.3g}")
    lo, hi, level = signed_rank_ci(d, alpha)
    if level < 1 - alpha - 1e-12:
        extra = _join(extra, f"with {n} pairs the interval covers {level:.1%}, not {1 - alpha:.0%}")
    return _result("wilcoxon", n, float(min(w_plus, w_minus)), p, d, (lo, hi), rbc,
                   _join(extra, note), min_p, ci_level=level)


#: Up to this many non-zero differences the signed-rank p is the exact sign-flip p (scipy's default
#: threshold, which scipy applies to the number of pairs with the zeros counted).
SIGN_FLIP_MAX_N = 13


def signed_rank_sign_flip_p(d: Sequence[float]) -> float:
    """Exact two-sided p of the signed-rank statistic over all ``2**n`` sign flips, ties and all.

    The null distribution of ``T+`` with the observed (mid)ranks, by dynamic programming over
    the doubled ranks (integers); ``p = min(1, 2 min(P(T+ <= t), P(T+ >= t)))``. It is what scipy's
    ``wilcoxon`` returns for up to 13 pairs when none of them is zero (scipy counts the zeros
    when it chooses its method, then drops them), where scipy enumerates the permutations one by
    one (0.5 s per call with ties).

    Examples
    --------
    >>> signed_rank_sign_flip_p([1.0, 2.0, 3.0])
    0.25
    """
    d = np.asarray(d, dtype=np.float64)
    d = d[np.isfinite(d) & (d != 0)]
    if len(d) == 0:
        return 1.0
    doubled = np.round(2 * st.rankdata(np.abs(d))).astype(np.int64)  # midranks are multiples of 1/2
    pmf = _sign_flip_pmf(doubled)
    t = int(doubled[d > 0].sum())
    cdf = np.cumsum(pmf)
    return float(min(1.0, 2 * min(cdf[t], 1.0 - (cdf[t - 1] if t > 0 else 0.0))))


#: Above this many pairs the signed-rank interval uses the normal approximation of its null.
SIGNED_RANK_EXACT_MAX_N = 1000


def signed_rank_null_distribution(n: int) -> np.ndarray:
    """Exact null distribution of the Wilcoxon signed-rank statistic ``T+`` for ``n`` untied pairs.

    ``T+`` is the sum of the ranks of the positive differences; under the null each of the
    ``2**n`` sign patterns is equally likely. Returns ``P(T+ = t)`` for ``t = 0 .. n(n+1)/2``.

    Examples
    --------
    >>> (signed_rank_null_distribution(3) * 8).round().astype(int).tolist()
    [1, 1, 1, 2, 1, 1, 1]
    """
    if n < 0:
        raise ValueError(f"n: expected a non-negative number of pairs, got {n}")
    return _sign_flip_pmf(np.arange(1, n + 1))


def _sign_flip_pmf(ranks: np.ndarray) -> np.ndarray:
    """``P(sum of the ranks given a + sign = t)``, ``t = 0 .. sum(ranks)``, each sign + with probability
    1/2 independently (integer ranks; vectorised over every partial sum, one rank at a time)."""
    pmf = np.zeros(int(np.sum(ranks)) + 1)
    pmf[0] = 1.0
    for r in ranks:
        shifted = np.zeros_like(pmf)
        shifted[r:] = pmf[:len(pmf) - r]
        pmf = 0.5 * (pmf + shifted)
    return pmf


def signed_rank_ci(d: Sequence[float], alpha: float = 0.05) -> tuple[float, float, float]:
    """Distribution-free confidence interval of the median difference (Hollander & Wolfe 1973, 3.3).

    With the ``M = n(n+1)/2`` Walsh averages ``(d_i + d_j) / 2`` (``i <= j``) sorted,
    ``W(1) <= ... <= W(M)``, the interval is ``[W(k), W(M + 1 - k)]`` with the largest ``k >= 1``
    such that ``P(T+ <= k - 1) <= alpha / 2`` under the exact null distribution of the signed-rank
    statistic; its coverage is ``1 - 2 P(T+ <= k - 1)``. With few pairs the nominal level is
    unreachable (``k = 1``: the whole range of the Walsh averages, coverage ``1 - 2**(1 - n)``, 75 %
    at ``n = 3``); the level achieved is returned with the interval. Above
    :data:`SIGNED_RANK_EXACT_MAX_N` pairs ``k`` comes from the normal approximation.

    Returns
    -------
    (low, high, level) : tuple of float
        NaN for fewer than two finite differences.

    Examples
    --------
    >>> lo, hi, level = signed_rank_ci([0.2, 0.2, 0.2])
    >>> float(lo), float(hi), float(level)
    (0.2, 0.2, 0.75)
    """
    d = np.asarray(d, dtype=np.float64)
    d = d[np.isfinite(d)]
    n = len(d)
    if n < 2:
        return math.nan, math.nan, math.nan
    i, j = np.triu_indices(n)
    walsh = np.sort((d[i] + d[j]) / 2)
    m = len(walsh)
    if n <= SIGNED_RANK_EXACT_MAX_N:
        cdf = np.cumsum(signed_rank_null_distribution(n))
        # cdf[k - 1] = P(T+ <= k - 1); k = number of values of k - 1 in 0.. with 2 * cdf <= alpha
        k = max(1, int(np.searchsorted(cdf, alpha / 2, side="right")))
        level = 1.0 - 2.0 * cdf[k - 1]
    else:
        mu, sigma = m / 2, math.sqrt(n * (n + 1) * (2 * n + 1) / 24)
        k = max(1, int(math.floor(mu - st.norm.ppf(1 - alpha / 2) * sigma + 0.5)))
        level = 1.0 - 2.0 * float(st.norm.cdf((k - 1 + 0.5 - mu) / sigma))
    return float(walsh[k - 1]), float(walsh[m - k]), float(level)


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
    pairs, otherwise the chi-square statistic with continuity correction, both computed by
    statsmodels' ``mcnemar``; two models that agree on every image (no discordant pair, where
    statsmodels divides by zero) get p = 1. With ``b10`` the images only ``a`` gets right and ``b01`` those only ``b``
    gets right, the effect size is the difference in accuracy ``acc(a) - acc(b) = (b10 - b01) / n``.

    Examples
    --------
    >>> r = mcnemar_test([True, True, True, False], [False, True, True, False])
    >>> r["test"], r["effect_size"]
    ('mcnemar_exact', 0.25)
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
    both, neither = int((ca & cb).sum()), int((~ca & ~cb).sum())
    res = mcnemar([[both, b10], [b01, neither]], exact=bool(exact), correction=True)
    test = "mcnemar_exact" if exact else "mcnemar_chi2"
    return {**_result(test, n, float(res.statistic), min(1.0, float(res.pvalue)),
                      note=f"discordant pairs: a only {b10}, b only {b01}"),
            "effect_size": diff, "mean_diff": diff}


def _bootstrap_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    """Indices ``(n_boot, n)`` of ``n_boot`` paired resamples of ``n`` items."""
    return np.random.default_rng(seed).integers(0, n, (n_boot, n))


def _weighted_scores(weights: np.ndarray, y: np.ndarray, pred: np.ndarray, metric: str) -> np.ndarray:
    """``metric`` of ``pred`` against ``y`` on each resample given by a row of count ``weights``.

    'accuracy', or 'f1_macro' over the classes present in the observed ``y`` (the label set of
    :func:`~xai_helpers.evaluation.classification_metrics`; 0 for such a class neither drawn nor
    predicted in a resample, as scikit-learn's ``zero_division=0``).
    """
    if metric == "accuracy":
        return weights @ (pred == y).astype(float) / len(y)
    labels = np.unique(y)
    onehot_y = (y[:, None] == labels[None]).astype(float)
    onehot_p = (pred[:, None] == labels[None]).astype(float)
    tp = weights @ (onehot_y * onehot_p)
    denom = weights @ onehot_y + weights @ onehot_p
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return f1.mean(axis=1)


def _bootstrap_weights(n: int, n_boot: int, seed: int) -> np.ndarray:
    """Count weights of ``n_boot`` paired resamples of ``n`` items; row 0 is the observed sample."""
    idx = _bootstrap_indices(n, n_boot, seed)
    weights = np.zeros((n_boot + 1, n))
    np.add.at(weights, (np.repeat(np.arange(1, n_boot + 1), n), idx.ravel()), 1.0)
    weights[0] = 1.0
    return weights


def paired_bootstrap(statistic, *samples: Sequence[float], n_boot: int = 2000, alpha: float = 0.05,
                     seed: int = 0) -> dict[str, Any]:
    """Paired (case) bootstrap of any statistic of equal-length samples.

    The same resampled indices are applied to every sample, so pairs stay together (Efron &
    Tibshirani 1993, ch. 6).

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
    seed : int
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
    idx = np.vstack([np.arange(n)[None], _bootstrap_indices(n, n_boot, seed)])
    values = np.asarray(statistic(*[a[idx] for a in arrays]), dtype=np.float64)
    dist = values[1:]
    lo, hi = np.quantile(dist, [alpha / 2, 1 - alpha / 2])
    return {"observed": float(values[0]), "distribution": dist, "standard_error": float(dist.std(ddof=1)),
            "ci_low": float(lo), "ci_high": float(hi)}


#: Up to this many images on which two models' predictions differ, the randomisation test of a
#: metric that is not a mean over images (macro-F1) enumerates every swap (2**16 patterns).
RANDOMISATION_EXACT_MAX_N = 16

#: Above this size (differing images x the largest scaled difference) the randomisation test of
#: accuracy draws swaps at random instead of computing their exact distribution.
RANDOMISATION_EXACT_MAX_WORK = 200_000_000


def image_randomisation_p(y_true: Sequence[int], preds_a: np.ndarray, preds_b: np.ndarray,
                          metric: str = "accuracy", n_perm: int = 49999, seed: int = 0) -> dict[str, Any]:
    """Two-sided p of a paired randomisation (sign-flip) test over images: are ``a`` and ``b`` exchangeable?

    Under the null hypothesis the two models' predictions on each test image could as well have
    been the other way round, so each image's predictions are swapped between ``a`` and ``b`` (all
    fold models at once, fold ``j`` of ``a`` with fold ``j`` of ``b``) with probability 1/2, and the
    statistic, the fold-averaged ``metric`` of ``a`` minus that of ``b``, is recomputed (Good 2005,
    *Permutation, Parametric and Bootstrap Tests of Hypotheses*, ch. 3; the paired randomisation
    test of two classifiers, Dietterich 1998 / Smucker et al. 2007). Only images on which the
    predictions differ can change anything.

    * accuracy: the statistic is a mean of per-image differences ``d_i`` (share of ``a``'s folds
      right minus share of ``b``'s), so its null distribution is that of ``sum(+-d_i)``, computed
      exactly on the integer lattice of the ``d_i`` (any number of images). With one fold model each
      it is the exact sign test of the discordant images, i.e. the exact McNemar p;
    * macro-F1 (over the classes present in ``y_true``): every swap pattern when at most
      :data:`RANDOMISATION_EXACT_MAX_N` images differ, else ``n_perm`` random patterns with
      ``p = (1 + #) / (n_perm + 1)`` (never 0; Phipson & Smyth 2010).

    ``#`` counts the patterns whose statistic is at least as far from 0 as the observed one.

    Parameters
    ----------
    y_true : (n,) int array
    preds_a, preds_b : (k, n) int arrays
        Predicted class of each fold model (rows) on each test image (columns); macro-F1 needs the
        same number of fold models on both sides.
    metric : {'accuracy', 'f1_macro'}
    n_perm : int
        Random swap patterns when the test is not exact.
    seed : int

    Returns
    -------
    dict
        ``p_value``, ``exact`` (bool), ``n_differing`` (images whose predictions differ), ``method``
        (a phrase for the notes).

    Examples
    --------
    Five images, all won by ``a``: the exact two-sided sign-test p, 2 / 2**5.

    >>> y = np.zeros(100, int); a = np.zeros((1, 100), int); b = a.copy(); b[0, :5] = 1
    >>> image_randomisation_p(y, a, b)["p_value"]
    0.0625
    """
    if metric not in ("accuracy", "f1_macro"):
        raise ValueError(f"metric: unknown value {metric!r}; accepted values: accuracy, f1_macro")
    y = np.asarray(y_true)
    pa, pb = np.atleast_2d(np.asarray(preds_a)), np.atleast_2d(np.asarray(preds_b))
    if metric == "accuracy":
        ka, kb = len(pa), len(pb)
        # d_i * ka * kb: integers, so the distribution of sum(+-d_i) is exact on that lattice
        scaled = (pa == y).sum(axis=0) * kb - (pb == y).sum(axis=0) * ka
        s = np.abs(scaled[scaled != 0]).astype(np.int64)
        m = len(s)
        if m == 0:
            return {"p_value": 1.0, "exact": True, "n_differing": 0, "method": "no image differs"}
        total, observed = int(s.sum()), abs(int(scaled.sum()))
        if m * total <= RANDOMISATION_EXACT_MAX_WORK:
            pmf = _sign_flip_pmf(s)  # P(sum of the |d_i| given a + sign = t)
            t = np.arange(total + 1)
            p = float(pmf[np.abs(2 * t - total) >= observed].sum())
            return {"p_value": min(1.0, p), "exact": True, "n_differing": m,
                    "method": f"exact over the 2^{m} swaps of the {m} differing images"}
        rng = np.random.default_rng(seed)
        far = 0
        for start in range(0, n_perm, 2000):
            signs = rng.integers(0, 2, (min(2000, n_perm - start), m)) * 2 - 1
            far += int((np.abs(signs @ s) >= observed).sum())
        return {"p_value": (1 + far) / (n_perm + 1), "exact": False, "n_differing": m,
                "method": f"{n_perm} random swaps of the {m} differing images"}
    if pa.shape != pb.shape:
        raise ValueError(f"preds_a, preds_b: macro-F1's randomisation swaps fold j of a with fold j of b and needs "
                         f"the same fold models on both sides, got {pa.shape} and {pb.shape}")
    differing = np.flatnonzero((pa != pb).any(axis=0))
    m = len(differing)
    if m == 0:
        return {"p_value": 1.0, "exact": True, "n_differing": 0, "method": "no image differs"}
    labels = np.unique(y)
    truth = (y[:, None] == labels[None]).astype(np.float64)            # (n, C)
    support = truth.sum(axis=0)                                         # > 0: classes present in y

    def counts(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:        # per fold: tp (k, n, C), predicted
        onehot = (p[:, :, None] == labels[None, None]).astype(np.float64)
        return onehot * truth[None], onehot

    tp_a, pp_a = counts(pa)
    tp_b, pp_b = counts(pb)
    base = [tp_a.sum(axis=1), pp_a.sum(axis=1), tp_b.sum(axis=1), pp_b.sum(axis=1)]   # (k, C) each
    delta_tp = (tp_b - tp_a)[:, differing]                              # (k, m, C): a's change when swapped
    delta_pp = (pp_b - pp_a)[:, differing]

    def statistic(swaps: np.ndarray) -> np.ndarray:                     # swaps: (B, m) of 0/1
        tpa = base[0][None] + np.einsum("bm,kmc->bkc", swaps, delta_tp)
        ppa = base[1][None] + np.einsum("bm,kmc->bkc", swaps, delta_pp)
        tpb = base[2][None] - np.einsum("bm,kmc->bkc", swaps, delta_tp)
        ppb = base[3][None] - np.einsum("bm,kmc->bkc", swaps, delta_pp)
        f1a = (2 * tpa / (support + ppa)).mean(axis=(1, 2))
        f1b = (2 * tpb / (support + ppb)).mean(axis=(1, 2))
        return f1a - f1b

    observed = abs(float(statistic(np.zeros((1, m)))[0]))
    tolerance = 1e-12 * max(1.0, observed)
    if m <= RANDOMISATION_EXACT_MAX_N:
        patterns = ((np.arange(2 ** m)[:, None] >> np.arange(m)[None]) & 1).astype(np.float64)
        far = sum(int((np.abs(statistic(patterns[i:i + 4096])) >= observed - tolerance).sum())
                  for i in range(0, len(patterns), 4096))
        return {"p_value": far / 2 ** m, "exact": True, "n_differing": m,
                "method": f"exact over the 2^{m} swaps of the {m} differing images"}
    rng = np.random.default_rng(seed)
    far = 0
    for start in range(0, n_perm, 2000):
        swaps = rng.integers(0, 2, (min(2000, n_perm - start), m)).astype(np.float64)
        far += int((np.abs(statistic(swaps)) >= observed - tolerance).sum())
    return {"p_value": (1 + far) / (n_perm + 1), "exact": False, "n_differing": m,
            "method": f"{n_perm} random swaps of the {m} differing images"}


#: The test behind the summary tables' marks: p from :func:`image_randomisation_p`, interval from the
#: bootstrap over images (:func:`image_paired_test`).
IMAGE_TEST = "randomisation_images"


def image_paired_test(y_true: Sequence[int], preds_a: np.ndarray, preds_b: np.ndarray,
                      metric: str = "accuracy", n_boot: int = 49999, n_perm: int = 49999, alpha: float = 0.05,
                      seed: int = 0, chunk: int = 500) -> dict[str, Any]:
    """Two models' fold models on the same test images: a randomisation p and a bootstrap interval.

    Every fold's model of ``a`` and of ``b`` classified the same ``n`` test images. The statistic
    is ``metric`` averaged over ``a``'s fold models minus the same for ``b``; for accuracy it is the
    mean over images of the share of folds that got each image right. The test image is the unit
    that carries the evidence (it is what a new test set would change), and the fold models enter
    through their average.

    * ``p_value``: the paired randomisation (sign-flip) test over images,
      :func:`image_randomisation_p`, a test under the null hypothesis: two models that differ on 5
      of 100 images, all one way, get the exact sign-test p 0.0625, not the share of bootstrap
      resamples beyond 0 (0.0136 there, which is not a p-value: the resamples are drawn around the
      observed difference, not under the null);
    * ``ci_low``, ``ci_high``: the percentile interval of ``n_boot`` paired bootstrap resamples of the
      images (the same resample for every model, so pairs stay together).

    Parameters
    ----------
    y_true : (n,) int array
    preds_a, preds_b : (k, n) int arrays
        Predicted class of each fold model (rows) on each test image (columns).
    metric : {'accuracy', 'f1_macro'}
        Macro-F1 over the classes present in ``y_true`` (as
        :func:`~xai_helpers.evaluation.classification_metrics`).
    n_boot : int
        Bootstrap resamples of the interval.
    n_perm : int
        Random swap patterns of the p-value when it is not exact.
    alpha : float
    seed : int
    chunk : int
        Resamples evaluated at once (bounds the memory to ``chunk * n`` floats).

    Returns
    -------
    dict
        The common result keys, ``test`` = :data:`IMAGE_TEST`, ``statistic`` = ``mean_diff`` =
        the observed difference, ``mean_a``/``mean_b`` the fold-averaged scores; NaN p for n < 2.

    Examples
    --------
    >>> y = np.zeros(40, int); a = np.zeros((3, 40), int); b = a.copy(); b[:, :20] = 1
    >>> r = image_paired_test(y, a, b, n_boot=999)
    >>> r["statistic"], r["p_value"] < 0.001
    (0.5, True)
    """
    if metric not in ("accuracy", "f1_macro"):
        raise ValueError(f"metric: unknown value {metric!r}; accepted values: accuracy, f1_macro")
    y = np.asarray(y_true)
    pa, pb = np.atleast_2d(np.asarray(preds_a)), np.atleast_2d(np.asarray(preds_b))
    n = len(y)
    if pa.shape[1] != n or pb.shape[1] != n:
        raise ValueError(f"preds_a, preds_b: expected one column per test image ({n}), got {pa.shape} and {pb.shape}")
    if n < 2:
        return _result(IMAGE_TEST, n, math.nan, math.nan, note=f"not testable: n = {n}")

    def difference(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        sa = np.mean([_weighted_scores(weights, y, p, metric) for p in pa], axis=0)
        sb = np.mean([_weighted_scores(weights, y, p, metric) for p in pb], axis=0)
        return sa - sb, sa, sb

    obs, obs_a, obs_b = difference(np.ones((1, n)))
    rng = np.random.default_rng(seed)
    dist = []
    for start in range(0, n_boot, chunk):
        idx = rng.integers(0, n, (min(chunk, n_boot - start), n))
        offsets = (np.arange(len(idx))[:, None] * n + idx).ravel()
        weights = np.bincount(offsets, minlength=len(idx) * n).reshape(len(idx), n).astype(np.float64)
        dist.append(difference(weights)[0])
    lo, hi = np.quantile(np.concatenate(dist), [alpha / 2, 1 - alpha / 2])
    rand = image_randomisation_p(y, pa, pb, metric, n_perm=n_perm, seed=seed)
    folds = f"{len(pa)} and {len(pb)}" if len(pa) != len(pb) else f"{len(pa)}"
    note = (f"p: paired randomisation test over images ({rand['method']}); interval: {n_boot} bootstrap "
            f"resamples of the images; {metric} averaged over {folds} fold model(s)")
    return {**_result(IMAGE_TEST, n, float(obs[0]), rand["p_value"], obs, (lo, hi), float(obs[0]), note,
                      ci_level=1 - alpha),
            "mean_a": float(obs_a[0]), "mean_b": float(obs_b[0])}


def wilson_interval(accuracy: float, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval of an accuracy measured on ``n`` test images (Wilson 1927).

    For a mean over fold models on the same ``n`` images this is the interval of one model's
    accuracy at that value: it covers test-set sampling, not the variation between folds.

    Parameters
    ----------
    accuracy : float
        In [0, 1].
    n : int
        Test images.
    alpha : float
        1 - the confidence level.

    Returns
    -------
    (float, float)
        Lower and upper bound (NaN, NaN for ``n`` = 0).

    Examples
    --------
    >>> [round(v, 4) for v in wilson_interval(0.8, 100)]
    [0.7112, 0.8666]
    """
    if n <= 0 or not np.isfinite(accuracy):
        return np.nan, np.nan
    lo, hi = proportion_confint(accuracy * n, n, alpha=alpha, method="wilson")
    return float(lo), float(hi)


def adjust_pvalues(p: Sequence[float], method: str = "holm") -> np.ndarray:
    """Holm (step-down) or Bonferroni adjusted p-values; NaNs stay NaN and are not counted.

    Examples
    --------
    >>> adjust_pvalues([0.01, 0.04, 0.03], "holm").round(3).tolist()
    [0.03, 0.06, 0.06]
    """
    if method not in ("holm", "bonferroni"):
        raise ValueError(f"method: unknown correction {method!r}; accepted values: holm, bonferroni")
    # statsmodels' multipletests gives the same numbers (the tests check it) but runs gc.collect() on
    # every call: 0.17 s per family, tens of seconds over the hundreds of families of a CAM comparison
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
    order = np.argsort(pv, kind="stable")
    steps = np.maximum.accumulate((m - np.arange(m)) * pv[order])  # step-down: monotone in rank
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(1.0, steps)
    out[ok] = adjusted
    return out


def compare_models(metrics: pd.DataFrame, metric_names: Sequence[str] = ("accuracy", "f1_macro"),
                   correction: str = "holm", pairs: Sequence[tuple[str, str]] | None = None,
                   comparison: str = "models") -> pd.DataFrame:
    """Paired tests between every pair of models over the same folds, per metric.

    Parameters
    ----------
    metrics : pandas.DataFrame
        ``metrics.csv``: one row per model and fold (``model``, ``fold``, the metrics, and
        ``n_train``/``n_val`` for the corrected t-test, whose variance factor is
        ``1/k + mean(n_val)/mean(n_train)`` over the two models' rows).
    metric_names : sequence of str
    correction : {'holm', 'bonferroni'}
        Applied across the model pairs, per metric and test.
    pairs : sequence of (a, b), optional
        The pairs to test (default: every pair of models).
    comparison : str
        The ``comparison`` column, part of the Holm family: pairs of another comparison (the
        CNNs against the best baseline, say) are corrected apart from the CNN-vs-CNN pairs.

    Examples
    --------
    >>> m = pd.DataFrame({"model": ["a"] * 3 + ["b"] * 3, "fold": [0, 1, 2] * 2,
    ...                   "accuracy": [.90, .92, .91, .80, .83, .80], "n_train": 200, "n_val": 100})
    >>> compare_models(m, ["accuracy"])["test"].tolist()
    ['paired_t', 'corrected_t', 'wilcoxon']

    Returns
    -------
    pandas.DataFrame
        Rows with the columns of :data:`COLUMNS`, ``comparison`` = ``comparison``.
    """
    rows = []
    models = list(dict.fromkeys(metrics["model"]))
    pairs = list(pairs) if pairs is not None else list(itertools.combinations(models, 2))
    for metric in metric_names:
        if metric not in metrics.columns:
            raise ValueError(f"metric_names: {metric!r} is not a column of metrics.csv")
        wide = metrics.pivot_table(index="fold", columns="model", values=metric, aggfunc="mean")
        for a, b in pairs:
            if a not in wide or b not in wide:
                continue
            va, vb = wide[a].to_numpy(), wide[b].to_numpy()
            base = {"comparison": comparison, "group": "all", "a": a, "b": b, "metric": metric,
                    "mean_a": float(np.nanmean(va)) if np.isfinite(va).any() else math.nan,
                    "mean_b": float(np.nanmean(vb)) if np.isfinite(vb).any() else math.nan,
                    "normality_p": shapiro_p(va - vb)}
            tests = [paired_t_test(va, vb), wilcoxon_test(va, vb)]
            if {"n_train", "n_val"} <= set(metrics.columns):
                sub = metrics[metrics["model"].isin([a, b])]
                tests.insert(1, corrected_resampled_t_test(va, vb, float(sub["n_train"].mean()),
                                                           float(sub["n_val"].mean())))
            for r in tests:
                rows.append({**base, **r})
    return _finish(rows, correction)


def compare_predictions(predictions: dict[tuple[str, int], pd.DataFrame], correction: str = "holm",
                        n_boot: int = 1000, seed: int = 0, n_boot_images: int = 49999,
                        pairs: Sequence[tuple[str, str]] | None = None, comparison: str = "models",
                        n_perm: int = 49999) -> pd.DataFrame:
    """Tests between models on the same test images: per fold, and over the fold models together.

    Parameters
    ----------
    predictions : dict
        ``(model, fold)`` -> predictions frame (``path``, ``true``, ``pred``).
    correction : {'holm', 'bonferroni'}
    n_boot : int
        Bootstrap resamples of the per-fold intervals.
    seed : int
    n_boot_images : int
        Bootstrap resamples of the interval of the test over all folds (:func:`image_paired_test`).
    pairs : sequence of (a, b), optional
        The pairs to test (default: every pair of models).
    comparison : str
        The ``comparison`` column (and Holm family), as in :func:`compare_models`.
    n_perm : int
        Random swaps of the randomisation p-values, where they are not exact
        (:func:`image_randomisation_p`).

    Returns
    -------
    pandas.DataFrame
        ``comparison`` = ``comparison``. Per fold (``group`` = 'fold<k>'): ``mcnemar_*`` (metric
        'accuracy') and ``randomisation_accuracy`` / ``randomisation_f1_macro`` (one fold model
        each). Over every fold both models have (``group`` = 'all', metrics 'accuracy' and
        'f1_macro'): :data:`IMAGE_TEST` (:func:`image_paired_test`), the test the summary tables
        mark with. Each p is a test under the null hypothesis; each interval a bootstrap over images.

    Examples
    --------
    >>> t = pd.DataFrame({"path": list("pqrs"), "true": list("xyxy")})
    >>> preds = {("a", 0): t.assign(pred=list("xyxy")), ("b", 0): t.assign(pred=list("xxxx"))}
    >>> compare_predictions(preds, n_boot=99, n_boot_images=99)["test"].tolist()
    ['mcnemar_exact', 'randomisation_accuracy', 'randomisation_f1_macro', 'randomisation_images', \
'randomisation_images']
    """
    rows = []
    folds = sorted({f for _, f in predictions})
    models = list(dict.fromkeys(m for m, _ in predictions))
    pairs = list(pairs) if pairs is not None else list(itertools.combinations(models, 2))
    for fold in folds:
        for a, b in pairs:
            if (a, fold) not in predictions or (b, fold) not in predictions:
                continue
            pa = predictions[(a, fold)].set_index("path")
            pb = predictions[(b, fold)].set_index("path").reindex(pa.index)
            if pb["pred"].isna().any():
                raise ValueError(f"predictions of {a} and {b} (fold {fold}) are not on the same test images")
            code = {c: i for i, c in enumerate(sorted(set(pa["true"]) | set(pa["pred"]) | set(pb["pred"])))}
            y = pa["true"].map(code).to_numpy()
            ya, yb = pa["pred"].map(code).to_numpy(), pb["pred"].map(code).to_numpy()
            base = {"comparison": comparison, "group": f"fold{fold}", "a": a, "b": b,
                    "normality_p": math.nan}
            ca, cb = ya == y, yb == y
            rows.append({**base, "metric": "accuracy", "mean_a": ca.mean(), "mean_b": cb.mean(),
                         **mcnemar_test(ca, cb)})
            for metric in ("accuracy", "f1_macro"):
                r = image_paired_test(y, ya[None], yb[None], metric, n_boot=n_boot, n_perm=n_perm, seed=seed)
                rows.append({**base, "metric": metric, **r, "test": f"randomisation_{metric}"})
    rows += _image_level_rows(predictions, pairs, n_boot_images, n_perm, seed, comparison)
    return _finish(rows, correction)


def _image_level_rows(predictions: dict[tuple[str, int], pd.DataFrame], pairs: list[tuple[str, str]], n_boot: int,
                      n_perm: int, seed: int, comparison: str) -> list[dict[str, Any]]:
    """:data:`IMAGE_TEST` rows (accuracy and macro-F1) for every model pair, over the folds both have
    (fold ``j`` of one model paired with fold ``j`` of the other)."""
    by_model: dict[str, dict[int, pd.DataFrame]] = {}
    for (model, fold) in sorted(predictions, key=lambda k: k[1]):
        by_model.setdefault(model, {})[fold] = predictions[(model, fold)].set_index("path")
    rows = []
    for a, b in [(a, b) for a, b in pairs if a in by_model and b in by_model]:
        folds = [f for f in by_model[a] if f in by_model[b]]
        if not folds:
            continue
        images = by_model[a][folds[0]].index
        frames = [by_model[m][f] for m in (a, b) for f in folds]
        if any(set(f.index) != set(images) for f in frames):
            raise ValueError(f"predictions of {a} and {b}: the folds are not on the same test images")
        classes = sorted(set(by_model[a][folds[0]]["true"]) | set().union(*(set(f["pred"]) for f in frames)))
        code = {c: i for i, c in enumerate(classes)}
        y = by_model[a][folds[0]]["true"].map(code).to_numpy()
        pred = {m: np.vstack([by_model[m][f]["pred"].reindex(images).map(code).to_numpy() for f in folds])
                for m in (a, b)}
        left_out = sorted((set(by_model[a]) ^ set(by_model[b])))
        for metric in ("accuracy", "f1_macro"):
            r = image_paired_test(y, pred[a], pred[b], metric, n_boot, n_perm, seed=seed)
            if left_out:
                r["note"] = _join(r["note"], f"fold(s) {left_out} of only one model left out")
            rows.append({"comparison": comparison, "group": "all", "a": a, "b": b, "metric": metric,
                         "normality_p": math.nan, **r})
    return rows


def compare_methods(per_image: pd.DataFrame, metric_names: Sequence[str], correction: str = "holm",
                    by_class: bool = True) -> pd.DataFrame:
    """Paired t-test and Wilcoxon between every pair of CAM methods on the same images, per explained
    model and layer.

    The unit of analysis is the image: every fold's model explains the same test images, so each
    image's metric is first averaged over the fold models (``model``, ``layer``, ``path``), and the
    methods are paired on those averages. When several models (or layers) are explained, each
    (model, layer) is tested on its own (columns ``cam_model``, ``cam_layer``) and is its own Holm
    family: an image is counted once per test, never once per model. ``n`` is the number of
    distinct images with a finite value for both methods (some metrics exist only on a subsample,
    or where a mask exists). Each metric is tested over all images (``group`` 'all') and, with
    ``by_class``, within each true class.

    Examples
    --------
    >>> per_image = pd.DataFrame({"model": "r", "fold": [0, 0, 1, 1] * 3, "layer": "l",
    ...     "path": ["p", "p", "p", "p", "q", "q", "q", "q", "s", "s", "s", "s"], "class": "c",
    ...     "method": ["g", "x"] * 6, "score": [.1, .2, .1, .2, .3, .5, .3, .5, .2, .3, .2, .3]})
    >>> compare_methods(per_image, ["score"], by_class=False)["n"].tolist()
    [3, 3]
    >>> two_models = pd.concat([per_image, per_image.assign(model="v")])
    >>> compare_methods(two_models, ["score"], by_class=False)[["cam_model", "n"]].values.tolist()
    [['r', 3], ['r', 3], ['v', 3], ['v', 3]]
    """
    rows = []
    keys = ["model", "layer", "path"]
    methods = list(dict.fromkeys(per_image["method"]))
    metric_names = [m for m in metric_names if m in per_image.columns]
    # one value per image and method: the mean over the fold models that explained it
    per_image = (per_image.groupby(keys + ["class", "method"], sort=False, dropna=False)[metric_names]
                 .mean().reset_index())
    for (model, layer), explained in per_image.groupby(["model", "layer"], sort=False, dropna=False):
        groups: list[tuple[str, pd.DataFrame]] = [("all", explained)]
        if by_class:
            groups += [(str(c), part) for c, part in explained.groupby("class", sort=True)]
        for metric in metric_names:
            for group, part in groups:
                wide = part.pivot_table(index="path", columns="method", values=metric, aggfunc="mean",
                                        dropna=False)
                for a, b in itertools.combinations(methods, 2):
                    if a not in wide or b not in wide:
                        continue
                    va, vb = wide[a].to_numpy(), wide[b].to_numpy()
                    both = np.isfinite(va) & np.isfinite(vb)
                    if not both.any():
                        continue  # metric not computed for these images (e.g. no mask)
                    va, vb = va[both], vb[both]
                    base = {"comparison": "cams", "cam_model": model, "cam_layer": layer, "group": group,
                            "a": a, "b": b, "metric": metric, "mean_a": float(va.mean()),
                            "mean_b": float(vb.mean()), "normality_p": shapiro_p(va - vb)}
                    for r in (paired_t_test(va, vb), wilcoxon_test(va, vb)):
                        rows.append({**base, **r})
    return _finish(rows, correction)


def holm_family(comparison: str, group: str, metric: str, test: str, explained: str = "") -> str:
    """The family a test's p-value is corrected in: ``comparison[/explained]/group/metric/test family``.

    Both McNemar variants (exact and chi-square, chosen per pair by the number of discordant
    pairs) are one family (:data:`TEST_FAMILIES`); every other test is its own. ``explained``
    (``model@layer``) keeps the CAM-method tests of each explained model and layer apart.

    Examples
    --------
    >>> holm_family("models", "fold0", "accuracy", "mcnemar_chi2")
    'models/fold0/accuracy/mcnemar'
    >>> holm_family("cams", "all", "iou", "paired_t", "vgg16@features.29")
    'cams/vgg16@features.29/all/iou/paired_t'
    """
    scope = f"{comparison}/{explained}" if explained else comparison
    return f"{scope}/{group}/{metric}/{TEST_FAMILIES.get(test, test)}"


def _finish(rows: list[dict[str, Any]], correction: str) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=COLUMNS)
    for col in ("cam_model", "cam_layer"):
        if col not in df:
            df[col] = ""
    df["correction"] = correction
    explained = [f"{m}@{lay}" if m else "" for m, lay in zip(df["cam_model"].fillna("").astype(str),
                                                              df["cam_layer"].fillna("").astype(str))]
    df["holm_family"] = [holm_family(*k) for k in zip(df["comparison"], df["group"].astype(str), df["metric"],
                                                      df["test"], explained)]
    df["p_adjusted"] = np.nan
    for _, idx in df.groupby("holm_family", sort=False).groups.items():
        df.loc[idx, "p_adjusted"] = adjust_pvalues(df.loc[idx, "p_value"].to_numpy(), correction)
    return df[COLUMNS + [c for c in df.columns if c not in COLUMNS]]


def significance_mark(p: float) -> str:
    """'***' (p < 0.001), '**' (< 0.01), '*' (< 0.05), 'ns', or 'n/a' for NaN."""
    if not np.isfinite(p):
        return "n/a"
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else "ns"


def pair_p_adjusted(tests: pd.DataFrame, comparison: str, group: str, metric: str, test: str,
                    a: str, b: str, cam_model: str | None = None, cam_layer: str | None = None) -> float | None:
    """The adjusted p of ``test`` between ``a`` and ``b`` (either order) in a paired-tests table,
    or None when the table has no such row; ``cam_model`` / ``cam_layer`` pick the explained model
    and layer of a CAM-method test (None: any)."""
    if tests.empty:
        return None
    sel = ((tests["comparison"] == comparison) & (tests["group"].astype(str) == group)
           & (tests["metric"] == metric) & (tests["test"] == test)
           & (((tests["a"] == a) & (tests["b"] == b)) | ((tests["a"] == b) & (tests["b"] == a))))
    for col, value in (("cam_model", cam_model), ("cam_layer", cam_layer)):
        if value is not None and col in tests:
            sel &= tests[col].astype(str) == str(value)
    sel = tests[sel]
    return float(sel["p_adjusted"].iloc[0]) if len(sel) else None


#: The test behind the summary tables' marks, and the fold-level test shown beside it.
HEADLINE_TEST = IMAGE_TEST
FOLD_TEST = "corrected_t"


def summary_table(metrics: pd.DataFrame, tests: pd.DataFrame, metric_names: Sequence[str] = ("accuracy", "f1_macro"),
                  test: str = HEADLINE_TEST, reference: str | None = None,
                  second_test: str | None = FOLD_TEST) -> pd.DataFrame:
    """Paper-style table: mean ± std over folds per model and metric, marked against ``reference``.

    The mark after each value is the Holm-adjusted significance of ``test`` between that model
    and ``reference`` (default: the model with the best mean of the first metric). The default
    test, :data:`IMAGE_TEST`, is the paired randomisation test over the test images with every fold
    model's predictions (:func:`image_paired_test`): the images carry the evidence. With ``second_test`` (default
    the corrected resampled t-test over the fold scores, which has little power with few folds)
    a column ``<metric> (<second_test>)`` gives its mark too.

    Examples
    --------
    >>> m = pd.DataFrame({"model": ["a"] * 3 + ["b"] * 3, "fold": [0, 1, 2] * 2,
    ...                   "accuracy": [.90, .92, .91, .80, .83, .80], "n_train": 200, "n_val": 100})
    >>> summary_table(m, compare_models(m, ["accuracy"]), ["accuracy"], test="corrected_t",
    ...               second_test=None)["accuracy"].tolist()
    ['0.9100 ± 0.0100 (ref)', '0.8100 ± 0.0173 **']
    """
    grouped = metrics.groupby("model", sort=False)
    means = grouped[list(metric_names)].mean()
    stds = grouped[list(metric_names)].std(ddof=1)
    reference = reference or str(means[metric_names[0]].idxmax())
    table = pd.DataFrame(index=means.index)
    for metric in metric_names:
        cells, second = [], []
        for model in means.index:
            cell = f"{means.loc[model, metric]:.4f} ± {stds.loc[model, metric]:.4f}" if np.isfinite(
                stds.loc[model, metric]) else f"{means.loc[model, metric]:.4f}"
            if model == reference:
                cell += " (ref)"
                second.append("ref")
            else:
                p = pair_p_adjusted(tests, "models", "all", metric, test, model, reference)
                if p is not None:
                    cell += " " + significance_mark(p)
                p2 = pair_p_adjusted(tests, "models", "all", metric, second_test, model, reference) \
                    if second_test else None
                second.append("" if p2 is None else significance_mark(p2))
            cells.append(cell)
        table[metric] = cells
        if second_test:
            table[f"{metric} ({second_test})"] = second
    table.index.name = "model"
    return table
