"""Does data preparation and training scale with the number of image files?

    python benchmarks/bench_scale.py [--sizes 2000 20000 100000] [--train-images 3000] [--size 64]
                                     [--batch 32] [--workdir DIR] [--keep]

For each size, synthetic image files (RGB PNG, 64 px natively, three classes, 90 % in ``train/``,
10 % in ``test/``; an imagefolder layout) are written once, the largest set first and the smaller
ones as hard links to a part of it. Then a fresh Python process per size runs

1. notebook 01's preparation, :func:`xai_helpers.steps.prepare_data`: layout scan, file hashes,
   image cache build (memory-mapped, into an empty cache folder), audit (pHash near duplicates,
   the shortcut and shift tests), splits;
2. notebook 02's loading, :func:`xai_helpers.steps.load_prepared`, and two epochs of ResNet50
   training (:func:`xai_helpers.training.fit`, batch 32, the run's default precision path; the
   faster epoch counts) on ``--train-images`` images drawn at random from the training pool (with
   replacement when the pool is smaller), so the training set is the same size at every dataset
   size and only the cache it is read from grows.

The child process samples its anonymous resident memory (``RssAnon`` in ``/proc/self/status``,
every 20 ms): file pages of the memory-mapped cache do not count, decoded images held in Python
would. The decoding worker processes are not counted (each holds at most one chunk of 64 images).

Pass criteria (printed): images/s at the largest size >= 0.8x of the smallest; peak RssAnon at
the largest size <= 1.5x of the smallest. The last line is one JSON object
``{"sizes": [{"n_images", "prepare_seconds", "images_per_second", "peak_anon_mb", ...}, ...]}``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from xai_helpers.data.synthetic import SYNTHETIC_CLASSES, draw_slice

TEST_EVERY = 10


def _draw(job: tuple[str, int, int, int]) -> None:
    """One image file: a synthetic slice with a smooth random shading, so no two are near duplicates."""
    path, label, index, size = job
    rng = np.random.default_rng([11, label, index])
    img, _ = draw_slice(rng, label, size)
    field = Image.fromarray(rng.normal(0, 1, (4, 4)).astype(np.float32)).resize((size, size), Image.Resampling.BICUBIC)
    img = np.clip(img.astype(np.float32) + 25 * np.asarray(field), 0, 255).astype(np.uint8)
    tint = np.array([1.0, 0.9 + 0.1 * rng.random(), 0.8 + 0.2 * rng.random()], np.float32)
    Image.fromarray((img[..., None] * tint).astype(np.uint8)).save(path)


def layout(n_images: int) -> list[tuple[str, int, int]]:
    """``(relative path, label, index)`` of every file of a dataset of ``n_images`` files."""
    per_class = [n_images // 3 + (1 if c < n_images % 3 else 0) for c in range(3)]
    out = []
    for c, n in enumerate(per_class):
        for i in range(n):  # every tenth image is a test image: a smaller set is a prefix of a larger one
            split = "test" if i % TEST_EVERY == 0 else "train"
            out.append((f"{split}/{SYNTHETIC_CLASSES[c]}/{i:06d}.png", c, i))
    return out


def write_datasets(workdir: Path, sizes: list[int], size_px: int, workers: int) -> dict[int, Path]:
    """The largest dataset drawn in full, each smaller one hard-linked from it."""
    largest = max(sizes)
    full = workdir / f"data_{largest}"
    files = layout(largest)
    todo = [(str(full / rel), c, i, size_px) for rel, c, i in files if not (full / rel).is_file()]
    for d in {str(Path(j[0]).parent) for j in todo}:
        Path(d).mkdir(parents=True, exist_ok=True)
    if todo:
        with ProcessPoolExecutor(workers) as pool:
            list(tqdm(pool.map(_draw, todo, chunksize=256), total=len(todo), desc=f"writing {largest} files"))
    roots = {largest: full}
    for n in sizes:
        if n == largest:
            continue
        root = workdir / f"data_{n}"
        for rel, _, _ in layout(n):
            dst = root / rel
            if not dst.is_file():
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.link(full / rel, dst)
        roots[n] = root
    return roots


class AnonMemorySampler(threading.Thread):
    """Peak ``RssAnon`` of this process, sampled every ``interval`` seconds."""

    def __init__(self, interval: float = 0.02):
        super().__init__(daemon=True)
        self.interval = interval
        self.peak_kb = 0
        self._done = threading.Event()

    @staticmethod
    def now_kb() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
        raise RuntimeError("no RssAnon in /proc/self/status (this benchmark needs Linux)")

    def run(self) -> None:
        while not self._done.is_set():
            self.peak_kb = max(self.peak_kb, self.now_kb())
            time.sleep(self.interval)

    def stop(self) -> float:
        self._done.set()
        self.join()
        self.peak_kb = max(self.peak_kb, self.now_kb())
        return self.peak_kb / 1024


def one_size(root: Path, workdir: Path, n_images: int, train_images: int, size_px: int, batch: int) -> dict:
    """Run in the child process: preparation, then one epoch of training; the figures of one size."""
    import torch

    from xai_helpers.config import resolve_params
    from xai_helpers.steps import load_prepared, prepare_data
    from xai_helpers.inference import BatchPipeline, precision_path
    from xai_helpers.training import TrainConfig, fit

    sampler = AnonMemorySampler()
    sampler.start()
    params = resolve_params({"run_dir": str(workdir / f"run_{n_images}"), "data_root": str(root),
                             "dataset": "imagefolder", "image_size": size_px, "folds": 3, "seed": 0,
                             "max_per_class": None})
    t = time.perf_counter()
    prepare_data(params, progress=False)
    prepare_seconds = time.perf_counter() - t
    anon_after_prepare = sampler.peak_kb / 1024
    data = load_prepared(params, progress=False)
    pool = np.flatnonzero(data.splits["split"].to_numpy() == "train")
    rng = np.random.default_rng(0)
    # the same number of training images at every size: drawn with replacement when the pool is smaller
    train_rows = np.sort(rng.choice(pool, size=train_images, replace=len(pool) < train_images))
    test = np.flatnonzero(data.splits["split"].to_numpy() == "test")
    val_rows = rng.choice(test, size=min(64, len(test)), replace=False)  # early stopping only; not scored
    # two epochs, the faster one counts: the first carries one-off costs (allocations, oneDNN kernel choice), and
    # on 2 shared cores single epochs vary by about 10 %
    config = TrainConfig(epochs=2, batch_size=batch, patience=3, augment=True, seed=0, device="cpu",
                         resume_every_seconds=1e9)
    with tempfile.TemporaryDirectory(dir=workdir) as out:
        result = fit("resnet50", BatchPipeline(data.images, torch.device("cpu")), data.labels, train_rows, val_rows,
                     data.class_names, out, config, progress=False)
    train_seconds = float(result.history["train_seconds"].min())
    peak = sampler.stop()
    return {"n_images": n_images, "prepare_seconds": round(prepare_seconds, 1),
            "images_per_second": round(len(train_rows) / train_seconds, 2), "peak_anon_mb": round(peak, 1),
            "peak_anon_mb_preparation": round(anon_after_prepare, 1), "train_images": int(len(train_rows)),
            "train_seconds": round(train_seconds, 1), "cache_mb": round(data.images.nbytes / 2**20, 1),
            "images_kind": type(data.images).__name__,
            "precision": precision_path(torch.device("cpu"), config.amp, config.channels_last),
            "threads": torch.get_num_threads()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000, 100000])
    ap.add_argument("--train-images", type=int, default=3000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workdir", help="where the datasets, caches and runs go (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the workdir (datasets are reused next time)")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # the child process: one size
    args = ap.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_scale_"))
    if args.one:
        figures = one_size(workdir / f"data_{args.one}", workdir, args.one, args.train_images, args.size, args.batch)
        print(json.dumps(figures))
        return
    started = time.perf_counter()
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        roots = write_datasets(workdir, sorted(set(args.sizes)), args.size, os.cpu_count() or 1)
        print(f"datasets written in {time.perf_counter() - started:.0f} s: {', '.join(str(r) for r in roots.values())}")
        rows = []
        for n in sorted(set(args.sizes)):
            cache = workdir / f"cache_{n}"
            shutil.rmtree(cache, ignore_errors=True)
            shutil.rmtree(workdir / f"run_{n}", ignore_errors=True)
            env = dict(os.environ, XAI_HELPERS_CACHE=str(cache))
            cmd = [sys.executable, __file__, "--one", str(n), "--workdir", str(workdir),
                   "--train-images", str(args.train_images), "--size", str(args.size), "--batch", str(args.batch)]
            t = time.perf_counter()
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if done.returncode:
                sys.exit(f"the run of {n} images failed:\n{done.stderr[-4000:]}")
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"{n:>7} images: prepare {rows[-1]['prepare_seconds']:7.1f} s, train "
                  f"{rows[-1]['images_per_second']:6.1f} images/s, peak RssAnon {rows[-1]['peak_anon_mb']:7.1f} MB "
                  f"(after preparation {rows[-1]['peak_anon_mb_preparation']:.1f}), cache "
                  f"{rows[-1]['cache_mb']:.0f} MB ({rows[-1]['images_kind']}); {time.perf_counter() - t:.0f} s",
                  flush=True)
            shutil.rmtree(cache, ignore_errors=True)
        small, large = rows[0], rows[-1]
        ips_ratio = large["images_per_second"] / small["images_per_second"]
        mem_ratio = large["peak_anon_mb"] / small["peak_anon_mb"]
        total = time.perf_counter() - started
        print(f"images/s at {large['n_images']} vs {small['n_images']}: {ips_ratio:.2f}x (pass >= 0.8: "
              f"{ips_ratio >= 0.8}); peak RssAnon: {mem_ratio:.2f}x (pass <= 1.5: {mem_ratio <= 1.5}); "
              f"whole benchmark {total / 60:.1f} min")
        print(json.dumps({"sizes": rows, "images_per_second_ratio": round(ips_ratio, 3),
                          "peak_anon_ratio": round(mem_ratio, 3), "total_seconds": round(total, 1)}))
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
