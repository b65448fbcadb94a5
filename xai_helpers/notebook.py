"""The setup every notebook runs first: validate parameters, seed, style, print the environment."""
from __future__ import annotations

import json
import platform
import random
from importlib.metadata import version
from typing import Any

import matplotlib
import numpy as np
import torch
import torchvision

from .config import DEFAULTS, ParameterError, resolve_params
from .figures import set_style
from .runfolder import RunFolder


def check_against_prepared_data(run: RunFolder, params: dict[str, Any]) -> None:
    """Refuse parameters that contradict the data notebook 01 prepared in ``run``.

    The image size, the number of folds and the dataset (layout and folder) are fixed by the
    prepared data; a later notebook run with other values would state a protocol that was never
    run. Other parameters may differ (training another subset of models is allowed).

    Parameters
    ----------
    run : RunFolder
        The run folder (a folder without ``data/dataset.json`` passes: nothing is prepared yet).
    params : dict
        Resolved notebook parameters.

    Raises
    ------
    ParameterError
        Naming the parameter, both values, and how to proceed.

    Examples
    --------
    >>> from xai_helpers.examples import tiny_run
    >>> params = tiny_run()
    >>> check_against_prepared_data(RunFolder(params["run_dir"]), params)  # as prepared: passes
    >>> check_against_prepared_data(RunFolder(params["run_dir"]), {**params, "image_size": 128})
    Traceback (most recent call last):
    ...
    xai_helpers.errors.ParameterError: image_size: the run folder ... with image_size=64, not 128; ...
    """
    info_file = run.dataset_file
    if not info_file.is_file():
        return
    info = json.loads(info_file.read_text())
    prepared = run.step_params("01") if run.config_file.is_file() else {}
    checks = [("image_size", info.get("image_size"), params["image_size"]),
              ("folds", prepared.get("folds"), params["folds"]),
              ("data_root", info.get("root"), params["data_root"])]
    if params["dataset"] != "auto":
        checks.append(("dataset", info.get("layout"), params["dataset"]))
    for name, have, asked in checks:
        if have is not None and str(have) != str(asked):
            raise ParameterError(f"{name}: the run folder {run.root} holds data prepared with {name}={have!r}, not "
                                 f"{asked!r}; pass {name}={have!r}, or rerun notebook 01 (or use another run_dir) "
                                 f"to prepare the data anew")


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's global generators (the engine also seeds per fit).

    Parameters
    ----------
    seed : int

    Examples
    --------
    >>> seed_everything(3); a = (random.random(), np.random.rand(), torch.rand(1).item())
    >>> seed_everything(3); a == (random.random(), np.random.rand(), torch.rand(1).item())
    True
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def environment() -> dict[str, str]:
    """Versions and device of this kernel, for the record at the top of each notebook.

    Returns
    -------
    dict
        ``python``, ``torch``, ``torchvision``, ``grad-cam``, ``numpy``, ``matplotlib`` (with its
        backend), ``cuda device`` and ``cpu threads``, as strings.

    Examples
    --------
    >>> env = environment()
    >>> env["torch"] == torch.__version__, "cuda device" in env
    (True, True)
    """
    try:
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

    Checks the parameters against the prepared data (notebooks 02-05 and 07), seeds every
    generator, sets the plotting style, claims the run folder and records the parameters in its
    ``config.json`` (under ``steps`` for the notebook's number), then prints the environment.

    Parameters
    ----------
    namespace : dict
        The notebook's ``globals()``; the shared parameters are read from it.
    title : str
        Printed with the environment; its first two characters name the step (``"02 · Training"``).

    Returns
    -------
    dict
        The resolved parameters (see :func:`xai_helpers.config.resolve_params`), also written
        to ``<run_dir>/config.json``.

    Examples
    --------
    >>> from xai_helpers.examples import tiny_run
    >>> params = setup_notebook(tiny_run(), "03 · Statistics")  # doctest: +ELLIPSIS
    03 · Statistics
      python ...
    >>> RunFolder(params["run_dir"]).step_params("03")["folds"]
    2
    """
    params = resolve_params({k: namespace[k] for k in DEFAULTS if k in namespace})
    step = title[:2] if title[:2].isdigit() else None
    run = RunFolder(params["run_dir"])
    if step not in (None, "01", "06"):
        check_against_prepared_data(run, params)
    seed_everything(params["seed"])
    set_style()
    run.claim()
    run.write_config(params, step=step)
    print(title)
    for k, v in environment().items():
        print(f"  {k:<12} {v}")
    print(f"  {'dataset':<12} {params['dataset']} ({params['data_root']})")
    print(f"  {'run_dir':<12} {params['run_dir']}")
    print(f"  {'seed':<12} {params['seed']}")
    return params
