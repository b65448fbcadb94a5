"""Each statistic against an independent reference (scipy, statsmodels) and a published worked example."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar
from statsmodels.stats.multitest import multipletests

from xai_helpers.stats import (adjust_pvalues, cohens_dz, compare_methods, compare_models, compare_predictions,
                               corrected_resampled_t_test, image_paired_test, image_randomisation_p, mcnemar_test,
                               paired_bootstrap, paired_t_test, signed_rank_ci, signed_rank_null_distribution,
                               summary_table, wilcoxon_min_p, wilcoxon_test)

# Student (1908) / Cushny & Peebles (1905) sleep data, as in R's `t.test(extra ~ group, data = sleep,
# paired = TRUE)`: t = -4.0621, df = 9, p-value = 0.002833, 95% CI (-2.4598858, -0.7001142).
SLEEP_1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
SLEEP_2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]

# Hollander & Wolfe (1973), p. 29, as in R's `wilcox.test(x, y, paired = TRUE)` example:
# V = 40 (sum of positive ranks), one-sided p = 0.01953, so two-sided p = 0.03906.
HW_X = [1.83, 0.50, 1.62, 2.48, 1.68, 1.88, 1.55, 3.06, 1.30]
HW_Y = [0.878, 0.647, 0.598, 2.05, 1.06, 1.29, 1.06, 3.14, 1.29]

# Efron & Tibshirani (1993), An Introduction to the Bootstrap, law school data (Table 3.1: LSAT and
# GPA of 15 schools, correlation .776) and its bootstrap standard error of the correlation
# (Table 6.1: se_B = .132 with B = 3200 paired resamples).
LAW_LSAT = [576, 635, 558, 578, 666, 580, 555, 661, 651, 605, 653, 575, 545, 572, 594]
LAW_GPA = [3.39, 3.30, 2.81, 3.03, 3.44, 3.07, 3.00, 3.43, 3.36, 3.13, 3.12, 2.74, 2.76, 2.88, 2.96]


def test_paired_t_published_example_and_scipy():
    r = paired_t_test(SLEEP_1, SLEEP_2)
    assert r["statistic"] == pytest.approx(-4.0621, abs=1e-4)
    assert r["p_value"] == pytest.approx(0.002833, abs=1e-6)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((-2.4598858, -0.7001142), abs=1e-6)
    ref = st.ttest_rel(SLEEP_1, SLEEP_2)
    assert r["statistic"] == pytest.approx(ref.statistic) and r["p_value"] == pytest.approx(ref.pvalue)
    d = np.subtract(SLEEP_1, SLEEP_2)
    assert r["effect_size"] == pytest.approx(d.mean() / d.std(ddof=1)) == cohens_dz(SLEEP_1, SLEEP_2)


def test_wilcoxon_published_example_and_scipy():
    r = wilcoxon_test(HW_X, HW_Y)
    assert r["p_value"] == pytest.approx(0.03906, abs=1e-5)
    ref = st.wilcoxon(HW_X, HW_Y)
    assert r["statistic"] == ref.statistic == 5.0  # min(W+, W-) = min(40, 5)
    assert r["effect_size"] == pytest.approx((40 - 5) / 45)


def test_wilcoxon_smallest_possible_p_is_stated():
    assert wilcoxon_min_p(3) == 0.25
    r = wilcoxon_test([0.9, 0.8, 0.85], [0.7, 0.6, 0.65])
    assert r["p_value"] == pytest.approx(0.25) and r["min_p_possible"] == 0.25
    assert "cannot go below 0.25" in r["note"]


def test_corrected_resampled_t_by_formula():
    # Nadeau & Bengio (2003): t = mean(d) / sqrt((1/k + n2/n1) * var(d)), k - 1 df
    a = [0.86, 0.84, 0.88, 0.85, 0.87]
    b = [0.83, 0.84, 0.85, 0.82, 0.86]
    d = np.subtract(a, b)
    t = d.mean() / math.sqrt((1 / 5 + 100 / 400) * d.var(ddof=1))
    r = corrected_resampled_t_test(a, b, n_train=400, n_test=100)
    assert r["statistic"] == pytest.approx(t) and r["p_value"] == pytest.approx(2 * st.t.sf(abs(t), 4))
    assert r["p_value"] > paired_t_test(a, b)["p_value"]  # the correction is more conservative


def test_corrected_resampled_t_published_scikit_learn_example():
    """scikit-learn's example "Statistical comparison of models using grid search"
    (examples/model_selection/plot_grid_search_stats.py) compares an RBF SVC with a linear SVC over
    10 x 10-fold repeated stratified CV (n_train 90, n_test 10) and prints
    "Corrected t-value: 0.750 / Corrected p-value: 0.227" (one-sided) and
    "Uncorrected t-value: 2.611 / Uncorrected p-value: 0.005"; mean ROC AUC 0.9400 vs 0.9300."""
    from sklearn.datasets import make_moons
    from sklearn.model_selection import GridSearchCV, RepeatedStratifiedKFold
    from sklearn.svm import SVC

    X, y = make_moons(noise=0.352, random_state=1, n_samples=100)
    grid = [{"kernel": ["linear"]}, {"kernel": ["poly"], "degree": [2, 3]}, {"kernel": ["rbf"]}]
    cv = RepeatedStratifiedKFold(n_splits=10, n_repeats=10, random_state=0)
    search = GridSearchCV(SVC(random_state=0), grid, scoring="roc_auc", cv=cv).fit(X, y)
    res = pd.DataFrame(search.cv_results_).sort_values("rank_test_score")
    scores = res.filter(regex=r"split\d*_test_score").to_numpy()
    assert res["mean_test_score"].iloc[:2].round(4).tolist() == [0.9400, 0.9300]
    corrected = corrected_resampled_t_test(scores[0], scores[1], n_train=90, n_test=10)
    assert round(corrected["statistic"], 3) == 0.750
    assert round(corrected["p_value"] / 2, 3) == 0.227  # ours is two-sided
    plain = paired_t_test(scores[0], scores[1])
    assert round(plain["statistic"], 3) == 2.611 and round(plain["p_value"] / 2, 3) == 0.005


def test_mcnemar_published_example_and_statsmodels():
    # Agresti (2002), Categorical Data Analysis, 2nd ed., Table 10.1 (presidential approval):
    # [[794, 150], [86, 570]]; McNemar z^2 = 17.36 without continuity correction.
    a = np.array([True] * 794 + [True] * 150 + [False] * 86 + [False] * 570)
    b = np.array([True] * 794 + [False] * 150 + [True] * 86 + [False] * 570)
    r = mcnemar_test(a, b)
    assert r["test"] == "mcnemar_chi2"
    assert (150 - 86) ** 2 / 236 == pytest.approx(17.36, abs=0.01)
    ref = sm_mcnemar([[794, 150], [86, 570]], exact=False, correction=True)
    assert r["statistic"] == pytest.approx(ref.statistic) and r["p_value"] == pytest.approx(ref.pvalue)
    # exact for few discordant pairs: the binomial test, as statsmodels' exact McNemar
    a2 = np.array([True] * 10 + [True] * 7 + [False] * 2 + [False] * 5)
    b2 = np.array([True] * 10 + [False] * 7 + [True] * 2 + [False] * 5)
    r2 = mcnemar_test(a2, b2)
    ref2 = sm_mcnemar([[10, 7], [2, 5]], exact=True)
    assert r2["test"] == "mcnemar_exact" and r2["p_value"] == pytest.approx(ref2.pvalue)
    assert r2["p_value"] == pytest.approx(st.binomtest(2, 9, 0.5).pvalue)


def test_holm_wikipedia_example_and_statsmodels():
    # Holm-Bonferroni worked example (four hypotheses, p = 0.01, 0.04, 0.03, 0.005)
    p = [0.01, 0.04, 0.03, 0.005]
    assert adjust_pvalues(p).tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert adjust_pvalues(p) == pytest.approx(multipletests(p, method="holm")[1])
    assert adjust_pvalues(p, "bonferroni") == pytest.approx(multipletests(p, method="bonferroni")[1])
    with_nan = adjust_pvalues([0.01, np.nan, 0.04])
    assert np.isnan(with_nan[1]) and with_nan[[0, 2]] == pytest.approx(multipletests([0.01, 0.04], method="holm")[1])


def test_bootstrap_interval_contains_observed_difference():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    a = np.where(rng.random(200) < 0.9, y, 1 - y)
    b = np.where(rng.random(200) < 0.6, y, 1 - y)
    r = image_paired_test(y, a[None], b[None], "accuracy", n_boot=500)
    assert r["statistic"] == pytest.approx((a == y).mean() - (b == y).mean())
    assert r["ci_low"] < r["statistic"] < r["ci_high"] and r["ci_low"] > 0 and r["p_value"] < 0.01
    same = image_paired_test(y, a[None], a[None], "f1_macro", n_boot=200)
    assert same["p_value"] == 1.0 and same["statistic"] == 0


def test_paired_bootstrap_published_law_school_example():
    law = paired_bootstrap(lambda x, y: _row_correlation(x, y), LAW_LSAT, LAW_GPA, n_boot=3200, seed=0)
    assert round(law["observed"], 3) == 0.776
    # a resampled standard error with B = 3200 varies by about +-0.003 between seeds
    assert law["standard_error"] == pytest.approx(0.132, abs=0.008)


def _row_correlation(x, y):
    x = x - x.mean(axis=1, keepdims=True)
    y = y - y.mean(axis=1, keepdims=True)
    return (x * y).sum(axis=1) / np.sqrt((x * x).sum(axis=1) * (y * y).sum(axis=1))


def test_paired_bootstrap_matches_scipy_and_the_classification_bootstrap():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 300)
    a = np.where(rng.random(300) < 0.85, y, (y + 1) % 3)
    b = np.where(rng.random(300) < 0.75, y, (y + 2) % 3)

    def accuracy_difference(y, a, b, axis=-1):
        return (a == y).mean(axis=axis) - (b == y).mean(axis=axis)

    ours = paired_bootstrap(accuracy_difference, y, a, b, n_boot=4000, seed=3)
    ref = st.bootstrap((y, a, b), accuracy_difference, paired=True, vectorized=True, n_resamples=4000,
                       method="percentile", rng=np.random.default_rng(7))
    se = ours["standard_error"]
    assert ref.standard_error == pytest.approx(se, rel=0.08)
    assert ours["ci_low"] == pytest.approx(ref.confidence_interval.low, abs=0.25 * se)
    assert ours["ci_high"] == pytest.approx(ref.confidence_interval.high, abs=0.25 * se)
    # the ideal bootstrap variance of a mean of per-image differences is var(d, ddof=0) / n
    d = (a == y).astype(float) - (b == y)
    assert se == pytest.approx(d.std() / np.sqrt(len(d)), rel=0.05)
    with pytest.raises(ValueError, match="equal length"):
        paired_bootstrap(accuracy_difference, y, a[:-1], b)


def test_degenerate_inputs_answer_clearly():
    same = paired_t_test([0.8, 0.9, 0.7], [0.8, 0.9, 0.7])
    assert same["p_value"] == 1.0 and same["statistic"] == 0.0 and "all differences are zero" in same["note"]
    assert np.isnan(st.ttest_rel([0.8, 0.9, 0.7], [0.8, 0.9, 0.7]).pvalue)  # what scipy would say
    assert wilcoxon_test([0.8, 0.9], [0.8, 0.9])["p_value"] == 1.0
    one = paired_t_test([0.8], [0.7])
    assert np.isnan(one["p_value"]) and one["note"] == "not testable: n = 1"
    nan = paired_t_test([0.8, np.nan, 0.7, 0.9], [0.7, 0.6, 0.6, 0.7])
    assert nan["n"] == 3 and "1 pair(s) with NaN left out" in nan["note"]
    const = paired_t_test([0.9, 0.8, 0.7], [0.8, 0.7, 0.6])
    assert np.isnan(const["p_value"]) and "not testable: zero variance" in const["note"]
    agree = mcnemar_test([True, False], [True, False])
    assert agree["p_value"] == 1.0 and "agree on every image" in agree["note"]


def _metrics():
    rows = []
    for m, base in (("resnet50", 0.85), ("vgg16", 0.80), ("densenet121", 0.85)):
        for f in range(3):
            rows.append({"model": m, "fold": f, "accuracy": base + 0.01 * f, "f1_macro": base - 0.02 + 0.01 * f,
                         "n_train": 200, "n_val": 100, "n_test": 50})
    return pd.DataFrame(rows)


def test_compare_models_every_pair_every_test():
    tests = compare_models(_metrics(), ("accuracy", "f1_macro"))
    assert set(tests["test"]) == {"paired_t", "corrected_t", "wilcoxon"}
    pairs = set(zip(tests["a"], tests["b"]))
    assert pairs == {("resnet50", "vgg16"), ("resnet50", "densenet121"), ("vgg16", "densenet121")}
    same = tests[(tests.a == "resnet50") & (tests.b == "densenet121")]
    assert (same["p_value"] == 1.0).all()
    for _, g in tests.groupby(["metric", "test"]):
        assert g["p_adjusted"].tolist() == pytest.approx(adjust_pvalues(g["p_value"]).tolist(), nan_ok=True)
    table = summary_table(_metrics(), tests, ("accuracy",), test="corrected_t", reference="resnet50")
    assert table.loc["resnet50", "accuracy"].endswith("(ref)")
    assert table.loc["vgg16", "accuracy"].startswith("0.8100 ± 0.0100")


def test_compare_predictions_and_methods():
    paths = [f"{i}.png" for i in range(30)]
    true = ["a", "b", "c"] * 10
    wrong = ["b", "c", "a"] * 10
    p1 = pd.DataFrame({"path": paths, "true": true, "pred": true})
    p2 = pd.DataFrame({"path": paths, "true": true, "pred": true[:20] + wrong[20:]})
    tests = compare_predictions({("m1", 0): p1, ("m2", 0): p2}, n_boot=200)
    mc = tests[tests.test.str.startswith("mcnemar")].iloc[0]
    assert mc["test"] == "mcnemar_exact" and mc["p_value"] == pytest.approx(st.binomtest(0, 10, 0.5).pvalue)
    per_image = pd.DataFrame([{"model": "r", "fold": 0, "layer": "l", "path": p, "class": c, "method": m,
                               "confidence_increase": v}
                              for p, c in zip(paths, true)
                              for m, v in (("gradcam", 0.1), ("layercam", 0.1 + 0.01 * int(p[0])))])
    cams = compare_methods(per_image, ["confidence_increase"])
    assert set(cams["group"]) == {"all", "a", "b", "c"} and set(cams["comparison"]) == {"cams"}


# --- issue 12: the unit of analysis, the families, the sizes, the intervals ---------------------------------


def _per_image_table(n_images=40, folds=(0,), seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_images):
        base = rng.normal()
        for m, shift in (("gradcam", 0.0), ("xgradcam", 0.3), ("layercam", 0.1)):
            value = base + shift + rng.normal(0, 0.5)
            masked = np.nan if (m == "layercam" and i % 4 == 0) else value  # a metric missing for some images
            for f in folds:
                rows.append({"model": "resnet50", "fold": f, "layer": "layer2", "path": f"img{i}.png",
                             "class": "ab"[i % 2], "method": m, "confidence_increase": value, "iou": masked})
    return pd.DataFrame(rows)


def test_cam_comparisons_count_each_image_once():
    one = compare_methods(_per_image_table(folds=(0,)), ["confidence_increase", "iou"])
    five = compare_methods(_per_image_table(folds=(0, 1, 2, 3, 4)), ["confidence_increase", "iou"])
    assert len(one) == len(five) > 0
    key = ["group", "a", "b", "metric", "test"]
    merged = one.merge(five, on=key, suffixes=("_1", "_5"))
    assert len(merged) == len(one)
    np.testing.assert_allclose(merged["p_value_5"], merged["p_value_1"], rtol=1e-12)
    np.testing.assert_allclose(merged["p_adjusted_5"], merged["p_adjusted_1"], rtol=1e-12)
    assert (merged["n_5"] == merged["n_1"]).all()
    # n is the number of distinct images with a finite value for both methods; p is scipy's on those images
    table = _per_image_table(folds=(0, 1, 2))
    wide = table[table.fold == 0].pivot(index="path", columns="method", values="iou")
    row = five[(five.group == "all") & (five.metric == "iou") & (five.a == "gradcam") & (five.b == "layercam")
               & (five.test == "paired_t")].iloc[0]
    both = wide[["gradcam", "layercam"]].dropna()
    assert row["n"] == len(both) == 30
    assert row["p_value"] == pytest.approx(st.ttest_rel(both["gradcam"], both["layercam"]).pvalue)


def test_mcnemar_variants_are_one_holm_family():
    # 4 models on 200 images, discordant counts chosen so that some pairs use the exact test and some chi-square
    truth = ["x"] * 200
    paths = [f"{i}.png" for i in range(200)]
    wrong = {"m1": set(range(0, 10)), "m2": set(range(5, 45)), "m3": set(range(100, 104)), "m4": set(range(0, 60))}
    preds = {(m, 0): pd.DataFrame({"path": paths, "true": truth, "pred": ["y" if i in w else "x" for i in range(200)]})
             for m, w in wrong.items()}
    tests = compare_predictions(preds, n_boot=50, n_boot_images=99)
    mc = tests[tests.test.str.startswith("mcnemar")]
    assert len(mc) == 6 and set(mc.test) == {"mcnemar_exact", "mcnemar_chi2"}
    assert mc["holm_family"].nunique() == 1
    np.testing.assert_allclose(mc["p_adjusted"], multipletests(mc["p_value"], method="holm")[1])
    # each p against statsmodels' McNemar on the pair's 2x2 table
    for r in mc.itertuples():
        ca, cb = [np.array([i not in wrong[m] for i in range(200)]) for m in (r.a, r.b)]
        table = [[int((ca & cb).sum()), int((ca & ~cb).sum())], [int((~ca & cb).sum()), int((~ca & ~cb).sum())]]
        ref = sm_mcnemar(table, exact=r.test == "mcnemar_exact", correction=True)
        assert r.p_value == pytest.approx(ref.pvalue)
        assert r.effect_size == pytest.approx(ca.mean() - cb.mean())  # acc(a) - acc(b), as the docstring says


def test_corrected_t_uses_validation_and_training_sizes():
    metrics = _metrics()
    metrics.loc[metrics.model == "vgg16", "n_val"] = 110  # the two models' rows are averaged
    metrics.loc[metrics.model == "vgg16", "accuracy"] = [0.80, 0.84, 0.81]
    tests = compare_models(metrics, ("accuracy",))
    row = tests[(tests.test == "corrected_t") & (tests.a == "resnet50") & (tests.b == "vgg16")].iloc[0]
    va = metrics[metrics.model == "resnet50"].accuracy.to_numpy()
    vb = metrics[metrics.model == "vgg16"].accuracy.to_numpy()
    # the scikit-learn-validated test with n_test = mean(n_val), not the test split's size
    ref = corrected_resampled_t_test(va, vb, n_train=200, n_test=105)
    assert row["statistic"] == pytest.approx(ref["statistic"]) and row["p_value"] == pytest.approx(ref["p_value"])
    assert row["statistic"] != pytest.approx(corrected_resampled_t_test(va, vb, 200, 50)["statistic"])


def test_signed_rank_null_distribution_by_enumerating_every_sign_pattern():
    for n in range(1, 11):
        signs = (np.arange(2 ** n)[:, None] >> np.arange(n)[None]) & 1
        t_plus = signs @ np.arange(1, n + 1)
        brute = np.bincount(t_plus, minlength=n * (n + 1) // 2 + 1) / 2 ** n
        np.testing.assert_allclose(signed_rank_null_distribution(n), brute, atol=1e-15)
    # and scipy's exact two-sided p of the signed-rank test on an untied sample
    d = np.array([0.3, -0.1, 0.7, 0.45, 1.2, -0.25, 0.9])
    ranks = st.rankdata(np.abs(d))
    t = ranks[d > 0].sum()
    pmf = signed_rank_null_distribution(7)
    m = len(pmf) - 1
    p = min(1.0, 2 * min(pmf[:int(t) + 1].sum(), pmf[int(t):].sum()))
    assert p == pytest.approx(st.wilcoxon(d, method="exact").pvalue) and m == 28


def test_signed_rank_interval_level_and_coverage():
    # the brute-force coverage of [W(k), W(M+1-k)] at the true shift, over every sign pattern of fixed ranks
    lo, hi, level = signed_rank_ci([0.4, -0.1, 0.2])
    assert level == pytest.approx(0.75) and (lo, hi) == (-0.1, 0.4)  # k = 1: the range of the Walsh averages
    lo, hi, level = signed_rank_ci(np.arange(1, 11) / 10)
    assert 0.95 <= level < 0.96  # n = 10: k = 9, coverage 1 - 2 * 21 / 1024
    assert level == pytest.approx(1 - 2 * signed_rank_null_distribution(10)[:9].sum())
    rng = np.random.default_rng(0)
    for n, reps in ((6, 3000), (15, 2000)):
        hits, levels = 0, set()
        for _ in range(reps):
            d = 0.3 + rng.standard_t(4, n)  # symmetric about 0.3, heavy tails
            lo, hi, level = signed_rank_ci(d)
            hits += lo <= 0.3 <= hi
            levels.add(round(level, 12))
        assert len(levels) == 1
        level = levels.pop()
        assert hits / reps == pytest.approx(level, abs=3.5 * np.sqrt(level * (1 - level) / reps))
    r = wilcoxon_test([0.9, 0.8, 0.85], [0.7, 0.6, 0.65])
    assert r["ci_level"] == pytest.approx(0.75) and "covers 75.0%" in r["note"]


def test_image_level_mark_sees_a_large_gap_the_fold_test_cannot():
    truth = ["x"] * 99
    paths = [f"{i}.png" for i in range(99)]
    preds = {}
    for fold in range(3):
        preds[("a", fold)] = pd.DataFrame({"path": paths, "true": truth, "pred": ["x"] * 99})
        preds[("b", fold)] = pd.DataFrame({"path": paths, "true": truth, "pred": ["y"] * 50 + ["x"] * 49})
    tests = compare_predictions(preds, n_boot=100)
    row = tests[(tests.test == "randomisation_images") & (tests.metric == "accuracy")].iloc[0]
    assert row["n"] == 99 and row["statistic"] == pytest.approx(50 / 99)
    assert row["p_adjusted"] < 0.001
    # the same gap, in fold scores that vary a little: three folds give the corrected t almost no power
    metrics = pd.DataFrame({"model": ["a"] * 3 + ["b"] * 3, "fold": [0, 1, 2] * 2,
                            "accuracy": [0.99, 0.60, 0.99, 0.44, 0.49, 0.39], "f1_macro": 0.5,
                            "n_train": 200, "n_val": 100})
    both = pd.concat([compare_models(metrics, ("accuracy",)), tests], ignore_index=True)
    table = summary_table(metrics, both, ("accuracy",))
    assert table.loc["b", "accuracy"].endswith("***")
    assert table.loc["b", "accuracy (corrected_t)"] == "ns"


def test_image_level_interval_agrees_with_scipys_bootstrap_of_fold_averaged_correctness():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 3, 150)
    pa = np.where(rng.random((3, 150)) < 0.8, y, (y + 1) % 3)
    pb = np.where(rng.random((3, 150)) < 0.7, y, (y + 2) % 3)
    r = image_paired_test(y, pa, pb, "accuracy", n_boot=4000, seed=1)
    d = (pa == y).mean(axis=0) - (pb == y).mean(axis=0)
    assert r["statistic"] == pytest.approx(d.mean())
    ref = st.bootstrap((d,), np.mean, n_resamples=4000, method="percentile", rng=np.random.default_rng(2))
    se = ref.standard_error
    assert r["ci_low"] == pytest.approx(ref.confidence_interval.low, abs=0.25 * se)
    assert r["ci_high"] == pytest.approx(ref.confidence_interval.high, abs=0.25 * se)


def test_sign_flip_p_equals_scipys_wilcoxon_with_ties_and_zeros():
    from xai_helpers.stats import signed_rank_sign_flip_p

    rng = np.random.default_rng(1)
    checked = 0
    for trial in range(40):  # scipy enumerates the sign flips: 0.5 s a call with ties
        n = int(rng.integers(3, 14))
        a = np.round(rng.normal(size=n), 1)  # rounding makes ties
        b = np.round(rng.normal(size=n) + 0.3, 1)
        if trial % 3 == 0:
            b[:2] = a[:2]  # zero differences
        if np.all(a == b):
            continue
        ref = st.wilcoxon(a, b)
        assert signed_rank_sign_flip_p(a - b) == pytest.approx(ref.pvalue, abs=1e-12)
        r = wilcoxon_test(a, b)
        assert r["p_value"] == pytest.approx(ref.pvalue, abs=1e-12) and r["statistic"] == ref.statistic
        checked += 1
    assert checked > 30


# --- edge cases that once earned marks (issue: numbers that stay honest at the edges) -----------------------------

def test_equal_fold_differences_are_not_testable_and_earn_no_mark():
    # the reproducer: every fold 0.01 apart. Before: p = 0, a zero-width interval and '***'
    a, b = [0.91, 0.85, 0.88], [0.90, 0.84, 0.87]
    for r in (paired_t_test(a, b), corrected_resampled_t_test(a, b, n_train=200, n_test=100)):
        assert np.isnan(r["p_value"]) and "not testable: zero variance" in r["note"]
        assert np.isnan(r["ci_low"]) and np.isnan(r["ci_high"])
    # the exact sign-flip p of three equal signs, which the Wilcoxon row gives
    assert wilcoxon_test(a, b)["p_value"] == pytest.approx(2 / 2 ** 3)
    metrics = pd.DataFrame({"model": ["a"] * 3 + ["b"] * 3, "fold": [0, 1, 2] * 2, "accuracy": a + b,
                            "n_train": 200, "n_val": 100})
    tests = compare_models(metrics, ["accuracy"])
    assert not (tests["p_value"] == 0).any() and not (tests["p_adjusted"] == 0).any()
    table = summary_table(metrics, tests, ["accuracy"], test="corrected_t", second_test="paired_t")
    assert table.loc["b", "accuracy"].endswith("n/a") and table.loc["b", "accuracy (paired_t)"] == "n/a"


def _exact_mcnemar(ca, cb):
    b10, b01 = int((ca & ~cb).sum()), int((~ca & cb).sum())
    if b10 + b01 == 0:
        return 1.0
    table = [[int((ca & cb).sum()), b10], [b01, int((~ca & ~cb).sum())]]
    return min(1.0, float(sm_mcnemar(table, exact=True).pvalue))


def test_randomisation_p_is_the_exact_mcnemar_p_with_one_fold():
    rng = np.random.default_rng(5)
    for n, flip in ((100, 0.03), (100, 0.1), (300, 0.2), (60, 0.5), (500, 0.08)):
        y = rng.integers(0, 3, n)
        a = np.where(rng.random(n) < 0.8, y, (y + 1) % 3)
        b = np.where(rng.random(n) < flip, (a + 1) % 3, a)   # b differs from a on ~flip of the images
        b = np.where(rng.random(n) < flip / 2, y, b)
        expected = _exact_mcnemar(a == y, b == y)
        got = image_randomisation_p(y, a[None], b[None], "accuracy")
        assert got["exact"] and got["p_value"] == pytest.approx(expected, rel=1e-9, abs=1e-15)


def test_the_headline_p_of_few_differing_images_is_the_sign_test_not_the_bootstrap_share():
    # the reproducer: 5 of 100 images, all won by a. Before: p = 0.0136 (share of resamples beyond 0)
    y = np.zeros(100, int)
    a = np.zeros((1, 100), int)
    b = a.copy()
    b[0, :5] = 1
    for metric in ("accuracy", "f1_macro"):
        r = image_paired_test(y, a, b, metric, n_boot=999)
        assert r["p_value"] == pytest.approx(2 / 2 ** 5) and r["p_value"] == pytest.approx(_exact_mcnemar(
            a[0] == y, b[0] == y))
    # one differing image: p = 1 (before: 0.002); fewer than two images: not testable
    b1 = a.copy()
    b1[0, 0] = 1
    assert image_paired_test(y, a, b1, n_boot=99)["p_value"] == 1.0
    assert np.isnan(image_paired_test(y[:1], a[:, :1], b1[:, :1], n_boot=99)["p_value"])


def _brute_force_p(y, pa, pb, metric):
    """Every swap pattern of the differing images, each fold's score from scikit-learn."""
    from sklearn.metrics import accuracy_score, f1_score

    labels = np.unique(y)

    def score(p):
        if metric == "accuracy":
            return accuracy_score(y, p)
        return f1_score(y, p, labels=labels, average="macro", zero_division=0)

    def stat(a, b):
        return np.mean([score(p) for p in a]) - np.mean([score(p) for p in b])

    differing = np.flatnonzero((pa != pb).any(axis=0))
    observed = abs(stat(pa, pb))
    far = 0
    for pattern in range(2 ** len(differing)):
        swap = np.zeros(len(y), bool)
        swap[differing[[(pattern >> j) & 1 == 1 for j in range(len(differing))]]] = True
        a2, b2 = np.where(swap, pb, pa), np.where(swap, pa, pb)
        far += abs(stat(a2, b2)) >= observed - 1e-12
    return far / 2 ** len(differing)


