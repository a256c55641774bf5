"""End to end on the synthetic demo corpus: learning, determinism, resume, NaN guard, reports."""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_config

from ser_jax.data.pipeline import ClipSet
from ser_jax.data.prepare import prepare
from ser_jax.errors import ConfigError
from ser_jax.evaluation.scoring import clip_speakers, speaker_bn_clips
from ser_jax.frontend.augment import AugmentConfig
from ser_jax.frontend.logmel import FrontendConfig, log_mel
from ser_jax.models import create_model, frame_vectors, masked_functionals
from ser_jax.serving.export import export_model
from ser_jax.serving.predict import committee_files, evaluate_run, predict_command, predict_files
from ser_jax.serving.restore import load_model
from ser_jax.spec import resolve
from ser_jax.training.checkpoint import Checkpointer
from ser_jax.training.optim import make_schedule
from ser_jax.training.steps import batchnorm_stats_step, cached_training_features, training_features
from ser_jax.training.train import (
    NonFiniteLossError,
    build_trainer,
    train_and_evaluate,
)


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
    # the selected model's validation predictions, per file: the figures it was selected by
    val = json.loads((workdir / "val_metrics.json").read_text())
    val_rows = [json.loads(x) for x in (workdir / "val_predictions.jsonl").open()]
    assert len(val_rows) == val["count"] > 0
    assert not {r["utt_id"] for r in val_rows} & {json.loads(x)["utt_id"] for x in test_preds}
    assert val["uar"] == pytest.approx(results["val_at_selected"]["val_uar"], abs=1e-6)
    assert val["accuracy"] == pytest.approx(
        np.mean([r["label"] == r["predicted"] for r in val_rows])
    )


def test_finished_run_is_not_trained_or_tested_again(trained, capsys):
    workdir, results = trained
    again = train_and_evaluate(tiny_config(), workdir)
    assert again["test_accuracy"] == results["test_accuracy"]
    assert "not training it again" in capsys.readouterr().out


def test_a_finished_run_asked_for_more_evaluations_says_what_it_rescores(trained, tmp_path, capsys):
    workdir, results = trained
    copy = tmp_path / "run"
    shutil.copytree(workdir, copy, ignore=shutil.ignore_patterns("run.lock", "checkpoints"))
    cfg = tiny_config()
    cfg.eval.tta_shifts = (0.05,)
    again = train_and_evaluate(cfg, copy)
    out = capsys.readouterr().out
    assert f"{copy}: re-scoring tta beside its test from its saved model" in out
    assert again["test_accuracy"] == results["test_accuracy"]  # the plain test as it was
    assert again["tta"]["shifts_seconds"] == [0.05] and "scored_later" in again["tta"]
    assert (copy / "test_tta_predictions.jsonl").exists()
    # asked again: nothing left to score, nothing said
    train_and_evaluate(cfg, copy)
    assert "re-scoring" not in capsys.readouterr().out


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


