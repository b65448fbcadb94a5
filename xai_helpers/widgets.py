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

from .cam_metrics import CONFIDENCE_METRICS, confidence_metrics, localisation_metrics
from .cams import STUDY_METHODS, compute_cams, method_label, resolve_target_layer
from .data.prepared import PreparedData
from .figures import cam_grid
from .models import CAM_LAYER_CHOICES, activation_note
from .runfolder import RunFolder
from .inference import BatchPipeline, load_checkpoint, resolve_device
from .baselines import cnn_rows

SELECTION_MODES = ("index", "class", "misclassified", "low confidence")
COLORMAPS = ("jet", "turbo", "inferno", "viridis", "magma")


def candidate_rows(data: PreparedData, mode: str, class_name: str | None = None,
                   predictions: pd.DataFrame | None = None, low_confidence: float = 0.7) -> list[int]:
    """Test rows a selection mode offers: every test image, one class, the misclassified ones, or the
    least confident ones.

    Parameters
    ----------
    data : PreparedData
        The run's prepared data.
    mode : {'index', 'class', 'misclassified', 'low confidence'}
        :data:`SELECTION_MODES`.
    class_name : str, optional
        The true class, for ``mode='class'``.
    predictions : pandas.DataFrame, optional
        One fold model's ``predictions/<model>_fold<k>.csv`` indexed by ``path`` (``true``,
        ``pred``, ``prob_<class>``), for the last two modes.
    low_confidence : float
        ``'low confidence'`` offers the images whose top probability is below this, least confident
        first (at least one image).

    Returns
    -------
    list of int
        Rows of ``data`` in test-split order (by confidence for ``'low confidence'``).

    Examples
    --------
    >>> splits = pd.DataFrame({"path": list("abcd"), "split": ["train", "test", "test", "test"],
    ...                        "class": ["x", "x", "y", "y"], "fold": [0, -1, -1, -1]})
    >>> data = PreparedData(splits, np.zeros((4, 1, 8, 8), np.uint8), ["x", "y"], np.array([0, 0, 1, 1]), {})
    >>> pred = pd.DataFrame({"true": ["x", "y", "y"], "pred": ["x", "x", "y"], "prob_x": [0.9, 0.6, 0.2],
    ...                      "prob_y": [0.1, 0.4, 0.8]}, index=pd.Index(list("bcd"), name="path"))
    >>> candidate_rows(data, "index"), candidate_rows(data, "class", "y")
    ([1, 2, 3], [2, 3])
    >>> candidate_rows(data, "misclassified", predictions=pred)
    [2]
    >>> candidate_rows(data, "low confidence", predictions=pred)
    [2]
    """
    if mode not in SELECTION_MODES:
        raise ValueError(f"mode: expected one of {', '.join(SELECTION_MODES)}, got {mode!r}")
    rows = data.test_rows()
    if mode == "class":
        rows = rows[data.labels[rows] == data.class_names.index(class_name)]
    elif mode in ("misclassified", "low confidence"):
        if predictions is None:
            raise ValueError(f"predictions: mode {mode!r} needs a fold model's predictions")
        sub = predictions.loc[data.splits["path"].to_numpy()[rows]]
        if mode == "misclassified":
            rows = rows[(sub["true"] != sub["pred"]).to_numpy()]
        else:
            probs = sub[[k for k in sub.columns if k.startswith("prob_")]].max(axis=1).to_numpy()
            rows = rows[np.argsort(probs, kind="stable")][: max(1, int((probs < low_confidence).sum()))]
    return [int(r) for r in rows]


