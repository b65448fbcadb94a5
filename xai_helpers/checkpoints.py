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
``model_state``  the weights (a state dict)
===============  ==================================================================================

``resume.pt`` (an interrupted fit) adds the optimizer, scheduler, scaler and random states under
``*_state`` / ``rng`` keys. Writes are atomic: a unique temporary name, then a rename, so a reader
never sees half a file and two writers never share a temporary file.

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
import uuid
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointMismatchError


def save_checkpoint(obj: dict[str, Any], path: str | os.PathLike) -> None:
    """``torch.save`` of ``obj`` through a temporary file of a unique name, then an atomic rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu", mmap: bool = False) -> Any:
    """The object in a checkpoint file, loaded with ``weights_only=True``.

    Parameters
    ----------
    path : path
    device : str or torch.device
        Where tensors are mapped.
    mmap : bool
        Memory-map the file: tensors are read only when touched (for the metadata of a large file).

    Raises
    ------
    CheckpointMismatchError
        Naming the file, when it is not a file ``torch.load`` can read with ``weights_only=True``.
    """
    path = Path(path)
    try:
        return torch.load(path, map_location=device, weights_only=True, mmap=mmap)
    except FileNotFoundError:
        raise
    except Exception as err:  # noqa: BLE001 - any unpickling problem is reported with the file
        raise CheckpointMismatchError(f"{path}: not a loadable checkpoint ({err})") from err


def read_checkpoint_meta(path: str | os.PathLike) -> dict[str, Any]:
    """Everything in a checkpoint but its tensors of state (``model_state``, ``*_state``, ``rng``).

    The file is memory-mapped, so reading the metadata of a 500 MB VGG16 checkpoint costs
    milliseconds (what the reuse check of notebook 02 and the report need).
    """
    ckpt = read_checkpoint(path, mmap=True)
    if not isinstance(ckpt, dict):
        return {}
    return {k: v for k, v in ckpt.items() if not (k.endswith("_state") or k == "rng")}