def test_speaker_batchnorm_is_each_speakers_own_statistics():
    """eval.speaker_bn: a speaker's BatchNorm statistics pooled over batches are those of all
    the speaker's clips in one batch (padding and empty rows left out), and each speaker's
    clips are scored with their own, whoever else is scored in the same call."""

    cfg = tiny_config(epochs=1)
    cfg.data.split = "speakers"
    cfg.data.test_speakers, cfg.data.val_speakers = ("01",), ("02",)
    trainer = build_trainer(cfg)
    variables = trainer.variables(trainer.state)
    test = trainer.data.test
    assert len(test) > trainer.spec.batch_size  # pooled over more than one batch
    got = trainer.speaker_batchnorm(variables, test.waves)

    # all the clips in one batch, padded to the bucket the batches use (the last frames of a
    # clip see the same zeros after it)
    assert max(map(len, test.waves)) <= trainer.spec.max_samples
    audio = np.zeros((len(test), trainer.spec.max_samples), np.float32)
    for i, w in enumerate(test.waves):
        audio[i, : len(w)] = w
    lengths = np.array([len(w) for w in test.waves], np.int32)
    one = jax.jit(
        functools.partial(
            batchnorm_stats_step,
            trainer.model.clone(bn_momentum=0.0).apply,
            frontend=trainer.frontend,
        )
    )
    want, _ = one(variables, {"audio": jnp.asarray(audio), "length": jnp.asarray(lengths)})
    flat_got = jax.tree_util.tree_leaves_with_path(got)
    flat_want = dict(jax.tree_util.tree_leaves_with_path(want))
    assert len(flat_got) == len(flat_want) == 2 * 3  # mean and var of 3 BatchNorm layers
    for path, value in flat_got:
        # The first block's statistics pool exactly (up to float32 sums); deeper blocks see
        # input normalised by each batch's own statistics below them (as in precise
        # BatchNorm), so theirs are close to, not equal to, those of one batch of all clips.
        exact = path[0].key == "block0"
        np.testing.assert_allclose(
            value, flat_want[path], rtol=1e-4 if exact else 1e-2, atol=1e-4 if exact else 1e-3
        )
    # not the running statistics of training (fresh: 0 and 1)
    assert not np.allclose(got["block0"]["BatchNorm_0"]["mean"], 0.0, atol=1e-3)

    # each speaker with their own statistics, whoever else is in the call
    both = ClipSet(
        test.waves + trainer.data.val.waves,
        np.concatenate([test.labels, trainer.data.val.labels]),
        test.utts + trainer.data.val.utts,
    )
    alone = trainer.predict(test, variables, speaker_bn=True)
    together = trainer.predict(both, variables, speaker_bn=True)
    np.testing.assert_allclose(together[: len(test)], alone, rtol=1e-5, atol=1e-6)
    plain = trainer.predict(test, variables)
    assert np.abs(plain - alone).max() > 1e-3

    # eval.speaker_bn_source: the statistics come from the speaker's clips in bn_clips, not
    # from the clips scored: three clips scored with the whole test split's statistics are
    # scored as in the whole split, and differently from three clips' statistics alone
    few = ClipSet(test.waves[:3], test.labels[:3], test.utts[:3])
    pooled = trainer.predict(few, variables, speaker_bn=True, bn_clips=[test])
    np.testing.assert_allclose(pooled, alone[:3], rtol=1e-5, atol=1e-6)
    own = trainer.predict(few, variables, speaker_bn=True)
    assert np.abs(own - pooled).max() > 1e-3
    with pytest.raises(ConfigError, match="speaker 01 has no clips"):
        trainer.predict(few, variables, speaker_bn=True, bn_clips=[trainer.data.val])
    assert speaker_bn_clips(trainer.spec.speaker_bn_source, trainer.data) is None  # "scored"
    for source, want in (
        ("train", [trainer.data.train]),
        ("all", [trainer.data.train, trainer.data.val, test]),
    ):
        assert speaker_bn_clips(source, trainer.data) == want
    # "train" where the test speaker is in no training clip is refused before training
    cfg.eval.speaker_bn, cfg.eval.speaker_bn_source = True, "train"
    with pytest.raises(ConfigError, match="speaker 01 has no clips.*'scored' or 'all'"):
        build_trainer(cfg)
    cfg.eval.speaker_bn_source = "test"
    with pytest.raises(ConfigError, match="eval.speaker_bn_source='test'; choose scored"):
        build_trainer(cfg)


