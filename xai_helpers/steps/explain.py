"""Steps 04 and 05: CAM explanations of test images, and how good they are.

:func:`explain_examples` (notebook 04) computes the CAM methods of one fold's model for a few
test images per class; :func:`rate_explanations` (notebook 05) computes them with every fold's
model for a larger sample, with every explanation metric, into ``xai_per_image.csv`` and its
aggregate ``xai_metrics.csv``.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..cam_metrics import (CONFIDENCE_METRICS, FILLS, LOCALISATION_METRICS, PERTURBATION_METRICS, aggregate_per_class,
                           baseline_maps, cascading_randomisation, confidence_metrics, deletion_insertion,
                           fill_sensitivity, fill_values, localisation_metrics, randomisation_check, road)
from ..cams import channel_weights, compute_cams, forward_with_layer, resolve_target_layer
from ..data.prepared import PreparedData, explanation_sample
from ..models import (CAM_LAYER_CHOICES, IMAGENET_MEAN, IMAGENET_STD, POOLED_LINEAR_LAYERS, explained_models,
                      feature_map_size, get_layer)
from ..executor import run_jobs
from ..progress import tqdm
from ..runfolder import RunFolder
from ..inference import BatchPipeline, load_checkpoint, resolve_device


@dataclass
class ExplainedExamples:
    """A few test images explained by one fold's model (notebook 04).

    Attributes
    ----------
    model : torch.nn.Module
        The fold's best checkpoint, in eval mode on ``x``'s device.
    model_name, layer : str
        The explained CNN and its resolved target layer (a module name).
    feature_map : tuple of int
        ``(h, w)`` of the target layer's output at the run's image size (before upsampling).
    rows : (B,) int array
        Rows of the prepared data that were explained.
    x : (B, C, S, S) tensor
        Their normalised batch.
    maps : dict
        Method -> ``(B, S, S)`` maps in [0, 1], each explaining the predicted class.
    probs : (B, K) array
        Softmax outputs.
    labels : list of str
        ``"true <class>\\npred <class> (<probability>)"`` per image, for figure titles.

    Examples
    --------
    >>> from xai_helpers.examples import tiny_run
    >>> from xai_helpers.steps import load_prepared
    >>> params = tiny_run()
    >>> ex = explain_examples(load_prepared(params), params, per_class=1)
    >>> m = ex.maps_at(["gradcam", "xgradcam"], layer="layer4")  # the same images and classes, another layer
    >>> m["gradcam"].shape == ex.maps["gradcam"].shape, bool(abs(m["gradcam"] - m["xgradcam"]).max() < 1e-5)
    (True, True)
    """

    model: nn.Module
    model_name: str
    layer: str
    feature_map: tuple[int, int]
    rows: np.ndarray
    x: torch.Tensor
    maps: dict[str, np.ndarray]
    probs: np.ndarray
    labels: list[str]

    def maps_at(self, methods: Sequence[str], layer: str | None = None) -> dict[str, np.ndarray]:
        """The maps of ``methods`` for the same images and predicted classes, at ``layer``
        (default: the explained layer).

        Parameters
        ----------
        methods : sequence of str
            Names of :func:`xai_helpers.cams.available_methods`.
        layer : str, optional
            A module name of the model.

        Returns
        -------
        dict
            Method -> ``(B, S, S)`` maps.
        """
        maps, _ = compute_cams(self.model, self.x, list(methods), target_layer=layer or self.layer,
                               targets=self.probs.argmax(axis=1))
        return maps

    def layer_choices(self) -> list[str]:
        """The explained layer and its neighbours, shallow to deep, among the explorer's layers
        (:data:`xai_helpers.models.CAM_LAYER_CHOICES`; just the layer when it is not one of them)."""
        choices = list(CAM_LAYER_CHOICES.get(self.model_name, ()))
        if self.layer not in choices:
            return [self.layer]
        i = choices.index(self.layer)
        return choices[max(0, i - 1):i + 2]

    def deepest_layer(self) -> str:
        """The deepest of the explorer's layers of this architecture (the explained layer when it has none)."""
        return (CAM_LAYER_CHOICES.get(self.model_name) or (self.layer,))[-1]

    def pooled_linear_layer(self) -> str | None:
        """The layer followed only by global average pooling and one linear layer, where GradCAM's and XGradCAM's
        maps are identical (:data:`xai_helpers.models.POOLED_LINEAR_LAYERS`); None where the architecture has
        none (DenseNet121, VGG16)."""
        return POOLED_LINEAR_LAYERS.get(self.model_name)

    def map_size(self, layer: str | None = None) -> str:
        """``'8×8'``: the size of ``layer``'s feature map (default: the explained layer's)."""
        h, w = feature_map_size(self.model_name, int(self.x.shape[-1]), layer or self.layer)
        return f"{h}×{w}"

    def _target(self, index: int) -> torch.Tensor:
        return torch.as_tensor([int(self.probs[index].argmax())])

    def channel_weights(self, index: int = 0) -> pd.DataFrame:
        """How much each channel of the target layer counts in each method's map of image ``index``
        (:func:`xai_helpers.cams.channel_weights`): one row per channel, one column per method."""
        layer = get_layer(self.model, self.layer)
        A, G, _, _ = forward_with_layer(self.model, self.x[index:index + 1], layer,
                                        self._target(index).to(self.x.device))
        weights = channel_weights(A.float(), G.float())
        return pd.DataFrame({m: w[0] for m, w in weights.items()}).rename_axis("channel")

    def masked_inputs(self, index: int = 0, fill: str = "imagenet_mean") -> tuple[dict[str, np.ndarray], pd.DataFrame]:
        """What the model sees when confidence increase is measured: the input times each method's map.

        Parameters
        ----------
        index : int
        fill : str
            What the pixels the map removes become (:data:`~xai_helpers.cam_metrics.FILLS`); the default is
            the study's: 0 of the normalised input, i.e. ImageNet's mean colour (a warm grey).

        Returns
        -------
        images : dict
            Method -> ``(C, S, S)`` image in [0, 1]: ``x⊙map + fill⊙(1 − map)`` brought back from the normalised
            input.
        scores : pandas.DataFrame
            Per method: ``score`` (the explained class's probability on the image), ``score_after`` (on
            the perturbed image) and ``change`` (their difference: the image's confidence increase).
        """
        x = self.x[index:index + 1]
        maps = {m: v[index:index + 1] for m, v in self.maps.items()}
        conf = confidence_metrics(self.model, x, maps, [int(self.probs[index].argmax())],
                                  probs=self.probs[index:index + 1], fill=fill)
        mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=x.device).view(1, -1, 1, 1)
        filler = fill_values(self.x, fill)[index:index + 1]  # dataset_mean: the explained images' mean colour
        images = {}
        for m, cam in maps.items():
            w = torch.as_tensor(cam, device=x.device)[:, None]
            masked = x * w + filler * (1 - w)
            images[m] = (masked * std + mean).clamp(0, 1)[0].cpu().numpy()
        scores = pd.DataFrame({m: {"score": float(c["score"][0]), "score_after": float(c["score_after"][0]),
                                   "change": float(c["confidence_increase"][0])} for m, c in conf.items()}).T
        return images, scores.rename_axis("method")

    def lesion_index(self, data: PreparedData) -> int:
        """The image the one-image demos should use: the first with a lesion mask that the model classifies right (a
        map has something to point at), else the first with a mask, else the first image.

        Parameters
        ----------
        data : PreparedData
            The prepared data the examples come from (their masks and labels).
        """
        masks = data.masks(np.asarray(self.rows))
        predicted = self.probs.argmax(axis=1)
        with_mask = [i for i, m in enumerate(masks) if m is not None and m.any()]
        right = [i for i in with_mask if predicted[i] == data.labels[self.rows[i]]]
        return (right or with_mask or [0])[0]

    def darkest_index(self) -> int:
        """The index of the darkest explained image (lowest mean intensity): where the fill matters most."""
        mean = torch.tensor(IMAGENET_MEAN, device=self.x.device).view(1, -1, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=self.x.device).view(1, -1, 1, 1)
        return int((self.x * std + mean).mean(dim=(1, 2, 3)).argmin())

    def filled_images(self, index: int = 0, fills: Sequence[str] = FILLS) -> dict[str, np.ndarray]:
        """Image ``index`` with every pixel removed, for each fill (:data:`~xai_helpers.cam_metrics.FILLS`): what
        a removed pixel looks like to the model, in [0, 1]. On a dark MRI slice ImageNet's mean colour is a
        bright warm grey, itself a large change from the black background."""
        mean = torch.tensor(IMAGENET_MEAN, device=self.x.device).view(1, -1, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=self.x.device).view(1, -1, 1, 1)
        out = {"image": (self.x[index:index + 1] * std + mean).clamp(0, 1)[0].cpu().numpy()}
        for fill in fills:
            out[fill] = (fill_values(self.x, fill)[index:index + 1] * std + mean).clamp(0, 1)[0].cpu().numpy()
        return out

    def deletion_insertion_curves(self, index: int = 0, n_steps: int = 16, fill: str = "imagenet_mean",
                                  seed: int = 0) -> pd.DataFrame:
        """The deletion and insertion curves of image ``index`` for every method
        (:func:`xai_helpers.cam_metrics.deletion_insertion`: tied pixels in an order drawn from ``seed``): one row
        per method, curve and step, with ``fraction`` (of the pixels deleted or inserted, highest-ranked first),
        ``score`` and the curve's ``auc``.
        """
        maps = {m: v[index:index + 1] for m, v in self.maps.items()}
        result = deletion_insertion(self.model, self.x[index:index + 1], maps, [int(self.probs[index].argmax())],
                                    n_steps=n_steps, fill=fill, seed=seed)
        rows = []
        for m, res in result.items():
            for curve in ("deletion", "insertion"):
                for step, score in enumerate(res[f"{curve}_curve"][0]):
                    rows.append({"method": m, "curve": curve, "fraction": step / n_steps, "score": float(score),
                                 "auc": float(res[f"{curve}_auc"][0])})
        return pd.DataFrame(rows)

    def randomised_maps(self, index: int = 0, methods: Sequence[str] | None = None,
                        seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
        """The maps of image ``index`` as the cascading randomisation re-initialises the model from the top
        (:func:`xai_helpers.cam_metrics.cascading_randomisation`): ``'trained'`` first, then one entry per
        step, named by the last block re-initialised; each a dict method -> ``(S, S)`` map.
        """
        methods = list(methods or self.maps)
        x, target = self.x[index:index + 1], self._target(index).numpy()
        out = {"trained": {m: self.maps[m][index] for m in methods}}
        for done, model in cascading_randomisation(self.model, self.model_name, seed=seed):
            maps, _ = compute_cams(model, x, methods, target_layer=self.layer, targets=target)
            out[done[-1]] = {m: v[0] for m, v in maps.items()}
        return out


def explain_examples(data: PreparedData, params: dict[str, Any], per_class: int = 2,
                     fold: int = 0) -> ExplainedExamples:
    """The CAM methods of ``params['cam_methods']`` for ``per_class`` test images per class.

    Parameters
    ----------
    data : PreparedData
        From :func:`~xai_helpers.steps.load_prepared`.
    params : dict
        Resolved notebook parameters: ``run_dir``, ``cam_model``, ``cam_layer``, ``cam_methods``,
        ``image_size``, ``device``, ``seed``.
    per_class : int
        Test images per class, drawn by :func:`explanation_sample` with ``params['seed']``.
    fold : int
        Whose best checkpoint explains (notebook 02 must have trained it).

    Returns
    -------
    ExplainedExamples

    Examples
    --------
    >>> from xai_helpers.examples import tiny_run
    >>> from xai_helpers.steps import load_prepared
    >>> params = tiny_run()
    >>> ex = explain_examples(load_prepared(params), params, per_class=1)
    >>> ex.layer, ex.feature_map, sorted(ex.maps), ex.maps["gradcam"].shape
    ('layer2', (8, 8), ['eigengradcam', 'gradcam', 'gradcam++', 'layercam', 'xgradcam'], (3, 64, 64))
    """
    run = RunFolder(params["run_dir"])
    device = resolve_device(params["device"])
    model_name = params["cam_model"]
    model, _ = load_checkpoint(run.require(run.checkpoint_dir(model_name, fold) / "best.pt", "notebook 02"), device)
    _, layer = resolve_target_layer(model, params["cam_layer"])
    rows = explanation_sample(data, per_class, params["seed"])
    x = BatchPipeline(data.images, device).batch(torch.as_tensor(rows))
    maps, probs = compute_cams(model, x, params["cam_methods"], target_layer=layer)
    labels = [f"true {data.class_names[data.labels[r]]}\npred {data.class_names[p]} ({q:.2f})"
              for r, p, q in zip(rows, probs.argmax(1), probs.max(1))]
    return ExplainedExamples(model, model_name, layer, feature_map_size(model_name, params["image_size"], layer),
                             rows, x, maps, probs, labels)


def rate_explanations(data: PreparedData, params: dict[str, Any], costly_per_class: int = 2,
                        n_steps: int = 16, progress: bool = True) -> pd.DataFrame:
    """CAMs and explanation metrics of every explained CNN on sampled test images, every fold.

    The explained CNNs are :func:`~xai_helpers.models.explained_models`: ``params['cam_model']`` at
    ``params['cam_layer']`` and the CNNs of ``params['cam_models']`` at the layer of the same resolution.
    For each of their fold checkpoints: the maps of every method in ``params['cam_methods']`` for
    ``explain_per_class`` test images per class (one forward/backward per batch), confidence metrics
    for all of them, localisation metrics where lesion masks exist, and deletion/insertion AUC on the
    first ``costly_per_class`` of them per class (each costs ``2 * (n_steps + 1)`` forwards per image
    and method), ROAD (18 imputations and forwards per image and method) and the cascading
    randomisation check on the same subsample, for ``cam_model`` (the other CNNs get the maps, the
    confidence and the localisation metrics: the costly ones cost tens of forwards per image and method,
    and it is the study's model they rate). Every CNN explains the same images. Removed pixels become
    ``params['perturbation_fill']`` (confidence increase, deletion). On the same subsample, ``cam_model``'s
    first fold also rates the methods under every fill (:func:`~xai_helpers.cam_metrics.fill_sensitivity`,
    into ``xai_fill_sensitivity.csv``).

    Parameters
    ----------
    data : PreparedData
        From :func:`~xai_helpers.steps.load_prepared`.
    params : dict
        Resolved notebook parameters: ``run_dir``, ``cam_model``, ``cam_layer``, ``cam_models``,
        ``models``, ``image_size``, ``cam_methods``, ``explain_per_class``, ``seed``, ``device``.
    costly_per_class : int
        Images per class for deletion/insertion, ROAD and the randomisation check.
    n_steps : int
        Steps of the deletion and insertion curves.
    progress : bool
        tqdm bar over the (model, fold) checkpoints.

    Returns
    -------
    pandas.DataFrame
        One row per model, fold, method and image (written to ``xai_per_image.csv``); where the
        images have lesion masks, also one row per model, fold, image and map that ignores the image
        (:data:`~xai_helpers.cam_metrics.BASELINE_MAPS`: ``centre_prior``, ``uniform_random``) with the
        localisation scores only, so each method's can be tested against them. The aggregate goes
        to ``xai_metrics.csv``, the randomisation curves to ``xai_randomisation.csv``.

    Examples
    --------
    >>> from xai_helpers.examples import tiny_run
    >>> from xai_helpers.steps import load_prepared
    >>> params = tiny_run()  # one image per class, 2 folds
    >>> per_image = rate_explanations(load_prepared(params), params, costly_per_class=1, n_steps=4, progress=False)
    >>> cams = per_image[~per_image["method"].isin(["centre_prior", "uniform_random"])]
    >>> len(cams) == 2 * 5 * 3, bool(cams["confidence_increase"].notna().all())
    (True, True)
    >>> sorted(cams.columns[cams.isna().all()])  # every metric computed for every image
    []
    >>> baselines = per_image[per_image["method"].isin(["centre_prior", "uniform_random"])]
    >>> scored = [c for c in ("confidence_increase", "iou", "mask_auroc") if baselines[c].notna().any()]
    >>> len(baselines) == 2 * 2 * 3, scored
    (True, ['iou', 'mask_auroc'])
    """
    run = RunFolder(params["run_dir"])
    run.claim()
    device = resolve_device(params["device"])
    pipeline = BatchPipeline(data.images, device)
    rows = explanation_sample(data, params["explain_per_class"], params["seed"])
    # the costly metrics use the first costly_per_class sampled images of each class
    labels = data.labels[rows]
    is_costly = np.zeros(len(rows), bool)
    for c in np.unique(labels):
        is_costly[np.flatnonzero(labels == c)[:costly_per_class]] = True
    masks = data.mask_array(rows)
    metrics_df = (pd.read_csv(run.metrics_file) if run.metrics_file.is_file()
                  else pd.DataFrame(columns=["model", "fold"]))
    jobs = [(model_name, layer, int(fold)) for model_name, layer in explained_models(
        params["cam_model"], params["cam_layer"], params["cam_models"], params["models"], params["image_size"],
        metrics_df["model"])
            for fold in sorted(metrics_df.loc[metrics_df["model"] == model_name, "fold"].unique())]
    results: dict[tuple[str, str, int], tuple[list[dict[str, Any]], pd.DataFrame | None, pd.DataFrame | None]] = {}
    # the fill sensitivity: cam_model's first fold, on the costly subsample
    fills_fold = min((f for m, _, f in jobs if m == params["cam_model"]), default=None)
    if params["executor"] == "local":
        x = pipeline.batch(torch.as_tensor(rows))
        for model_name, layer, fold in tqdm(jobs, desc="explaining (model, fold)", disable=not progress):
            results[(model_name, layer, fold)] = _rate_one_model(
                run.checkpoint_dir(model_name, fold) / "best.pt", data, params, model_name, layer, fold, rows, x,
                masks, _costly(is_costly, model_name, params), n_steps, device,
                rate_fills=model_name == params["cam_model"] and fold == fills_fold)
    else:  # Ray tasks: each gets its fold model's checkpoint as bytes, and hands its rows back
        inputs = _ExplainInputs(data.without_images() if params["data_shared"] else data, params, rows, is_costly,
                                masks, n_steps, fills_fold)
        tasks = [(m, layer, f, (run.checkpoint_dir(m, f) / "best.pt").read_bytes()) for m, layer, f in jobs]
        run_jobs(_explain_job, tasks, inputs, params, lambda job, out: results.__setitem__(job[:3], out),
                 describe=lambda job: f"explaining {job[0]} fold {job[2]}", desc="explaining (model, fold)",
                 progress=progress)
    records: list[dict[str, Any]] = []
    curves: list[pd.DataFrame] = []
    for job in jobs:  # in the order of the jobs, whichever finished first
        rec, curve, _ = results[job]
        records += rec
        if curve is not None:
            curves.append(curve)
    per_image = pd.DataFrame(records)
    run.write_csv(per_image, run.xai_per_image_file)
    run.write_csv(aggregate_per_class(per_image), run.xai_metrics_file)
    if curves:
        run.write_csv(pd.concat(curves, ignore_index=True), run.xai_randomisation_file)
    sensitivity = [results[job][2] for job in jobs if results[job][2] is not None]
    if sensitivity:
        run.write_csv(sensitivity[0], run.xai_fill_sensitivity_file)
    return per_image


def _costly(is_costly: np.ndarray, model_name: str, params: dict[str, Any]) -> np.ndarray:
    """The costly metrics are the study's model's: the others get maps, confidence and localisation."""
    return is_costly if model_name == params["cam_model"] else np.zeros_like(is_costly)


@dataclass
class _ExplainInputs:
    """What every explanation task needs (:func:`_explain_job`): the prepared data (without their images with
    ``data_shared``), the parameters, the explained rows, which of them get the costly metrics, their masks and the
    deletion steps."""

    data: PreparedData
    params: dict[str, Any]
    rows: np.ndarray
    is_costly: np.ndarray
    masks: np.ndarray | None
    n_steps: int
    fills_fold: int | None = None


def _explain_job(job: tuple[str, str, int, bytes], inputs: _ExplainInputs):
    """One fold model's explanations as a Ray task (``executor='ray'``): its checkpoint comes as bytes, its rows of
    ``xai_per_image.csv`` and randomisation curves go back to the driver, which writes them."""
    model_name, layer, fold, checkpoint = job
    params = inputs.params
    data = inputs.data if inputs.data.images is not None else inputs.data.with_images()  # data_shared
    device = resolve_device(params["device"])
    x = BatchPipeline(data.images, device).batch(torch.as_tensor(inputs.rows))
    with tempfile.TemporaryDirectory(prefix=f"xai-explain-{model_name}-{fold}-") as tmp:
        path = Path(tmp) / "best.pt"
        path.write_bytes(checkpoint)
        return _rate_one_model(path, data, params, model_name, layer, fold, inputs.rows, x, inputs.masks,
                               _costly(inputs.is_costly, model_name, params), inputs.n_steps, device,
                               rate_fills=model_name == params["cam_model"] and fold == inputs.fills_fold)


def _rate_one_model(checkpoint: Path, data: PreparedData, params: dict[str, Any], model_name: str, layer: str,
                    fold: int, rows: np.ndarray, x: torch.Tensor, masks: np.ndarray | None, is_costly: np.ndarray,
                    n_steps: int, device: torch.device, rate_fills: bool = False
                    ) -> tuple[list[dict[str, Any]], pd.DataFrame | None, pd.DataFrame | None]:
    """One fold model's rows of ``xai_per_image.csv``, randomisation curves and (``cam_model``'s first fold) the
    fill sensitivity (:func:`rate_explanations`); no curves, no sensitivity, and NaN for the costly metrics, when
    ``is_costly`` selects no image."""
    net, meta = load_checkpoint(checkpoint, device)
    _, layer_name = resolve_target_layer(net, layer)
    maps, probs = compute_cams(net, x, params["cam_methods"], target_layer=layer_name)
    targets = probs.argmax(axis=1)
    fill = params["perturbation_fill"]
    conf = confidence_metrics(net, x, maps, targets, probs=probs, mean=meta["mean"], std=meta["std"], fill=fill)
    sel = np.flatnonzero(is_costly)
    perturb: dict[str, dict[str, np.ndarray]] = {m: {} for m in params["cam_methods"]}
    rand = sensitivity = None
    if len(sel):
        sub_maps = {m: v[sel] for m, v in maps.items()}
        perturb = deletion_insertion(net, x[sel], sub_maps, targets[sel], n_steps=n_steps, fill=fill,
                                     seed=params["seed"])
        if rate_fills:
            sensitivity = fill_sensitivity(net, x[sel], sub_maps, targets[sel], n_steps=n_steps, seed=params["seed"])
            sensitivity.insert(0, "layer", layer_name)
            sensitivity.insert(0, "fold", fold)
            sensitivity.insert(0, "model", model_name)
        roads = road(net, x[sel], sub_maps, targets[sel], seed=params["seed"])
        for m in roads:
            perturb[m].update(roads[m])
        rand = randomisation_check(net, model_name, x[sel], params["cam_methods"], layer_name, targets[sel],
                                   seed=params["seed"])
        rand["path"] = data.splits["path"].to_numpy()[rows[sel]][rand["image"].to_numpy()]
        rand.insert(0, "layer", layer_name)
        rand.insert(0, "fold", fold)
        rand.insert(0, "model", model_name)
        final = rand[rand["step"] == rand["step"].max()].set_index(["method", "image"])["spearman"]
        for m in perturb:
            perturb[m]["randomisation_spearman"] = np.array([final[(m, i)] for i in range(len(sel))])
    # what identifies a row, for the CAM methods and the baseline maps alike
    head = {"model": model_name, "fold": fold, "layer": layer_name}
    image = [{"path": data.splits["path"].iloc[r], "class": data.class_names[data.labels[r]],
              "pred": data.class_names[targets[k]], "target": data.class_names[targets[k]],
              "target_prob": float(probs[k, targets[k]])} for k, r in enumerate(rows)]
    records = []
    for m in params["cam_methods"]:
        loc = localisation_metrics(maps[m], masks) if masks is not None else {}
        for k in range(len(rows)):
            rec = {**head, "method": m, **image[k]}
            for key in CONFIDENCE_METRICS:
                rec[key] = float(conf[m][key][k])
            for key in PERTURBATION_METRICS + ("randomisation_spearman",):
                pos = np.flatnonzero(sel == k)
                rec[key] = float(perturb[m][key][pos[0]]) if len(pos) else np.nan
            for key in LOCALISATION_METRICS:
                rec[key] = float(loc[key][k]) if loc else np.nan
            records.append(rec)
    if masks is not None:  # the maps every method is read against: they ignore the image
        for m, base in baseline_maps(len(rows), masks.shape[-1], seed=params["seed"]).items():
            loc = localisation_metrics(base, masks)
            for k in range(len(rows)):
                records.append({**head, "method": m, **image[k],
                                **{key: float(loc[key][k]) for key in LOCALISATION_METRICS}})
    return records, (rand.drop(columns="image") if rand is not None else None), sensitivity


#: A method whose maps keep a Spearman correlation above this with the trained model's once every layer is
#: re-initialised fails the randomisation check (its maps depend on the image more than on what the model learnt).
RANDOMISATION_FAIL_ABOVE = 0.5


def randomisation_findings(curves: pd.DataFrame, model: str | None = None,
                           threshold: float = RANDOMISATION_FAIL_ABOVE) -> dict[str, Any]:
    """What this run's randomisation check shows, in numbers and words (notebook 05).

    Parameters
    ----------
    curves : pandas.DataFrame
        ``xai_randomisation.csv``: ``model``, ``step``, ``method``, ``spearman``.
    model : str, optional
        Only this explained CNN (default: every row).
    threshold : float
        A mean Spearman correlation above it after the last step fails the check.

    Returns
    -------
    dict
        ``final``: per method, the mean Spearman correlation after the last step (everything re-initialised),
        highest first; ``failed``: the methods above ``threshold``; ``sentences``.

    Examples
    --------
    >>> curves = pd.DataFrame({"model": "resnet50", "step": [1, 2, 1, 2], "method": ["gradcam"] * 2 + ["layercam"] * 2,
    ...                        "spearman": [0.4, 0.1, 0.95, 0.9]})
    >>> randomisation_findings(curves)["failed"]
    ['layercam']
    """
    part = curves if model is None else curves[curves["model"] == model]
    if part.empty:
        return {"final": pd.Series(dtype=float), "failed": [], "sentences": []}
    last = part[part["step"] == part["step"].max()]
    final = last.groupby("method")["spearman"].mean().sort_values(ascending=False)
    failed = [m for m, v in final.items() if v > threshold]
    sentences = ["after every layer is re-initialised, the maps' Spearman correlation with the trained model's is "
                 + ", ".join(f"{m} {v:.2f}" for m, v in final.items())]
    if failed:
        sentences.append(f"{', '.join(failed)} stay above {threshold:g}: their maps barely depend on what the model "
                         "learnt (they follow the image: edges, bright regions), so their scores in the confidence and "
                         "localisation tables rate the image as much as the explanation; read those rankings with "
                         "that in mind")
    else:
        sentences.append(f"every method falls to {threshold:g} or below: the maps depend on the trained weights")
    return {"final": final, "failed": failed, "sentences": sentences}
