"""Before and after issue 35 on one executed run folder: the readings of the published confidence increase, the
localisation table at the old and the new target layers, deletion/insertion with raster-order and random-order
ties, and the pointing game with and without its tolerance.

Usage::

    python benchmarks/remeasure_lessons.py runs/paper_cpu/brain_tumor_figshare   # any run with notebook 05 done

It reads the run's config, prepared data, checkpoints and ``xai_per_image.csv`` (written by the current code, which
records every reading), recomputes what the old code did where the run no longer holds it, and prints Markdown
tables (before | after) with the CPU. Nothing in the run folder is changed.
"""
from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import torch

from xai_helpers.cam_metrics import deletion_insertion, localisation_metrics
from xai_helpers.cams import compute_cams
from xai_helpers.data.prepared import explanation_sample
from xai_helpers.inference import BatchPipeline, cpu_description, load_checkpoint
from xai_helpers.report.published import PUBLISHED
from xai_helpers.runfolder import RunFolder
from xai_helpers.steps import load_prepared

#: The layers notebook 05 compared before issue 35 (signed outputs), by the resolution of ResNet50's layer2 / layer4.
OLD_LAYERS = {64: {"densenet121": "features.denseblock2", "efficientnet_b0": "features.3"},
              224: {"densenet121": "features.denseblock4", "efficientnet_b0": "features.8"}}


def _verdict(candidates: dict[str, float], published: float) -> str:
    same = {k: v for k, v in candidates.items() if np.isfinite(v) and np.sign(v) == np.sign(published)}
    return min(same, key=lambda k: abs(same[k] - published)) if same else "none has the sign"


def confidence_rows(per_image: pd.DataFrame) -> pd.DataFrame:
    """The published glioma rows: before, ``share_rising`` was the black-fill share; now it is the share on the
    mean change's own perturbation, and the black-fill share has its own column."""
    rows = []
    for pub in PUBLISHED[PUBLISHED["quantity"] == "confidence_increase"].to_dict("records"):
        sel = per_image[(per_image["model"] == pub["model"]) & (per_image["method"] == pub["method"])
                        & (per_image["class"] == pub["class"])].dropna(subset=["confidence_increase"])
        if sel.empty:
            continue
        per = sel.assign(rising=(sel["confidence_increase"] > 0).astype(float)).groupby("path")[
            ["confidence_increase", "rising", "increase_in_confidence_pct"]].mean()
        change, same, black = (float(per["confidence_increase"].mean()), float(per["rising"].mean()),
                               float(per["increase_in_confidence_pct"].mean() / 100))
        rows.append({"method": pub["method"], "class": pub["class"], "published": pub["published"],
                     "n_images": len(per), "mean change": change,
                     "before: share_rising (black fill)": black,
                     "before: reading": _verdict({"mean change": change, "share rising": black}, pub["published"]),
                     "after: share_rising (same fill)": same, "after: black_share_rising": black,
                     "after: reading": _verdict({"mean change": change, "share rising": same,
                                                 "black-fill share rising": black}, pub["published"])})
    return pd.DataFrame(rows)


def localisation_before_after(run: RunFolder, params: dict, data, rows: np.ndarray, x: torch.Tensor,
                              masks: np.ndarray, layers_now: dict[str, str]) -> pd.DataFrame:
    """Mask AUROC and pointing game per CNN and method at the old and the new layer, mean over folds and the masked
    images."""
    out = []
    old = OLD_LAYERS.get(params["image_size"], {})
    metrics = pd.read_csv(run.metrics_file)
    for model, new_layer in layers_now.items():
        for when, layer in (("before", old.get(model, new_layer)), ("after", new_layer)):
            for fold in sorted(metrics.loc[metrics["model"] == model, "fold"].unique()):
                net, _ = load_checkpoint(run.checkpoint_dir(model, int(fold)) / "best.pt")
                maps, probs = compute_cams(net, x, params["cam_methods"], target_layer=layer)
                for method, m in maps.items():
                    loc = localisation_metrics(m, masks)
                    for k in range(len(rows)):
                        out.append({"model": model, "when": when, "layer": layer, "method": method, "fold": fold,
                                    "image": k, "mask_auroc": loc["mask_auroc"][k],
                                    "pointing_game": loc["pointing_game"][k]})
    table = pd.DataFrame(out).dropna(subset=["mask_auroc"])
    per_image = table.groupby(["model", "when", "layer", "method", "image"])[["mask_auroc", "pointing_game"]].mean()
    return per_image.groupby(["model", "when", "layer", "method"]).mean().reset_index()


