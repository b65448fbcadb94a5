import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from xai_helpers.config import ParameterError
from xai_helpers.run import NotebookFailed, execute, list_notebooks, main, parse_overrides, resolve_run_params


def test_set_values_are_yaml():
    assert parse_overrides(["models=[resnet50,vgg16]", "epochs=2", "interactive=false", "lr=1e-4",
                            "max_per_class=null", "lr={vgg16: 1e-5, default: 1e-3}"]) == {
        "models": ["resnet50", "vgg16"], "epochs": 2, "interactive": False, "lr": {"vgg16": 1e-5, "default": 1e-3},
        "max_per_class": None}


def test_unknown_set_key_is_an_error():
    with pytest.raises(ParameterError, match="--set: unknown parameter 'epoch'"):
        parse_overrides(["epoch=2"])
    with pytest.raises(ParameterError, match="expected key=value"):
        parse_overrides(["epochs"])


def test_runner_turns_widgets_off_unless_asked():
    assert resolve_run_params("quick", {})["interactive"] is False
    assert resolve_run_params("quick", {"interactive": True})["interactive"] is True


def test_only_selects_numbered_notebooks():
    names = [p.name for p in list_notebooks(["01", "3"])]
    assert names == ["01_data_preparation.ipynb", "03_statistics.ipynb"]
    with pytest.raises(ParameterError, match="--only: no notebook numbered 42"):
        list_notebooks(["42"])


def test_main_reports_broken_parameter_and_exits_1(capsys):
    assert main(["--profile", "quick", "--set", "dataset=brain", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "dataset: unknown value 'brain'" in err and "chest_xray_pneumonia" in err


def _notebook(path, sources):
    nb = new_notebook(cells=[new_code_cell(s) for s in sources])
    nb.cells[0].metadata["tags"] = ["parameters"]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def test_failure_names_notebook_and_cell(tmp_path):
    books = tmp_path / "books"
    books.mkdir()
    _notebook(books / "01_ok.ipynb", ["seed = 0", "x = seed + 1"])
    _notebook(books / "02_broken.ipynb", ["seed = 0", "y = 1", "raise ValueError('the lesion is missing')"])
    params = resolve_run_params("quick", {"run_dir": str(tmp_path / "run")})
    with pytest.raises(NotebookFailed) as err:
        execute(params, list_notebooks(folder=books), progress=False)
    msg = str(err.value)
    assert "02_broken.ipynb failed in cell [4] (`raise ValueError('the lesion is missing')`)" in msg
    assert "ValueError: the lesion is missing" in msg
    # the executed copy of the good notebook and the resolved parameters are in the run folder
    assert (tmp_path / "run" / "notebooks" / "01_ok.ipynb").is_file()
    assert json.loads((tmp_path / "run" / "config.json").read_text())["seed"] == 0
