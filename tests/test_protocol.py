"""Protocol guards: augmentation on training data only, augmented copies inside their file's
split, model selection on validation only, and the test split evaluated once, at the end."""

from __future__ import annotations

import collections
import hashlib

import jax
import numpy as np
from conftest import tiny_config

from ser_jax.data.prepare import prepare
from ser_jax.training.train import Trainer, build_trainer, train_and_evaluate


def _augmented(cfg):
    cfg.augment.noise_prob = 1.0
    cfg.augment.time_shift_prob = 1.0
    cfg.augment.time_mask_prob = 1.0
    return cfg


def test_evaluation_never_augments():
    plain_cfg = tiny_config(epochs=1)
    data = prepare(plain_cfg, progress=False)
    plain = build_trainer(plain_cfg, data)
    noisy = build_trainer(_augmented(tiny_config(epochs=1)), data)
    assert noisy.augment.enabled and not plain.augment.enabled
    # same seed, same initial weights: only the augmentation settings differ
    for x, y in zip(
        jax.tree.leaves(plain.state.params), jax.tree.leaves(noisy.state.params), strict=True
    ):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(plain.predict(data.val), noisy.predict(data.val))


def test_offline_copies_come_from_the_training_split_only():
    cfg = tiny_config(epochs=1)
    cfg.augment.mode, cfg.augment.copies = "offline", 2
    data = prepare(_augmented(cfg), progress=False)
    trainer = build_trainer(cfg, data)

    def key(wave):
        return hashlib.sha1(np.asarray(wave, np.float32).tobytes()).hexdigest()

    owner = {}
    for part in ("train", "val", "test"):
        for u, w in zip(getattr(data, part).utts, getattr(data, part).waves, strict=True):
            owner[key(w)] = (part, u.utt_id)
    # By content, not by the batch's own index: every row of an epoch is a training clip, and
    # each training clip comes copies + 1 times (the clean original and its copies).
    seen = collections.Counter()
    epoch = trainer.steps_per_epoch
    for step in range(epoch):
        batch = trainer.batches[step]
        for row in range(cfg.train.batch_size):
            part, utt = owner[key(batch["audio"][row, : batch["length"][row]])]
            assert part == "train", (part, utt)
            seen[utt] += 1
    assert sum(seen.values()) == epoch * cfg.train.batch_size
    assert max(seen.values()) <= cfg.augment.copies + 1


def test_test_split_is_evaluated_once_after_selection(tmp_path, monkeypatch):
    calls = []
    original = Trainer.evaluate

    def spy(self, clips, variables=None):
        which = "test" if clips is self.data.test else "val" if clips is self.data.val else "?"
        calls.append(which)
        return original(self, clips, variables)

    monkeypatch.setattr(Trainer, "evaluate", spy)
    train_and_evaluate(tiny_config(epochs=3), tmp_path / "run")
    # One validation pass per epoch, one for the selected model's saved validation
    # predictions, then the test split: once, and last.
    assert calls == ["val", "val", "val", "val", "test"]
