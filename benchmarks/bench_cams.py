"""Five CAM maps through the single-pass engine vs five pytorch-grad-cam calls, and the metrics' batched
forward vs the library's per-method metric calls.

    python benchmarks/bench_cams.py [--size 224] [--batch 8] [--repeats 3] [--device cpu]

ResNet50 (random weights, 3 classes), default target layer (layer4). Prints the figures, and as its
last line one JSON object with ``speedup`` (library time / engine time for the five maps),
``max_abs_diff`` (method -> largest difference between the two, EigenGradCAM compared up to the sign
of its singular vector) and ``metrics_speedup``.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pytorch_grad_cam as pgc
import torch
from pytorch_grad_cam.metrics.cam_mult_image import CamMultImageConfidenceChange
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget

from xai_helpers.cam_metrics import confidence_metrics
from xai_helpers.cams import STUDY_METHODS, compute_cams, first_component_projection, forward_with_layer, scale_maps
from xai_helpers.models import build_model

LIBRARY = {"gradcam": pgc.GradCAM, "gradcam++": pgc.GradCAMPlusPlus, "xgradcam": pgc.XGradCAM,
           "eigengradcam": pgc.EigenGradCAM, "layercam": pgc.LayerCAM}


def best_of(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t = time.perf_counter()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build_model("resnet50", 3).eval().to(device)
    layer = model.layer4
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    with torch.no_grad():
        targets = model(x).argmax(1).tolist()

    def engine():
        return compute_cams(model, x, STUDY_METHODS, target_layer="layer4", targets=targets)

    def library():
        out = {}
        for name, cls in LIBRARY.items():
            with cls(model=model, target_layers=[layer]) as cam:
                out[name] = cam(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in targets])
        return out

    engine()  # warm-up
    t_engine, (ours, probs) = best_of(engine, args.repeats)
    t_lib, ref = best_of(library, args.repeats)
    A, G, _, _ = forward_with_layer(model, x, layer, torch.tensor(targets, device=device))
    flipped = scale_maps((-first_component_projection(G * A)).clamp(min=0), (args.size, args.size)).cpu().numpy()
    diff = {}
    for m in STUDY_METHODS:
        d = np.abs(ours[m] - ref[m]).reshape(args.batch, -1).max(1)
        if m == "eigengradcam":
            d = np.minimum(d, np.abs(flipped - ref[m]).reshape(args.batch, -1).max(1))
        diff[m] = float(d.max())

    soft = [ClassifierOutputSoftmaxTarget(t) for t in targets]

    def our_metrics():
        return confidence_metrics(model, x, ours, targets, probs=probs)

    def lib_metrics():
        return {m: CamMultImageConfidenceChange()(x, ours[m], soft, model) for m in STUDY_METHODS}

    our_metrics()
    t_om, om = best_of(our_metrics, args.repeats)
    t_lm, lm = best_of(lib_metrics, args.repeats)
    metric_diff = max(float(np.abs(om[m]["confidence_increase"] - lm[m]).max()) for m in STUDY_METHODS)

    print(f"device {device}, ResNet50 at {args.size} px, batch {args.batch}, threads {torch.get_num_threads()}")
    print(f"five maps: engine {t_engine:.3f} s, five library calls {t_lib:.3f} s -> {t_lib / t_engine:.1f}x")
    for m, d in diff.items():
        print(f"  max |engine - library| {m:<13} {d:.2e}")
    print(f"confidence increase of five methods: batched {t_om:.3f} s, library per method {t_lm:.3f} s "
          f"-> {t_lm / t_om:.1f}x (max diff {metric_diff:.1e})")
    print(json.dumps({"speedup": round(t_lib / t_engine, 2), "max_abs_diff": diff,
                      "metrics_speedup": round(t_lm / t_om, 2), "metrics_max_abs_diff": metric_diff,
                      "engine_s": round(t_engine, 4), "library_s": round(t_lib, 4), "device": str(device),
                      "size": args.size, "batch": args.batch}))


if __name__ == "__main__":
    main()
