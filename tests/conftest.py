"""Shared fixtures. The expensive one, ``quick_run``, executes the whole notebook sequence once
per session (quick profile) and every test that needs a run folder shares it."""
from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_dataset(name: str) -> Path:
    """Path of a real dataset in ../shared/data, or skip the test saying it is absent."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"needs the real dataset {path} (../shared/data beside the project); it is absent here")
    return path


def real_subset(name: str, to: Path, per_folder: dict[str, int]) -> Path:
    """A copy of part of a real dataset in ../shared/data, its layout kept: ``per_folder[top]`` image files of every
    class folder under each top-level folder ``top`` (``{"train": 10, "test": 4}``), drawn at random with a fixed
    seed (the first files by name are not a fair sample: file order follows the source's own grouping).

    For the real-data tests that test a path through the toolkit, not the dataset's size: the fewest real images
    that still show what the test names, instead of decoding and hashing all of them."""
    import random
    import shutil

    root = shared_dataset(name)
    for top, n in per_folder.items():
        for folder in sorted(p for p in (root / top).rglob("*") if p.is_dir()):
            files = sorted(f for f in folder.iterdir() if f.suffix.lower() in (".jpg", ".jpeg", ".png"))
            files = sorted(random.Random(f"{name}/{folder.name}").sample(files, min(n, len(files))))
            if files:
                target = to / folder.relative_to(root)
                target.mkdir(parents=True, exist_ok=True)
                for f in files:
                    shutil.copy2(f, target / f.name)
    return to


def copy_run(run_dir: str | Path, to: Path) -> Path:
    """A private copy of a run folder for a test that writes into it, its checkpoints hard-linked (a quick run's
    VGG16 checkpoints alone are 2 GB)."""
    import os
    import shutil

    shutil.copytree(run_dir, to, copy_function=lambda src, dst: (
        os.link(src, dst) if src.endswith(".pt") else shutil.copy2(src, dst)))
    return to


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory):
    """Resolved parameters of a finished quick-profile run of every notebook (shared, ~4 min on 2 cores)."""
    from xai_helpers.run import execute, list_notebooks, runner_order, resolve_run_params

    root = tmp_path_factory.mktemp("quick")
    params = resolve_run_params("quick", {"run_dir": str(root / "run"), "data_root": str(root / "synthetic_quick")})
    execute(params, runner_order(list_notebooks()), progress=False)
    return params


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: Ray authenticates every node and driver with a token (on by default since Ray 2.59). The test session is the
#: driver of the Ray tests, and Ray reads these variables once per process, so they are set before any test imports
#: Ray: the cluster of ``ray_cluster`` and the instances the tests start get the same token.
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(16))


@pytest.fixture(scope="session")
def ray_cluster():
    """A Ray cluster of two nodes with one CPU each, started with the Ray CLI on loopback as docs/running.md tells
    a user to (``ray start --head`` and ``ray start --address``, token authentication on), shared by the Ray tests
    that can share one (each run joins it through ``ray_address``, as on a real cluster). Yields its address.

    Ray's own instance start (~20 s here) and its worker processes (which import torch once) are paid once. Each
    node runs under ``ray start --block`` in a process group of its own, and only those groups are stopped after:
    never ``ray stop``, which would end every Ray process on the machine (a developer's own cluster too)."""
    import signal
    import shutil
    import subprocess
    import sys
    import tempfile
    import time

    pytest.importorskip("ray", reason="the [cluster] extra (pip install -e '.[cluster]'), installed by [test]")
    ray_cli = Path(sys.executable).with_name("ray")
    port = _free_port()
    # a short temporary folder: Ray's socket paths must stay under the system's 107-character limit
    temp = tempfile.mkdtemp(prefix="xai-ray-")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}  # the same RAY_AUTH_MODE and RAY_AUTH_TOKEN as the driver
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats", f"--temp-dir={temp}",
              f"--object-store-memory={256 * 2**20}", "--block"]
    nodes: list[subprocess.Popen] = []

    def node_ports() -> list[str]:  # two nodes on one machine: every per-node port its own
        return [f"--node-manager-port={_free_port()}", f"--object-manager-port={_free_port()}",
                f"--dashboard-agent-listen-port={_free_port()}", f"--dashboard-agent-grpc-port={_free_port()}",
                f"--metrics-export-port={_free_port()}", f"--runtime-env-agent-port={_free_port()}"]

    def wait_for(alive: int) -> None:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert all(p.poll() is None for p in nodes), "a Ray node of the test cluster exited while starting"
            status = subprocess.run([str(ray_cli), "status", f"--address=127.0.0.1:{port}"], env=env,
                                    capture_output=True, text=True, timeout=60)
            active = status.stdout.split("Active:")[-1].split("Pending:")[0] if status.returncode == 0 else ""
            if active.count("node_") >= alive:
                return
            time.sleep(1)
        raise AssertionError(f"the test cluster did not reach {alive} alive node(s) in 180 s")

    def signal_nodes(sig: int) -> None:
        for proc in nodes:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass

    def stop() -> None:
        signal_nodes(signal.SIGTERM)  # both at once; what a node has not stopped in 5 s is killed (its object store
        deadline = time.monotonic() + 5  # files are unlinked once mapped: nothing is left in /dev/shm)
        while any(p.poll() is None for p in nodes) and time.monotonic() < deadline:
            time.sleep(0.2)
        signal_nodes(signal.SIGKILL)  # whatever is left of the two groups
        shutil.rmtree(temp, ignore_errors=True)

    try:
        # the second node is started at once: ray start --address waits for the head's GCS by itself
        for args in (["--head", f"--port={port}", "--include-dashboard=false"], [f"--address=127.0.0.1:{port}"]):
            nodes.append(subprocess.Popen([str(ray_cli), "start", *args, *common, *node_ports()], env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          start_new_session=True))
        wait_for(2)
        yield f"127.0.0.1:{port}"
    finally:
        stop()
