import numpy as np
import pandas as pd
import pytest
import torch

from xai_helpers.errors import NonFiniteLossError
from xai_helpers.inference import BatchPipeline, augment_batch, load_checkpoint, predict_proba
from xai_helpers.training import TrainConfig, fit


@pytest.fixture(scope="module")
def tiny():
    """24 small greyscale images of 2 classes (bright blob or not), as a uint8 cache."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 80, (24, 1, 64, 64), dtype=np.uint8)
    labels = np.arange(24) % 2
    images[labels == 1, :, 20:40, 20:40] = 230
    return images, labels


def _fit(tiny, out, on_epoch_end=None, **kw):
    images, labels = tiny
    config = TrainConfig(**{"epochs": 3, "batch_size": 8, "lr": 1e-3, "seed": 1, "resume_every_seconds": 0, **kw})
    pipe = BatchPipeline(images, torch.device("cpu"))
    return fit("efficientnet_b0", pipe, labels, np.arange(16), np.arange(16, 24), ["dark", "bright"], out, config,
               on_epoch_end=on_epoch_end, progress=False)


def test_same_seed_same_history_and_weights(tiny, tmp_path):
    a = _fit(tiny, tmp_path / "a")
    b = _fit(tiny, tmp_path / "b")
    cols = ["train_loss", "val_loss", "val_f1_macro"]
    pd.testing.assert_frame_equal(a.history[cols], b.history[cols])
    wa = torch.load(a.last_file, weights_only=True)["model_state"]
    wb = torch.load(b.last_file, weights_only=True)["model_state"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    c = _fit(tiny, tmp_path / "c", seed=2)
    assert not c.history["train_loss"].equals(a.history["train_loss"])


def test_checkpoints_load_weights_only_with_everything_needed(tiny, tmp_path):
    r = _fit(tiny, tmp_path / "run")
    for f in (r.best_file, r.last_file):
        ckpt = torch.load(f, weights_only=True)
        assert ckpt["arch"] == "efficientnet_b0" and ckpt["class_names"] == ["dark", "bright"]
        assert ckpt["image_size"] == 64 and len(ckpt["mean"]) == 3 and ckpt["config"]["epochs"] == 3
    assert not (tmp_path / "run" / "resume.pt").exists()  # deleted when the fit ends
    assert list(pd.read_csv(tmp_path / "run" / "history.csv")["epoch"]) == [1, 2, 3]
    model, meta = load_checkpoint(r.best_file)
    probs = predict_proba(model, BatchPipeline(tiny[0], torch.device("cpu")), np.arange(24))
    assert probs.shape == (24, 2) and np.allclose(probs.sum(1), 1, atol=1e-5)


def test_interrupted_fit_resumes_to_the_same_result(tiny, tmp_path):
    images, labels = tiny
    full = _fit(tiny, tmp_path / "full")

    class Interrupt(Exception):
        pass

    def stop_after_first(epoch, history):
        if epoch == 1:
            raise Interrupt

    config = TrainConfig(epochs=3, batch_size=8, lr=1e-3, seed=1, resume_every_seconds=0)
    pipe = BatchPipeline(images, torch.device("cpu"))
    args = ("efficientnet_b0", pipe, labels, np.arange(16), np.arange(16, 24), ["dark", "bright"],
            tmp_path / "cut", config)
    with pytest.raises(Interrupt):
        fit(*args, on_epoch_end=stop_after_first, progress=False)
    assert (tmp_path / "cut" / "resume.pt").is_file()
    torch.load(tmp_path / "cut" / "resume.pt", weights_only=True)  # resume state is weights_only-safe
    resumed = fit(*args, progress=False)
    pd.testing.assert_frame_equal(full.history.drop(columns="train_seconds"),
                                  resumed.history.drop(columns="train_seconds"))
    wa = torch.load(full.best_file, weights_only=True)["model_state"]
    wb = torch.load(resumed.best_file, weights_only=True)["model_state"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_nan_loss_stops_with_message_and_keeps_last_good_checkpoint(tiny, tmp_path):
    import gc

    def diverge(epoch, history):  # simulate a divergence: weights become NaN after epoch 1
        if epoch == 1:
            for obj in gc.get_objects():
                if isinstance(obj, torch.nn.Linear) and obj.out_features == 2:
                    obj.weight.data.fill_(float("nan"))

    with pytest.raises(NonFiniteLossError, match="training loss became nan in epoch 2; lower the learning rate"):
        _fit(tiny, tmp_path / "nan", on_epoch_end=diverge, epochs=4)
    ckpt = torch.load(tmp_path / "nan" / "best.pt", weights_only=True)
    assert ckpt["epoch"] == 1 and all(torch.isfinite(v).all() for v in ckpt["model_state"].values()
                                      if v.is_floating_point())


def test_augmentation_is_seeded_and_keeps_range():
    x = torch.rand(4, 1, 32, 32)
    a = augment_batch(x, torch.Generator().manual_seed(0))
    b = augment_batch(x, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 1 and not torch.equal(a, x)


def test_pipeline_rejects_wrong_arrays():
    with pytest.raises(ValueError, match=r"images: expected a \(N, 1\|3, S, S\) uint8 array"):
        BatchPipeline(np.zeros((2, 64, 64), np.float32), torch.device("cpu"))


def test_batchnorm_recalibration_is_the_plain_average_over_the_images(tiny):
    from xai_helpers.models import build_model
    from xai_helpers.training import recalibrate_batchnorm

    images, _ = tiny
    torch.manual_seed(0)
    model = build_model("resnet50", 2)
    bn = model.bn1
    bn.running_var.fill_(1000.0)  # stale statistics, as after a few exploding first steps
    pipe = BatchPipeline(images, torch.device("cpu"))
    rows = np.arange(16)
    assert recalibrate_batchnorm(model, pipe, rows, batch_size=8, amp=False)  # the averaging itself, in fp32
    assert bn.momentum == 0.1 and model.training  # settings and mode restored
    # reference: the mean over the two batches of each batch's statistics of bn1's input
    feats = []
    model.bn1.register_forward_hook(lambda m, i, o: feats.append(i[0].detach()))
    with torch.no_grad():
        model.eval()
        for i in (0, 8):
            model(pipe.batch(torch.as_tensor(rows[i:i + 8])))
    means = torch.stack([f.mean(dim=(0, 2, 3)) for f in feats])
    variances = torch.stack([f.var(dim=(0, 2, 3), unbiased=True) for f in feats])
    torch.testing.assert_close(bn.running_mean, means.mean(0), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(bn.running_var, variances.mean(0), rtol=1e-4, atol=1e-5)
    vgg_free = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten())
    assert recalibrate_batchnorm(vgg_free, pipe, rows, batch_size=8) is False


def test_frozen_backbone_epochs_train_only_the_head(tiny, tmp_path):
    from xai_helpers.models import build_model

    r = _fit(tiny, tmp_path / "frozen", epochs=1, freeze_epochs=1, seed=4)
    torch.manual_seed(4)  # fit builds the model right after seeding with its seed
    initial = dict(build_model("efficientnet_b0", 2).named_parameters())
    trained = torch.load(r.last_file, weights_only=True)["model_state"]
    head = {"classifier.1.weight", "classifier.1.bias"}
    assert all(torch.equal(trained[k], p) for k, p in initial.items() if k not in head)
    assert not torch.equal(trained["classifier.1.weight"], initial["classifier.1.weight"])
    assert r.history["frozen_backbone"].tolist() == [True]


def test_batchnorm_recalibration_sees_every_class_in_its_share(tiny, tmp_path, monkeypatch):
    """The splits are sorted by class: the calibration sample must not be the first rows."""
    import xai_helpers.training as training

    images, _ = tiny
    labels = np.repeat([0, 1, 2], [12, 8, 4])  # sorted by class, as splits.csv is
    seen = []
    real = training.recalibrate_batchnorm

    def spy(model, pipeline, rows, batch_size, amp=True):
        seen.append(np.asarray(rows).copy())
        return real(model, pipeline, rows, batch_size, amp)

    monkeypatch.setattr(training, "recalibrate_batchnorm", spy)
    config = TrainConfig(epochs=1, batch_size=8, seed=3, bn_calibration_images=10, resume_every_seconds=0)
    train_rows = np.arange(20)  # classes 0 (12 rows) and 1 (8 rows); the first 10 rows are all class 0
    fit("resnet50", BatchPipeline(images, torch.device("cpu")), labels, train_rows, np.arange(20, 24),
        ["a", "b", "c"], tmp_path, config, progress=False)
    assert len(seen) == 1 and len(seen[0]) == 10 and set(seen[0]) <= set(train_rows)
    share = np.bincount(labels[seen[0]], minlength=3) / len(seen[0])
    expected = np.bincount(labels[train_rows], minlength=3) / len(train_rows)
    assert np.abs(share - expected).max() <= 0.05
    # at the real data's scale: 1,024 of 3,000 rows sorted by class, 4 unequal classes
    big_labels = np.repeat([0, 1, 2, 3], [900, 800, 1000, 300])
    sample = training.stratified_sample(np.arange(3000), big_labels, 1024, seed=0)
    assert len(sample) == len(set(sample)) == 1024
    share = np.bincount(big_labels[sample], minlength=4) / 1024
    assert np.abs(share - np.bincount(big_labels) / 3000).max() <= 0.05


def test_warmup_scales_the_learning_rate_step_by_step_and_clipping_bounds_the_gradient(tiny, tmp_path, monkeypatch):
    """16 training images in batches of 8: 2 steps per epoch; warm-up over 1 epoch gives lr/2, then lr."""
    seen = []
    real_step = torch.optim.Adam.step

    def spy(self, *args, **kwargs):
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for g in self.param_groups
                                                     for p in g["params"] if p.grad is not None]))
        seen.append((self.param_groups[0]["lr"], float(norm)))
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", spy)
    r = _fit(tiny, tmp_path / "w", epochs=2, schedule="none", warmup_epochs=1, clip_grad_norm=0.5, lr=1e-3)
    assert [round(lr, 6) for lr, _ in seen] == [0.0005, 0.001, 0.001, 0.001]
    assert max(n for _, n in seen) <= 0.5 + 1e-4
    assert r.history["lr"].tolist() == [1e-3, 1e-3]  # the history shows the scheduler's value


def test_each_fit_records_its_precision_path(tiny, tmp_path):
    """bf16 where the CPU runs it natively, except for the models it slows down (EfficientNet-B0)."""
    from xai_helpers.inference import cpu_supports_bf16
    from xai_helpers.training import CPU_FP32_MODELS

    images, labels = tiny
    plain = _fit(tiny, tmp_path / "fp32", epochs=1, amp=False, channels_last=False)
    efficientnet = _fit(tiny, tmp_path / "fast", epochs=1)
    resnet = fit("resnet50", BatchPipeline(images, torch.device("cpu")), labels, np.arange(16), np.arange(16, 24),
                 ["dark", "bright"], tmp_path / "resnet", TrainConfig(epochs=1, batch_size=8), progress=False)
    assert plain.precision == "fp32" and "efficientnet_b0" in CPU_FP32_MODELS
    assert efficientnet.precision == "fp32, channels_last"
    assert resnet.precision == ("bf16 autocast" if cpu_supports_bf16() else "fp32") + ", channels_last"
    ckpt = torch.load(efficientnet.best_file, weights_only=True)  # the settings asked for, so a rerun reuses it
    assert ckpt["config"]["amp"] is True and ckpt["config"]["channels_last"] is True
