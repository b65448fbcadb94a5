"""How the notebooks reach a learner outside this repository: Colab, Binder, a plain ``pip install``.

One source of truth: ``pyproject.toml``'s ``project.urls`` (``Repository``) and ``project.version``
(the release tag ``v<version>`` the notebooks pin). From them come

* every notebook's first code cell (:func:`install_cell`): outside the repository it installs the
  package from the repository at the pinned tag (or commit) and moves into a working folder, where
  data, cache and run folders go; inside the repository, and under the runner, it does nothing;
* the "Open in Colab" badge under every notebook's title and in the README (:func:`colab_badge`).

``make notebooks`` rewrites both into ``notebooks/NN_*.py`` (:func:`write_install_cells`); a test checks
that the committed notebooks agree with ``pyproject.toml``.

Outside a checkout, the runner (``python -m xai_helpers.run``) takes its notebooks from the installed
package (``xai_helpers/notebooks/``, put into the wheel from ``notebooks/``) and resolves relative
paths against the current working directory (:func:`xai_helpers.paths.project_root`).
"""
from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, metadata, version
from pathlib import Path

DISTRIBUTION = "xai-helpers"

#: The working folder the install cell moves into after installing (data, cache and runs go there).
WORKING_FOLDER = "xai-helpers-work"

#: The marker of the install cell in the paired ``.py`` notebooks.
INSTALL_CELL_TAG = "# %% tags=[\"install\"]"

COLAB_BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"


def repository_url() -> str:
    """The repository's URL: ``project.urls.Repository`` of ``pyproject.toml``, read from the
    installed package's metadata.

    Examples
    --------
    >>> repository_url().startswith("https://github.com/")
    True
    """
    try:
        urls = metadata(DISTRIBUTION).get_all("Project-URL") or []
    except PackageNotFoundError:  # pragma: no cover - the package imported itself, so it is installed
        urls = []
    for entry in urls:
        label, _, url = entry.partition(",")
        if label.strip().lower() == "repository":
            return url.strip().removesuffix(".git")
    raise LookupError(f"{DISTRIBUTION}: pyproject.toml has no project.urls.Repository (reinstall after adding it)")


def release_ref() -> str:
    """The git tag the notebooks pin: ``v`` and the package version.

    Examples
    --------
    >>> release_ref() == "v" + version("xai-helpers")
    True
    """
    return f"v{version(DISTRIBUTION)}"


def install_cell(url: str | None = None, ref: str | None = None) -> str:
    """The source of every notebook's first code cell.

    Parameters
    ----------
    url : str, optional
        Repository URL (default :func:`repository_url`).
    ref : str, optional
        Tag or commit to install (default :func:`release_ref`).

    Returns
    -------
    str

    Examples
    --------
    >>> src = install_cell("https://github.com/o/r", "v1")
    >>> "XAI_HELPERS_URL = 'https://github.com/o/r'" in src, "XAI_HELPERS_REF = 'v1'" in src
    (True, True)
    >>> exec(compile(src, "cell", "exec"), {})  # inside the repository: the package is found, nothing happens
    """
    url = url or repository_url()
    ref = ref or release_ref()
    return "\n".join([
        "# Setup outside this repository (Colab, Binder, a plain Jupyter): install xai-helpers at a pinned",
        "# release and work in a folder of its own (data, cache and runs go there). Inside the repository, or",
        "# under the runner, the package is already importable and this cell does nothing.",
        f"XAI_HELPERS_URL = {url!r}",
        f"XAI_HELPERS_REF = {ref!r}  # a tag or a commit",
        "import importlib.util",
        "if importlib.util.find_spec('xai_helpers') is None:",
        "    import os",
        "    import subprocess",
        "    import sys",
        "    subprocess.run([sys.executable, '-m', 'pip', 'install', '--quiet',",
        "                    f'xai-helpers @ git+{XAI_HELPERS_URL}@{XAI_HELPERS_REF}'], check=True)",
        f"    os.makedirs({WORKING_FOLDER!r}, exist_ok=True)",
        f"    os.chdir({WORKING_FOLDER!r})",
        "    print('installed xai-helpers', XAI_HELPERS_REF, '; working folder:', os.getcwd())",
    ])


