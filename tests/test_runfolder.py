"""Run folders never lose or misstate a result, and never touch what is not theirs: each scenario of the
hostile-user review reproduced, and shown to be impossible now."""
import json
import multiprocessing
import os
import socket
import warnings
from pathlib import Path

import pandas as pd
import pytest

from xai_helpers.config import ParameterError, project_root, resolve_params
from xai_helpers.runfolder import (LOCK_FILE, RUN_MARKER, RunFolder, RunFolderLocked, RunFolderRefused,
                                   check_run_dir, write_csv_atomic)


# --- 2. never writing into the repository or outside a run folder -------------------------------------------

@pytest.mark.parametrize("run_dir", [".", "..", "/", "~", str(project_root()), str(project_root() / "notebooks")])
def test_repository_root_home_and_foreign_folders_are_refused(run_dir):
    with pytest.raises(ParameterError, match="run_dir: "):
        resolve_params({"run_dir": run_dir})


@pytest.mark.parametrize("run_dir", ["", "   ", None])
def test_an_empty_run_dir_is_a_parameter_error(run_dir):
    with pytest.raises(ParameterError, match="run_dir: a folder is required"):
        resolve_params({"run_dir": run_dir})


def test_a_non_empty_folder_without_the_marker_is_refused_by_name(tmp_path):
    (tmp_path / "thesis.tex").write_text("mine")
    with pytest.raises(RunFolderRefused, match=f"{tmp_path}.*not a run folder"):
        check_run_dir(tmp_path)
    with pytest.raises(ParameterError, match="not empty and is not a run folder"):
        resolve_params({"run_dir": str(tmp_path)})
    assert (tmp_path / "thesis.tex").read_text() == "mine" and not (tmp_path / RUN_MARKER).exists()


def test_new_empty_and_marked_folders_are_run_folders_and_the_marker_has_no_absolute_path(tmp_path):
    run = RunFolder(tmp_path / "runs" / "a")
    assert run.claim() == "new"
    marker = (run.root / RUN_MARKER).read_text()
    assert str(tmp_path) not in marker and json.loads(marker)["kind"] == "xai_helpers run folder"
    run.write_csv(pd.DataFrame({"x": [1]}), run.metrics_file)
    assert check_run_dir(run.root) == "run"
    # a copied or moved run folder is still a run folder
    moved = tmp_path / "elsewhere"
    run.root.rename(moved)
    assert check_run_dir(moved) == "run"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert RunFolder(empty).claim() == "empty"


def test_a_folder_of_an_earlier_version_is_adopted_with_a_notice(tmp_path):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "config.json").write_text("{}")
    with pytest.warns(UserWarning, match="earlier version.*adopted"):
        assert RunFolder(tmp_path).claim() == "legacy"
    assert check_run_dir(tmp_path) == "run"


def test_executed_notebooks_never_overwrite_a_source_notebook():
    from xai_helpers.run import execute, list_notebooks, notebook_dir

    source = list_notebooks(["01"])[0]
    before = source.read_bytes()
    with pytest.raises(ParameterError, match="run_dir: "):
        execute({"run_dir": str(notebook_dir().parent)}, [source], progress=False)
    with pytest.raises(ParameterError, match="run_dir: "):
        execute({"run_dir": str(notebook_dir())}, [source], progress=False)
    assert source.read_bytes() == before


# --- 3. and 4. fits reused only when nothing changed; the protocol as trained --------------------------------

@pytest.fixture
def trained(tmp_path_factory):
    """A tiny run folder of its own for each test: notebook 01's data and one model trained on both folds
    (1 epoch, ~10 s); the tests change it, so none may see another's changes."""
    from xai_helpers.steps import load_prepared, prepare_data
    from xai_helpers.steps import train_models

    root = tmp_path_factory.mktemp("reuse")
    params = resolve_params({"run_dir": str(root / "run"), "data_root": str(root / "synthetic"),
                             "synthetic_per_class": 8, "folds": 2, "epochs": 1, "batch_size": 8,
                             "models": ["efficientnet_b0"], "cam_model": "efficientnet_b0",
                             "cam_layer": "default", "max_per_class": 8})
    prepare_data(params, progress=False)
    RunFolder(params["run_dir"]).write_config(params, step="01")
    metrics = train_models(load_prepared(params, progress=False), params, progress=False)
    RunFolder(params["run_dir"]).write_config(params, step="02")
    return params, metrics


def _mtimes(params):
    run = Path(params["run_dir"])
    return {f: (run / "checkpoints" / f"efficientnet_b0_fold{f}" / "last.pt").stat().st_mtime_ns for f in (0, 1)}


