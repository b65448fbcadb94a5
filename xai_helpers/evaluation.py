"""Classification metrics and per-image predictions.

Arrays in, plain dicts and DataFrames out; every number is scikit-learn's.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import (accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score,
                             precision_recall_fscore_support, roc_auc_score)


def classification_metrics(y_true: Sequence[int], probs: np.ndarray, class_names: Sequence[str],
                           per_class: bool = True) -> dict[str, Any]:
    """Accuracy, balanced accuracy, macro/weighted F1, one-vs-rest ROC-AUC and per-class scores.

    Parameters
    ----------
    y_true : (N,) int array
        True class indices.
    probs : (N, K) array
        Predicted probabilities; the prediction is their argmax.
    class_names : sequence of K str
    per_class : bool
        Add ``precision_<c>``, ``recall_<c>``, ``f1_<c>`` and the confusion matrix.

    Returns
    -------
    dict
        ``accuracy``, ``balanced_accuracy``, ``f1_macro``, ``f1_weighted``, ``roc_auc_ovr``
        (macro average; NaN when a class is absent from ``y_true``), and with ``per_class`` the
        per-class scores and ``confusion_matrix`` (a nested list, rows = true classes).

    Notes
    -----
    ``f1_macro`` averages over the classes *present in* ``y_true`` (scikit-learn's
    ``f1_score(labels=present, average='macro', zero_division=0)``): a class absent from the test
    split has no F1 to average, rather than an F1 of 0. The paired tests over images
    (:func:`xai_helpers.stats.image_paired_test`) use the same label set, so the statistic they test is
    the ``f1_macro`` reported here. Per-class scores are reported for every class.

    Examples
    --------
    >>> m = classification_metrics([0, 1, 1], np.array([[.9, .1], [.2, .8], [.6, .4]]), ["a", "b"])
    >>> round(m["accuracy"], 3), round(m["f1_macro"], 3)
    (0.667, 0.667)

    A class missing from the test split (``c``) does not pull the average down:

    >>> m = classification_metrics([0, 1], np.array([[.9, .1, 0], [.2, .8, 0]]), ["a", "b", "c"])
    >>> m["f1_macro"]
    1.0
    """
    y_true = np.asarray(y_true)
    probs = np.asarray(probs, dtype=np.float64)
    k = len(class_names)
    if probs.ndim != 2 or probs.shape[1] != k or probs.shape[0] != len(y_true):
        raise ValueError(f"probs: expected shape ({len(y_true)}, {k}), got {probs.shape}")
    y_pred = probs.argmax(axis=1)
    labels = list(range(k))
    present = np.unique(y_true)
    out: dict[str, Any] = {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)) if len(y_true) else float("nan"),
        "f1_macro": (float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0))
                     if len(present) else float("nan")),
        "f1_weighted": float(f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)),
    }
    if len(present) == k and k > 1:
        if k == 2:
            out["roc_auc_ovr"] = float(roc_auc_score(y_true, probs[:, 1]))
        else:
            p = probs / probs.sum(axis=1, keepdims=True)
            out["roc_auc_ovr"] = float(roc_auc_score(y_true, p, multi_class="ovr", labels=labels))
    else:
        out["roc_auc_ovr"] = float("nan")
    if per_class:
        prec, rec, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
        for i, c in enumerate(class_names):
            out[f"precision_{c}"] = float(prec[i])
            out[f"recall_{c}"] = float(rec[i])
            out[f"f1_{c}"] = float(f1[i])
        out["confusion_matrix"] = confusion_matrix(y_true, y_pred, labels=labels).tolist()
    return out


def chance_levels(y_true: Sequence[int], n_classes: int) -> dict[str, tuple[float, str]]:
    """What a model that learnt nothing scores on these test labels, per metric, with a label for plots.

    * ``accuracy``: the no-information rate, the majority class's share (always predicting it scores that; on an
      imbalanced split it is well above one over the number of classes: chest X-ray's test split gives 0.62);
    * ``balanced_accuracy``: ``1 / K`` (a constant or a random guess recalls one class in K on average);
    * ``f1_macro``: the expected macro-F1 of a uniform random guess, ``mean_k 2 p_k / (K p_k + 1)`` with ``p_k``
      the class shares (``1 / K`` when the classes are balanced).

    Parameters
    ----------
    y_true : sequence of int
        The test split's labels.
    n_classes : int

    Returns
    -------
    dict
        Metric -> ``(value, label)``.

    Examples
    --------
    >>> levels = chance_levels([0] * 234 + [1] * 390, 2)       # chest X-ray's test split: 234 normal, 390 pneumonia
    >>> round(levels["accuracy"][0], 3), levels["accuracy"][1]
    (0.625, 'no-information rate (majority class)')
    >>> levels["balanced_accuracy"][0], round(levels["f1_macro"][0], 3)
    (0.5, 0.492)
    """
    counts = np.bincount(np.asarray(y_true, dtype=np.int64), minlength=n_classes).astype(float)
    if counts.sum() == 0:
        raise ValueError("y_true: no test labels")
    share = counts / counts.sum()
    return {"accuracy": (float(share.max()), "no-information rate (majority class)"),
            "balanced_accuracy": (1.0 / n_classes, "1/K"),
            "f1_macro": (float(np.mean(2 * share / (n_classes * share + 1))), "random guess")}


def predictions_frame(paths: Sequence[str], y_true: Sequence[int], probs: np.ndarray,
                      class_names: Sequence[str]) -> pd.DataFrame:
    """One row per image: ``path``, ``true``, ``pred`` (class names) and ``prob_<class>``."""
    probs = np.asarray(probs)
    df = pd.DataFrame({"path": list(paths),
                       "true": [class_names[i] for i in y_true],
                       "pred": [class_names[i] for i in probs.argmax(axis=1)]})
    for i, c in enumerate(class_names):
        df[f"prob_{c}"] = probs[:, i]
    return df


def reliability_table(y_true: Sequence[int], probs: np.ndarray, n_bins: int = 15) -> pd.DataFrame:
    """Reliability diagram data: per confidence bin, ``count``, mean ``confidence`` and ``accuracy``.

    The bins of :func:`expected_calibration_error`, which is the count-weighted mean of
    ``|accuracy - confidence|`` over this table.
    """
    probs = np.asarray(probs, dtype=np.float64)
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(y_true)
    edges = np.linspace(0, 1, n_bins + 1)
    bins = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    rows = []
    for b in range(n_bins):
        sel = bins == b
        rows.append({"bin": b, "bin_low": edges[b], "bin_high": edges[b + 1], "count": int(sel.sum()),
                     "confidence": float(conf[sel].mean()) if sel.any() else np.nan,
                     "accuracy": float(correct[sel].mean()) if sel.any() else np.nan})
    return pd.DataFrame(rows)


def expected_calibration_error(y_true: Sequence[int], probs: np.ndarray, n_bins: int = 15) -> float:
    """Expected calibration error of the top-class confidence, ``n_bins`` equal-width bins.

    ECE = sum_b (n_b / N) |accuracy_b - confidence_b| (Guo et al. 2017), over
    :func:`reliability_table`.
    """
    table = reliability_table(y_true, probs, n_bins)
    filled = table[table["count"] > 0]
    if filled.empty:
        return 0.0
    gap = (filled["accuracy"] - filled["confidence"]).abs()
    return float((filled["count"] * gap).sum() / filled["count"].sum())


#: A validation-vs-test gap this large (accuracy or a class's recall) is pointed out in notebook 02.
LARGE_GAP = 0.15


def validation_test_gap(metrics: pd.DataFrame, class_names: Sequence[str]) -> pd.DataFrame:
    """Validation vs test, per model and class: accuracy (``class = 'all'``) and each class's recall,
    mean over folds.

    Parameters
    ----------
    metrics : pandas.DataFrame
        ``metrics.csv`` (rows without ``val_*`` columns, from before they were recorded, give NaN).
    class_names : sequence of str

    Returns
    -------
    pandas.DataFrame
        ``model, class, validation, test, gap`` (gap = validation - test).

    Examples
    --------
    >>> m = pd.DataFrame({"model": ["a", "a"], "fold": [0, 1], "accuracy": [.5, .7], "val_accuracy": [.9, .9],
    ...                   "recall_x": [.2, .4], "val_recall_x": [.8, .8]})
    >>> validation_test_gap(m, ["x"]).round(2).values.tolist()
    [['a', 'all', 0.9, 0.6, 0.3], ['a', 'x', 0.8, 0.3, 0.5]]
    """
    rows = []
    for model, part in metrics.groupby("model", sort=False):
        for cls, test_col, val_col in [("all", "accuracy", "val_accuracy")] + [
                (c, f"recall_{c}", f"val_recall_{c}") for c in class_names]:
            val = float(part[val_col].mean()) if val_col in part else np.nan
            test = float(part[test_col].mean()) if test_col in part else np.nan
            rows.append({"model": model, "class": cls, "validation": val, "test": test, "gap": val - test})
    return pd.DataFrame(rows, columns=["model", "class", "validation", "test", "gap"])
