"""The README's cross-references: every section the README, the notebooks or the package name by its title exists."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: How a section is named in prose: see "Title", README, "Title", README's "Title", README ("Title".
REFERENCE = re.compile(r"""(?:\bsee |README(?:'s|,)? \(?)"([^"]+)\"""")


def _headings() -> list[str]:
    return [line.lstrip("#").strip().strip('"') for line in (ROOT / "README.md").read_text().splitlines()
            if line.startswith("#")]


def test_every_section_named_by_its_title_exists():
    headings = _headings()
    sources = [ROOT / "README.md", *sorted((ROOT / "notebooks").glob("0*.py")),
               *sorted((ROOT / "xai_helpers").rglob("*.py"))]
    named = {(path.name, title) for path in sources for title in REFERENCE.findall(path.read_text())}
    assert len(named) >= 5  # the pattern finds the references there are
    # a title names a section when a heading starts with it (headings go on after a colon)
    missing = sorted((name, title) for name, title in named
                     if not any(h == title or h.startswith(title) or title in h for h in headings))
    assert not missing, f"sections named but not in the README: {missing}"


def test_the_glossary_defines_the_terms_the_notebooks_use_and_every_link_to_it_resolves():
    glossary = (ROOT / "docs" / "glossary.md").read_text()
    terms = [line.lstrip("#").strip() for line in glossary.splitlines() if line.startswith("### ")]
    for term in ("Holm correction", "Cohen's d_z", "ECE", "pHash", "Precise BN", "ROAD", "Cascading randomisation",
                 "McNemar", "Pointing game", "Mirrored copy", "Bootstrap interval", "Centre prior"):
        assert any(t.startswith(term) or term in t for t in terms), term
    for path in [ROOT / "README.md", *sorted((ROOT / "notebooks").glob("0*.py"))]:
        for link in re.findall(r"\]\(([^)#:]+\.md)\)", path.read_text()):
            assert (path.parent / link).is_file(), f"{path.name}: {link}"
