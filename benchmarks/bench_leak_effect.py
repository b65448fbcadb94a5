"""What training images that copy test images add to the baselines' test accuracy.

    python benchmarks/bench_leak_effect.py --dataset brain_tumor_mri \\
        --data-root ../shared/data/brain_tumor_mri [--image-size 64] [--seed 0]

Prepares the dataset twice as notebook 01 does (into a temporary folder), with
``leak_policy='drop_train'`` (the default: training images in an exact or pHash-near duplicate
group with a test image are removed) and ``leak_policy='keep'``. On each, fits the classical
baselines of notebook 02 (:mod:`xai_helpers.baselines`) on *every* training-pool image, no folds,
and scores them on the published test split. As an independent check of the feature pipeline
(cache, resize, greyscale, downsampling), the same ``baseline_hgb`` estimator is fitted on 32x32
greyscale images read straight from the files with PIL (BOX resampling), with and without the
images the audit dropped. Prints one line per fit and, last, one JSON object with every accuracy
and the number of dropped images.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from xai_helpers.baselines import BASELINE_NAMES, baseline_features, fit_baseline, make_baseline, predict_baseline
from xai_helpers.config import resolve_params
from xai_helpers.steps import prepare_data


def pil_features(paths: list[str]) -> np.ndarray:
    """32x32 greyscale pixels in [0, 1], read with PIL and BOX-resized, one row per file."""
    return np.stack([np.asarray(Image.open(p).convert("L").resize((32, 32), Image.BOX), np.float32).ravel() / 255
                     for p in paths])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    result: dict = {"dataset": args.dataset, "seed": args.seed}
    with tempfile.TemporaryDirectory() as tmp:
        prepared = {}
        for policy in ("drop_train", "keep"):
            params = resolve_params({"dataset": args.dataset, "data_root": args.data_root,
                                     "run_dir": str(Path(tmp) / policy), "leak_policy": policy,
                                     "image_size": args.image_size, "seed": args.seed, "max_per_class": None})
            data = prepare_data(params, progress=False)
            prepared[policy] = data
            split = data.splits["split"].to_numpy()
            train, test = np.flatnonzero(split == "train"), np.flatnonzero(split == "test")
            x_train, x_test = baseline_features(data.images, train), baseline_features(data.images, test)
            for name in BASELINE_NAMES:
                model = fit_baseline(name, x_train, data.labels[train], seed=args.seed)
                proba = predict_baseline(model, x_test, len(data.class_names))
                acc = float((proba.argmax(1) == data.labels[test]).mean())
                result[f"{policy}/{name}"] = round(acc, 4)
                print(f"leak_policy={policy:10s} {name:16s} train {len(train):5d}  test {len(test):4d}  "
                      f"accuracy {acc:.3f}", flush=True)

        dropped = set(prepared["drop_train"].audit.get("splits", {}).get("dropped_train_images", []))
        result["dropped_train_images"] = len(dropped)
        # independent path: the files themselves, the dropped list from the audit
        kept = prepared["keep"].splits
        classes = prepared["keep"].class_names
        labels = kept["class"].map(classes.index).to_numpy()
        is_test = (kept["split"] == "test").to_numpy()
        features = pil_features(kept["path"].tolist())
        for label, rows in (("pil/all_train", ~is_test),
                            ("pil/train_without_copies", ~is_test & ~kept["path"].isin(dropped).to_numpy())):
            model = make_baseline("baseline_hgb", args.seed).fit(features[rows], labels[rows])
            acc = float((model.predict(features[is_test]) == labels[is_test]).mean())
            result[label] = round(acc, 4)
            print(f"PIL 32x32 grey, {label:25s} train {int(rows.sum()):5d}  accuracy {acc:.3f}", flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
