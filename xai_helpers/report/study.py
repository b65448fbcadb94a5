"""A study folder read back: one :class:`DatasetRun` per dataset run folder in it, with what each step recorded.

A *study folder* holds one run folder per dataset (``runs/paper/<dataset>/``, as the ``paper``
profiles write them), or is itself a single run folder (``runs/demo``). :func:`load_study` reads
every run folder in it; :func:`step_config` and :func:`training_settings` say what each step ran with
(the latter from the checkpoints, :func:`~xai_helpers.checkpoints.read_checkpoint_meta`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import STEP_PARAMETERS
from ..checkpoints import read_checkpoint_meta
from ..errors import RunFolderError
from ..runfolder import RunFolder


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
    fill_sensitivity : pandas.DataFrame
        ``xai_fill_sensitivity.csv`` (the methods' ranking under each fill of removed pixels; empty for runs before it).
    dataset : str
        The layout name (``metrics.csv``'s ``dataset``).

    Examples
    --------
    >>> from xai_helpers.examples import example_study
    >>> run = load_study(example_study())[0]
    >>> run.dataset, run.root.name, len(run.metrics), run.config["image_size"]
    ('brain_tumor_figshare', 'brain_tumor_figshare', 6, 224)
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
    fill_sensitivity: pd.DataFrame = field(default_factory=pd.DataFrame)

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
    >>> from xai_helpers.examples import example_study
    >>> study = example_study()
    >>> [p.name for p in find_dataset_runs(study)], find_dataset_runs(study / "skin_cancer_isic")[0].name
    (['brain_tumor_figshare', 'brain_tumor_mri', 'skin_cancer_isic'], 'skin_cancer_isic')
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
    >>> from xai_helpers.examples import example_study
    >>> [r.dataset for r in load_study(example_study())]
    ['brain_tumor_figshare', 'brain_tumor_mri', 'skin_cancer_isic']
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
                               _read_csv(run.audit_shift_file), _read_csv(run.xai_per_image_file),
                               _read_csv(run.xai_fill_sensitivity_file)))
    return runs


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
    >>> from xai_helpers.examples import example_study
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
