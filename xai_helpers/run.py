"""Run the numbered notebooks headlessly with papermill, for a named profile.

Usage::

    python -m xai_helpers.run --profile demo
    python -m xai_helpers.run --profile quick --set models=[resnet50,vgg16] --set epochs=2
    python -m xai_helpers.run --profile demo --only 04,05
    python -m xai_helpers.run --profile paper                      # all four real datasets
    python -m xai_helpers.run --profile paper_cpu --set dataset=skin_cancer_isic \
        --set data_root=../shared/data/skin_cancer_isic

Profiles with several datasets (``paper``, ``paper_cpu``; see ``STUDY_DATASETS``) run the
per-dataset notebooks once per dataset into ``<run_dir>/<dataset>/`` (``--set dataset=NAME``:
only that one), then the study-level notebook 06 once on ``<run_dir>``, which summarises every
dataset folder there into ``<run_dir>/report.md``. Single-dataset profiles run notebook 06 last,
on their own run folder.

``--set key=value`` values are parsed as YAML (``epochs=2`` is an int, ``interactive=false`` a
bool, ``models=[resnet50,vgg16]`` a list); an unknown key is an error. Executed copies of the
notebooks go to ``<run_dir>/notebooks/``; the resolved parameters to ``<run_dir>/config.json``.
On failure the runner names the notebook and the failing cell and exits with status 1.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import yaml

from .config import (DEFAULTS, PROFILES, STUDY_DATASETS, profile_params, project_root,
                     resolve_params, resolve_path)
from .distribution import packaged_notebooks
from .paths import repository_root
from .progress import tqdm
from .runfolder import RunFolder
from .timing import expected_time_text
from .errors import NotebookFailed, ParameterError, RunFolderRefused


def notebook_dir() -> Path:
    """The numbered notebooks: the checkout's ``notebooks/``, else those installed with the package (a wheel)."""
    packaged = packaged_notebooks() if repository_root() is None else None
    return packaged or project_root() / "notebooks"


def list_notebooks(only: Sequence[str] | None = None, folder: Path | None = None) -> list[Path]:
    """The numbered notebooks (``NN_*.ipynb``) in order, or those whose number is in ``only``."""
    folder = folder or notebook_dir()
    books = sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))
    if only:
        wanted = {o.strip().zfill(2) for o in only if o.strip()}
        known = {p.name[:2] for p in books}
        unknown = sorted(wanted - known)
        if unknown:
            raise ParameterError(f"--only: no notebook numbered {', '.join(unknown)}; "
                                 f"accepted values: {', '.join(sorted(known))}")
        books = [p for p in books if p.name[:2] in wanted]
    return books


def _numbers(value: Any) -> Any:
    """YAML 1.1 reads ``1e-4`` as a string; turn such strings (also nested) into numbers."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    return value


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """``['epochs=2', 'models=[a,b]']`` -> ``{'epochs': 2, 'models': ['a', 'b']}`` (YAML values)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ParameterError(f"--set: expected key=value, got {pair!r}")
        key, _, raw = pair.partition("=")
        key = key.strip()
        if key not in DEFAULTS:
            raise ParameterError(f"--set: unknown parameter {key!r}; accepted parameters: {', '.join(DEFAULTS)}")
        try:
            out[key] = _numbers(yaml.safe_load(raw)) if raw.strip() else None
        except yaml.YAMLError as err:
            raise ParameterError(f"--set {key}: cannot parse {raw!r} as YAML ({err})") from None
    return out


