"""Where the toolkit's relative paths start: a leaf module that imports nothing of the package."""
from __future__ import annotations

from pathlib import Path


def repository_root() -> Path | None:
    """The checkout this package runs from (editable install, as ``make`` does), or None when it
    is installed elsewhere.

    Examples
    --------
    >>> root = repository_root()
    >>> root is None or (root / "pyproject.toml").is_file()
    True
    """
    here = Path(__file__).resolve().parents[1]
    if (here / "pyproject.toml").is_file() and (here / "notebooks").is_dir() and (here / "xai_helpers").is_dir():
        return here
    return None


def project_root() -> Path:
    """The folder relative paths in parameters are resolved against: the repository root when the
    package is installed from a checkout, otherwise the current working directory.

    Examples
    --------
    >>> project_root().is_dir()
    True
    """
    return repository_root() or Path.cwd()


def resolve_path(path: str | Path) -> Path:
    """Absolute path for ``path``; relative ones are taken from :func:`project_root`.

    Examples
    --------
    >>> resolve_path("/tmp/x") == Path("/tmp/x")
    True
    """
    p = Path(path).expanduser()
    return p if p.is_absolute() else (project_root() / p).resolve()
