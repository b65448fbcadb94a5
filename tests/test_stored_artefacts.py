"""Stored artefacts are checked before they are trusted: a damaged image cache is rebuilt from the images, a damaged
checkpoint is named with its fit and retrained by notebook 02 to the same metrics, and image files that changed since
notebook 01 stop the later notebooks with their list. Real files, damaged the way a full disk, an interrupted copy or
a bad sector leaves them (truncated, bytes flipped, deleted)."""
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from xai_helpers.config import resolve_params
from xai_helpers.errors import CorruptCacheError, CorruptCheckpointError, DataChangedError, XaiHelpersError
from xai_helpers.steps import load_prepared, prepare_data, train_models

TIMING = ["train_seconds", "images_per_second"]


def _params(root: Path, **overrides) -> dict:
    # the smallest run that trains: one CNN, 6 images per class, 2 folds of 1 epoch (the subject is the files)
    return resolve_params({"run_dir": str(root / "run"), "data_root": str(root / "synthetic"),
                           "synthetic_per_class": 6, "folds": 2, "epochs": 1, "batch_size": 8,
                           "models": ["efficientnet_b0"], "baselines": [], "cam_model": "efficientnet_b0",
                           "cam_layer": "default", **overrides})


def _truncate(path: Path) -> None:
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)


def _flip(path: Path, at: float = 0.6) -> None:
    """Flip the bytes of a block in the middle of the file: its size stays, its content does not."""
    data = bytearray(path.read_bytes())
    start = int(len(data) * at)
    data[start:start + 64] = bytes(b ^ 0xFF for b in data[start:start + 64])
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("artefacts")
    params = _params(root)
    prepare_data(params, progress=False)
    return params


@pytest.mark.parametrize("damage", [_truncate, _flip], ids=["truncated", "flipped"])
def test_a_damaged_image_cache_is_said_and_rebuilt_to_the_same_images(prepared, damage, capsys, tmp_path):
    from xai_helpers.data.cache import ImageCache

    original = load_prepared(prepared, progress=False)
    before, cache_file = np.asarray(original.images).copy(), Path(original.info["cache_file"])
    del original
    damage(cache_file)
    with pytest.raises(CorruptCacheError, match=rf"{cache_file.name}: the image cache.*rerun notebook 01"):
        ImageCache.load(cache_file)
    capsys.readouterr()
    data = load_prepared(prepared, progress=False)
    assert f"{cache_file}: the image cache" in capsys.readouterr().out  # said in the notebook's output
    assert np.array_equal(np.asarray(data.images), before)
    ImageCache.load(cache_file)  # sound again


def test_a_damaged_cache_without_its_images_is_refused_naming_the_files_and_notebook_01(tmp_path):
    params = _params(tmp_path)
    prepare_data(params, progress=False)
    cache_file = Path(load_prepared(params, progress=False).info["cache_file"])
    _truncate(cache_file)
    gone = Path(pd.read_csv(Path(params["run_dir"]) / "data" / "splits.csv")["path"][0])
    gone.unlink()
    with pytest.raises(DataChangedError, match=rf"1 missing \({gone}\).*rerun notebook 01"):
        load_prepared(params, progress=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("trained")
    params = _params(root)
    prepare_data(params, progress=False)
    metrics = train_models(load_prepared(params, progress=False), params, progress=False)
    return params, metrics


def _copy(params: dict, to: Path) -> dict:
    shutil.copytree(params["run_dir"], to)
    return {**params, "run_dir": str(to)}


@pytest.mark.parametrize("damage", ["truncated", "flipped", "deleted"])
def test_a_damaged_checkpoint_is_named_with_its_fit_and_notebook_02_retrains_it_to_the_same_metrics(
        trained, damage, tmp_path, capsys):
    from xai_helpers.inference import load_checkpoint
    from xai_helpers.steps import explain_examples

    params, metrics = trained
    params = _copy(params, tmp_path / "run")
    best = Path(params["run_dir"]) / "checkpoints" / "efficientnet_b0_fold0" / "best.pt"
    {"truncated": _truncate, "flipped": _flip, "deleted": Path.unlink}[damage](best)
    data = load_prepared(params, progress=False)
    if damage == "deleted":  # what notebooks 04, 05 and 07 say
        with pytest.raises(XaiHelpersError, match=r"best\.pt.*notebook 02"):
            explain_examples(data, params, per_class=1, fold=0)
    else:
        with pytest.raises(CorruptCheckpointError) as err:
            load_checkpoint(best)
        message = str(err.value)
        assert message.startswith(f"{best} (efficientnet_b0 fold 0): not a loadable checkpoint")
        assert "rerun notebook 02" in message
        assert "zip" not in message.lower() and "unpickl" not in message.lower()  # no raw reader error
        with pytest.raises(CorruptCheckpointError, match=r"efficientnet_b0 fold 0"):
            explain_examples(data, params, per_class=1, fold=0)
    capsys.readouterr()
    after = train_models(data, params, progress=False)
    if damage != "deleted":
        assert "efficientnet_b0 fold 0: trained again, its checkpoint best.pt is damaged" in capsys.readouterr().out
    pd.testing.assert_frame_equal(after.drop(columns=TIMING), metrics.drop(columns=TIMING))
    load_checkpoint(best)  # sound again


def test_image_files_changed_since_notebook_01_stop_the_later_notebooks_with_their_list(tmp_path):
    from xai_helpers.data.synthetic import make_synthetic_dataset

    # a folder of the user's (the synthetic generator guards its own folder against edits)
    make_synthetic_dataset(tmp_path / "synthetic", n_per_class=6, seed=0, progress=False)
    for split in ("train", "test"):
        shutil.copytree(tmp_path / "synthetic" / split, tmp_path / "mine" / split)
    params = _params(tmp_path, dataset="imagefolder", data_root=str(tmp_path / "mine"))
    prepare_data(params, progress=False)
    paths = pd.read_csv(Path(params["run_dir"]) / "data" / "splits.csv")["path"].tolist()
    touched, replaced, deleted = Path(paths[0]), Path(paths[1]), Path(paths[2])
    os.utime(touched, (1, 1))  # a new time, the same bytes: not a change
    load_prepared(params, progress=False)
    with Image.open(replaced) as im:
        Image.eval(im, lambda v: 255 - v).save(replaced)
    deleted.unlink()
    with pytest.raises(DataChangedError) as err:
        load_prepared(params, progress=False)
    message = str(err.value)
    assert f"1 changed ({replaced})" in message and f"1 missing ({deleted})" in message
    assert str(touched) not in message and "rerun notebook 01" in message
    prepare_data(params, progress=False)  # what the message says to do
    data = load_prepared(params, progress=False)
    assert str(deleted) not in set(data.splits["path"]) and str(replaced) in set(data.splits["path"])
