"""Time one control change of the CAM explorer on the CPU, with the maps cached and not cached.

    python benchmarks/bench_explorer.py [--run-dir runs/demo]

Needs a finished run folder (make demo). "Uncached": a new image, so the five maps come from one
forward/backward pass, plus the per-image metrics and the redraw. "Cached": the opacity, colour map
or methods change, so only the redraw. Last line: one JSON object with the median seconds.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

from xai_helpers.config import resolve_params
from xai_helpers.steps import load_prepared
from xai_helpers.widgets import CamExplorer


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run-dir", default="runs/demo")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    config = json.load(open(f"{args.run_dir}/config.json"))
    params = resolve_params({k: v for k, v in config.items() if k != "run_dir"} | {"run_dir": args.run_dir})
    explorer = CamExplorer(load_prepared(params, progress=False), params)
    c = explorer.controls
    images = [v for _, v in c["image"].options]
    uncached = [timed(lambda v=v: setattr(c["image"], "value", v)) for v in images[1:1 + args.repeats]]
    cached = []
    for k in range(args.repeats):
        cached.append(timed(lambda k=k: setattr(c["alpha"], "value", 0.3 + 0.1 * (k % 5))))
        cached.append(timed(lambda k=k: setattr(c["cmap"], "value", ("viridis", "jet")[k % 2])))
    uncached_layer = [timed(lambda v=v: setattr(c["layer"], "value", v)) for v in ("layer3", "layer4")]
    res = {"cached_median_s": statistics.median(cached), "uncached_new_image_median_s": statistics.median(uncached),
           "uncached_new_layer_median_s": statistics.median(uncached_layer), "image_size": params["image_size"],
           "model": c["model"].value}
    print(f"run {args.run_dir} ({params['image_size']} px, {c['model'].value}):")
    print(f"  cached change (opacity, colour map): median {res['cached_median_s'] * 1000:.0f} ms")
    print(f"  new image (one pass for all methods): median {res['uncached_new_image_median_s'] * 1000:.0f} ms")
    print(f"  new layer: median {res['uncached_new_layer_median_s'] * 1000:.0f} ms")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
