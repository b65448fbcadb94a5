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
* **Resources.** ``fit_resources`` (``{gpus: 1, cpus: 2}``) is what one task asks Ray for. By default, on a Ray
  instance started for the run: one GPU per task on CUDA, else all of this machine's cores for one task at a time
  (as the local executor). On a cluster the run joins (``ray_address``), the default comes from the nodes that are
  there (:func:`cluster_fit_resources`): one GPU (and up to two CPUs) per task where a node has a GPU, else the CPUs
  of the smallest node, so that every node can take tasks. A task sets torch's threads to the CPUs it was given, so
  tasks do not oversubscribe the cores.
* **Nothing waits forever.** Before the first task, the request is checked against every alive node's total
  resources (:func:`check_servable`): a request no node can ever serve is refused at once, naming the request and
  the largest node, instead of queueing tasks that Ray would keep pending. While tasks run, the log says how many
  wait for a free node, so a busy cluster is told apart from a stuck one.
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

#: Seconds between the log's lines on tasks waiting for resources, while no task finishes.
WAIT_REPORT_SECONDS = 5.0

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
    """What one task asks a Ray instance started for the run for, when ``fit_resources`` is not given: one GPU (and
    two CPUs for its data) per task on CUDA, else every core of this machine (tasks one after the other, as locally).

    Examples
    --------
    >>> default_fit_resources("cpu")["gpus"], default_fit_resources("cpu")["cpus"] == (os.cpu_count() or 1)
    (0, True)
    """
    if str(device).startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        return {"gpus": 1, "cpus": 2}
    return {"gpus": 0, "cpus": os.cpu_count() or 1}


def fit_resources(params: dict[str, Any], nodes: Sequence[dict[str, Any]] | None = None) -> dict[str, float]:
    """What each task asks Ray for: ``params['fit_resources']``, its missing keys filled in from the default.

    The default is :func:`default_fit_resources` on a Ray instance started for the run (``ray_address`` None, or
    ``nodes`` not given), and :func:`cluster_fit_resources` of ``nodes`` on a cluster the run joined.

    Parameters
    ----------
    params : dict
        Resolved parameters: ``fit_resources``, ``device``, ``ray_address``.
    nodes : list of dict, optional
        The cluster's alive nodes (:func:`alive_nodes`).

    Returns
    -------
    dict
        ``{'gpus': ..., 'cpus': ...}``

    Examples
    --------
    >>> fit_resources({"fit_resources": {"cpus": 1}, "device": "cpu", "ray_address": None})
    {'gpus': 0, 'cpus': 1}
    >>> two_small = [{"node": "a", "CPU": 1.0, "GPU": 0.0}, {"node": "b", "CPU": 1.0, "GPU": 0.0}]
    >>> fit_resources({"fit_resources": None, "device": "cpu", "ray_address": "10.0.0.1:6379"}, two_small)
    {'gpus': 0, 'cpus': 1.0}
    """
    if params["ray_address"] is not None and nodes:
        resources = cluster_fit_resources(nodes)
    else:
        resources = default_fit_resources(params["device"])
    resources.update(params["fit_resources"] or {})
    return resources


def alive_nodes(ray: Any) -> list[dict[str, Any]]:
    """The alive nodes of the cluster Ray is connected to: each node's name (address and id) and its total CPUs
    and GPUs (``ray.nodes()``)."""
    nodes = []
    for node in ray.nodes():
        if not node.get("Alive", node.get("alive", False)):
            continue
        total = node.get("Resources", {})
        nodes.append({"node": f"{node.get('NodeManagerAddress', '?')}:{str(node.get('NodeID', ''))[:8]}",
                      "CPU": float(total.get("CPU", 0.0)), "GPU": float(total.get("GPU", 0.0))})
    return nodes


def cluster_fit_resources(nodes: Sequence[dict[str, Any]]) -> dict[str, float]:
    """The default request of a task on a cluster the run joined, from the nodes that are there.

    The rule: where some node has a GPU, one GPU per task and two CPUs (or fewer, when the smallest GPU node has
    fewer); else the CPUs of the smallest node that has any, so that every node can run tasks and none waits for a
    node larger than the cluster has.

    Parameters
    ----------
    nodes : list of dict
        :func:`alive_nodes`.

    Returns
    -------
    dict

    Examples
    --------
    >>> cluster_fit_resources([{"CPU": 8.0, "GPU": 0.0}, {"CPU": 2.0, "GPU": 0.0}])
    {'gpus': 0, 'cpus': 2.0}
    >>> cluster_fit_resources([{"CPU": 2.0, "GPU": 0.0}, {"CPU": 16.0, "GPU": 4.0}])
    {'gpus': 1, 'cpus': 2.0}
    """
    gpu_nodes = [n for n in nodes if n["GPU"] >= 1]
    if gpu_nodes:
        return {"gpus": 1, "cpus": min(2.0, min(n["CPU"] for n in gpu_nodes)) or 0.5}
    cpus = [n["CPU"] for n in nodes if n["CPU"] > 0]
    return {"gpus": 0, "cpus": min(cpus) if cpus else 1}


def _request(resources: dict[str, float]) -> dict[str, float]:
    """``{'gpus': 1, 'cpus': 2}`` in Ray's resource names, without the zeros: ``{'CPU': 2.0, 'GPU': 1.0}``."""
    return {name: float(resources[key]) for key, name in (("cpus", "CPU"), ("gpus", "GPU")) if resources[key]}


