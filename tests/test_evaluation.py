import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score

from xai_helpers.evaluation import classification_metrics, expected_calibration_error, predictions_frame


def test_metrics_match_scikit_learn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 60)
    probs = rng.dirichlet(np.ones(3), 60)
    probs[np.arange(60), y] += 0.3
    probs /= probs.sum(1, keepdims=True)
    m = classification_metrics(y, probs, ["a", "b", "c"])
    pred = probs.argmax(1)
    assert m["accuracy"] == pytest.approx((pred == y).mean())
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert m["f1_macro"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert m["f1_weighted"] == pytest.approx(f1_score(y, pred, average="weighted"))
    assert m["roc_auc_ovr"] == pytest.approx(roc_auc_score(y, probs, multi_class="ovr"))
    assert m["f1_b"] == pytest.approx(f1_score(y, pred, average=None)[1])
    assert np.array(m["confusion_matrix"]).sum() == 60


def test_binary_auc_and_absent_class():
    m = classification_metrics([0, 1, 1, 0], np.array([[.9, .1], [.3, .7], [.6, .4], [.2, .8]]), ["n", "p"])
    assert m["roc_auc_ovr"] == pytest.approx(roc_auc_score([0, 1, 1, 0], [.1, .7, .4, .8]))
    only_one = classification_metrics([0, 0], np.array([[.9, .1], [.8, .2]]), ["n", "p"])
    assert np.isnan(only_one["roc_auc_ovr"]) and only_one["accuracy"] == 1.0
    with pytest.raises(ValueError, match=r"probs: expected shape \(2, 3\)"):
        classification_metrics([0, 1], np.ones((2, 2)) / 2, ["a", "b", "c"])


def test_predictions_frame_columns():
    df = predictions_frame(["x.png", "y.png"], [0, 1], np.array([[.7, .3], [.6, .4]]), ["normal", "pneumonia"])
    assert list(df.columns) == ["path", "true", "pred", "prob_normal", "prob_pneumonia"]
    assert list(df["pred"]) == ["normal", "normal"] and list(df["true"]) == ["normal", "pneumonia"]


def test_ece_hand_computed():
    # bins of width 1/15: confidences 0.95 (2 right, 1 wrong) and 0.55 (1 right)
    probs = np.array([[.95, .05], [.95, .05], [.05, .95], [.55, .45]])
    y = np.array([0, 0, 0, 0])
    expected = 3 / 4 * abs(2 / 3 - 0.95) + 1 / 4 * abs(1 - 0.55)
    assert expected_calibration_error(y, probs, 15) == pytest.approx(expected)


def test_f1_macro_of_a_test_split_missing_a_class_is_the_one_the_paired_tests_use():
    # a class absent from the test split: before, f1_macro counted it as 0 while the image-level tests
    # averaged over the classes present, so the reported value and the tested statistic differed
    from xai_helpers.stats import image_paired_test

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 80)                       # classes 0 and 1 present, 2 absent
    probs = rng.dirichlet(np.ones(3), 80)
    probs[np.arange(80), y] += 0.4
    pred = probs.argmax(1)
    m = classification_metrics(y, probs, ["a", "b", "c"])
    assert m["f1_macro"] == pytest.approx(f1_score(y, pred, labels=[0, 1], average="macro", zero_division=0))
    assert m["f1_macro"] > f1_score(y, pred, labels=[0, 1, 2], average="macro", zero_division=0)
    other = np.where(rng.random(80) < 0.2, (pred + 1) % 3, pred)
    r = image_paired_test(y, pred[None], other[None], "f1_macro", n_boot=99)
    m_other = classification_metrics(y, np.eye(3)[other], ["a", "b", "c"])
    assert r["statistic"] == pytest.approx(m["f1_macro"] - m_other["f1_macro"])


def test_chance_levels_are_what_a_model_that_learnt_nothing_scores():
    """Against scikit-learn: the majority-class dummy's accuracy (the no-information rate: 0.62 on an imbalanced split,
    not 1/K = 0.5), and the macro-F1 and balanced accuracy of uniform random guesses, by simulation."""
    from sklearn.dummy import DummyClassifier
    from sklearn.metrics import accuracy_score

    from xai_helpers.evaluation import chance_levels

    y = np.array([0] * 234 + [1] * 390 + [2] * 76)
    levels = chance_levels(y, 3)
    dummy = DummyClassifier(strategy="most_frequent").fit(np.zeros((len(y), 1)), y)
    assert levels["accuracy"][0] == pytest.approx(accuracy_score(y, dummy.predict(np.zeros((len(y), 1)))))
    assert levels["accuracy"][0] > 1 / 3 + 0.2
    rng = np.random.default_rng(0)
    guesses = [rng.integers(0, 3, len(y)) for _ in range(400)]
    assert levels["f1_macro"][0] == pytest.approx(np.mean([f1_score(y, g, average="macro") for g in guesses]), abs=0.01)
    assert levels["balanced_accuracy"][0] == pytest.approx(
        np.mean([balanced_accuracy_score(y, g) for g in guesses]), abs=0.01)