def test_randomisation_p_equals_brute_force_enumeration_with_several_folds():
    rng = np.random.default_rng(11)
    for trial in range(6):
        n, k = 40, 3
        y = rng.integers(0, 3, n)
        pa = np.where(rng.random((k, n)) < 0.75, y, (y + 1) % 3)
        pb = pa.copy()
        idx = rng.choice(n, 9, replace=False)  # 9 images differ, in some folds only
        pb[:, idx] = np.where(rng.random((k, 9)) < 0.6, (pa[:, idx] + 1 + trial % 2) % 3, pa[:, idx])
        for metric in ("accuracy", "f1_macro"):
            got = image_randomisation_p(y, pa, pb, metric)
            assert got["exact"]
            assert got["p_value"] == pytest.approx(_brute_force_p(y, pa, pb, metric), abs=1e-12)


def test_randomisation_p_never_below_the_sign_test_of_the_differing_images():
    rng = np.random.default_rng(2)
    for m in (3, 6, 12, 20):
        y = rng.integers(0, 2, 200)
        pa = np.tile(y, (3, 1))
        pb = pa.copy()
        idx = rng.choice(200, m, replace=False)
        pb[rng.integers(0, 3, m), idx] = 1 - y[idx]  # b wrong on one fold of each: all one way
        sign_test = min(1.0, 2 / 2 ** m)
        for metric in ("accuracy", "f1_macro"):
            assert image_randomisation_p(y, pa, pb, metric)["p_value"] >= sign_test - 1e-15


