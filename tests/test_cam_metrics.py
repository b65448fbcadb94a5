import numpy as np
import pandas as pd
import pytest
import torch
from pytorch_grad_cam.metrics.cam_mult_image import CamMultImageConfidenceChange, DropInConfidence, IncreaseInConfidence
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

from pytorch_grad_cam.metrics.perturbation_confidence import PerturbationConfidenceMetric
from torchvision.transforms.v2.functional import gaussian_blur as tv_gaussian_blur

from xai_helpers.blur import kernel_size
from xai_helpers.cam_metrics import (FILLS, aggregate_per_class, confidence_metrics, deletion_insertion,
                                     fill_sensitivity, localisation_metrics)
from xai_helpers.cams import compute_cams
from xai_helpers.models import IMAGENET_MEAN, IMAGENET_STD, build_model


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = build_model("resnet50", 3).eval()
    x = torch.randn(4, 3, 64, 64)
    maps, probs = compute_cams(model, x, ["gradcam", "layercam"], target_layer="layer2")
    return model, x, maps, probs.argmax(1)


def test_confidence_increase_is_the_librarys_softmax_cam_mult_change(setup):
    model, x, maps, t = setup
    ours = confidence_metrics(model, x, maps, t)
    targets = [ClassifierOutputSoftmaxTarget(int(c)) for c in t]
    for m in maps:
        ref = CamMultImageConfidenceChange()(x, maps[m], targets, model)
        np.testing.assert_allclose(ours[m]["confidence_increase"], ref, atol=1e-6)


