"""Fixtures of every test and of the doctests in xai_helpers/: an isolated image cache, and two small
run folders the docstring examples use (built once per session, when an example first asks).

``tiny_run()``: the parameters of a run folder that notebooks 01 and 02 have prepared and trained
(6 synthetic images per class, ResNet50, 2 folds, 1 epoch: seconds on 2 cores; nothing learnt).
``example_study()``: a study folder with two dataset runs as notebooks 01-05 leave them, with chosen
numbers (tests/fake_runs.py), for the summary's examples.
"""
from __future__ import annotations

import copy
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "tests"))  # fake_runs, a test helper

_BUILT: dict[str, object] = {}


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Image caches of the tests go to a temporary folder, not the project's cache/."""
    os.environ["XAI_HELPERS_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    import torch
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    yield


def _tiny_run(tmp_path_factory) -> dict:
    if "tiny_run" not in _BUILT:
        from xai_helpers.run import resolve_run_params
        from xai_helpers.steps import prepare_data, train_models

        root = tmp_path_factory.mktemp("tiny")
        params = resolve_run_params("quick", {
            "run_dir": str(root / "run"), "data_root": str(root / "synthetic"), "synthetic_per_class": 6,
            "models": ["resnet50"], "explain_per_class": 1, "generalization_per_class": 2,
            "corruption_severities": [1]})
        train_models(prepare_data(params, progress=False), params, progress=False)
        _BUILT["tiny_run"] = params
    return copy.deepcopy(_BUILT["tiny_run"])


def _example_study(tmp_path_factory) -> Path:
    if "example_study" not in _BUILT:
        from fake_runs import fake_study

        _BUILT["example_study"] = fake_study(tmp_path_factory.mktemp("study"))
    return _BUILT["example_study"]


@pytest.fixture(autouse=True)
def _doctest_runs(doctest_namespace, tmp_path_factory):
    doctest_namespace["tiny_run"] = lambda: _tiny_run(tmp_path_factory)
    doctest_namespace["example_study"] = lambda: _example_study(tmp_path_factory)
