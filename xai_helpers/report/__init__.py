"""The study report (notebook 06): a study folder's run folders read back, turned into tables and prose,
and written to ``report.md``.

=====================  ===============================================================================
module                 owns
=====================  ===============================================================================
:mod:`.published`      the study's published numbers and setting, with their source
:mod:`.study`          reading a study folder: :class:`DatasetRun`, :func:`load_study`, what each step
                       and each fit ran with
:mod:`.tables`         the tables (performance with marks, baselines, confidence increase, the published
                       comparison, protocol, generalization)
:mod:`.notes`          the prose: why the numbers differ, what was measured, what the explanations show
:mod:`.writer`         ``report.md`` from ``report.md.template``
=====================  ===============================================================================

The statistics it shows are computed in :mod:`xai_helpers.stats`; it reads run folders, so it sits beside
the steps, and imports none of them.
"""
from .notes import capped_pool_note, difference_notes, explanation_notes, localisation_notes, measured_notes
from .published import (PUBLISHED, PUBLISHED_CAM_SETTING, PUBLISHED_COMPUTED_ON, PUBLISHED_SETTING,
                        PUBLISHED_SOURCE)
from .study import DatasetRun, find_dataset_runs, load_study, step_config, training_settings
from .tables import (EXTERNAL_DROP_WARNING, EXTERNAL_ECE_WARNING, baseline_warnings, confidence_readings,
                     confidence_wide, external_note,
                     confidence_table, external_warnings, fill_sensitivity_table, generalization_summary,
                     localisation_table, performance_table, protocol_table, published_comparison)
from .writer import localisation_markdown, write_report

__all__ = ["PUBLISHED", "PUBLISHED_COMPUTED_ON", "PUBLISHED_CAM_SETTING", "PUBLISHED_SETTING", "PUBLISHED_SOURCE",
           "DatasetRun",
           "find_dataset_runs", "load_study", "step_config", "training_settings", "performance_table",
           "baseline_warnings", "confidence_table", "published_comparison", "confidence_readings", "protocol_table",
           "generalization_summary", "external_warnings", "EXTERNAL_DROP_WARNING", "EXTERNAL_ECE_WARNING",
           "external_note", "difference_notes", "capped_pool_note", "measured_notes", "explanation_notes",
           "localisation_table", "localisation_notes", "localisation_markdown", "write_report",
           "fill_sensitivity_table", "confidence_wide"]
