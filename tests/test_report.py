"""The cross-dataset summary: finding dataset runs, the tables, the published comparison, report.md."""

import pytest

from xai_helpers.report import (PUBLISHED, confidence_table, find_dataset_runs, load_study, performance_table,
                                published_comparison, write_report)
from xai_helpers.examples import fake_study

@pytest.fixture
def study(tmp_path):
    return fake_study(tmp_path)


def test_find_dataset_runs_in_a_study_folder_or_a_single_run(study):
    assert [p.name for p in find_dataset_runs(study)] == ["brain_tumor_figshare", "brain_tumor_mri", "skin_cancer_isic"]
    assert find_dataset_runs(study / "skin_cancer_isic") == [study / "skin_cancer_isic"]
    with pytest.raises(FileNotFoundError, match="no run folder with a metrics.csv"):
        load_study(study / "notebooks")


def test_performance_table_mean_std_and_marks(study):
    table = performance_table(load_study(study)).set_index(["dataset", "model"])
    skin = table.loc[("skin_cancer_isic", "resnet50"), "accuracy"]
    assert skin.startswith("0.8000 ± 0.0100") and skin.endswith("(ref)")
    # densenet121 is 0.10 below, wrong on 9 of the 90 test images resnet50 gets right in every fold and right
    # on none it gets wrong: the image-level randomisation test gives the exact sign-test p of 9 one-way images,
    # 2 / 2**9 = 0.0039, '**' (the share of bootstrap resamples beyond 0 gave '***')
    assert table.loc[("skin_cancer_isic", "densenet121"), "accuracy"].split()[-1] == "**"
    # every fold is exactly 0.10 apart: zero variance is 'not testable', never p = 0 and '***'
    assert table.loc[("skin_cancer_isic", "densenet121"), "accuracy (corrected_t)"] == "n/a"
    assert table.loc[("brain_tumor_mri", "densenet121"), "accuracy"].endswith("(ref)")
    assert table.loc[("brain_tumor_mri", "resnet50"), "weights"] == "imagenet"


def test_confidence_table_and_published_comparison(study):
    runs = load_study(study)
    conf = confidence_table(runs)
    glioma = conf[(conf.dataset == "brain_tumor_mri") & (conf["class"] == "glioma")].set_index("method")
    assert glioma.loc["xgradcam", "mark"] == "ref" and glioma.loc["layercam", "mark"] in {"*", "**", "***"}
    pub = published_comparison(runs).set_index(["quantity", "method"])
    assert len(pub) == len(PUBLISHED)
    acc = pub.loc[("accuracy", "")]
    assert acc["published"] == 0.8631 and acc["ours"] == pytest.approx(0.80) and acc["n"] == 3
    assert acc["difference"] == pytest.approx(0.80 - 0.8631)
    # Wilson interval of 0.80 on the 90 test images, by hand: centre (72 + 1.96^2/2) / (90 + 1.96^2) = 0.78772,
    # half-width 1.96 * sqrt(90 * 0.8 * 0.2 + 1.96^2 / 4) / (90 + 1.96^2) = 0.08186
    assert acc["n_test"] == 90
    assert (acc["ours_ci_low"], acc["ours_ci_high"]) == pytest.approx((0.7059, 0.8696), abs=1e-4)
    assert acc["source"].startswith("Chaddad et al. (2025)") and "arXiv:2503.08420" in acc["source"]
    # the study's glioma numbers are computed on the Figshare set when the study holds it, and say so
    xg = pub.loc[("confidence_increase", "xgradcam")]
    figshare = conf[(conf.dataset == "brain_tumor_figshare") & (conf["class"] == "glioma")].set_index("method")
    assert xg["computed_on"] == "brain_tumor_figshare" and xg["published"] == 0.12
    assert xg["ours"] == pytest.approx(figshare.loc["xgradcam", "confidence_increase"])
    assert (figshare.loc["xgradcam", "confidence_increase"]
            != pytest.approx(glioma.loc["xgradcam", "confidence_increase"]))
    assert pub.loc[("accuracy", ""), "computed_on"] == "skin_cancer_isic"
    # without it, on the brain MRI set the study names
    import shutil
    shutil.rmtree(study / "brain_tumor_figshare")
    pub = published_comparison(load_study(study)).set_index(["quantity", "method"])
    xg = pub.loc[("confidence_increase", "xgradcam")]
    assert xg["computed_on"] == "brain_tumor_mri"
    assert xg["ours"] == pytest.approx(glioma.loc["xgradcam", "confidence_increase"])


