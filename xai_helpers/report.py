"""The cross-dataset summary of a study: tables next to the published values, and ``report.md``.

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

from .runfolder import RunFolder, write_text_atomic
from .stats import pair_p_adjusted, significance_mark

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

#: The study's setting as far as it is known, for the "why the numbers differ" section.
PUBLISHED_SETTING = ("ImageNet-pretrained CNNs at 224 px on the datasets' published train/test splits "
                     "(as downloaded, duplicates included); one reported accuracy per model and dataset")


@dataclass
class DatasetRun:
    """What one dataset's run folder holds (tables are empty when a notebook has not run)."""

    name: str
    root: Path
    config: dict[str, Any]
    metrics: pd.DataFrame
    tests: pd.DataFrame = field(default_factory=pd.DataFrame)
    xai: pd.DataFrame = field(default_factory=pd.DataFrame)
    audit: dict[str, Any] = field(default_factory=dict)
    generalization: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def dataset(self) -> str:
        """The dataset's layout name (``metrics.csv``'s ``dataset`` column)."""
        if "dataset" in self.metrics and len(self.metrics):
            return str(self.metrics["dataset"].iloc[0])
        return self.config.get("dataset", self.name)


def find_dataset_runs(study_dir: str | Path) -> list[Path]:
    """Run folders of a study: ``study_dir`` itself when it holds ``metrics.csv``, else its
    sub-folders that do (sorted by name)."""
    study_dir = Path(study_dir)
    if (study_dir / "metrics.csv").is_file():
        return [study_dir]
    return sorted(p for p in study_dir.iterdir() if p.is_dir() and (p / "metrics.csv").is_file()) \
        if study_dir.is_dir() else []


def _read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path) if path.is_file() else pd.DataFrame()


def load_study(study_dir: str | Path) -> list[DatasetRun]:
    """Every dataset run of the study folder.

    Raises
    ------
    FileNotFoundError
        When no run folder with a ``metrics.csv`` is found (notebook 02 has not run).
    """
    folders = find_dataset_runs(study_dir)
    if not folders:
        raise FileNotFoundError(f"{study_dir}: no run folder with a metrics.csv in it or in its sub-folders; "
                                f"run notebooks 01-05 for at least one dataset first")
    runs = []
    for folder in folders:
        run = RunFolder(folder)
        config = json.loads(run.config_file.read_text()) if run.config_file.is_file() else {}
        audit = json.loads(run.audit_file.read_text()) if run.audit_file.is_file() else {}
        runs.append(DatasetRun(folder.name, folder, config, run.read_metrics(), _read_csv(run.paired_tests_file),
                               _read_csv(run.xai_metrics_file), audit, _read_csv(folder / "generalization.csv")))
    return runs


def _mean_std(values: pd.Series, digits: int = 4) -> str:
    values = values.dropna()
    if not len(values):
        return "n/a"
    if len(values) == 1:
        return f"{values.iloc[0]:.{digits}f}"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


def _mark(tests: pd.DataFrame, comparison: str, group: str, metric: str, test: str, a: str, b: str) -> str:
    p = pair_p_adjusted(tests, comparison, group, metric, test, a, b)
    return "" if p is None else significance_mark(p)


def performance_table(runs: list[DatasetRun], metric_names=("accuracy", "f1_macro"),
                      test: str = "corrected_t") -> pd.DataFrame:
    """Mean ± std over folds per dataset and model, marked against the dataset's best model.

    The mark is the Holm-adjusted significance of ``test`` (default: the Nadeau-Bengio corrected
    t-test) between the model and the best one by mean of the first metric ("ref").
    """
    rows = []
    for r in runs:
        means = r.metrics.groupby("model", sort=False)[list(metric_names)].mean()
        best = str(means[metric_names[0]].idxmax())
        for model, part in r.metrics.groupby("model", sort=False):
            row = {"dataset": r.dataset, "model": model, "folds": int(part["fold"].nunique()),
                   "weights": ", ".join(sorted(part["weights"].astype(str).unique())) if "weights" in part else
                   str(r.config.get("weights", ""))}
            for metric in metric_names:
                mark = "ref" if model == best else _mark(r.tests, "models", "all", metric, test, model, best)
                row[metric] = _mean_std(part[metric]) + (f" {mark}" if mark else "")
            rows.append(row)
    return pd.DataFrame(rows)


def confidence_table(runs: list[DatasetRun], metric: str = "confidence_increase") -> pd.DataFrame:
    """``metric`` per dataset, class and CAM method (mean over folds and images), marked against
    the best method of that class by the Holm-adjusted paired t-test on the same images."""
    rows = []
    for r in runs:
        if r.xai.empty or metric not in r.xai:
            continue
        # xai_metrics.csv: mean per (model, method, class) over every fold's images
        for (model, cls), part in r.xai.groupby(["model", "class"], sort=True):
            values = part.set_index("method")[metric]
            best = str(values.idxmax())
            for method, value in values.items():
                mark = "ref" if method == best else _mark(r.tests, "cams", str(cls), metric, "paired_t", method, best)
                rows.append({"dataset": r.dataset, "model": model, "class": cls, "method": method,
                             metric: float(value), "mark": mark, "n": int(part.set_index("method").loc[method, "n"])})
    return pd.DataFrame(rows)