def test_monte_carlo_randomisation_p_agrees_with_the_exact_one(monkeypatch):
    import xai_helpers.stats as stats

    rng = np.random.default_rng(8)
    y = rng.integers(0, 2, 120)
    pa = np.where(rng.random((2, 120)) < 0.8, y, 1 - y)
    pb = pa.copy()
    idx = rng.choice(120, 18, replace=False)
    pb[:, idx] = np.where(rng.random((2, 18)) < 0.7, 1 - pa[:, idx], pa[:, idx])
    mc = image_randomisation_p(y, pa, pb, "f1_macro", n_perm=20000, seed=3)
    assert not mc["exact"] and mc["n_differing"] == 18
    monkeypatch.setattr(stats, "RANDOMISATION_EXACT_MAX_N", 18)
    exact = image_randomisation_p(y, pa, pb, "f1_macro")
    assert exact["exact"]
    se = np.sqrt(exact["p_value"] * (1 - exact["p_value"]) / 20000)
    assert mc["p_value"] == pytest.approx(exact["p_value"], abs=4 * se + 1e-4)
    # the accuracy path: its exact lattice distribution against random swaps too
    monkeypatch.setattr(stats, "RANDOMISATION_EXACT_MAX_WORK", 0)
    mc_acc = image_randomisation_p(y, pa, pb, "accuracy", n_perm=20000, seed=3)
    monkeypatch.undo()
    exact_acc = image_randomisation_p(y, pa, pb, "accuracy")
    se = np.sqrt(exact_acc["p_value"] * (1 - exact_acc["p_value"]) / 20000)
    assert not mc_acc["exact"] and mc_acc["p_value"] == pytest.approx(exact_acc["p_value"], abs=4 * se + 1e-4)


