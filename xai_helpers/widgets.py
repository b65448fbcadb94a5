"""The interactive CAM explorer (ipywidgets), and its static twin for executed notebooks.

:class:`CamExplorer` shows an image and one overlay per chosen CAM method side by side, with the
predicted probabilities and each method's explanation metrics for that image. Controls: how to
pick the image (by index, by class, among misclassified or low-confidence test images), the image,
the methods, the target class (predicted, true or any class), the model, its fold, the target
layer, the overlay opacity and the colour map.

Maps are cached per (model, fold, layer, image, target): all methods of one key come from one
forward/backward pass, so switching methods, opacity or colour map never recomputes anything, and
a new image costs one pass on the CPU.
"""
from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from .cam_metrics import confidence_metrics, localisation_metrics
from .cams import STUDY_METHODS, compute_cams, resolve_target_layer
from .data.prepare import PreparedData
from .figures import cam_grid, overlay
from .models import CAM_LAYER_CHOICES
from .runfolder import RunFolder
from .training import BatchPipeline, load_checkpoint, resolve_device

SELECTION_MODES = ("index", "class", "misclassified", "low confidence")
COLORMAPS = ("jet", "turbo", "inferno", "viridis", "magma")


class CamExplorer:
    """Compare CAM methods on test images of a run folder.

    Parameters
    ----------
    data : PreparedData
        From :func:`~xai_helpers.data.prepare.load_prepared`.
    params : dict
        Resolved notebook parameters (``run_dir``, ``cam_model``, ``cam_layer``, ``cam_methods``).
    low_confidence : float
        Test images whose top probability is below this are offered as "low confidence".

    Attributes
    ----------
    widget : ipywidgets.Widget
        The explorer (display it in a notebook).
    controls : dict
        Name -> control, so code (and tests) can drive every control.

    Examples
    --------
    >>> explorer = CamExplorer(data, params)            # doctest: +SKIP
    >>> explorer.controls["methods"].value = ("gradcam", "layercam")  # doctest: +SKIP
    >>> explorer.current["maps"].keys()                 # doctest: +SKIP
    """

    def __init__(self, data: PreparedData, params: dict[str, Any], low_confidence: float = 0.7):
        import ipywidgets as W  # noqa: PLC0415 - widgets only where they are shown (not under the runner)

        self.data = data
        self.params = params
        self.run = RunFolder(params["run_dir"])
        self.device = resolve_device(params["device"])
        self.pipeline = BatchPipeline(data.images, self.device)
        self.low_confidence = low_confidence
        metrics = self.run.read_metrics()
        self.trained = {m: sorted(int(f) for f in g["fold"]) for m, g in metrics.groupby("model", sort=False)}
        self._nets: dict[tuple[str, int], torch.nn.Module] = {}
        self._cache: dict[tuple, dict[str, Any]] = {}
        self.test_rows = data.test_rows()
        self._updating = False
        model = params["cam_model"] if params["cam_model"] in self.trained else next(iter(self.trained))
        self.controls: dict[str, Any] = {
            "mode": W.ToggleButtons(options=SELECTION_MODES, value="index", description="pick by"),
            "class": W.Dropdown(options=data.class_names, value=data.class_names[0], description="class"),
            "image": W.Dropdown(options=[], description="image", layout=W.Layout(width="420px")),
            "methods": W.SelectMultiple(options=list(STUDY_METHODS) + ["eigengradcam_signed"],
                                        value=tuple(m for m in params["cam_methods"] if m in STUDY_METHODS
                                                    or m == "eigengradcam_signed") or STUDY_METHODS,
                                        description="methods", rows=6),
            "target": W.Dropdown(options=["predicted", "true"] + list(data.class_names), value="predicted",
                                 description="target"),
            "model": W.Dropdown(options=list(self.trained), value=model, description="model"),
            "fold": W.Dropdown(options=self.trained[model], value=self.trained[model][0], description="fold"),
            "layer": W.Dropdown(options=self._layers(model), description="layer"),
            "alpha": W.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.05, description="opacity"),
            "cmap": W.Dropdown(options=COLORMAPS, value="jet", description="colour map"),
        }
        self.controls["layer"].value = self._default_layer(model)
        self.image_out = W.Image(format="png")
        self.info_out = W.HTML()
        self._refresh_images()
        for name, control in self.controls.items():
            control.observe(self._on_change(name), names="value")
        left = W.VBox([self.controls[k] for k in ("mode", "class", "image", "target", "model", "fold", "layer",
                                                  "alpha", "cmap")])
        self.widget = W.VBox([W.HBox([left, self.controls["methods"]]), self.image_out, self.info_out])
        self.widget.add_class("xai-cam-explorer")
        self.current: dict[str, Any] = {}
        self.update()

    # --- choices ---------------------------------------------------------------------------
    def _layers(self, model: str) -> list[str]:
        return list(CAM_LAYER_CHOICES.get(model, ()))

    def _default_layer(self, model: str) -> str:
        layers = self._layers(model)
        if model == self.params["cam_model"] and self.params["cam_layer"] in layers:
            return self.params["cam_layer"]
        net = self._net(model, self.trained[model][0])
        return resolve_target_layer(net, "default")[1]

    def _predictions(self) -> pd.DataFrame:
        c = self.controls
        f = self.run.predictions_file(c["model"].value, c["fold"].value)
        return pd.read_csv(f).set_index("path")

    def candidate_rows(self) -> list[int]:
        """Test rows offered by the current selection mode."""
        c = self.controls
        mode = c["mode"].value
        rows = self.test_rows
        paths = self.data.splits["path"].to_numpy()
        if mode == "class":
            rows = rows[self.data.labels[rows] == self.data.class_names.index(c["class"].value)]
        elif mode in ("misclassified", "low confidence"):
            pred = self._predictions()
            sub = pred.loc[paths[rows]]
            if mode == "misclassified":
                rows = rows[(sub["true"] != sub["pred"]).to_numpy()]
            else:
                probs = sub[[k for k in sub.columns if k.startswith("prob_")]].max(axis=1).to_numpy()
                rows = rows[np.argsort(probs)][: max(1, int((probs < self.low_confidence).sum()))]
        return [int(r) for r in rows]

    def _refresh_images(self) -> None:
        rows = self.candidate_rows()
        labels = [(f"#{r} · {self.data.class_names[self.data.labels[r]]} · "
                   f"{self.data.splits['path'].iloc[r].rsplit('/', 1)[-1]}", r) for r in rows]
        if not labels:
            labels = [("(no image in this selection)", -1)]
        self.controls["image"].options = labels
        self.controls["image"].value = labels[0][1]

    # --- computation -----------------------------------------------------------------------
    def _net(self, model: str, fold: int) -> torch.nn.Module:
        key = (model, fold)
        if key not in self._nets:
            self._nets[key], _ = load_checkpoint(self.run.checkpoint_dir(model, fold) / "best.pt", self.device)
        return self._nets[key]

    def _target(self, row: int) -> int | None:
        t = self.controls["target"].value
        if t == "predicted":
            return None
        if t == "true":
            return int(self.data.labels[row])
        return self.data.class_names.index(t)

    def compute(self, row: int) -> dict[str, Any]:
        """Maps of every single-pass method, probabilities and per-method metrics (cached)."""
        c = self.controls
        model, fold, layer = c["model"].value, c["fold"].value, c["layer"].value
        target = self._target(row)
        key = (model, fold, layer, row, target)
        if key in self._cache:
            return self._cache[key]
        net = self._net(model, fold)
        x = self.pipeline.batch(torch.as_tensor([row]))
        methods = list(c["methods"].options)
        maps, probs = compute_cams(net, x, methods, target_layer=layer,
                                   targets=None if target is None else [target])
        t = int(probs.argmax(1)[0]) if target is None else target
        conf = confidence_metrics(net, x, maps, [t], probs=probs)
        mask = self.data.masks(np.array([row]))[0]
        rows = []
        for m in methods:
            rec = {"method": m, "confidence_increase": float(conf[m]["confidence_increase"][0]),
                   "average_drop_pct": float(conf[m]["average_drop_pct"][0]),
                   "increase_in_confidence_pct": float(conf[m]["increase_in_confidence_pct"][0])}
            if mask is not None and mask.any():
                loc = localisation_metrics(maps[m], mask[None])
                rec.update({k: float(v[0]) for k, v in loc.items()})
            rows.append(rec)
        result = {"row": row, "target": t, "maps": {m: v[0] for m, v in maps.items()}, "probs": probs[0],
                  "metrics": pd.DataFrame(rows).set_index("method"), "mask": mask}
        self._cache[key] = result
        return result

    # --- drawing ---------------------------------------------------------------------------
    def render(self, result: dict[str, Any]) -> bytes:
        """PNG of the original image and one overlay per selected method."""
        c = self.controls
        methods = list(c["methods"].value)
        img = self.data.images[result["row"]]
        fig = Figure(figsize=(2.2 * (len(methods) + 1), 2.5))
        axes = fig.subplots(1, len(methods) + 1, squeeze=False)[0]
        axes[0].imshow(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0), cmap="gray")
        axes[0].set_title(f"true: {self.data.class_names[self.data.labels[result['row']]]}", fontsize=9)
        for ax, m in zip(axes[1:], methods):
            ax.imshow(overlay(img, result["maps"][m], c["alpha"].value, c["cmap"].value))
            ax.set_title(m, fontsize=9)
        if result["mask"] is not None and result["mask"].any():
            for ax in axes:
                ax.contour(result["mask"], levels=[0.5], colors="white", linewidths=0.6)
        for ax in axes:
            ax.set_xticks([])
            ax.set_yticks([])
        fig.suptitle(f"explaining {self.data.class_names[result['target']]} · {c['model'].value} fold "
                     f"{c['fold'].value} · {c['layer'].value}", fontsize=9)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
        return buf.getvalue()

    def _info_html(self, result: dict[str, Any]) -> str:
        probs = " · ".join(f"{c}: {p:.3f}" for c, p in zip(self.data.class_names, result["probs"]))
        table = result["metrics"].loc[list(self.controls["methods"].value)].round(4).to_html()
        return f"<b>predicted probabilities</b>: {probs}<br><b>explanation metrics</b>{table}"

    def update(self) -> None:
        """Recompute (or fetch from the cache) and redraw the current view."""
        row = self.controls["image"].value
        if row is None or row < 0:
            self.current = {}
            self.info_out.value = "<i>no image in this selection</i>"
            return
        result = self.compute(row)
        png = self.render(result)
        self.image_out.value = png
        self.info_out.value = self._info_html(result)
        self.current = {**result, "png": png, "methods": list(self.controls["methods"].value)}

    def _on_change(self, name: str):
        def handler(change) -> None:
            if self._updating:  # a change made by this handler itself: one update at the end
                return
            c = self.controls
            self._updating = True
            try:
                if name == "model":
                    c["fold"].options = self.trained[change["new"]]
                    c["fold"].value = self.trained[change["new"]][0]
                    c["layer"].options = self._layers(change["new"])
                    c["layer"].value = self._default_layer(change["new"])
                if name in ("mode", "class", "model", "fold"):
                    self._refresh_images()
            finally:
                self._updating = False
            self.update()
        return handler

    # --- static twin -------------------------------------------------------------------------
    def static_grid(self, run: RunFolder | None = None, name: str = "explorer_static"):
        """The explorer's views as one static figure: one image per class, plus a misclassified one."""
        rows = []
        for c in range(len(self.data.class_names)):
            cand = self.test_rows[self.data.labels[self.test_rows] == c]
            if len(cand):
                rows.append(int(cand[0]))
        self.controls["mode"].value = "misclassified"
        wrong = [r for r in self.candidate_rows() if r not in rows]
        rows += wrong[:1]
        self.controls["mode"].value = "index"
        results = [self.compute(r) for r in rows]
        methods = list(self.controls["methods"].value)
        maps = {m: np.stack([r["maps"][m] for r in results]) for m in methods}
        labels = []
        for r in results:
            ci = " ".join(f"{m[:5]} {r['metrics'].loc[m, 'confidence_increase']:+.2f}" for m in methods[:2])
            labels.append(f"true {self.data.class_names[self.data.labels[r['row']]]}\n"
                          f"explains {self.data.class_names[r['target']]} ({r['probs'][r['target']]:.2f})\nCI {ci}")
        masks = self.data.masks(np.array(rows))
        return cam_grid(self.data.images[rows], maps, labels, masks, self.controls["alpha"].value,
                        self.controls["cmap"].value, run=run, name=name,
                        title=f"{self.controls['model'].value} fold {self.controls['fold'].value} · "
                              f"{self.controls['layer'].value}")
