"""A static book of an executed run, readable without running anything: the numbered notebooks with their
outputs and figures, a landing page (what the study is, the path through the notebooks, their runtimes) and
the glossary, built offline with Sphinx, myst-nb and sphinx-book-theme.

Why this builder: it reads executed ``.ipynb`` files as they are (no re-execution), renders their PNG
figures and HTML tables, gives every page previous/next links, and needs nothing from the network at build
time or in the browser (the theme's fonts and scripts ship in its wheel); Jupyter Book 2 and Quarto fetch
Node or a theme at build time, mkdocs-jupyter needs a second documentation stack beside Sphinx. Formulas in
the notebooks are plain Unicode, so no MathJax (a CDN script) is loaded.

The book mirrors the repository's layout (``notebooks/NN_name.ipynb``, ``docs/glossary.md``), so the links
between notebooks and to the glossary work in Jupyter, on GitHub and in the book alike.

Usage::

    python -m xai_helpers.book runs/demo            # -> runs/demo/book/index.html (what `make book` does)
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import nbformat

from .distribution import COLAB_BADGE_IMAGE
from .errors import RunFolderError
from .paths import project_root
from .runfolder import RunFolder

#: The book's Sphinx configuration (written beside the sources; nothing is executed, nothing fetched).
CONF = '''
project = {title!r}
extensions = ["myst_nb"]
nb_execution_mode = "off"
myst_heading_anchors = 3
html_theme = "sphinx_book_theme"
html_title = {title!r}
html_theme_options = {{"use_download_button": False, "use_fullscreen_button": False, "show_toc_level": 2}}
html_show_sourcelink = False
html_copy_source = False
html_favicon = "favicon.png"
# a fixed colour mode: the theme logs an error when none is stored yet
html_context = {{"default_mode": "light"}}
# no widget manager from a CDN: an executed copy holds no live widget (notebook 04 draws its static grid)
nb_ipywidgets_js = {{}}
# Markdown a cell displays (display(Markdown(...)): the localisation table, the notes) read as GitHub-flavoured
# Markdown: myst-nb's default, CommonMark, has no tables, and Sphinx's smart dashes then turn a table's '---' into
# em dashes, leaving a paragraph of pipes
nb_render_markdown_format = "gfm"
exclude_patterns = ["_build"]
suppress_warnings = ["mystnb.unknown_mime_type", "myst.xref_missing"]
'''

#: The title of every book page.
TITLE = "Explainable deep learning for medical images: the notebooks"

#: What the landing page says the study is.
STUDY = (
    "A 2025 study compared four CNNs (ResNet50, DenseNet121, VGG16, EfficientNet-B0) on brain tumour MRI, skin "
    "cancer dermoscopy and chest X-ray, tested the differences with paired t-tests, and rated five CAM methods "
    "(GradCAM, GradCAM++, XGradCAM, EigenGradCAM, LayerCAM) by \"confidence increase\". These notebooks do all "
    "of it end to end, with baselines, leak audits, corrected statistics, checks against expert lesion masks "
    "and a generalization study, and each is written as a lesson: what you will learn and need at the top, a "
    "summary and exercises at the end.")


def _notebook_facts(path: Path) -> dict[str, str]:
    """Title, first learning goal and runtime of an executed notebook."""
    nb = nbformat.read(path, as_version=4)
    opening = next((c.source for c in nb.cells if c.cell_type == "markdown"), "")
    title = next((line[2:].strip() for line in opening.splitlines() if line.startswith("# ")), path.stem)
    learn = re.search(r"> \*\*You will learn\*\*\s*\n> - (.+)", opening)
    seconds = nb.metadata.get("papermill", {}).get("duration")
    return {"title": title, "learn": learn.group(1).strip() if learn else "",
            "runtime": f"{seconds:.0f} s" if isinstance(seconds, (int, float)) else "not recorded"}


#: The "Open in Colab" badge, drawn locally: the book is built and read offline, and a remote image would
#: be a broken one there.
COLAB_BADGE_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="117" height="20" role="img" aria-label="Open in Colab">'
    '<rect width="117" height="20" rx="3" fill="#555"/><rect x="20" width="97" height="20" rx="3" fill="#f9ab00"/>'
    '<circle cx="10" cy="10" r="5" fill="none" stroke="#f9ab00" stroke-width="2.5"/>'
    '<text x="68" y="14" fill="#fff" font-family="Verdana,sans-serif" font-size="11" text-anchor="middle">'
    'Open in Colab</text></svg>')


#: Said beside the Colab badge in the book: the badge opens the notebook at the release tag the install cell pins,
#: which exists only once that release is published.
COLAB_NOTE = ("*(Colab opens this notebook at release {ref} of the repository; until that tag is published the "
              "link finds nothing: clone the repository and run `make lab` instead.)*")


def _copy_notebook(path: Path, dest: Path) -> None:
    """Copy an executed notebook into the book's sources, its Colab badge pointing at a local image and followed by
    what it opens (:data:`COLAB_NOTE`)."""
    from .distribution import release_ref  # noqa: PLC0415

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown" and COLAB_BADGE_IMAGE in cell.source:
            cell.source = re.sub(r"(\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\))",
                                 lambda m: m.group(1) + " " + COLAB_NOTE.format(ref=release_ref()),
                                 cell.source.replace(COLAB_BADGE_IMAGE, "colab-badge.svg"), count=1)
            (dest.parent / "colab-badge.svg").write_text(COLAB_BADGE_SVG, encoding="utf-8")
    nbformat.write(nb, dest)


def _favicon(path: Path) -> None:
    """A 32x32 icon (a heat-map square), so that browsers do not ask the server for a missing favicon.ico."""
    import numpy as np  # noqa: PLC0415
    from PIL import Image  # noqa: PLC0415

    y, x = np.mgrid[0:32, 0:32]
    heat = np.exp(-((x - 18) ** 2 + (y - 14) ** 2) / 60.0)
    rgb = np.stack([255 * heat, 80 * heat, 255 * (1 - heat)], axis=-1).astype(np.uint8)
    Image.fromarray(rgb).save(path)


#: The repository's documents the notebooks cite, in the book beside them (``docs/<name>.md``), with their titles.
BOOK_DOCS = {"glossary": "Glossary", "methods": "Methods", "running": "Running the study",
             "engineering": "Engineering"}


def landing_page(run: RunFolder, notebooks: Sequence[Path], with_report: bool = False) -> str:
    """The book's front page (MyST Markdown): the study, the path through the notebooks with what each
    teaches and how long it ran here, and the run's setting.

    Parameters
    ----------
    run : RunFolder
        The executed run (its ``config.json`` gives the setting).
    notebooks : sequence of pathlib.Path
        The executed notebooks, in reading order.
    with_report : bool
        The run's ``report.md`` (notebook 06) is in the book.

    Returns
    -------
    str
    """
    config = json.loads(run.config_file.read_text()) if run.config_file.is_file() else {}
    rows = []
    for path in notebooks:
        facts = _notebook_facts(path)
        rows.append(f"| [{facts['title']}](notebooks/{path.name}) | {facts['learn']} | {facts['runtime']} |")
    setting = ", ".join(f"`{k}={config[k]}`" for k in ("dataset", "image_size", "models", "folds", "epochs",
                                                         "cam_model", "cam_layer") if k in config)
    pages = [f"notebooks/{p.stem}" for p in notebooks] + (["report"] if with_report else []) + [
        f"docs/{name}" for name in BOOK_DOCS]
    toctree = "\n".join(pages)
    reference = "\n".join((["- [The study's report](report.md) (`report.md`, written by notebook 06)"]
                           if with_report else [])
                          + [f"- [{title}](docs/{name}.md)" for name, title in BOOK_DOCS.items()])
    return f"""# {TITLE}

