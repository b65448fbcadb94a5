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


def _real_slices(n: int = 4, size: int = 64) -> torch.Tensor:
    """``n`` Figshare MRI slices (dark background, as the study's brain data), normalised as the training pipeline."""
    import numpy as np
    from PIL import Image

    from tests.conftest import shared_dataset
    from xai_helpers.models import IMAGENET_MEAN, IMAGENET_STD

    root = shared_dataset("brain_tumor_figshare") / "images"
    files = [sorted((root / c).iterdir())[k] for c in ("glioma", "meningioma", "pituitary") for k in range(2)][:n]
    images = np.stack([np.asarray(Image.open(f).convert("RGB").resize((size, size)), np.float32) / 255 for f in files])
    x = torch.from_numpy(images).permute(0, 3, 1, 2)
    return (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_offered_target_layer_is_post_activation_on_real_images_or_flagged(name):
    """GradCAM++ and XGradCAM assume A >= 0. Every default, comparable and offered layer's output respects its
    declared lower bound on real MRI slices (an untrained model, seeded, and the same with its BatchNorms in training
    mode, where the batch's own statistics normalise); the layers the project used before (DenseNet121's dense blocks,
    EfficientNet-B0's MBConv stages) do go negative, which is why they are no longer offered."""
    from xai_helpers.models import (ACTIVATION_LOWER_BOUNDS, CAM_LAYER_CHOICES, comparable_layer, layer_activation)

    torch.manual_seed(0)
    model = build_model(name, 3)
    x = _real_slices()
    layers = set(CAM_LAYER_CHOICES[name]) | {DEFAULT_TARGET_LAYERS[name]}
    layers |= {comparable_layer(name, size, "resnet50", ref) for size in (64, 224) for ref in ("layer2", "layer4")}
    signed_before = {"densenet121": ["features.denseblock2", "features.denseblock4"],
                     "efficientnet_b0": ["features.3", "features.7"]}.get(name, [])
    minima: dict[str, float] = {}
    handles = [get_layer(model, layer).register_forward_hook(
        lambda m, i, o, layer=layer: minima.__setitem__(layer, min(minima.get(layer, float("inf")), float(o.min()))))
        for layer in sorted(layers | set(signed_before))]
    with torch.no_grad():
        model.eval()(x)
        model.train()(x)
    for h in handles:
        h.remove()
    for layer in layers:
        kind = layer_activation(name, layer)
        assert kind in ("relu", "silu"), (name, layer, kind)
        assert minima[layer] >= ACTIVATION_LOWER_BOUNDS[kind] - 1e-6, (name, layer, minima[layer])
    for layer in signed_before:
        assert layer_activation(name, layer) == "signed"
        assert minima[layer] < ACTIVATION_LOWER_BOUNDS["silu"], (name, layer, minima[layer])


def test_densenet_with_its_last_relu_as_a_module_computes_torchvisions_function():
    torch.manual_seed(0)
    ours = build_model("densenet121", 3).eval()
    reference = torchvision.models.densenet121(num_classes=3).eval()
    reference.load_state_dict(ours.state_dict())  # the same keys: a ReLU has no state
    x = _real_slices(2)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x))
