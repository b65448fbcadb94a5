"""A small subset of a real dataset for the GPU check, small enough to travel with the device tool.

    python benchmarks/make_gpu_subset.py [--dataset brain_tumor_mri] [--per-class 40] [--test-per-class 15]

Copies a seeded sample of ``--per-class`` training and ``--test-per-class`` test images per class
from ``../shared/data/<dataset>`` into ``gpu_subset/<dataset>/`` (git-ignored), in the dataset's own
layout, each image resized to at most 256 px on its longer side and saved as JPEG (quality 90):
about 5 MB for the brain tumour MRI set, far under the device tool's 64 MiB. The subset is never
committed (the images are the dataset's; see its SOURCE.md, copied beside them).
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}


def make_subset(source: Path, target: Path, per_class: int, test_per_class: int, seed: int = 0) -> int:
    """Copy the sample; returns the number of images written."""
    rng = np.random.default_rng(seed)
    if target.exists():
        shutil.rmtree(target)
    written = 0
    for split_dir in sorted(p for p in source.iterdir() if p.is_dir()):
        n = test_per_class if split_dir.name.lower().startswith(("test", "val")) else per_class
        for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            files = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            chosen = sorted(rng.choice(len(files), size=min(n, len(files)), replace=False))
            out_dir = target / split_dir.name / class_dir.name
            out_dir.mkdir(parents=True, exist_ok=True)
            for k in chosen:
                with Image.open(files[k]) as im:
                    im = im.convert("RGB")
                    im.thumbnail((256, 256))
                    im.save(out_dir / (files[k].stem + ".jpg"), quality=90)
                written += 1
    if (source / "SOURCE.md").is_file():
        shutil.copy(source / "SOURCE.md", target / "SOURCE.md")
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="brain_tumor_mri")
    ap.add_argument("--source", default=None, help="default: ../shared/data/<dataset>")
    ap.add_argument("--per-class", type=int, default=40)
    ap.add_argument("--test-per-class", type=int, default=15)
    args = ap.parse_args()
    source = Path(args.source) if args.source else REPO.parent / "shared" / "data" / args.dataset
    target = REPO / "gpu_subset" / args.dataset
    n = make_subset(source, target, args.per_class, args.test_per_class)
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    print(f"{n} images, {size / 2**20:.1f} MiB in {target}")


if __name__ == "__main__":
    main()
