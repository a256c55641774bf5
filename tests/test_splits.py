"""Splits: proportions, disjointness, speaker independence and reproducibility."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ser_jax.data.corpora import load_manifest
from ser_jax.data.manifest import label_ids, speakers_of
from ser_jax.data.splits import (
    Split,
    check_disjoint,
    loso_folds,
    speaker_independent_split,
    stratified_split,
)
from ser_jax.errors import ConfigError, SplitError

EMODB_COUNTS = {"W": 102, "N": 65, "L": 59, "A": 52, "F": 52, "T": 46, "E": 33}


def _covers(split: Split, n: int) -> bool:
    together = np.concatenate([split.train, split.val, split.test])
    return np.array_equal(np.sort(together), np.arange(n))


def _half_up(x: float) -> int:
    return math.floor(x + 0.5)


def test_stratified_matches_splitEachLabel_rounding() -> None:
    labels = np.array([c for c, n in EMODB_COUNTS.items() for _ in range(n)])
    split = stratified_split(labels, (0.70, 0.15, 0.15), seed=0)
    check_disjoint(split)
    assert _covers(split, len(labels))
    parts = {"train": split.train, "val": split.val, "test": split.test}
    per_part = {name: Counter(labels[idx].tolist()) for name, idx in parts.items()}
    assert (per_part["train"]["W"], per_part["val"]["W"], per_part["test"]["W"]) == (71, 15, 16)
    assert (per_part["train"]["E"], per_part["val"]["E"], per_part["test"]["E"]) == (23, 5, 5)
    assert (len(split.train), len(split.val), len(split.test)) == (
        285,
        62,
        62,
    )  # neutral: 65 * 0.7 = 45.5 -> 46


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(1, 40), min_size=1, max_size=7),
    fractions=st.sampled_from(
        [(0.7, 0.15, 0.15), (0.8, 0.1, 0.1), (0.6, 0.2, 0.2), (0.5, 0.5, 0.0)]
    ),
    seed=st.integers(0, 2**31 - 1),
)
def test_stratified_properties(counts: list[int], fractions, seed: int) -> None:
    labels = np.repeat(np.arange(len(counts)), counts)
    np.random.default_rng(seed).shuffle(labels)
    split = stratified_split(labels, fractions, seed=seed)
    check_disjoint(split)
    assert _covers(split, len(labels))
    for c, n in enumerate(counts):
        n_train = _half_up(n * fractions[0])
        n_val = min(n - n_train, _half_up(n * fractions[1]))
        assert (labels[split.train] == c).sum() == n_train
        assert (labels[split.val] == c).sum() == n_val
        assert (labels[split.test] == c).sum() == n - n_train - n_val
    again = stratified_split(labels, fractions, seed=seed)
    assert all(
        np.array_equal(a, b)
        for a, b in zip(
            (split.train, split.val, split.test), (again.train, again.val, again.test), strict=True
        )
    )


def test_stratified_seed_changes_the_split() -> None:
    labels = np.repeat(np.arange(7), 30)
    a, b = stratified_split(labels, seed=0), stratified_split(labels, seed=1)
    assert not np.array_equal(a.train, b.train)
    assert [len(p) for p in (a.train, a.val, a.test)] == [len(p) for p in (b.train, b.val, b.test)]


def test_stratified_rejects_bad_fractions() -> None:
    with pytest.raises(ConfigError, match="summing to 1"):
        stratified_split([0, 1], (0.7, 0.2, 0.2))


# speakers 0..k-1 with 1..12 files each, shuffled, as strings like real ids
speaker_lists = st.lists(st.integers(1, 12), min_size=3, max_size=9).flatmap(
    lambda sizes: st.permutations([f"{s:02d}" for s, n in enumerate(sizes) for _ in range(n)])
)


@settings(max_examples=60, deadline=None)
@given(speakers=speaker_lists, data=st.data())
def test_speaker_independent_properties(speakers: list[str], data) -> None:
    names = sorted(set(speakers))
    n_test = data.draw(st.integers(1, len(names) - 2))
    test = data.draw(
        st.lists(st.sampled_from(names), min_size=n_test, max_size=n_test, unique=True)
    )
    seed = data.draw(st.integers(0, 1000))
    split = speaker_independent_split(speakers, test, seed=seed)
    check_disjoint(split, speakers)
    assert _covers(split, len(speakers))
    arr = np.array(speakers)
    assert set(arr[split.test]) == set(test)
    assert len(set(arr[split.val])) >= 1 and len(split.train) > 0
    assert not set(arr[split.val]) & set(test)
    again = speaker_independent_split(speakers, test, seed=seed)
    assert np.array_equal(split.val, again.val) and split.name == again.name


@settings(max_examples=60, deadline=None)
@given(speakers=speaker_lists)
def test_loso_properties(speakers: list[str]) -> None:
    names = sorted(set(speakers))
    arr = np.array(speakers)
    folds = loso_folds(speakers)
    assert [f.name for f in folds] == [f"loso-{s}" for s in names]
    for i, fold in enumerate(folds):
        check_disjoint(fold, speakers)
        assert _covers(fold, len(speakers))
        assert set(arr[fold.test]) == {names[i]}
        assert set(arr[fold.val]) == {names[(i + 1) % len(names)]}
    # every file is tested exactly once over the folds
    tested = np.sort(np.concatenate([f.test for f in folds]))
    assert np.array_equal(tested, np.arange(len(speakers)))


def test_loso_random_and_none_validation() -> None:
    speakers = [s for s in "abcde" for _ in range(3)]
    arr = np.array(speakers)
    r0, r0b, r1 = (loso_folds(speakers, val="random", seed=s) for s in (0, 0, 1))
    assert [f.val.tolist() for f in r0] == [f.val.tolist() for f in r0b]
    assert [f.val.tolist() for f in r0] != [f.val.tolist() for f in r1]
    for fold in r0:
        check_disjoint(fold, speakers)
        assert len(set(arr[fold.val])) == 1
    assert all(len(f.val) == 0 for f in loso_folds(speakers, val="none"))
    with pytest.raises(ConfigError, match="val='bogus'"):
        loso_folds(speakers, val="bogus")
    with pytest.raises(ConfigError, match="at least 3 speakers"):
        loso_folds(["a", "b"])


def test_speaker_independent_seed_changes_validation_speaker() -> None:
    speakers = [f"{s:02d}" for s in range(10) for _ in range(4)]
    arr = np.array(speakers)
    vals = {
        tuple(set(arr[speaker_independent_split(speakers, ["00"], seed=s).val])) for s in range(8)
    }
    assert len(vals) > 1


def test_unknown_and_overlapping_speakers_are_config_errors() -> None:
    speakers = ["03", "08", "09", "10"]
    with pytest.raises(ConfigError, match=r"unknown speakers \['11', '3'\].*known: 03, 08, 09, 10"):
        speaker_independent_split(speakers, ["3", "08"], ["11"])
    with pytest.raises(ConfigError, match=r"speakers \['08'\] are in both"):
        speaker_independent_split(speakers, ["08"], ["08"])
    with pytest.raises(ConfigError, match="no training speaker left"):
        speaker_independent_split(speakers, ["03", "08"], ["09", "10"])
    single = speaker_independent_split(speakers, "03", "08")  # a bare string is one speaker
    assert single.name == "speakers-test-03-val-08"


def test_validation_speaker_covers_every_class_when_labels_given() -> None:
    # speaker "b" lacks class 2, so with labels only "c" can be drawn for validation
    speakers = ["a"] * 3 + ["b"] * 2 + ["c"] * 3 + ["d"] * 3
    labels = [0, 1, 2, 0, 1, 0, 1, 2, 0, 1, 2]
    arr = np.array(speakers)
    for seed in range(6):
        split = speaker_independent_split(
            speakers, ["a"], labels=labels, seed=seed, val_fraction=0.1
        )
        assert set(arr[split.val]) in ({"c"}, {"d"})
    assert len(speaker_independent_split(speakers, ["a"], val_fraction=0).val) == 0


def test_check_disjoint_catches_leaks() -> None:
    speakers = ["a", "a", "b", "b", "c"]
    with pytest.raises(SplitError, match="1 indices in both train and test"):
        check_disjoint(Split(np.array([0, 1]), np.array([2]), np.array([1, 4]), "x"))
    with pytest.raises(ValueError, match=r"speakers \['a'\] appear in both train and val"):
        check_disjoint(Split(np.array([0]), np.array([1]), np.array([4])), speakers)
    with pytest.raises(SplitError, match="repeats indices"):
        check_disjoint(Split(np.array([0, 0]), np.array([], dtype=int), np.array([1])))
    with pytest.raises(ConfigError, match="out of range"):
        check_disjoint(Split(np.array([0]), np.array([2]), np.array([9])), speakers)


def test_real_emodb_speaker_splits(emodb_dir: Path) -> None:
    utts, _ = load_manifest("emodb", emodb_dir)
    speakers, labels = speakers_of(utts), label_ids(utts)
    split = speaker_independent_split(speakers, ["03", "08"], ["09"], labels=labels)
    check_disjoint(split, speakers)
    assert (len(split.train), len(split.val), len(split.test)) == (409 - 49 - 58 - 43, 43, 49 + 58)
    drawn = speaker_independent_split(speakers, ["03", "08"], labels=labels, seed=0)
    assert len(set(speakers[drawn.val])) == 1  # one validation speaker out of six
    assert len(np.unique(labels[drawn.val])) == 7  # and it has every class
    folds = loso_folds(speakers)
    assert len(folds) == 8 and folds[0].name == "loso-03"
    assert set(speakers[folds[0].val]) == {"08"} and set(speakers[folds[-1].val]) == {"03"}


@settings(max_examples=25, deadline=None, derandomize=True)
@given(st.integers(3, 9), st.integers(2, 9), st.integers(0, 10_000))
def test_speaker_kfold_tests_every_speaker_once_without_overlap(n_speakers, k, seed):
    from ser_jax.data.splits import speaker_kfold

    k = min(k, n_speakers)
    speakers = np.repeat([f"s{i}" for i in range(n_speakers)], 3)
    if n_speakers - -(-n_speakers // k) - 1 < 1:  # the largest test group + 1 validation
        with pytest.raises(ConfigError, match="leaves 0 to train on"):
            speaker_kfold(speakers, k, seed=seed)
        return
    folds = speaker_kfold(speakers, k, seed=seed)
    assert len(folds) == k
    tested = np.concatenate([f.test for f in folds])
    assert sorted(tested.tolist()) == list(range(len(speakers)))
    for f in folds:
        check_disjoint(f, speakers)
        assert len(f.val) > 0 and len(f.train) + len(f.val) + len(f.test) == len(speakers)


def test_loso_with_two_validation_speakers():
    from ser_jax.data.splits import loso_folds

    speakers = np.repeat(["a", "b", "c", "d"], 3)
    folds = loso_folds(speakers, val_count=2)
    assert [sorted(set(speakers[f.val])) for f in folds] == [
        ["b", "c"],
        ["c", "d"],
        ["a", "d"],
        ["a", "b"],
    ]
    for f in folds:
        assert len(f.train) == 3 and len(f.test) == 3
    with pytest.raises(ConfigError, match="needs at least 4 speakers"):
        loso_folds(speakers[:9], val_count=2)


def test_speaker_kfold_with_two_validation_speakers():
    from ser_jax.data.splits import speaker_kfold

    speakers = np.repeat([f"s{i}" for i in range(8)], 3)
    one, two = speaker_kfold(speakers, 4, seed=1), speaker_kfold(speakers, 4, seed=1, val_count=2)
    for f1, f2 in zip(one, two, strict=True):
        check_disjoint(f2, speakers)
        np.testing.assert_array_equal(f1.test, f2.test)  # the same test groups
        v1, v2 = set(speakers[f1.val]), set(speakers[f2.val])
        assert len(v1) == 1 and len(v2) == 2 and v1 < v2  # one more validation speaker
        assert len(set(speakers[f2.train])) == 4
    with pytest.raises(ConfigError, match="data.val_count=4 .* k=4"):
        speaker_kfold(speakers, 4, val_count=4)


def test_no_validation_speaker_trains_on_everyone_but_the_test_speakers():
    from ser_jax.data.splits import loso_folds, speaker_kfold

    speakers = np.repeat([f"s{i}" for i in range(8)], 3)
    for folds in (loso_folds(speakers, val_count=0), speaker_kfold(speakers, 4, val_count=0)):
        for f in folds:
            check_disjoint(f, speakers)
            assert len(f.val) == 0
            assert len(f.train) + len(f.test) == len(speakers)
    # the test groups are those of the folds with a validation speaker
    for f0, f1 in zip(
        speaker_kfold(speakers, 4, val_count=0), speaker_kfold(speakers, 4), strict=True
    ):
        np.testing.assert_array_equal(f0.test, f1.test)


def test_no_validation_speaker_needs_a_fixed_number_of_epochs():
    from ser_jax.config import get_config
    from ser_jax.spec import resolve

    cfg = get_config()
    cfg.data.split, cfg.data.val_count = "loso", 0
    with pytest.raises(ConfigError, match="data.val_count=0 .* train.select='last'"):
        resolve(cfg)
    cfg.train.select = "last"
    assert resolve(cfg).select == "last"


def test_validation_joins_training_and_the_test_files_stay():
    from ser_jax.data.splits import validation_trains

    labels = np.array([c for c, n in EMODB_COUNTS.items() for _ in range(n)])
    split = stratified_split(labels, (0.70, 0.15, 0.15), seed=10)
    merged = validation_trains(split)
    check_disjoint(merged)
    assert _covers(merged, len(labels))
    np.testing.assert_array_equal(merged.test, split.test)
    np.testing.assert_array_equal(merged.train, np.sort(np.r_[split.train, split.val]))
    assert len(merged.val) == 0 and (len(merged.train), len(merged.test)) == (347, 62)
    assert merged.name == f"{split.name}+val-trains"


def test_training_on_validation_needs_a_fixed_number_of_epochs_and_a_split_with_one():
    from ser_jax.config import get_config
    from ser_jax.spec import resolve

    cfg = get_config()
    cfg.data.train_on_val = True
    with pytest.raises(ConfigError, match="train.select='last' \\(is 'val_uar'\\)"):
        resolve(cfg)
    cfg.train.select = "last"
    cfg.train.early_stopping_patience = 5
    with pytest.raises(ConfigError, match="early_stopping_patience=0 \\(is 5\\)"):
        resolve(cfg)
    cfg.train.early_stopping_patience = 0
    assert resolve(cfg).select == "last"
    cfg.data.split = "loso"
    with pytest.raises(ConfigError, match="data.split='loso' says it with data.val_count=0"):
        resolve(cfg)
