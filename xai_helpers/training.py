"""The training loop: batches from the uint8 image cache, augmentation on the device, early stopping,
atomic checkpoints and exact resume.

One call of :func:`fit` trains one model on one fold. Everything random is derived from the
seed: the model's initial weights, the order of the batches and the augmentation of epoch ``e``
come from ``seed`` and ``e`` alone, and dropout's global generator is saved with the resume
state, so an interrupted fit resumed from ``resume.pt`` ends with the same weights as an
uninterrupted one (on the same CPU machine).

Files in ``out_dir``:

* ``best.pt``: weights of the epoch with the best validation macro-F1, with everything needed to
  use them (architecture, class names, image size, normalisation, config): the format of
  :mod:`xai_helpers.checkpoints`, loaded for inference by :func:`xai_helpers.inference.load_checkpoint`;
* ``last.pt``: the same for the final epoch;
* ``resume.pt``: model, optimizer, scheduler and random states after the latest epoch; deleted
  when the fit ends (a VGG16 resume file is about 1.6 GB);
* ``history.csv``: one row per epoch.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .atomic import write_csv_atomic
from .checkpoints import read_checkpoint, save_checkpoint
from .errors import NonFiniteLossError
from .evaluation import classification_metrics
from .inference import BatchPipeline, _autocast, precision_path, predict_proba
from .models import build_model, set_backbone_trainable
from .progress import tqdm

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("cosine", "step", "none")


@dataclass
class TrainConfig:
    """Settings of one fit.

    Attributes
    ----------
    epochs : int
        Maximum number of epochs.
    batch_size : int
    lr : float
        Initial learning rate.
    optimizer : {'adam', 'adamw', 'sgd'}
        Adam by default, as in the study.
    weight_decay : float
    schedule : {'cosine', 'step', 'none'}
        Cosine annealing over ``epochs`` by default; 'step' divides by 10 every third of it.
    class_weighted : bool
        Weight the cross-entropy by inverse class frequency of the training images.
    augment : bool
        Random flips, small affine transforms and brightness/contrast changes.
    patience : int
        Stop after this many epochs without a better validation macro-F1 ...
    min_epochs : int, optional
        ... but never before this many epochs (default: half of ``epochs``): VGG16 and
        EfficientNet trained from scratch often sit at chance for a few epochs before they learn.
    freeze_epochs : int
        Train only the head for this many first epochs (useful with ImageNet weights).
    seed : int
    device : str
        'auto' (CUDA when available), 'cpu', 'cuda', ...
    warmup_epochs : float
        Linear learning-rate warm-up over this many first epochs, step by step
        (:func:`warmup_factor`); 0: none.
    clip_grad_norm : float, optional
        Clip the gradients' global L2 norm to this before each step; None: no clipping.
    amp : bool
        Mixed precision where the hardware runs it natively: bf16 autocast on a CUDA GPU with
        bf16 (else fp16 with loss scaling) and on a CPU with AVX-512 BF16 or AMX
        (:func:`~xai_helpers.inference.cpu_supports_bf16`); fp32 everywhere else, and everywhere with False.
    channels_last : bool
        Model and batches in channels_last memory format (faster convolutions on CUDA and on
        oneDNN CPUs); :func:`precision_path` names what a fit ran with.
    recalibrate_bn : bool
        Before each validation, re-estimate the BatchNorm running statistics as a plain average
        over the training images (no augmentation; at most ``bn_calibration_images``, a seeded
        sample stratified by class, :func:`stratified_sample`): "precise
        BN" (Wu & Johnson 2021). The running averages of a network trained from scratch keep
        traces of its first steps, when activations are huge; EfficientNet-B0's depthwise layers
        were seen 10-1000x too large after 6 short epochs, which made eval-mode predictions
        constant. Models without BatchNorm (VGG16) are unaffected.
    bn_calibration_images : int
    resume_every_seconds : float
        Write ``resume.pt`` after an epoch when at least this long has passed since the last one
        (0: after every epoch). An interruption then loses at most this much work, and short
        epochs do not each write a resume file (1.6 GB for VGG16 with Adam).
    """

    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    schedule: str = "cosine"
    class_weighted: bool = False
    augment: bool = True
    patience: int = 3
    min_epochs: int | None = None
    freeze_epochs: int = 0
    seed: int = 0
    device: str = "auto"
    warmup_epochs: float = 0.0
    clip_grad_norm: float | None = None
    amp: bool = True
    channels_last: bool = True
    recalibrate_bn: bool = True
    bn_calibration_images: int = 1024
    resume_every_seconds: float = 120.0

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer: unknown value {self.optimizer!r}; accepted values: {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule: unknown value {self.schedule!r}; accepted values: {', '.join(SCHEDULES)}")


@dataclass
class FitResult:
    """What :func:`fit` returns: the history, where the checkpoints are, and how it computed
    (``precision``: :func:`precision_path`)."""

    history: pd.DataFrame
    best_file: Path
    last_file: Path
    best_epoch: int
    stopped_early: bool
    seconds: float
    images_per_second: float
    precision: str = "fp32"
    extra: dict[str, Any] = field(default_factory=dict)


#: Models whose training is slower in bf16 than in fp32 on the CPU, even with native bf16
#: (benchmarks/bench_cpu_paths.py, 2 cores, 64 px, batch 32: EfficientNet-B0 85 img/s in bf16 with
#: channels_last against 144 in fp32; its depthwise convolutions have no fast bf16 kernel). They train
#: in fp32 there, with channels_last.
CPU_FP32_MODELS = ("efficientnet_b0",)


def amp_for(arch: str, device: torch.device, amp: bool) -> bool:
    """Whether ``arch`` runs under autocast on ``device`` when ``amp`` asks for it: always, except the
    :data:`CPU_FP32_MODELS` on the CPU. A fit trains, validates and is tested with the same answer.

    Examples
    --------
    >>> cpu = torch.device("cpu")
    >>> amp_for("resnet50", cpu, True), amp_for("efficientnet_b0", cpu, True), amp_for("resnet50", cpu, False)
    (True, False, False)
    """
    return amp and not (device.type == "cpu" and arch in CPU_FP32_MODELS)


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, pipeline: BatchPipeline, rows: np.ndarray, batch_size: int,
                          amp: bool = True) -> bool:
    """Replace every BatchNorm's running statistics by their average over ``rows`` (no augmentation).

    Only the BatchNorm layers run in training mode (dropout and stochastic depth stay off), and each
    layer's momentum is set to None (a cumulative average) for the pass. Returns False, doing
    nothing, for a model without BatchNorm.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns or len(rows) == 0:
        return False
    was_training = model.training
    momenta = [b.momentum for b in bns]
    model.eval()
    for b in bns:
        b.reset_running_stats()
        b.momentum = None
        b.train()
    rows_t = torch.as_tensor(np.asarray(rows), dtype=torch.long)
    try:
        for i in range(0, len(rows_t), batch_size):
            chunk = rows_t[i:i + batch_size]
            if len(chunk) < 2:
                continue
            with _autocast(pipeline.device, amp):
                model(pipeline.batch(chunk))
    finally:
        for b, m in zip(bns, momenta):
            b.momentum = m
        model.train(was_training)
    return True