def test_fits_are_retrained_when_the_data_settings_changed(trained):
    from xai_helpers.steps import load_prepared, prepare_data
    from xai_helpers.steps import train_models

    params, first = trained
    stamps = _mtimes(params)
    again = train_models(load_prepared(params, progress=False), params, progress=False)
    assert _mtimes(params) == stamps  # nothing changed: reused
    pd.testing.assert_frame_equal(first.drop(columns=["train_seconds", "images_per_second"]),
                                  again.drop(columns=["train_seconds", "images_per_second"]))
    # notebook 01 rerun with another max_per_class: every fold's data changed, so every fold is trained again
    smaller = {**params, "max_per_class": 5}
    prepare_data(smaller, progress=False)
    after = train_models(load_prepared(smaller, progress=False), smaller, progress=False)
    assert all(_mtimes(params)[f] != stamps[f] for f in (0, 1))
    assert (after["n_train"] + after["n_val"] < first["n_train"] + first["n_val"]).all()


def test_fits_are_retrained_when_the_weights_changed(trained):
    import shutil

    from xai_helpers.steps import load_prepared
    from xai_helpers.steps import train_models

    params, _ = trained
    run = Path(params["run_dir"])
    start = run.parent / "start_from.pt"  # a checkpoint of the same architecture and classes as initial weights
    shutil.copy(run / "checkpoints" / "efficientnet_b0_fold0" / "best.pt", start)
    data = load_prepared(params, progress=False)
    before = train_models(data, params, progress=False)
    stamps = _mtimes(params)
    after = train_models(data, {**params, "weights": str(start)}, progress=False)
    assert all(_mtimes(params)[f] != stamps[f] for f in (0, 1))
    assert set(before["weights"]) == {"none"} and set(after["weights"]) == {"checkpoint:start_from.pt"}


def test_fingerprint_changes_with_weights_and_folds(trained):
    from xai_helpers.steps import load_prepared
    from xai_helpers.steps.train import fit_fingerprint

    params, _ = trained
    data = load_prepared(params, progress=False)
    base = fit_fingerprint(data, 0, params)
    assert base == fit_fingerprint(data, 0, dict(params))
    assert base != fit_fingerprint(data, 1, params)
    assert base != fit_fingerprint(data, 0, {**params, "weights": "imagenet"})


def test_later_notebooks_refuse_parameters_that_contradict_the_prepared_data(trained):
    from xai_helpers.notebook import setup_notebook

    params, _ = trained
    for key, value in (("image_size", 96), ("folds", 3)):
        namespace = {**params, key: value}
        with pytest.raises(ParameterError, match=f"{key}: the run folder .* holds data prepared with {key}="):
            setup_notebook(namespace, "03 · Statistics")
    # another subset of models is fine
    assert setup_notebook({**params, "models": ["resnet50"]}, "02 · Training")["models"] == ["resnet50"]


def test_the_report_states_what_the_training_used_not_the_latest_parameters(trained):
    from xai_helpers.report import load_study, protocol_table

    params, _ = trained
    run = RunFolder(params["run_dir"])
    # notebook 03 run alone with other parameters (allowed: they do not touch the data) rewrites config.json
    run.write_config({**params, "epochs": 99, "lr": 0.5}, step="03")
    assert json.loads(run.config_file.read_text())["epochs"] == 99
    table = protocol_table(load_study(run.root)).set_index("dataset").iloc[0]
    assert str(table["max epochs"]) == "1" and "0.5" not in str(table["lr"])
    assert str(table["image_size"]) == "64"


# --- 5. concurrent runs: the lock, and unique temporary names ------------------------------------------------

def _append_rows(root, model, n):
    run = RunFolder(root)
    for fold in range(n):
        run.update_csv(pd.DataFrame([{"model": model, "fold": fold, "accuracy": 0.5}]), run.metrics_file,
                       keys=("model", "fold"))


def test_two_runs_writing_one_table_keep_every_row(tmp_path):
    RunFolder(tmp_path).claim()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_rows, args=(str(tmp_path), m, 25)) for m in ("resnet50", "vgg16")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert all(p.exitcode == 0 for p in procs)
    table = pd.read_csv(tmp_path / "metrics.csv")
    assert len(table) == 50 and set(zip(table.model, table.fold)) == {(m, f) for m in ("resnet50", "vgg16")
                                                                     for f in range(25)}
    assert not list(tmp_path.glob("*.tmp")) and not (tmp_path / LOCK_FILE).exists()


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_warning(tmp_path):
    run = RunFolder(tmp_path)
    run.claim()
    ctx = multiprocessing.get_context("spawn")
    dead = ctx.Process(target=os.getpid)
    dead.start()
    dead.join()
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "since": 0}))
    with pytest.warns(UserWarning, match=f"stale lock of process {dead.pid}"):
        with run.locked(timeout=5):
            assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert not (tmp_path / LOCK_FILE).exists()