def test_speaker_normalisation_uses_each_speakers_own_stats(tmp_path, capsys):
    """normalize="speaker": training rows carry their speaker's log-mel mean/std (computed
    from all of that speaker's clips, unlabelled), evaluation scores each speaker's clips with
    that speaker's statistics, and the restored model reproduces the run's test numbers."""

    cfg = tiny_config(epochs=2)
    cfg.frontend.normalize = "speaker"
    cfg.data.split = "speakers"
    cfg.data.test_speakers, cfg.data.val_speakers = ("01",), ("02",)
    trainer = build_trainer(cfg)
    data = trainer.data
    raw = dataclasses.replace(trainer.frontend, normalize="none")

    def raw_feats(waves):
        audio = np.zeros((len(waves), max(map(len, waves))), np.float32)
        for i, w in enumerate(waves):
            audio[i, : len(w)] = w
        f, n = log_mel(jnp.asarray(audio), jnp.asarray([len(w) for w in waves]), raw)
        return np.asarray(f, np.float64), np.asarray(n)

    # every speaker's stats: mean/std over the valid frames of all its clips, in any split
    speakers = sorted(trainer.speaker_stats)
    assert speakers == ["01", "02", "03", "04"]
    for s in ("01", "03"):  # a test speaker and a training speaker
        waves = [
            w
            for c in (data.train, data.val, data.test)
            for w, u in zip(c.waves, c.utts, strict=True)
            if u.speaker == s
        ]
        f, n = raw_feats(waves)
        frames = np.concatenate([x[:k] for x, k in zip(f, n, strict=True)])
        got = trainer.speaker_stats[s]
        np.testing.assert_allclose(got["mean"], frames.mean(0), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(got["std"], frames.std(0), rtol=1e-3, atol=1e-4)

    # a training batch carries each row's speaker's stats, and its features use them
    batch = trainer.batches[0]
    train_speakers = clip_speakers(data.train)
    for r, i in enumerate(batch["index"]):
        want = trainer.speaker_stats[train_speakers[i]]
        np.testing.assert_array_equal(batch["norm_mean"][r], want["mean"])
        np.testing.assert_array_equal(batch["norm_std"][r], want["std"])

    feats, flen = training_features(  # the train step's features, augmentation off
        {k: jnp.asarray(v) for k, v in batch.items()},
        trainer.state.feature_stats,  # the model's (0 / 1): must not be used here
        0,
        frontend=trainer.frontend,
        augment=AugmentConfig(),
        offline=False,
    )
    f, n = raw_feats([w[:k] for w, k in zip(batch["audio"], batch["length"], strict=True)])
    for r in range(len(f)):
        want = (f[r, : n[r]] - batch["norm_mean"][r]) / batch["norm_std"][r]
        np.testing.assert_allclose(np.asarray(feats)[r, : n[r]], want, atol=2e-4)
        assert not np.asarray(feats)[r, n[r] :].any()

    # evaluation: a speaker's statistics move that speaker's scores only
    mixed = data.train.subset(range(0, len(data.train), 5))  # clips of 2 speakers
    assert set(clip_speakers(mixed)) == {"03", "04"}
    before = trainer.predict(mixed)
    trainer.speaker_stats["03"] = {
        k: v + (1.0 if k == "mean" else 0.0) for k, v in trainer.speaker_stats["03"].items()
    }
    after = trainer.predict(mixed)
    is03 = np.array(clip_speakers(mixed)) == "03"
    np.testing.assert_array_equal(after[~is03], before[~is03])
    assert np.abs(after[is03] - before[is03]).max() > 1e-4

    _check_the_restored_speaker_normalised_run(cfg, data, tmp_path, capsys)


def _check_the_restored_speaker_normalised_run(cfg, data, tmp_path, capsys):
    """The run of ``cfg`` (normalize="speaker"), restored: its test numbers, its predictions
    of files, a long recording's windows, and no export."""
    results = train_and_evaluate(cfg, tmp_path / "run")
    metrics = evaluate_run(str(tmp_path / "run"), data=None, corpus="", out=str(tmp_path / "ev"))
    assert metrics["accuracy"] == pytest.approx(results["test_accuracy"], abs=1e-9)
    assert metrics["uar"] == pytest.approx(results["test_uar"], abs=1e-9)
    model = load_model(tmp_path / "run")
    assert model.per_speaker
    rows = predict_files(model, [u.path for u in data.test.utts[:3]])
    assert all("probs" in r for r in rows)
    assert "taken as one speaker's recordings" in capsys.readouterr().err
    # a long recording's windows, normalised like the files scored with it, average to its score
    long = np.concatenate(data.test.waves[:4])
    waves = [long, data.test.waves[4]]
    _, _, windows = model.window_probabilities(long, stats=model.speaker_stats(waves)["-"])
    assert len(windows) > 2
    np.testing.assert_allclose(windows.mean(0), model.probabilities(waves)[0], atol=1e-5)
    with pytest.raises(ConfigError, match="normalize='speaker'.*no input"):
        export_model(model, tmp_path / "m.jaxexport")


def test_speaker_batches_train_a_run_with_one_step_per_part_of_each_speaker(tmp_path):
    """data.speaker_batches: an epoch is ceil(n / batch) steps per training speaker, and the
    training accuracy of the epoch counts every training clip once (the filling rows none)."""

    c = tiny_config(epochs=1)
    c.data.speaker_batches = True
    data = prepare(c)
    per_speaker: dict[str, int] = {}
    for u in data.train.utts:
        per_speaker[u.speaker] = per_speaker.get(u.speaker, 0) + 1
    assert len(per_speaker) == 4
    results = train_and_evaluate(c, tmp_path / "run", data=data)
    assert np.isfinite(results["test_loss"])
    (row,) = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert row["step"] == sum(-(-n // c.train.batch_size) for n in per_speaker.values())
    assert row["step"] > len(data.train) // c.train.batch_size  # not the mixed batches' count
    correct = row["train_accuracy"] * len(data.train)
    assert abs(correct - round(correct)) < 1e-6  # a fraction of the real clips


def test_cepstral_functionals_train_and_restore_with_speaker_batchnorm(tmp_path, trained, capsys):
    """The functionals_mfcc recipe on the demo corpus (shrunk): cepstral coefficients and
    spectral descriptors with deltas, dataset statistics of 19 bands, speaker batches and
    speaker-adaptive BatchNorm; the restored model reproduces the run's speaker-BN
    probabilities and they differ from the plain ones."""

    c = tiny_config(epochs=2)
    c.frontend.normalize = "dataset"
    c.frontend.mfcc = 13
    c.frontend.descriptors = True
    c.frontend.deltas = 2
    c.model.name = "functionals"
    c.model.mlp_hidden = (32,)
    c.data.speaker_batches = True
    c.eval.speaker_bn = True
    data = prepare(c)
    results = train_and_evaluate(c, tmp_path / "run", data=data)
    assert np.isfinite(results["test_loss"]) and "test_uar" in results["speaker_bn"]
    model = load_model(tmp_path / "run")
    assert model.variables.feature_stats["mean"].shape == (19,)
    rows = [
        json.loads(line) for line in (tmp_path / "run/test_speaker_bn_predictions.jsonl").open()
    ]
    names = model.label_names
    recorded = np.array([[r["probs"][n] for n in names] for r in rows])
    by_id = {u.utt_id: (w, u.speaker) for u, w in zip(data.test.utts, data.test.waves, strict=True)}
    waves = [by_id[r["utt_id"]][0] for r in rows]
    speakers = [by_id[r["utt_id"]][1] for r in rows]
    adapted = model.probabilities(waves, speakers=speakers, speaker_bn=True)
    np.testing.assert_allclose(adapted, recorded, atol=2e-3)
    plain = model.probabilities(waves)
    assert np.abs(plain - adapted).max() > 1e-2
    # a committee with the CNN-LSTM of the session's run: each file's probabilities are the
    # two models' own (speaker-adaptive) probabilities averaged

    paths = [r["path"] for r in rows[:4]]
    cnn = load_model(trained[0])
    alone = [predict_files(m, paths, speaker_bn=True) for m in (model, cnn)]
    both = committee_files([model, cnn], paths, speaker_bn=True)
    for i, row in enumerate(both):
        want = [(alone[0][i]["probs"][n] + alone[1][i]["probs"][n]) / 2 for n in names]
        np.testing.assert_allclose([row["probs"][n] for n in names], want, atol=2e-5)
        assert row["label"] == names[int(np.argmax(want))]
    capsys.readouterr()  # what training printed
    assert (
        predict_command(f"{tmp_path / 'run'},{trained[0]}", paths, as_json=True, speaker_bn=True)
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    assert [r["probs"] for r in printed] == [r["probs"] for r in both]
    with pytest.raises(ConfigError, match="a committee of 2 models has no timeline"):
        predict_command(f"{tmp_path / 'run'},{trained[0]}", paths, as_json=True, timeline="t.png")


def _cepstral_tiny(cache: bool, **train):
    c = tiny_config(epochs=2, **train)
    c.frontend.normalize = "dataset"
    c.frontend.mfcc = 13
    c.frontend.descriptors = True
    c.frontend.deltas = 2
    c.model.name = "functionals"
    c.model.mlp_hidden = ()
    c.model.statistics = ("mean", "std", "p10", "p50", "change", "skew")
    c.data.speaker_batches = True  # filling rows: index -1 takes the cache's empty row
    c.train.cache_features = cache
    return c


def _test_probs(run):
    return np.array(
        [list(json.loads(r)["probs"].values()) for r in open(run / "test_predictions.jsonl")]
    )


@pytest.mark.parametrize("model", ["functionals", "cnn_lstm", "functionals_offline"])
def test_feature_cache_trains_the_model_the_step_front_end_trains(tmp_path, model):
    """train.cache_features: the same run from features (or, for the functionals model, its
    statistics) computed once: the same losses, test metrics and probabilities as with the
    front-end in every step; a cached batch holds exactly its own rows (under offline
    augmentation: each clip's clean original and its fixed augmented copy)."""

    def cfg(cache):
        if model == "cnn_lstm":
            return tiny_config(epochs=2, cache_features=cache)
        c = _cepstral_tiny(cache)
        if model == "functionals_offline":
            c.augment.mode, c.augment.copies = "offline", 1
            c.augment.noise_prob = c.augment.pitch_shift_prob = 1.0
        return c

    data = prepare(cfg(False))
    runs = {}
    for cache in (False, True):
        runs[cache] = train_and_evaluate(cfg(cache), tmp_path / str(cache), data=data)
    assert runs[True]["test_accuracy"] == runs[False]["test_accuracy"]
    assert runs[True]["test_uar"] == runs[False]["test_uar"]
    np.testing.assert_allclose(
        _test_probs(tmp_path / "True"), _test_probs(tmp_path / "False"), atol=1e-4
    )
    losses = [
        [
            json.loads(r).get("train_loss", json.loads(r).get("train_loss_step"))
            for r in open(tmp_path / str(c) / "metrics.jsonl")
        ]
        for c in (False, True)
    ]
    assert len(losses[0]) >= 2
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-4)

    trainer = build_trainer(cfg(True), data)
    cache = trainer.members[0].feature_cache
    copies = 2 if model == "functionals_offline" else 1
    assert len(cache["feats"]) == copies * len(data.train) + 1 and cache["frames"][-1] == 0
    if model == "functionals_offline":  # a copy differs from its clean original
        n = len(data.train)
        assert np.abs(cache["feats"][n : 2 * n] - cache["feats"][:n]).max() > 0.1
    batch = trainer.batch(1, [True])
    assert "audio" not in batch
    plain = trainer.batches[1]  # the same step's clips as audio

    feats, frames = training_features(
        {k: jax.numpy.asarray(v) for k, v in plain.items()},
        trainer.state.feature_stats,
        0,
        frontend=trainer.frontend,
        augment=trainer.augment,
        offline=model == "functionals_offline",
    )
    np.testing.assert_array_equal(batch["frames"], np.asarray(frames))
    if model.startswith("functionals"):
        m = create_model(cfg(True).model, len(data.label_names))
        feats = masked_functionals(frame_vectors(feats, 0), frames, m.statistics)
        assert batch["feats"].ndim == 2
    np.testing.assert_allclose(batch["feats"], np.asarray(feats), atol=1e-4)
    filled = batch["index"] < 0
    assert not np.asarray(batch["frames"])[filled].any()


def test_feature_cache_refuses_what_it_cannot_hold():
    """Augmentation on, a clip longer than data.max_seconds (random crops), and clips in
    different buckets are refused with the setting and the cause."""

    c = tiny_config(cache_features=True)
    c.augment.noise_prob = 0.5
    with pytest.raises(ConfigError, match=r"cache_features.*online augmentation.*\(noise_prob\)"):
        resolve(c)
    c.augment.noise_prob = 0.0
    c.frontend.normalize = "speaker"
    with pytest.raises(ConfigError, match="cache_features.*normalize='speaker'"):
        resolve(c)

    fe = FrontendConfig(sample_rate=16000, n_mels=16, n_fft=256, win_length=256)
    stats = {"mean": np.zeros(16, np.float32), "std": np.ones(16, np.float32)}
    rng = np.random.default_rng(0)
    kw = dict(
        frontend=fe,
        augment=AugmentConfig(),
        copies=0,
        seed=0,
        batch_size=4,
        max_samples=8000,
        bucket_samples=4000,
    )
    with pytest.raises(ConfigError, match="training clip 1 has 9000 samples.*8000"):
        cached_training_features([rng.normal(size=n) for n in (8000, 9000)], stats, **kw)
    with pytest.raises(ConfigError, match="2 buckets \\(4000..8000"):
        cached_training_features([rng.normal(size=n) for n in (3000, 7000)], stats, **kw)
    out = cached_training_features(
        [rng.normal(size=n).astype(np.float32) for n in (5000, 7000)], stats, **kw
    )
    assert out["feats"].shape[0] == 3 and list(out["frames"]) == [32, 44, 0]
