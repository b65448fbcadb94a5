"""The run folder: the only channel between notebooks.

Each notebook reads what earlier ones wrote into ``runs/<name>/`` and writes its own part, so any
notebook can be rerun alone on an existing run folder. The paths below are a contract that other
tools and checks read; extend it, keep these:

=====================================  =========================================================
path                                   what
=====================================  =========================================================
``.xai-run.json``                      the marker that makes a folder a run folder (no absolute path)
``config.json``                        resolved parameters of the last notebook run, and of every
                                       step under ``steps`` (``"01"``, ``"02"``, ...)
``notebooks/``                         executed copies of the notebooks (written by the runner)
``data/splits.csv``                    ``path, split, class, group, fold`` of every image used
``data/audit.json``                    the data audit (counts, unreadable files, duplicates)
``data/files.csv``                     each image file's size, modification time and SHA-1 at notebook 01
``data/dataset.json``                  the prepared dataset: layout, root, classes, image size, cache
``metrics.csv``                        one row per model and fold: ``dataset, model, fold,
                                       accuracy, f1_macro, ...``
``predictions/<model>_fold<k>.csv``    one row per test image: ``path, true, pred, prob_<class>``
``checkpoints/<model>_fold<k>/``       ``best.pt``, ``last.pt``, ``history.csv``
``stats/paired_tests.csv``             paired tests: ``comparison, a, b, metric, test, n,
                                       statistic, p_value, p_adjusted, ...``
``xai_per_image.csv``                  one row per model, fold, method and explained image
``xai_metrics.csv``                    its aggregate per model, method and true class
``xai_randomisation.csv``              the randomisation check's curves (notebook 05)
``xai_fill_sensitivity.csv``           the methods' ranking under each fill of removed pixels (notebook 05)
``stats/summary_table.csv``            the paper-style table of notebook 03
``generalization.csv``                 one row per model, fold and condition: ``condition,
                                       severity, accuracy, f1_macro, ece, ...`` (notebook 07)
``generalization_reliability.csv``     reliability-diagram bins (notebook 07)
``generalization_cams.csv``            CAM stability under corruption (notebook 07)
``generalization_localisation.csv``    localisation on the external set's lesion masks, with the
                                       baseline maps: one row per model, fold, method, image and
                                       metric (notebook 07; only for an external set with masks)
``generalization_external.json``       the external set: class mapping, training overlap
``report.md``                          the study summary (notebook 06; in the study folder)
``figures/*.png``                      every figure the notebooks draw
=====================================  =========================================================
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import pandas as pd

from .atomic import write_csv_atomic, write_text_atomic
from .paths import repository_root
from .errors import RunFolderError, RunFolderLocked, RunFolderRefused

#: The file that marks a folder as a run folder of this toolkit.
RUN_MARKER = ".xai-run.json"
#: The lock file held around each step's writes to shared tables.
LOCK_FILE = ".lock"
#: Seconds to wait for another run's lock before giving up (``XAI_HELPERS_LOCK_TIMEOUT`` overrides).
LOCK_TIMEOUT = 300.0


def check_run_dir(path: str | os.PathLike, repository: str | os.PathLike | None = None) -> str:
    """Whether ``path`` may be a run folder, and what it is now.

    A run folder is a new or empty folder, or one that holds the marker :data:`RUN_MARKER`. A
    folder an earlier version wrote (``config.json`` and ``notebooks/``, no marker) is adopted.
    Anything else would mix the run's files with the user's, and is refused: the file system's
    root, the home folder, the repository (``repository``) and every folder above it, and any
    non-empty folder without the marker.

    Returns
    -------
    str
        'new', 'empty', 'run' or 'legacy' (adopt with a notice).

    Raises
    ------
    RunFolderRefused
        Naming the folder and why.

    Examples
    --------
    >>> import tempfile
    >>> check_run_dir(Path(tempfile.mkdtemp()) / "runs" / "demo")
    'new'
    """
    folder = Path(path).expanduser().resolve()
    if folder == Path(folder.anchor) or folder == Path.home().resolve():
        raise RunFolderRefused(f"run_dir: {folder} is the {'root' if folder == Path(folder.anchor) else 'home'} "
                               f"folder; a run folder must be a folder of its own, e.g. runs/<name>")
    if repository is not None:
        repo = Path(repository).resolve()
        if folder == repo or repo.is_relative_to(folder):
            raise RunFolderRefused(f"run_dir: {folder} is the repository or a folder above it; the runs would "
                                   f"overwrite its files (notebooks/ among them). Use a folder of its own, e.g. "
                                   f"runs/<name>")
    if not folder.exists():
        return "new"
    if not folder.is_dir():
        raise RunFolderRefused(f"run_dir: {folder} is a file, not a folder")
    if (folder / RUN_MARKER).is_file():
        return "run"
    entries = [p for p in folder.iterdir() if p.name != LOCK_FILE]
    if not entries:
        return "empty"
    if (folder / "config.json").is_file() and (folder / "notebooks").is_dir():
        return "legacy"
    raise RunFolderRefused(f"run_dir: {folder} is not empty and is not a run folder (no {RUN_MARKER}); the run "
                           f"would mix its files with what is there. Choose a new or empty folder")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: Locks this process holds, by folder, with their depth (a step's writes may nest).
_HELD: dict[str, int] = {}


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
        self._claimed = False

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
    def files_file(self) -> Path:
        """``data/files.csv``: each prepared image file's size, modification time and SHA-1 at notebook 01."""
        return self.data_dir / "files.csv"

    @property
    def audit_metadata_file(self) -> Path:
        return self.data_dir / "audit_metadata.csv"

    @property
    def audit_shortcuts_file(self) -> Path:
        return self.data_dir / "audit_shortcuts.csv"

    @property
    def audit_shift_file(self) -> Path:
        return self.data_dir / "audit_shift.csv"

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
    def xai_randomisation_file(self) -> Path:
        return self.root / "xai_randomisation.csv"

    @property
    def xai_fill_sensitivity_file(self) -> Path:
        return self.root / "xai_fill_sensitivity.csv"

    @property
    def dataset_file(self) -> Path:
        return self.data_dir / "dataset.json"

    @property
    def summary_table_file(self) -> Path:
        return self.stats_dir / "summary_table.csv"

    @property
    def generalization_file(self) -> Path:
        return self.root / "generalization.csv"

    @property
    def generalization_reliability_file(self) -> Path:
        return self.root / "generalization_reliability.csv"

    @property
    def generalization_cams_file(self) -> Path:
        return self.root / "generalization_cams.csv"

    @property
    def generalization_localisation_file(self) -> Path:
        return self.root / "generalization_localisation.csv"

    @property
    def generalization_shift_file(self) -> Path:
        return self.root / "generalization_shift.csv"

    @property
    def generalization_external_file(self) -> Path:
        return self.root / "generalization_external.json"

    @property
    def report_file(self) -> Path:
        return self.root / "report.md"

    @property
    def figures_dir(self) -> Path:
        return self.root / "figures"

    def figure_file(self, name: str) -> Path:
        self.figures_dir.mkdir(parents=True, exist_ok=True)
        return self.figures_dir / (name if name.endswith(".png") else name + ".png")

    @property
    def marker_file(self) -> Path:
        return self.root / RUN_MARKER

    # --- ownership and locking ---------------------------------------------------------------
    def claim(self, repository: str | os.PathLike | None = None) -> str:
        """Make sure this is a run folder before anything is written (see :func:`check_run_dir`):
        create it with its marker, or adopt a folder an earlier version wrote (with a warning).

        Returns what it was: 'new', 'empty', 'run' or 'legacy'.
        """
        if repository is None:
            repository = repository_root()
        state = check_run_dir(self.root, repository)
        if state != "run":
            self.root.mkdir(parents=True, exist_ok=True)
            if state == "legacy":
                warnings.warn(f"{self.root}: a run folder written by an earlier version (no {RUN_MARKER}); "
                              f"adopted as it is", stacklevel=2)
            record = {"kind": "xai_helpers run folder", "format": 1, "adopted": state == "legacy",
                      "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            write_text_atomic(self.marker_file, json.dumps(record, indent=2))
        self._claimed = True
        return state

    def _ensure_claimed(self) -> None:
        if not self._claimed:
            self.claim()

    @contextlib.contextmanager
    def locked(self, timeout: float | None = None) -> Iterator[None]:
        """Hold the run folder's exclusive lock (a file with the holder's pid and host).

        Every read-modify-write of a shared table happens inside; the lock is held around one
        step's writes, never for a kernel's lifetime. A lock left by a dead process on this host
        is taken over with a warning; a live one is waited for at most ``timeout`` seconds
        (default :data:`LOCK_TIMEOUT`), then :class:`RunFolderLocked` names its holder.
        Re-entrant within one process.
        """
        self._ensure_claimed()
        key = str(self.root.resolve())
        if _HELD.get(key):
            _HELD[key] += 1
            try:
                yield
            finally:
                _HELD[key] -= 1
            return
        timeout = float(os.environ.get("XAI_HELPERS_LOCK_TIMEOUT", LOCK_TIMEOUT)) if timeout is None else timeout
        lock = self.root / LOCK_FILE
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        deadline = time.monotonic() + timeout
        while True:
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._lock_holder(lock)
                if holder is None:  # being written right now, or unreadable for long: see below
                    pass
                elif holder.get("host") == me["host"] and not _pid_alive(int(holder.get("pid", -1))):
                    warnings.warn(f"{lock}: stale lock of process {holder.get('pid')} (no longer running) "
                                  f"taken over", stacklevel=3)
                    lock.unlink(missing_ok=True)
                    continue
                if time.monotonic() > deadline:
                    raise RunFolderLocked(
                        f"{self.root}: locked by process {holder.get('pid') if holder else '?'} on "
                        f"{holder.get('host') if holder else '?'} for more than {timeout:.0f} s; another run is "
                        f"writing to this run folder. Wait for it, or delete {lock} if that process is gone"
                    ) from None
                time.sleep(0.05)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            break
        _HELD[key] = 1
        try:
            yield
        finally:
            _HELD.pop(key, None)
            lock.unlink(missing_ok=True)

    @staticmethod
    def _lock_holder(lock: Path) -> dict[str, Any] | None:
        try:
            return json.loads(lock.read_text())
        except (OSError, ValueError):
            try:  # a lock file that stays unreadable for 10 s was left half-written by a crash
                if time.time() - lock.stat().st_mtime > 10:
                    return {"pid": -1, "host": socket.gethostname()}
            except OSError:
                pass
            return None

    # --- readers and writers -----------------------------------------------------------------
    def require(self, path: Path, made_by: str) -> Path:
        """``path`` if it exists, else a :class:`RunFolderError` saying which notebook makes it."""
        if not path.exists():
            raise RunFolderError(f"{path} is missing: run {made_by} on run_dir={self.root} first")
        return path

    def write_config(self, params: dict[str, Any], step: str | None = None) -> None:
        """Record ``params`` as the latest parameters and, with ``step`` (``"02"``), as that step's.

        ``config.json`` keeps the latest parameters at its top level and every step's under
        ``steps``, so a notebook rerun alone with other parameters never hides what an earlier
        step used.
        """
        with self.locked():
            old = json.loads(self.config_file.read_text()) if self.config_file.is_file() else {}
            steps = dict(old.get("steps", {})) if isinstance(old, dict) else {}
            if step is not None:
                steps[step] = {k: v for k, v in params.items() if k != "steps"}
            record = {**{k: v for k, v in params.items() if k != "steps"}, "steps": steps}
            write_text_atomic(self.config_file, json.dumps(record, indent=2, sort_keys=True, default=str))

    def step_params(self, step: str) -> dict[str, Any]:
        """The parameters step ``step`` (``"01"``...) last ran with, or the latest ones if unrecorded."""
        config = self.read_config() if self.config_file.is_file() else {}
        return config.get("steps", {}).get(step) or {k: v for k, v in config.items() if k != "steps"}

    def read_config(self) -> dict[str, Any]:
        return json.loads(self.require(self.config_file, "any notebook").read_text())

    def read_splits(self) -> pd.DataFrame:
        return pd.read_csv(self.require(self.splits_file, "notebook 01"), keep_default_na=False,
                           dtype={"group": str, "mask": str})

    def read_metrics(self) -> pd.DataFrame:
        return pd.read_csv(self.require(self.metrics_file, "notebook 02"))

    def write_csv(self, df: pd.DataFrame, path: Path) -> None:
        """Write ``df`` to ``path`` atomically (unique temporary name, then rename), under the lock."""
        with self.locked():
            write_csv_atomic(df, path)

    def update_csv(self, rows: pd.DataFrame, path: Path, keys: Sequence[str],
                   arrange: Callable[[pd.DataFrame], pd.DataFrame] | None = None) -> pd.DataFrame:
        """Read-modify-write of a shared table under the lock: ``rows`` replace the table's rows with
        the same ``keys`` and join the others (another run's rows are kept); ``arrange`` (e.g. a
        sort) is applied before the one write. Returns the table."""
        with self.locked():
            old = pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=list(rows.columns))
            if len(old):
                mine = set(map(tuple, rows[list(keys)].astype(str).to_numpy()))
                keep = [tuple(k) not in mine for k in old[list(keys)].astype(str).to_numpy()]
                old = old[keep]
            table = pd.concat([old, rows], ignore_index=True) if len(old) else rows
            if arrange is not None:
                table = arrange(table).reset_index(drop=True)
            write_csv_atomic(table, path)
            return table
