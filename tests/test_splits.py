import pandas as pd
import pytest

from xai_helpers.data.splits import fold_indices, make_splits


def _index(n_train=30, n_test=9, groups_of=1):
    rows = []
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            c = "abc"[i % 3]
            rows.append({"path": f"{split}/{c}/{i}.png", "split": split, "class": c,
                         "group": f"{split}-{i // groups_of}"})
    return pd.DataFrame(rows)


def test_test_split_untouched_and_folds_stratified():
    s, s_report = make_splits(_index(n_train=27), folds=3, seed=0)
    assert (s.loc[s.split == "test", "fold"] == -1).all() and (s.split == "test").sum() == 9
    counts = s[s.split == "train"].groupby(["fold", "class"]).size().unstack()
    assert counts.shape == (3, 3) and (counts == 3).all().all()
    tr, va, te = fold_indices(s, 1)
    assert set(tr).isdisjoint(va) and len(te) == 9 and (s.loc[va, "fold"] == 1).all()


def test_groups_never_straddle_folds_and_seed_reproduces():
    idx = _index(n_train=36, groups_of=3)
    idx.loc[idx.split == "train", "class"] = idx.loc[idx.split == "train", "group"].map(
        lambda g: "abc"[int(g.split("-")[1]) % 3])
    a, a_report = make_splits(idx, folds=3, seed=1)
    assert (a[a.split == "train"].groupby("group")["fold"].nunique() == 1).all()
    b, b_report = make_splits(idx, folds=3, seed=1)
    pd.testing.assert_frame_equal(a, b)
    c, c_report = make_splits(idx, folds=3, seed=2)
    assert not a["fold"].equals(c["fold"])


def test_training_copies_of_test_groups_are_dropped_and_reported():
    idx = _index()
    idx.loc[0, "group"] = idx.loc[idx.split == "test", "group"].iloc[0]
    s, s_report = make_splits(idx, folds=3, seed=0)
    assert idx.loc[0, "path"] not in set(s.path)
    assert s_report["dropped_train_images"] == [idx.loc[0, "path"]]
    kept, kept_report = make_splits(idx, folds=3, seed=0, leak_policy="keep")
    assert idx.loc[0, "path"] in set(kept.path)
    assert kept_report["train_images_sharing_a_group_with_test"] == 1
    assert kept_report["dropped_train_images"] == []  # the key notebook 01's exercise 2 names, empty under keep


def test_max_per_class_and_missing_test_split():
    s, s_report = make_splits(_index(), folds=2, seed=0, max_per_class=4)
    assert (s[s.split == "train"].groupby("class").size() == 4).all()
    pool = _index().query("split == 'train'")["class"].value_counts()
    assert s_report["pool_per_class"] == {c: {"available": int(n), "used": 4} for c, n in pool.items()}
    no_test = _index(n_test=0)
    s2, s2_report = make_splits(no_test, folds=2, seed=0)
    assert 0 < (s2.split == "test").sum() < len(no_test)


def test_too_few_images_for_the_folds():
    with pytest.raises(ValueError, match="folds: 5 folds need at least 5 groups per class.*a has 2"):
        make_splits(_index(n_train=6), folds=5, seed=0)
