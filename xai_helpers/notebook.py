"""The setup every notebook runs first: validate parameters, seed, style, print the environment."""
from __future__ import annotations

import platform
import random
from importlib.metadata import version
from typing import Any

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import torch
import torchvision
from IPython.display import display

from .config import DEFAULTS, check_against_prepared, resolve_params
from .figures import set_style
from .progress import use_text_bars
from .runfolder import RunFolder
from .steps.prepare import prepared_parameters


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
        check_against_prepared(params, prepared_parameters(run), str(run.root))
    seed_everything(params["seed"])
    set_style()
    use_text_bars(not params["interactive"])  # widgets only where someone watches them
    run.claim()
    run.write_config(params, step=step)
    print(title)
    for k, v in environment().items():
        print(f"  {k:<12} {v}")
    print(f"  {'dataset':<12} {params['dataset']} ({params['data_root']})")
    print(f"  {'run_dir':<12} {params['run_dir']}")
    print(f"  {'seed':<12} {params['seed']}")
    return params


def show_table(table: pd.DataFrame, limit: int = 12, source: str | Path | None = None, digits: int | None = 3) -> None:
    """Display a table in a notebook without truncating it silently.

    At most ``limit`` rows are shown, every one of them and every column (pandas' display limits do not cut
    them); when there are more, a line under the table says how many and where
    all of them are (``source``: the csv the table was read from or written to).

    Parameters
    ----------
    table : pandas.DataFrame
    limit : int
    source : path, optional
    digits : int, optional
        Decimal places of the float columns (None: as they are).

    Examples
    --------
    >>> show_table(pd.DataFrame({"x": range(20)}), limit=2, source="runs/demo/metrics.csv")
       x
    0  0
    1  1
    first 2 of 20 rows; all of them in metrics.csv (runs/demo/metrics.csv)
    >>> show_table(pd.DataFrame({"x": [0.12345]}))
           x
    0  0.123
    """
    shown = table.round(digits) if digits is not None else table
    # pandas' own display limits (60 rows, 20 columns) would cut what ``limit`` asks to show, with only a '...'
    with pd.option_context("display.max_rows", max(limit, 1) + 1, "display.min_rows", max(limit, 1) + 1,
                           "display.max_columns", None, "display.width", None):
        display(shown.head(limit))
    if len(table) > limit:
        where = f"; all of them in {Path(source).name} ({source})" if source is not None else ""
        print(f"first {limit} of {len(table)} rows{where}")
