"""Shortcut and shift audit: can file properties alone tell the classes apart, or the splits?

A CNN learns whatever separates the classes. When image size, colour mode, JPEG quality or
brightness do (a **shortcut**), a high accuracy may say nothing about the anatomy; when they
differ between the training pool and the test split of a class (a **shift**), the test accuracy
can collapse while validation looks fine. Both are measured on the metadata of
:func:`xai_helpers.data.metadata.image_metadata`:

* :func:`shortcut_table`: per feature, its association with the class on the training pool
  (Kruskal–Wallis with epsilon² for numbers, chi-square with Cramér's V for categories,
  Holm-adjusted), and a depth-3 decision tree predicting the class from the metadata alone
  (cross-validated balanced accuracy, permutation p-value) as ``feature = all``;
* :func:`shift_table`: per class and feature, the training pool against another set (the test
  split, or an external set): two-sample Kolmogorov–Smirnov with D as effect size for numbers,
  chi-square with Cramér's V for categories, Holm-adjusted over the table.

A row is ``flagged`` when ``p_adjusted < 0.01`` and the effect size is at least 0.3 (for the
classifier: balanced accuracy at least chance + 0.15 with permutation p < 0.01).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps
from scipy.stats.contingency import association
from sklearn.model_selection import StratifiedKFold, permutation_test_score
from sklearn.tree import DecisionTreeClassifier

from ..stats import adjust_pvalues
from .metadata import CATEGORICAL_FEATURES, NUMERIC_FEATURES

#: Flag thresholds (see the module docstring).
FLAG_P = 0.01
FLAG_EFFECT = 0.3
FLAG_ABOVE_CHANCE = 0.15
SHORTCUT_COLUMNS = ["feature", "statistic", "effect_size", "p_adjusted", "flagged", "test", "p_value", "n"]
SHIFT_COLUMNS = ["class", "feature", "statistic", "effect_size", "p_adjusted", "flagged", "test", "p_value",
                 "n_reference", "n_other"]


def epsilon_squared(groups: Sequence[Sequence[float]]) -> tuple[float, float, float]:
    """Kruskal–Wallis H, its p-value and the effect size epsilon² = H / (n - 1).

    Epsilon² (Tomczak & Tomczak 2014, ``E²_R``) is the share of the variance of the ranks that
    the groups explain: with scipy's tie-corrected H it equals the R² of a one-way ANOVA on the
    ranks (a test checks it against statsmodels).

    Parameters
    ----------
    groups : sequence of arrays
        One array of values per class (NaN dropped).

    Returns
    -------
    (H, p, epsilon²)
        NaN, 1.0, 0.0 when fewer than two groups have values or every value is the same.

    Examples
    --------
    >>> h, p, e2 = epsilon_squared([[1, 2, 3], [4, 5, 6]])
    >>> round(h, 3), round(e2, 3)
    (3.857, 0.771)
    """
    groups = [np.asarray(g, dtype=np.float64) for g in groups]
    groups = [g[np.isfinite(g)] for g in groups]
    groups = [g for g in groups if len(g)]
    n = sum(len(g) for g in groups)
    if len(groups) < 2 or n < 3 or len(np.unique(np.concatenate(groups))) < 2:
        return float("nan"), 1.0, 0.0
    h, p = sps.kruskal(*groups)
    return float(h), float(p), float(h / (n - 1))


def chi_square_cramers_v(a: Sequence, b: Sequence) -> tuple[float, float, float]:
    """Chi-square test of independence of two categorical variables, and Cramér's V.

    ``scipy.stats.chi2_contingency`` (Yates' correction only for 2x2 tables, scipy's default)
    and ``scipy.stats.contingency.association(method="cramer")`` on the contingency table.

    Returns
    -------
    (chi², p, V)
        NaN, 1.0, 0.0 when either variable has a single value.

    Examples
    --------
    >>> chi2, p, v = chi_square_cramers_v(["L"] * 10 + ["RGB"] * 10, ["x"] * 10 + ["y"] * 10)
    >>> round(v, 3), p < 0.01
    (1.0, True)
    """
    table = pd.crosstab(pd.Series(list(a), name="a"), pd.Series(list(b), name="b"))
    if table.shape[0] < 2 or table.shape[1] < 2:
        return float("nan"), 1.0, 0.0
    chi2, p, _, _ = sps.chi2_contingency(table.to_numpy())
    return float(chi2), float(p), float(association(table.to_numpy(), method="cramer"))


def _features(meta: pd.DataFrame) -> tuple[list[str], list[str]]:
    numeric = [f for f in NUMERIC_FEATURES if f in meta and meta[f].notna().any()]
    categorical = [f for f in CATEGORICAL_FEATURES if f in meta]
    return numeric, categorical


def metadata_classifier(meta: pd.DataFrame, labels: Sequence, seed: int = 0, n_permutations: int = 199,
                        max_rows: int = 10_000, max_depth: int = 3) -> dict[str, float]:
    """How well a shallow decision tree predicts the class from the metadata alone.

    Numbers as they are (missing JPEG quality as -1), categories one-hot; 5-fold stratified
    cross-validation of balanced accuracy, and scikit-learn's ``permutation_test_score``
    (``n_permutations`` label shuffles; p = (1 + #{permuted >= observed}) / (1 + n_permutations)).
    At most ``max_rows`` images, drawn stratified by class with ``seed``.

    Parameters
    ----------
    meta : pandas.DataFrame
        From :func:`~xai_helpers.data.metadata.image_metadata`.
    labels : sequence
        The class of each row.
    seed : int
    n_permutations : int
    max_rows : int
    max_depth : int

    Returns
    -------
    dict
        ``balanced_accuracy``, ``p_value``, ``chance`` (one over the number of classes), ``n``.

    Examples
    --------
    >>> meta = pd.DataFrame({"width": [512] * 30 + [256] * 30, "colour_mode": "L"})
    >>> r = metadata_classifier(meta, ["a"] * 30 + ["b"] * 30, n_permutations=99)
    >>> r["balanced_accuracy"], r["p_value"]
    (1.0, 0.01)
    """
    labels = pd.Series(list(labels), index=meta.index)
    if len(meta) > max_rows:
        rng = np.random.default_rng(seed)
        keep = np.sort(np.concatenate([
            rng.choice(np.flatnonzero(labels.to_numpy() == c),
                       size=max(1, int(round(max_rows * (labels == c).mean()))), replace=False)
            for c in labels.unique()]))
        meta, labels = meta.iloc[keep], labels.iloc[keep]
    numeric, categorical = _features(meta)
    x = pd.concat([meta[numeric].fillna(-1.0).astype(float)]
                  + [pd.get_dummies(meta[c].astype(str), prefix=c, dtype=float) for c in categorical], axis=1)
    k = labels.nunique()
    folds = min(5, int(labels.value_counts().min()))
    if k < 2 or folds < 2 or x.shape[1] == 0:
        return {"balanced_accuracy": float("nan"), "p_value": 1.0, "chance": 1.0 / max(k, 1), "n": len(meta)}
    score, _, p = permutation_test_score(
        DecisionTreeClassifier(max_depth=max_depth, random_state=seed), x.to_numpy(), labels.to_numpy(),
        cv=StratifiedKFold(folds, shuffle=True, random_state=seed), scoring="balanced_accuracy",
        n_permutations=n_permutations, random_state=seed)
    return {"balanced_accuracy": float(score), "p_value": float(p), "chance": 1.0 / k, "n": len(meta)}


def shortcut_table(meta: pd.DataFrame, labels: Sequence, seed: int = 0, n_permutations: int = 199) -> pd.DataFrame:
    """Association of each metadata feature with the class (the training pool's rows), and the
    metadata-only classifier as ``feature = 'all'``.

    Parameters
    ----------
    meta : pandas.DataFrame
        Metadata of the training pool's images.
    labels : sequence
        Their classes.
    seed, n_permutations : int
        For :func:`metadata_classifier`.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`SHORTCUT_COLUMNS`: ``statistic`` is H or chi² (the classifier: its balanced
        accuracy), ``effect_size`` epsilon² or Cramér's V (the classifier: balanced accuracy minus
        chance), ``p_adjusted`` Holm over the features (the classifier: its permutation p).

    Examples
    --------
    >>> meta = pd.DataFrame({"width": [512] * 30 + [256] * 30, "height": 512, "colour_mode": "L"})
    >>> t = shortcut_table(meta, ["a"] * 30 + ["b"] * 30)
    >>> t.set_index("feature")["flagged"].to_dict()
    {'width': True, 'height': False, 'colour_mode': False, 'all': True}
    """
    labels = np.asarray(list(labels))
    numeric, categorical = _features(meta)
    rows = []
    for f in numeric:
        values = meta[f].to_numpy(dtype=np.float64)
        h, p, e2 = epsilon_squared([values[labels == c] for c in pd.unique(labels)])
        rows.append({"feature": f, "test": "kruskal_wallis", "statistic": h, "p_value": p, "effect_size": e2,
                     "n": int(np.isfinite(values).sum())})
    for f in categorical:
        chi2, p, v = chi_square_cramers_v(meta[f].astype(str), labels)
        rows.append({"feature": f, "test": "chi_square", "statistic": chi2, "p_value": p, "effect_size": v,
                     "n": len(meta)})
    table = pd.DataFrame(rows, columns=["feature", "test", "statistic", "p_value", "effect_size", "n"])
    table["p_adjusted"] = adjust_pvalues(table["p_value"].to_numpy(), "holm") if len(table) else []
    table["flagged"] = (table["p_adjusted"] < FLAG_P) & (table["effect_size"] >= FLAG_EFFECT)
    clf = metadata_classifier(meta, labels, seed=seed, n_permutations=n_permutations)
    above = clf["balanced_accuracy"] - clf["chance"]
    table.loc[len(table)] = {"feature": "all", "test": "depth3_tree_balanced_accuracy",
                             "statistic": clf["balanced_accuracy"], "p_value": clf["p_value"], "effect_size": above,
                             "n": clf["n"], "p_adjusted": clf["p_value"],
                             "flagged": bool(above >= FLAG_ABOVE_CHANCE and clf["p_value"] < FLAG_P)}
    table["flagged"] = table["flagged"].astype(bool)
    return table[SHORTCUT_COLUMNS]


def shift_table(reference: pd.DataFrame, reference_labels: Sequence, other: pd.DataFrame,
                other_labels: Sequence) -> pd.DataFrame:
    """Per class and feature, does ``other`` (the test split, an external set) differ from the
    training pool (``reference``)?

    Parameters
    ----------
    reference, other : pandas.DataFrame
        Metadata (:func:`~xai_helpers.data.metadata.image_metadata`).
    reference_labels, other_labels : sequence
        The class of each row. Classes missing from either side are left out.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`SHIFT_COLUMNS`: ``statistic`` and ``effect_size`` are the KS D for numbers,
        chi² and Cramér's V for categories; ``p_adjusted`` is Holm over the whole table.

    Examples
    --------
    >>> ref = pd.DataFrame({"width": [512] * 40, "colour_mode": "L"})
    >>> other = pd.DataFrame({"width": [256] * 30 + [512] * 10, "colour_mode": "L"})
    >>> t = shift_table(ref, ["a"] * 40, other, ["a"] * 40)
    >>> t[["class", "feature", "effect_size", "flagged"]].values.tolist()
    [['a', 'width', 0.75, True], ['a', 'colour_mode', 0.0, False]]
    """
    ref_y, oth_y = np.asarray(list(reference_labels)), np.asarray(list(other_labels))
    numeric = [f for f in NUMERIC_FEATURES if f in reference and f in other
               and (reference[f].notna().any() or other[f].notna().any())]
    categorical = [f for f in CATEGORICAL_FEATURES if f in reference and f in other]
    rows = []
    for label in [c for c in pd.unique(ref_y) if c in set(oth_y)]:
        # select by the raw label (an int class index is not equal to its str); format only the output
        a, b, c = reference[ref_y == label], other[oth_y == label], str(label)
        for f in numeric:
            va = a[f].to_numpy(dtype=np.float64)
            vb = b[f].to_numpy(dtype=np.float64)
            va, vb = va[np.isfinite(va)], vb[np.isfinite(vb)]
            if len(va) and len(vb):
                d, p = sps.ks_2samp(va, vb)
                d, p = float(d), float(p)
            else:  # one side has no value (JPEG quality of PNG files): nothing to compare
                d, p = float("nan"), 1.0
            rows.append({"class": c, "feature": f, "test": "kolmogorov_smirnov", "statistic": d, "p_value": p,
                         "effect_size": 0.0 if np.isnan(d) else d, "n_reference": len(va), "n_other": len(vb)})
        for f in categorical:
            values = list(a[f].astype(str)) + list(b[f].astype(str))
            side = ["reference"] * len(a) + ["other"] * len(b)
            chi2, p, v = chi_square_cramers_v(values, side)
            rows.append({"class": c, "feature": f, "test": "chi_square", "statistic": chi2, "p_value": p,
                         "effect_size": v, "n_reference": len(a), "n_other": len(b)})
    table = pd.DataFrame(rows, columns=[c for c in SHIFT_COLUMNS if c not in ("p_adjusted", "flagged")])
    table["p_adjusted"] = adjust_pvalues(table["p_value"].to_numpy(), "holm") if len(table) else []
    table["flagged"] = ((table["p_adjusted"] < FLAG_P) & (table["effect_size"] >= FLAG_EFFECT)).astype(bool)
    return table[SHIFT_COLUMNS]


_WORDS = {"width": "image width", "height": "image height", "aspect_ratio": "aspect ratio",
          "jpeg_quality": "JPEG quality", "mean_intensity": "mean intensity", "colour_mode": "colour mode",
          "file_format": "file format"}


def _describe(meta: pd.DataFrame, feature: str) -> str:
    if feature in NUMERIC_FEATURES:
        v = meta[feature].dropna()
        return f"median {v.median():.4g}" if len(v) else "no values"
    top = meta[feature].astype(str).value_counts(normalize=True)
    return ", ".join(f"{k} {100 * s:.0f} %" for k, s in top.head(3).items())


def shortcut_notes(table: pd.DataFrame, meta: pd.DataFrame | None = None, labels: Sequence | None = None) -> list[str]:
    """The flagged rows of a :func:`shortcut_table` in plain words (with per-class values when
    ``meta`` and ``labels`` are given).

    Examples
    --------
    >>> meta = pd.DataFrame({"width": [512] * 30 + [256] * 30, "colour_mode": "L"})
    >>> t = shortcut_table(meta, ["a"] * 30 + ["b"] * 30, n_permutations=99)
    >>> shortcut_notes(t, meta, ["a"] * 30 + ["b"] * 30)[0][:63]
    'Shortcut: image width tells the classes apart on the training p'
    """
    out = []
    y = np.asarray(list(labels)) if labels is not None else None
    for r in table[table["flagged"]].itertuples(index=False):
        if r.feature == "all":
            out.append(f"Shortcut: a depth-3 decision tree on the file metadata alone (size, aspect, colour mode, "
                       f"format, JPEG quality, mean intensity) reaches a balanced accuracy of {r.statistic:.2f} "
                       f"(chance {r.statistic - r.effect_size:.2f}, permutation p {r.p_adjusted:.3g}): a CNN can "
                       f"score well without looking at the anatomy.")
            continue
        size = "epsilon²" if r.test == "kruskal_wallis" else "Cramér's V"
        line = (f"Shortcut: {_WORDS.get(r.feature, r.feature)} tells the classes apart on the training pool "
                f"({size} {r.effect_size:.2f}, Holm-adjusted p {r.p_adjusted:.2g})")
        if meta is not None and y is not None:
            line += ": " + "; ".join(f"{c} {_describe(meta[y == c], r.feature)}" for c in pd.unique(y))
        out.append(line + ".")
    return out


def shift_notes(table: pd.DataFrame, reference: pd.DataFrame | None = None, reference_labels: Sequence | None = None,
                other: pd.DataFrame | None = None, other_labels: Sequence | None = None,
                other_name: str = "the test split") -> list[str]:
    """The flagged rows of a :func:`shift_table` in plain words.

    Examples
    --------
    >>> t = pd.DataFrame({"class": ["a"], "feature": ["width"], "test": ["kolmogorov_smirnov"],
    ...                   "effect_size": [0.8], "p_adjusted": [1e-9], "flagged": [True]})
    >>> shift_notes(t)[0][:68]
    'Shift (class a): image width differs between the training pool and t'
    """
    out = []
    ry = np.asarray(list(reference_labels)) if reference_labels is not None else None
    oy = np.asarray(list(other_labels)) if other_labels is not None else None
    for r in table[table["flagged"]].to_dict("records"):
        c = r["class"]
        size = "KS D" if r["test"] == "kolmogorov_smirnov" else "Cramér's V"
        line = (f"Shift (class {c}): {_WORDS.get(r['feature'], r['feature'])} differs between the training pool and "
                f"{other_name} ({size} {r['effect_size']:.2f}, Holm-adjusted p {r['p_adjusted']:.2g})")
        if reference is not None and other is not None and ry is not None and oy is not None:
            line += (f": training pool {_describe(reference[ry == c], r['feature'])}, "
                     f"{other_name} {_describe(other[oy == c], r['feature'])}")
        out.append(line + ".")
    return out
