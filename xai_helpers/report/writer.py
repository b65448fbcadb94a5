"""``report.md`` of a study folder: the tables and notes of the package filled into one Markdown template.

The English around the tables lives in ``report.md.template`` beside this module (``string.Template``
placeholders, ``$$name``), so the text can be read and edited as the reader sees it.
"""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from string import Template

import pandas as pd

from ..atomic import write_text_atomic
from ..runfolder import RunFolder
from ..stats import FOLD_TEST, HEADLINE_TEST
from .notes import difference_notes, explanation_notes, localisation_notes
from .published import PUBLISHED_SOURCE
from .study import DatasetRun, load_study
from .tables import (EXTERNAL_DROP_WARNING, EXTERNAL_ECE_WARNING, baseline_warnings, confidence_table, confidence_wide,
                     fill_sensitivity_table, generalization_summary, localisation_table, performance_table,
                     protocol_table, published_comparison)

#: The report's text with ``string.Template`` placeholders.
TEMPLATE = files(__package__).joinpath("report.md.template")


def _markdown(df: pd.DataFrame, floatfmt: str = ".4f") -> str:
    if df.empty:
        return "_(nothing to show yet)_"
    try:
        return df.to_markdown(index=False, floatfmt=floatfmt)
    except ImportError:  # tabulate missing: a plain table is still readable
        return "```\n" + df.to_string(index=False) + "\n```"


def write_report(study_dir: str | Path, runs: list[DatasetRun] | None = None) -> Path:
    """Write ``<study_dir>/report.md``: protocol, performance, explanations, published values,
    generalization and the reasons for the differences (notebook 06).

    Parameters
    ----------
    study_dir : str or pathlib.Path
    runs : list of DatasetRun, optional
        Default: :func:`load_study` of ``study_dir``.

    Returns
    -------
    pathlib.Path
        The report's path.

    Examples
    --------
    >>> from xai_helpers.examples import example_study
    >>> path = write_report(example_study())
    >>> path.name, "## Why the numbers differ" in path.read_text()
    ('report.md', True)
    """
    study_dir = Path(study_dir)
    runs = runs if runs is not None else load_study(study_dir)
    conf = confidence_table(runs)
    gen = generalization_summary(runs)
    confidence = "_(notebook 05 has not run)_" if conf.empty else _markdown(confidence_wide(conf))
    loc = localisation_table(runs)
    fills = fill_sensitivity_table(runs)
    explained = sorted({str(r.config.get("cam_model")) for r in runs if r.config.get("cam_model")}) or ["?"]
    text = Template(TEMPLATE.read_text(encoding="utf-8")).substitute(
        datasets=", ".join(r.dataset for r in runs), study_dir=study_dir,
        protocol=_markdown(protocol_table(runs).set_index("dataset").T.rename_axis("").reset_index()),
        headline_test=HEADLINE_TEST, fold_test=FOLD_TEST, performance=_markdown(performance_table(runs)),
        baseline_warnings=_bullets(baseline_warnings(runs)), explained=", ".join(explained),
        explanation_notes=_bullets(explanation_notes(runs)), confidence=confidence,
        localisation=localisation_markdown(loc), localisation_notes=_bullets(localisation_notes(runs, loc)),
        fill_sensitivity=_markdown(fills.round({"kendall_tau": 3})) if not fills.empty
        else "_(no run of this study recorded it: notebook 05 ran before the fill choice)_",
        published=_markdown(published_comparison(runs)), published_source=PUBLISHED_SOURCE,
        difference_notes=_bullets(difference_notes(runs)), external_drop=EXTERNAL_DROP_WARNING,
        external_ece=EXTERNAL_ECE_WARNING,
        generalization=_markdown(gen) if not gen.empty else "_(notebook 07 has not run)_")
    path = RunFolder(study_dir).report_file
    write_text_atomic(path, text)
    return path


def localisation_markdown(table: pd.DataFrame) -> str:
    """The localisation table as the report shows it: one row per dataset, score and explained CNN (with its
    layer), one column per map, each cell ``mean (low–high) mark`` (the mark against the centre prior).

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`~xai_helpers.report.tables.localisation_table`.

    Returns
    -------
    str
        A Markdown table, or a line saying that no dataset has lesion masks.

    Examples
    --------
    >>> from xai_helpers.examples import example_study
    >>> from xai_helpers.report import load_study, localisation_table
    >>> text = localisation_markdown(localisation_table(load_study(example_study()), ["mask_auroc"], n_boot=200))
    >>> [c.strip() for c in text.splitlines()[0].split("|")[1:5]]
    ['dataset', 'score', 'CNN (layer)', 'eigengradcam']
    """
    if table.empty:
        return "_(no dataset of this study has lesion masks, or notebook 05 has not run)_"
    flags = table.get("layer output", pd.Series([""] * len(table), index=table.index))
    tolerances = table.get("tolerance", pd.Series([""] * len(table), index=table.index))
    cells = table.assign(
        cell=[f"{m:.3f} ({lo:.3f}–{hi:.3f}) {k}".strip()
              for m, lo, hi, k in zip(table["mean"], table["ci_low"], table["ci_high"], table["vs centre_prior"])],
        **{"CNN (layer)": table["model"] + " (" + table["layer"] + ")" + [f" ⚑ {n}" if n else "" for n in flags],
           "score": table["metric"] + [f" ({t})" if t else "" for t in tolerances]})
    wide = cells.pivot_table(index=["dataset", "score", "CNN (layer)"], columns="method", values="cell",
                             aggfunc="first", sort=False)
    return _markdown(wide.reset_index().rename_axis(columns=None))


def _bullets(lines: list[str]) -> str:
    return "\n".join(f"- {line}" for line in lines)
