"""Step 06: the cross-dataset summary of a study: tables next to the published values, and ``report.md``.

A *study folder* holds one run folder per dataset (``runs/paper/<dataset>/``, as the ``paper``
profiles write them), or is itself a single run folder (``runs/demo``). :func:`load_study` reads
every run folder in it; the table functions turn them into the study's tables, and
:func:`write_report` writes ``report.md`` with the protocol, the tables, the comparison with the
published numbers and the reasons they differ.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..checkpoints import read_checkpoint_meta
from ..atomic import write_text_atomic
from ..baselines import cnn_rows, is_baseline
from ..runfolder import RunFolder
from ..stats import FOLD_TEST, HEADLINE_TEST, pair_p_adjusted, paired_bootstrap, significance_mark
from .statistics import baseline_verdict, best_baseline, best_cnn
from .training import LARGE_GAP, validation_test_gap
from ..errors import RunFolderError

#: Where every published number comes from.
PUBLISHED_SOURCE = ("Chaddad et al. (2025), Generalizable and explainable deep learning for medical image "
                    "computing, arXiv:2503.08420, abstract")

#: What the study reports and this toolkit can be compared with (the numbers quoted in its text).
PUBLISHED = pd.DataFrame([
    {"quantity": "accuracy", "dataset": "skin_cancer_isic", "model": "resnet50", "method": "", "class": "",
     "published": 0.8631},
    {"quantity": "confidence_increase", "dataset": "brain_tumor_mri", "model": "resnet50", "method": "xgradcam",
     "class": "glioma", "published": 0.12},
    {"quantity": "confidence_increase", "dataset": "brain_tumor_mri", "model": "resnet50", "method": "gradcam++",
     "class": "glioma", "published": 0.09},
    {"quantity": "confidence_increase", "dataset": "brain_tumor_mri", "model": "resnet50", "method": "layercam",
     "class": "glioma", "published": 0.08},
])

PUBLISHED["source"] = PUBLISHED_SOURCE

#: The study's setting as far as it is known, for the "why the numbers differ" section.
PUBLISHED_SETTING = ("ImageNet-pretrained CNNs at 224 px on the datasets' published train/test splits "
                     "(as downloaded, duplicates included); one reported accuracy per model and dataset")


@dataclass
class DatasetRun:
    """What one dataset's run folder holds (tables are empty when a notebook has not run).

    Attributes
    ----------
    name : str
        The run folder's name.
    root : pathlib.Path
        The run folder.
    config : dict
        ``config.json``.
    metrics, tests, xai, generalization : pandas.DataFrame
        ``metrics.csv``, ``stats/paired_tests.csv``, ``xai_metrics.csv``, ``generalization.csv``.
    audit, external, training : dict
        ``data/audit.json``, ``generalization_external.json``, :func:`training_settings`.
    shortcuts, shift : pandas.DataFrame
        ``data/audit_shortcuts.csv`` and ``data/audit_shift.csv`` (empty for runs prepared before them).
    per_image : pandas.DataFrame
        ``xai_per_image.csv`` (explanation metrics per fold model, method and image).
    dataset : str
        The layout name (``metrics.csv``'s ``dataset``).

    Examples
    --------
    >>> run = load_study(example_study())[0]
    >>> run.dataset, run.root.name, len(run.metrics), run.config["image_size"]
    ('brain_tumor_mri', 'brain_tumor_mri', 6, 224)
    """

    name: str
    root: Path
    config: dict[str, Any]
    metrics: pd.DataFrame
    tests: pd.DataFrame = field(default_factory=pd.DataFrame)
    xai: pd.DataFrame = field(default_factory=pd.DataFrame)
    audit: dict[str, Any] = field(default_factory=dict)
    generalization: pd.DataFrame = field(default_factory=pd.DataFrame)
    external: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    shortcuts: pd.DataFrame = field(default_factory=pd.DataFrame)
    shift: pd.DataFrame = field(default_factory=pd.DataFrame)
    per_image: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def dataset(self) -> str:
        """The dataset's layout name (``metrics.csv``'s ``dataset`` column)."""
        if "dataset" in self.metrics and len(self.metrics):
            return str(self.metrics["dataset"].iloc[0])
        return self.config.get("dataset", self.name)


def find_dataset_runs(study_dir: str | Path) -> list[Path]:
    """Run folders of a study: ``study_dir`` itself when it holds ``metrics.csv``, else its
    sub-folders that do (sorted by name).

    Parameters
    ----------
    study_dir : str or pathlib.Path

    Returns
    -------
    list of pathlib.Path

    Examples
    --------
    >>> study = example_study()
    >>> [p.name for p in find_dataset_runs(study)], find_dataset_runs(study / "skin_cancer_isic")[0].name
    (['brain_tumor_mri', 'skin_cancer_isic'], 'skin_cancer_isic')
    """
    study_dir = Path(study_dir)
    if (study_dir / "metrics.csv").is_file():
        return [study_dir]
    return sorted(p for p in study_dir.iterdir() if p.is_dir() and (p / "metrics.csv").is_file()) \
        if study_dir.is_dir() else []


def _read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path) if path.is_file() else pd.DataFrame()


def load_study(study_dir: str | Path) -> list[DatasetRun]:
    """Every dataset run of the study folder.

    Parameters
    ----------
    study_dir : str or pathlib.Path
        ``runs/paper`` (one run folder per dataset) or a single run folder.

    Returns
    -------
    list of DatasetRun

    Raises
    ------
    FileNotFoundError
        When no run folder with a ``metrics.csv`` is found (notebook 02 has not run).

    Examples
    --------
    >>> [r.dataset for r in load_study(example_study())]
    ['brain_tumor_mri', 'skin_cancer_isic']
    """
    folders = find_dataset_runs(study_dir)
    if not folders:
        raise RunFolderError(f"{study_dir}: no run folder with a metrics.csv in it or in its sub-folders; "
                                f"run notebooks 01-05 for at least one dataset first")
    runs = []
    for folder in folders:
        run = RunFolder(folder)
        config = step_config(json.loads(run.config_file.read_text()) if run.config_file.is_file() else {})
        audit = json.loads(run.audit_file.read_text()) if run.audit_file.is_file() else {}
        metrics = run.read_metrics()
        external_file = run.generalization_external_file
        external = json.loads(external_file.read_text()) if external_file.is_file() else {}
        runs.append(DatasetRun(folder.name, folder, config, metrics, _read_csv(run.paired_tests_file),
                               _read_csv(run.xai_metrics_file), audit, _read_csv(run.generalization_file),
                               external, training_settings(run, metrics), _read_csv(run.audit_shortcuts_file),
                               _read_csv(run.audit_shift_file), _read_csv(run.xai_per_image_file)))
    return runs


#: Which step's recorded parameters the report takes each parameter from (``config.json``'s ``steps``).
STEP_PARAMETERS = {
    "01": ("dataset", "data_root", "image_size", "resize_mode", "folds", "seed", "max_per_class", "leak_policy",
           "synthetic_per_class"),
    "02": ("models", "baselines", "weights", "epochs", "batch_size", "lr", "lr_schedule", "warmup_epochs", "patience",
           "freeze_epochs",
           "class_weighted", "precision"),
    "05": ("cam_model", "cam_layer", "cam_methods", "explain_per_class"),
    "07": ("corruption_severities", "generalization_per_class", "external_data_root", "external_dataset", "class_map"),
}


def step_config(config: dict[str, Any]) -> dict[str, Any]:
    """The parameters each part of the run used: every parameter from the step that used it
    (:data:`STEP_PARAMETERS`), so that a notebook rerun alone with other values does not rewrite
    what an earlier step did; the latest values where a step left no record.

    Parameters
    ----------
    config : dict
        ``config.json``: the latest parameters, and each step's under ``steps``.

    Returns
    -------
    dict
        One value per parameter.

    Examples
    --------
    >>> step_config({"image_size": 96, "steps": {"01": {"image_size": 64}}})["image_size"]
    64
    """
    steps = config.get("steps", {}) if isinstance(config, dict) else {}
    merged = {k: v for k, v in config.items() if k != "steps"}
    for step, keys in STEP_PARAMETERS.items():
        merged.update({k: steps[step][k] for k in keys if k in steps.get(step, {})})
    return merged


def training_settings(run: RunFolder, metrics: pd.DataFrame) -> dict[str, Any]:
    """The training settings the fits actually used, read from their checkpoints (``last.pt``).

    Returns the image size and the ``TrainConfig`` fields that change results (epochs, learning
    rate per model, schedule, optimizer, BatchNorm recalibration, minimum epochs, augmentation,
    ...), each as the values seen over the fits joined by ", " (one value when every fit agrees);
    empty when no checkpoint is there. The report's protocol table shows these, not the latest
    notebook parameters.

    Parameters
    ----------
    run : RunFolder
    metrics : pandas.DataFrame
        Its ``metrics.csv`` (which fits to read).

    Returns
    -------
    dict
        Setting -> value(s) as text.

    Examples
    --------
    >>> study = load_study(example_study())[0]
    >>> settings = training_settings(RunFolder(study.root), study.metrics)
    >>> settings["epochs"], settings["lr"], settings["min_epochs"]
    ('8', 'resnet50: 0.001', '4 (half of epochs)')
    """
    seen: dict[str, set] = {}
    per_model_epochs: dict[str, dict[str, str]] = {}
    for r in metrics[["model", "fold"]].drop_duplicates().itertuples(index=False):
        path = run.checkpoint_dir(r.model, int(r.fold)) / "last.pt"
        if not path.is_file():
            continue
        meta = read_checkpoint_meta(path)  # the settings beside the weights; the weights are not read
        config = dict(meta.get("config", {}))
        if "image_size" in meta:
            config["image_size"] = meta["image_size"]
        epochs = config.get("epochs")
        if config.get("min_epochs") is None and epochs is not None:
            config = {**config, "min_epochs": f"{epochs // 2} (half of epochs)"}
        for key in ("epochs", "min_epochs"):  # per model only where the models differ (below)
            if key in config:
                per_model_epochs.setdefault(key, {})[r.model] = str(config[key])
        for key in ("lr", "batch_size", "warmup_epochs", "schedule"):  # the settings that may be set per model
            if key in config:
                value = config[key]
                config[key] = f"{r.model}: {value:g}" if isinstance(value, (int, float)) else f"{r.model}: {value}"
        for key in ("image_size", "epochs", "batch_size", "lr", "optimizer", "schedule", "weight_decay", "augment",
                    "recalibrate_bn", "bn_calibration_images", "min_epochs", "patience", "class_weighted",
                    "freeze_epochs", "warmup_epochs", "clip_grad_norm", "amp", "channels_last"):
            if key in config:
                seen.setdefault(key, set()).add(str(config[key]))
    for key, values in per_model_epochs.items():
        if len(set(values.values())) > 1:
            seen[key] = {f"{model}: {value}" for model, value in values.items()}
    return {k: ", ".join(sorted(v)) for k, v in seen.items()}


def _mean_std(values: pd.Series, digits: int = 4) -> str:
    values = values.dropna()
    if not len(values):
        return "n/a"
    if len(values) == 1:
        return f"{values.iloc[0]:.{digits}f}"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


def _mark(tests: pd.DataFrame, comparison: str, group: str, metric: str, test: str, a: str, b: str,
          cam_model: str | None = None) -> str:
    p = pair_p_adjusted(tests, comparison, group, metric, test, a, b, cam_model=cam_model)
    return "" if p is None else significance_mark(p)


def performance_table(runs: list[DatasetRun], metric_names=("accuracy", "f1_macro"),
                      test: str = HEADLINE_TEST, second_test: str | None = FOLD_TEST) -> pd.DataFrame:
    """Mean ± std over folds per dataset and model, marked against the dataset's best model.

    The mark is the Holm-adjusted significance of ``test`` between the model and the best one by
    mean of the first metric ("ref"): by default the paired randomisation test over test images of the
    fold models' results (:data:`~xai_helpers.stats.HEADLINE_TEST`). With ``second_test`` (default the
    corrected resampled t-test over the fold scores) a column ``<metric> <second_test>`` gives its mark too.

    Parameters
    ----------
    runs : list of DatasetRun
        From :func:`load_study`.
    metric_names : sequence of str
        Columns of ``metrics.csv``.
    test, second_test : str
        The ``test`` of ``paired_tests.csv`` behind the marks (``second_test`` None: one mark only).

    Returns
    -------
    pandas.DataFrame
        ``dataset, model, kind`` ('CNN' or 'baseline'), ``folds, weights``, then
        ``"0.8000 ± 0.0100 ref"``-style cells per metric (and per metric and ``second_test``), and
        with baselines in the run ``vs best baseline`` (:func:`baseline_verdict`). The reference is
        the best CNN.

    Examples
    --------
    >>> table = performance_table(load_study(example_study())).set_index(["dataset", "model"])
    >>> table.loc["skin_cancer_isic", "accuracy"].to_dict()
    {'resnet50': '0.8000 ± 0.0100 ref', 'densenet121': '0.7000 ± 0.0100 **'}
    """
    rows = []
    for r in runs:
        best = best_cnn(r.metrics, metric_names[0])
        baseline = best_baseline(r.metrics)
        for model, part in r.metrics.groupby("model", sort=False):
            row = {"dataset": r.dataset, "model": model, "kind": "baseline" if is_baseline(model) else "CNN",
                   "folds": int(part["fold"].nunique()),
                   "weights": ", ".join(sorted(part["weights"].astype(str).unique())) if "weights" in part else
                   str(r.config.get("weights", ""))}
            for metric in metric_names:
                mark = "ref" if model == best else _mark(r.tests, "models", "all", metric, test, model, best)
                row[metric] = _mean_std(part[metric]) + (f" {mark}" if mark else "")
                if second_test:
                    row[f"{metric} {second_test}"] = "ref" if model == best else \
                        _mark(r.tests, "models", "all", metric, second_test, model, best)
            if baseline is not None:
                row["vs best baseline"] = ("best baseline" if model == baseline else "" if is_baseline(model)
                                           else baseline_verdict(r.metrics, r.tests, model, baseline))
            rows.append(row)
    return pd.DataFrame(rows)


def baseline_warnings(runs: list[DatasetRun]) -> list[str]:
    """One line per dataset where a CNN's mean test accuracy is not above the best baseline's.

    Parameters
    ----------
    runs : list of DatasetRun

    Returns
    -------
    list of str

    Examples
    --------
    >>> baseline_warnings(load_study(example_study()))  # the example study has no baselines
    []
    """
    out = []
    for r in runs:
        baseline = best_baseline(r.metrics)
        if baseline is None:
            continue
        means = r.metrics.groupby("model")["accuracy"].mean()
        losers = [m for m in dict.fromkeys(cnn_rows(r.metrics)["model"]) if means[m] <= means[baseline]]
        if losers:
            out.append(f"**{r.dataset}: {', '.join(losers)} not above the best baseline** ({baseline}, mean test "
                       f"accuracy {means[baseline]:.3f}, a classifier on 32x32 grey pixels): "
                       + ", ".join(f"{m} {means[m]:.3f}" for m in losers)
                       + ". The CNN has learnt no more than a trivial model here; see the data audit's shortcuts "
                         "and shifts before reading its explanations.")
    return out


def confidence_table(runs: list[DatasetRun], metric: str = "confidence_increase") -> pd.DataFrame:
    """``metric`` per dataset, class and CAM method (mean over folds and images), marked against
    the best method of that class by the Holm-adjusted paired t-test on the same images.

    Parameters
    ----------
    runs : list of DatasetRun
        From :func:`load_study`.
    metric : str
        A column of ``xai_metrics.csv``.

    Returns
    -------
    pandas.DataFrame
        ``dataset, class, method, <metric>, n, mark``.

    Examples
    --------
    >>> conf = confidence_table(load_study(example_study()))
    >>> best = conf[(conf["dataset"] == "brain_tumor_mri") & (conf["class"] == "glioma")]
    >>> best.sort_values("confidence_increase").iloc[-1][["method", "mark"]].tolist()
    ['xgradcam', 'ref']
    """
    rows = []
    for r in runs:
        if r.xai.empty or metric not in r.xai:
            continue
        # xai_metrics.csv: mean per (model, method, class) over every fold's images
        for (model, cls), part in r.xai.groupby(["model", "class"], sort=True):
            values = part.set_index("method")[metric]
            best = str(values.idxmax())
            for method, value in values.items():
                mark = "ref" if method == best else _mark(r.tests, "cams", str(cls), metric, "paired_t", method,
                                                          best, cam_model=str(model))
                rows.append({"dataset": r.dataset, "model": model, "class": cls, "method": method,
                             metric: float(value), "mark": mark, "n": int(part.set_index("method").loc[method, "n"])})
    return pd.DataFrame(rows)


def published_comparison(runs: list[DatasetRun]) -> pd.DataFrame:
    """The published numbers next to this study's, for the datasets the study folder holds.

    Parameters
    ----------
    runs : list of DatasetRun
        From :func:`load_study`.

    Returns
    -------
    pandas.DataFrame
        One row per published number (:data:`PUBLISHED`): ``ours``, its Wilson interval
        (accuracy), ``n``, ``difference`` and the source; ``ours`` is NaN for a dataset not in the study.

    Examples
    --------
    >>> pub = published_comparison(load_study(example_study()))
    >>> pub.loc[pub["quantity"] == "accuracy", ["published", "ours"]].round(4).values.tolist()
    [[0.8631, 0.8]]
    """
    rows = []
    by_dataset = {r.dataset: r for r in runs}
    for pub in PUBLISHED.to_dict("records"):
        r = by_dataset.get(pub["dataset"])
        ours, spread, n, n_test = np.nan, np.nan, 0, 0
        lo = hi = np.nan
        if r is not None and pub["quantity"] == "accuracy":
            part = r.metrics.loc[r.metrics["model"] == pub["model"]]
            vals = part["accuracy"].dropna()
            if len(vals):
                ours, n = float(vals.mean()), len(vals)
                n_test = int(part["n_test"].median()) if "n_test" in part else 0
                spread = float(vals.std(ddof=1)) if len(vals) > 1 else np.nan
                lo, hi = wilson_interval(ours, n_test)
        readings: dict[str, Any] = {}
        if r is not None and pub["quantity"] == "confidence_increase":
            x = r.xai
            sel = x[(x["model"] == pub["model"]) & (x["method"] == pub["method"]) & (x["class"] == pub["class"])] \
                if not x.empty else x
            if len(sel):
                ours = float(sel[pub["quantity"]].iloc[0])
                n = int(sel["n_images"].iloc[0] if "n_images" in sel else sel["n"].iloc[0])
            readings = confidence_readings(r, pub["model"], pub["method"], pub["class"], pub["published"])
            lo, hi = readings.pop("change_ci_low", np.nan), readings.pop("change_ci_high", np.nan)
        rows.append({**{k: v for k, v in pub.items() if k != "source"}, "ours": ours, "ours_std": spread,
                     "ours_ci_low": lo, "ours_ci_high": hi, "n": n, "n_test": n_test,
                     "difference": ours - pub["published"] if np.isfinite(ours) else np.nan,
                     "difference_ci": (f"[{lo - pub['published']:+.4f}, {hi - pub['published']:+.4f}]"
                                       if np.isfinite(lo) else ""),
                     "share_rising": readings.get("share_rising", np.nan),
                     "share_ci_low": readings.get("share_ci_low", np.nan),
                     "share_ci_high": readings.get("share_ci_high", np.nan),
                     "reading": readings.get("reading", ""), "setting": readings.get("setting", ""),
                     "source": pub["source"]})
    return pd.DataFrame(rows)


#: Where the study explained ResNet50 (pytorch-grad-cam's default target layer, the ImageNet input size).
PUBLISHED_CAM_SETTING = {"layer": "layer4", "image_size": 224}


def confidence_readings(run: DatasetRun, model: str, method: str, cls: str, published: float,
                        n_boot: int = 4999, seed: int = 0) -> dict[str, Any]:
    """Both readings of a published "confidence increase", with 95 % intervals over images.

    * the mean change of the class score when the image is multiplied by the map
      (``confidence_increase``, pytorch-grad-cam's ``CamMultImageConfidenceChange``), in [-1, 1];
    * the share of images whose score rises (``increase_in_confidence_pct`` / 100, Chattopadhay et
      al. 2018's "Increase in Confidence"), in [0, 1].

    Each image's value is first averaged over the fold models (as in the paired tests), then the
    images are resampled (percentile bootstrap, :func:`xai_helpers.stats.paired_bootstrap`).
    ``reading`` says which reading has the published value's sign and lies nearer to it, and
    ``setting`` where this run's target layer or image size differ from the study's.

    Parameters
    ----------
    run : DatasetRun
    model, method, cls : str
        The published row's model, CAM method and class.
    published : float
    n_boot, seed : int

    Returns
    -------
    dict
        ``change_ci_low``, ``change_ci_high``, ``share_rising``, ``share_ci_low``,
        ``share_ci_high``, ``reading``, ``setting`` (empty when the run has no such images).

    Examples
    --------
    >>> confidence_readings(load_study(example_study())[0], "resnet50", "xgradcam", "glioma", 0.12)["setting"]
    'layer layer4 at 224 px: as published'
    """
    out: dict[str, Any] = {}
    layer = run.config.get("cam_layer")
    layer = PUBLISHED_CAM_SETTING["layer"] if layer in (None, "default") and model == "resnet50" else layer
    size = run.config.get("image_size")
    differs = [f"layer {layer} (published {PUBLISHED_CAM_SETTING['layer']})"
               if layer != PUBLISHED_CAM_SETTING["layer"] else f"layer {layer}",
               f"{size} px (published {PUBLISHED_CAM_SETTING['image_size']})"
               if size != PUBLISHED_CAM_SETTING["image_size"] else f"{size} px"]
    same = layer == PUBLISHED_CAM_SETTING["layer"] and size == PUBLISHED_CAM_SETTING["image_size"]
    out["setting"] = " at ".join(differs) + (": as published" if same else ": differs from the study")
    x = run.per_image
    if x.empty or "increase_in_confidence_pct" not in x:
        return out
    sel = x[(x["model"] == model) & (x["method"] == method) & (x["class"] == cls)]
    per = sel.groupby("path")[["confidence_increase", "increase_in_confidence_pct"]].mean().dropna()
    if len(per) < 2:
        return out
    change = paired_bootstrap(lambda a: a.mean(axis=1), per["confidence_increase"].to_numpy(), n_boot=n_boot,
                              seed=seed)
    share = paired_bootstrap(lambda a: a.mean(axis=1), per["increase_in_confidence_pct"].to_numpy() / 100,
                             n_boot=n_boot, seed=seed)
    out.update(change_ci_low=change["ci_low"], change_ci_high=change["ci_high"], share_rising=share["observed"],
               share_ci_low=share["ci_low"], share_ci_high=share["ci_high"])
    candidates = {"mean change": change["observed"], "share rising": share["observed"]}
    same_sign = {k: v for k, v in candidates.items() if np.sign(v) == np.sign(published)}
    if same_sign:
        best = min(same_sign, key=lambda k: abs(same_sign[k] - published))
        out["reading"] = f"{best} (sign and scale nearer the published {published:g})"
    else:
        out["reading"] = f"neither has the published sign ({published:g})"
    return out


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
    from statsmodels.stats.proportion import proportion_confint  # noqa: PLC0415 - slow import, one caller

    lo, hi = proportion_confint(accuracy * n, n, alpha=alpha, method="wilson")
    return float(lo), float(hi)


def protocol_table(runs: list[DatasetRun]) -> pd.DataFrame:
    """How each dataset was run: sizes, weights, folds, epochs, caps, duplicates removed.

    Parameters
    ----------
    runs : list of DatasetRun
        From :func:`load_study`.

    Returns
    -------
    pandas.DataFrame
        One row per dataset (the report shows it transposed).

    Examples
    --------
    >>> table = protocol_table(load_study(example_study())).set_index("dataset")
    >>> int(table.loc["brain_tumor_mri", "image_size"]), table.loc["skin_cancer_isic", "weights"]
    (224, 'none')
    """
    rows = []
    for r in runs:
        c, m, a = r.config, r.metrics, r.audit
        weights = ", ".join(sorted(m["weights"].astype(str).unique())) if "weights" in m else str(c.get("weights"))
        t = r.training
        rows.append({
            "dataset": r.dataset, "run folder": r.name, "image_size": t.get("image_size", c.get("image_size")),
            "weights": weights, "folds": int(m["fold"].nunique()), "max epochs": t.get("epochs", c.get("epochs")),
            "lr": t.get("lr", str(c.get("lr"))), "batch size": t.get("batch_size", c.get("batch_size")),
            "learning-rate warm-up (epochs)": t.get("warmup_epochs", str(c.get("warmup_epochs", 0))),
            "max_per_class": c.get("max_per_class"),
            "non-square images (resize_mode)": c.get("resize_mode", "squash"),
            "baselines (32x32 grey pixels)": ", ".join(sorted(m.loc[m["model"].map(is_baseline), "model"].unique()))
            or "none",
            "train images / fold": int(m["n_train"].median()) if "n_train" in m else None,
            "test images": int(m["n_test"].median()) if "n_test" in m else None,
            "test split": a.get("splits", {}).get("test_split"),
            "exact duplicate groups": a.get("exact_duplicate_groups"),
            "near duplicate groups": a.get("near_duplicate_groups"),
            "train images dropped as test copies": len(a.get("splits", {}).get("dropped_train_images", [])),
            "optimizer": r.training.get("optimizer"),
            "learning-rate schedule": r.training.get("schedule"),
            "minimum epochs (before early stopping)": r.training.get("min_epochs"),
            "early-stopping patience": r.training.get("patience"),
            "augmentation (flips, affine, brightness/contrast)": r.training.get("augment"),
            "BatchNorm recalibrated before each validation (images, class-stratified)":
                (f"{r.training.get('recalibrate_bn')} ({r.training.get('bn_calibration_images')})"
                 if r.training else None),
            "class-weighted loss": r.training.get("class_weighted"),
            "precision (per fit, metrics.csv)": (", ".join(sorted(m["precision"].astype(str).unique()))
                                                 if "precision" in m else "fp32"),
            "explained model": c.get("cam_model"),
            "explained class": "the predicted class" if c.get("cam_model") else None,
            "explained images / class / fold": c.get("explain_per_class") or "all",
            "CAM layer": c.get("cam_layer"),
            "training time (s)": round(float(m["train_seconds"].sum()), 0) if "train_seconds" in m else None,
        })
    return pd.DataFrame(rows)


def generalization_summary(runs: list[DatasetRun]) -> pd.DataFrame:
    """Mean accuracy per dataset and model: clean, each corruption at its worst severity, external.

    Parameters
    ----------
    runs : list of DatasetRun
        From :func:`load_study`.

    Returns
    -------
    pandas.DataFrame
        Empty when notebook 07 has run on none of the datasets.

    Examples
    --------
    >>> generalization_summary(load_study(example_study())).empty  # notebook 07 has not run there
    True
    """
    rows = []
    for r in runs:
        g = r.generalization
        if g.empty:
            continue
        worst = g["severity"].max()
        for model, part in g.groupby("model", sort=False):
            row = {"dataset": r.dataset, "model": model,
                   "clean": part.loc[part["condition"] == "clean", "accuracy"].mean()}
            for cond, sub in part.groupby("condition", sort=False):
                if cond == "clean":
                    continue
                if cond.startswith("external:"):
                    row[cond] = sub["accuracy"].mean()
                else:
                    row[f"{cond} (sev {worst})"] = sub.loc[sub["severity"] == worst, "accuracy"].mean()
            row["ece clean"] = part.loc[part["condition"] == "clean", "ece"].mean()
            ext = part[part["condition"].str.startswith("external:")]
            if len(ext):
                row["ece external"] = ext["ece"].mean()
                row["external: what was scored"] = external_note(r)
                flagged = r.external.get("shift_flagged")
                row["external shift (flagged, generalization_shift.csv)"] = (
                    ", ".join(flagged) if flagged else "none flagged" if flagged is not None else "not audited")
                row["warnings"] = "; ".join(external_warnings(
                    float(ext["accuracy"].mean()), float(row["clean"]), float(ext["ece"].mean()),
                    r.external.get("majority_class_rate")))
            rows.append(row)
    return pd.DataFrame(rows)


#: An external accuracy this far below the clean test accuracy, or an ECE above this, is a warning.
EXTERNAL_DROP_WARNING = 0.15
EXTERNAL_ECE_WARNING = 0.2


def external_warnings(external_accuracy: float, clean_accuracy: float, external_ece: float,
                      majority_class_rate: float | None) -> list[str]:
    """Warning signs of an external accuracy, in words (empty when there is none).

    Parameters
    ----------
    external_accuracy, clean_accuracy, external_ece : float
        Means over the fold models.
    majority_class_rate : float or None
        Share of the external set's largest class: what always answering it scores.

    Returns
    -------
    list of str

    Examples
    --------
    >>> for line in external_warnings(0.55, 0.9, 0.3, 0.6):
    ...     print(line)
    WARNING: 0.35 below the clean test accuracy
    WARNING: below the majority-class rate 0.60
    WARNING: ECE 0.30 > 0.2
    """
    out = []
    if clean_accuracy - external_accuracy > EXTERNAL_DROP_WARNING:
        out.append(f"WARNING: {clean_accuracy - external_accuracy:.2f} below the clean test accuracy")
    if majority_class_rate is not None and np.isfinite(majority_class_rate) and external_accuracy < majority_class_rate:
        out.append(f"WARNING: below the majority-class rate {majority_class_rate:.2f}")
    if np.isfinite(external_ece) and external_ece > EXTERNAL_ECE_WARNING:
        out.append(f"WARNING: ECE {external_ece:.2f} > {EXTERNAL_ECE_WARNING:g}")
    return out


def external_note(run: DatasetRun) -> str:
    """What an external accuracy stands on: the classes scored, those left unmapped, and the
    training images found in the external set and left out.

    Parameters
    ----------
    run : DatasetRun

    Returns
    -------
    str
        Empty when the run has no external set.

    Examples
    --------
    >>> external_note(load_study(example_study())[0])
    ''
    """
    e = run.external
    if not e:
        return ""
    parts = [f"classes scored: {', '.join(e.get('classes_evaluated', [])) or 'none'}"]
    unmapped = e.get("unmapped_classes") or {}
    if unmapped:
        parts.append("NOT scored (no matching class): " + ", ".join(f"{c} ({n} images)" for c, n in unmapped.items()))
    overlap = e.get("training_overlap")
    if overlap:
        parts.append(f"training images found and left out: {overlap.get('exact', 0)} byte copies, "
                     f"{overlap.get('near', 0)} near copies")
    elif e.get("checked_against_training") is False or "training_overlap" not in e:
        parts.append("not checked against the training images")
    return "; ".join(parts)


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


def _markdown(df: pd.DataFrame, floatfmt: str = ".4f") -> str:
    if df.empty:
        return "_(nothing to show yet)_"
    try:
        return df.to_markdown(index=False, floatfmt=floatfmt)
    except ImportError:  # tabulate missing: a plain table is still readable
        return "```\n" + df.to_string(index=False) + "\n```"


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


def write_report(study_dir: str | Path, runs: list[DatasetRun] | None = None) -> Path:
    """Write ``<study_dir>/report.md``: protocol, performance, explanations, published values,
    generalization and the reasons for the differences (notebook 06).

    Parameters
    ----------
    study_dir : str or pathlib.Path
    runs : list of DatasetRun, optional
        Default: :func:`load_study` of ``study_dir``.

    Returns
    -------
    pathlib.Path
        The report's path.

    Examples
    --------
    >>> path = write_report(example_study())
    >>> path.name, "## Why the numbers differ" in path.read_text()
    ('report.md', True)
    """
    study_dir = Path(study_dir)
    runs = runs if runs is not None else load_study(study_dir)
    perf = performance_table(runs)
    conf = confidence_table(runs)
    pub = published_comparison(runs)
    gen = generalization_summary(runs)
    explained = sorted({str(r.config.get("cam_model")) for r in runs if r.config.get("cam_model")}) or ["?"]
    lines = ["# Study report", "",
             f"Datasets: {', '.join(r.dataset for r in runs)} (run folders under `{study_dir}`).", "",
             "## Protocol", "",
             _markdown(protocol_table(runs).set_index("dataset").T.rename_axis("").reset_index()), "",
             "## Classification (mean ± std over folds)", "",
             f"Marks: Holm-adjusted paired randomisation test over the test images (`{HEADLINE_TEST}`: each "
             "image's result averaged over the fold models; under the null hypothesis the two models' predictions "
             "of an image are swapped at random, exactly or with 49,999 random swaps) against the dataset's best "
             "model (`ref`): "
             "`*` p < 0.05, `**` p < 0.01, `***` p < 0.001, `ns` not significant. The test images carry the "
             "evidence; the columns marked `corrected_t` give the Nadeau–Bengio corrected resampled t-test over "
             "the fold scores, which every fold scores on the same test split, so it is conditional on that split "
             "and has little power with few folds.", "",
             "Rows of kind `baseline` are classical models on the cached images downsampled to 32x32 grey "
             "pixels, fitted on the same folds and scored on the same test split: what a trivial model gets. "
             "`vs best baseline`: the CNN's mean test accuracy minus the best baseline's, with the Holm-adjusted "
             "image-level randomisation p (the CNN-vs-baseline tests are their own family).", "",
             _markdown(perf), ""]
    lines += [f"- {w}" for w in baseline_warnings(runs)]
    lines += ["", f"## Confidence increase per CAM method and class ({', '.join(explained)})", "",
             "Mean over explained test images (each image's value averaged over the fold models); marks: "
             "Holm-adjusted paired t-test over images against the class's best method (`ref`).", ""]
    lines += [f"- {n}" for n in explanation_notes(runs)] + [""]
    if conf.empty:
        lines.append("_(notebook 05 has not run)_")
    else:
        wide = conf.assign(cell=conf.apply(lambda r: f"{r['confidence_increase']:.4f} {r['mark']}".strip(), axis=1))
        wide = wide.pivot_table(index=["dataset", "method"], columns="class", values="cell", aggfunc="first")
        lines.append(_markdown(wide.reset_index()))
    lines += ["", "## Next to the published numbers", "", _markdown(pub), "",
              f"Source of every published number: {PUBLISHED_SOURCE}. Accuracy: `ours_ci_low`/`ours_ci_high` is the "
              "Wilson 95 % interval of our accuracy on the `n_test` test images (test-set sampling only); `n`: "
              "folds. Confidence increase, read two ways, each with a 95 % percentile-bootstrap interval over the "
              "`n` distinct explained images (each image averaged over the fold models): `ours` is the mean "
              "change of the class score when the image is multiplied by the map (pytorch-grad-cam's "
              "`CamMultImageConfidenceChange`, in [-1, 1]); `share_rising` is the share of images whose score "
              "rises (Chattopadhay et al.'s \"Increase in Confidence\" / 100, in [0, 1]). The published values "
              "are all positive and small (0.08-0.12): a share of images is positive by construction and on that "
              "scale, while a mean change of a masked image is usually negative; `reading` says which of ours has "
              "the published sign and lies nearer. `setting`: our target layer and image size against the "
              "study's (ResNet50 `layer4` at 224 px). `difference_ci`: our interval minus the published value. "
              "Rows with `nan` under `ours`: that dataset is not in this study folder.", "",
              "## Why the numbers differ", ""]
    lines += [f"- {n}" for n in difference_notes(runs)]
    lines += ["", "## Generalization (accuracy; mean over folds)", "",
              "Clean test images, each corruption at its highest severity run, and the external set "
              "(see notebook 07 for the curves, calibration and explanation stability). `external: what was "
              "scored` says which classes the external accuracy stands on and which training images were found "
              "in it; `external shift` lists the file properties that differ between the training pool and the "
              "external set (per class, `generalization_shift.csv`); `warnings` flags an external accuracy more "
              f"than {EXTERNAL_DROP_WARNING} below the clean one or below the external set's majority-class rate, "
              f"and an external ECE above {EXTERNAL_ECE_WARNING}.", "",
              _markdown(gen) if not gen.empty else "_(notebook 07 has not run)_", ""]
    path = RunFolder(study_dir).report_file
    write_text_atomic(path, "\n".join(lines))
    return path