{STUDY}

## The path through the notebooks

Read them in this order (the runner's): each one uses what the ones before it wrote into the run folder, and 06
summarises all of them. The runtimes are this run's, on the machine and under the load it ran with; the time in each
notebook's "You need" box is the reference measurement of the demo, on the CPU it names.

| notebook | you will learn, first of all | this run's runtime |
|---|---|---|
{chr(10).join(rows)}

Terms used without a definition are in the [glossary](docs/glossary.md).

## Reference pages

{reference}

## This run

Executed headlessly by `python -m xai_helpers.run` with {setting or "the defaults"}. The interactive explorer of
notebook 04 is shown as its static grid here; open the notebook in JupyterLab to use the widgets.

## Run it yourself

```bash
make demo      # all notebooks on the embedded synthetic dataset, into runs/demo/
make book      # this book, from runs/demo/, into runs/demo/book/
```

```{{toctree}}
:hidden:
:maxdepth: 1

{toctree}
```
"""


def build_book(run_dir: str | Path, out_dir: str | Path | None = None, quiet: bool = True) -> Path:
    """Build the static book of an executed run folder.

    Parameters
    ----------
    run_dir : path
        A run folder whose ``notebooks/`` holds the executed notebooks (the runner writes them there).
    out_dir : path, optional
        Where the HTML goes; default ``<run_dir>/book``. Replaced if it exists.
    quiet : bool
        Only Sphinx's warnings and errors are printed.

    Returns
    -------
    pathlib.Path
        The book's ``index.html``.

    Raises
    ------
    RunFolderError
        When the run folder has no executed notebooks.
    RuntimeError
        When Sphinx fails (its messages are printed).
    """
    from sphinx.cmd.build import build_main  # noqa: PLC0415 - the book's builder only when building

    from .run import runner_order  # noqa: PLC0415 - the runner's module pulls in the parameter table

    run = RunFolder(run_dir)
    # the reading order is the runner's: 06 summarises what 01-05 and 07 wrote, so it comes last
    notebooks = runner_order(sorted(run.notebooks_dir.glob("[0-9][0-9]_*.ipynb")))
    if not notebooks:
        raise RunFolderError(f"{run.notebooks_dir}: no executed notebooks; run `python -m xai_helpers.run "
                             f"--profile demo` (or another profile) first")
    out = Path(out_dir) if out_dir is not None else run.root / "book"
    with tempfile.TemporaryDirectory(prefix="xai-book-") as tmp:
        src = Path(tmp)
        (src / "notebooks").mkdir()
        for path in notebooks:
            _copy_notebook(path, src / "notebooks" / path.name)
        (src / "docs").mkdir()
        for name, title in BOOK_DOCS.items():
            doc = project_root() / "docs" / f"{name}.md"
            if doc.is_file():
                shutil.copy2(doc, src / "docs" / doc.name)
            else:  # an installed package without the repository: the page says where it lives
                (src / "docs" / f"{name}.md").write_text(f"# {title}\n\nSee `docs/{name}.md` in the repository.\n")
        report = run.report_file
        if report.is_file():  # notebook 06's report, which the notebooks send the reader to
            shutil.copy2(report, src / "report.md")
        (src / "index.md").write_text(landing_page(run, notebooks, report.is_file()), encoding="utf-8")
        (src / "conf.py").write_text(CONF.format(title=TITLE), encoding="utf-8")
        _favicon(src / "favicon.png")
        if out.exists():
            shutil.rmtree(out)
        args = ["-b", "html", str(src), str(out), "-d", str(src / "_doctrees")] + (["-q"] if quiet else [])
        if build_main(args) != 0:
            raise RuntimeError(f"sphinx-build failed for {run.root}; see the messages above")
    for page in out.rglob("*.html"):
        html = page.read_text(encoding="utf-8")
        linked = link_full_size(html)
        if linked != html:
            page.write_text(linked, encoding="utf-8")
    return out / "index.html"


_FIGURE = re.compile(r'(<a [^>]*>\s*)?(<img [^>]*src="([^"]*_images/[^"]+\.png)"[^>]*>)')


def link_full_size(html: str) -> str:
    """Wrap every figure (a PNG of ``_images/``) that is not already in a link in a link to itself, so that a
    figure scaled down to the text column can be opened at full size.

    Examples
    --------
    >>> link_full_size('<p><img src="../_images/a.png" /></p>')
    '<p><a class="full-size" href="../_images/a.png" title="open at full size"><img src="../_images/a.png" /></a></p>'
    >>> link_full_size('<a href="y"><img src="_images/b.png"></a>')  # already linked: unchanged
    '<a href="y"><img src="_images/b.png"></a>'
    """
    def wrap(match: re.Match) -> str:
        if match.group(1):
            return match.group(0)
        return f'<a class="full-size" href="{match.group(3)}" title="open at full size">{match.group(2)}</a>'
    return _FIGURE.sub(wrap, html)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xai_helpers.book", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", nargs="?", default="runs/demo", help="an executed run folder (default runs/demo)")
    parser.add_argument("--out", default=None, help="output folder (default <run_dir>/book)")
    args = parser.parse_args(argv)
    index = build_book(args.run_dir, args.out)
    print(f"book: {index}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
