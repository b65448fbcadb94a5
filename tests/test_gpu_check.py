"""benchmarks/gpu_check.py runs on the CPU with --tiny, so the script a GPU session depends on cannot rot."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_tiny_runs_every_part_and_writes_its_figures(tmp_path):
    out = tmp_path / "gpu_check.json"
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--tiny", "--out", str(out)],
                          capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(out.read_text())
    assert record["tiny"] is True
    for part in ("throughput", "cams", "steps"):
        assert "error" not in record[part], record[part]
        assert record[f"{part}_seconds"] > 0
    paths = {r["path"] for r in record["throughput"]}
    assert {"fp32", "fp32 channels_last", "bf16", "bf16 channels_last"} <= paths
    assert all(r["train_ips"] > 0 and r["infer_ips"] > 0 for r in record["throughput"])
    assert record["cams"]["ours_seconds"] > 0 and record["cams"]["methods"] == [
        "gradcam", "gradcam++", "xgradcam", "eigengradcam", "layercam"]
    steps = record["steps"]["seconds"]
    assert list(steps) == ["prepare_data", "train_models", "run_paired_tests", "summary_table_for_run",
                           "load_prepared", "rate_explanations", "run_paired_tests (with CAMs)",
                           "run_generalization", "write_report"]
    assert set(record["steps"]["accuracy"]) == {"resnet50"}
