"""The shortcut and shift audit: statistics against their references, flags on data built to have them,
and on the real brain MRI dataset the shortcut and shift its README documents."""
import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import stats as sps

from conftest import real_subset
from xai_helpers.data.metadata import file_header, image_metadata, jpeg_quality
from xai_helpers.data.shortcuts import (chi_square_cramers_v, epsilon_squared, metadata_classifier, shift_table,
                                        shortcut_table)


def test_epsilon_squared_is_the_r2_of_an_anova_on_the_ranks():
    """Tomczak & Tomczak's E²_R = H / (n - 1); with the tie-corrected H it is the share of rank variance the
    groups explain: the R² of an OLS of the ranks on the group (statsmodels), here with ties."""
    import statsmodels.formula.api as smf

    rng = np.random.default_rng(0)
    groups = [rng.integers(0, 12, 40), rng.integers(2, 14, 35), rng.integers(4, 16, 25)]
    h, p, e2 = epsilon_squared(groups)
    ref_h, ref_p = sps.kruskal(*groups)
    df = pd.DataFrame({"rank": sps.rankdata(np.concatenate(groups)),
                       "group": np.repeat(["a", "b", "c"], [len(g) for g in groups])})
    r2 = smf.ols("rank ~ C(group)", data=df).fit().rsquared
    assert h == pytest.approx(ref_h) and p == pytest.approx(ref_p)
    assert e2 == pytest.approx(r2, rel=1e-9)


def test_cramers_v_matches_its_definition_from_scipys_chi_square():
    rng = np.random.default_rng(1)
    a = rng.choice(["L", "RGB", "P"], 300)
    b = np.where(rng.random(300) < 0.6, a, rng.choice(["L", "RGB", "P"], 300))
    chi2, p, v = chi_square_cramers_v(a, b)
    table = pd.crosstab(a, b).to_numpy()
    ref_chi2 = sps.chi2_contingency(table, correction=False)[0]  # r x c > 2x2: no Yates correction either way
    assert chi2 == pytest.approx(ref_chi2)
    assert v == pytest.approx(np.sqrt(ref_chi2 / (table.sum() * (min(table.shape) - 1))))


@pytest.mark.parametrize("quality", [10, 35, 50, 75, 90, 100])
def test_jpeg_quality_is_recovered_from_the_quantisation_tables(quality):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
        buf, "JPEG", quality=quality)
    assert jpeg_quality(Image.open(buf).quantization) == quality
    buf.seek(0)
    assert np.isnan(jpeg_quality(None))


def _metadata(folder, sizes_by_class):
    """Files of the given sizes per class, and their metadata table."""
    folder.mkdir(parents=True, exist_ok=True)
    paths, headers, labels = [], [], []
    for cls, sizes in sizes_by_class.items():
        for i, (w, h) in enumerate(sizes):
            p = folder / f"{cls}_{i}.png"
            Image.new("L", (w, h), color=int(50 + 10 * (i % 5))).save(p)
            paths.append(str(p))
            headers.append(file_header(p))
            labels.append(cls)
    images = np.zeros((len(paths), 1, 8, 8), np.uint8)
    return image_metadata(paths, headers, images), labels


def test_size_shortcut_is_flagged_and_a_balanced_feature_is_not(tmp_path):
    meta, labels = _metadata(tmp_path, {"tumour": [(512, 512)] * 30 + [(256, 256)] * 2,
                                        "none": [(256, 256)] * 30 + [(512, 512)] * 2})
    table = shortcut_table(meta, labels).set_index("feature")  # 199 permutations: p can fall below 0.01
    assert list(table.columns) == ["statistic", "effect_size", "p_adjusted", "flagged", "test", "p_value", "n"]
    assert table.loc["width", "flagged"] and table.loc["height", "flagged"] and table.loc["all", "flagged"]
    assert not table.loc["colour_mode", "flagged"] and not table.loc["file_format", "flagged"]
    assert 0.85 < table.loc["all", "statistic"] < 1  # the tree gets all but the 4 swapped files


def test_metadata_classifier_sees_nothing_in_random_labels():
    rng = np.random.default_rng(3)
    meta = pd.DataFrame({"width": rng.integers(200, 600, 200), "colour_mode": "L"})
    r = metadata_classifier(meta, rng.choice(["a", "b"], 200), n_permutations=99)
    assert r["p_value"] > 0.01 and r["balanced_accuracy"] < r["chance"] + 0.15