class _OnImages(torch.nn.Module):
    """The model as a function of the image in [0, 1] (normalisation inside), as Chattopadhay et al. see it."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, image):
        return self.model((image - self.mean) / self.std)


def test_average_drop_and_increase_multiply_the_image_not_the_tensor(setup):
    """Chattopadhay et al. (2018): the map masks the image in [0, 1]. The library's DropInConfidence and
    IncreaseInConfidence, applied to the image and a model that normalises inside, give the reference."""
    model, x, maps, t = setup
    ours = confidence_metrics(model, x, maps, t)
    image = x * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    on_images = _OnImages(model).eval()
    targets = [ClassifierOutputSoftmaxTarget(int(c)) for c in t]
    for m in maps:
        # the library's DropInConfidence is the absolute drop; Chattopadhay's is relative, x100
        drop = DropInConfidence()(image, maps[m], targets, on_images)
        np.testing.assert_allclose(ours[m]["average_drop_pct"], 100 * drop / ours[m]["score"], rtol=1e-4, atol=1e-4)
        inc = IncreaseInConfidence()(image, maps[m], targets, on_images)
        np.testing.assert_allclose(ours[m]["increase_in_confidence_pct"], 100 * inc)
        # and this differs from masking the normalised tensor (where 0 is the mean colour, not black)
        tensor_drop = DropInConfidence()(x, maps[m], targets, model)
        assert not np.allclose(100 * tensor_drop / ours[m]["score"], ours[m]["average_drop_pct"], atol=1e-3)


def _torchray_pointing(mask, point, tolerance):
    """TorchRay's ``PointingGame.evaluate`` (torchray/benchmark/pointing_game.py), in numpy: a hit when some
    mask pixel lies at squared distance strictly below ``tolerance**2`` from the point ``(u, v) = (x, y)``."""
    v, u = np.meshgrid((np.arange(mask.shape[0]) - point[1]) ** 2.0, (np.arange(mask.shape[1]) - point[0]) ** 2.0,
                       indexing="ij")
    return bool((mask & ((v + u) < tolerance ** 2)).any())


def test_pointing_game_is_torchrays_hit_test_at_our_tolerance():
    masks = np.zeros((3, 64, 64), bool)
    masks[:, 20:30, 20:30] = True
    maps = np.zeros((3, 64, 64))
    maps[0, 25, 33] = 1.0  # 4 px right of the mask: within 15 * 64 / 224 = 4.29 px
    maps[1, 25, 35] = 1.0  # 6 px away: outside
    maps[2, 33, 33] = 1.0  # 4 px diagonally both ways: sqrt(32) = 5.66 px, outside
    assert localisation_metrics(maps, masks)["pointing_game"].tolist() == [1.0, 0.0, 0.0]
    assert localisation_metrics(maps, masks, tolerance=0)["pointing_game"].tolist() == [0.0, 0.0, 0.0]
    # a distance equal to the tolerance is a miss (TorchRay: d² < tol²); before, 6 px at tolerance 6 was a hit
    assert localisation_metrics(maps, masks, tolerance=6)["pointing_game"].tolist() == [1.0, 0.0, 1.0]
    # at 224 px the tolerance is 15 pixels: 14 px is a hit, 15 px is not
    big_mask = np.zeros((1, 224, 224), bool)
    big_mask[0, 100:110, 100:110] = True
    peak = np.zeros((1, 224, 224))
    peak[0, 105, 123] = 1.0  # 14 px right of the mask
    assert localisation_metrics(peak, big_mask)["pointing_game"].tolist() == [1.0]
    peak[0, 105, 123], peak[0, 105, 124] = 0.0, 1.0  # 15 px
    assert localisation_metrics(peak, big_mask)["pointing_game"].tolist() == [0.0]
    # against TorchRay's formula on random masks, peaks and integer tolerances (boundaries included)
    rng = np.random.default_rng(0)
    for _ in range(200):
        mask = np.zeros((1, 32, 32), bool)
        y0, x0 = rng.integers(0, 28, 2)
        mask[0, y0:y0 + rng.integers(1, 5), x0:x0 + rng.integers(1, 5)] = True
        m = rng.random((1, 32, 32))
        tol = int(rng.integers(1, 12))
        py, px = np.unravel_index(m[0].argmax(), m[0].shape)
        expected = _torchray_pointing(mask[0], (px, py), tol)
        assert localisation_metrics(m, mask, tolerance=tol)["pointing_game"][0] == float(expected)


def test_a_constant_map_points_nowhere():
    # before: argmax of an all-zero map is pixel (0, 0), a hit whenever the mask touches that corner
    masks = np.zeros((2, 16, 16), bool)
    masks[:, :4, :4] = True
    flat = np.stack([np.zeros((16, 16)), np.full((16, 16), 0.7)])
    assert localisation_metrics(flat, masks)["pointing_game"].tolist() == [0.0, 0.0]


def test_deletion_insertion_equal_a_naive_loop(setup):
    model, x, maps, t = setup
    n = 8
    # distinct values, so that the ranking is the map's alone (ties: the next test)
    rng = np.random.default_rng(1)
    maps = {m: v + 1e-6 * rng.permutation(v.size).reshape(v.shape) / v.size for m, v in maps.items()}
    ours = deletion_insertion(model, x, maps, t, n_steps=n, blur_sigma=3.0)
    from xai_helpers.blur import gaussian_blur
    blurred = gaussian_blur(x, 3.0)
    for m, cam in maps.items():
        for i in range(len(x)):
            order = np.argsort(-cam[i].ravel(), kind="stable")
            dele, ins = [], []
            for k in range(n + 1):
                keep = np.zeros(64 * 64, bool)
                keep[order[: int(np.ceil(k / n * 64 * 64))]] = True
                top = torch.from_numpy(keep.reshape(64, 64)).float()
                with torch.no_grad():
                    dele.append(torch.softmax(model((x[i] * (1 - top))[None]), 1)[0, t[i]].item())
                    ins.append(torch.softmax(model((blurred[i] * (1 - top) + x[i] * top)[None]), 1)[0, t[i]].item())
            assert ours[m]["deletion_auc"][i] == pytest.approx(np.trapezoid(dele, dx=1 / n), abs=1e-5)
            assert ours[m]["insertion_auc"][i] == pytest.approx(np.trapezoid(ins, dx=1 / n), abs=1e-5)
            assert ours[m]["deletion_curve"][i][0] == pytest.approx(dele[0], abs=1e-5)


def test_share_rising_is_the_librarys_increase_in_confidence_on_the_same_perturbation(setup):
    """``confidence_rising`` is pytorch-grad-cam's ``IncreaseInConfidence`` on the normalised tensor times the map
    (the perturbation of the mean change), not Chattopadhay's black-fill one."""
    model, x, maps, t = setup
    ours = confidence_metrics(model, x, maps, t)
    targets = [ClassifierOutputSoftmaxTarget(int(c)) for c in t]
    for m in maps:
        np.testing.assert_array_equal(ours[m]["confidence_rising"], IncreaseInConfidence()(x, maps[m], targets, model))
        np.testing.assert_array_equal(ours[m]["confidence_rising"], (ours[m]["confidence_increase"] > 0) * 1.0)


