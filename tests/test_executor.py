"""executor=ray: notebook 02's fits as Ray tasks give the same metrics and checkpoints as in-process fits, a killed
worker is retried with one metrics row per fit, a fit that raises fails the step with its own error, the tasks land on
both nodes of a two-node cluster started with the Ray CLI (the default request sized to its nodes), a request no node
can serve is refused before anything is queued, and a missing Ray is refused by the name of its extra.

Most tests join one session-scoped cluster (``ray_cluster`` in tests/conftest.py: a head and a second node of one
CPU each, started as docs/running.md says), as a user's run joins a cluster through ``ray_address``; the interrupt
test starts its own instance, beside that cluster, to test ``ray_address=None``."""
import os
import shutil
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
import torch

from xai_helpers.run import resolve_run_params
from xai_helpers.errors import ParameterError, TaskFailed

#: Columns that differ between two runs of the same fits by how they ran, not what they computed.
TIMING = ["train_seconds", "images_per_second"]


def _prepared(root: Path, **overrides) -> dict:
    from xai_helpers.steps import prepare_data

    params = resolve_run_params("quick", {"run_dir": str(root / "run"), "data_root": str(root / "synthetic"),
                                          "synthetic_per_class": 6, "models": ["resnet50", "efficientnet_b0"],
                                          "baselines": [], **overrides})
    prepare_data(params, progress=False)
    return params


def _copy_run(params: dict, root: Path, **overrides) -> dict:
    shutil.copytree(params["run_dir"], root / "run")
    return {**params, "run_dir": str(root / "run"), **overrides}


def _state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["model_state"]


@contextmanager
def _torch_threads(n: int):
    """The in-process side of an equality test computes with as many threads as one task of the cluster is given
    (one CPU per node), so both sides do the same arithmetic."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def test_executor_ray_without_ray_is_refused_naming_the_extra(tmp_path, monkeypatch):
    from xai_helpers.steps import load_prepared, train_models

    params = _prepared(tmp_path)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    with pytest.raises(ParameterError, match=r"executor=ray needs Ray.*\[cluster\]"):
        train_models(load_prepared(params), {**params, "executor": "ray"}, progress=False)
    assert not (Path(params["run_dir"]) / "metrics.csv").exists()  # refused before anything was written


@pytest.mark.slow
def test_ray_fits_give_the_same_metrics_and_checkpoints_as_local_ones(tmp_path, capsys, ray_cluster):
    from xai_helpers.steps import load_prepared, train_baselines, train_models

    local = _prepared(tmp_path / "local", baselines=["baseline_hgb", "baseline_logreg"])
    remote = _copy_run(local, tmp_path / "ray", executor="ray", ray_address=ray_cluster, fit_resources={"cpus": 1})
    with _torch_threads(1):  # one CPU per task on the cluster: the same torch threads, so the same arithmetic
        train_models(load_prepared(local), local, progress=False)
        train_baselines(load_prepared(local), local, progress=False)
    train_models(load_prepared(remote), remote, progress=False)
    train_baselines(load_prepared(remote), remote, progress=False)
    assert "done on" in capsys.readouterr().out  # the log names the node of every task
    a = pd.read_csv(Path(local["run_dir"]) / "metrics.csv").drop(columns=TIMING)
    b = pd.read_csv(Path(remote["run_dir"]) / "metrics.csv").drop(columns=TIMING)
    assert {"baseline_hgb", "baseline_logreg"} <= set(b["model"])  # the baselines ran as tasks too
    pd.testing.assert_frame_equal(a, b)
    for model in local["models"]:
        for fold in (0, 1):
            for name in ("best.pt", "last.pt"):
                sa = _state(Path(local["run_dir"]) / "checkpoints" / f"{model}_fold{fold}" / name)
                sb = _state(Path(remote["run_dir"]) / "checkpoints" / f"{model}_fold{fold}" / name)
                assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa), (model, fold, name)
            pa = pd.read_csv(Path(local["run_dir"]) / "predictions" / f"{model}_fold{fold}.csv")
            pb = pd.read_csv(Path(remote["run_dir"]) / "predictions" / f"{model}_fold{fold}.csv")
            pd.testing.assert_frame_equal(pa, pb)
    # resume: a second call finds every fit trained and scored, and trains nothing
    before = {p: p.stat().st_mtime for p in (Path(remote["run_dir"]) / "checkpoints").rglob("*.pt")}
    train_models(load_prepared(remote), remote, progress=False)
    assert {p: p.stat().st_mtime for p in (Path(remote["run_dir"]) / "checkpoints").rglob("*.pt")} == before


def _running_task_pids() -> list[int]:
    """Ray worker processes executing a task (Ray renames them ray::<function> while they run one)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if (proc / "cmdline").read_bytes().startswith(b"ray::_run_in_task"):
                    pids.append(int(proc.name))
            except OSError:
                pass
    return pids


@pytest.mark.slow
def test_a_killed_worker_is_retried_and_every_fit_has_exactly_one_row(tmp_path, ray_cluster):
    from xai_helpers.steps import load_prepared, train_models

    params = {**_prepared(tmp_path, epochs=3), "executor": "ray", "ray_address": ray_cluster,
              "fit_resources": {"cpus": 1}}
    failure = []

    def study():
        try:
            train_models(load_prepared(params), params, progress=False)
        except BaseException as err:  # noqa: BLE001 - reported by the assertion below
            failure.append(err)

    driver = threading.Thread(target=study)
    driver.start()
    killed = None
    deadline = time.monotonic() + 300
    while killed is None and driver.is_alive() and time.monotonic() < deadline:
        pids = _running_task_pids()
        if pids:
            time.sleep(1.0)  # well into the fit
            killed = pids[0]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    driver.join(timeout=600)
    assert killed is not None, "no running task was seen"
    assert not failure, failure
    metrics = pd.read_csv(Path(params["run_dir"]) / "metrics.csv")
    pairs = list(zip(metrics["model"], metrics["fold"]))
    assert sorted(pairs) == sorted((m, f) for m in params["models"] for f in (0, 1))  # none lost, none twice


