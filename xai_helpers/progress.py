"""Progress bars for every long loop: a live widget in an interactive notebook, one finished line of text in
an executed copy.

``tqdm.auto`` draws an ipywidgets bar in a Jupyter kernel. In a notebook executed headlessly (papermill) the
widget's state is not saved, so every static view of the executed copy (the book, GitHub, nbviewer) shows
each bar at "0%". After :func:`use_text_bars` (which :func:`xai_helpers.notebook.setup_notebook` calls when
``interactive`` is False) the bars are plain text on stderr instead, and the runner has nbclient merge each
cell's stream outputs and apply their carriage returns (``coalesce_streams``), so a finished bar is one line
at 100 %. Bars of inner loops (batches, epochs) are made with ``leave=False``: live widgets that vanish when
done, and not drawn as text.

Examples
--------
>>> use_text_bars(True)
>>> import io
>>> out = io.StringIO()
>>> for _ in tqdm(range(3), desc="demo", file=out, mininterval=0):
...     pass
>>> out.getvalue().rsplit("\\r", 1)[-1].startswith("demo: 100%")
True
>>> use_text_bars(False)
"""
from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm as _widget_or_text_tqdm
from tqdm.std import tqdm as _text_tqdm

_STATE = {"text": False}


def use_text_bars(text: bool = True) -> None:
    """Draw every bar made from now on as plain text (``True``) or as ``tqdm.auto`` chooses (``False``)."""
    _STATE["text"] = bool(text)


def tqdm(*args: Any, **kwargs: Any) -> Any:
    """A tqdm bar: ``tqdm.std.tqdm`` after ``use_text_bars(True)``, else ``tqdm.auto.tqdm`` (same arguments).

    As text, a bar made with ``leave=False`` (an inner loop's) is not drawn at all: text bars nest by moving
    the cursor up (ANSI escapes), which a notebook's stream does not undo, and its line would vanish anyway.
    """
    if not _STATE["text"]:
        return _widget_or_text_tqdm(*args, **kwargs)
    if kwargs.get("leave", True) is False:
        kwargs["disable"] = True
    return _text_tqdm(*args, **kwargs)
