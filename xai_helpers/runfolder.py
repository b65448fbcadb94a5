"""The run folder: the only channel between notebooks.

Each notebook reads what earlier ones wrote into ``runs/<name>/`` and writes its own part, so any
notebook can be rerun alone on an existing run folder. The paths below are a contract that other
tools and checks read; extend it, keep these:

=====================================  =========================================================
path                                   what
=====================================  =========================================================
``config.json``                        resolved parameters of the last notebook run
``notebooks/``                         executed copies of the notebooks (written by the runner)
``data/splits.csv``                    ``path, split, class, group, fold`` of every image used
``data/audit.json``                    the data audit (counts, unreadable files, duplicates)
``metrics.csv``                        one row per model and fold: ``dataset, model, fold,
                                       accuracy, f1_macro, ...``
``predictions/<model>_fold<k>.csv``    one row per test image: ``path, true, pred, prob_<class>``
``checkpoints/<model>_fold<k>/``       ``best.pt``, ``last.pt``, ``history.csv``
``stats/paired_tests.csv``             paired tests: ``comparison, a, b, metric, test, n,
                                       statistic, p_value, p_adjusted, ...``
``xai_per_image.csv``                  one row per model, fold, method and explained image
``xai_metrics.csv``                    its aggregate per model, method and true class
``generalization.csv``                 one row per model, fold and condition: ``condition,
                                       severity, accuracy, f1_macro, ece, ...`` (notebook 07)
``generalization_cams.csv``            CAM stability under corruption (notebook 07)
``report.md``                          the study summary (notebook 06; in the study folder)
``figures/*.png``                      every figure the notebooks draw
=====================================  =========================================================
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd


class RunFolderError(FileNotFoundError):
    """An artefact a notebook needs is not in the run folder yet."""


class RunFolder:
    """Paths and small readers/writers of one run folder.

    Parameters
    ----------
    root : path
        ``runs/<name>``; created on first write.

    Examples
    --------
    >>> import tempfile
    >>> run = RunFolder(tempfile.mkdtemp())
    >>> run.predictions_file("resnet50", 0).name
    'resnet50_fold0.csv'
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.root)!r})"

    # --- paths -------------------------------------------------------------------------------
    @property
    def config_file(self) -> Path:
        return self.root / "config.json"

    @property
    def notebooks_dir(self) -> Path:
        return self.root / "notebooks"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def splits_file(self) -> Path:
        return self.data_dir / "splits.csv"

    @property
    def audit_file(self) -> Path:
        return self.data_dir / "audit.json"

    @property
    def metrics_file(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def predictions_dir(self) -> Path:
        return self.root / "predictions"

    def predictions_file(self, model: str, fold: int) -> Path:
        return self.predictions_dir / f"{model}_fold{fold}.csv"

    def checkpoint_dir(self, model: str, fold: int) -> Path:
        return self.root / "checkpoints" / f"{model}_fold{fold}"

    @property
    def stats_dir(self) -> Path:
        return self.root / "stats"

    @property
    def paired_tests_file(self) -> Path:
        return self.stats_dir / "paired_tests.csv"

    @property
    def xai_per_image_file(self) -> Path:
        return self.root / "xai_per_image.csv"

    @property
    def xai_metrics_file(self) -> Path:
        return self.root / "xai_metrics.csv"

    @property
    def figures_dir(self) -> Path:
        return self.root / "figures"

    def figure_file(self, name: str) -> Path:
        self.figures_dir.mkdir(parents=True, exist_ok=True)
        return self.figures_dir / (name if name.endswith(".png") else name + ".png")

    # --- readers and writers -----------------------------------------------------------------
    def require(self, path: Path, made_by: str) -> Path:
        """``path`` if it exists, else a :class:`RunFolderError` saying which notebook makes it."""
        if not path.exists():
            raise RunFolderError(f"{path} is missing: run {made_by} on run_dir={self.root} first")
        return path

    def write_config(self, params: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.config_file, json.dumps(params, indent=2, sort_keys=True, default=str))

    def read_config(self) -> dict[str, Any]:
        return json.loads(self.require(self.config_file, "any notebook").read_text())

    def read_splits(self) -> pd.DataFrame:
        return pd.read_csv(self.require(self.splits_file, "notebook 01"), keep_default_na=False,
                           dtype={"group": str, "mask": str})

    def read_metrics(self) -> pd.DataFrame:
        return pd.read_csv(self.require(self.metrics_file, "notebook 02"))

    def write_csv(self, df: pd.DataFrame, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        df.to_csv(tmp, index=False)
        os.replace(tmp, path)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file, so a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
