"""Outside the repository: the notebooks' install cell and Colab badges come from pyproject.toml, the cell installs
what it says and moves into a working folder, and a wheel installed into a separate environment runs the quick
profile from an unrelated folder."""
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import nbformat
import pytest

from xai_helpers.distribution import (INSTALL_CELL_TAG, WORKING_FOLDER, colab_url, install_cell, release_ref,
                                      repository_url, write_install_cells)

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_repository_and_release_come_from_pyproject():
    assert repository_url() == PYPROJECT["project"]["urls"]["Repository"].removesuffix(".git")
    assert release_ref() == "v" + PYPROJECT["project"]["version"]


def test_every_notebook_has_the_install_cell_and_badge_that_pyproject_gives(tmp_path):
    scripts = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
    for script in scripts:
        shutil.copy(script, tmp_path / script.name)
    assert write_install_cells(tmp_path) == []  # make notebooks would change nothing: the scripts are current
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert code[0].source == install_cell() and "install" in code[0].metadata.get("tags", [])
        assert "parameters" in code[1].metadata.get("tags", [])  # the install cell runs before the parameters
        assert colab_url(path.name) in nb.cells[0].source  # the badge under the title opens this notebook
    assert INSTALL_CELL_TAG in scripts[0].read_text()


def test_the_install_cell_installs_the_pinned_release_and_moves_into_a_working_folder(tmp_path, monkeypatch):
    import importlib.util

    calls = []
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)  # as on Colab: the package is missing
    monkeypatch.setattr(subprocess, "run", lambda cmd, check: calls.append(cmd))
    monkeypatch.chdir(tmp_path)
    exec(compile(install_cell(), "install cell", "exec"), {})
    assert calls == [[sys.executable, "-m", "pip", "install", "--quiet",
                      f"xai-helpers @ git+{repository_url()}@{release_ref()}"]]
    assert Path.cwd() == tmp_path / WORKING_FOLDER


@pytest.mark.slow
def test_the_wheel_runs_the_quick_profile_from_an_unrelated_folder(tmp_path):
    """Build the wheel, install it (no dependencies: those come from this environment, the editable install of
    the checkout left out) into a new virtual environment, and run the quick profile in an empty folder."""
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist),
                    str(ROOT)], check=True)
    wheel = next(dist.glob("xai_helpers-*.whl"))
    env_dir = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    # the dependencies: this environment's site-packages as a plain path (its .pth files, the editable
    # install's among them, are not processed), after the new environment's own
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "-q", str(wheel)], check=True)
    work = tmp_path / "somewhere_else"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "XAI_HELPERS_CACHE")}
    env["PATH"] = f"{env_dir / 'bin'}:{env['PATH']}"
    where = subprocess.run([str(python), "-c", "import xai_helpers, xai_helpers.paths as p; "
                            "print(xai_helpers.__file__); print(p.repository_root())"],
                           cwd=work, env=env, check=True, capture_output=True, text=True).stdout.split("\n")
    assert where[0].startswith(str(site)) and where[1] == "None"  # the installed copy, no checkout
    # every notebook, one CNN (the mechanism is what is tested: the suite's quick run covers the four)
    done = subprocess.run([str(python), "-m", "xai_helpers.run", "--profile", "quick", "--no-progress",
                           "--no-estimate", "--set", "models=[resnet50]"], cwd=work, env=env, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run = work / "runs" / "quick"
    assert (run / "report.md").is_file() and (run / "metrics.csv").is_file()
    executed = sorted(p.name for p in (run / "notebooks").glob("*.ipynb"))
    assert executed == sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert (work / "data" / "synthetic_quick").is_dir() and (work / "cache").is_dir()
