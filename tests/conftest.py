"""Shared fixtures. The expensive one, ``quick_run``, executes the whole notebook sequence once
per session (quick profile) and every test that needs a run folder shares it."""
from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_dataset(name: str) -> Path:
    """Path of a real dataset in ../shared/data, or skip the test saying it is absent."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"needs the real dataset {path} (../shared/data beside the project); it is absent here")
    return path


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory):
    """Resolved parameters of a finished quick-profile run of every notebook (shared, ~4 min on 2 cores)."""
    from xai_helpers.run import execute, list_notebooks, runner_order, resolve_run_params

    root = tmp_path_factory.mktemp("quick")
    params = resolve_run_params("quick", {"run_dir": str(root / "run"), "data_root": str(root / "synthetic_quick")})
    execute(params, runner_order(list_notebooks()), progress=False)
    return params
