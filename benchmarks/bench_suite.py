"""The test suite's time against its budget on this machine, measured side by side with the CPU probe.

    python benchmarks/bench_suite.py [--probe-only] [-- PYTEST ARGS...]   # in the environment make test uses

CI gives a submission 90 minutes on whatever 2-core CPU that day's machine has, and CPUs differ by 7x on this
project's work. So the suite has a budget that scales with the machine, measured with the same probe the runner
uses for its estimates (:func:`xai_helpers.timing.probe_images_per_second`: a few ResNet50 training steps at 64 px
in the run's precision): **6 minutes** of ``make test`` (ruff and pytest) where the probe gives 73 images/s (a
2-core Intel Xeon with AMX, bf16) and **15 minutes** where it gives 40 (the same CPU with AVX2 kernels only, fp32),
interpolated on a log-log line through the two (:func:`xai_helpers.timing.expected_seconds`), extrapolated beyond
them. The script probes, runs ``make test`` (ruff, then pytest; extra arguments reach pytest through
``PYTEST_ADDOPTS``), probes again (a machine busier at the end shows as two different figures), and
prints the CPU, both probes, the suite's seconds, the budget for the mean probe and their ratio; the last line is
one JSON object. It exits 1 when the ratio is above 1: a check to run by hand before a change that adds slow tests,
not a test (a timed test would fail on a busy machine for reasons that are not the change's).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from xai_helpers.inference import cpu_description
from xai_helpers.timing import Reference, expected_seconds, probe_images_per_second

ROOT = Path(__file__).resolve().parents[1]

#: The budget: ``make test``'s seconds (ruff and pytest, environment installed) at two probe figures.
SUITE_BUDGET = (Reference("2-core Intel Xeon with AMX, bf16", 73.4, {"suite": 6 * 60}),
                Reference("the same Xeon with AVX2 kernels only, fp32", 40.0, {"suite": 15 * 60}))


def budget_seconds(images_per_second: float) -> float:
    """The suite's budget on a machine whose probe gives ``images_per_second``.

    Examples
    --------
    >>> round(budget_seconds(73.4)), round(budget_seconds(40.0))
    (360, 900)
    >>> budget_seconds(20.0) > 900  # a slower machine gets more time
    True
    """
    return expected_seconds(SUITE_BUDGET, images_per_second)["suite"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--probe-only", action="store_true", help="probe and print the budget, run no test")
    parser.add_argument("pytest_args", nargs="*", help="after --: passed to pytest")
    args = parser.parse_args(argv)

    before = probe_images_per_second(64, "cpu", "auto")
    print(f"CPU: {cpu_description()}", flush=True)
    print(f"probe before: {before:.1f} img/s (ResNet50 training, 64 px); budget {budget_seconds(before) / 60:.1f} min",
          flush=True)
    if args.probe_only:
        return 0
    env = {**os.environ, "PYTEST_ADDOPTS": " ".join([os.environ.get("PYTEST_ADDOPTS", ""), *args.pytest_args])}
    started = time.perf_counter()
    done = subprocess.run(["make", "test"], cwd=ROOT, env=env)
    seconds = time.perf_counter() - started
    after = probe_images_per_second(64, "cpu", "auto")
    probe = (before + after) / 2
    budget = budget_seconds(probe)
    ratio = seconds / budget
    print(f"probe after: {after:.1f} img/s; make test (ruff + pytest): {seconds / 60:.1f} min; budget at "
          f"{probe:.1f} img/s: {budget / 60:.1f} min; ratio {ratio:.2f} ({'within' if ratio <= 1 else 'OVER'} budget)")
    print(json.dumps({"cpu": cpu_description(), "probe_before": round(before, 1), "probe_after": round(after, 1),
                      "suite_seconds": round(seconds), "budget_seconds": round(budget), "ratio": round(ratio, 3),
                      "make_test_rc": done.returncode}))
    return int(ratio > 1 or done.returncode != 0)


if __name__ == "__main__":
    sys.exit(main())
