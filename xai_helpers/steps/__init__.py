"""The study's steps: one public function per notebook step, each over a run folder.

The notebooks call this layer (plus :mod:`xai_helpers.figures` and :mod:`xai_helpers.widgets`);
the layers below it (:mod:`xai_helpers.data`, :mod:`~xai_helpers.models`,
:mod:`~xai_helpers.training`, :mod:`~xai_helpers.evaluation`, :mod:`~xai_helpers.stats`,
:mod:`~xai_helpers.cams`, :mod:`~xai_helpers.cam_metrics`, :mod:`~xai_helpers.generalization`)
take arrays and plain arguments and never read notebook parameters or run folders.

* 01, :mod:`.prepare`: :func:`prepare_data` writes ``data/splits.csv``, ``data/audit.json``,
  ``data/dataset.json``, ``data/audit_metadata.csv``, ``data/audit_shortcuts.csv``, ``data/audit_shift.csv``
  (later steps: :func:`load_prepared`); :func:`audit_notes` reads the shortcut and shift audits;
* 02, :mod:`.train`: :func:`train_models`, :func:`train_baselines` write ``metrics.csv``,
  ``predictions/``, ``checkpoints/``;
* 03 and 05, :mod:`.compare`: :func:`run_paired_tests`, :func:`summary_table_for_run` write
  ``stats/paired_tests.csv``, ``stats/summary_table.csv``; :func:`bootstrap_example` (03's worked example);
* 04 and 05, :mod:`.explain`: :func:`explain_examples` (figures only), :func:`rate_explanations` writes
  ``xai_per_image.csv``, ``xai_metrics.csv``, ``xai_randomisation.csv``, ``xai_fill_sensitivity.csv``;
* 06, :mod:`xai_helpers.report`: :func:`write_report` writes ``report.md`` (in the study folder);
* 07, :mod:`.stress`: :func:`run_generalization` writes ``generalization*.csv``
  (``generalization_shift.csv``: the external set's shift audit) and ``generalization_external.json``.

The step modules are leaves: none imports another; what two of them share lives a floor down.
"""
from ..cam_metrics import ALL_METRICS
from ..data.audit import audit_summary
from ..data.prepared import explanation_sample
from ..evaluation import chance_levels, validation_test_gap
from ..generalization import CORRUPTIONS, SEVERITY_LEVELS, imagenet_c_equivalents, severity_summary
from ..models import model_overview
from .compare import BootstrapExample, bootstrap_example, readable_tests, run_paired_tests, summary_table_for_run
from .explain import ExplainedExamples, explain_examples, randomisation_findings, rate_explanations
from .prepare import audit_notes, load_prepared, prepare_data
from .stress import (corruption_examples, describe_external, external_shift_notes, generalization_findings,
                     run_generalization)
from ..report import (confidence_table, confidence_wide, load_study, localisation_markdown, localisation_notes,
                       localisation_table, performance_table, protocol_table, published_comparison, write_report)
from .train import gap_notes, train_baselines, train_models

# the steps, their helpers, and what the notebooks show of the layers below (tables, constants)
__all__ = ["prepare_data", "load_prepared", "audit_notes", "train_models", "train_baselines", "validation_test_gap",
           "chance_levels", "imagenet_c_equivalents", "generalization_findings", "randomisation_findings",
           "gap_notes", "run_paired_tests", "summary_table_for_run", "explain_examples", "ExplainedExamples",
           "explanation_sample", "rate_explanations", "load_study", "protocol_table", "performance_table",
           "confidence_table", "confidence_wide", "published_comparison", "write_report", "corruption_examples",
           "describe_external",
           "external_shift_notes", "run_generalization", "severity_summary", "CORRUPTIONS", "SEVERITY_LEVELS",
           "ALL_METRICS", "audit_summary", "model_overview", "localisation_table", "localisation_markdown",
           "localisation_notes", "bootstrap_example", "BootstrapExample", "readable_tests"]
