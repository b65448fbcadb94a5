"""Training throughput of the engine (xai_helpers.training.fit) vs the fastest bare PyTorch loop.

    python benchmarks/bench_training.py [--model resnet50] [--size 64] [--batch 32] [--images 192]
                                        [--epochs 2] [--device cpu]

Both train the same model at the same size and batch on the same images, already in memory as uint8
(the engine's image cache); the bare loop normalises each batch and steps Adam, nothing else. It runs
on each precision path of ``bench_cpu_paths.py`` (fp32 or bf16/fp16 autocast where the device runs it
natively, contiguous or channels_last memory), and the fastest of them is the reference: the engine,
with its default path (``precision='auto'``), should come within 0.9x of it. The engine's figure is
its training time per epoch (batches, augmentation, loss bookkeeping), without the validation pass
and checkpoint writing, which the bare loop does not do. The engine's epochs are timed with and
without augmentation. Last line: one JSON object with ``ratio`` (engine images/s over the fastest
bare path's, augmentation on) and the raw figures.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

from xai_helpers.models import IMAGENET_MEAN, IMAGENET_STD, build_model
from xai_helpers.inference import BatchPipeline, autocast_dtype, precision_path
from xai_helpers.training import TrainConfig, fit


def bare_loop(model_name, images, labels, batch, epochs, device, amp=False, channels_last=False):
    torch.manual_seed(0)
    model = build_model(model_name, int(labels.max()) + 1).to(device).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    dtype = autocast_dtype(device, amp)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    data = torch.as_tensor(images).to(device)
    y_all = torch.as_tensor(labels).to(device)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    times = []
    for _ in range(epochs):
        t = time.perf_counter()
        perm = torch.randperm(len(data), device=device)
        for i in range(0, len(perm), batch):
            idx = perm[i:i + batch]
            x = data[idx].float().div(255).expand(-1, 3, -1, -1)
            x = (x - mean) / std
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                loss = F.cross_entropy(model(x), y_all[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return times


def engine(model_name, images, labels, batch, epochs, device, augment):
    pipe = BatchPipeline(images, device)
    n = len(images)
    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(epochs=epochs, batch_size=batch, patience=epochs + 1, augment=augment,
                             device=str(device), resume_every_seconds=1e9)
        result = fit(model_name, pipe, labels, np.arange(n), np.arange(min(n, 16)), ["a", "b", "c"], out, config,
                     progress=False)
    return list(result.history["train_seconds"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--images", type=int, default=192)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (args.images, 1, args.size, args.size), dtype=np.uint8)
    labels = rng.integers(0, 3, args.images)
    engine(args.model, images[:args.batch * 2], labels[:args.batch * 2], args.batch, 1, device, True)  # warm-up
    paths = [(amp, cl) for amp in (False, True) for cl in (False, True)
             if not amp or autocast_dtype(device, True) is not None]
    bare = {precision_path(device, amp, cl): bare_loop(args.model, images, labels, args.batch, args.epochs, device,
                                                        amp, cl) for amp, cl in paths}
    eng = engine(args.model, images, labels, args.batch, args.epochs, device, augment=True)
    eng_plain = engine(args.model, images, labels, args.batch, args.epochs, device, augment=False)
    # the first epoch of each includes one-off costs; the best epoch is the steady state
    ips = {f"bare {k}": args.images / min(v) for k, v in bare.items()}
    fastest = max(ips, key=ips.get)
    ips.update({"engine": args.images / min(eng), "engine_no_aug": args.images / min(eng_plain)})
    engine_path = precision_path(device, TrainConfig.amp, TrainConfig.channels_last)
    print(f"{args.model} at {args.size} px, batch {args.batch}, {args.images} images, device {device}, "
          f"threads {torch.get_num_threads()}; the engine runs {engine_path}")
    for k, v in ips.items():
        print(f"  {k:<36} {v:7.1f} images/s")
    print(f"  engine / fastest bare ({fastest}): {ips['engine'] / ips[fastest]:.3f} (augmentation on), "
          f"{ips['engine_no_aug'] / ips[fastest]:.3f} (off)")
    print(json.dumps({"ratio": round(ips["engine"] / ips[fastest], 3),
                      "ratio_no_augmentation": round(ips["engine_no_aug"] / ips[fastest], 3),
                      "fastest_bare_path": fastest, "engine_path": engine_path,
                      "images_per_second": {k: round(v, 2) for k, v in ips.items()},
                      "model": args.model, "size": args.size, "batch": args.batch, "device": str(device)}))


if __name__ == "__main__":
    main()