def test_shift_table_flags_the_shifted_class_only(tmp_path):
    ref, ref_y = _metadata(tmp_path / "ref", {"a": [(512, 512)] * 40, "b": [(512, 512)] * 40})
    oth, oth_y = _metadata(tmp_path / "oth", {"a": [(256, 256)] * 30 + [(512, 512)] * 10, "b": [(512, 512)] * 40})
    table = shift_table(ref, ref_y, oth, oth_y)
    flagged = table[table["flagged"]]
    assert set(zip(flagged["class"], flagged["feature"])) == {("a", "width"), ("a", "height")}
    ks = sps.ks_2samp(ref.loc[np.array(ref_y) == "a", "width"], oth.loc[np.array(oth_y) == "a", "width"])
    row = table[(table["class"] == "a") & (table["feature"] == "width")].iloc[0]
    assert row["effect_size"] == pytest.approx(ks.statistic) == pytest.approx(0.75)


def test_shift_table_with_integer_class_labels_flags_as_with_names(tmp_path):
    # before: str(c) was compared with an int array, no row matched, and nothing was flagged
    ref, ref_y = _metadata(tmp_path / "ref", {"a": [(512, 512)] * 40, "b": [(512, 512)] * 40})
    oth, oth_y = _metadata(tmp_path / "oth", {"a": [(256, 256)] * 30 + [(512, 512)] * 10, "b": [(512, 512)] * 40})
    codes = {"a": 0, "b": 1}
    named = shift_table(ref, ref_y, oth, oth_y)
    numbered = shift_table(ref, [codes[c] for c in ref_y], oth, [codes[c] for c in oth_y])
    assert len(numbered) == len(named) > 0
    assert numbered["class"].tolist() == [str(codes[c]) for c in named["class"]]
    assert numbered["flagged"].tolist() == named["flagged"].tolist()
    ks = sps.ks_2samp(ref.loc[np.array(ref_y) == "a", "width"], oth.loc[np.array(oth_y) == "a", "width"])
    row = numbered[(numbered["class"] == "0") & (numbered["feature"] == "width")].iloc[0]
    assert row["statistic"] == pytest.approx(ks.statistic) and row["flagged"]


@pytest.mark.slow
@pytest.mark.shared_data
def test_notebooks_01_to_03_on_the_brain_dataset_find_its_size_shortcut_and_shift(tmp_path):
    """Small settings, real data: the baselines' rows and the three audit tables, and on the brain MRI
    dataset the documented facts: image size separates no_tumor from the tumours in Training, and the
    tumour classes' size distribution shifts from Training to Testing. 60 Training and 20 Testing images per
    class (a seeded random sample, in the dataset's layout) show both; the whole set is not needed."""
    from xai_helpers.run import main

    root = real_subset("brain_tumor_mri", tmp_path / "data", {"Training": 60, "Testing": 20})
    run = tmp_path / "study" / "brain_tumor_mri"  # the paper profiles write one run folder per dataset
    code = main(["--profile", "paper_cpu", "--no-progress", "--only", "01,02,03", "--set", "dataset=brain_tumor_mri",
                 "--set", f"data_root={root}", "--set", f"run_dir={tmp_path / 'study'}", "--set", "max_per_class=50",
                 "--set", "folds=2", "--set", "epochs=1", "--set", "models=[resnet50]"])
    assert code == 0
    metrics = pd.read_csv(run / "metrics.csv")
    assert {"baseline_hgb", "baseline_logreg"} <= set(metrics["model"])
    assert (run / "predictions" / "baseline_hgb_fold0.csv").is_file()
    meta = pd.read_csv(run / "data" / "audit_metadata.csv")
    assert {"width", "height", "aspect_ratio", "colour_mode", "file_format", "jpeg_quality",
            "mean_intensity"} <= set(meta.columns)
    shortcuts = pd.read_csv(run / "data" / "audit_shortcuts.csv").set_index("feature")
    assert list(pd.read_csv(run / "data" / "audit_shortcuts.csv").columns[:5]) == [
        "feature", "statistic", "effect_size", "p_adjusted", "flagged"]
    assert shortcuts.loc["width", "flagged"] or shortcuts.loc["height", "flagged"]
    shift = pd.read_csv(run / "data" / "audit_shift.csv")
    assert list(shift.columns[:6]) == ["class", "feature", "statistic", "effect_size", "p_adjusted", "flagged"]
    size_shift = shift[shift["feature"].isin(["width", "height"]) & shift["flagged"]]
    assert {"glioma", "meningioma", "pituitary"} <= set(size_shift["class"])
    tests = pd.read_csv(run / "stats" / "paired_tests.csv")
    assert (tests["comparison"] == "cnn_vs_baseline").any()
