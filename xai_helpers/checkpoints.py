"""The checkpoint format, and the only module that reads or writes it.

A checkpoint is a plain dict saved with ``torch.save``: tensors, numbers, strings, lists and dicts
only, so that it loads with ``torch.load(..., weights_only=True)`` (no pickled code runs).

===============  ==================================================================================
key              what it holds
===============  ==================================================================================
``arch``         the architecture (:data:`xai_helpers.models.MODEL_NAMES`)
``class_names``  the classes, in the order of the model's outputs
``image_size``   the square input size in pixels
``mean``, ``std``  the input normalisation
``config``       the training settings (:class:`xai_helpers.training.TrainConfig` as a dict)
``fingerprint``  what the fit was trained on (the data, fold and settings; reuse is checked with it)
``epoch``        epochs run (``best.pt``: the epoch of the best validation macro-F1)
``model_state``  the weights (a state dict), and ``state_digest`` their CRC-32 (:func:`state_digest`)
===============  ==================================================================================

``resume.pt`` (an interrupted fit) adds the optimizer, scheduler, scaler and random states under
``*_state`` / ``rng`` keys. Writes are atomic: a unique temporary name, then a rename, so a reader
never sees half a file and two writers never share a temporary file. Every full read checks the weights against
``state_digest`` (flipped bytes in a tensor would otherwise load silently). A file that cannot be read (truncated by a
full disk or an interrupted copy, damaged bytes) is a :class:`~xai_helpers.errors.CorruptCheckpointError` naming
the fit (``checkpoints/<model>_fold<k>/``) and what re-creates it, never a raw unpickling or zip error.

Examples
--------
>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "last.pt"
>>> save_checkpoint({"arch": "resnet50", "epoch": 3, "model_state": {"w": torch.zeros(2)}}, path)
>>> read_checkpoint_meta(path)
{'arch': 'resnet50', 'epoch': 3}
>>> read_checkpoint(path)["model_state"]["w"].tolist()
[0.0, 0.0]
"""
from __future__ import annotations

import os
import re
import uuid
import zlib
from pathlib import Path
from typing import Any

import torch

from .errors import CorruptCheckpointError


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """A CRC-32 of a state dict: each key and its tensor's dtype, shape and bytes, in key order.

    A checksum against accidental damage (a bad sector, a broken copy), as zip files carry one per member, not
    against tampering; it reads about 3 GB/s, so checking a VGG16 checkpoint costs a fraction of loading it.

    Examples
    --------
    >>> a = {"w": torch.zeros(3), "b": torch.ones(1, dtype=torch.bfloat16)}
    >>> state_digest(a) == state_digest({"b": torch.ones(1, dtype=torch.bfloat16), "w": torch.zeros(3)})
    True
    >>> state_digest(a) == state_digest({**a, "w": torch.tensor([0.0, 0.0, 1e-30])})
    False
    """
    crc = 0
    for key in sorted(state):
        t = state[key]
        crc = zlib.crc32(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode(), crc)
        crc = zlib.crc32(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy(), crc)
    return f"crc32:{crc:08x}"


def _fit_of(path: Path) -> str:
    """``'resnet50 fold 0'`` for ``.../checkpoints/resnet50_fold0/best.pt``, else the file's name."""
    match = re.fullmatch(r"(.+)_fold(\d+)", path.parent.name)
    return f"{match.group(1)} fold {match.group(2)}" if match else path.name


def _corrupt(path: Path, problem: str) -> CorruptCheckpointError:
    fit = _fit_of(path)
    if fit == path.name:  # not in a run folder's checkpoints/
        message = f"{path}: not a loadable checkpoint: {problem}"
    else:
        message = (f"{path} ({fit}): not a loadable checkpoint: {problem}; rerun notebook 02 (python -m "
                   f"xai_helpers.run --only 02 with the same run_dir): it retrains the fits whose checkpoints are "
                   f"damaged, {fit} among them")
    return CorruptCheckpointError(message, problem, str(path))


def save_checkpoint(obj: dict[str, Any], path: str | os.PathLike) -> None:
    """``torch.save`` of ``obj`` through a temporary file of a unique name, then an atomic rename; a
    ``model_state`` gets its :func:`state_digest` beside it (``state_digest``)."""
    path = Path(path)
    if isinstance(obj.get("model_state"), dict):
        obj = {**obj, "state_digest": state_digest(obj["model_state"])}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu", mmap: bool = False) -> Any:
    """The object in a checkpoint file, loaded with ``weights_only=True``, its weights checked against their digest.

    Parameters
    ----------
    path : path
    device : str or torch.device
        Where tensors are mapped.
    mmap : bool
        Memory-map the file: tensors are read only when touched (for the metadata of a large file; the weights'
        digest is then not checked, since that would read them all).

    Raises
    ------
    CorruptCheckpointError
        Naming the file and its fit, when ``torch.load`` cannot read it with ``weights_only=True`` (truncated,
        damaged, not a checkpoint) or its weights do not match their ``state_digest``.
    """
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True, mmap=mmap)
    except FileNotFoundError:
        raise
    except Exception as err:  # noqa: BLE001 - any unpickling or zip problem is reported with the file and its fit
        size = path.stat().st_size if path.is_file() else 0
        raise _corrupt(path, f"the file ({size:,} bytes) is truncated, damaged or not a checkpoint") from err
    if not mmap and isinstance(ckpt, dict) and "state_digest" in ckpt and isinstance(ckpt.get("model_state"), dict):
        if state_digest(ckpt["model_state"]) != ckpt["state_digest"]:
            raise _corrupt(path, "its weights changed on disk since they were written (their digest differs)")
    return ckpt


def read_checkpoint_meta(path: str | os.PathLike) -> dict[str, Any]:
    """Everything in a checkpoint but its tensors of state (``model_state``, ``*_state``, ``rng``).

    The file is memory-mapped, so reading the metadata of a 500 MB VGG16 checkpoint costs
    milliseconds (what the reuse check of notebook 02 and the report need).
    """
    ckpt = read_checkpoint(path, mmap=True)
    if not isinstance(ckpt, dict):
        return {}
    return {k: v for k, v in ckpt.items() if not (k.endswith("_state") or k in ("rng", "state_digest"))}
