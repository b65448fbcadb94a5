"""The README's and docs' cross-references: every section the README, the docs, the notebooks or the package name by
its title exists, every relative link resolves, and the front page stays a front page."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: How a section is named in prose: see "Title", README, "Title", README's "Title", README ("Title".
REFERENCE = re.compile(r"""(?:\bsee |README(?:'s|,)? \(?)"([^"]+)\"""")


DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _headings() -> list[str]:
    return [line.lstrip("#").strip().strip('"') for path in DOCS for line in path.read_text().splitlines()
            if line.startswith("#")]


def test_every_section_named_by_its_title_exists():
    headings = _headings()
    sources = [*DOCS, *sorted((ROOT / "notebooks").glob("0*.py")),
               *sorted((ROOT / "xai_helpers").rglob("*.py"))]
    named = {(path.name, title) for path in sources for title in REFERENCE.findall(path.read_text())}
    assert len(named) >= 5  # the pattern finds the references there are
    # a title names a section when a heading starts with it (headings go on after a colon)
    missing = sorted((name, title) for name, title in named
                     if not any(h == title or h.startswith(title) or title in h for h in headings))
    assert not missing, f"sections named but not in the README or docs/: {missing}"


def test_the_glossary_defines_the_terms_the_notebooks_use_and_every_link_to_it_resolves():
    glossary = (ROOT / "docs" / "glossary.md").read_text()
    terms = [line.lstrip("#").strip() for line in glossary.splitlines() if line.startswith("### ")]
    for term in ("Holm correction", "Cohen's d_z", "ECE", "pHash", "Precise BN", "ROAD", "Cascading randomisation",
                 "McNemar", "Pointing game", "Mirrored copy", "Bootstrap interval", "Centre prior"):
        assert any(t.startswith(term) or term in t for t in terms), term
    # the run's report: the executed notebooks live in <run>/notebooks/, the report notebook 06 writes in <run>/
    from xai_helpers.runfolder import RunFolder

    run = RunFolder(ROOT / "runs" / "any")
    report_link = run.report_file.relative_to(run.root).as_posix()
    assert run.notebooks_dir.parent == run.root and run.report_file.parent == run.root
    for path in [*DOCS, *sorted((ROOT / "notebooks").glob("0*.py"))]:
        for link in re.findall(r"\]\(([^)#:]+\.md)\)", path.read_text()):
            if path.parent.name == "notebooks" and link == f"../{report_link}":
                continue  # resolves beside the executed copy (and in the book), checked above and in test_book
            assert (path.parent / link).is_file(), f"{path.name}: {link}"


def test_every_relative_link_of_the_readme_and_docs_resolves():
    links = [(path, link) for path in DOCS for link in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", path.read_text())]
    assert len(links) >= 10
    broken = [(path.name, link) for path, link in links if not (path.parent / link).exists()]
    assert not broken, broken


def test_the_front_page_is_short_and_leads_to_every_notebook_and_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme) < 15_000  # the engineering lives in docs/
    for notebook in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        assert f"(notebooks/{notebook.name})" in readme, notebook.name
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"(docs/{page.name})" in readme, page.name