def test_waiting_for_a_live_lock_is_bounded(tmp_path):
    run = RunFolder(tmp_path)
    run.claim()
    parent = os.getppid()  # alive for the whole test
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": parent, "host": socket.gethostname(), "since": 0}))
    with pytest.raises(RunFolderLocked, match=f"locked by process {parent}"):
        with run.locked(timeout=0.3):
            pass
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == parent  # not ours to remove


def test_atomic_writes_leave_the_old_file_when_the_writer_crashes(tmp_path, monkeypatch):
    path = tmp_path / "history.csv"
    write_csv_atomic(pd.DataFrame({"epoch": [1, 2]}), path)
    before = path.read_text()

    def crash(self, target, *args, **kwargs):
        Path(target).write_text("epoch\n1\n")  # half written
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", crash)
    with pytest.raises(OSError, match="disk full"):
        write_csv_atomic(pd.DataFrame({"epoch": [1, 2, 3]}), path)
    assert path.read_text() == before and [p.name for p in tmp_path.iterdir()] == ["history.csv"]


def test_history_csv_is_written_atomically(tmp_path, monkeypatch):
    import numpy as np
    import torch

    import xai_helpers.inference as inference
    import xai_helpers.training as training

    written = []
    real = training.write_csv_atomic
    monkeypatch.setattr(training, "write_csv_atomic", lambda df, path: (written.append(Path(path).name),
                                                                       real(df, path)))
    images = np.random.default_rng(0).integers(0, 255, (8, 1, 32, 32), dtype=np.uint8)
    config = training.TrainConfig(epochs=1, batch_size=4, resume_every_seconds=0)
    training.fit("efficientnet_b0", inference.BatchPipeline(images, torch.device("cpu")), np.arange(8) % 2,
                 np.arange(6), np.arange(6, 8), ["a", "b"], tmp_path, config, progress=False)
    assert "history.csv" in written and pd.read_csv(tmp_path / "history.csv")["epoch"].tolist() == [1]
    assert not list(tmp_path.glob("*.tmp"))


# --- clear errors --------------------------------------------------------------------------------------------

def _png(path, seed=0, size=16):
    """A distinct image per seed (smooth random field: unrelated perceptual hashes)."""
    import numpy as np
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    field = np.random.default_rng(seed).integers(0, 256, (4, 4), dtype=np.uint8)
    Image.fromarray(field).resize((size, size), Image.Resampling.BICUBIC).save(path)


def _params(tmp_path, data_root, dataset="imagefolder", **kw):
    return resolve_params({"run_dir": str(tmp_path / "run"), "data_root": str(data_root), "dataset": dataset,
                           "folds": 2, **kw})


def test_a_dataset_with_one_class_fails_in_notebook_01_with_the_reason(tmp_path):
    from xai_helpers.data.layouts import DatasetError
    from xai_helpers.steps import prepare_data

    for i in range(4):
        _png(tmp_path / "data" / "tumour" / f"{i}.png", 40 * i)
    with pytest.raises(DatasetError, match="only one class \\('tumour', 4 images\\)"):
        prepare_data(_params(tmp_path, tmp_path / "data"), progress=False)


def test_masks_is_a_class_hidden_files_are_never_images_and_skipped_folders_are_listed(tmp_path):
    from xai_helpers.data.layouts import scan_dataset

    root = tmp_path / "data"
    for c in ("masks", "lesion"):
        for i in range(2):
            _png(root / c / f"{i}.png", 50 * i)
    _png(root / "lesion" / "._0.png")                    # macOS resource fork
    _png(root / "lesion" / ".ipynb_checkpoints" / "x.png")
    index = scan_dataset(root, "imagefolder")
    assert sorted(index.rows["class"].unique()) == ["lesion", "masks"] and len(index) == 4
    assert not any(Path(p).name.startswith(".") or ".ipynb_checkpoints" in p for p in index.rows["path"])
    assert len(index.ignored) == 2
    # a published layout: a folder that is not a split is skipped, and listed with the reason
    brain = tmp_path / "brain"
    for split in ("Training", "Testing"):
        for c in ("glioma_tumor", "no_tumor"):
            _png(brain / split / c / "a.png")
    _png(brain / "extra_scans" / "b.png")
    index = scan_dataset(brain, "brain_tumor_mri")
    assert [s["reason"] for s in index.skipped if s["path"].endswith("extra_scans")] == [
        "not a split folder of layout 'brain_tumor_mri' (expected train, training, val, valid, validation, test, "
        "testing)"]


