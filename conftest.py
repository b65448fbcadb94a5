"""Fixtures of every test and of the doctests in xai_helpers/: an isolated image cache.

The doctests that need a run folder build theirs with :mod:`xai_helpers.examples` (``tiny_run()``,
``example_study()``), as a reader copying an example into a notebook would.
"""
from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Image caches of the tests go to a temporary folder, not the project's cache/."""
    os.environ["XAI_HELPERS_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    import torch
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    yield
