import pytest

from xai_helpers.config import DEFAULTS, PROFILES, ParameterError, profile_params, resolve_params


def test_defaults_resolve_and_paths_become_absolute():
    p = resolve_params({})
    assert p["models"] == ["resnet50", "densenet121", "vgg16", "efficientnet_b0"]
    assert p["run_dir"].startswith("/") and p["data_root"].startswith("/")
    assert p["interactive"] is True


@pytest.mark.parametrize("values, name, accepted", [
    ({"dataset": "brain"}, "dataset", "brain_tumor_mri"),
    ({"models": ["resnet50", "alexnet"]}, "models", "efficientnet_b0"),
    ({"cam_model": "vit"}, "cam_model", "densenet121"),
    ({"cam_methods": ["gradcam", "magic"]}, "cam_methods", "layercam"),
    ({"device": "tpu"}, "device", "cuda"),
    ({"lr": {"alexnet": 0.1}}, "lr", "vgg16"),
    ({"batch_size": {"alexnet": 8}}, "batch_size", "vgg16"),
    ({"precision": "fp16"}, "precision", "fp32"),
])
def test_broken_parameter_names_parameter_and_accepted_values(values, name, accepted):
    with pytest.raises(ParameterError) as err:
        resolve_params(values)
    msg = str(err.value)
    assert msg.startswith(f"{name}:") and accepted in msg


def test_missing_data_root_is_named(tmp_path):
    with pytest.raises(ParameterError, match=r"^data_root: folder .*missing_folder does not exist"):
        resolve_params({"dataset": "brain_tumor_mri", "data_root": str(tmp_path / "missing_folder")})


def test_unknown_parameter_lists_accepted_ones():
    with pytest.raises(ParameterError, match="unknown parameter.*epoch.*accepted parameters: dataset"):
        resolve_params({"epoch": 3})


def test_image_size_too_small_for_the_cnns():
    with pytest.raises(ParameterError, match=r"image_size: 32 px gives resnet50 a last feature map of 1x1"):
        resolve_params({"image_size": 32})


def test_cam_layer_must_exist():
    with pytest.raises(ParameterError, match="cam_layer: model has no layer 'layer9'"):
        resolve_params({"cam_layer": "layer9"})


def test_lr_mapping_needs_default_or_every_model():
    assert resolve_params({"lr": {"default": 0.01, "vgg16": 0.001}})["lr"] == {"default": 0.01, "vgg16": 0.001}
    assert resolve_params({"lr": 0.01})["lr"] == 0.01
    with pytest.raises(ParameterError, match="lr: the mapping"):
        resolve_params({"lr": {"vgg16": 0.001}})


def test_epochs_may_be_set_per_model():
    p = resolve_params({"models": ["resnet50", "vgg16"], "epochs": {"default": 8, "vgg16": 4}})
    assert p["epochs"] == {"default": 8, "vgg16": 4}
    with pytest.raises(ParameterError, match="epochs: expected an integer >= 1, got 0"):
        resolve_params({"epochs": {"default": 8, "vgg16": 0}})
    with pytest.raises(ParameterError, match="epochs: the mapping"):
        resolve_params({"models": ["resnet50", "vgg16"], "epochs": {"vgg16": 4}})
    with pytest.raises(ParameterError, match="epochs: unknown value 'alexnet'"):
        resolve_params({"epochs": {"default": 8, "alexnet": 4}})


def test_batch_size_and_warmup_may_be_set_per_model():
    p = resolve_params({"batch_size": {"default": 32, "vgg16": 16}, "warmup_epochs": 1})
    assert p["batch_size"] == {"default": 32, "vgg16": 16} and p["warmup_epochs"] == 1
    with pytest.raises(ParameterError, match="batch_size: the mapping"):
        resolve_params({"models": ["resnet50", "vgg16"], "batch_size": {"vgg16": 16}})
    with pytest.raises(ParameterError, match="batch_size"):
        resolve_params({"batch_size": {"default": 1}})  # BatchNorm needs two images per batch


def test_profiles_only_use_known_parameters_and_validate():
    for name, overrides in PROFILES.items():
        assert set(overrides) <= set(DEFAULTS), name
        resolve_params(profile_params(name))
    quick = profile_params("quick")
    assert quick["folds"] >= 2 and profile_params("demo")["folds"] >= 3
    with pytest.raises(ParameterError, match="profile: unknown profile 'fast'"):
        profile_params("fast")


def test_the_parameter_table_is_the_one_place_a_parameter_is_described():
    from pathlib import Path

    from xai_helpers.config import PARAMETERS, STEP_PARAMETERS, parameter_table_markdown

    running = (Path(__file__).resolve().parents[1] / "docs" / "running.md").read_text()
    assert parameter_table_markdown() in running  # the documented table is generated from PARAMETERS
    assert [p.name for p in PARAMETERS] == list(DEFAULTS) and all(p.doc for p in PARAMETERS)
    # every parameter a step records is read by the report from that step
    assert sorted(n for names in STEP_PARAMETERS.values() for n in names) == sorted(
        p.name for p in PARAMETERS if p.step != "run")


def test_the_prepared_data_check_names_the_parameter_and_both_values():
    from xai_helpers.config import check_against_prepared

    prepared = {"dataset": "synthetic", "data_root": "/d", "image_size": 64, "resize_mode": "squash", "folds": 3}
    ok = {**prepared, "models": ["vgg16"], "epochs": 9}  # not fixed by the data
    check_against_prepared(ok, prepared, "runs/x")
    check_against_prepared({**ok, "dataset": "auto"}, prepared, "runs/x")
    for name, other in (("image_size", 96), ("folds", 5), ("resize_mode", "pad"), ("data_root", "/e"),
                        ("dataset", "imagefolder")):
        with pytest.raises(ParameterError, match=f"^{name}: the run folder runs/x holds data prepared with {name}="):
            check_against_prepared({**ok, name: other}, prepared, "runs/x")
