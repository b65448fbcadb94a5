"""Where a step's independent jobs run: in the notebook's process (``executor='local'``) or as Ray tasks
(``executor='ray'``), on this machine's cores or a cluster, with the same code and the same results.

Notebook 02's fits are independent by construction (each (model, fold) has its own seed, rows and checkpoint
folder), and so are notebook 05's and 07's evaluations of each fold model; they map onto Ray tasks directly, and
this module does not schedule, queue or pool anything itself.

* **The driver alone writes the run folder.** A task gets the job and the prepared data and returns what it
  produced (checkpoint files as bytes, predictions, table rows); the notebook's process writes them
  with the run folder's atomic writes and lock, as each task finishes. So workers need no shared filesystem,
  and an interrupted run leaves only whole results behind (resume retrains what is missing).
* **The data reach the workers through Ray's object store**: the prepared images (the uint8 cache, one array)
  are put once and every task on a node maps the same copy. With ``data_shared=True`` tasks read the images from
  the image cache file instead, which must then be at the same path on every node (a cluster filesystem): no
  copy through the object store, which matters for a large ``paper`` cache.
* **Failures.** A task whose worker dies (a node lost, a process killed) is retried by Ray (``max_retries``);
  a task that raises (bad data, a NaN loss) is not retried: the step stops with the task's own message and the
  job it belongs to (:class:`~xai_helpers.errors.TaskFailed`). Ctrl-C cancels every outstanding task.
* **Resources.** ``fit_resources`` (``{gpus: 1, cpus: 2}``) is what one fit asks Ray for; by default one GPU
  per fit on CUDA, else all of this machine's cores for one fit at a time (as the local executor) — ask for
  fewer to run fits side by side. A task sets torch's threads to the CPUs it was given, so tasks do not
  oversubscribe the cores.
"""
from __future__ import annotations

import os
import socket
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import torch

from .errors import ParameterError, TaskFailed
from .progress import tqdm

EXECUTORS = ("local", "ray")

#: Retries of a task whose worker died (Ray's ``max_retries``); exceptions raised by the task are not retried.
MAX_RETRIES = 3

_MISSING_RAY = ("executor=ray needs Ray, an optional extra: pip install -e \".[cluster]\" (or pip install "
                "\"ray[default]\"), on the driver and on every worker node")


def import_ray():
    """Ray, or a :class:`~xai_helpers.errors.ParameterError` naming the extra that installs it.

    Examples
    --------
    >>> try:
    ...     ray = import_ray()
    ... except ParameterError as err:
    ...     assert "[cluster]" in str(err)
    """
    try:
        import ray  # noqa: PLC0415 - an optional extra, imported only with executor=ray
    except ImportError:
        raise ParameterError(_MISSING_RAY) from None
    return ray


def default_fit_resources(device: str) -> dict[str, float]:
    """What one fit asks Ray for when ``fit_resources`` is not given: one GPU (and two CPUs for its data) per
    fit on CUDA, else every core of this machine (fits one after the other, as locally).

    Examples
    --------
    >>> default_fit_resources("cpu")["gpus"], default_fit_resources("cpu")["cpus"] == (os.cpu_count() or 1)
    (0, True)
    """
    if str(device).startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        return {"gpus": 1, "cpus": 2}
    return {"gpus": 0, "cpus": os.cpu_count() or 1}


def fit_resources(params: dict[str, Any]) -> dict[str, float]:
    """``params['fit_resources']`` with the defaults of :func:`default_fit_resources` filled in.

    Examples
    --------
    >>> fit_resources({"fit_resources": {"cpus": 1}, "device": "cpu"})
    {'gpus': 0, 'cpus': 1}
    """
    resources = default_fit_resources(params["device"])
    resources.update(params["fit_resources"] or {})
    return resources


def node_name() -> str:
    """The host (and Ray node, inside a task) a job ran on, for the log."""
    try:
        import ray  # noqa: PLC0415 - optional
        if ray.is_initialized():
            return f"{socket.gethostname()}:{ray.get_runtime_context().get_node_id()[:8]}"
    except ImportError:
        pass
    return socket.gethostname()