def colab_url(notebook: str, url: str | None = None, ref: str | None = None) -> str:
    """The address that opens ``notebooks/<notebook>`` of the repository at ``ref`` in Colab.

    Examples
    --------
    >>> colab_url("01_data_preparation.ipynb", "https://github.com/o/r", "v1")
    'https://colab.research.google.com/github/o/r/blob/v1/notebooks/01_data_preparation.ipynb'
    """
    url = url or repository_url()
    match = re.fullmatch(r"https://github\.com/([^/]+/[^/]+)", url)
    if not match:
        raise ValueError(f"Colab opens notebooks from GitHub only; the repository is {url}")
    return (f"https://colab.research.google.com/github/{match.group(1)}/blob/{ref or release_ref()}/"
            f"notebooks/{notebook}")


def colab_badge(notebook: str, url: str | None = None, ref: str | None = None) -> str:
    """The markdown of the "Open in Colab" badge for one notebook.

    Examples
    --------
    >>> colab_badge("02_training.ipynb", "https://github.com/o/r", "v1")  # doctest: +ELLIPSIS
    '[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab...02_training.ipynb)'
    """
    return f"[![Open In Colab]({COLAB_BADGE_IMAGE})]({colab_url(notebook, url, ref)})"


_BADGE_LINE = re.compile(r"^#\n# \[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)\n", re.M)
_TITLE_LINE = re.compile(r"^(# %% \[markdown\]\n# # .*\n)", re.M)
_INSTALL = re.compile(re.escape(INSTALL_CELL_TAG) + r"\n.*?(?=\n+# %%)", re.S)
_PARAMETERS = re.compile(r'^# %% tags=\["parameters"\]', re.M)


def write_install_cells(folder: str | Path, url: str | None = None, ref: str | None = None) -> list[Path]:
    """Write (or rewrite) the Colab badge under the title and the install cell before the ``parameters``
    cell of every paired notebook script ``NN_*.py`` in ``folder`` (``make notebooks``).

    Parameters
    ----------
    folder : path
    url, ref : str, optional
        As for :func:`install_cell`.

    Returns
    -------
    list of pathlib.Path
        The scripts that changed.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "01_x.py").write_text('# %% [markdown]\\n# # 01 · X\\n\\n# %% tags=["parameters"]\\nseed = 0\\n')
    >>> [p.name for p in write_install_cells(d, "https://github.com/o/r", "v1")]
    ['01_x.py']
    >>> write_install_cells(d, "https://github.com/o/r", "v1")  # written once, then unchanged
    []
    """
    changed = []
    for script in sorted(Path(folder).glob("[0-9][0-9]_*.py")):
        text = script.read_text()
        badge = "# " + colab_badge(script.with_suffix(".ipynb").name, url, ref) + "\n"
        new = _BADGE_LINE.sub("", text)
        title = _TITLE_LINE.search(new)
        if title:
            new = new[:title.end()] + "#\n" + badge + new[title.end():]
        cell = INSTALL_CELL_TAG + "\n" + install_cell(url, ref)
        old = _INSTALL.search(new)
        if old:
            new = new[:old.start()] + cell + new[old.end():]
        else:
            params = _PARAMETERS.search(new)
            if params:
                new = new[:params.start()] + cell + "\n\n" + new[params.start():]
        if new != text:
            script.write_text(new)
            changed.append(script)
    return changed


def packaged_notebooks() -> Path | None:
    """The notebooks shipped inside the installed package (a wheel), or None in a checkout.

    Examples
    --------
    >>> folder = packaged_notebooks()
    >>> folder is None or any(folder.glob("01_*.ipynb"))
    True
    """
    folder = Path(__file__).resolve().parent / "notebooks"
    return folder if any(folder.glob("[0-9][0-9]_*.ipynb")) else None