def _fits(node: dict[str, Any], request: dict[str, float]) -> bool:
    return all(node.get(name, 0.0) >= amount for name, amount in request.items())


def check_servable(resources: dict[str, float], nodes: Sequence[dict[str, Any]], what: str = "a task") -> list[str]:
    """The names of the nodes that can serve one task's request, or a :class:`ParameterError` when none can.

    Ray keeps a task whose request no node can ever meet pending forever; this turns that wait into an error
    before any task is queued.

    Parameters
    ----------
    resources : dict
        ``{'gpus': ..., 'cpus': ...}`` (:func:`fit_resources`).
    nodes : list of dict
        :func:`alive_nodes`.
    what : str
        The task in words, for the message.

    Returns
    -------
    list of str

    Raises
    ------
    ParameterError
        ``"a fit needs {'CPU': 2.0}; the largest node has {'CPU': 1.0}: set fit_resources={cpus: 1} or add a
        larger node"``.

    Examples
    --------
    >>> nodes = [{"node": "a", "CPU": 1.0, "GPU": 0.0}, {"node": "b", "CPU": 1.0, "GPU": 0.0}]
    >>> check_servable({"gpus": 0, "cpus": 1}, nodes)
    ['a', 'b']
    >>> try:
    ...     check_servable({"gpus": 0, "cpus": 2}, nodes, "a fit")
    ... except ParameterError as err:
    ...     print(err)
    a fit needs {'CPU': 2.0}; the largest node has {'CPU': 1.0}: set fit_resources={cpus: 1} or add a larger node
    """
    request = _request(resources)
    serving = [n["node"] for n in nodes if _fits(n, request)]
    if serving:
        return serving
    if not nodes:
        raise ParameterError(f"{what} needs {request}; the cluster has no alive node: start one (ray start) or "
                             f"check ray_address")
    largest = max(nodes, key=lambda n: (n["GPU"], n["CPU"]))
    has = {name: largest[name] for name in ("CPU", "GPU") if largest[name] or name == "CPU"}
    hint = {"cpus": int(largest["CPU"]) if float(largest["CPU"]).is_integer() else largest["CPU"]}
    if request.get("GPU") and largest["GPU"]:
        hint["gpus"] = int(largest["GPU"])
    fix = "{" + ", ".join(f"{k}: {v}" for k, v in hint.items()) + "}"
    raise ParameterError(f"{what} needs {request}; the largest node has {has}: set fit_resources={fix} or add a "
                         f"larger node")


def _slots(nodes: Sequence[dict[str, Any]], request: dict[str, float]) -> int:
    """How many tasks of ``request`` the nodes can run at once (by their total resources)."""
    total = 0
    for node in nodes:
        counts = [int(node.get(name, 0.0) // amount) for name, amount in request.items() if amount > 0]
        total += min(counts) if counts else 1
    return total


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
    """Ray, connected for the step: a new local instance started for it (``address=None``, shut down after) or an
    existing cluster (``'auto'``, ``host:port``, ``ray://host:10001``: anything ``ray.init`` takes, left running;
    this process disconnects after).

    ``address=None`` starts a fresh instance (``ray.init(address='local')``) even where a Ray cluster already runs
    on this machine: the run never lands on somebody else's cluster unless ``ray_address`` names it.
    """
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        extra = {}
        if os.environ.get("PYTHONPATH") and address is None:  # workers import the package as the driver does
            extra["runtime_env"] = {"env_vars": {"PYTHONPATH": os.environ["PYTHONPATH"]}}
        ray.init(address="local" if address is None else address, include_dashboard=False, log_to_driver=False,
                 logging_level="warning", **extra)
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
    with ray_session(params["ray_address"]) as ray:
        nodes = alive_nodes(ray)
        resources = fit_resources(params, nodes)
        request = _request(resources)
        serving = check_servable(resources, nodes, f"each task of {desc!r}")
        print(f"ray: each task of {desc!r} asks for {request}"
              f"{'' if params['fit_resources'] else ' (the default: fit_resources=None)'}; "
              f"{len(serving)} of {len(nodes)} alive nodes can serve it: {', '.join(serving)}", flush=True)
        task = ray.remote(_run_in_task).options(num_cpus=resources["cpus"], num_gpus=resources["gpus"],
                                                max_retries=MAX_RETRIES, retry_exceptions=False)
        shared_ref = ray.put(shared)
        pending = {task.remote(fn, job, shared_ref, resources["cpus"]): job for job in jobs}
        bar = tqdm(total=len(pending), desc=f"{desc} (ray)", disable=not progress)
        told = None
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1, timeout=WAIT_REPORT_SECONDS)
                if not done:  # nothing finished yet: say how many tasks wait for a node, once per change
                    slots = _slots(alive_nodes(ray), request)
                    waiting = max(0, len(pending) - slots)
                    if waiting != told:
                        told = waiting
                        line = (f"ray: {len(pending) - waiting} of {len(pending)} outstanding tasks running, "
                                f"{waiting} waiting for resources ({slots} at a time fit the alive nodes)")
                        bar.set_postfix_str(f"{waiting} waiting for resources")
                        print(line, flush=True)
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
