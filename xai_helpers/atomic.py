"""Files written whole or not at all: through a temporary file of a unique name and ``os.replace``.

A leaf module (it imports nothing of the package), so that every layer can write its files
safely without depending on the run folder.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pandas as pd


def tmp_name(path: Path) -> Path:
    """A temporary name beside ``path``, unique to this process and call (two writers never share one).

    Parameters
    ----------
    path : pathlib.Path
        The file that will be written.

    Returns
    -------
    pathlib.Path
        ``.<name>.<pid>.<random>.tmp`` in the same folder (so ``os.replace`` stays on one file system).

    Examples
    --------
    >>> p = tmp_name(Path("runs/demo/metrics.csv"))
    >>> p.parent == Path("runs/demo") and p.name.startswith(".metrics.csv.") and p.suffix == ".tmp"
    True
    """
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def write_csv_atomic(df: pd.DataFrame, path: Path) -> None:
    """Write a CSV through a temporary file of a unique name, so a crash never leaves half a file
    and two writers never collide on the temporary file.

    Parameters
    ----------
    df : pandas.DataFrame
        Written without its index.
    path : pathlib.Path
        The CSV file; its folder is created when missing.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "sub" / "t.csv"
    >>> write_csv_atomic(pd.DataFrame({"a": [1, 2]}), path)
    >>> path.read_text().split()
    ['a', '1', '2']
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(path)
    try:
        df.to_csv(tmp, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file of a unique name, so a crash never
    leaves half a file and two writers never collide on the temporary file.

    Parameters
    ----------
    path : pathlib.Path
        The file; its folder is created when missing.
    text : str
        The whole content.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "note.txt"
    >>> write_text_atomic(path, "done")
    >>> path.read_text(), [p.name for p in path.parent.iterdir()]
    ('done', ['note.txt'])
    """
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file of a unique name (a checkpoint a Ray task returned; the
    text of :func:`write_text_atomic`, in UTF-8).

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "best.pt"
    >>> write_bytes_atomic(path, b"weights")
    >>> path.read_bytes()
    b'weights'
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(path)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
