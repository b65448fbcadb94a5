"""The numbers and names that the lessons' prose quotes about the code are the code's (issue 35, item 8).

A sentence in the glossary or docs/methods.md that names a function, or a number that a function uses (resamples,
bins, tolerances, percentiles), is checked here against the function or constant it names: when the code changes,
the prose has to follow.
"""
import importlib
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GLOSSARY = (ROOT / "docs" / "glossary.md").read_text()
METHODS = (ROOT / "docs" / "methods.md").read_text()


def _default(function, name):
    return inspect.signature(function).parameters[name].default


def _resolve(dotted: str):
    """``stats.adjust_pvalues`` or ``xai_helpers.models.comparable_layer`` -> the object, or None."""
    parts = dotted.removeprefix("xai_helpers.").split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module("xai_helpers." + ".".join(parts[:split]))
        except ImportError:
            continue
        for attr in parts[split:]:
            obj = getattr(obj, attr, None)
            if obj is None:
                return None
        return obj
    return None


@pytest.mark.parametrize("doc", ["glossary", "methods"])
def test_every_function_the_docs_name_exists(doc):
    text = {"glossary": GLOSSARY, "methods": METHODS}[doc]
    named = set(re.findall(r"`((?:xai_helpers\.)?(?:stats|cam_metrics|cams|models|report|steps|evaluation|"
                           r"generalization|baselines|data|figures|executor|training)\.[A-Za-z_][\w.]*)`", text))
    assert len(named) >= 3, named
    missing = sorted(n for n in named if _resolve(n.rstrip(".")) is None)
    assert missing == [], missing
    files = set(re.findall(r"`(xai_helpers/[\w/]+\.py)`", text))
    assert sorted(f for f in files if not (ROOT / f).is_file()) == []


def test_the_glossarys_bootstrap_resamples_are_each_tables():
    from xai_helpers.cam_metrics import localisation_summary
    from xai_helpers.report import confidence_readings
    from xai_helpers.report.tables import localisation_table
    from xai_helpers.stats import compare_predictions
    from xai_helpers.steps import bootstrap_example

    section = GLOSSARY[GLOSSARY.index("### Bootstrap interval"):]
    section = section[:section.index("\n### ", 5)]
    quoted = {int(n.replace(",", "")) for n in re.findall(r"(\d[\d,]*\d) (?:for|over|in)", section)}
    used = {_default(compare_predictions, "n_boot_images"), _default(compare_predictions, "n_boot"),
            _default(localisation_summary, "n_boot"), _default(localisation_table, "n_boot"),
            _default(confidence_readings, "n_boot"), _default(bootstrap_example, "n_boot")}
    assert quoted == used


def test_the_numbers_the_glossary_quotes_are_the_constants_they_name():
    from xai_helpers.cam_metrics import CENTRE_PRIOR_SIGMA, POINTING_TOLERANCE_AT_224, ROAD_PERCENTILES
    from xai_helpers.evaluation import expected_calibration_error, reliability_table

    assert f"within {POINTING_TOLERANCE_AT_224:g} px of it at 224 px" in GLOSSARY
    tolerance_64 = POINTING_TOLERANCE_AT_224 * 64 / 224
    assert f"{tolerance_64:.1f} px at 64 px" in GLOSSARY
    bins = _default(expected_calibration_error, "n_bins")
    assert bins == _default(reliability_table, "n_bins") and f"into {bins} bins" in GLOSSARY
    assert CENTRE_PRIOR_SIGMA == 0.25 and "σ a quarter of the side" in GLOSSARY
    assert f"percentiles {ROAD_PERCENTILES[0]}–{ROAD_PERCENTILES[-1]}" in GLOSSARY


def test_the_fills_the_lessons_name_are_the_fills_the_code_offers():
    from xai_helpers.cam_metrics import FILLS
    from xai_helpers.config import DEFAULTS

    notebook = (ROOT / "notebooks" / "05_explanation_metrics.py").read_text()
    for fill in FILLS:
        assert f"`{fill}`" in notebook
    assert DEFAULTS["perturbation_fill"] == "imagenet_mean" == FILLS[0]
    assert "ImageNet's mean colour" in GLOSSARY and "ImageNet's mean colour" in notebook
    assert "the dataset mean" not in inspect.getsource(importlib.import_module("xai_helpers.cam_metrics"))


def test_the_statistics_lesson_quotes_the_codes_limits():
    from xai_helpers.stats import RANDOMISATION_EXACT_MAX_N, SIGN_FLIP_MAX_N, compare_predictions

    lesson = (ROOT / "notebooks" / "03_statistics.py").read_text()
    assert f"up to {SIGN_FLIP_MAX_N} non-zero differences" in lesson
    assert f"up to {RANDOMISATION_EXACT_MAX_N} differing images" in lesson
    n_perm = _default(compare_predictions, "n_perm")
    assert f"else {n_perm:,} random patterns" in lesson and "`p = (1 + #)/(B + 1)`" in lesson
    assert f"bootstrap, {_default(compare_predictions, 'n_boot_images'):,} resamples" in lesson
    assert "at most 5 %" in lesson and "pseudo-median" in lesson


def test_the_audit_keys_notebook_01s_answers_name_exist_under_those_names():
    import pandas as pd

    from xai_helpers.data.splits import make_splits

    lesson = (ROOT / "notebooks" / "01_data_preparation.py").read_text()
    named = set(re.findall(r"`(\w+)`", lesson[lesson.index("## Exercises"):]))
    idx = pd.DataFrame({"path": list("abcdefgh"), "split": ["train"] * 6 + ["test"] * 2, "class": list("xyxyxyxy"),
                        "group": list("abcdefgg")})  # f (train) shares test image g's group
    for policy in ("drop_train", "keep"):
        _, report = make_splits(idx, folds=3, seed=0, leak_policy=policy)
        keys = {k for k in report if k in named}
        assert {"dropped_train_images", "train_images_sharing_a_group_with_test"} <= keys, (policy, sorted(report))


def test_show_table_shows_every_row_and_column_it_promises(capsys):
    """Issue 36: notebook 03's 66-row table was cut to 10 rows by pandas' own display limit despite ``limit=``."""
    import numpy as np
    import pandas as pd

    from xai_helpers.notebook import show_table

    table = pd.DataFrame(np.arange(66 * 25).reshape(66, 25), columns=[f"column_{i}" for i in range(25)])
    show_table(table, limit=len(table))
    out = capsys.readouterr().out
    assert "..." not in out
    assert all(f"column_{i}" in out for i in range(25)) and str(66 * 25 - 1) in out
    assert len([line for line in out.splitlines() if line.strip()]) == 66 + 1
    show_table(table, limit=5)
    assert "first 5 of 66 rows" in capsys.readouterr().out