def test_report_states_the_protocol_tables_and_reasons(study):
    path = write_report(study)
    text = path.read_text()
    assert path == study / "report.md"
    for heading in ("## Protocol", "## Classification", "## Confidence increase", "## Next to the published numbers",
                    "## Why the numbers differ", "## Generalization"):
        assert heading in text
    assert "0.8631" in text and "0.8000 ± 0.0100 (ref)" in text
    assert "**skin_cancer_isic**: the CNNs were trained from scratch" in text
    assert "images were 64 px instead of 224 px" in text
    assert "2 training images that duplicate test images were removed" in text
    assert "**brain_tumor_mri**: the CNNs started from ImageNet weights" in text
    assert "_(notebook 07 has not run)_" in text
    # every protocol choice that changes results, read from the checkpoints
    assert "| learning-rate schedule" in text and "cosine" in text
    assert "BatchNorm recalibrated before each validation" in text and "True (1024)" in text
    assert "4 (half of epochs)" in text and "| augmentation" in text
    assert "predicted class" in text and "softmax" in text
    assert "GradCAM and XGradCAM give the same map" in text  # the fake runs explain layer4
    assert "Source of every published number: Chaddad et al. (2025)" in text
    assert "## Confidence increase per explained CNN, CAM method and class" in text
    assert "the study explains resnet50" in text


def test_published_confidence_increase_is_shown_three_ways_with_intervals(study):
    """Beside each published value: our mean change, the share of images whose score rises under the same
    perturbation, and Chattopadhay's black-fill share, each with a bootstrap interval over images (each image averaged
    over its fold models first)."""
    import numpy as np
    import pandas as pd

    pub = published_comparison(load_study(study)).set_index(["quantity", "method"])
    per_image = pd.read_csv(study / "brain_tumor_figshare" / "xai_per_image.csv")  # where the glioma rows are computed
    for method in ("xgradcam", "gradcam++", "layercam"):
        row = pub.loc[("confidence_increase", method)]
        sel = per_image[(per_image.method == method) & (per_image["class"] == "glioma")]
        if sel.empty:  # the fake run explains gradcam, xgradcam, eigengradcam and layercam only
            assert np.isnan(row["share_rising"])
            continue
        per = sel.groupby("path")[["confidence_increase", "increase_in_confidence_pct"]].mean()
        scored = sel.dropna(subset=["confidence_increase"])  # the localisation-only rows have no confidence
        rising = (scored["confidence_increase"] > 0).groupby(scored["path"]).mean()  # the mean's own perturbation
        assert row["share_rising"] == pytest.approx(rising.mean())
        assert row["share_ci_low"] <= row["share_rising"] <= row["share_ci_high"]
        assert row["black_share_rising"] == pytest.approx(per["increase_in_confidence_pct"].mean() / 100)
        assert row["black_share_ci_low"] <= row["black_share_rising"] <= row["black_share_ci_high"]
        assert row["fill"] == "imagenet_mean"
        assert row["ours_ci_low"] <= per["confidence_increase"].mean() <= row["ours_ci_high"]
        assert row["ours_ci_high"] - row["ours_ci_low"] > 0
        assert row["setting"] == "layer layer4 at 224 px: as published" and row["reading"]
    text = write_report(study).read_text()
    assert "share_rising" in text and "IncreaseInConfidence" in text and "percentile-bootstrap interval" in text
    assert "black_share_rising" in text and "Increase in Confidence" in text


def test_report_flags_a_cnn_that_does_not_beat_the_best_baseline(study):
    import pandas as pd

    metrics_file = study / "skin_cancer_isic" / "metrics.csv"
    metrics = pd.read_csv(metrics_file)
    base = metrics[metrics.model == "resnet50"].assign(model="baseline_hgb", accuracy=[0.74, 0.75, 0.76])
    pd.concat([metrics, base]).to_csv(metrics_file, index=False)
    table = performance_table(load_study(study)).set_index(["dataset", "model"])
    assert table.loc[("skin_cancer_isic", "baseline_hgb"), "kind"] == "baseline"
    assert table.loc[("skin_cancer_isic", "resnet50"), "accuracy"].endswith("(ref)")  # the reference is a CNN
    assert table.loc[("skin_cancer_isic", "densenet121"), "vs best baseline"].startswith("NOT above (-0.050")
    assert table.loc[("skin_cancer_isic", "resnet50"), "vs best baseline"].startswith("above (+0.050")
    text = write_report(study).read_text()
    assert "**skin_cancer_isic: densenet121 not above the best baseline** (baseline_hgb" in text
    assert "**brain_tumor_mri: " not in text  # no baseline there: nothing to flag


