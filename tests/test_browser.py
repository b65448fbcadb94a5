"""The explorer in a real browser: JupyterLab on localhost, notebook 04 run with interactive=True in
headless Chromium (Debian's /usr/bin/chromium driven by Playwright; no browser download).

Run it alone with ``.venv/bin/python -m pytest tests/test_browser.py``; the screenshot goes to
``screenshots/explorer_browser.png`` (git-ignored).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
from conftest import copy_run

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("XAI_CHROMIUM", "/usr/bin/chromium")
INSTALL = "apt-get install -y chromium (Debian's package; .ci/run does this) and pip install -e '.[test]'"

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(quick_run, tmp_path_factory):
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}: {INSTALL}")
    pytest.importorskip("playwright", reason=f"playwright is not installed: {INSTALL}")
    folder = tmp_path_factory.mktemp("lab")
    # a private copy of the shared quick run (checkpoints hard-linked), since the notebook writes into it
    run_dir = folder / "run"
    copy_run(quick_run["run_dir"], run_dir)
    nb = nbformat.read(ROOT / "notebooks" / "04_explanations.ipynb", as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    overrides = {**quick_run, "interactive": True, "run_dir": str(run_dir)}
    cell.source += "\n# run folder of the test session\n" + "\n".join(f"{k} = {v!r}" for k, v in overrides.items())
    nbformat.write(nb, folder / "04_explanations.ipynb")
    port, token = _free_port(), "xai-browser-test"
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(folder / ".jupyter"), "JUPYTER_RUNTIME_DIR": str(folder / ".rt")}
    proc = subprocess.Popen([sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}",
                             "--ip=127.0.0.1", f"--IdentityProvider.token={token}", f"--notebook-dir={folder}",
                             "--ServerApp.disable_check_xsrf=True", "--LabApp.news_url=", "--allow-root"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=1)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("JupyterLab did not start within 60 s")
    yield f"{url}/lab/tree/04_explanations.ipynb?token={token}"
    proc.terminate()
    proc.wait(timeout=30)


def _accept_dialogs(page, wait_ms: int = 3000) -> None:
    """Press the default button of any JupyterLab dialog that is open (or opens within ``wait_ms``)."""
    try:
        page.wait_for_selector(".jp-Dialog .jp-Dialog-button.jp-mod-accept", state="visible", timeout=wait_ms)
    except Exception:  # noqa: BLE001 - no dialog: nothing to do
        return
    for button in page.query_selector_all(".jp-Dialog .jp-Dialog-button.jp-mod-accept"):
        if button.is_visible():
            button.click()
    page.wait_for_selector(".jp-Dialog", state="detached", timeout=10_000)


def test_browser_explorer_renders_and_reacts(lab):
    from playwright.sync_api import sync_playwright

    shots = ROOT / "screenshots"
    shots.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(lab)
        page.wait_for_selector(".jp-NotebookPanel", timeout=120_000)
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
        explorer = None
        for attempt in range(3):  # a click that lands before the kernel is connected can be lost
            try:
                # JupyterLab sometimes asks which kernel to start ("Select Kernel", preselecting this
                # environment's): accept it, or the dialog swallows every click
                _accept_dialogs(page)
                page.keyboard.press("Escape")
                page.click(".lm-MenuBar-itemLabel:text-is('Run')", timeout=30_000)
                page.click(".lm-Menu-itemLabel:text-is('Run All Cells')", timeout=30_000)
                _accept_dialogs(page)
                explorer = page.wait_for_selector(".xai-cam-explorer", timeout=150_000)
                break
            except Exception:  # noqa: BLE001 - retried, then reported with a screenshot
                page.screenshot(path=str(shots / f"explorer_browser_attempt{attempt + 1}.png"), full_page=True)
        assert explorer is not None, f"the explorer never rendered; see {shots}/explorer_browser_attempt*.png"
        image = explorer.wait_for_selector("img", timeout=60_000)
        page.wait_for_function("el => el.naturalWidth > 0", arg=image, timeout=60_000)
        assert "Error displaying widget" not in page.content()
        selects = explorer.query_selector_all("select")
        assert len(selects) >= 6  # image, methods, target, model, fold, layer, colour map
        assert explorer.query_selector(".widget-toggle-buttons") is not None
        text = explorer.inner_text()
        for method in ("gradcam", "gradcam++", "xgradcam", "eigengradcam", "layercam"):
            assert method in text
        image.scroll_into_view_if_needed()
        before = image.get_attribute("src")
        page.screenshot(path=str(shots / "explorer_browser.png"), full_page=True)
        explorer.screenshot(path=str(shots / "explorer_widget.png"))
        # change one control (the colour map) and see the view change
        cmap = next(s for s in selects if "viridis" in s.inner_text())
        cmap.select_option("viridis")
        page.wait_for_function("([el, old]) => el.getAttribute('src') !== old", arg=[image, before], timeout=60_000)
        page.screenshot(path=str(shots / "explorer_browser_changed.png"), full_page=True)
        browser.close()
    assert not [e for e in errors if "widget" in e.lower()], errors