def published_comparison(runs: list[DatasetRun]) -> pd.DataFrame:
    """The published numbers next to this study's, for the datasets the study folder holds."""
    rows = []
    by_dataset = {r.dataset: r for r in runs}
    for pub in PUBLISHED.to_dict("records"):
        r = by_dataset.get(pub["dataset"])
        ours, spread, n = np.nan, np.nan, 0
        if r is not None and pub["quantity"] == "accuracy":
            vals = r.metrics.loc[r.metrics["model"] == pub["model"], "accuracy"].dropna()
            if len(vals):
                ours, n = float(vals.mean()), len(vals)
                spread = float(vals.std(ddof=1)) if n > 1 else np.nan
        elif r is not None and not r.xai.empty:
            x = r.xai
            sel = x[(x["model"] == pub["model"]) & (x["method"] == pub["method"]) & (x["class"] == pub["class"])]
            if len(sel):
                ours, n = float(sel[pub["quantity"]].iloc[0]), int(sel["n"].iloc[0])
        rows.append({**pub, "ours": ours, "ours_std": spread, "n": n,
                     "difference": ours - pub["published"] if np.isfinite(ours) else np.nan})
    return pd.DataFrame(rows)


def protocol_table(runs: list[DatasetRun]) -> pd.DataFrame:
    """How each dataset was run: sizes, weights, folds, epochs, caps, duplicates removed."""
    rows = []
    for r in runs:
        c, m, a = r.config, r.metrics, r.audit
        weights = ", ".join(sorted(m["weights"].astype(str).unique())) if "weights" in m else str(c.get("weights"))
        rows.append({
            "dataset": r.dataset, "run folder": r.name, "image_size": c.get("image_size"), "weights": weights,
            "folds": int(m["fold"].nunique()), "max epochs": c.get("epochs"), "lr": str(c.get("lr")),
            "max_per_class": c.get("max_per_class"),
            "train images / fold": int(m["n_train"].median()) if "n_train" in m else None,
            "test images": int(m["n_test"].median()) if "n_test" in m else None,
            "exact duplicate groups": a.get("exact_duplicate_groups"),
            "near duplicate groups": a.get("near_duplicate_groups"),
            "train images dropped as test copies": len(a.get("splits", {}).get("dropped_train_images", [])),
            "explained images / class / fold": c.get("explain_per_class") or "all",
            "CAM layer": c.get("cam_layer"),
            "training time (s)": round(float(m["train_seconds"].sum()), 0) if "train_seconds" in m else None,
        })
    return pd.DataFrame(rows)


def generalization_summary(runs: list[DatasetRun]) -> pd.DataFrame:
    """Mean accuracy per dataset and model: clean, each corruption at its worst severity, external."""
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
            rows.append(row)
    return pd.DataFrame(rows)


def difference_notes(runs: list[DatasetRun]) -> list[str]:
    """Plain-language reasons why this study's numbers differ from the published ones."""
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
            parts.append(f"at most {c['max_per_class']} training images per class were used")
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
    return notes


def _markdown(df: pd.DataFrame, floatfmt: str = ".4f") -> str:
    if df.empty:
        return "_(nothing to show yet)_"
    try:
        return df.to_markdown(index=False, floatfmt=floatfmt)
    except ImportError:  # tabulate missing: a plain table is still readable
        return "```\n" + df.to_string(index=False) + "\n```"


def write_report(study_dir: str | Path, runs: list[DatasetRun] | None = None) -> Path:
    """Write ``<study_dir>/report.md``: protocol, performance, explanations, published values,
    generalization and the reasons for the differences. Returns its path."""
    study_dir = Path(study_dir)
    runs = runs if runs is not None else load_study(study_dir)
    perf = performance_table(runs)
    conf = confidence_table(runs)
    pub = published_comparison(runs)
    gen = generalization_summary(runs)
    lines = ["# Study report", "",
             f"Datasets: {', '.join(r.dataset for r in runs)} (run folders under `{study_dir}`).", "",
             "## Protocol", "", _markdown(protocol_table(runs).set_index("dataset").T.rename_axis("").reset_index()), "",
             "## Classification (mean ± std over folds)", "",
             "Marks: Holm-adjusted Nadeau–Bengio corrected t-test against the dataset's best model (`ref`): "
             "`*` p < 0.05, `**` p < 0.01, `***` p < 0.001, `ns` not significant.", "",
             _markdown(perf), "",
             "## Confidence increase per CAM method and class (ResNet50)", "",
             "Mean over explained test images and folds; marks: Holm-adjusted paired t-test on the same images "
             "against the class's best method (`ref`).", ""]
    if conf.empty:
        lines.append("_(notebook 05 has not run)_")
    else:
        wide = conf.assign(cell=conf.apply(lambda r: f"{r['confidence_increase']:.4f} {r['mark']}".strip(), axis=1))
        wide = wide.pivot_table(index=["dataset", "method"], columns="class", values="cell", aggfunc="first")
        lines.append(_markdown(wide.reset_index()))
    lines += ["", "## Next to the published numbers", "", _markdown(pub), "",
              "Rows with `nan` under `ours`: that dataset is not in this study folder.", "",
              "## Why the numbers differ", ""]
    lines += [f"- {n}" for n in difference_notes(runs)]
    lines += ["", "## Generalization (accuracy; mean over folds)", "",
              "Clean test images, each corruption at its highest severity run, and the external set "
              "(see notebook 07 for the curves, calibration and explanation stability).", "",
              _markdown(gen) if not gen.empty else "_(notebook 07 has not run)_", ""]
    path = study_dir / "report.md"
    write_text_atomic(path, "\n".join(lines))
    return path
