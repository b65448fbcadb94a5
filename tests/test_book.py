"""The book of an executed run (``make book``), opened in a real browser: built offline from the quick run's
executed notebooks, served over HTTP as GitHub Pages would, every page loaded in headless Chromium (Debian's
/usr/bin/chromium driven by Playwright): no console error, no failed request, every figure decoded,
previous/next navigation working."""
from __future__ import annotations

import functools
import http.server
import os
import threading
from pathlib import Path

import pytest

from xai_helpers.book import build_book

CHROMIUM = os.environ.get("XAI_CHROMIUM", "/usr/bin/chromium")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def book(quick_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("book") / "html"
    index = build_book(quick_run["run_dir"], out)
    return index.parent


def test_the_book_holds_every_notebook_the_landing_page_and_the_glossary(book, quick_run):
    pages = sorted(p.name for p in (book / "notebooks").glob("*.html"))
    executed = sorted(p.stem + ".html" for p in (Path(quick_run["run_dir"]) / "notebooks").glob("*.ipynb"))
    assert pages == executed and len(pages) == 7
    index = (book / "index.html").read_text()
    assert "The path through the notebooks" in index and "runtime" in index
    for page in pages:  # every notebook linked from the landing page
        assert f"notebooks/{page}" in index
    # one order everywhere: the runner's, 06 (which summarises 07) last, as in the README
    assert index.index("notebooks/07_generalization.html") < index.index("notebooks/06_study_summary.html")
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert readme.index("notebooks/07_generalization.ipynb") < readme.index("notebooks/06_study_summary.ipynb")
    assert (book / "docs" / "glossary.html").is_file()
    # the pages the notebooks send the reader to: the run's report and the docs they cite
    assert (book / "report.html").is_file() and 'href="report.html"' in index
    for doc in ("glossary", "methods", "running", "engineering"):
        assert (book / "docs" / f"{doc}.html").is_file() and f'href="docs/{doc}.html"' in index
    assert 'href="../report.html"' in (book / "notebooks" / "06_study_summary.html").read_text()
    assert 'href="../docs/methods.html"' in (book / "notebooks" / "03_statistics.html").read_text()
    # the Colab badge says what it opens: a release tag that may not be published yet
    from xai_helpers.distribution import release_ref
    page = (book / "notebooks" / "02_training.html").read_text()
    assert f"Colab opens this notebook at release {release_ref()}" in page
    # publishable: figures as PNG files, no data, no notebook sources
    assert len(list((book / "_images").glob("*.png"))) >= 10
    assert not list(book.rglob("*.ipynb")) and not list(book.rglob("*.npy"))
    assert sum(p.stat().st_size for p in book.rglob("*") if p.is_file()) < 40e6
    # nothing from the network: no script, style or font from a CDN
    for html in book.rglob("*.html"):
        assert "cdn." not in html.read_text(), html


def test_every_page_loads_in_a_browser_without_errors_and_navigation_works(book):
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (.ci/run does this)")
    from playwright.sync_api import sync_playwright

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(book))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    notebooks = sorted(f"notebooks/{p.name}" for p in (book / "notebooks").glob("*.html"))
    pages = ["index.html", "docs/glossary.html", "docs/methods.html", "report.html"] + notebooks
    problems: list[str] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
                "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            # a request cancelled because the page was left (net::ERR_ABORTED) is not a missing file: those
            # show as HTTP 404 below, and an image that never loads fails the decode check
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} ({r.failure})")
                    if "ERR_ABORTED" not in (r.failure or "") else None)
            page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
            images = tables = 0
            for name in pages:
                page.goto(f"{base}/{name}", wait_until="load")
                page.wait_for_load_state("networkidle")
                states = page.evaluate(
                    "Array.from(document.images).map(i => [i.src, i.complete && i.naturalWidth > 0])")
                problems += [f"{name}: image not decoded: {src}" for src, ok in states if not ok]
                images += len(states)
                # a figure scaled to less than half its width can be opened at full size
                unreadable = page.evaluate(
                    "Array.from(document.images).filter(i => i.clientWidth > 0 && i.naturalWidth > 2 * i.clientWidth"
                    " && !(i.closest('a') && i.closest('a').href === i.src)).map(i => i.src)")
                problems += [f"{name}: figure shrunk over twice without a full-size link: {src}" for src in unreadable]
                # a Markdown table the renderer did not parse shows as a paragraph of pipes and dashes
                raw_tables = page.evaluate(
                    "Array.from(document.querySelectorAll('article p, article li')).map(e => e.innerText)"
                    ".filter(t => (t.match(/\\|/g) || []).length >= 4 && /\\|\\s*:?[-\u2013\u2014]{2,}/.test(t))")
                problems += [f"{name}: raw pipe-table text: {t[:80]!r}" for t in raw_tables]
                tables += page.evaluate("document.querySelectorAll('article table').length")
            assert images >= 10 and tables >= 10
            # previous / next: the landing page leads to notebook 01, which leads on to 02 and back
            page.goto(f"{base}/index.html")
            page.wait_for_load_state("networkidle")  # leaving a page early aborts its requests
            page.click("a.right-next")
            assert page.url.endswith("notebooks/01_data_preparation.html")
            page.wait_for_load_state("networkidle")
            page.click("a.right-next")
            assert page.url.endswith("notebooks/02_training.html")
            page.wait_for_load_state("networkidle")
            page.click("a.left-prev")
            assert page.url.endswith("notebooks/01_data_preparation.html")
            # the lesson box's link to an earlier notebook resolves inside the book
            page.goto(f"{base}/notebooks/03_statistics.html")
            page.wait_for_load_state("networkidle")
            page.click("article a[href^='02_training.html']")
            assert page.url.split("#")[0].endswith("notebooks/02_training.html")
            page.wait_for_load_state("networkidle")
            # notebook 06 sends the reader to the report, which is a page of the book
            page.goto(f"{base}/notebooks/06_study_summary.html")
            page.wait_for_load_state("networkidle")
            page.click("article a[href='../report.html']")
            assert page.url.endswith("/report.html") and "Next to the published numbers" in page.content()
            page.wait_for_load_state("networkidle")
            browser.close()
    finally:
        server.shutdown()
    assert not problems, problems[:10]