@contextmanager
def ray_session(address: str | None) -> Iterator[Any]:
    """Ray, connected for the step: a local instance started for it (``address=None``, shut down after) or an
    existing cluster (``'auto'``, ``host:port``, ``ray://host:10001``: anything ``ray.init`` takes, left running).
    """
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        extra = {}
        if os.environ.get("PYTHONPATH") and address is None:  # workers import the package as the driver does
            extra["runtime_env"] = {"env_vars": {"PYTHONPATH": os.environ["PYTHONPATH"]}}
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="warning", **extra)
        started = True
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def _run_in_task(fn: Callable, job: Any, shared: Any, cpus: float) -> tuple[Any, str, float]:
    """The body of every Ray task: torch's threads set to the CPUs granted, then the job."""
    torch.set_num_threads(max(1, int(cpus)))
    started = time.perf_counter()
    return fn(job, shared), node_name(), time.perf_counter() - started


def run_jobs(fn: Callable[[Any, Any], Any], jobs: Sequence[Any], shared: Any, params: dict[str, Any],
             on_result: Callable[[Any, Any], None], describe: Callable[[Any], str] = str,
             desc: str = "jobs", progress: bool = True) -> None:
    """Run ``fn(job, shared)`` for every job and hand each result to ``on_result(job, result)`` in this process.

    Parameters
    ----------
    fn : callable
        A module-level function (Ray ships it to the workers by reference). It must not write the run folder.
    jobs : sequence
        Picklable job descriptions (``(model, fold)``).
    shared : object
        What every job needs (the prepared data): passed as it is locally, put once into Ray's object store.
    params : dict
        Resolved parameters: ``executor``, ``ray_address``, ``fit_resources``, ``device``.
    on_result : callable
        Called in the driver, in the order the jobs finish; it writes the run folder.
    describe : callable
        The job in words, for the log and for errors (``resnet50 fold 1``).
    desc : str
        The progress bar's label.
    progress : bool

    Raises
    ------
    TaskFailed
        When a task raised: the job and the task's own error; the other tasks are cancelled.

    Examples
    --------
    >>> out = []
    >>> run_jobs(lambda job, k: job * k, [1, 2], 10, {"executor": "local"}, lambda j, r: out.append((j, r)),
    ...          progress=False)
    >>> out
    [(1, 10), (2, 20)]
    """
    executor = params["executor"]
    if executor == "local":
        for job in tqdm(jobs, desc=desc, disable=not progress):
            on_result(job, fn(job, shared))
        return
    if executor != "ray":
        raise ParameterError(f"executor: unknown value {executor!r}; accepted values: {', '.join(EXECUTORS)}")
    if not jobs:
        return
    resources = fit_resources(params)
    with ray_session(params["ray_address"]) as ray:
        task = ray.remote(_run_in_task).options(num_cpus=resources["cpus"], num_gpus=resources["gpus"],
                                                max_retries=MAX_RETRIES, retry_exceptions=False)
        shared_ref = ray.put(shared)
        pending = {task.remote(fn, job, shared_ref, resources["cpus"]): job for job in jobs}
        bar = tqdm(total=len(pending), desc=f"{desc} (ray)", disable=not progress)
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    job = pending.pop(ref)
                    try:
                        result, node, seconds = ray.get(ref)
                    except ray.exceptions.RayTaskError as err:
                        cause = err.cause if getattr(err, "cause", None) is not None else err
                        raise TaskFailed(f"{describe(job)}: {type(cause).__name__}: {cause}") from None
                    except ray.exceptions.RayError as err:  # retries used up: a worker or node kept dying
                        raise TaskFailed(f"{describe(job)}: {err}") from None
                    print(f"{describe(job)}: done on {node} in {seconds:.0f} s", flush=True)
                    on_result(job, result)
                    bar.update(1)
        except BaseException:  # Ctrl-C or a failed task: nothing else runs on
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        finally:
            bar.close()
