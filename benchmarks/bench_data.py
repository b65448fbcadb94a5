"""One training epoch's data loading: the uint8 image cache vs torchvision ImageFolder decoding JPEGs.

    python benchmarks/bench_data.py [--root ../shared/data/brain_tumor_mri] [--size 224] [--batch 32]
                                    [--workers N]

Both produce the same batches for the same images of the training split: resized to ``size``,
randomly flipped, rotated/scaled/shifted a little, brightness/contrast jittered, normalised, as
float tensors. ImageFolder decodes and transforms every JPEG every epoch (``workers`` DataLoader
processes, default: all cores); the cache is built once (its build time is reported) and then
read. Last line: one JSON object with ``ratio`` (cache images/s over ImageFolder images/s) and
the raw figures.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
from torchvision import datasets, transforms

from xai_helpers.data.cache import build_cache
from xai_helpers.data.layouts import scan_dataset
from xai_helpers.models import IMAGENET_MEAN, IMAGENET_STD
from xai_helpers.inference import BatchPipeline


def main() -> None:
    default_root = Path(__file__).resolve().parents[2] / "shared" / "data" / "brain_tumor_mri"
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=str(default_root))
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    index = scan_dataset(args.root)
    train = index.rows[index.rows["split"] == "train"]
    train_dir = Path(train["path"].iloc[0]).parents[1]
    n = len(train)

    with tempfile.TemporaryDirectory() as cache_dir:
        t = time.perf_counter()
        cache = build_cache(train["path"], args.size, index.grey, cache_dir=cache_dir,
                            workers=args.workers, progress=False)
        build_s = time.perf_counter() - t
        t = time.perf_counter()
        build_cache(train["path"], args.size, index.grey, cache_dir=cache_dir, progress=False)
        reload_s = time.perf_counter() - t
    pipe = BatchPipeline(cache.images, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    t = time.perf_counter()
    order = torch.randperm(len(pipe), generator=gen)
    for i in range(0, len(order), args.batch):
        x = pipe.batch(order[i:i + args.batch], augment=True, generator=gen)
    cache_s = time.perf_counter() - t

    tf = transforms.Compose([
        (transforms.Grayscale(num_output_channels=3) if index.grey
         else transforms.Lambda(lambda im: im.convert("RGB"))),
        transforms.Resize((args.size, args.size)),
        transforms.RandomHorizontalFlip(),
        transforms.RandomAffine(10, translate=(0.05, 0.05), scale=(0.9, 1.1)),
        transforms.ColorJitter(brightness=0.1, contrast=0.1),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])
    folder = datasets.ImageFolder(str(train_dir), transform=tf)
    loader = torch.utils.data.DataLoader(folder, batch_size=args.batch, shuffle=True, num_workers=args.workers)
    t = time.perf_counter()
    for xb, _ in loader:  # noqa: B007 - the last batch is compared below
        pass
    folder_s = time.perf_counter() - t
    assert x.shape[1:] == xb.shape[1:], (x.shape, xb.shape)

    ips_cache, ips_folder = cache.images.shape[0] / cache_s, len(folder) / folder_s
    print(f"{args.root}: {n} training images at {args.size} px, batch {args.batch}, {args.workers} workers")
    print(f"  cache build (decode + resize, once): {build_s:.1f} s; reopening it: {reload_s:.2f} s")
    print(f"  one epoch from the cache:   {cache_s:6.2f} s = {ips_cache:8.1f} images/s")
    print(f"  one epoch with ImageFolder: {folder_s:6.2f} s = {ips_folder:8.1f} images/s")
    print(f"  ratio: {ips_cache / ips_folder:.1f}x")
    print(json.dumps({"ratio": round(ips_cache / ips_folder, 2), "cache_images_per_second": round(ips_cache, 1),
                      "imagefolder_images_per_second": round(ips_folder, 1), "cache_build_seconds": round(build_s, 2),
                      "cache_reopen_seconds": round(reload_s, 3), "images": n, "size": args.size,
                      "workers": args.workers}))


if __name__ == "__main__":
    main()