def ties_before_after(run: RunFolder, params: dict, x: torch.Tensor, n_steps: int = 16) -> pd.DataFrame:
    """cam_model's deletion and insertion AUC per method with ties in raster order (the old code's stable sort) and in
    a seeded random order (now), on the explained images of fold 0."""
    net, _ = load_checkpoint(run.checkpoint_dir(params["cam_model"], 0) / "best.pt")
    layer = params["cam_layer"] if params["cam_layer"] != "default" else None
    maps, probs = compute_cams(net, x, params["cam_methods"], target_layer=layer)
    targets = probs.argmax(axis=1)
    h, w = x.shape[-2:]
    # a strictly decreasing offset by raster position, far below any gap between distinct map values: the ranking
    # of distinct values is kept and tied pixels go top rows first, as the stable sort of the old code did
    raster = -np.arange(h * w, dtype=np.float64).reshape(1, h, w) * 1e-12
    before = deletion_insertion(net, x, {m: v.astype(np.float64) + raster for m, v in maps.items()}, targets,
                                n_steps=n_steps)
    after = deletion_insertion(net, x, maps, targets, n_steps=n_steps, seed=params["seed"])
    zero_share = {m: float((v == 0).mean()) for m, v in maps.items()}
    rows = [{"method": m, "tied share (map = 0)": zero_share[m],
             "deletion before": before[m]["deletion_auc"].mean(), "deletion after": after[m]["deletion_auc"].mean(),
             "insertion before": before[m]["insertion_auc"].mean(),
             "insertion after": after[m]["insertion_auc"].mean(),
             "largest per-image change": float(np.abs(before[m]["deletion_auc"] - after[m]["deletion_auc"]).max())}
            for m in maps]
    table = pd.DataFrame(rows)
    for col in ("deletion before", "deletion after"):
        table[f"rank {col}"] = table[col].rank().astype(int)
    return table


def main(run_dir: str) -> None:
    run = RunFolder(run_dir)
    config = json.loads((run.root / "config.json").read_text())
    params = {**config, "run_dir": str(run.root)}
    for step in config.get("steps", {}).values():
        params.update(step)
    params["run_dir"] = str(run.root)
    print(f"# Before and after issue 35: {run.root}\n\nCPU: {cpu_description()}\n")
    per_image = pd.read_csv(run.xai_per_image_file)
    print("## The published glioma rows\n")
    print(confidence_rows(per_image).round(4).to_markdown(index=False), "\n")
    data = load_prepared(params, progress=False)
    rows = explanation_sample(data, params["explain_per_class"], params["seed"])
    x = BatchPipeline(data.images, torch.device("cpu")).batch(torch.as_tensor(rows))
    masks = data.mask_array(rows)
    if masks is not None:
        layers_now = per_image.drop_duplicates("model").set_index("model")["layer"].to_dict()
        print("## Localisation at the old and the new layers (mean over folds and masked images)\n")
        loc = localisation_before_after(run, params, data, rows, x, masks, layers_now)
        print(loc.round(3).to_markdown(index=False), "\n")
        tolerance = 15 * params["image_size"] / 224
        pg0 = []
        for model in layers_now:
            sub = per_image[(per_image["model"] == model) & per_image["pointing_game"].notna()]
            pg0.append({"model": model, "pointing game (tolerance %.1f px)" % tolerance: sub["pointing_game"].mean()})
        print(pd.DataFrame(pg0).round(3).to_markdown(index=False), "\n")
    print("## Deletion and insertion: ties in raster order (before) and in a seeded random order (after)\n")
    print(ties_before_after(run, params, x).round(4).to_markdown(index=False))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/demo")