def _filled_reference(x, fill):
    """What a removed pixel becomes, computed apart from the package: torchvision's blur, numpy's mean, 0 in [0, 1]."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    if fill == "imagenet_mean":  # the mean colour of ImageNet in [0, 1], normalised
        return ((mean - mean) / std).expand_as(x)
    if fill == "black":
        return ((torch.zeros_like(x) - mean) / std)
    if fill == "dataset_mean":
        colour = torch.from_numpy(np.asarray(x).mean(axis=(0, 2, 3))).float().view(1, 3, 1, 1)
        return colour.expand_as(x)
    sigma = x.shape[-1] / 10
    return tv_gaussian_blur(x, [kernel_size(sigma, x.shape[-1])] * 2, [sigma, sigma])


@pytest.mark.parametrize("fill", FILLS)
def test_the_fill_changes_confidence_and_deletion_as_an_independent_computation_says(setup, fill):
    model, x, maps, t = setup
    reference = _filled_reference(x, fill)
    targets = [ClassifierOutputSoftmaxTarget(int(c)) for c in t]
    ours = confidence_metrics(model, x, maps, t, fill=fill)
    for m in maps:
        # pytorch-grad-cam's perturbation-confidence machinery with our perturbation: x where kept, the fill elsewhere
        expected = np.concatenate([PerturbationConfidenceMetric(
            lambda tensor, cam, i=i: tensor * cam + reference[i] * (1 - cam))(x[i:i + 1], maps[m][i:i + 1],
                                                                            targets[i:i + 1], model)
            for i in range(len(x))])
        np.testing.assert_allclose(ours[m]["confidence_increase"], expected, atol=1e-5)
    if fill == "black":  # Chattopadhay's E = L o I is the black fill
        for m in maps:
            np.testing.assert_allclose(ours[m]["confidence_increase"],
                                       ours[m]["score_after_image"] - ours[m]["score"], atol=1e-5)
    # deletion: the top-k pixels replaced by the fill, by hand, at one step per quarter
    n = 4
    rng = np.random.default_rng(2)
    cam = maps["gradcam"] + 1e-6 * rng.permutation(maps["gradcam"].size).reshape(maps["gradcam"].shape) / 1e4
    ours_del = deletion_insertion(model, x, {"gradcam": cam}, t, n_steps=n, fill=fill)["gradcam"]
    for i in range(len(x)):
        order = np.argsort(-cam[i].ravel(), kind="stable")
        curve = []
        for k in range(n + 1):
            top = np.zeros(64 * 64, bool)
            top[order[: int(np.ceil(k / n * 64 * 64))]] = True
            top = torch.from_numpy(top.reshape(64, 64))
            perturbed = torch.where(top, reference[i], x[i])
            with torch.no_grad():
                curve.append(torch.softmax(model(perturbed[None]), 1)[0, t[i]].item())
        assert ours_del["deletion_auc"][i] == pytest.approx(np.trapezoid(curve, dx=1 / n), abs=1e-5)


class _SumOfPixels(torch.nn.Module):
    """Class 0's logit is the sum of the pixels: the score depends on which pixels are left, not where they are."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(4.0 / 32 / 32 / 3))

    def forward(self, x):
        s = self.scale * x.sum(dim=(1, 2, 3))
        return torch.stack([s, -s], dim=1)


def test_deletion_and_insertion_order_tied_pixels_at_random():
    """A map that is zero almost everywhere ties nearly every pixel. In raster order the top rows would be deleted
    first: an image whose evidence lies in its top half would lose it at once and its vertical flip last (AUCs about
    0.3 apart here). In a seeded random order, the image and its flip get the same AUC within sampling error."""
    x = torch.zeros(1, 3, 32, 32)
    x[:, :, :16] = 1.0  # the evidence is in the top half
    cam = np.zeros((1, 32, 32))
    cam[0, 15:17, 15:17] = 1.0  # 4 pixels rank first; the other 1020 tie at 0
    model = _SumOfPixels()
    up = deletion_insertion(model, x, {"m": cam}, [0], n_steps=16, seed=0)["m"]
    down = deletion_insertion(model, x.flip(-2), {"m": cam[:, ::-1].copy()}, [0], n_steps=16, seed=0)["m"]
    for key in ("deletion_auc", "insertion_auc"):
        assert abs(up[key][0] - down[key][0]) < 0.02, key
    # the raster order's AUCs, by hand, differ by much more: the test could fail
    def raster_deletion(img):
        order = np.argsort(-cam[0].ravel(), kind="stable")
        curve = []
        for k in range(17):
            keep = torch.ones(32 * 32)
            keep[order[: int(np.ceil(k / 16 * 32 * 32))]] = 0
            with torch.no_grad():
                curve.append(torch.softmax(model(img * keep.view(1, 1, 32, 32)), 1)[0, 0].item())
        return np.trapezoid(curve, dx=1 / 16)
    assert abs(raster_deletion(x) - raster_deletion(x.flip(-2))) > 0.1
    # the order is seeded: the same seed gives the same AUC, another seed a slightly different one
    again = deletion_insertion(model, x, {"m": cam}, [0], n_steps=16, seed=0)["m"]
    assert again["deletion_auc"][0] == up["deletion_auc"][0]


