"""Classical baselines: what a trivial model gets from the same images.

A CNN's accuracy means little on its own: when a gradient-boosted tree on 32x32 greyscale pixels
does as well, the dataset has an easy signal (image size, acquisition, a shortcut) and the CNN may
have learnt nothing more. Notebook 02 fits these baselines on the same folds and test split as the
CNNs; their rows in ``metrics.csv`` and ``predictions/`` carry the names of :data:`BASELINE_NAMES`.

Features are the cached images downsampled to ``32 x 32`` greyscale (area averaging; ITU-R 601
luma for colour), scaled to [0, 1]: one row of 1,024 numbers per image, read from the cache in
chunks so a memory-mapped cache is never loaded whole.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .stats import HEADLINE_TEST, pair_p_adjusted

#: The baselines, as named in ``metrics.csv`` and ``predictions/``.
BASELINE_NAMES = ("baseline_hgb", "baseline_logreg")
#: Side of the greyscale images the baselines see.
BASELINE_IMAGE_SIZE = 32
_LUMA = (0.299, 0.587, 0.114)


def is_baseline(model: str) -> bool:
    """Whether ``model`` (a ``metrics.csv`` model name) is a classical baseline, not a CNN.

    Examples
    --------
    >>> is_baseline("baseline_hgb"), is_baseline("resnet50")
    (True, False)
    """
    return str(model).startswith("baseline_")


def cnn_rows(metrics):
    """The rows of ``metrics.csv`` (a DataFrame) that are CNN fits, with a checkpoint to load.

    Examples
    --------
    >>> import pandas as pd
    >>> cnn_rows(pd.DataFrame({"model": ["resnet50", "baseline_hgb"], "fold": [0, 0]}))["model"].tolist()
    ['resnet50']
    """
    return metrics[~metrics["model"].map(is_baseline)]


def baseline_features(images: Any, rows: Sequence[int] | np.ndarray, size: int = BASELINE_IMAGE_SIZE,
                      chunk: int = 1024) -> np.ndarray:
    """``(len(rows), size * size)`` float32 features: the images of ``rows``, greyscale, area-downsampled.

    Parameters
    ----------
    images : (N, C, S, S) uint8 array, memory map or ImageRows
        The run's cached images (``C`` = 1 or 3).
    rows : int array
        Which images.
    size : int
        Side of the downsampled image (``S`` must be at least this).
    chunk : int
        Images read and converted at a time.

    Returns
    -------
    numpy.ndarray

    Examples
    --------
    >>> imgs = np.full((2, 3, 64, 64), 255, np.uint8)
    >>> f = baseline_features(imgs, [1])
    >>> f.shape, float(f.max())
    ((1, 1024), 1.0)
    """
    rows = np.asarray(rows, dtype=np.int64)
    out = np.empty((len(rows), size * size), np.float32)
    luma = torch.tensor(_LUMA).view(1, 3, 1, 1)
    for s in range(0, len(rows), chunk):
        x = torch.from_numpy(np.ascontiguousarray(images[rows[s:s + chunk]])).float().div_(255)
        if x.shape[1] == 3:
            x = (x * luma).sum(dim=1, keepdim=True)
        if x.shape[-1] < size:
            raise ValueError(f"images: {x.shape[-1]} px is smaller than the baselines' {size} px")
        out[s:s + chunk] = F.adaptive_avg_pool2d(x, size).flatten(1).numpy()
    return out


def make_baseline(name: str, seed: int):
    """An unfitted scikit-learn classifier for baseline ``name``, seeded.

    * ``baseline_hgb``: ``HistGradientBoostingClassifier`` (200 iterations at most; scikit-learn's
      ``early_stopping='auto'``, on an internal 10 % split from 10,000 images; ``random_state=seed``);
    * ``baseline_logreg``: standardised pixels, then multinomial ``LogisticRegression`` with L2
      penalty ``C=0.01`` (lbfgs, deterministic).

    Parameters
    ----------
    name : str
        One of :data:`BASELINE_NAMES`.
    seed : int

    Returns
    -------
    sklearn estimator

    Examples
    --------
    >>> make_baseline("baseline_hgb", 3).random_state
    3
    """
    if name == "baseline_hgb":
        return HistGradientBoostingClassifier(max_iter=200, early_stopping="auto", random_state=seed)
    if name == "baseline_logreg":
        return make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=2000))
    raise ValueError(f"baselines: unknown baseline {name!r}; choose from {list(BASELINE_NAMES)}")


def fit_baseline(name: str, features: np.ndarray, labels: np.ndarray, seed: int):
    """Fit baseline ``name`` on ``features`` and ``labels``; returns the fitted estimator.

    Parameters
    ----------
    name : str
        One of :data:`BASELINE_NAMES`.
    features : (N, D) float array
        From :func:`baseline_features`.
    labels : (N,) int array
    seed : int

    Returns
    -------
    sklearn estimator

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = np.r_[rng.normal(0, 1, (20, 4)), rng.normal(3, 1, (20, 4))]
    >>> y = np.r_[np.zeros(20, int), np.ones(20, int)]
    >>> model = fit_baseline("baseline_logreg", X, y, seed=0)
    >>> float((predict_baseline(model, X, 2).argmax(1) == y).mean())
    1.0
    """
    model = make_baseline(name, seed)
    model.fit(np.asarray(features), np.asarray(labels))
    return model


def predict_baseline(model, features: np.ndarray, n_classes: int) -> np.ndarray:
    """``(N, n_classes)`` probabilities of a fitted baseline (zeros for a class it never saw).

    Examples
    --------
    >>> model = fit_baseline("baseline_logreg", np.array([[0.0], [1.0]]), np.array([0, 2]), seed=0)
    >>> predict_baseline(model, np.array([[0.0]]), 3).shape
    (1, 3)
    """
    probs = model.predict_proba(np.asarray(features))
    out = np.zeros((len(probs), n_classes))
    out[:, np.asarray(model.classes_, dtype=int)] = probs
    return out


#: ``comparison`` of the tests between each CNN and the best baseline (their own Holm family).
BASELINE_COMPARISON = "cnn_vs_baseline"


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
