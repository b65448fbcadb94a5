"""The GPU check: one script, one JSON file of figures, within 5 minutes on one CUDA GPU.

    python benchmarks/make_gpu_subset.py                 # here, once: gpu_subset/ (real images, ~5 MB)
    python benchmarks/gpu_check.py --out gpu_check.json  # on the GPU machine (device tool, carry gpu_subset)
    python benchmarks/gpu_check.py --tiny --out x.json   # on the CPU: what the test suite runs

Three parts, each timed, each recorded even when it fails (the error goes into the JSON, the next
part still runs):

1. ``throughput``: training images/s of the four CNNs at 224 px, batch 32, for fp32 and bf16 autocast,
   contiguous and channels_last (:func:`bench_cpu_paths.time_paths`, on the GPU).
2. ``cams``: the five CAM methods through :func:`xai_helpers.cams.compute_cams` (one forward and one
   backward) against five pytorch-grad-cam calls, at batch 32; the library is optional (the GPU
   machine has none), in which case only our figure is recorded.
3. ``steps``: the study's steps of the ``paper`` profile (224 px, every model; fewer epochs, folds and
   images so that it fits the budget) through :mod:`xai_helpers.steps`, not papermill, on the real
   images of ``gpu_subset/`` (``--data``), each step's seconds.

``--tiny`` runs the same code on the CPU in about a minute: 64 px, one model, the embedded synthetic
dataset, one epoch, so the script cannot rot between the days a GPU is lent.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_cpu_paths beside this file

from bench_cpu_paths import time_paths  # noqa: E402

from xai_helpers.cams import STUDY_METHODS, compute_cams  # noqa: E402
from xai_helpers.models import MODEL_NAMES, build_model  # noqa: E402
from xai_helpers.run import resolve_run_params  # noqa: E402
from xai_helpers.steps import (load_prepared, prepare_data, rate_explanations, run_generalization,  # noqa: E402
                               run_paired_tests, summary_table_for_run, train_models, write_report)

REPO = Path(__file__).resolve().parents[1]


def _part(name: str, fn, record: dict) -> None:
    """Run one part, recording its figures, its seconds and any error (the next part still runs)."""
    t = time.perf_counter()
    try:
        record[name] = fn()
    except Exception as err:  # noqa: BLE001 - a failed part is a result of the check
        record[name] = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()[-2000:]}
    record[name + "_seconds"] = round(time.perf_counter() - t, 1)
    print(f"{name}: {record[name + '_seconds']} s", flush=True)


def throughput(models, size: int, batch: int, steps: int, device: torch.device) -> list[dict]:
    out = []
    for model_name in models:
        out.extend(time_paths(model_name, size, batch, steps, compile_model=False, device=device))
    return out


def cam_speed(size: int, batch: int, repeats: int, device: torch.device) -> dict:
    torch.manual_seed(0)
    model = build_model("resnet50", 3).to(device).eval()
    x = torch.randn(batch, 3, size, size, device=device)

    def ours():
        compute_cams(model, x, STUDY_METHODS, target_layer="layer4", batch_size=batch)

    def timed(fn):
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(repeats):
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - t) / repeats

    result = {"batch": batch, "size": size, "methods": list(STUDY_METHODS), "ours_seconds": round(timed(ours), 4)}
    if importlib.util.find_spec("pytorch_grad_cam") is None:
        result["library"] = "pytorch-grad-cam is not installed here: only our figure"
        return result
    from pytorch_grad_cam import EigenGradCAM, GradCAM, GradCAMPlusPlus, LayerCAM, XGradCAM

    def library():
        for cls in (GradCAM, GradCAMPlusPlus, XGradCAM, EigenGradCAM, LayerCAM):
            with cls(model=model, target_layers=[model.layer4]) as cam:
                cam(input_tensor=x, targets=None)

    result["library_seconds"] = round(timed(library), 4)
    result["speedup"] = round(result["library_seconds"] / result["ours_seconds"], 2)
    return result


def study_steps(params: dict) -> dict:
    """Every step of the study through the package, each timed."""
    seconds = {}

    def step(name, fn):
        t = time.perf_counter()
        out = fn()
        seconds[name] = round(time.perf_counter() - t, 1)
        print(f"  {name}: {seconds[name]} s", flush=True)
        return out

    data = step("prepare_data", lambda: prepare_data(params, progress=False))
    metrics = step("train_models", lambda: train_models(data, params, progress=False))
    tests = step("run_paired_tests", lambda: run_paired_tests(params))
    step("summary_table_for_run", lambda: summary_table_for_run(params, tests))
    data = step("load_prepared", lambda: load_prepared(params, progress=False))
    step("rate_explanations", lambda: rate_explanations(data, params, costly_per_class=1, progress=False))
    step("run_paired_tests (with CAMs)", lambda: run_paired_tests(params))
    step("run_generalization", lambda: run_generalization(data, params, progress=False))
    step("write_report", lambda: write_report(params["run_dir"]))
    return {"seconds": seconds, "images": len(data.splits), "accuracy": metrics.groupby("model")["accuracy"]
            .mean().round(4).to_dict(), "precision": sorted(metrics["precision"].unique().tolist())}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="the CPU version the test suite runs")
    ap.add_argument("--data", default=str(REPO / "gpu_subset" / "brain_tumor_mri"),
                    help="the real-image subset (benchmarks/make_gpu_subset.py)")
    ap.add_argument("--dataset", default="brain_tumor_mri")
    ap.add_argument("--out", default="gpu_check.json")
    args = ap.parse_args(argv)
    device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    work = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    if args.tiny:
        size, batch, steps, models = 64, 4, 1, ["resnet50"]
        overrides = {"dataset": "synthetic", "data_root": str(work / "synthetic"), "synthetic_per_class": 6,
                     "image_size": 64, "models": models, "folds": 2, "epochs": 1, "batch_size": 8,
                     "cam_layer": "layer2", "explain_per_class": 1, "generalization_per_class": 2,
                     "corruption_severities": [1]}
    else:
        size, batch, steps, models = 224, 32, 5, list(MODEL_NAMES)
        overrides = {"dataset": args.dataset, "data_root": args.data, "weights": "none", "folds": 2, "epochs": 2,
                     "explain_per_class": 4, "generalization_per_class": 10, "corruption_severities": [1, 5]}
    params = resolve_run_params("paper", {**overrides, "run_dir": str(work / "run"), "device": str(device)})
    record = {"device": torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor() or "cpu",
              "torch": torch.__version__, "python": platform.python_version(), "tiny": args.tiny}
    _part("throughput", lambda: throughput(models, size, batch, steps, device), record)
    _part("cams", lambda: cam_speed(size, 32 if not args.tiny else 2, 3 if not args.tiny else 1, device), record)
    _part("steps", lambda: study_steps(params), record)
    Path(args.out).write_text(json.dumps(record, indent=1, default=str))
    print(json.dumps({k: v for k, v in record.items() if k.endswith("_seconds")}))
    return record


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
