"""xai_helpers: the tested helper package behind the explainable-AI notebooks.

Research and teaching only, not for clinical use.

Main entry points
-----------------
- :func:`compute_cams` - five CAM methods from one forward/backward pass
- :mod:`xai_helpers.data` - layouts, audit, leak-free splits, image cache, synthetic dataset
- :mod:`xai_helpers.models` - the four CNNs, weights, default target layers
- :mod:`xai_helpers.training` - the training loop with checkpoints and resume
- :mod:`xai_helpers.steps` - one function per notebook step, over a run folder
- :mod:`xai_helpers.stats` - paired tests with corrections and effect sizes
- :mod:`xai_helpers.cam_metrics` - confidence increase and the other explanation metrics
- :mod:`xai_helpers.run` - the papermill runner (``python -m xai_helpers.run --profile demo``)
- :mod:`xai_helpers.errors` - every error the toolkit raises, under :class:`XaiHelpersError`
"""
from .cams import STUDY_METHODS, available_methods, compute_cams, register_method
from .config import DEFAULTS, PROFILES, resolve_params
from .errors import ParameterError, XaiHelpersError
from .runfolder import RunFolder

__version__ = "0.1.0"
__all__ = ["compute_cams", "available_methods", "register_method", "STUDY_METHODS", "DEFAULTS",
           "PROFILES", "ParameterError", "XaiHelpersError", "resolve_params", "RunFolder", "__version__"]