def test_identical_files_under_different_classes_are_flagged_and_left_out(tmp_path, capsys):
    from xai_helpers.data.audit import audit_summary
    from xai_helpers.steps import prepare_data

    root = tmp_path / "data"
    for c, base in (("benign", 0), ("malignant", 1000)):
        for i in range(6):
            _png(root / c / f"{c}{i}.png", base + 20 * i, size=32)
    (root / "malignant" / "copy_of_benign0.png").write_bytes((root / "benign" / "benign0.png").read_bytes())
    data = prepare_data(_params(tmp_path, root), progress=False)
    conflicts = data.audit["label_conflicts"]
    assert len(conflicts) == 1 and conflicts[0]["classes"] == ["benign", "malignant"]
    assert not set(conflicts[0]["paths"]) & set(data.splits["path"])  # in neither training nor test
    summary = audit_summary(data.audit)
    assert summary.loc["label conflicts: identical files under different classes (left out)", "value"] == 1


def test_a_published_layout_without_its_test_split_says_so(tmp_path, capsys):
    from xai_helpers.steps import prepare_data
    from xai_helpers.report import load_study, protocol_table

    root = tmp_path / "brain"
    for c, base in (("glioma_tumor", 0), ("no_tumor", 1000)):
        for i in range(10):
            _png(root / "Training" / c / f"{i}.png", base + 10 * i, size=32)
    params = _params(tmp_path, root, dataset="brain_tumor_mri")
    data = prepare_data(params, progress=False)
    assert "has a test split, but" in capsys.readouterr().out
    assert data.audit["splits"]["test_split"].startswith("drawn from the training data")
    pd.DataFrame([{"dataset": "brain_tumor_mri", "model": "resnet50", "fold": 0, "accuracy": 0.5, "n_train": 1,
                   "n_test": 1}]).to_csv(Path(params["run_dir"]) / "metrics.csv", index=False)
    row = protocol_table(load_study(params["run_dir"])).iloc[0]
    assert row["test split"].startswith("drawn from the training data")


def test_an_image_size_whose_cache_exceeds_the_free_disk_is_refused_with_its_size(tmp_path, monkeypatch):
    import shutil

    from xai_helpers.data.cache import build_cache

    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**12, 10**12 - 10**6, 10**6))
    _png(tmp_path / "a.png")
    with pytest.raises(ValueError, match=r"image_size: the image cache of 1 images at 1024 px would take "
                                         r"0\.0 GB, more than the 0\.0 GB free"):
        build_cache([tmp_path / "a.png"], 1024, grey=True, cache_dir=tmp_path / "cache", progress=False)


def test_a_decoding_worker_killed_for_memory_gives_that_message(tmp_path, monkeypatch):
    from concurrent.futures.process import BrokenProcessPool

    import xai_helpers.data.cache as cache

    class Broken:
        def __init__(self, *a, **k):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

        def submit(self, *a, **k):
            raise BrokenProcessPool("A process in the process pool was terminated abruptly")

    monkeypatch.setattr(cache, "ProcessPoolExecutor", Broken)
    paths = []
    for i in range(8):
        _png(tmp_path / f"{i}.png", i)
        paths.append(tmp_path / f"{i}.png")
    with pytest.raises(MemoryError, match="killed \\(most often for lack of memory"):
        cache.build_cache(paths, 32, grey=True, cache_dir=tmp_path / "cache", workers=2, progress=False)


def test_a_corrupt_weights_file_in_the_hub_folder_is_named_with_what_to_do(tmp_path, monkeypatch):
    import torch

    from xai_helpers.models import CorruptWeightsError, imagenet_weights_file, resolve_weights

    # the hub folder of this test only: TORCH_HOME, and no torch.hub.set_dir left over (monkeypatch restores
    # torch.hub's own setting afterwards; a set_dir here once leaked into later tests in random order)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    target = imagenet_weights_file("resnet50")
    assert target.is_relative_to(tmp_path)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"PK\x03\x04 truncated download")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not a silent fall-back to training from scratch
        with pytest.raises(CorruptWeightsError, match=f"{target}.*cannot be loaded.*Delete it"):
            resolve_weights("resnet50", "auto")