def test_fill_sensitivity_ranks_the_methods_for_each_fill(setup):
    model, x, maps, t = setup
    table = fill_sensitivity(model, x, maps, t, fills=("imagenet_mean", "black"), n_steps=4)
    assert table[["fill", "metric"]].values.tolist() == [["imagenet_mean", "confidence_increase"],
                                                         ["imagenet_mean", "deletion_auc"],
                                                         ["black", "confidence_increase"], ["black", "deletion_auc"]]
    black = confidence_metrics(model, x, maps, t, fill="black")
    row = table[(table["fill"] == "black") & (table["metric"] == "confidence_increase")].iloc[0]
    for m in maps:
        assert row[m] == pytest.approx(black[m]["confidence_increase"].mean())
    best = max(maps, key=lambda m: black[m]["confidence_increase"].mean())
    assert row["ranking"].split(" > ")[0] == best
    assert table.loc[table["fill"] == "imagenet_mean", "same_order"].all()
    assert (table["same_order"] == (table["kendall_tau"] == 1.0)).all()


def test_localisation_by_hand():
    maps = np.zeros((3, 4, 4))
    maps[0, 0, 0] = 1.0          # peak inside the mask
    maps[1, 3, 3] = 1.0          # peak outside
    maps[1, 0, 1] = 0.6
    maps[2] = 0.5                # flat map, empty mask
    masks = np.zeros((3, 4, 4), bool)
    masks[0, :2, :2] = masks[1, :2, :2] = True
    r = localisation_metrics(maps, masks)
    assert r["pointing_game"][:2].tolist() == [1.0, 0.0] and np.isnan(r["pointing_game"][2])
    assert r["energy_in_mask"][1] == pytest.approx(0.6 / 1.6)
    assert r["iou"][0] == pytest.approx(1 / 4) and r["iou"][1] == pytest.approx(1 / 5)
    with pytest.raises(ValueError, match="masks: shape"):
        localisation_metrics(maps, masks[:, :2])


def test_aggregate_counts_and_means():
    df = pd.DataFrame({"model": "m", "method": ["a", "a", "b", "b"], "class": ["x", "x", "x", "y"],
                       "confidence_increase": [0.1, 0.3, -0.1, 0.2], "pointing_game": [1, np.nan, 0, 1]})
    agg = aggregate_per_class(df).set_index(["method", "class"])
    assert agg.loc[("a", "x"), "n"] == 2 and agg.loc[("a", "x"), "confidence_increase"] == pytest.approx(0.2)
    assert agg.loc[("a", "x"), "n_pointing_game"] == 1 and agg.loc[("a", "x"), "pointing_game"] == 1


