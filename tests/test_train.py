"""End to end on the synthetic demo corpus: learning, determinism, resume, NaN guard, reports."""

from __future__ import annotations

import json
import re

import jax
import numpy as np
import pytest
from conftest import tiny_config

from ser_jax.errors import ConfigError
from ser_jax.optim import make_schedule
from ser_jax.train import NonFiniteLossError, build_trainer, train_and_evaluate


def test_training_beats_chance_clearly(trained):
    _, results = trained
    # 7 classes: chance is 0.14.
    assert results["test_accuracy"] >= 0.5, results
    assert results["test_uar"] >= 0.5, results


def test_run_directory_has_reports(trained):
    workdir, results = trained
    for name in (
        "config.json",
        "run_info.json",
        "metrics.jsonl",
        "results.json",
        "test_metrics.json",
        "test_predictions.jsonl",
        "test_confusion.png",
        "curves.png",
    ):
        assert (workdir / name).exists(), name
    info = json.loads((workdir / "run_info.json").read_text())
    assert info["label_map"]["anger"] == 0 and info["seed"] == 0
    assert info["versions"]["jax"]
    rows = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in rows if "epoch" in r]
    assert [r["epoch"] for r in epochs] == list(range(1, 21))
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    # the selected epoch is the best on validation, never chosen by test
    best = max(epochs, key=lambda r: r["val_uar"])
    # ties go to the later epoch
    assert results["selected_step"] == max(
        r["step"] for r in epochs if r["val_uar"] == best["val_uar"]
    )
    test_preds = (workdir / "test_predictions.jsonl").read_text().splitlines()
    assert len(test_preds) == json.loads((workdir / "test_metrics.json").read_text())["count"]


def test_finished_run_is_not_trained_or_tested_again(trained, capsys):
    workdir, results = trained
    again = train_and_evaluate(tiny_config(), workdir)
    assert again["test_accuracy"] == results["test_accuracy"]
    assert "not training it again" in capsys.readouterr().out


def test_same_seed_same_metrics(tmp_path):
    a = train_and_evaluate(tiny_config(epochs=2), tmp_path / "a")
    b = train_and_evaluate(tiny_config(epochs=2), tmp_path / "b")
    ha = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    hb = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    strip = lambda rows: [  # noqa: E731
        {k: v for k, v in r.items() if k not in ("epoch_seconds", "samples_per_second")}
        for r in rows
    ]
    assert strip(ha) == strip(hb)
    assert a["test_accuracy"] == b["test_accuracy"]


def test_divergence_stops_with_the_step_named_and_no_later_checkpoint(tmp_path):
    # lr 1e-2 for one epoch, then x1e30: training diverges early in the second epoch.
    cfg = tiny_config(
        epochs=2,
        schedule="piecewise",
        drop_period=1,
        drop_factor=1e30,
        log_every_steps=1,
        checkpoint_every_steps=1,
        keep_checkpoints=100,
    )
    with pytest.raises(NonFiniteLossError, match=r"at step \d+ ") as err:
        train_and_evaluate(cfg, tmp_path / "nan")
    step = int(re.search(r"at step (\d+) ", str(err.value)).group(1))
    spe = build_trainer(cfg).steps_per_epoch
    assert spe <= step < 2 * spe
    assert "no checkpoint of a later step" in str(err.value)
    ckpts = tmp_path / "nan" / "checkpoints"
    saved = sorted(int(p.name) for p in ckpts.iterdir() if p.name.isdigit())
    # a checkpoint after every step before the bad one, and none from it on (unguarded, the
    # run would go on writing checkpoints of NaN states to the end)
    assert saved == list(range(1, step + 1))
    from ser_jax.checkpoint import Checkpointer

    ck = Checkpointer(ckpts, asynchronous=False)
    params = ck.restore_variables(step, ("params",))["params"]
    ck.close()
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(params))


def test_piecewise_schedule_drops_like_matlab():
    c = tiny_config(schedule="piecewise", learning_rate=1e-3, drop_factor=0.5, drop_period=1)
    sched = make_schedule(c.train, steps_per_epoch=10)
    assert float(sched(0)) == pytest.approx(1e-3)
    assert float(sched(9)) == pytest.approx(1e-3)
    assert float(sched(10)) == pytest.approx(5e-4)
    assert float(sched(25)) == pytest.approx(2.5e-4)


def test_pooling_away_the_shortest_clip_is_refused():
    c = tiny_config()
    c.model.filters = (4,) * 8
    c.model.pools = ((2, 1),) * 8  # 256x in time: more than the ~100 frames of a 1 s clip
    with pytest.raises(ConfigError, match="pools"):
        build_trainer(c)


def test_dataset_normalisation_uses_training_stats_and_saves_them(tmp_path):
    import dataclasses

    import jax.numpy as jnp
    import numpy as np

    from ser_jax.frontend import log_mel
    from ser_jax.restore import load_model

    cfg = tiny_config(epochs=1)
    cfg.frontend.normalize = "dataset"
    trainer = build_trainer(cfg)
    raw = dataclasses.replace(trainer.frontend, normalize="none")
    waves = trainer.data.train.waves  # one padded batch; valid frames are padding-free
    audio = np.zeros((len(waves), max(map(len, waves))), np.float32)
    for i, w in enumerate(waves):
        audio[i, : len(w)] = w
    feats, flen = log_mel(jnp.asarray(audio), jnp.asarray([len(w) for w in waves]), raw)
    feats, flen = np.asarray(feats, np.float64), np.asarray(flen)
    allf = np.concatenate([f[:n] for f, n in zip(feats, flen, strict=True)])
    stats = trainer.state.feature_stats
    np.testing.assert_allclose(stats["mean"], allf.mean(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(stats["std"], allf.std(0), rtol=1e-3)
    train_and_evaluate(cfg, tmp_path / "run")
    restored = load_model(tmp_path / "run").variables.feature_stats
    np.testing.assert_allclose(restored["mean"], stats["mean"], rtol=1e-6)


def test_release_split_trains_on_every_file_and_tests_nothing(tmp_path):
    from ser_jax.restore import load_model

    cfg = tiny_config(epochs=2, select="last")
    cfg.data.split = "all"
    results = train_and_evaluate(cfg, tmp_path / "rel")
    assert results["test_accuracy"] is None and results["epochs_run"] == 2
    info = json.loads((tmp_path / "rel" / "run_info.json").read_text())["data"]
    assert info["train"]["files"] == 4 * 4 * 7 and info["val"]["files"] == 0
    model = load_model(tmp_path / "rel")
    assert model.finished and model.step == results["selected_step"]
    cfg.train.select = "val_uar"
    with pytest.raises(ConfigError, match="data.split='all'.*train.select='last'"):
        build_trainer(cfg)
