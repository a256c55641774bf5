"""Protocol guards: augmentation on training data only, augmented copies inside their file's
split, model selection on validation only, and the test split evaluated once, at the end."""

from __future__ import annotations

import jax
import numpy as np
from conftest import tiny_config

from ser_jax.data.prepare import prepare
from ser_jax.train import Trainer, build_trainer, train_and_evaluate


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
    train_ids = {u.utt_id for u in data.train.utts}
    assert not train_ids & {u.utt_id for u in data.val.utts + data.test.utts}
    seen = 0
    for step in range(trainer.steps_per_epoch):
        batch = trainer.batches[step]
        for row, idx in enumerate(batch["index"]):
            wave = data.train.waves[idx]
            np.testing.assert_array_equal(batch["audio"][row, : len(wave)], wave)
            seen += 1
    assert seen == trainer.steps_per_epoch * cfg.train.batch_size


def test_test_split_is_evaluated_once_after_selection(tmp_path, monkeypatch):
    calls = []
    original = Trainer.evaluate

    def spy(self, clips, state=None):
        which = "test" if clips is self.data.test else "val" if clips is self.data.val else "?"
        calls.append(which)
        return original(self, clips, state)

    monkeypatch.setattr(Trainer, "evaluate", spy)
    train_and_evaluate(tiny_config(epochs=3), tmp_path / "run")
    assert calls == ["val", "val", "val", "test"]