def resolve_run_params(profile: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """Profile parameters, updated by ``overrides``, with ``interactive`` False unless set, validated."""
    params = profile_params(profile)
    params["interactive"] = False
    params.update(overrides)
    return resolve_params(params)


#: Notebooks that summarise a study folder (every dataset run in it) rather than one dataset.
STUDY_LEVEL_NOTEBOOKS = ("06",)


def runner_order(books: Sequence[Path]) -> list[Path]:
    """The per-dataset notebooks in order, then the study-level ones (as the runner runs them)."""
    return ([b for b in books if b.name[:2] not in STUDY_LEVEL_NOTEBOOKS]
            + [b for b in books if b.name[:2] in STUDY_LEVEL_NOTEBOOKS])


def plan_runs(profile: str, overrides: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Parameters of each dataset run of ``profile``, and those of the study-level notebooks.

    For a profile in :data:`~xai_helpers.config.STUDY_DATASETS`, one parameter set per dataset
    (``run_dir`` = ``<run_dir>/<dataset>``, ``data_root`` from the profile unless overridden),
    or only the one named by ``dataset=``; the study-level set is the last dataset's with
    ``run_dir`` = the profile's folder. For any other profile, one set used for both.
    """
    datasets = STUDY_DATASETS.get(profile)
    if not datasets:
        params = resolve_run_params(profile, overrides)
        return [params], params
    base = profile_params(profile)
    base["interactive"] = False
    study_dir = resolve_path(overrides.get("run_dir", base["run_dir"]))
    if "dataset" in overrides:
        name = overrides["dataset"]
        root = overrides.get("data_root", datasets.get(name))
        if root is None:
            raise ParameterError(f"data_root: profile {profile!r} has no default folder for dataset {name!r}; "
                                 f"pass --set data_root=<folder>")
        chosen = {name: root}
    elif "data_root" in overrides:
        raise ParameterError(f"data_root: profile {profile!r} runs several datasets "
                             f"({', '.join(datasets)}); name the one data_root belongs to with --set dataset=NAME")
    else:
        chosen = dict(datasets)
    per_dataset = []
    for name, root in chosen.items():
        values = {**base, **overrides, "dataset": name, "data_root": root, "run_dir": str(study_dir / name)}
        per_dataset.append(resolve_params(values))
    study = dict(per_dataset[-1], run_dir=str(study_dir))
    return per_dataset, study


#: Notebooks that explain the fold models of ``cam_model``.
EXPLAINING_NOTEBOOKS = ("04", "05", "07")


def check_cam_model_is_trained(params: dict[str, Any], notebooks: Sequence[Path]) -> None:
    """Refuse, before anything runs, a run whose explaining notebooks would find no model to explain.

    Notebooks 04, 05 and 07 explain ``cam_model``'s fold models: it must be one of ``models`` (so
    notebook 02 trains it) or already trained in the run folder (notebook 02 run alone for another
    subset of models is fine).

    Raises
    ------
    ParameterError
        Naming ``cam_model`` and the models that would be trained.
    """
    numbers = {b.name[:2] for b in notebooks}
    if not numbers & set(EXPLAINING_NOTEBOOKS) or params["cam_model"] in params["models"]:
        return
    if any((Path(params["run_dir"]) / "checkpoints").glob(f"{params['cam_model']}_fold*/last.pt")):
        return
    explaining = ", ".join(sorted(numbers & set(EXPLAINING_NOTEBOOKS)))
    raise ParameterError(f"cam_model: {params['cam_model']!r} is not among models {params['models']} and has no "
                         f"checkpoint in {params['run_dir']}: notebooks {explaining} would find nothing to explain "
                         f"after notebook 02 trained the others; add it to models or choose one of them")


def _failure_message(book: Path, executed: Path, err: Exception) -> str:
    """'notebook X failed in cell [N] (`first line of the cell`): Error: message'."""
    import nbformat  # noqa: PLC0415 - only to quote the failing cell

    ename = getattr(err, "ename", type(err).__name__)
    evalue = getattr(err, "evalue", str(err))
    cell = getattr(err, "exec_count", None)
    where = f"cell [{cell}]" if cell is not None else "a cell"
    try:
        nb = nbformat.read(executed, as_version=4)
        source = next(c.source for c in nb.cells if c.get("execution_count") == cell)
        first = next((line for line in source.splitlines() if line.strip()), "")
        where += f" (`{first[:80]}`)"
    except Exception:  # noqa: BLE001 - the message is useful without the source line too
        pass
    return f"notebook {book.name} failed in {where}: {ename}: {evalue}"


def execute(params: dict[str, Any], notebooks: Sequence[Path], progress: bool = True) -> list[Path]:
    """Execute ``notebooks`` in order with ``params``; returns the executed copies.

    Raises
    ------
    NotebookFailed
        Naming the notebook, the cell (execution count) and the error.
    """
    import papermill as pm  # noqa: PLC0415 - slow import (nbclient, jupyter), only when notebooks run
    from papermill.exceptions import PapermillExecutionError  # noqa: PLC0415 - as above

    run = RunFolder(params["run_dir"])
    try:
        run.claim()
    except RunFolderRefused as err:
        raise ParameterError(str(err)) from None
    run.notebooks_dir.mkdir(parents=True, exist_ok=True)
    run.write_config(params)
    outputs = []
    for book in tqdm(notebooks, desc=f"notebooks ({Path(params['run_dir']).name})", disable=not progress):
        out = run.notebooks_dir / book.name
        if out.resolve() == book.resolve() or out.parent.resolve() == notebook_dir().resolve():
            raise ParameterError(f"run_dir: the executed copy of {book.name} would overwrite the source notebook "
                                 f"{book}; choose another run_dir")
        started = time.perf_counter()
        try:
            # in a checkout the kernel starts in notebooks/; from an installed wheel in the working folder, where
            # relative paths (data, cache, runs) belong
            cwd = book.parent if repository_root() is not None else Path.cwd()
            pm.execute_notebook(str(book), str(out), parameters=params, cwd=str(cwd),
                                progress_bar=progress, report_mode=False,
                                kernel_manager_class=ipc_kernel_manager_class(),
                                # one stream per cell with its carriage returns applied: a finished
                                # text bar is one line (xai_helpers.progress)
                                coalesce_streams=True)
        except PapermillExecutionError as err:
            raise NotebookFailed(_failure_message(book, out, err) + f"; executed copy: {out}") from err
        print(f"{book.name}: done in {time.perf_counter() - started:.0f} s -> {out}", flush=True)
        outputs.append(out)
    return outputs


def ipc_kernel_manager_class() -> type:
    """A Jupyter kernel manager that talks to its kernel over local IPC sockets instead of TCP.

    Over TCP without encryption, every kernel logs "Kernel is running over TCP without encryption"
    into the run's output (and opens local ports); a headless run on one machine needs neither. The
    socket files live in a temporary folder of their own (not in the notebooks' folder, papermill's
    working directory) and are removed with the kernel.

    Returns
    -------
    type
        A subclass of ``jupyter_client``'s ``AsyncKernelManager`` (what nbclient uses), for papermill's
        ``kernel_manager_class``.
    """
    import shutil  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    from jupyter_client.manager import AsyncKernelManager  # noqa: PLC0415 - only when notebooks run

    class IPCKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs: Any) -> None:
            self._socket_dir = tempfile.mkdtemp(prefix="xai-kernel-")
            kwargs.setdefault("transport", "ipc")
            kwargs.setdefault("ip", str(Path(self._socket_dir) / "kernel"))
            super().__init__(**kwargs)

        async def _async_cleanup_resources(self, restart: bool = False) -> None:
            await super()._async_cleanup_resources(restart=restart)
            if not restart:
                shutil.rmtree(self._socket_dir, ignore_errors=True)

    return IPCKernelManager


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xai_helpers.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", required=True, help=f"one of: {', '.join(PROFILES)}")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a notebook parameter (YAML value); repeatable")
    parser.add_argument("--only", default=None, help="comma-separated notebook numbers, e.g. 01,02")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--no-estimate", action="store_true",
                        help="skip the few-second probe that estimates each notebook's time on this machine")
    args = parser.parse_args(argv)
    try:
        per_dataset, study = plan_runs(args.profile, parse_overrides(args.set))
        if len(per_dataset) > 1 or per_dataset[0]["run_dir"] != study["run_dir"]:
            try:  # the study folder holds the dataset folders: it is a run folder of its own
                RunFolder(study["run_dir"]).claim()
            except RunFolderRefused as err:
                raise ParameterError(str(err)) from None
        books = list_notebooks(args.only.split(",") if args.only else None)
        dataset_books = [b for b in books if b.name[:2] not in STUDY_LEVEL_NOTEBOOKS]
        study_books = [b for b in books if b.name[:2] in STUDY_LEVEL_NOTEBOOKS]
        for params in per_dataset:  # every check before the first notebook starts
            check_cam_model_is_trained(params, dataset_books)
        if not args.no_estimate:
            estimate = expected_time_text(args.profile, per_dataset[0], [b.name[:2] for b in books])
            if estimate:
                print(estimate + (f"; per dataset, {len(per_dataset)} datasets" if len(per_dataset) > 1 else ""),
                      flush=True)
        started = time.perf_counter()
        for params in per_dataset:
            if dataset_books:
                t0 = time.perf_counter()
                execute(params, dataset_books, progress=not args.no_progress)
                print(f"{params['dataset']}: {len(dataset_books)} notebook(s) in {time.perf_counter() - t0:.0f} s "
                      f"-> {params['run_dir']}", flush=True)
        if study_books:
            execute(study, study_books, progress=not args.no_progress)
    except (ParameterError, NotebookFailed) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"all {len(books)} notebook(s) done in {time.perf_counter() - started:.0f} s; "
          f"outputs in {study['run_dir']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
