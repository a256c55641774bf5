"""Batches: seeded order, every file once an epoch, process shards, buckets, eval padding."""

from __future__ import annotations

import numpy as np
import pytest

from ser_jax.data.pipeline import ClipSet, TrainBatches, bucket_length, eval_batches
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


def test_process_shards_tile_the_global_batch():
    full = TrainBatches(clips(), 4, seed=1, max_samples=250, bucket_samples=50)
    parts = [
        TrainBatches(
            clips(), 4, seed=1, max_samples=250, bucket_samples=50, process_index=p, process_count=2
        )
        for p in range(2)
    ]
    for step in range(4):
        joined = {k: np.concatenate([parts[0][step][k], parts[1][step][k]]) for k in full[step]}
        for k in full[step]:
            np.testing.assert_array_equal(joined[k], full[step][k])
    with pytest.raises(ConfigError, match="does not divide by the 3 processes"):
        TrainBatches(clips(), 4, seed=1, max_samples=250, bucket_samples=50, process_count=3)


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


def test_long_clips_are_cropped_randomly_in_training_and_centred_in_eval():
    wave = np.arange(1000, dtype=np.float32)
    cs = ClipSet([wave, wave.copy()], [0, 1])
    tb = TrainBatches(cs, 2, seed=0, max_samples=200, bucket_samples=0)
    starts = {float(tb[s]["audio"][r, 0]) for s in range(5) for r in range(2)}
    assert len(starts) > 1
    (batch,) = list(eval_batches(cs, 2, max_samples=200, bucket_samples=0))
    assert batch["audio"][0, 0] == 400.0 and batch["length"][0] == 200


def test_eval_batches_cover_each_clip_once_with_weighted_padding():
    cs = clips(10)
    batches = list(eval_batches(cs, 4, max_samples=1000, bucket_samples=50))
    assert len(batches) == 3
    idx = np.concatenate([b["index"] for b in batches])
    w = np.concatenate([b["weight"] for b in batches])
    assert sorted(idx[w > 0].tolist()) == list(range(10))
    assert (idx[w == 0] == -1).all() and (w == 0).sum() == 2
    assert not any(b["augment"].any() for b in batches)


def test_batch_larger_than_training_set_is_refused():
    with pytest.raises(ConfigError, match="larger than the training set"):
        TrainBatches(clips(3), 4, seed=0, max_samples=100, bucket_samples=0)