def test_road_equals_the_library_without_noise_on_maps_without_ties(setup):
    """On maps whose values are all distinct the library's percentile threshold removes exactly what
    our ranking removes, so the averages over symmetric percentiles agree."""
    from pytorch_grad_cam.metrics.perturbation_confidence import (PerturbationConfidenceMetric,
                                                                  RemoveLeastRelevantFirst, RemoveMostRelevantFirst)
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    from xai_helpers.cam_metrics import road

    model, x, maps, t = setup
    from scipy.stats import rankdata

    # the same ranking with every value distinct: ordinal ranks (ties, e.g. the ReLU's zeros, by position)
    maps = {m: np.stack([rankdata(v[i], method="ordinal").reshape(v[i].shape) / v[i].size for i in range(len(v))])
            .astype(np.float32) for m, v in maps.items()}
    assert all(len(np.unique(v[i])) == v[i].size for v in maps.values() for i in range(2))
    percentiles = (20, 80)
    ours = road(model, x[:2], {m: v[:2] for m, v in maps.items()}, t[:2], percentiles=percentiles, noise=0.0)
    targets = [ClassifierOutputSoftmaxTarget(int(c)) for c in t[:2]]
    for m, cam in maps.items():
        morf = np.mean([PerturbationConfidenceMetric(RemoveMostRelevantFirst(p, NoisyLinearImputer(noise=0)))(
            x[:2], cam[:2], targets, model) for p in percentiles], axis=0)
        lerf = np.mean([PerturbationConfidenceMetric(RemoveLeastRelevantFirst(p, NoisyLinearImputer(noise=0)))(
            x[:2], cam[:2], targets, model) for p in percentiles], axis=0)
        np.testing.assert_allclose(ours[m]["road_morf"], morf, atol=1e-5)
        np.testing.assert_allclose(ours[m]["road_lerf"], lerf, atol=1e-5)
        np.testing.assert_allclose(ours[m]["road_combined"], (lerf - morf) / 2, atol=1e-5)
    noisy_a = road(model, x[:1], {"gradcam": maps["gradcam"][:1]}, t[:1], percentiles=(50,), seed=3)
    noisy_b = road(model, x[:1], {"gradcam": maps["gradcam"][:1]}, t[:1], percentiles=(50,), seed=3)
    assert noisy_a["gradcam"]["road_morf"] == noisy_b["gradcam"]["road_morf"]  # seeded noise


def test_randomisation_check_spearman_and_cascade(setup):
    from scipy.stats import spearmanr

    from xai_helpers.cam_metrics import RANDOMISATION_CASCADE, randomisation_check, spearman_rows

    a = np.random.default_rng(0).random((3, 8, 8))
    b = a + np.random.default_rng(1).random((3, 8, 8))
    assert spearman_rows(a, b) == pytest.approx([spearmanr(a[i].ravel(), b[i].ravel())[0] for i in range(3)])
    model, x, maps, t = setup
    before = {k: v.clone() for k, v in model.state_dict().items()}
    df = randomisation_check(model, "resnet50", x[:2], ["gradcam", "layercam"], "layer2", t[:2])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the model is untouched
    assert df["step"].max() == len(RANDOMISATION_CASCADE["resnet50"]) and len(df) == 6 * 2 * 2
    assert df["spearman"].between(-1, 1).all()
    # fully randomised, the maps no longer match the trained model's
    assert (df[df.step == df.step.max()]["spearman"] < 0.99).all()


def test_spearman_of_constant_maps_is_defined():
    from xai_helpers.cam_metrics import spearman_rows

    a = np.random.default_rng(0).random((2, 4, 4))
    flat = np.zeros((2, 4, 4))
    assert spearman_rows(a, flat).tolist() == [0.0, 0.0]
    assert spearman_rows(flat, flat).tolist() == [1.0, 1.0]


def test_road_removes_exactly_p_percent_of_a_map_with_a_zero_plateau():
    from pytorch_grad_cam.metrics.perturbation_confidence import RemoveLeastRelevantFirst

    from xai_helpers.cam_metrics import ROAD_PERCENTILES, road_removal_masks

    rng = np.random.default_rng(0)
    cam = rng.random((20, 20))
    cam[rng.random((20, 20)) < 0.53] = 0.0  # a ReLU'd map: about 53 % zeros
    zeros = cam == 0
    masks = road_removal_masks(cam, ROAD_PERCENTILES, seed=1)
    for k, p in enumerate(ROAD_PERCENTILES):
        for order in ("morf", "lerf"):
            removed = masks[order][k]
            assert removed.sum() == round(p / 100 * 400), (order, p)
        # MoRF removes the most relevant pixels: nothing kept is more relevant than anything removed
        assert cam[masks["morf"][k]].min() >= cam[~masks["morf"][k]].max()
        assert cam[masks["lerf"][k]].max() <= cam[~masks["lerf"][k]].min()
    # the ties are broken by the seed, not by position
    other = road_removal_masks(cam, (10,), seed=2)["lerf"][0]
    assert not np.array_equal(other, masks["lerf"][0]) and other.sum() == masks["lerf"][0].sum()
    # the library's threshold (LeRF at 50 keeps 1 - map < its median) removes every tied zero at once: 53 %
    kept = RemoveLeastRelevantFirst(50, lambda img, m: m)(torch.zeros(1, 20, 20), torch.from_numpy(cam).float())
    assert (kept.numpy() == 0).mean() == zeros.mean() > 0.5


