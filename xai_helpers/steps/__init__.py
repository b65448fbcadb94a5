"""The study's steps: one public function per notebook step, each over a run folder.

The notebooks call this layer (plus :mod:`xai_helpers.figures` and :mod:`xai_helpers.widgets`);
the layers below it (:mod:`xai_helpers.data`, :mod:`~xai_helpers.models`,
:mod:`~xai_helpers.training`, :mod:`~xai_helpers.evaluation`, :mod:`~xai_helpers.stats`,
:mod:`~xai_helpers.cams`, :mod:`~xai_helpers.cam_metrics`, :mod:`~xai_helpers.generalization`)
take arrays and plain arguments and never read notebook parameters or run folders.

===========  ===================================  ==================================================
notebook     step                                 writes into the run folder
===========  ===================================  ==================================================
01           :func:`prepare_data`                 ``data/splits.csv``, ``data/audit.json``,
                                                  ``data/dataset.json``, ``data/audit_metadata.csv``,
                                                  ``data/audit_shortcuts.csv``, ``data/audit_shift.csv``
                                                  (later steps: :func:`load_prepared`)
01           :func:`audit_notes`                  (reads ``data/audit_shortcuts.csv``, ``data/audit_shift.csv``)
02           :func:`train_models`,                ``metrics.csv``, ``predictions/``, ``checkpoints/``
             :func:`train_baselines`
03, 05       :func:`run_paired_tests`,            ``stats/paired_tests.csv``,
             :func:`summary_table_for_run`        ``stats/summary_table.csv``
04           :func:`explain_examples`             figures only
05           :func:`rate_explanations`            ``xai_per_image.csv``, ``xai_metrics.csv``,
                                                  ``xai_randomisation.csv``
06           :func:`write_report`                 ``report.md`` (in the study folder)
07           :func:`run_generalization`           ``generalization*.csv`` (``generalization_shift.csv``: the
                                                  external set's shift audit), ``generalization_external.json``
===========  ===================================  ==================================================
"""
from ..cam_metrics import ALL_METRICS
from ..data.audit import audit_summary
from ..data.prepared import explanation_sample
from ..evaluation import validation_test_gap
from ..generalization import CORRUPTIONS, SEVERITY_LEVELS, severity_summary
from ..models import model_overview
from .compare import run_paired_tests, summary_table_for_run
from .explain import ExplainedExamples, explain_examples, rate_explanations
from .prepare import audit_notes, load_prepared, prepare_data
from .stress import corruption_examples, describe_external, external_shift_notes, run_generalization
from ..report import (confidence_table, load_study, performance_table, protocol_table, published_comparison,
                       write_report)
from .train import gap_notes, train_baselines, train_models

# the steps, their helpers, and what the notebooks show of the layers below (tables, constants)
__all__ = ["prepare_data", "load_prepared", "audit_notes", "train_models", "train_baselines", "validation_test_gap",
           "gap_notes", "run_paired_tests", "summary_table_for_run", "explain_examples", "ExplainedExamples",
           "explanation_sample", "rate_explanations", "load_study", "protocol_table", "performance_table",
           "confidence_table", "published_comparison", "write_report", "corruption_examples", "describe_external",
           "external_shift_notes", "run_generalization", "severity_summary", "CORRUPTIONS", "SEVERITY_LEVELS",
           "ALL_METRICS", "audit_summary", "model_overview"]
