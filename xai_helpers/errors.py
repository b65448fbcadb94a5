"""Every error the toolkit raises on purpose, under one base class.

``except XaiHelpersError`` catches all of them in one line; each also keeps the built-in class it
always had (a :class:`ParameterError` is a ``ValueError``, a :class:`RunFolderError` a
``FileNotFoundError``), so code written against those goes on working. Every message names the
thing at fault first (the parameter, the file, the folder) and then what would work.

==================================  ======================  ===========================================================
error                               also a                  raised when
==================================  ======================  ===========================================================
:class:`ParameterError`             ``ValueError``          a notebook parameter cannot be used
:class:`DatasetError`               ``ValueError``          a dataset folder is not the layout asked for
:class:`DataChangedError`           ``ValueError``          image files changed or vanished since notebook 01
:class:`ImageReadError`             ``ValueError``          one image file cannot be used (reported and skipped)
:class:`GeneratedDataError`         ``RuntimeError``        a synthetic folder's marker does not prove its files
:class:`ClassMappingError`          ``ValueError``          an external set's classes do not map onto the training ones
:class:`NonFiniteLossError`         ``FloatingPointError``  the training loss became NaN or infinite
:class:`LayerModifiedInPlaceError`  ``RuntimeError``        a CAM's target layer is changed in place
:class:`WeightsUnavailableError`    ``RuntimeError``        pretrained weights cannot be had offline
:class:`CorruptWeightsError`        ``RuntimeError``        a weights file exists but cannot be loaded
:class:`CheckpointMismatchError`    ``ValueError``          a checkpoint does not fit its model
:class:`CorruptCheckpointError`     ``ValueError``          a checkpoint file is truncated or its weights changed
:class:`CorruptCacheError`          ``ValueError``          the image cache is truncated or its content changed
:class:`RunFolderRefused`           ``ValueError``          a folder cannot be a run folder
:class:`RunFolderLocked`            ``TimeoutError``        another run holds the run folder's lock
:class:`RunFolderError`             ``FileNotFoundError``   an artefact a notebook needs is not there yet
:class:`NotebookFailed`             ``RuntimeError``        a notebook run by the runner raised
:class:`TaskFailed`                 ``RuntimeError``        a job run as a Ray task raised
==================================  ======================  ===========================================================

Examples
--------
>>> from xai_helpers.config import resolve_params
>>> try:
...     resolve_params({"epochs": 0})
... except XaiHelpersError as err:
...     print(type(err).__name__, "-", err)
ParameterError - epochs: expected an integer >= 1, got 0
"""
from __future__ import annotations


class XaiHelpersError(Exception):
    """Base class of every error the toolkit raises on purpose.

    Parameters
    ----------
    message : str
        Names the thing at fault first (a parameter, a file, a folder), then what would work.

    Examples
    --------
    >>> issubclass(ParameterError, XaiHelpersError) and issubclass(ParameterError, ValueError)
    True
    """


class ParameterError(XaiHelpersError, ValueError):
    """A notebook parameter has a value the toolkit cannot use.

    The message names the parameter first (``"epochs: ..."``), then what it accepts.

    Parameters
    ----------
    message : str

    Examples
    --------
    >>> from xai_helpers.config import resolve_params
    >>> resolve_params({"epochs": 0})
    Traceback (most recent call last):
    ...
    xai_helpers.errors.ParameterError: epochs: ...
    """


class DatasetError(XaiHelpersError, ValueError):
    """The dataset folder cannot be read as the requested layout."""


class DataChangedError(DatasetError):
    """Image files that notebook 01 prepared changed or vanished since; the message lists them and says to rerun
    notebook 01."""


class ImageReadError(XaiHelpersError, ValueError):
    """An image file cannot be used; the message names the file and the reason.

    Parameters
    ----------
    message : str
    problem : str
        A key of :data:`xai_helpers.data.cache.PROBLEMS` (why it is left out).
    """

    def __init__(self, message: str, problem: str = "undecodable"):
        super().__init__(message)
        self.problem = problem


class GeneratedDataError(XaiHelpersError, RuntimeError):
    """A folder's synthetic-dataset marker cannot prove that the toolkit generated its files."""


class ClassMappingError(XaiHelpersError, ValueError):
    """The external set's classes cannot be mapped onto the training classes."""


class NonFiniteLossError(XaiHelpersError, FloatingPointError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


class LayerModifiedInPlaceError(XaiHelpersError, RuntimeError):
    """The target layer's output was changed in place later in the forward pass."""


class WeightsUnavailableError(XaiHelpersError, RuntimeError):
    """Pretrained weights could not be downloaded and no local copy was found."""


class CorruptWeightsError(XaiHelpersError, RuntimeError):
    """A weights file in the torch hub folder exists but cannot be loaded."""


class CheckpointMismatchError(XaiHelpersError, ValueError):
    """A checkpoint does not fit the model it is loaded into."""


class CorruptCheckpointError(CheckpointMismatchError):
    """A checkpoint file is truncated, damaged, or its weights no longer match the digest written with them; the
    message names the fit (model and fold) and what re-creates it; ``problem`` and ``filename`` say what and where.

    Parameters
    ----------
    message : str
    problem : str
        What is wrong with the file, in words.
    filename : str
    """

    def __init__(self, message: str, problem: str = "", filename: str = "") -> None:
        super().__init__(message)
        self.problem, self.filename = problem, filename


class CorruptCacheError(XaiHelpersError, ValueError):
    """The image cache file is shorter than its header says, or its bytes no longer match the digest written beside
    it; the message names the file and what rebuilds it."""


class RunFolderRefused(XaiHelpersError, ValueError):
    """The folder cannot be used as a run folder (it would write into the user's files)."""


class RunFolderLocked(XaiHelpersError, TimeoutError):
    """Another live run held the run folder's lock for longer than the timeout."""


class RunFolderError(XaiHelpersError, FileNotFoundError):
    """An artefact a notebook needs is not in the run folder yet."""


class NotebookFailed(XaiHelpersError, RuntimeError):
    """A notebook raised an error; the message names the notebook and the cell."""


class TaskFailed(XaiHelpersError, RuntimeError):
    """A job run as a Ray task raised (``executor='ray'``); the message names the job (``resnet50 fold 1``) and the
    task's own error. Not retried: only a task whose worker died is."""
