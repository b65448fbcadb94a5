"""The single-pass engine against pytorch-grad-cam 1.5 on random inputs, for each of the four CNNs."""
import gc

import numpy as np
import pytest
import pytorch_grad_cam as pgc
import torch
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection_with_sign_correction

from xai_helpers.cams import (LayerModifiedInPlaceError, compute_cams,
                              forward_with_layer, resolve_target_layer, scale_maps)
from xai_helpers.models import DEFAULT_TARGET_LAYERS, MODEL_NAMES, build_model

LIBRARY = {"gradcam": pgc.GradCAM, "gradcam++": pgc.GradCAMPlusPlus, "xgradcam": pgc.XGradCAM,
           "eigengradcam": pgc.EigenGradCAM, "layercam": pgc.LayerCAM}


def _library(model, layer, x, targets, cls):
    with cls(model=model, target_layers=[layer]) as cam:
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in targets])


@pytest.fixture(scope="module", params=MODEL_NAMES)
def net(request):
    torch.manual_seed(0)
    model = build_model(request.param, 3)
    # a training-like state, so BatchNorm statistics are not the identity: every running mean and
    # variance is estimated from batches of the input distribution (as a trained model's are)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for b in bns:
        b.reset_running_stats()
        b.momentum = None  # cumulative average over the batches below
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(4, 3, 96, 96))
    model.eval()
    x = torch.randn(3, 3, 96, 96)
    return request.param, model, x


def test_fixture_batchnorm_statistics_are_not_the_identity(net):
    _, model, _ = net
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:  # VGG16 has no BatchNorm
        return
    assert all(not torch.allclose(b.running_var, torch.ones_like(b.running_var)) for b in bns)


def test_maps_equal_the_library(net):
    """All five study methods, pytorch-grad-cam's maps within 1e-6, no sign allowance.

    Both run on a float64 copy of the model: in float32 the per-image min-max scaling amplifies the
    rounding of a sum over ~1,000 channels, summed in another order by numpy and by torch (up to
    3e-5 on DenseNet121 and EfficientNet-B0 with realistic BatchNorm statistics), which would hide
    a real difference in the formulas.
    """
    import copy

    name, model, x = net
    model64, x64 = copy.deepcopy(model).double(), x.double()
    targets = [2, 0, 1]
    maps, probs = compute_cams(model64, x64, list(LIBRARY), targets=targets)
    layer = model64.get_submodule(DEFAULT_TARGET_LAYERS[name])
    for method, cls in LIBRARY.items():
        ref = _library(model64, layer, x64, targets, cls)
        assert maps[method].shape == (3, 96, 96)
        np.testing.assert_allclose(maps[method], ref, atol=1e-6, err_msg=f"{name} {method}")
    assert probs.shape == (3, 3) and np.allclose(probs.sum(1), 1, atol=1e-5)


def test_eigengradcam_equals_the_library_in_float32(net):
    """The study's EigenGradCAM is the library's map as it runs (float32 SVD, its sign), on every CNN."""
    name, model, x = net
    targets = [1, 2, 0]
    ours, _ = compute_cams(model, x, ["eigengradcam"], targets=targets)
    ref = _library(model, model.get_submodule(DEFAULT_TARGET_LAYERS[name]), x, targets, pgc.EigenGradCAM)
    np.testing.assert_allclose(ours["eigengradcam"], ref, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("layer_name", ["layer2", "layer3", "layer4"])
def test_eigengradcam_equals_the_library_on_resnet50_layers(layer_name):
    torch.manual_seed(6)
    model = build_model("resnet50", 3).eval()
    x = torch.randn(4, 3, 96, 96)
    targets = [0, 1, 2, 1]
    ours, _ = compute_cams(model, x, ["eigengradcam"], target_layer=layer_name, targets=targets)
    ref = _library(model, model.get_submodule(layer_name), x, targets, pgc.EigenGradCAM)
    np.testing.assert_allclose(ours["eigengradcam"], ref, atol=1e-5, err_msg=layer_name)


def test_eigengradcam_signed_follows_the_library_sign_correction(net):
    name, model, x = net
    targets = [1, 1, 0]
    layer = model.get_submodule(DEFAULT_TARGET_LAYERS[name])
    signed, _ = compute_cams(model, x, ["eigengradcam_signed"], targets=targets)
    A, G, _, _ = forward_with_layer(model, x, layer, torch.tensor(targets))
    lib = get_2d_projection_with_sign_correction((G * A).numpy())
    lib_scaled = scale_maps(torch.from_numpy(lib).clamp(min=0), (96, 96)).numpy()
    np.testing.assert_allclose(signed["eigengradcam_signed"], lib_scaled, atol=1e-5)


def test_predicted_class_is_the_default_target():
    torch.manual_seed(1)
    model = build_model("resnet50", 4).eval()
    x = torch.randn(2, 3, 64, 64)
    maps, probs = compute_cams(model, x, ["gradcam"], target_layer="layer3")
    explicit, _ = compute_cams(model, x, ["gradcam"], target_layer="layer3", targets=probs.argmax(1))
    np.testing.assert_array_equal(maps["gradcam"], explicit["gradcam"])
    other, _ = compute_cams(model, x, ["gradcam"], target_layer="layer3", targets=(probs.argmax(1) + 1) % 4)
    assert not np.allclose(other["gradcam"], maps["gradcam"])


def test_batches_give_the_same_maps_as_one_pass():
    torch.manual_seed(2)
    model = build_model("resnet50", 3).eval()
    x = torch.randn(5, 3, 64, 64)
    a, _ = compute_cams(model, x, ["gradcam++", "layercam"], target_layer="layer2", batch_size=2)
    b, _ = compute_cams(model, x, ["gradcam++", "layercam"], target_layer="layer2", batch_size=5)
    for m in a:
        np.testing.assert_allclose(a[m], b[m], atol=1e-6)


def test_gradcam_equals_xgradcam_at_resnet50_last_block():
    torch.manual_seed(3)
    model = build_model("resnet50", 3).eval()
    x = torch.randn(2, 3, 96, 96)
    last, _ = compute_cams(model, x, ["gradcam", "xgradcam"], target_layer="layer4")
    assert np.abs(last["gradcam"] - last["xgradcam"]).max() < 1e-5
    early, _ = compute_cams(model, x, ["gradcam", "xgradcam"], target_layer="layer2")
    assert np.abs(early["gradcam"] - early["xgradcam"]).max() > 1e-3


def test_delegated_library_method():
    torch.manual_seed(4)
    model = build_model("resnet50", 3).eval()
    x = torch.randn(2, 3, 64, 64)
    maps, _ = compute_cams(model, x, ["hirescam", "gradcam"], target_layer="layer3", targets=[0, 1])
    ref = _library(model, model.layer3, x, [0, 1], pgc.HiResCAM)
    np.testing.assert_allclose(maps["hirescam"], ref, atol=1e-6)


def test_hooks_removed_and_no_growth_over_200_calls():
    """A leak of even one tensor per call would show as 200 more live tensors (1000 calls cost 15 s on a 2-core
    AVX2-only CPU and find nothing more)."""
    torch.manual_seed(5)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 3))
    x = torch.randn(2, 3, 16, 16)

    def live_tensors():
        gc.collect()
        return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))

    compute_cams(model, x, target_layer="2")
    before = live_tensors()
    for _ in range(200):
        compute_cams(model, x, target_layer="2")
    assert live_tensors() <= before
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())
    assert all(p.grad is None for p in model.parameters())  # gradients only down to the layer


