"""The training loop: batches from the uint8 image cache, augmentation on the device, early stopping,
atomic checkpoints and exact resume.

One call of :func:`fit` trains one model on one fold. Everything random is derived from the
seed: the model's initial weights, the order of the batches and the augmentation of epoch ``e``
come from ``seed`` and ``e`` alone, and dropout's global generator is saved with the resume
state, so an interrupted fit resumed from ``resume.pt`` ends with the same weights as an
uninterrupted one (on the same CPU machine).

Files in ``out_dir``:

* ``best.pt``: weights of the epoch with the best validation macro-F1, with everything needed to
  use them (architecture, class names, image size, normalisation, config); loads with
  ``torch.load(..., weights_only=True)``;
* ``last.pt``: the same for the final epoch;
* ``resume.pt``: model, optimizer, scheduler and random states after the latest epoch; deleted
  when the fit ends (a VGG16 resume file is about 1.6 GB);
* ``history.csv``: one row per epoch.
"""
from __future__ import annotations

import math
import os
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .evaluation import classification_metrics
from .models import IMAGENET_MEAN, IMAGENET_STD, build_model, set_backbone_trainable
from .atomic import write_csv_atomic

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("cosine", "step", "none")


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


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
        (:func:`cpu_supports_bf16`); fp32 everywhere else, and everywhere with False.
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


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def resolve_device(device: str = "auto") -> torch.device:
    """``torch.device`` for a device parameter; 'auto' picks CUDA, then MPS, then the CPU.

    Raises
    ------
    ValueError
        Naming the device when this machine lacks it (no CUDA, no such GPU index, no MPS), so that
        the parameter check refuses it before any work starts.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f"device: unknown value {device!r}; accepted values: auto, cpu, cuda, cuda:N, mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device: {device!r} was asked for, but CUDA is not available here; use 'auto' or 'cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device: {device!r} was asked for, but this machine has {torch.cuda.device_count()} "
                             f"CUDA device(s) (cuda:0 .. cuda:{torch.cuda.device_count() - 1})")
    if dev.type == "mps" and not _mps_available():
        raise ValueError(f"device: {device!r} was asked for, but MPS (Apple GPU) is not available here; "
                         f"use 'auto' or 'cpu'")
    return dev


#: Share of the GPU's free memory the uint8 image cache may take when it is copied there whole.
GPU_CACHE_FRACTION = 0.5


class BatchPipeline:
    """Turns rows of a uint8 image array into normalised float batches on the device.

    On a GPU the whole uint8 array is copied there once, chunk by chunk, when it fits in
    :data:`GPU_CACHE_FRACTION` of the free GPU memory (a few hundred MB for the study's datasets),
    so batches never cross the bus; otherwise each batch's rows are read on the host and sent
    through pinned memory. On the CPU the array is used in place: a memory-mapped cache (or an
    :class:`~xai_helpers.data.cache.ImageRows` view of it) is read batch by batch, never loaded whole.

    Parameters
    ----------
    images : (N, C, S, S) uint8 array, memory map, ImageRows or tensor
        ``C`` = 1 (greyscale, repeated to 3 channels) or 3.
    device : torch.device
    mean, std : sequence of 3 floats
        Normalisation (ImageNet's by default, also for models trained from scratch).

    Examples
    --------
    >>> pipe = BatchPipeline(np.zeros((4, 1, 8, 8), np.uint8), torch.device("cpu"))
    >>> tuple(pipe.batch(torch.tensor([0, 2])).shape), pipe.on_device
    ((2, 3, 8, 8), False)
    """

    def __init__(self, images: Any, device: torch.device,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        if isinstance(images, torch.Tensor):
            images = images.cpu().numpy()
        shape = tuple(images.shape)
        if np.dtype(images.dtype) != np.uint8 or len(shape) != 4 or shape[1] not in (1, 3):
            raise ValueError(f"images: expected a (N, 1|3, S, S) uint8 array, got {shape} {images.dtype}")
        self.device = device
        self.shape = shape
        self.host = images
        self.on_device = (device.type == "cuda"
                          and int(np.prod(shape)) <= GPU_CACHE_FRACTION * torch.cuda.mem_get_info(device)[0])
        if self.on_device:  # fits: batches never cross the bus
            self.data = torch.empty(shape, dtype=torch.uint8, device=device)
            step = max(1, (64 << 20) // max(1, int(np.prod(shape[1:]))))  # 64 MB of rows at a time
            for i in range(0, shape[0], step):
                self.data[i:i + step] = torch.from_numpy(np.ascontiguousarray(images[i:i + step])).to(device)
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1)
        self.channels_last = device.type == "cuda"

    def __len__(self) -> int:
        return self.shape[0]

    def rows(self, rows: torch.Tensor) -> torch.Tensor:
        """The uint8 images of ``rows`` on the device."""
        if self.on_device:
            return self.data[rows.to(self.device)]
        x = torch.from_numpy(np.ascontiguousarray(self.host[rows.cpu().numpy()]))
        if self.device.type == "cuda":
            return x.pin_memory().to(self.device, non_blocking=True)
        return x.to(self.device)

    def batch(self, rows: torch.Tensor, augment: bool = False, generator: torch.Generator | None = None,
              channels_last: bool | None = None) -> torch.Tensor:
        """Normalised float batch of ``rows`` (optionally augmented, with ``generator``), in channels_last
        memory when ``channels_last`` says so (None: the pipeline's default, on for CUDA)."""
        x = self.rows(rows).float().div_(255)
        if augment:
            x = augment_batch(x, generator)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = (x - self.mean) / self.std
        if self.channels_last if channels_last is None else channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


def augment_batch(x: torch.Tensor, generator: torch.Generator | None = None,
                  max_rotation: float = 10.0, max_scale: float = 0.1, max_shift: float = 0.05,
                  max_brightness: float = 0.1, max_contrast: float = 0.1) -> torch.Tensor:
    """Medical-image augmentation of a float batch in [0, 1], on its device.

    Per image: horizontal flip (p = 0.5), rotation within +-``max_rotation`` degrees, scaling
    within 1 +- ``max_scale``, shift within +-``max_shift`` of the side, brightness and contrast
    changes within +-10 %. The random numbers come from ``generator`` (on the CPU), so the same
    generator state gives the same batch on any device.
    """
    b = x.shape[0]
    r = torch.rand(b, 7, generator=generator).to(x.device)
    flip = torch.where(r[:, 0] < 0.5, -1.0, 1.0)
    angle = (r[:, 1] * 2 - 1) * math.radians(max_rotation)
    scale = 1 + (r[:, 2] * 2 - 1) * max_scale
    tx, ty = (r[:, 3] * 2 - 1) * max_shift * 2, (r[:, 4] * 2 - 1) * max_shift * 2
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    brightness = ((r[:, 5] * 2 - 1) * max_brightness).view(b, 1, 1, 1)
    contrast = (1 + (r[:, 6] * 2 - 1) * max_contrast).view(b, 1, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * contrast + mean + brightness).clamp_(0, 1)


def cpu_supports_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX-512 BF16 or AMX), where bf16 autocast pays.

    Without those instructions oneDNN emulates bfloat16 and autocast is slower than float32.

    Parameters
    ----------
    cpuinfo : str, optional
        The text of ``/proc/cpuinfo`` (read when None; a machine without one has no known support).

    Returns
    -------
    bool

    Examples
    --------
    >>> cpu_supports_bf16("flags : fpu avx512f avx512_bf16 amx_tile"), cpu_supports_bf16("flags : fpu avx2")
    (True, False)
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[-1].split())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


_CPU_BF16 = cpu_supports_bf16()

#: Models whose training is slower in bf16 than in fp32 on the CPU, even with native bf16
#: (benchmarks/bench_cpu_paths.py, 2 cores, 64 px, batch 32: EfficientNet-B0 85 img/s in bf16 with
#: channels_last against 144 in fp32; its depthwise convolutions have no fast bf16 kernel). They train
#: in fp32 there, with channels_last.
CPU_FP32_MODELS = ("efficientnet_b0",)


def autocast_dtype(device: torch.device, amp: bool = True) -> torch.dtype | None:
    """The dtype mixed precision runs in on ``device``, or None where it stays fp32.

    Parameters
    ----------
    device : torch.device
    amp : bool
        False: fp32 everywhere.

    Returns
    -------
    torch.dtype or None
        bfloat16 on a CUDA GPU with bf16 and on a CPU with native bf16 (:func:`cpu_supports_bf16`),
        float16 on an older CUDA GPU, None otherwise.

    Examples
    --------
    >>> autocast_dtype(torch.device("cpu"), amp=False) is None
    True
    >>> autocast_dtype(torch.device("cpu")) == (torch.bfloat16 if cpu_supports_bf16() else None)
    True
    """
    if not amp:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and _CPU_BF16:
        return torch.bfloat16
    return None


def precision_path(device: torch.device, amp: bool = True, channels_last: bool = True) -> str:
    """How a fit computes, in words, for ``metrics.csv`` and the report's protocol table.

    Parameters
    ----------
    device : torch.device
    amp, channels_last : bool
        :class:`TrainConfig`'s fields.

    Returns
    -------
    str
        ``'bf16 autocast'``, ``'fp16 autocast'`` or ``'fp32'``, with ``', channels_last'`` when set.

    Examples
    --------
    >>> precision_path(torch.device("cpu"), amp=False, channels_last=False)
    'fp32'
    >>> precision_path(torch.device("cpu"), amp=False)
    'fp32, channels_last'
    """
    dtype = autocast_dtype(device, amp)
    name = {torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast", None: "fp32"}[dtype]
    return f"{name}, channels_last" if channels_last else name


def _autocast(device: torch.device, enabled: bool):
    dtype = autocast_dtype(device, enabled)
    if dtype is None:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=dtype)


@torch.no_grad()
def predict_proba(model: nn.Module, pipeline: BatchPipeline, rows: np.ndarray | Sequence[int],
                  batch_size: int = 64, amp: bool = True, progress: bool = False,
                  desc: str = "predicting") -> np.ndarray:
    """Softmax probabilities ``(len(rows), K)`` of ``model`` on cached images ``rows``."""
    model.eval()
    rows_t = torch.as_tensor(np.asarray(rows), dtype=torch.long)
    out = []
    for i in tqdm(range(0, len(rows_t), batch_size), desc=desc, leave=False, disable=not progress):
        with _autocast(pipeline.device, amp):
            logits = model(pipeline.batch(rows_t[i:i + batch_size]))
        out.append(torch.softmax(logits.float(), dim=1))
    if not out:
        return np.zeros((0, 0), np.float32)
    return torch.cat(out).cpu().numpy()


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


def _save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` through a temporary file of a unique name, then an atomic rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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
        _save_atomic({"meta": meta, "epoch": self.epoch, "best_f1": self.best_f1, "best_epoch": self.best_epoch,
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
        state = torch.load(path, map_location=device, weights_only=True)
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
        What the fit's data and weights are (see :func:`xai_helpers.steps.training.fit_fingerprint`):
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

    if config.amp and device.type == "cpu" and arch in CPU_FP32_MODELS:
        config = replace(config, amp=False)  # bf16 is slower for this model on the CPU (see CPU_FP32_MODELS)
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
                      initial=state.epoch, total=config.epochs)
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
            _save_atomic({**meta, "epoch": epoch + 1, "val_f1_macro": state.best_f1,
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
    _save_atomic({**meta, "epoch": len(history), "val_f1_macro": history[-1]["val_f1_macro"] if history else None,
                  "model_state": model.state_dict()}, last_file)
    resume_file.unlink(missing_ok=True)
    hist_df = pd.DataFrame(history)
    write_csv_atomic(hist_df, out_dir / "history.csv")
    train_time = float(hist_df["train_seconds"].sum()) if len(hist_df) else 0.0
    return FitResult(hist_df, best_file, last_file, state.best_epoch, stopped_early, seconds,
                     images_per_second=(len(train_rows) * len(hist_df) / train_time) if train_time else 0.0,
                     precision=precision_path(device, config.amp, config.channels_last))


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model stored in a ``best.pt``/``last.pt`` file (loaded with ``weights_only=True``).

    Returns
    -------
    model : torch.nn.Module
        In eval mode, on ``device``.
    meta : dict
        ``arch``, ``class_names``, ``image_size``, ``mean``, ``std``, ``config``, ``epoch``.
    """
    path = Path(path)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or "arch" not in ckpt:
        raise ValueError(f"{path}: not a checkpoint written by xai_helpers.training (no 'arch')")
    model = build_model(ckpt["arch"], len(ckpt["class_names"]))
    model.load_state_dict(ckpt["model_state"])
    meta = {k: v for k, v in ckpt.items() if k != "model_state"}
    return model.to(device).eval(), meta