def test_cam_method_tests_count_each_image_once_per_explained_model():
    rng = np.random.default_rng(0)
    rows = []
    for model, layer, shift in (("resnet50", "layer2", 0.05), ("vgg16", "features.29", 0.0)):
        for i in range(8):
            for fold in range(2):
                base = rng.random()
                rows += [{"model": model, "layer": layer, "fold": fold, "path": f"{i}.png", "class": "c",
                          "method": "gradcam", "score": base},
                         {"model": model, "layer": layer, "fold": fold, "path": f"{i}.png", "class": "c",
                          "method": "xgradcam", "score": base + shift + 0.01 * rng.normal()}]
    per_image = pd.DataFrame(rows)
    both = compare_methods(per_image, ["score"], by_class=False)
    assert set(both["n"]) == {8}  # 8 images, not 16 (an image once per model)
    assert set(both["cam_model"]) == {"resnet50", "vgg16"}
    one = compare_methods(per_image[per_image.model == "resnet50"], ["score"], by_class=False)
    mine = both[both.cam_model == "resnet50"].reset_index(drop=True)
    # vgg16's tests are a Holm family of their own: they change nothing in resnet50's
    assert mine["p_adjusted"].tolist() == pytest.approx(one["p_adjusted"].tolist())
    ref = st.ttest_rel(*[per_image[(per_image.model == "resnet50") & (per_image.method == m)]
                         .groupby("path")["score"].mean().to_numpy() for m in ("gradcam", "xgradcam")])
    assert mine.loc[mine.test == "paired_t", "p_value"].iloc[0] == pytest.approx(ref.pvalue)
    assert both["holm_family"].str.contains("resnet50@layer2").sum() == 2


def test_wilson_interval_is_wilsons_closed_form():
    # Wilson (1927): (p + z²/2n ± z sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n), here against statsmodels' wrapper
    from xai_helpers.stats import wilson_interval

    z = st.norm.ppf(0.975)
    for acc, n in ((0.8, 100), (0.863, 1300), (1.0, 12), (0.0, 7)):
        centre = (acc + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(acc * (1 - acc) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        assert wilson_interval(acc, n) == pytest.approx((centre - half, centre + half), abs=1e-12)
    assert all(np.isnan(wilson_interval(0.5, 0)))
