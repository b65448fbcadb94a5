"""Outside the repository: the notebooks' install cell and Colab badges come from pyproject.toml, the cell installs
what it says and moves into a working folder, and a wheel installed into a separate environment runs its packaged
notebooks from an unrelated folder."""
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import nbformat
import pandas as pd
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
def test_the_wheel_runs_its_notebooks_from_an_unrelated_folder(tmp_path):
    """Build the wheel, install it (no dependencies: those come from this environment, the editable install of
    the checkout left out) into a new virtual environment, and run its packaged notebooks 01 and 02 in an empty
    folder: the synthetic data, the cache and the run folder made there, and one short fit.

    What is tested is the wheel (the notebooks and the template inside it, the runner finding them, the working
    folder), not the notebooks' work: the suite's quick run (``quick_run``) executes all seven on the four CNNs."""
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
    # notebooks 01 and 02 of the quick profile, one CNN, few images, no baselines
    done = subprocess.run([str(python), "-m", "xai_helpers.run", "--profile", "quick", "--only", "01,02",
                           "--no-progress", "--no-estimate", "--set", "models=[efficientnet_b0]",
                           "--set", "synthetic_per_class=6", "--set", "baselines=[]"],
                          cwd=work, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run = work / "runs" / "quick"
    metrics = pd.read_csv(run / "metrics.csv")
    assert sorted(zip(metrics["model"], metrics["fold"])) == [("efficientnet_b0", 0), ("efficientnet_b0", 1)]
    executed = sorted(p.name for p in (run / "notebooks").glob("*.ipynb"))
    assert executed == ["01_data_preparation.ipynb", "02_training.ipynb"]
    packaged = Path(where[0]).parent / "notebooks"  # the notebooks the runner took: the wheel's own
    assert sorted(p.name for p in packaged.glob("[0-9][0-9]_*.ipynb")) == sorted(
        p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert (Path(where[0]).parent / "report" / "report.md.template").is_file()  # notebook 06's text travels too
    assert (work / "data" / "synthetic_quick").is_dir() and (work / "cache").is_dir()
