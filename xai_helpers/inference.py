"""What every step that runs a trained model needs: the device, the precision, batches and predictions.

* :func:`resolve_device` turns the ``device`` parameter into a ``torch.device`` (and refuses a
  device this machine lacks);
* :func:`autocast_dtype` / :func:`precision_path`: bf16 autocast where the hardware runs it natively
  (a CUDA GPU, or a CPU with AVX-512 BF16 or AMX, :func:`cpu_supports_bf16`), fp32 elsewhere;
* :class:`BatchPipeline` turns rows of the uint8 image cache into normalised float batches on the
  device (with :func:`augment_batch` when training asks for it);
* :func:`predict_proba` runs a model over rows of the cache; :func:`load_checkpoint` rebuilds a
  trained model from its ``best.pt`` / ``last.pt`` (:mod:`xai_helpers.checkpoints`).

Training (:mod:`xai_helpers.training`), the explanations, notebook 07 and the explorer all import
these from here.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .checkpoints import read_checkpoint
from .errors import CheckpointMismatchError, ParameterError
from .models import IMAGENET_MEAN, IMAGENET_STD, build_model
from .progress import tqdm


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
        raise ParameterError(f"device: unknown value {device!r}; accepted values: auto, cpu, cuda, cuda:N, "
                             f"mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ParameterError(f"device: {device!r} was asked for, but CUDA is not available here; use 'auto' "
                                 f"or 'cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ParameterError(f"device: {device!r} was asked for, but this machine has {torch.cuda.device_count()} "
                             f"CUDA device(s) (cuda:0 .. cuda:{torch.cuda.device_count() - 1})")
    if dev.type == "mps" and not _mps_available():
        raise ParameterError(f"device: {device!r} was asked for, but MPS (Apple GPU) is not available here; "
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


#: The environment variables that restrict PyTorch's CPU kernels below what the hardware has.
KERNEL_LIMITS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")


def _cpu_name_and_flags(cpuinfo: str | None) -> tuple[str, set[str]]:
    """The model name and the flags of ``/proc/cpuinfo``'s text (read when None; none without the file)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    name, flags = "unknown CPU", set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and name == "unknown CPU":
            name = value.strip()
        elif key.strip() == "flags":
            flags.update(value.split())
    return name, flags


#: oneDNN's instruction-set names below ``avx512_core_bf16``, the first with bfloat16 dot products: with
#: ``ONEDNN_MAX_CPU_ISA`` (or ``DNNL_MAX_CPU_ISA``) at one of them, oneDNN runs bf16 on slow reference kernels.
ONEDNN_ISAS_WITHOUT_BF16 = ("sse41", "avx", "avx2", "avx2_vnni", "avx2_vnni_2", "avx512_core", "avx512_core_vnni")


def cpu_supports_bf16(cpuinfo: str | None = None, environ: Mapping[str, str] | None = None) -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX-512 BF16 or AMX), where bf16 autocast pays.

    Without those instructions oneDNN emulates bfloat16 and autocast is slower than float32. The
    same holds when the instructions are there but switched off for PyTorch: ``ONEDNN_MAX_CPU_ISA``
    below ``avx512_core_bf16`` or ``ATEN_CPU_CAPABILITY`` at ``avx2``/``default`` (how a fast CPU runs an
    AVX2-only machine's kernels, see "The demo on an AVX2-only CPU" in docs/running.md).

    Parameters
    ----------
    cpuinfo : str, optional
        The text of ``/proc/cpuinfo`` (read when None; a machine without one has no known support).
    environ : mapping, optional
        The environment (``os.environ`` when None).

    Returns
    -------
    bool

    Examples
    --------
    >>> cpu_supports_bf16("flags : fpu avx512f avx512_bf16 amx_tile", {}), cpu_supports_bf16("flags : fpu avx2", {})
    (True, False)
    >>> cpu_supports_bf16("flags : fpu avx512f avx512_bf16 amx_tile", {"ONEDNN_MAX_CPU_ISA": "AVX2"})
    False
    """
    environ = os.environ if environ is None else environ
    isa = (environ.get("ONEDNN_MAX_CPU_ISA") or environ.get("DNNL_MAX_CPU_ISA") or "").strip().lower()
    if isa in ONEDNN_ISAS_WITHOUT_BF16 or environ.get("ATEN_CPU_CAPABILITY", "").strip().lower() in ("avx2", "default"):
        return False
    return bool(_cpu_name_and_flags(cpuinfo)[1] & {"avx512_bf16", "amx_bf16"})


_CPU_BF16 = cpu_supports_bf16()

#: The instruction sets that decide this project's CPU speed (see "Speed" in docs/engineering.md).
SPEED_FLAGS = ("amx_bf16", "avx512_bf16", "avx512f", "avx2")


def cpu_description(cpuinfo: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """The CPU a benchmark figure was measured on: its model name and which of :data:`SPEED_FLAGS` it has,
    and the kernels PyTorch was restricted to when ``ONEDNN_MAX_CPU_ISA``/``ATEN_CPU_CAPABILITY`` say so.

    Parameters
    ----------
    cpuinfo : str, optional
        The text of ``/proc/cpuinfo`` (read when None).
    environ : mapping, optional
        The environment (``os.environ`` when None).

    Returns
    -------
    str

    Examples
    --------
    >>> cpu_description("model name : AMD EPYC 9B14\\nflags : fpu avx2 fma", {})
    'AMD EPYC 9B14 (avx2)'
    >>> cpu_description("", {})
    'unknown CPU (no avx2)'
    >>> cpu_description("model name : Xeon\\nflags : avx2 avx512f", {"ONEDNN_MAX_CPU_ISA": "AVX2",
    ...                                                                "ATEN_CPU_CAPABILITY": "avx2"})
    'Xeon (avx512f, avx2), run with ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2'
    """
    environ = os.environ if environ is None else environ
    name, flags = _cpu_name_and_flags(cpuinfo)
    have = [f for f in SPEED_FLAGS if f in flags]
    limits = " ".join(f"{k}={environ[k]}" for k in KERNEL_LIMITS if environ.get(k))
    return f"{name} ({', '.join(have) if have else 'no avx2'})" + (f", run with {limits}" if limits else "")


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
    ckpt = read_checkpoint(path)
    if not isinstance(ckpt, dict) or "arch" not in ckpt:
        raise CheckpointMismatchError(f"{path}: not a checkpoint written by xai_helpers.training (no 'arch')")
    model = build_model(ckpt["arch"], len(ckpt["class_names"]))
    model.load_state_dict(ckpt["model_state"])
    meta = {k: v for k, v in ckpt.items() if k != "model_state"}
    return model.to(device).eval(), meta
