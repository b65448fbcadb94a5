"""One bad file never stops a study: every per-file failure is reported with its path and reason and
left out, every silent conversion is counted, and parameters are checked before any work starts."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from xai_helpers.config import ParameterError, resolve_params
from xai_helpers.data.cache import PROBLEMS, build_cache, decode_image, file_digests
from xai_helpers.steps import prepare_data


def _rgb(rng, size=80):
    return Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))


def _odd_files(folder, rng):
    """One file of each kind the decoder must report or convert, beside ordinary ones."""
    (folder / "dangling.png").symlink_to(folder / "no_such_file.png")
    os.mkfifo(folder / "pipe.png")  # opening it to read would wait forever
    Image.new("RGB", (1, 1), (200, 10, 10)).save(folder / "tiny.png")
    Image.new("RGB", (5, 300), (200, 10, 10)).save(folder / "sliver.png")
    _rgb(rng).convert("CMYK").save(folder / "cmyk.jpg")
    Image.fromarray(rng.integers(0, 65535, (80, 80), dtype=np.uint16)).save(folder / "deep16.png")
    _rgb(rng).convert("P").save(folder / "palette.png")
    clear = np.dstack([rng.integers(0, 255, (80, 80, 3), dtype=np.uint8), np.full((80, 80), 255, np.uint8)])
    clear[:40, :, 3] = 0
    Image.fromarray(clear, "RGBA").save(folder / "rgba_clear.png")
    clear[:, :, 3] = 255
    Image.fromarray(clear, "RGBA").save(folder / "rgba_opaque.png")
    frames = [_rgb(rng).convert("P") for _ in range(3)]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    Image.fromarray(rng.integers(0, 255, (80, 80), dtype=np.uint8)).save(folder / "grey.png")
    _rgb(rng, 20).save(folder / "small.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees when shown
    _rgb(rng).save(folder / "exif.jpg", exif=exif)


EXPECTED_CONVERSIONS = {
    "cmyk.jpg": ["CMYK -> RGB"],
    "deep16.png": ["16/32-bit -> 8-bit (min-max per image)", "grey -> RGB"],
    "palette.png": ["palette -> RGB"],
    "rgba_clear.png": ["transparency composited on black"],
    "rgba_opaque.png": ["alpha channel dropped (fully opaque)"],
    "anim.gif": ["animation: first frame only", "palette -> RGB"],
    "grey.png": ["grey -> RGB"],
    "small.png": ["upscaled (smaller than image_size)"],
    "exif.jpg": ["EXIF orientation not applied"],
}


@pytest.fixture
def skin_with_bad_files(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "skin"
    for split, n in (("train", 8), ("test", 3)):
        for cls in ("benign", "malignant"):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                _rgb(rng).save(d / f"{cls}{i}.png")
    _odd_files(root / "train" / "benign", rng)
    return root


def test_decoder_names_every_conversion_it_makes(skin_with_bad_files):
    folder = skin_with_bad_files / "train" / "benign"
    for name, expected in EXPECTED_CONVERSIONS.items():
        arr, done = decode_image(folder / name, grey=False, size=64)
        assert arr.shape == (64, 64, 3) and sorted(done) == sorted(expected), name
    assert decode_image(folder / "benign0.png", grey=False, size=64)[1] == []
    # in a greyscale dataset a colour image is converted to grey, and a grey one is not converted
    assert decode_image(folder / "benign0.png", grey=True, size=64)[1] == ["colour -> grey"]
    assert decode_image(folder / "grey.png", grey=True, size=64)[1] == []
    # the first frame of an animation is what is kept
    with Image.open(folder / "anim.gif") as gif:
        first = np.asarray(gif.convert("RGB").resize((64, 64), Image.Resampling.BILINEAR))
    assert np.array_equal(decode_image(folder / "anim.gif", grey=False, size=64)[0], first)


def test_a_study_goes_on_past_every_bad_file_and_reports_each(skin_with_bad_files, tmp_path):
    # before: the dangling link stopped notebook 01 with a raw FileNotFoundError (Path.stat in the hashing),
    # the 1x1 image was upscaled into the study, and no conversion was counted anywhere
    params = resolve_params({"dataset": "skin_cancer_isic", "data_root": str(skin_with_bad_files),
                             "run_dir": str(tmp_path / "run"), "folds": 2})
    data = prepare_data(params, progress=False)
    audit = json.loads((tmp_path / "run" / "data" / "audit.json").read_text())
    left_out = {u["path"].rsplit("/", 1)[-1]: u for u in audit["unreadable"]}
    assert set(left_out) == {"dangling.png", "tiny.png", "sliver.png"}
    assert left_out["dangling.png"]["problem"] == "cannot_open"
    assert "dangling symbolic link (to " in left_out["dangling.png"]["reason"]
    assert left_out["dangling.png"]["reason"].startswith(str(skin_with_bad_files))
    assert left_out["tiny.png"]["problem"] == "too_small" and "1x1 px" in left_out["tiny.png"]["reason"]
    assert left_out["sliver.png"]["problem"] == "too_small"
    assert audit["left_out"] == {"cannot_open": 1, "too_small": 2}
    skipped = {s["path"].rsplit("/", 1)[-1]: s["reason"] for s in audit["skipped"]}
    assert skipped["pipe.png"] == "not a regular file (a named pipe)"
    expected = {}
    for changes in EXPECTED_CONVERSIONS.values():
        for what in changes:
            expected[what] = expected.get(what, 0) + 1
    assert audit["conversions"] == expected
    assert audit["conversion_examples"]["CMYK -> RGB"][0].endswith("cmyk.jpg")
    used = {p.rsplit("/", 1)[-1] for p in data.splits["path"]}
    assert {"dangling.png", "tiny.png", "sliver.png", "pipe.png"}.isdisjoint(used)
    assert set(EXPECTED_CONVERSIONS) <= used  # converted images stay in the study
    # notebook 01's table shows each kind, named
    from xai_helpers.data.audit import audit_summary

    table = audit_summary(audit)
    assert table.loc[f"  left out: {PROBLEMS['too_small']}", "value"] == 2
    assert table.loc["  converted: grey -> RGB", "value"] == 2


def test_a_file_that_vanishes_after_the_scan_is_reported_not_fatal(tmp_path):
    rng = np.random.default_rng(1)
    paths = []
    for i in range(3):
        _rgb(rng).save(tmp_path / f"{i}.png")
        paths.append(str(tmp_path / f"{i}.png"))
    digests = file_digests(paths)
    os.remove(paths[1])  # gone between the hashing and the decoding
    cache = build_cache(paths, 16, grey=False, cache_dir=tmp_path / "c", digests=digests, workers=1, progress=False)
    assert len(cache.paths) == 2 and cache.unreadable[0]["path"] == paths[1]
    assert cache.unreadable[0]["problem"] == "cannot_open" and "No such file" in cache.unreadable[0]["reason"]
    # and one that cannot be hashed gets a digest of its own, never a duplicate of another such file
    assert file_digests([paths[1], str(tmp_path / "x.png")]) == [f"unreadable:{paths[1]}",
                                                                 f"unreadable:{tmp_path / 'x.png'}"]


def test_a_broken_mask_file_is_reported_and_the_image_has_no_mask(tmp_path):
    import pandas as pd

    from xai_helpers.data.prepared import PreparedData

    good, broken = tmp_path / "good.png", tmp_path / "broken.png"
    Image.new("L", (8, 8), 255).save(good)
    broken.write_text("not a png")
    splits = pd.DataFrame({"path": ["a.png", "b.png", "c.png"], "split": "test", "class": ["x", "y", "x"],
                           "fold": -1, "mask": [str(good), str(broken), str(tmp_path / "missing.png")]})
    data = PreparedData(splits, np.zeros((3, 1, 8, 8), np.uint8), ["x", "y"], np.array([0, 1, 0]), {})
    with pytest.warns(UserWarning, match="broken.png: .*mask left out"):
        masks = data.masks(np.array([0, 1, 2]))
    assert masks[0].all() and masks[1] is None and masks[2] is None


def test_a_device_this_machine_lacks_is_refused_before_any_work():
    import torch

    n = torch.cuda.device_count()
    with pytest.raises(ParameterError, match=rf"device: 'cuda:{n + 7}'"):
        resolve_params({"device": f"cuda:{n + 7}"})
    if not torch.cuda.is_available():
        with pytest.raises(ParameterError, match="device: 'cuda'.*not available"):
            resolve_params({"device": "cuda"})
    if not torch.backends.mps.is_available():
        with pytest.raises(ParameterError, match="device: 'mps'"):
            resolve_params({"device": "mps"})
    assert resolve_params({"device": "cpu"})["device"] == "cpu"


def test_a_cam_model_that_is_not_trained_is_refused_before_any_notebook_runs(tmp_path, capsys):
    # before: accepted, and notebook 04 failed after notebook 02 had trained every other model
    from xai_helpers.run import check_cam_model_is_trained, list_notebooks, main

    run_dir = tmp_path / "run"
    params = resolve_params({"models": ["resnet50"], "cam_model": "vgg16", "cam_layer": "default",
                             "run_dir": str(run_dir)})
    with pytest.raises(ParameterError, match="cam_model: 'vgg16' is not among models"):
        check_cam_model_is_trained(params, list_notebooks())
    assert main(["--profile", "quick", "--set", f"run_dir={run_dir}", "--set", "models=[resnet50]",
                 "--set", "cam_model=vgg16", "--set", "cam_layer=default", "--no-progress"]) == 1
    assert "cam_model: 'vgg16' is not among models" in capsys.readouterr().err
    assert not (run_dir / "data").exists()  # nothing ran
    # notebook 02 alone for another subset is fine, and so is explaining a model trained earlier
    check_cam_model_is_trained(params, list_notebooks(["02"]))
    (run_dir / "checkpoints" / "vgg16_fold0").mkdir(parents=True)
    (run_dir / "checkpoints" / "vgg16_fold0" / "last.pt").write_bytes(b"")
    check_cam_model_is_trained(params, list_notebooks())


def test_an_external_folder_of_no_known_layout_is_refused_before_any_work(tmp_path):
    # before: accepted, and notebook 07 failed after training and explaining
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no images here")
    with pytest.raises(ParameterError, match="external_data_root: .*no known layout"):
        resolve_params({"external_data_root": str(tmp_path / "notes")})