def test_report_warns_next_to_an_external_accuracy_that_is_a_warning_sign(study):
    """External accuracy more than 0.15 below clean, below the external majority-class rate, or ECE above 0.2:
    the generalization table says so beside the number, with the flagged shifts of the external set."""
    import json

    import pandas as pd

    from xai_helpers.report import generalization_summary

    run = study / "skin_cancer_isic"
    rows = [{"model": m, "fold": f, "condition": c, "severity": 0, "accuracy": a, "f1_macro": a, "ece": e}
            for m, (clean, ext, ece) in {"resnet50": (0.80, 0.55, 0.30), "densenet121": (0.70, 0.66, 0.05)}.items()
            for f in range(3) for c, a, e in (("clean", clean, 0.05), ("external:site_b", ext, ece))]
    pd.DataFrame(rows).to_csv(run / "generalization.csv", index=False)
    (run / "generalization_external.json").write_text(json.dumps({
        "name": "site_b", "classes_evaluated": ["benign", "malignant"], "majority_class_rate": 0.6,
        "training_overlap": {"exact": 0, "near": 0}, "shift_flagged": ["benign: aspect_ratio"]}))
    table = generalization_summary(load_study(study)).set_index(["dataset", "model"])
    resnet = table.loc[("skin_cancer_isic", "resnet50"), "warnings"]
    assert "0.25 below the clean test accuracy" in resnet and "below the majority-class rate 0.60" in resnet
    assert "ECE 0.30 > 0.2" in resnet
    assert table.loc[("skin_cancer_isic", "densenet121"), "warnings"] == ""  # 0.04 below, 0.66 > 0.60, ECE 0.05
    assert table.loc[("skin_cancer_isic", "resnet50"), "external shift (flagged, generalization_shift.csv)"] == \
        "benign: aspect_ratio"
    text = write_report(study).read_text()
    assert "WARNING: 0.25 below the clean test accuracy" in text and "benign: aspect_ratio" in text


def test_report_shows_epochs_per_model_and_what_the_cap_left_out(study):
    import json
    from dataclasses import asdict

    import torch

    from xai_helpers.training import TrainConfig

    skin = study / "skin_cancer_isic"
    ckpt = skin / "checkpoints" / "densenet121_fold0"
    ckpt.mkdir(parents=True)
    torch.save({"arch": "densenet121", "config": asdict(TrainConfig(epochs=4, seed=0))}, ckpt / "last.pt")
    audit = json.loads((skin / "data" / "audit.json").read_text())
    audit["splits"]["pool_per_class"] = {"benign": {"available": 1440, "used": 150},
                                         "malignant": {"available": 1197, "used": 150}}
    (skin / "data" / "audit.json").write_text(json.dumps(audit))
    text = write_report(study).read_text()
    assert "densenet121: 4, resnet50: 8" in text and "densenet121: 2 (half of epochs), resnet50: 4" in text
    assert ("at most 150 training images per class were used: 300 of 2,637 (11 %; benign 150 of 1,440, "
            "malignant 150 of 1,197)") in text
    # the brain sets (the first columns): one value for every model, shown once
    row = next(line for line in text.splitlines() if line.startswith("| max epochs"))
    assert [cell.strip() for cell in row.strip("|").split("|")] == ["max epochs", "8", "8",
                                                                    "densenet121: 4, resnet50: 8"]