def test_layer_modified_in_place_is_refused():
    model = build_model("vgg16", 3).eval()
    with pytest.raises(LayerModifiedInPlaceError, match="modified in place later"):
        compute_cams(model, torch.randn(1, 3, 64, 64), ["gradcam"], target_layer="features.28")
    assert not model.features[28]._forward_hooks


def test_bad_arguments():
    model = build_model("resnet50", 3).eval()
    x = torch.randn(2, 3, 64, 64)
    with pytest.raises(ValueError, match="methods: unknown method"):
        compute_cams(model, x, ["gradcam", "coolcam"])
    with pytest.raises(ValueError, match=r"targets: expected one class index per image \(2\)"):
        compute_cams(model, x, targets=[0])
    with pytest.raises(ValueError, match="cam_layer: model has no layer 'layer7'"):
        compute_cams(model, x, target_layer="layer7")
    assert resolve_target_layer(model, None)[1] == "layer4"


def test_register_method_refuses_a_taken_name_and_a_new_method_runs_in_the_single_pass():
    from xai_helpers.cams import available_methods, register_method, unregister_method

    with pytest.raises(ValueError, match="'gradcam' is already registered"):
        register_method("gradcam")
    with pytest.raises(ValueError, match="'scorecam' is already registered"):
        register_method("scorecam")  # a library method's name is taken too

    @register_method("gradient_sum")
    def gradient_sum(A, G):
        return G.sum(dim=1)

    try:
        torch.manual_seed(7)
        model = build_model("resnet50", 3).eval()
        maps, _ = compute_cams(model, torch.randn(2, 3, 64, 64), ["gradient_sum", "gradcam"], target_layer="layer3")
        assert maps["gradient_sum"].shape == (2, 64, 64) and not np.allclose(maps["gradient_sum"], maps["gradcam"])
    finally:
        unregister_method("gradient_sum")
    assert "gradient_sum" not in available_methods()
    with pytest.raises(ValueError, match="built-in"):
        unregister_method("gradcam")


def test_channel_weights_are_pytorch_grad_cams_weights():
    """GradCAM's, GradCAM++'s and XGradCAM's channel weights equal the library's get_cam_weights on the same A and
    G; EigenGradCAM's component projects the centred G⊙A onto the library's map; LayerCAM's is the mean ReLU(G)."""
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    from xai_helpers.cams import channel_weights

    gen = torch.Generator().manual_seed(0)
    A = torch.rand(3, 16, 5, 5, generator=gen) * (torch.rand(3, 16, 5, 5, generator=gen) > 0.3)
    G = torch.randn(3, 16, 5, 5, generator=gen) / 25
    ours = channel_weights(A, G)
    a, g = A.numpy(), G.numpy()
    for method, cls in (("gradcam", pgc.GradCAM), ("gradcam++", pgc.GradCAMPlusPlus), ("xgradcam", pgc.XGradCAM)):
        theirs = cls.get_cam_weights(None, None, None, None, a, g)
        np.testing.assert_allclose(ours[method], theirs, rtol=1e-4, atol=1e-7, err_msg=method)
    ga = (G * A).numpy()
    centred = ga.reshape(3, 16, 25).transpose(0, 2, 1) - ga.reshape(3, 16, 25).transpose(0, 2, 1).mean(axis=1,
                                                                                                       keepdims=True)
    projected = np.einsum("bpc,bc->bp", centred, ours["eigengradcam"]).reshape(3, 5, 5)
    np.testing.assert_allclose(projected, get_2d_projection(ga), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ours["layercam"], np.maximum(g, 0).mean(axis=(2, 3)), rtol=1e-6)
    assert (ours["gradcam++"] >= 0).all() and not (ours["gradcam"] >= 0).all()  # only positive evidence in ++