@pytest.mark.slow
def test_a_fit_that_raises_fails_the_step_with_its_own_error_and_its_job(tmp_path, ray_cluster):
    from xai_helpers.steps import load_prepared, train_models

    params = {**_prepared(tmp_path, models=["resnet50"], lr=1e12), "executor": "ray", "ray_address": ray_cluster,
              "fit_resources": {"cpus": 1}}
    started = time.monotonic()
    with pytest.raises(TaskFailed, match=r"resnet50 fold \d: (NonFiniteLossError|ValueError): .*(NaN|non-finite)"):
        train_models(load_prepared(params), params, progress=False)
    assert time.monotonic() - started < 240  # not retried over and over


@pytest.mark.slow
def test_the_tasks_land_on_both_nodes_of_a_cli_started_cluster_with_the_default_request(tmp_path, capsys,
                                                                                          ray_cluster):
    """The cluster of docs/running.md (``ray start --head``, ``ray start --address``, token authentication), joined
    through ``ray_address`` with no ``fit_resources``: the default request is sized to its nodes (one CPU, not this
    machine's two), so the fits run, on both nodes."""
    from xai_helpers.steps import load_prepared, train_models

    # data_shared: the nodes read the images from the cache file (one filesystem here) instead of the store
    params = {**_prepared(tmp_path, epochs=2), "executor": "ray", "ray_address": ray_cluster, "data_shared": True}
    assert params["fit_resources"] is None
    train_models(load_prepared(params), params, progress=False)
    out = capsys.readouterr().out
    assert "asks for {'CPU': 1.0} (the default: fit_resources=None); 2 of 2 alive nodes can serve it" in out
    nodes = {line.split(" done on ")[1].split(" in ")[0] for line in out.splitlines() if " done on " in line}
    assert len(nodes) == 2, nodes
    assert len(pd.read_csv(Path(params["run_dir"]) / "metrics.csv")) == 4


@pytest.mark.slow
def test_a_request_no_node_can_serve_is_refused_at_once_naming_the_largest_node(tmp_path, ray_cluster):
    from xai_helpers.steps import load_prepared, train_models

    params = {**_prepared(tmp_path), "executor": "ray", "ray_address": ray_cluster, "fit_resources": {"cpus": 2}}
    started = time.monotonic()
    with pytest.raises(ParameterError) as err:
        train_models(load_prepared(params), params, progress=False)
    assert str(err.value) == ("each task of 'models x folds' needs {'CPU': 2.0}; the largest node has {'CPU': 1.0}: "
                              "set fit_resources={cpus: 1} or add a larger node")
    assert time.monotonic() - started < 60  # refused, not left pending
    assert not (Path(params["run_dir"]) / "metrics.csv").exists()  # nothing was queued or written


def test_the_parameters_refuse_executor_ray_without_ray_before_anything_runs(monkeypatch):
    from xai_helpers.config import resolve_params

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ParameterError, match=r"\[cluster\]"):
        resolve_params({"executor": "ray"})
    assert resolve_params({"executor": "local"})["executor"] == "local"


@pytest.mark.slow
def test_an_interrupt_cancels_the_outstanding_tasks_and_stops_ray(ray_cluster):
    """``ray_address=None`` starts a Ray instance of its own, also with a cluster already running on this machine
    (``ray_cluster``): the run never lands on a cluster nobody named. Ctrl-C then cancels and shuts it down."""
    import ray

    from xai_helpers.executor import run_jobs

    seen, where = [], []

    def interrupted(job, result):  # Ctrl-C arrives while the first result is written
        seen.append(job)
        where.append(ray.get_runtime_context().gcs_address)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_jobs(max, list(range(20)), 10, {"executor": "ray", "ray_address": None, "device": "cpu",
                                            "fit_resources": {"cpus": 1}}, interrupted, progress=False)
    assert len(seen) == 1  # nothing handed on after the interrupt
    assert where[0] != ray_cluster  # a fresh instance, not the cluster running beside it
    assert not ray.is_initialized()  # the instance started for the step is shut down


@pytest.mark.slow
def test_notebook_05s_explanations_and_07s_evaluations_as_ray_tasks_give_the_same_tables(tmp_path, ray_cluster):
    from xai_helpers.examples import tiny_run
    from xai_helpers.steps import load_prepared, rate_explanations, run_generalization

    tiny = tiny_run()
    local = _copy_run(tiny, tmp_path / "local")
    remote = _copy_run(tiny, tmp_path / "ray", executor="ray", ray_address=ray_cluster, fit_resources={"cpus": 1})
    tables = {}
    for name, params in (("local", local), ("ray", remote)):
        data = load_prepared(params)
        with _torch_threads(1):  # as each task of the cluster (one CPU per node)
            per_image = rate_explanations(data, params, costly_per_class=1, n_steps=4, progress=False)
            table = run_generalization(data, params, cam_images_per_class=1, progress=False)
        run = Path(params["run_dir"])
        tables[name] = (per_image, table, pd.read_csv(run / "xai_randomisation.csv"),
                        pd.read_csv(run / "generalization_cams.csv"))
    assert len(tables["local"][0]) and len(tables["local"][1])
    for a, b in zip(tables["local"], tables["ray"]):
        pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))