def test_localisation_table_reads_every_cnn_against_the_centre_prior(study):
    """'Do the maps point at the lesion?': per CNN and map, the mean over masked images (each averaged over
    its fold models) with a bootstrap interval, marked against the centre prior by the paired test over
    images; checked against pandas and scipy on the fake Figshare run (ResNet50's XGradCAM clearly above
    the prior, its EigenGradCAM below; every DenseNet121 method below)."""
    import numpy as np
    import pandas as pd
    from scipy.stats import ttest_rel

    from xai_helpers.report import localisation_notes, localisation_table

    runs = load_study(study)
    table = localisation_table(runs, ["mask_auroc"], n_boot=500)
    assert set(table["dataset"]) == {"brain_tumor_figshare"}  # the only run with masks
    per_image = pd.read_csv(study / "brain_tumor_figshare" / "xai_per_image.csv")
    per = per_image.groupby(["model", "method", "path"])["mask_auroc"].mean()
    for row in table.itertuples(index=False):
        values = per.loc[(row.model, row.method)]
        assert row.n_images == len(values) == 24
        assert row.mean == pytest.approx(values.mean())
        assert row.ci_low < row.mean < row.ci_high
        half = 1.96 * values.std(ddof=1) / np.sqrt(len(values))  # the normal interval, for scale
        assert row.ci_high - row.ci_low == pytest.approx(2 * half, rel=0.35)
    marks = table.set_index(["model", "method"])["vs centre_prior"]
    for model, method, side in (("resnet50", "xgradcam", ">"), ("resnet50", "eigengradcam", "<"),
                                ("densenet121", "gradcam", "<")):
        p = ttest_rel(per.loc[(model, method)], per.loc[(model, "centre_prior")]).pvalue
        assert p < 1e-4 and marks[(model, method)] == f"{side} ***"
    assert marks[("resnet50", "centre_prior")] == ""
    notes = localisation_notes(runs)
    assert notes[0].startswith("**brain_tumor_figshare**, resnet50 at `layer4`") and "xgradcam 0.88" in notes[0]
    assert "XGradCAM ranks above EigenGradCAM, as the study says" in notes[0]
    assert "no CAM method is significantly above the centre prior" in notes[1]
    text = write_report(study).read_text()
    assert "## Do the maps point at the lesion?" in text
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()
            if line.startswith("| brain_tumor_figshare") and "mask_auroc" in line]
    assert [r[2] for r in rows] == ["resnet50 (layer4)", "densenet121 (features.relu5)"]
    xgradcam = table.set_index(["model", "method"]).loc[("resnet50", "xgradcam")]
    assert f"{xgradcam['mean']:.3f} ({xgradcam['ci_low']:.3f}–" in rows[0][3 + list(table["method"]).index("xgradcam")]
    # a study without masks says so instead of showing an empty table
    import shutil
    shutil.rmtree(study / "brain_tumor_figshare")
    assert "no dataset of this study has lesion masks" in write_report(study).read_text()


def test_report_shows_whether_the_ranking_survives_the_fill(study):
    """A run's ``xai_fill_sensitivity.csv`` (written by notebook 05) becomes the report's fill table, per dataset; a
    study without it says so."""
    import numpy as np
    import pandas as pd
    import torch

    from xai_helpers.cam_metrics import fill_sensitivity
    from xai_helpers.models import build_model

    assert "notebook 05 ran before the fill choice" in write_report(study).read_text()
    torch.manual_seed(0)
    net = build_model("resnet50", 3).eval()
    x = torch.randn(2, 3, 32, 32)
    rng = np.random.default_rng(0)
    maps = {"gradcam": rng.random((2, 32, 32)), "layercam": rng.random((2, 32, 32))}
    table = fill_sensitivity(net, x, maps, [0, 1], n_steps=2).assign(model="resnet50", fold=0, layer="layer2")
    table.to_csv(study / "brain_tumor_figshare" / "xai_fill_sensitivity.csv", index=False)
    text = write_report(study).read_text()
    section = text[text.index("### Does the ranking survive"):text.index("## Do the maps point")]
    for fill in ("imagenet_mean", "black", "dataset_mean", "blur"):
        assert f"| {fill} " in section
    shown = pd.read_csv(study / "brain_tumor_figshare" / "xai_fill_sensitivity.csv")
    assert shown["ranking"].iloc[0] in section


def test_the_confidence_table_keeps_each_cnn_apart(study):
    """Issue 36: notebook 06 averaged the four CNNs together (a pivot over the model column). Each cell of the wide
    table is one CNN's mean for that method and class, as in its xai_metrics.csv, with its mark."""
    import pandas as pd

    from xai_helpers.report import confidence_wide

    path = study / "brain_tumor_figshare" / "xai_metrics.csv"
    xai = pd.read_csv(path)
    other = xai[xai["model"] == "resnet50"].assign(model="efficientnet_b0")
    other["confidence_increase"] += 0.5  # a second CNN whose means differ: an average would show neither
    pd.concat([xai, other], ignore_index=True).to_csv(path, index=False)
    runs = load_study(study)
    wide = confidence_wide(confidence_table(runs)).set_index(["dataset", "model", "method"])
    for r in runs:
        for _, row in r.xai.dropna(subset=["confidence_increase"]).iterrows():
            cell = wide.loc[(r.dataset, row["model"], row["method"]), row["class"]]
            assert cell.startswith(f"{row['confidence_increase']:.4f}"), (r.dataset, row["model"], row["method"], cell)
    assert pd.Series([m for _, m, _ in wide.index]).nunique() >= 2
