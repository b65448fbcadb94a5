"""How long a run will take on this machine, said before it starts.

Machines differ by 7x and more on this study (a CPU with AVX-512 BF16 or AMX trains in bf16; one with AVX2
only, in fp32). So the runner measures this machine first, with a short probe (:func:`probe_images_per_second`:
a few ResNet50 training steps at the run's image size and precision, a few seconds), and scales the per-notebook
times measured on reference machines (:data:`REFERENCES`, each measured together with the same probe).

With two reference machines the time of each notebook is interpolated on a log-log line through them
(``t = t_1 · (p / p_1) ** k``, ``k`` from the two points), so a notebook that barely depends on CNN speed (03,
06) barely moves, and one that is all training (02) moves with the probe; with one, the notebooks that run CNNs
(:data:`CNN_NOTEBOOKS`) scale as ``p_1 / p`` and the others (data, statistics, the report) are taken as measured.
It is an estimate: it says so, and names the machines it comes from.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F

from .inference import autocast_dtype, resolve_device
from .models import build_model
from .training import TrainConfig, make_optimizer

#: The notebooks whose time is mostly CNN work (training, CAMs, inference under corruption).
CNN_NOTEBOOKS = ("02", "04", "05", "07")

#: The probe's model and batch: ResNet50 is the study's model and a middle of the four in cost.
PROBE_MODEL, PROBE_BATCH, PROBE_STEPS = "resnet50", 16, 3


@dataclass(frozen=True)
class Reference:
    """Per-notebook seconds of one profile, measured on one machine, with the probe's figure there."""

    machine: str
    probe_images_per_second: float
    seconds: Mapping[str, float]


#: Measured (``python -m xai_helpers.run --profile NAME``, the runner's "done in" lines, one job on the
#: machine) with :func:`probe_images_per_second` run on the same machine just before.
REFERENCES: dict[str, tuple[Reference, ...]] = {
    # 2026-12-02, 2-core Intel Xeon with AMX and AVX-512 BF16 (bf16 autocast), the demo profile: 675 s in all
    "demo": (Reference("2-core Intel Xeon with AMX, bf16", 73.4,
                       {"01": 11, "02": 429, "03": 11, "04": 15, "05": 104, "07": 97, "06": 7}),
             # the same machine with AVX2 kernels only (ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2): fp32 with
             # channels_last, as an AVX2-only CPU runs the demo; 935 s in all
             Reference("the same Xeon with AVX2 kernels only, fp32", 40.0,
                       {"01": 13, "02": 597, "03": 13, "04": 16, "05": 136, "07": 147, "06": 10})),
}


def probe_images_per_second(image_size: int = 64, device: str = "auto", precision: str = "auto",
                            steps: int = PROBE_STEPS, seed: int = 0, model: str = PROBE_MODEL,
                            batch: int = PROBE_BATCH) -> float:
    """Training throughput of ResNet50 on random images, as the engine trains it (Adam, the run's precision).

    One warm-up step, then ``steps`` timed steps of :data:`PROBE_BATCH` images.

    Parameters
    ----------
    image_size : int
    device : str
        A ``device`` parameter.
    precision : {'auto', 'fp32'}
        ``auto``: bf16 autocast and channels_last where the hardware runs bf16 natively, as notebook 02.
    steps : int
    seed : int
    model : str
        Another of the four CNNs (benchmarks).
    batch : int

    Returns
    -------
    float
        Images per second.

    Examples
    --------
    >>> probe_images_per_second(image_size=32, steps=1) > 0
    True
    """
    dev = resolve_device(device)
    amp = precision == "auto"
    dtype = autocast_dtype(dev, amp)
    torch.manual_seed(seed)
    net = build_model(model, 3).to(dev).train()
    if amp:
        net = net.to(memory_format=torch.channels_last)
    opt = make_optimizer(net, TrainConfig(lr=1e-3))  # Adam, fused where there is a kernel, as the engine
    x = torch.randn(batch, 3, image_size, image_size, device=dev)
    if amp:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 3, (batch,), device=dev)

    def step() -> None:
        with torch.autocast(dev.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()

    step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - started)


def expected_seconds(references: tuple[Reference, ...], images_per_second: float) -> dict[str, float]:
    """Each notebook's expected seconds on a machine whose probe gives ``images_per_second``.

    Parameters
    ----------
    references : tuple of Reference
        One or two (more: the two whose probes are furthest apart are used).
    images_per_second : float

    Returns
    -------
    dict
        Notebook number -> seconds.

    Examples
    --------
    >>> fast = Reference("fast", 80.0, {"02": 100.0, "03": 10.0})
    >>> slow = Reference("slow", 10.0, {"02": 800.0, "03": 10.0})
    >>> {k: round(v) for k, v in expected_seconds((fast, slow), 80.0).items()}  # on a reference: its times
    {'02': 100, '03': 10}
    >>> {k: round(v) for k, v in expected_seconds((fast, slow), 20.0).items()}  # 02 scales, 03 does not
    {'02': 400, '03': 10}
    >>> {k: round(v) for k, v in expected_seconds((fast,), 40.0).items()}  # one reference: 03 runs no CNN
    {'02': 200, '03': 10}
    """
    refs = sorted(references, key=lambda r: r.probe_images_per_second)
    low, high = refs[0], refs[-1]
    out = {}
    for book, seconds in high.seconds.items():
        if low is high or book not in low.seconds:
            scales = book in CNN_NOTEBOOKS
            out[book] = seconds * (high.probe_images_per_second / images_per_second if scales else 1.0)
            continue
        k = (math.log(low.seconds[book] / seconds)
             / math.log(high.probe_images_per_second / low.probe_images_per_second))
        out[book] = seconds * (high.probe_images_per_second / images_per_second) ** k
    return out


def expected_time_text(profile: str, params: Mapping[str, Any], notebooks: list[str],
                       images_per_second: float | None = None) -> str | None:
    """The runner's line before it starts: the probe's figure and the expected time of each notebook.

    None for a profile measured on no reference machine. ``images_per_second`` skips the probe (tests).

    Examples
    --------
    >>> expected_time_text("no such profile", {}, ["02"]) is None
    True
    """
    references = REFERENCES.get(profile)
    if not references:
        return None
    if images_per_second is None:
        images_per_second = probe_images_per_second(params["image_size"], params["device"], params["precision"],
                                                    seed=params["seed"])
    per_book = expected_seconds(references, images_per_second)
    books = [b for b in notebooks if b in per_book]
    total = sum(per_book[b] for b in books)
    times = ", ".join(f"{b} {_duration(per_book[b])}" for b in books)
    machines = "; ".join(f"{r.machine} ({r.probe_images_per_second:.0f} img/s)" for r in references)
    return (f"expected on this machine (an estimate): {_duration(total)} in all ({times}); the probe trains "
            f"{PROBE_MODEL} at {images_per_second:.0f} img/s here; measured times scaled from: {machines}")


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"
