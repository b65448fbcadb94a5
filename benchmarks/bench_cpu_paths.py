"""The CPU's fast paths, measured: fp32 vs bf16 autocast, contiguous vs channels_last, torch.compile.

    python benchmarks/bench_cpu_paths.py [--models resnet50 densenet121 vgg16 efficientnet_b0]
                                         [--sizes 64 128] [--batch 32] [--steps 3] [--no-compile]

For every model and image size, one training step (forward, backward, Adam) and one inference
forward on a batch of random images, timed over ``--steps`` repeats after one warm-up, for each
path: ``fp32``, ``bf16`` (``torch.autocast("cpu", torch.bfloat16)``), each with contiguous or
``channels_last`` memory, and ``compiled`` (``torch.compile`` of the fp32 channels_last model,
where it compiles: a failure is recorded, not raised). Threads: torch's default for this machine.

The figures are images per second and the speed-up over fp32 contiguous; then, per model, the seconds
of one Adam step over all its parameters, PyTorch's default against the fused kernel. The last line is
one JSON object: ``{"cpu": ..., "bf16_supported": ..., "results": [{"model", "size", "path",
"train_ips", "infer_ips", "train_speedup", "infer_speedup"}, ...], "optimizer_step": [...]}``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import time

import torch
import torch.nn.functional as F

from xai_helpers.models import MODEL_NAMES, build_model
from xai_helpers.inference import cpu_description, cpu_supports_bf16


def _autocast(bf16: bool, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_path(model_name: str, x: torch.Tensor, y: torch.Tensor, steps: int, bf16: bool, channels_last: bool,
               compiled: bool, device: torch.device) -> dict:
    """Images/s of a training step and an inference forward for one path (warm-up excluded)."""
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = build_model(model_name, 3).to(device).to(memory_format=fmt)
    xb = x.contiguous(memory_format=fmt)
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    net = torch.compile(model) if compiled else model
    row = {}

    def train_step():
        with _autocast(bf16, device):
            loss = F.cross_entropy(net(xb), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def infer():
        with torch.no_grad(), _autocast(bf16, device):
            net(xb)

    for fn, key in ((train_step, "train_ips"), (infer, "infer_ips")):
        net.train(key == "train_ips")
        fn()  # warm-up (and compilation)
        _sync(device)
        t = time.perf_counter()
        for _ in range(steps):
            fn()
        _sync(device)
        row[key] = round(len(x) * steps / (time.perf_counter() - t), 2)
    return row


def time_paths(model_name: str, size: int, batch: int, steps: int, compile_model: bool,
               device: torch.device | None = None) -> list[dict]:
    """Images/s of one training step and one inference forward per path (see the module's docstring)."""
    device = device or torch.device("cpu")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, size, size, generator=gen).to(device)
    y = torch.randint(0, 3, (batch,), generator=gen).to(device)
    paths = [("fp32", False, False), ("fp32 channels_last", False, True), ("bf16", True, False),
             ("bf16 channels_last", True, True)]
    if compile_model:
        paths.append(("compiled fp32 channels_last", False, True))
    out = []
    for name, bf16, channels_last in paths:
        row = {"model": model_name, "size": size, "path": name}
        try:
            row.update(_time_path(model_name, x, y, steps, bf16, channels_last, name.startswith("compiled"), device))
        except Exception as err:  # noqa: BLE001 - a path that does not work here is a result, not a crash
            row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
        out.append(row)
        print(row, flush=True)
    base = out[0]
    for row in out:
        for key in ("train", "infer"):
            if f"{key}_ips" in row and f"{key}_ips" in base:
                row[f"{key}_speedup"] = round(row[f"{key}_ips"] / base[f"{key}_ips"], 3)
    return out


def time_optimizer_step(model_name: str, repeats: int = 5) -> dict:
    """Seconds of one Adam step over every parameter of the model: PyTorch's default (for-each) and fused."""
    torch.manual_seed(0)
    model = build_model(model_name, 3)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    row = {"model": model_name, "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1)}
    for name, fused in (("default", False), ("fused", True)):
        opt = torch.optim.Adam(model.parameters(), 1e-4, fused=fused)
        opt.step()
        t = time.perf_counter()
        for _ in range(repeats):
            opt.step()
        row[f"adam_{name}_seconds"] = round((time.perf_counter() - t) / repeats, 4)
    row["fused_speedup"] = round(row["adam_default_seconds"] / row["adam_fused_seconds"], 2)
    print(row, flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=list(MODEL_NAMES), choices=MODEL_NAMES)
    ap.add_argument("--sizes", nargs="+", type=int, default=[64, 128])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile (it compiles for minutes)")
    args = ap.parse_args()
    results = []
    for model_name in args.models:
        for size in args.sizes:
            results.extend(time_paths(model_name, size, args.batch, args.steps, not args.no_compile))
    optimizer = [time_optimizer_step(m) for m in args.models]
    print(json.dumps({"cpu": cpu_description(), "threads": torch.get_num_threads(),
                      "bf16_supported": cpu_supports_bf16(), "batch": args.batch, "steps": args.steps,
                      "results": results, "optimizer_step": optimizer}))


if __name__ == "__main__":
    main()
