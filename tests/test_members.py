"""Many models in one compiled step (``train.members``): each member trains as its sequential
twin would, writes the same run directory, and the experiments read them unchanged."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import tiny_config

from ser_jax.errors import ConfigError
from ser_jax.protocols import run_seeds, with_overrides
from ser_jax.training.train import build_trainer, train_and_evaluate, train_members

TIMING = ("epoch_seconds", "samples_per_second")


def rows(run):
    out = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        out.append({k: v for k, v in json.loads(line).items() if k not in TIMING})
    return out


def assert_twins(member, sequential, rel=1e-4):
    """Same steps and epochs, losses within ``rel``, same selection and test metrics."""
    a, b = rows(member), rows(sequential)
    assert [(r["step"], "epoch" in r) for r in a] == [(r["step"], "epoch" in r) for r in b]
    for ra, rb in zip(a, b, strict=True):
        for k, v in rb.items():
            if "loss" in k:
                assert ra[k] == pytest.approx(v, rel=rel), (k, ra, rb)
            elif k not in ("lr",):
                assert ra[k] == pytest.approx(v, abs=1e-6), (k, ra, rb)
        if "lr" in rb:
            assert ra["lr"] == pytest.approx(rb["lr"], rel=1e-6)
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (member, sequential))
    for k in ("selected_step", "selected_epoch", "epochs_run", "test_accuracy", "test_uar"):
        assert ra[k] == rb[k], k
    assert ra["test_loss"] == pytest.approx(rb["test_loss"], rel=rel)
    assert ra["members"] > 1 and rb["members"] == 1


def speaker_configs():
    """Two members whose training sets differ in size: different held-out speakers."""
    base = tiny_config(epochs=3, schedule="cosine", warmup_epochs=1)
    base.augment.time_shift_prob = 0.5
    base.augment.noise_prob = 0.5
    base.data.split = "speakers"
    a = with_overrides(base, **{"data.test_speakers": ("01",), "data.val_speakers": ("02",)})
    b = with_overrides(
        base, seed=1, **{"data.test_speakers": ("01", "02"), "data.val_speakers": ("03",)}
    )
    return a, b


def test_each_member_trains_like_its_sequential_twin(tmp_path):
    a, b = speaker_configs()
    ta, tb = (build_trainer(c) for c in (a, b))
    # different training sets: each member keeps its own epoch (steps) and schedule
    assert ta.steps_per_epoch != tb.steps_per_epoch
    train_members([a, b], [tmp_path / "m" / "a", tmp_path / "m" / "b"], job_dir=tmp_path / "m")
    for name, cfg in (("a", a), ("b", b)):
        train_and_evaluate(cfg, tmp_path / "s" / name)
        member, sequential = tmp_path / "m" / name, tmp_path / "s" / name
        assert_twins(member, sequential)
        for f in ("config.json", "run_info.json", "curves.png", "test_confusion.png"):
            assert (member / f).exists(), f
        epochs = [r for r in rows(member) if "epoch" in r]
        spe = (ta if name == "a" else tb).steps_per_epoch
        assert [r["step"] for r in epochs] == [spe * e for e in (1, 2, 3)]


def test_members_must_share_everything_but_seed_and_split():
    a, b = speaker_configs()
    b = with_overrides(b, **{"model.lstm_hidden": 8})
    with pytest.raises(ConfigError, match=r"differ in \['model.lstm_hidden'\]"):
        build_trainer([a, b], stacked=True)


def test_seeds_as_members_share_a_split_and_report_the_ensemble(tmp_path):
    cfg = tiny_config(epochs=2)
    cfg.data.split_seed = 0
    cfg.train.members = 3
    summary = run_seeds(cfg, tmp_path, seeds=3)
    assert [r["seed"] for r in summary["per_seed"]] == [0, 1, 2]
    assert summary["ensemble"]["runs"] == 3
    assert len({r["test_accuracy"] for r in summary["per_seed"]}) >= 1
    probs = [
        [json.loads(x)["probs"] for x in (tmp_path / f"seed{s}" / "test_predictions.jsonl").open()]
        for s in range(3)
    ]
    assert not np.allclose(  # three different models, not one copied three times
        [list(p.values()) for p in probs[0]], [list(p.values()) for p in probs[1]]
    )
    assert (tmp_path / "members0" / "checkpoints").is_dir()