class CamExplorer:
    """Compare CAM methods on test images of a run folder.

    Parameters
    ----------
    data : PreparedData
        From :func:`~xai_helpers.steps.load_prepared`.
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
    >>> from xai_helpers.examples import tiny_run
    >>> from xai_helpers.steps import load_prepared
    >>> params = tiny_run()
    >>> explorer = CamExplorer(load_prepared(params), params)
    >>> explorer.controls["methods"].value = ("gradcam", "layercam")
    >>> explorer.current["methods"], explorer.current["png"][:4]
    (['gradcam', 'layercam'], b'\x89PNG')
    """

    def __init__(self, data: PreparedData, params: dict[str, Any], low_confidence: float = 0.7):
        import ipywidgets as W  # noqa: PLC0415 - widgets only where they are shown (not under the runner)

        self.data = data
        self.params = params
        self.run = RunFolder(params["run_dir"])
        self.device = resolve_device(params["device"])
        self.pipeline = BatchPipeline(data.images, self.device)
        self.low_confidence = low_confidence
        metrics = cnn_rows(self.run.read_metrics())  # the baselines have no checkpoint to explain
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
    def _layers(self, model: str) -> list[tuple[str, str]]:
        """(label, layer) per offered layer; a layer whose output is not a ReLU's carries its flag in the label."""
        return [(f"{layer} ⚑ {note}" if (note := activation_note(model, layer)) else layer, layer)
                for layer in CAM_LAYER_CHOICES.get(model, ())]

    def _default_layer(self, model: str) -> str:
        layers = [layer for _, layer in self._layers(model)]
        if model == self.params["cam_model"] and self.params["cam_layer"] in layers:
            return self.params["cam_layer"]
        net = self._net(model, self.trained[model][0])
        return resolve_target_layer(net, "default")[1]

    def _predictions(self) -> pd.DataFrame:
        c = self.controls
        f = self.run.predictions_file(c["model"].value, c["fold"].value)
        return pd.read_csv(f).set_index("path")

    def candidate_rows(self, mode: str | None = None) -> list[int]:
        """Test rows offered by ``mode`` (default: the current selection mode), see :func:`candidate_rows`."""
        c = self.controls
        mode = mode or c["mode"].value
        predictions = self._predictions() if mode in ("misclassified", "low confidence") else None
        return candidate_rows(self.data, mode, c["class"].value, predictions, self.low_confidence)

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
            rec = {"method": m, **{k: float(conf[m][k][0]) for k in CONFIDENCE_METRICS}}
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
        """PNG of the original image and one overlay per selected method (:func:`~xai_helpers.figures.cam_grid`)."""
        c = self.controls
        row = result["row"]
        maps = {m: result["maps"][m][None] for m in c["methods"].value}
        fig = cam_grid(self.data.images[[row]], maps, [f"true {self.data.class_names[self.data.labels[row]]}"],
                       [result["mask"]], c["alpha"].value, c["cmap"].value, pyplot=False,
                       title=f"explaining {self.data.class_names[result['target']]} · {c['model'].value} fold "
                             f"{c['fold'].value} · {c['layer'].label}")
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
        rows = [first for name in self.data.class_names
                for first in candidate_rows(self.data, "class", name)[:1]]
        wrong = [r for r in self.candidate_rows("misclassified") if r not in rows]
        rows += wrong[:1]
        results = [self.compute(r) for r in rows]
        methods = list(self.controls["methods"].value)
        maps = {m: np.stack([r["maps"][m] for r in results]) for m in methods}
        labels = []
        for r in results:
            ci = "\n".join(f"{method_label(m)} {r['metrics'].loc[m, 'confidence_increase']:+.2f}" for m in methods[:2])
            labels.append(f"true {self.data.class_names[self.data.labels[r['row']]]}\n"
                          f"explains {self.data.class_names[r['target']]} ({r['probs'][r['target']]:.2f})\n"
                          f"confidence increase:\n{ci}")
        masks = self.data.masks(np.array(rows))
        return cam_grid(self.data.images[rows], maps, labels, masks, self.controls["alpha"].value,
                        self.controls["cmap"].value, run=run, name=name,
                        title=f"{self.controls['model'].value} fold {self.controls['fold'].value} · "
                              f"{self.controls['layer'].label}")
