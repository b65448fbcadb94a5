import numpy as np
import pytest
from PIL import Image

from xai_helpers.data import cache as cache_mod
from xai_helpers.data.cache import ImageReadError, build_cache, load_image


@pytest.fixture
def files(tmp_path):
    d = tmp_path / "img"
    d.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 30), dtype=np.uint8)).save(d / "grey.png")
    Image.fromarray(rng.integers(0, 255, (50, 50, 3), dtype=np.uint8)).save(d / "rgb.jpg", quality=95)
    Image.fromarray(rng.integers(0, 255, (20, 20, 4), dtype=np.uint8), "RGBA").save(d / "rgba.png")
    Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).convert("CMYK").save(d / "cmyk.jpg")
    Image.fromarray(rng.integers(0, 65535, (20, 20), dtype=np.uint16)).save(d / "deep16.png")
    Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).convert("P").save(d / "palette.png")
    (d / "zero.jpg").write_bytes(b"")
    (d / "text.png").write_text("this is not an image")
    full = (d / "rgb.jpg").read_bytes()
    (d / "truncated.jpg").write_bytes(full[: len(full) // 2])
    return d


@pytest.mark.parametrize("name", ["grey.png", "rgb.jpg", "rgba.png", "cmyk.jpg", "deep16.png", "palette.png"])
@pytest.mark.parametrize("grey", [True, False])
def test_every_colour_mode_converts(files, name, grey):
    arr = load_image(files / name, grey=grey, size=16)
    assert arr.dtype == np.uint8 and arr.shape == ((16, 16) if grey else (16, 16, 3))


def test_sixteen_bit_images_use_their_full_range(files):
    arr = load_image(files / "deep16.png", grey=True)
    assert arr.min() == 0 and arr.max() == 255


@pytest.mark.parametrize("name, reason", [("zero.jpg", "empty file (0 bytes)"),
                                          ("text.png", "not an image"),
                                          ("truncated.jpg", "cannot decode image")])
def test_unreadable_files_name_file_and_reason(files, name, reason):
    with pytest.raises(ImageReadError) as err:
        load_image(files / name, grey=False, size=16)
    assert str(err.value).startswith(str(files / name)) and reason in str(err.value)


def test_huge_image_is_reported(files, monkeypatch):
    monkeypatch.setattr(cache_mod, "MAX_PIXELS", 1000)
    with pytest.raises(ImageReadError, match="image too large .*2,500 pixels"):
        load_image(files / "rgb.jpg", grey=False)


def test_cache_reports_and_skips_bad_files_and_is_reused(files, tmp_path):
    paths = sorted(str(p) for p in files.iterdir())
    first = build_cache(paths, 16, grey=True, cache_dir=tmp_path / "c", workers=2, progress=False)
    bad = {u["path"].rsplit("/", 1)[-1] for u in first.unreadable}
    assert bad == {"zero.jpg", "text.png", "truncated.jpg"}
    assert first.images.shape == (6, 1, 16, 16) and len(first.paths) == 6
    info = dict(zip([p.rsplit("/", 1)[-1] for p in first.paths], first.file_info))
    assert info["rgb.jpg"][:4] == (50, 50, "RGB", "JPEG") and info["rgb.jpg"][4] == 95  # saved at quality 95
    # second call: loaded from the file, not decoded again (decoding would fail: it is patched away)
    again = build_cache(paths, 16, grey=True, cache_dir=tmp_path / "c", progress=False)
    assert again.file == first.file and np.array_equal(again.images, first.images)
    # another size or colour mode is another cache
    other = build_cache(paths, 8, grey=False, cache_dir=tmp_path / "c", workers=1, progress=False)
    assert other.file != first.file and other.images.shape == (6, 3, 8, 8)
    # rows follow the requested paths
    rows = first.rows([p for p in paths if p.endswith("rgb.jpg")])
    assert first.paths[rows[0]].endswith("rgb.jpg")
    with pytest.raises(KeyError, match="zero.jpg: not in the image cache"):
        first.rows([str(files / "zero.jpg")])


def test_changed_file_content_builds_a_new_cache(files, tmp_path):
    paths = [str(files / "grey.png")]
    a = build_cache(paths, 16, grey=True, cache_dir=tmp_path / "c", progress=False)
    Image.fromarray(np.zeros((40, 30), np.uint8)).save(files / "grey.png")
    b = build_cache(paths, 16, grey=True, cache_dir=tmp_path / "c", progress=False)
    assert a.file != b.file and b.images.max() == 0


def test_a_copy_of_a_dataset_in_another_folder_loads_with_its_own_paths(tmp_path):
    """The cache is keyed by content, so two copies share one cache file; each run must get its own paths
    back (a run on the copy made after the original used to fail in notebook 02: 'not in the image cache')."""
    from xai_helpers.config import resolve_params
    from xai_helpers.steps import load_prepared, prepare_data

    runs = {}
    for name in ("original", "copy"):
        params = resolve_params({"run_dir": str(tmp_path / f"run_{name}"), "data_root": str(tmp_path / name),
                                 "synthetic_per_class": 4, "folds": 2})
        prepare_data(params, progress=False)
        runs[name] = params
    for name, params in runs.items():
        data = load_prepared(params, progress=False)
        assert all(p.startswith(str(tmp_path / name)) for p in data.splits["path"])
    a, b = (load_prepared(runs[n], progress=False) for n in ("original", "copy"))
    assert a.info["cache_file"] == b.info["cache_file"] and np.array_equal(a.images, b.images)


def test_cache_is_a_memory_map_whose_rows_match_the_decoded_files(files, tmp_path):
    """Built chunk by chunk into the file (unreadable files in between shift the rows) and read back
    as a read-only memory map: each row is exactly what load_image gives for its path."""
    paths = sorted(str(p) for p in files.iterdir())
    for workers in (1, 2):
        cache = build_cache(paths, 16, grey=False, cache_dir=tmp_path / f"c{workers}", workers=workers,
                            progress=False)
        loaded = cache_mod.ImageCache.load(cache.file)
        for c in (cache, loaded):
            assert isinstance(c.images, np.memmap) and not c.images.flags.writeable
            assert c.images.shape == (6, 3, 16, 16)
            for row, path in enumerate(c.paths):
                assert np.array_equal(c.images[row], load_image(path, grey=False, size=16).transpose(2, 0, 1)), path
    assert not list((tmp_path / "c2").glob("*.tmp*")), "the temporary file is renamed, not left behind"


def test_image_rows_reads_the_rows_asked_for_in_their_order(tmp_path):
    base = np.lib.format.open_memmap(tmp_path / "a.npy", mode="w+", dtype=np.uint8, shape=(10, 1, 2, 2))
    base[:] = np.arange(10, dtype=np.uint8)[:, None, None, None]
    base.flush()
    base = np.load(tmp_path / "a.npy", mmap_mode="r")
    rows = np.array([7, 2, 9, 2, 0])
    view = cache_mod.images_for_rows(base, rows)
    assert isinstance(view, cache_mod.ImageRows) and view.shape == (5, 1, 2, 2) and len(view) == 5
    assert np.array_equal(np.asarray(view), base[rows])
    assert np.array_equal(view[np.array([4, 0, 1])], base[rows[[4, 0, 1]]])
    assert np.array_equal(view[1:3], base[rows[1:3]]) and np.array_equal(view[-1], base[0])
    assert cache_mod.images_for_rows(base, np.arange(10)) is base
    with pytest.raises(TypeError, match="index rows only"):
        view[0, 0]


def test_batches_from_a_memory_map_view_equal_batches_from_memory(tmp_path):
    import torch

    from xai_helpers.inference import BatchPipeline

    rng = np.random.default_rng(0)
    arr = rng.integers(0, 255, (12, 3, 8, 8), dtype=np.uint8)
    np.save(tmp_path / "a.npy", arr)
    rows = rng.permutation(12)[:9]
    view = cache_mod.images_for_rows(np.load(tmp_path / "a.npy", mmap_mode="r"), rows)
    ask = torch.tensor([8, 0, 3, 3])
    a = BatchPipeline(view, torch.device("cpu")).batch(ask)
    b = BatchPipeline(arr[rows], torch.device("cpu")).batch(ask)
    assert torch.equal(a, b)


@pytest.mark.parametrize("mode, expected", [
    # a 40x20 image: left half black, right half white; a white dot marks the centre column
    ("squash", {"left": 0, "right": 255, "top_row_mean": 127.5}),
    ("center_crop", {"left": 0, "right": 255, "top_row_mean": 127.5}),
    ("pad", {"left": 0, "right": 255, "top_row_mean": 0.0}),
])
def test_resize_modes_make_non_square_images_square_as_named(tmp_path, mode, expected):
    arr = np.zeros((20, 40), np.uint8)
    arr[:, 20:] = 255
    Image.fromarray(arr).save(tmp_path / "wide.png")
    out = load_image(tmp_path / "wide.png", grey=True, size=20, resize_mode=mode)
    assert out.shape == (20, 20)
    assert out[10, 0] == expected["left"] and out[10, -1] == expected["right"]
    if mode == "pad":  # black bands above and below: the 40x20 image sits in the middle of a 40x40 square
        assert out[:4].max() == 0 and out[-4:].max() == 0 and out[10, 15] == 255
    else:
        assert out[0].mean() == pytest.approx(expected["top_row_mean"], abs=13)
    if mode == "center_crop":  # the central 20x20 square: columns 10..29, so half black, half white, unscaled
        assert np.array_equal(out, arr[:, 10:30])


def test_resize_mode_is_part_of_the_cache_key_and_checked(tmp_path):
    p = tmp_path / "tall.png"
    Image.fromarray(np.tile(np.arange(0, 250, 5, dtype=np.uint8)[:, None], (1, 10))).save(p)  # 50 x 10
    caches = {m: build_cache([str(p)], 10, grey=True, cache_dir=tmp_path / "c", progress=False, resize_mode=m)
              for m in cache_mod.RESIZE_MODES}
    assert len({c.file for c in caches.values()}) == 3
    assert not np.array_equal(caches["squash"].images, caches["center_crop"].images)
    with pytest.raises(ValueError, match="resize_mode: unknown value 'stretch'"):
        build_cache([str(p)], 10, grey=True, cache_dir=tmp_path / "c", progress=False, resize_mode="stretch")


def test_resize_mode_is_a_checked_parameter():
    from xai_helpers.config import ParameterError, resolve_params

    assert resolve_params({"resize_mode": "pad"})["resize_mode"] == "pad"
    with pytest.raises(ParameterError, match="resize_mode: unknown value 'crop'; accepted values: squash, "
                                             "center_crop, pad"):
        resolve_params({"resize_mode": "crop"})
