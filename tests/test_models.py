import pytest
import torch
import torchvision

from xai_helpers.models import (DEFAULT_TARGET_LAYERS, MODEL_NAMES, CheckpointMismatchError, WeightsUnavailableError,
                                build_model, check_image_size, feature_map_size, get_layer, imagenet_weights_file,
                                set_backbone_trainable)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_head_replaced_and_default_layer_exists(name):
    model = build_model(name, 5)
    out = model.eval()(torch.randn(1, 3, 64, 64))
    assert out.shape == (1, 5)
    get_layer(model, DEFAULT_TARGET_LAYERS[name])
    assert feature_map_size(name, 224) == {"resnet50": (7, 7), "densenet121": (7, 7), "vgg16": (14, 14),
                                           "efficientnet_b0": (7, 7)}[name]


def test_feature_map_sizes_per_layer():
    assert feature_map_size("resnet50", 64, "layer2") == (8, 8)
    assert feature_map_size("resnet50", 96, "layer3") == (6, 6)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_too_small_image_is_refused(name):
    check_image_size(name, 64)
    with pytest.raises(ValueError, match=f"image_size: 32 px gives {name} a last feature map of 1x1"):
        check_image_size(name, 32)


def test_freezing_leaves_only_the_head_trainable():
    model = build_model("resnet50", 3)
    set_backbone_trainable(model, "resnet50", False)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["fc.weight", "fc.bias"]
    set_backbone_trainable(model, "resnet50", True)
    assert all(p.requires_grad for p in model.parameters())


def test_imagenet_offline_says_which_file_to_put_where(tmp_path, monkeypatch):
    import torch.hub

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # whatever set_dir ran before, this test's folder only
    monkeypatch.setattr(torch.hub, "download_url_to_file",
                        lambda *a, **k: (_ for _ in ()).throw(OSError("Network is unreachable")))
    target = imagenet_weights_file("efficientnet_b0")
    assert target.is_relative_to(tmp_path)  # never the user's own hub folder (the test writes random weights)
    with pytest.raises(WeightsUnavailableError) as err:
        build_model("efficientnet_b0", 3, "imagenet")
    assert str(target) in str(err.value) and "efficientnet_b0_rwightman" in str(err.value)
    # a file put there is used without any download (here: torchvision's architecture, random weights)
    target.parent.mkdir(parents=True, exist_ok=True)
    reference = torchvision.models.efficientnet_b0()
    torch.save(reference.state_dict(), target)
    model = build_model("efficientnet_b0", 3, "imagenet")
    assert torch.equal(model.features[0][0].weight, reference.features[0][0].weight)
    assert model.classifier[1].out_features == 3


def test_checkpoint_mismatches_are_clear(tmp_path):
    model = build_model("resnet50", 3)
    ckpt = {"arch": "resnet50", "class_names": ["a", "b", "c"], "model_state": model.state_dict()}
    torch.save(ckpt, tmp_path / "r.pt")
    loaded = build_model("resnet50", 3, tmp_path / "r.pt")
    assert torch.equal(loaded.fc.weight, model.fc.weight)
    with pytest.raises(CheckpointMismatchError, match="checkpoint has 3 classes .*the model 4"):
        build_model("resnet50", 4, tmp_path / "r.pt")
    with pytest.raises(CheckpointMismatchError, match="checkpoint is a resnet50, not a densenet121"):
        build_model("densenet121", 3, tmp_path / "r.pt")
    torch.save(model.state_dict(), tmp_path / "plain.pt")  # a plain state dict, other architecture
    with pytest.raises(CheckpointMismatchError, match="does not fit efficientnet_b0"):
        build_model("efficientnet_b0", 3, tmp_path / "plain.pt")
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(CheckpointMismatchError, match="junk.pt: not a loadable checkpoint"):
        build_model("resnet50", 3, tmp_path / "junk.pt")
