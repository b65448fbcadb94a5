import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from xai_helpers.config import ParameterError
from xai_helpers.run import (NotebookFailed, execute, list_notebooks, main, parse_overrides, plan_runs,
                             resolve_run_params, runner_order)


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


def _datasets(tmp_path):
    roots = {}
    for name in ("brain_tumor_mri", "skin_cancer_isic", "chest_xray_pneumonia"):
        roots[name] = tmp_path / name
        roots[name].mkdir()
    return roots


def test_paper_profiles_plan_one_run_folder_per_dataset(tmp_path, monkeypatch):
    from xai_helpers import config

    roots = _datasets(tmp_path)
    monkeypatch.setitem(config.STUDY_DATASETS, "paper", {k: str(v) for k, v in roots.items()})
    per_dataset, study = plan_runs("paper", {"run_dir": str(tmp_path / "study")})
    assert [p["dataset"] for p in per_dataset] == list(roots)
    assert [p["run_dir"] for p in per_dataset] == [str(tmp_path / "study" / d) for d in roots]
    assert all(p["image_size"] == 224 and p["weights"] == "auto" and p["interactive"] is False for p in per_dataset)
    assert study["run_dir"] == str(tmp_path / "study")
    one, study = plan_runs("paper_cpu", {"dataset": "skin_cancer_isic", "data_root": str(roots["skin_cancer_isic"]),
                                         "run_dir": str(tmp_path / "cpu")})
    assert len(one) == 1 and one[0]["run_dir"] == str(tmp_path / "cpu" / "skin_cancer_isic")
    assert one[0]["max_per_class"] == 1500 and one[0]["epochs"] == {"default": 8, "vgg16": 4}
    assert study["run_dir"] == str(tmp_path / "cpu")
    with pytest.raises(ParameterError, match="name the one data_root belongs to with --set dataset"):
        plan_runs("paper", {"data_root": str(roots["skin_cancer_isic"])})
    with pytest.raises(ParameterError, match="data_root: folder .*missing_folder does not exist"):
        plan_runs("paper", {"dataset": "skin_cancer_isic", "data_root": str(tmp_path / "missing_folder")})


def test_single_dataset_profiles_run_the_summary_last_on_their_own_folder():
    per_dataset, study = plan_runs("quick", {})
    assert per_dataset == [study]
    assert [p.name[:2] for p in runner_order(list_notebooks())] == ["01", "02", "03", "04", "05", "07", "06"]


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


def test_kernels_run_over_ipc_without_the_tcp_warning(tmp_path, capfd):
    """The runner's kernels talk over local IPC sockets: no "Kernel is running over TCP without encryption"
    per notebook, and no socket files left behind (in the notebooks' folder or the temporary one)."""
    import glob
    import tempfile

    books = tmp_path / "books"
    books.mkdir()
    _notebook(books / "01_ok.ipynb", ["seed = 0", "import os\nprint('pid', os.getpid())"])
    before = set(glob.glob(f"{tempfile.gettempdir()}/xai-kernel-*"))
    params = resolve_run_params("quick", {"run_dir": str(tmp_path / "run")})
    execute(params, list_notebooks(folder=books), progress=False)
    out, err = capfd.readouterr()
    assert "01_ok.ipynb: done" in out
    assert "TCP" not in out + err
    executed = nbformat.read(tmp_path / "run" / "notebooks" / "01_ok.ipynb", as_version=4)
    assert any("pid" in o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    assert sorted(p.name for p in books.iterdir()) == ["01_ok.ipynb"]
    assert set(glob.glob(f"{tempfile.gettempdir()}/xai-kernel-*")) == before


@pytest.mark.slow
@pytest.mark.shared_data
def test_paper_cpu_path_on_real_skin_data_writes_the_report(tmp_path):
    """The paper_cpu profile end to end on real skin-cancer images, shrunk to about a minute: 10 training and 4
    test images per class, copied in the dataset's layout (the path is tested, not the dataset's size)."""
    from conftest import real_subset

    root = real_subset("skin_cancer_isic", tmp_path / "skin_cancer_isic", {"train": 10, "test": 4})
    study = tmp_path / "paper_cpu"
    code = main(["--profile", "paper_cpu", "--no-progress", "--set", "dataset=skin_cancer_isic",
                 "--set", f"data_root={root}", "--set", f"run_dir={study}", "--set", "max_per_class=6",
                 "--set", "folds=2", "--set", "epochs=1", "--set", "models=[resnet50]",
                 "--set", "explain_per_class=1", "--set", "generalization_per_class=3",
                 "--set", "corruption_severities=[5]"])
    assert code == 0
    run = study / "skin_cancer_isic"
    import pandas as pd
    metrics = pd.read_csv(run / "metrics.csv")
    assert set(metrics["weights"]) == {"none"}  # 'auto' falls back offline, and says so
    table = pd.read_csv(run / "generalization.csv")
    assert set(table["condition"]) >= {"clean", "gaussian_noise", "intensity_shift"}
    assert not table["condition"].str.startswith("external:").any()  # real data: no external set unless given
    report = (study / "report.md").read_text()
    assert "| skin_cancer_isic | resnet50 " in report and "0.8631" in report
    assert f"{metrics.loc[metrics.model == 'resnet50', 'accuracy'].mean():.4f}" in report
    assert "at most 6 training images per class were used" in report


def test_the_runner_says_what_it_expects_before_it_starts(tmp_path, capsys):
    """The demo profile has measured reference times: the runner probes this machine, prints each notebook's
    expected time, then runs; a machine twice as fast as the fastest reference gets shorter times."""
    from xai_helpers.timing import REFERENCES, expected_seconds, expected_time_text

    fastest = max(REFERENCES["demo"], key=lambda r: r.probe_images_per_second)
    half = expected_seconds(REFERENCES["demo"], 2 * fastest.probe_images_per_second)
    assert half["02"] < 0.8 * fastest.seconds["02"]  # training scales with the probe
    line = expected_time_text("demo", {}, ["01", "02"], images_per_second=fastest.probe_images_per_second)
    assert f"01 {fastest.seconds['01']:.0f} s" in line and fastest.machine in line
    assert main(["--profile", "demo", "--only", "01", "--no-progress", "--set", f"run_dir={tmp_path / 'run'}",
                 "--set", f"data_root={tmp_path / 'synthetic'}", "--set", "synthetic_per_class=6"]) == 0
    out = capsys.readouterr().out
    assert out.index("expected on this machine (an estimate)") < out.index("01_data_preparation.ipynb: done")