def stratified_sample(rows: np.ndarray, labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """At most ``size`` of ``rows``, drawn without replacement so each class keeps its share (seeded).

    Each class gets ``size`` times its share of ``rows``, rounded by largest remainder so the
    total is ``size``; all rows when there are no more than ``size``. Returned in ascending order.

    Parameters
    ----------
    rows : (N,) int array
    labels : (N,) int array
        The class of each row.
    size : int
    seed : int

    Examples
    --------
    >>> rows = np.arange(100); labels = np.repeat([0, 1, 2], [50, 30, 20])
    >>> np.bincount(labels[stratified_sample(rows, labels, 10, seed=0)]).tolist()
    [5, 3, 2]
    """
    rows, labels = np.asarray(rows), np.asarray(labels)
    if len(rows) != len(labels):
        raise ValueError(f"labels: expected one per row ({len(rows)}), got {len(labels)}")
    if len(rows) <= size:
        return np.sort(rows)
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * size / len(rows)
    take = np.floor(quota).astype(int)
    order = np.argsort(-(quota - take), kind="stable")
    take[order[:size - take.sum()]] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(rows[labels == c], size=k, replace=False) for c, k in zip(classes, take)]
    return np.sort(np.concatenate(chosen))


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer ``config.optimizer`` names ('adam', 'adamw' or 'sgd' with momentum 0.9) over
    every parameter of ``model``, at ``config.lr`` with ``config.weight_decay``; PyTorch's fused
    implementation where this torch and device have one.

    Parameters
    ----------
    model : torch.nn.Module
    config : TrainConfig

    Returns
    -------
    torch.optim.Optimizer

    Examples
    --------
    >>> opt = make_optimizer(nn.Linear(2, 2), TrainConfig(optimizer="sgd", lr=0.1))
    >>> type(opt).__name__, opt.param_groups[0]["lr"], opt.param_groups[0]["momentum"], opt.defaults["fused"]
    ('SGD', 0.1, 0.9, True)
    """
    params = list(model.parameters())
    cls, kwargs = {"sgd": (torch.optim.SGD, {"momentum": 0.9}), "adamw": (torch.optim.AdamW, {}),
                   "adam": (torch.optim.Adam, {})}[config.optimizer]
    try:
        # the fused kernel: one pass over each parameter instead of several (VGG16's 134 M parameters:
        # 0.37 s per Adam step on 2 CPU cores instead of 1.2 s)
        return cls(params, lr=config.lr, weight_decay=config.weight_decay, fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError):  # no fused kernel for this device or torch version
        return cls(params, lr=config.lr, weight_decay=config.weight_decay, **kwargs)


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """The per-epoch learning-rate schedule ``config.schedule`` names: 'cosine' (annealed to 0 over
    ``config.epochs``), 'step' (x0.1 every third of the epochs) or constant.

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
    config : TrainConfig

    Returns
    -------
    torch.optim.lr_scheduler.LRScheduler
        Stepped once per epoch.

    Examples
    --------
    >>> config = TrainConfig(epochs=4, lr=1.0, schedule="cosine")
    >>> opt = make_optimizer(nn.Linear(2, 2), config)
    >>> sched = make_scheduler(opt, config)
    >>> lrs = []
    >>> for epoch in range(4):
    ...     opt.step()
    ...     sched.step()
    ...     lrs.append(round(sched.get_last_lr()[0], 3))
    >>> lrs
    [0.854, 0.5, 0.146, 0.0]
    """
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    if config.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, config.epochs // 3), gamma=0.1)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 1.0)


def class_weights(labels: torch.Tensor, rows: np.ndarray, num_classes: int) -> torch.Tensor:
    """Cross-entropy weights ``n / (K * n_k)`` from the class counts of ``rows`` (sklearn's "balanced").

    Parameters
    ----------
    labels : (N,) long tensor
        Class of every cached image.
    rows : int array
        The training rows.
    num_classes : int

    Returns
    -------
    (num_classes,) float tensor

    Examples
    --------
    >>> class_weights(torch.tensor([0, 0, 0, 1]), np.arange(4), 2).tolist()
    [0.6666666865348816, 2.0]
    """
    counts = torch.bincount(labels[rows], minlength=num_classes).float().clamp(min=1)
    return counts.sum() / (num_classes * counts)


@dataclass
class ResumeState:
    """Where an interrupted fit stands: ``resume.pt`` holds this, the model, optimizer, scheduler and
    scaler states and the random generators, written by :meth:`save` and read by :meth:`load` only.

    Attributes
    ----------
    epoch : int
        The next epoch to run (0-based).
    best_f1 : float
        Best validation macro-F1 so far (-1 before the first epoch).
    best_epoch : int
        Its epoch (1-based; -1 before the first).
    bad_epochs : int
        Epochs since the last improvement (early stopping).
    history : list of dict
        One row per epoch run so far (``history.csv``).
    """

    epoch: int = 0
    best_f1: float = -1.0
    best_epoch: int = -1
    bad_epochs: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    def save(self, path: Path, meta: dict[str, Any], model: nn.Module, optimizer, scheduler, scaler,
             device: torch.device) -> None:
        """Write the state atomically to ``path`` (weights_only-loadable: tensors and plain types)."""
        rng = {"torch": torch.get_rng_state()}
        if device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(device)
        save_checkpoint({"meta": meta, "epoch": self.epoch, "best_f1": self.best_f1, "best_epoch": self.best_epoch,
                      "bad_epochs": self.bad_epochs, "history": pd.DataFrame(self.history).to_dict("list"),
                      "model_state": model.state_dict(), "optimizer_state": optimizer.state_dict(),
                      "scheduler_state": scheduler.state_dict(), "scaler_state": scaler.state_dict(),
                      "rng": rng}, path)

    @classmethod
    def load(cls, path: Path, meta: dict[str, Any], model: nn.Module, optimizer, scheduler, scaler,
             device: torch.device) -> "ResumeState":
        """The state in ``path``, restored into ``model``, ``optimizer``, ``scheduler``, ``scaler`` and
        the random generators, when it was written by a fit with the same ``meta`` (architecture,
        settings and data fingerprint); a fresh state (and nothing restored) otherwise."""
        if not path.is_file():
            return cls()
        state = read_checkpoint(path, device)
        saved = state.get("meta", {})
        if any(saved.get(k, "") != meta.get(k, "") for k in ("arch", "config", "fingerprint")):
            return cls()
        model.load_state_dict(state["model_state"])
        optimizer.load_state_dict(state["optimizer_state"])
        scheduler.load_state_dict(state["scheduler_state"])
        scaler.load_state_dict(state["scaler_state"])
        torch.set_rng_state(state["rng"]["torch"])
        if device.type == "cuda" and "cuda" in state["rng"]:
            torch.cuda.set_rng_state(state["rng"]["cuda"], device)
        return cls(epoch=int(state["epoch"]), best_f1=float(state["best_f1"]), best_epoch=int(state["best_epoch"]),
                   bad_epochs=int(state["bad_epochs"]), history=pd.DataFrame(state["history"]).to_dict("records"))


def warmup_factor(step: int, warmup_steps: int) -> float:
    """Learning-rate multiplier of a linear warm-up: ``(step + 1) / warmup_steps``, then 1.

    Parameters
    ----------
    step : int
        Optimizer steps taken so far in the fit (0-based).
    warmup_steps : int
        0: no warm-up.

    Returns
    -------
    float

    Examples
    --------
    >>> [warmup_factor(s, 4) for s in range(5)], warmup_factor(0, 0)
    ([0.25, 0.5, 0.75, 1.0, 1.0], 1.0)
    """
    return 1.0 if step >= warmup_steps else (step + 1) / warmup_steps


def _train_epoch(model: nn.Module, pipeline: BatchPipeline, order: torch.Tensor, labels: torch.Tensor,
                 config: TrainConfig, optimizer, scaler, class_weight: torch.Tensor | None,
                 generator: torch.Generator, desc: str, progress: bool, first_step: int = 0) -> float:
    """One pass over ``order`` in batches; the mean training loss (one host sync per epoch).

    During the first ``config.warmup_epochs`` epochs the scheduler's learning rate is scaled by
    :func:`warmup_factor` step by step (``first_step``: the optimizer steps of earlier epochs), and
    with ``config.clip_grad_norm`` the gradients' global norm is clipped before each step.
    """
    device = pipeline.device
    loss_sum = torch.zeros((), device=device)
    steps_per_epoch = math.ceil(len(order) / config.batch_size)
    warmup_steps = int(round(config.warmup_epochs * steps_per_epoch))
    scheduled = [g["lr"] for g in optimizer.param_groups]
    for k, i in enumerate(tqdm(range(0, len(order), config.batch_size), desc=desc, leave=False,
                               disable=not progress)):
        factor = warmup_factor(first_step + k, warmup_steps)
        for g, lr in zip(optimizer.param_groups, scheduled):
            g["lr"] = lr * factor
        rows = order[i:i + config.batch_size]
        if len(rows) < 2 and len(order) > 1:
            continue  # BatchNorm cannot train on a batch of one
        x = pipeline.batch(rows, augment=config.augment, generator=generator, channels_last=config.channels_last)
        y = labels[rows].to(device, non_blocking=True)
        with _autocast(device, config.amp):
            loss = F.cross_entropy(model(x), y, weight=class_weight)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if config.clip_grad_norm:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad_norm)
        scaler.step(optimizer)
        scaler.update()
        loss_sum += loss.detach().float() * len(rows)
    for g, lr in zip(optimizer.param_groups, scheduled):
        g["lr"] = lr  # the scheduler's own value again (it steps from it)
    return float(loss_sum) / max(1, len(order))


def _validate(model: nn.Module, pipeline: BatchPipeline, val_rows: np.ndarray, labels: torch.Tensor,
              class_names: Sequence[str], config: TrainConfig) -> dict[str, float]:
    """Validation loss, accuracy and macro-F1 of ``model`` on ``val_rows``."""
    probs = predict_proba(model, pipeline, val_rows, batch_size=max(64, config.batch_size), amp=config.amp)
    y_val = labels[val_rows].numpy()
    val = classification_metrics(y_val, probs, class_names, per_class=False)
    loss = float(F.nll_loss(torch.log(torch.as_tensor(probs).clamp_min(1e-12)), torch.as_tensor(y_val)))
    return {"val_loss": loss, "val_accuracy": val["accuracy"], "val_f1_macro": val["f1_macro"]}


def fit(arch: str, pipeline: BatchPipeline, labels: np.ndarray, train_rows: np.ndarray,
        val_rows: np.ndarray, class_names: Sequence[str], out_dir: str | os.PathLike,
        config: TrainConfig, weights: str = "none", image_size: int | None = None,
        on_epoch_end: Callable[[int, pd.DataFrame], None] | None = None,
        progress: bool = True, fingerprint: str = "") -> FitResult:
    """Train ``arch`` on ``train_rows``, select the epoch by validation macro-F1 on ``val_rows``.

    Parameters
    ----------
    arch : str
        One of :data:`xai_helpers.models.MODEL_NAMES`.
    pipeline : BatchPipeline
        The cached images on the training device.
    labels : (N,) int array
        Class index of every cached image.
    train_rows, val_rows : int arrays
        Rows of the cache used for training and for validation.
    class_names : sequence of str
    out_dir : path
        Where ``best.pt``, ``last.pt``, ``resume.pt`` and ``history.csv`` go. A ``resume.pt``
        left there by an interrupted fit with the same settings is resumed (:class:`ResumeState`).
    config : TrainConfig
    weights : str
        'none', 'imagenet' or a checkpoint path (see :func:`~xai_helpers.models.build_model`).
    image_size : int, optional
        Recorded in the checkpoints (default: the cache's).
    on_epoch_end : callable, optional
        ``on_epoch_end(epoch, history)`` after each epoch's checkpoints are written.
    progress : bool
        tqdm bars per epoch and per batch.
    fingerprint : str
        What the fit's data and weights are (see :func:`xai_helpers.steps.train.fit_fingerprint`):
        recorded in the checkpoints; a ``resume.pt`` of another fingerprint is not resumed.

    Returns
    -------
    FitResult

    Raises
    ------
    NonFiniteLossError
        When the loss becomes NaN or infinite; ``best.pt`` and ``resume.pt`` of the last good
        epoch are kept.

    Examples
    --------
    >>> import tempfile
    >>> images = np.random.default_rng(0).integers(0, 255, (16, 1, 64, 64), dtype=np.uint8)
    >>> pipeline = BatchPipeline(images, torch.device("cpu"))
    >>> result = fit("efficientnet_b0", pipeline, np.arange(16) % 2, np.arange(12), np.arange(12, 16),
    ...              ["a", "b"], tempfile.mkdtemp(), TrainConfig(epochs=1, batch_size=8), progress=False)
    >>> len(result.history), result.best_file.name, result.best_file.is_file()
    (1, 'best.pt', True)
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = pipeline.device
    labels_t = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    train_rows, val_rows = np.asarray(train_rows), np.asarray(val_rows)
    meta = {"arch": arch, "class_names": list(class_names), "image_size": image_size or int(pipeline.shape[-1]),
            "mean": list(map(float, pipeline.mean.flatten().tolist())),
            "std": list(map(float, pipeline.std.flatten().tolist())),
            "config": asdict(config), "weights": str(weights), "fingerprint": fingerprint}

    config = replace(config, amp=amp_for(arch, device, config.amp))  # (bf16 is slower for some models on the CPU)
    torch.manual_seed(config.seed)
    model = build_model(arch, len(class_names), weights).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model, config)
    sched = make_scheduler(opt, config)
    class_weight = class_weights(labels_t, train_rows, len(class_names)).to(device) if config.class_weighted else None
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and config.amp
                                  and not torch.cuda.is_bf16_supported())
    # BatchNorm statistics from a class-stratified sample of the training images (the rows are
    # sorted by class: their first rows would hold one or two classes only)
    bn_rows = stratified_sample(train_rows, labels_t[train_rows].numpy(), config.bn_calibration_images, config.seed)
    resume_file, best_file, last_file = out_dir / "resume.pt", out_dir / "best.pt", out_dir / "last.pt"
    state = ResumeState.load(resume_file, meta, model, opt, sched, scaler, device)

    started = last_resume = time.perf_counter()
    stopped_early = False
    min_epochs = config.min_epochs if config.min_epochs is not None else config.epochs // 2
    epochs_bar = tqdm(range(state.epoch, config.epochs), desc=f"{arch} epochs", disable=not progress,
                      initial=state.epoch, total=config.epochs, leave=False)
    for epoch in epochs_bar:
        frozen = epoch < config.freeze_epochs
        set_backbone_trainable(model, arch, not frozen)
        model.train()
        gen = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
        order = torch.as_tensor(train_rows)[torch.randperm(len(train_rows), generator=gen)]
        t0 = time.perf_counter()
        train_loss = _train_epoch(model, pipeline, order, labels_t, config, opt, scaler, class_weight, gen,
                                  f"epoch {epoch + 1}", progress,
                                  first_step=epoch * math.ceil(len(train_rows) / config.batch_size))
        sched.step()
        train_seconds = time.perf_counter() - t0
        if not math.isfinite(train_loss):
            raise NonFiniteLossError(
                f"{arch}: training loss became {train_loss} in epoch {epoch + 1}; lower the learning "
                f"rate (lr={config.lr}). The last good checkpoints are kept in {out_dir}")
        if config.recalibrate_bn:
            recalibrate_batchnorm(model, pipeline, bn_rows, config.batch_size, config.amp)
        val = _validate(model, pipeline, val_rows, labels_t, class_names, config)
        state.history.append({"epoch": epoch + 1, "lr": opt.param_groups[0]["lr"], "train_loss": train_loss, **val,
                              "frozen_backbone": frozen, "train_seconds": train_seconds})
        state.epoch = epoch + 1
        if val["val_f1_macro"] > state.best_f1:
            state.best_f1, state.best_epoch, state.bad_epochs = val["val_f1_macro"], epoch + 1, 0
            save_checkpoint({**meta, "epoch": epoch + 1, "val_f1_macro": state.best_f1,
                          "model_state": model.state_dict()}, best_file)
        else:
            state.bad_epochs += 1
        if time.perf_counter() - last_resume >= config.resume_every_seconds:
            last_resume = time.perf_counter()
            state.save(resume_file, meta, model, opt, sched, scaler, device)
        epochs_bar.set_postfix(loss=f"{train_loss:.3f}", val_f1=f"{val['val_f1_macro']:.3f}")
        write_csv_atomic(pd.DataFrame(state.history), out_dir / "history.csv")
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, pd.DataFrame(state.history))
        if state.bad_epochs >= config.patience and epoch + 1 >= min_epochs:
            stopped_early = epoch + 1 < config.epochs
            break
    epochs_bar.close()
    seconds = time.perf_counter() - started
    history = state.history
    save_checkpoint({**meta, "epoch": len(history), "val_f1_macro": history[-1]["val_f1_macro"] if history else None,
                  "model_state": model.state_dict()}, last_file)
    resume_file.unlink(missing_ok=True)
    hist_df = pd.DataFrame(history)
    write_csv_atomic(hist_df, out_dir / "history.csv")
    train_time = float(hist_df["train_seconds"].sum()) if len(hist_df) else 0.0
    return FitResult(hist_df, best_file, last_file, state.best_epoch, stopped_early, seconds,
                     images_per_second=(len(train_rows) * len(hist_df) / train_time) if train_time else 0.0,
                     precision=precision_path(device, config.amp, config.channels_last))