@pytest.mark.parametrize("arch", ["resnet50", "densenet121", "vgg16", "efficientnet_b0"])
def test_randomisation_cascade_reinitialises_every_parameter(arch):
    from xai_helpers.cam_metrics import RANDOMISATION_CASCADE, cascade_steps, cascading_randomisation

    torch.manual_seed(0)
    model = build_model(arch, 3)
    with torch.no_grad():  # a "trained" state: no parameter at its initial value (BatchNorm weights 1, biases 0)
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05 + 0.01)
    trained = {n: p.detach().clone() for n, p in model.named_parameters()}
    steps = cascade_steps(model, arch)
    assert len(steps) <= 10 and steps == RANDOMISATION_CASCADE[arch]
    last = None
    for last in cascading_randomisation(model, arch, seed=1):  # noqa: B007 - the loop runs the cascade to its end
        pass
    done, final = last
    assert len(done) == len(steps)
    unchanged = [n for n, p in final.named_parameters() if torch.equal(p, trained[n])]
    assert unchanged == []
    assert all(torch.equal(p, trained[n]) for n, p in model.named_parameters())  # the model itself is untouched
    # a cascade that forgot a module is refused
    broken = {**RANDOMISATION_CASCADE, arch: RANDOMISATION_CASCADE[arch][:-1]}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("xai_helpers.cam_metrics.RANDOMISATION_CASCADE", broken)
        with pytest.raises(ValueError, match="untouched"):
            cascade_steps(model, arch)


def test_mask_auroc_is_scikit_learns_roc_auc_of_the_pixels():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    maps = np.round(rng.random((6, 16, 16)), 1)  # rounded: ties, counted half as scikit-learn does
    masks = np.zeros((6, 16, 16), bool)
    for i in range(6):
        y, x = rng.integers(0, 12, 2)
        masks[i, y:y + 4, x:x + 3] = True
    got = localisation_metrics(maps, masks)["mask_auroc"]
    expected = [roc_auc_score(masks[i].ravel(), maps[i].ravel()) for i in range(6)]
    assert got == pytest.approx(expected, abs=1e-12)
    empty = localisation_metrics(maps[:1], np.zeros((1, 16, 16), bool))["mask_auroc"]
    assert np.isnan(empty[0])


def test_the_centre_prior_wins_where_the_lesion_is_central_and_a_peripheral_map_loses():
    from xai_helpers.cam_metrics import CENTRE_PRIOR_SIGMA, baseline_maps

    maps = baseline_maps(200, 32, seed=0)
    prior, noise = maps["centre_prior"][0], maps["uniform_random"]
    c = np.arange(32) - 15.5
    expected = np.exp(-0.5 * (c[:, None] ** 2 + c[None, :] ** 2) / (CENTRE_PRIOR_SIGMA * 32) ** 2)
    assert prior == pytest.approx((expected - expected.min()) / (expected.max() - expected.min()))
    central = np.zeros((1, 32, 32), bool)
    central[0, 12:20, 12:20] = True               # a tumour in the middle: the prior points at it
    corner_map = np.zeros((1, 32, 32))
    corner_map[0, :6, :6] = 1.0                   # a "CAM" lit up in the corner
    on_prior = localisation_metrics(maps["centre_prior"][:1], central)
    on_corner = localisation_metrics(corner_map, central)
    assert on_prior["pointing_game"][0] == 1 and on_corner["pointing_game"][0] == 0
    assert on_prior["mask_auroc"][0] > 0.95 > on_corner["mask_auroc"][0]
    assert on_prior["energy_in_mask"][0] > on_corner["energy_in_mask"][0]
    # the random map's expected energy in a mask is the mask's share of the image, its expected AUROC 0.5
    noise_scores = localisation_metrics(noise, np.repeat(central, 200, axis=0))
    assert noise_scores["energy_in_mask"].mean() == pytest.approx(central.mean(), abs=0.003)
    assert noise_scores["mask_auroc"].mean() == pytest.approx(0.5, abs=0.01)
    again = baseline_maps(200, 32, seed=0)["uniform_random"]
    assert np.array_equal(again, noise)  # seeded
