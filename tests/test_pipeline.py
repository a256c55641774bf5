"""Batches: seeded order, every file once an epoch, buckets, evaluation windows and padding."""

from __future__ import annotations

import numpy as np
import pytest

from ser_jax.data.pipeline import (
    ClipSet,
    TrainBatches,
    bucket_length,
    window_batches,
    window_starts,
    windows,
)
from ser_jax.errors import ConfigError


def clips(n=10, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(50, 300, n)
    waves = [np.full(k, i + 1, np.float32) for i, k in enumerate(lengths)]  # value = id + 1
    return ClipSet(waves, np.arange(n) % 3)


def test_bucket_length():
    assert bucket_length(101, 50, 1000) == 150
    assert bucket_length(100, 50, 1000) == 100
    assert bucket_length(999, 500, 800) == 800


def test_train_batches_are_a_function_of_seed_and_step():
    a = TrainBatches(clips(), 4, seed=3, max_samples=250, bucket_samples=50)
    b = TrainBatches(clips(), 4, seed=3, max_samples=250, bucket_samples=50)
    for step in (0, 1, 5, 11):
        for k in a[step]:
            np.testing.assert_array_equal(a[step][k], b[step][k])
    c = TrainBatches(clips(), 4, seed=4, max_samples=250, bucket_samples=50)
    assert not np.array_equal(a[0]["index"], c[0]["index"])


def test_every_file_once_per_epoch_and_fresh_order_each_epoch():
    tb = TrainBatches(clips(12), 4, seed=0, max_samples=1000, bucket_samples=50)
    assert tb.steps_per_epoch == 3
    epochs = [np.concatenate([tb[e * 3 + s]["index"] for s in range(3)]) for e in range(3)]
    for order in epochs:
        assert sorted(order.tolist()) == list(range(12))
    assert not np.array_equal(epochs[0], epochs[1])
    batch = tb[0]
    for row in range(4):  # audio rows are the clip's samples, zero after its length
        n = batch["length"][row]
        assert (batch["audio"][row, :n] == batch["index"][row] + 1).all()
        assert (batch["audio"][row, n:] == 0).all()
    assert batch["audio"].shape[1] % 50 == 0
    # online augmentation: a fresh aug_id per (epoch, file)
    ids = np.concatenate([tb[s]["aug_id"] for s in range(9)])
    assert len(set(ids.tolist())) == 36


def test_offline_copies_keep_their_augmentation_identity():
    tb = TrainBatches(clips(6), 3, seed=0, max_samples=1000, bucket_samples=0, copies=2)
    assert tb.steps_per_epoch == 6  # 6 files x 3 versions / 3
    seen = {}
    for step in range(12):
        b = tb[step]
        for f, aid, aug in zip(b["index"], b["aug_id"], b["augment"], strict=True):
            seen.setdefault(int(aid), set()).add((int(f), bool(aug)))
    assert len(seen) == 18  # the same 18 (file, copy) identities in both epochs
    assert all(len(v) == 1 for v in seen.values())
    assert sum(1 for v in seen.values() if not next(iter(v))[1]) == 6  # one clean copy per file


def test_long_clips_are_cropped_randomly_in_training_and_windowed_in_eval():
    wave = np.arange(1000, dtype=np.float32)
    cs = ClipSet([wave, wave.copy()], [0, 1])
    tb = TrainBatches(cs, 2, seed=0, max_samples=200, bucket_samples=0)
    starts = {float(tb[s]["audio"][r, 0]) for s in range(5) for r in range(2)}
    assert len(starts) > 1
    # evaluation: half-overlapping windows covering the clip, the last ending at its end
    assert window_starts(1000, 200) == [0, 100, 200, 300, 400, 500, 600, 700, 800]
    assert window_starts(1050, 200) == [0, 100, 200, 300, 400, 500, 600, 700, 800, 850]
    assert window_starts(150, 200) == [0]
    pieces, owner = windows([wave, wave[:150]], 200)
    assert owner.tolist() == [0] * 9 + [1]
    assert pieces[1][0] == 100.0 and len(pieces[-1]) == 150


def test_window_batches_cover_each_piece_once_with_weighted_padding():
    cs = clips(10)
    batches = list(window_batches(cs.waves, 4, max_samples=1000, bucket_samples=50))
    assert len(batches) == 3
    rows = np.concatenate([r for r, _ in batches])
    assert sorted(rows.tolist()) == list(range(10))
    w = np.concatenate([b["weight"] for _, b in batches])
    assert w.sum() == 10 and (w[-2:] == 0).all()
    for r, b in batches:
        assert b["audio"].shape[1] % 50 == 0
        for i, j in enumerate(r):
            assert (b["audio"][i, : b["length"][i]] == j + 1).all()


def test_score_clips_averages_window_probabilities():
    from ser_jax.evaluation.scoring import score_clips

    def predict(batch):  # "probability" of class 0 = the window's mean sample value
        m = batch["audio"].sum(1) / np.maximum(batch["length"], 1)
        return np.stack([m, 1 - m], axis=1)

    long = np.linspace(0, 1, 1000, dtype=np.float32)
    short = np.full(120, 0.25, np.float32)
    probs = score_clips(predict, [long, short], 2, batch_size=3, max_samples=200, bucket_samples=0)
    each = [long[s : s + 200].mean() for s in window_starts(1000, 200)]
    np.testing.assert_allclose(probs[0, 0], np.mean(each), rtol=1e-6)
    np.testing.assert_allclose(probs[1], [0.25, 0.75], rtol=1e-6)

    # warps: every window also scored with the warp in its batch, all views averaged
    def warped(batch):  # class 0 = the window's mean times its warp (1 without one)
        w = batch.get("warp", np.ones(len(batch["length"]), np.float32))
        assert w.shape == batch["length"].shape
        p = predict(batch)[:, 0] * w
        return np.stack([p, 1 - p], axis=1)

    got = score_clips(
        warped, [long, short], 2, batch_size=3, max_samples=200, bucket_samples=0, warps=(0.5, 2.0)
    )
    np.testing.assert_allclose(got[0, 0], np.mean(each) * (1 + 0.5 + 2.0) / 3, rtol=1e-6)
    np.testing.assert_allclose(got[1, 0], 0.25 * 3.5 / 3, rtol=1e-6)


def test_batch_larger_than_training_set_is_refused():
    with pytest.raises(ConfigError, match="larger than the training set"):
        TrainBatches(clips(3), 4, seed=0, max_samples=100, bucket_samples=0)


def test_speaker_batches_hold_one_speaker_each_and_every_file_once_an_epoch():
    cs = clips(23, seed=1)
    speakers = ["a"] * 9 + ["b"] * 10 + ["c"] * 4  # parts: a 5+4, b 4+3+3, c 4
    tb = TrainBatches(cs, 5, seed=2, max_samples=1000, bucket_samples=50, speakers=speakers)
    assert tb.steps_per_epoch == 2 + 2 + 1  # ceil(9/5) + ceil(10/5) + ceil(4/5)
    epochs = []
    for e in range(3):
        seen = []
        for s in range(tb.steps_per_epoch):
            batch = tb[e * tb.steps_per_epoch + s]
            real = batch["weight"] > 0
            rows = batch["index"][real]
            assert len({speakers[i] for i in rows}) == 1  # one speaker a batch
            assert batch["audio"].shape[0] == 5 and len(batch["label"]) == 5
            # near-equal parts: a speaker's parts differ by at most one clip
            who = speakers[rows[0]]
            n = speakers.count(who)
            k = -(-n // 5)
            assert len(rows) in (n // k, -(-n // k))
            # the filling rows are empty and count nothing
            assert (batch["length"][~real] == 0).all() and (batch["audio"][~real] == 0).all()
            assert (batch["index"][~real] == -1).all() and not batch["augment"][~real].any()
            assert (batch["label"][real] == cs.labels[rows]).all()
            for r in np.flatnonzero(real):
                assert (batch["audio"][r, : batch["length"][r]] == batch["index"][r] + 1).all()
            seen.extend(rows.tolist())
        assert sorted(seen) == list(range(23))  # every file once an epoch, none dropped
        epochs.append(seen)
    assert epochs[0] != epochs[1]  # a fresh plan each epoch
    again = TrainBatches(cs, 5, seed=2, max_samples=1000, bucket_samples=50, speakers=speakers)
    for step in (7, 0, 3):  # a function of (seed, step), in any order
        for k, v in tb[step].items():
            np.testing.assert_array_equal(again[step][k], v)
    with pytest.raises(ValueError, match="2 speakers for 23 clips"):
        TrainBatches(cs, 5, seed=2, max_samples=1000, bucket_samples=50, speakers=["a", "b"])
