"""The setup every notebook runs first: validate parameters, seed, style, print the environment."""
from __future__ import annotations

import platform
import random
from typing import Any

import numpy as np

from .config import DEFAULTS, resolve_params
from .runfolder import RunFolder


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's global generators (the engine also seeds per fit)."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def environment() -> dict[str, str]:
    """Versions and device of this kernel, for the record at the top of each notebook."""
    import matplotlib
    import torch
    import torchvision

    try:
        from importlib.metadata import version
        gradcam = version("grad-cam")
    except Exception:  # noqa: BLE001 - informational only
        gradcam = "not installed"
    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {"python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "grad-cam": gradcam, "numpy": np.__version__,
            "matplotlib": f"{matplotlib.__version__} ({matplotlib.get_backend()})",
            "cuda device": cuda, "cpu threads": str(torch.get_num_threads())}


def setup_notebook(namespace: dict[str, Any], title: str) -> dict[str, Any]:
    """Validate the notebook's parameters and prepare the session.

    Parameters
    ----------
    namespace : dict
        The notebook's ``globals()``; the shared parameters are read from it.
    title : str
        Printed with the environment.

    Returns
    -------
    dict
        The resolved parameters (see :func:`xai_helpers.config.resolve_params`), also written
        to ``<run_dir>/config.json``.
    """
    from .figures import set_style

    params = resolve_params({k: namespace[k] for k in DEFAULTS if k in namespace})
    seed_everything(params["seed"])
    set_style()
    RunFolder(params["run_dir"]).write_config(params)
    print(title)
    for k, v in environment().items():
        print(f"  {k:<12} {v}")
    print(f"  {'dataset':<12} {params['dataset']} ({params['data_root']})")
    print(f"  {'run_dir':<12} {params['run_dir']}")
    print(f"  {'seed':<12} {params['seed']}")
    return params
