"""Notebook 02's fits in-process (executor=local) and as Ray tasks (executor=ray) on this machine, same cores.

    python benchmarks/bench_executor.py [--profile quick] [--models resnet50,efficientnet_b0] [--epochs 1]
                                        [--per-class 12] [--noop-tasks 200]

Prepares the profile's synthetic data once, then trains the same (model, fold) fits twice into two copies of the
run folder: in this process, then as Ray tasks that each get every core (one fit at a time, the same torch threads:
the same arithmetic). Prints both wall times (Ray's start and shutdown counted separately), the ratio (the aim:
Ray's overhead at most 10 % at equal cores), and the scheduling overhead of one task, from ``--noop-tasks`` empty
tasks through the same :func:`xai_helpers.executor.run_jobs` on a running Ray instance. Last line: one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path


def noop(job, shared):
    return job


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--models", default="resnet50,densenet121,vgg16,efficientnet_b0")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--per-class", type=int, default=12)
    parser.add_argument("--noop-tasks", type=int, default=200)
    args = parser.parse_args()

    import ray

    from xai_helpers.run import resolve_run_params
    from xai_helpers.executor import run_jobs
    from xai_helpers.inference import cpu_description
    from xai_helpers.steps import load_prepared, prepare_data, train_models

    root = Path(tempfile.mkdtemp(prefix="bench-executor-"))
    params = resolve_run_params(args.profile, {
        "run_dir": str(root / "local"), "data_root": str(root / "synthetic"), "synthetic_per_class": args.per_class,
        "models": args.models.split(","), "epochs": args.epochs, "baselines": []})
    prepare_data(params, progress=False)
    shutil.copytree(root / "local", root / "ray")
    cores = os.cpu_count() or 1

    t = time.perf_counter()
    train_models(load_prepared(params), params, progress=False)
    local_s = time.perf_counter() - t

    t = time.perf_counter()
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
    start_s = time.perf_counter() - t
    remote = {**params, "run_dir": str(root / "ray"), "executor": "ray", "fit_resources": {"cpus": cores}}
    t = time.perf_counter()
    train_models(load_prepared(remote), remote, progress=False)
    ray_s = time.perf_counter() - t
    out = []
    t = time.perf_counter()
    run_jobs(noop, list(range(args.noop_tasks)), None, {**remote, "fit_resources": {"cpus": 1}},
             lambda job, result: out.append(result), progress=False)
    noop_ms = 1000 * (time.perf_counter() - t) / args.noop_tasks
    t = time.perf_counter()
    ray.shutdown()
    stop_s = time.perf_counter() - t
    fits = len(params["models"]) * len(load_prepared(params).folds)
    result = {"cpu": cpu_description(), "cores": cores, "fits": fits,
              "local_s": round(local_s, 1), "ray_s": round(ray_s, 1), "ratio": round(ray_s / local_s, 3),
              "ray_start_s": round(start_s, 1), "ray_stop_s": round(stop_s, 1),
              "per_task_overhead_ms": round(noop_ms, 2), "noop_tasks": args.noop_tasks}
    print(f"{cpu_description()}, {fits} fits, {cores} cores: local {local_s:.1f} s, ray {ray_s:.1f} s "
          f"(ratio {ray_s / local_s:.3f}; "
          f"Ray started in {start_s:.1f} s, stopped in {stop_s:.1f} s, not counted); one empty task through "
          f"run_jobs: {noop_ms:.1f} ms")
    print(json.dumps(result))
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
