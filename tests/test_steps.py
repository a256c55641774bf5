"""The train step's pieces: mixup features and labels, the loss (weights, padding, the
logit-adjusted loss), the per-class terms from the training labels, and the EMA update."""

from __future__ import annotations

import functools
from types import SimpleNamespace

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import tiny_config

from ser_jax.config import get_config
from ser_jax.data.pipeline import ClipSet
from ser_jax.errors import ConfigError
from ser_jax.frontend.augment import AugmentConfig
from ser_jax.frontend.features import make_features
from ser_jax.frontend.logmel import FrontendConfig
from ser_jax.models import CNNLSTM, reverse_gradient
from ser_jax.serving.restore import load_model
from ser_jax.spec import resolve
from ser_jax.training.steps import (
    class_terms,
    classification_loss,
    create_train_state,
    loss_targets,
    mix,
    train_step,
)
from ser_jax.training.train import train_and_evaluate
from ser_jax.training.trainer import _class_terms, _speaker_ids


def test_mixup_mixes_features_and_frames_with_the_drawn_partner():
    rng = np.random.default_rng(0)
    feats = jnp.asarray(rng.normal(size=(6, 10, 4)), jnp.float32)
    frames = jnp.array([10, 3, 7, 10, 5, 1])
    mixed, mixed_frames, perm, lam = mix(jax.random.key(3), feats, frames, 0.4)
    perm, lam = np.asarray(perm), np.asarray(lam)
    assert sorted(perm) == list(range(6)) and not np.array_equal(perm, np.arange(6))
    assert np.all((lam > 0) & (lam < 1)) and lam.std() > 0  # one draw per example
    want = (
        lam[:, None, None] * np.asarray(feats) + (1 - lam[:, None, None]) * np.asarray(feats)[perm]
    )
    np.testing.assert_allclose(mixed, want, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(mixed_frames, np.maximum(frames, np.asarray(frames)[perm]))


def test_mixup_targets_weights_and_dominant_label():
    labels = jnp.array([0, 1, 2, 3])
    weights = jnp.array([1.0, 1.0, 1.0, 0.0])  # the last row is padding
    class_weight = jnp.array([1.0, 2.0, 0.5, 1.0])
    perm = jnp.array([1, 0, 3, 2])
    lam = jnp.array([0.7, 0.3, 0.5, 0.9])
    targets, ex_w, got_labels = loss_targets(
        labels, weights, class_weight, label_smoothing=0.0, mixup=(perm, lam)
    )
    want = np.zeros((4, 4))
    for i, (y, p, a) in enumerate(
        zip([0, 1, 2, 3], [1, 0, 3, 2], [0.7, 0.3, 0.5, 0.9], strict=True)
    ):
        want[i, y] += a
        want[i, p] += 1 - a  # label of the partner p is p here
    np.testing.assert_allclose(targets, want, rtol=1e-6)
    np.testing.assert_allclose(targets.sum(-1), 1.0, rtol=1e-6)
    # weight: lam * w_i c_{y_i} + (1 - lam) * w_p c_{y_p}
    np.testing.assert_allclose(
        ex_w,
        [0.7 * 1 + 0.3 * 2, 0.3 * 2 + 0.7 * 1, 0.5 * 0.5 + 0.5 * 0.0, 0.9 * 0.0 + 0.1 * 0.5],
        rtol=1e-6,
    )
    # "correct" counts the dominant label (a tie keeps the example's own)
    np.testing.assert_array_equal(got_labels, [0, 0, 2, 3])

    smoothed, _, _ = loss_targets(labels, weights, class_weight, label_smoothing=0.2)
    np.testing.assert_allclose(smoothed[1], [0.05, 0.85, 0.05, 0.05], rtol=1e-6)


def test_loss_is_weighted_mean_cross_entropy_without_padding():
    rng = np.random.default_rng(1)
    logits = jnp.asarray(rng.normal(size=(5, 3)), jnp.float32)
    targets = jax.nn.one_hot(jnp.array([0, 2, 1, 1, 0]), 3)
    ex_w = jnp.array([1.0, 2.0, 1.0, 0.5, 0.7])
    real = jnp.array([True, True, True, True, False])  # padding, even with a (mixup) weight
    ce = np.asarray(optax.softmax_cross_entropy(logits, targets))
    want = (ce[:4] * np.array([1.0, 2.0, 1.0, 0.5])).sum() / 5.2
    got = classification_loss(logits, targets, ex_w, real)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_logit_adjusted_loss_shifts_logits_by_tau_log_prior():
    """Menon et al. 2021: CE(logits + tau log prior): the loss of the shifted logits. An
    example of a rare class that the logits call right by a small margin still costs a lot
    (the network must beat the frequent classes by more than their prior bonus), one of the
    frequent class costs less."""
    prior = np.array([0.6, 0.3, 0.1])
    shift = jnp.asarray(np.log(prior), jnp.float32)
    logits = jnp.array([[0.2, 0.0, 0.5], [1.0, 0.0, -1.0]], jnp.float32)
    targets = jax.nn.one_hot(jnp.array([2, 0]), 3)
    w, real = jnp.ones(2), jnp.ones(2, bool)
    got = classification_loss(logits, targets, w, real, shift)
    want = classification_loss(logits + shift, targets, w, real)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    # per example: the rare-class example (label 2) loses more, the frequent one (label 0) less
    plain = optax.softmax_cross_entropy(logits, targets)
    adjusted = optax.softmax_cross_entropy(logits + shift, targets)
    assert adjusted[0] > plain[0] + 0.5 and adjusted[1] < plain[1]


def test_class_terms_from_training_labels():
    labels = np.array([0] * 6 + [1] * 3 + [2] * 1)
    data = SimpleNamespace(label_names=["a", "b", "c", "d"], train=SimpleNamespace(labels=labels))
    off = _class_terms(SimpleNamespace(class_weighting=False, logit_adjustment=0.0), data)
    np.testing.assert_array_equal(off["weight"], 1.0)
    np.testing.assert_array_equal(off["logit_shift"], 0.0)
    on = _class_terms(SimpleNamespace(class_weighting=True, logit_adjustment=0.5), data)
    # weights: total / (classes * count); "d" has no training file: weight 0
    np.testing.assert_allclose(on["weight"], [10 / 24, 10 / 12, 10 / 4, 0.0], rtol=1e-6)
    # shift: tau * log(count / total), "d" floored to one file
    np.testing.assert_allclose(
        on["logit_shift"], 0.5 * np.log(np.array([6, 3, 1, 1]) / 11), rtol=1e-6
    )
    assert np.isfinite(on["logit_shift"]).all()


def _tiny_step_and_batch(model, tx, ema_decay=0.0):
    """``(state, jitted train_step, batch)`` of 4 short noise clips on a tiny front-end."""
    frontend = FrontendConfig(sample_rate=8000, n_fft=128, win_length=128, hop_length=64, n_mels=16)
    state = create_train_state(model, tx, seed=0, n_bands=16, ema=ema_decay > 0)
    step = jax.jit(
        functools.partial(
            train_step,
            frontend=frontend,
            augment=AugmentConfig(),
            offline=False,
            seed=0,
            label_smoothing=0.0,
            ema_decay=ema_decay,
        )
    )
    rng = np.random.default_rng(0)
    batch = {
        "audio": jnp.asarray(rng.normal(size=(4, 4000)) * 0.1, jnp.float32),
        "length": jnp.array([4000, 4000, 3000, 2500], jnp.int32),
        "label": jnp.array([0, 1, 2, 1], jnp.int32),
        "weight": jnp.ones(4, jnp.float32),
        "aug_id": jnp.arange(4, dtype=jnp.int32),
        "augment": jnp.ones(4, bool),
    }
    return state, step, batch


@pytest.fixture(scope="module")
def tiny_step():
    model = CNNLSTM(num_classes=3, filters=(4, 4), pools=((2, 2), (2, 2)), lstm_hidden=8)
    return _tiny_step_and_batch(model, optax.adam(1e-2), ema_decay=0.9)


def test_ema_update_follows_the_warmed_up_decay(tiny_step):
    """ema_{t+1} = d_t ema_t + (1 - d_t) params_{t+1}, d_t = min(0.9, (1 + t) / (10 + t))."""
    state, step, batch = tiny_step
    classes = class_terms(jnp.ones(3), jnp.zeros(3))
    ema = jax.tree.map(np.asarray, state.ema_params)
    np.testing.assert_array_equal(  # starts as a copy of the params
        jax.tree.leaves(ema)[0], np.asarray(jax.tree.leaves(state.params)[0])
    )
    for t in range(3):
        state, metrics = step(state, batch, classes)
        assert bool(metrics["finite"])
        d = min(0.9, (1 + t) / (10 + t))
        ema = jax.tree.map(lambda e, p, d=d: d * e + (1 - d) * np.asarray(p), ema, state.params)
        for got, want in zip(jax.tree.leaves(state.ema_params), jax.tree.leaves(ema), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    # the average lags the params: after 3 steps they differ
    assert (
        max(
            float(np.abs(np.asarray(p) - np.asarray(e)).max())
            for p, e in zip(
                jax.tree.leaves(state.params), jax.tree.leaves(state.ema_params), strict=True
            )
        )
        > 1e-4
    )


def test_train_step_loss_uses_the_logit_shift(tiny_step):
    """The same step with a logit shift reports the adjusted loss of the same logits: a shift
    that is the same for every class changes nothing (softmax is shift invariant); with every
    label 1, raising class 1's shift lowers the loss and lowering it raises the loss
    (d CE / d shift_1 = softmax_1 - 1 < 0)."""
    state, step, batch = tiny_step
    batch = {**batch, "label": jnp.ones(4, jnp.int32)}
    plain = step(state, batch, class_terms(jnp.ones(3), jnp.zeros(3)))[1]["loss"]
    flat = step(state, batch, class_terms(jnp.ones(3), jnp.full(3, -1.3)))[1]["loss"]
    np.testing.assert_allclose(flat, plain, rtol=1e-5)
    favour = step(state, batch, class_terms(jnp.ones(3), jnp.array([0.0, 3.0, 0.0])))[1]["loss"]
    disfavour = step(state, batch, class_terms(jnp.ones(3), jnp.array([0.0, -3.0, 0.0])))[1]["loss"]
    assert float(favour) < float(plain) < float(disfavour)


def test_negative_logit_adjustment_is_refused():
    c = get_config()
    assert resolve(c).logit_adjustment == 0.0
    c.train.logit_adjustment = 1.0
    assert resolve(c).logit_adjustment == 1.0
    c.train.logit_adjustment = -0.5
    with pytest.raises(ConfigError, match=r"train.logit_adjustment=-0.5: must be >= 0"):
        resolve(c)


def test_gradient_reversal_is_identity_forward_and_minus_scale_backward():
    x = jnp.asarray(np.random.default_rng(2).normal(size=(3, 5)), jnp.float32)
    c = jnp.arange(15.0).reshape(3, 5)
    np.testing.assert_array_equal(reverse_gradient(x, 0.3), x)
    g = jax.grad(lambda x: (reverse_gradient(x, 0.3) * c).sum())(x)
    np.testing.assert_allclose(g, -0.3 * c, rtol=1e-6)


def _speaker_model(reversal: float) -> CNNLSTM:
    return CNNLSTM(
        num_classes=3,
        filters=(4, 4),
        pools=((2, 2), (2, 2)),
        lstm_hidden=8,
        speaker_classes=5,
        speaker_reversal=reversal,
    )


def test_speaker_head_leaves_prediction_alone_and_reverses_its_gradient():
    """The emotion logits are those of the same model without the head; the speaker loss
    reaches the encoder reversed and scaled (g(lam) = g(0) - lam (g(-1) - g(0))) and the
    head itself unreversed."""

    rng = np.random.default_rng(3)
    feats = jnp.asarray(rng.normal(size=(4, 24, 16)), jnp.float32)
    lengths = jnp.array([24, 20, 16, 9])
    labels, speakers = jnp.array([0, 1, 2, 1]), jnp.array([4, 0, 2, 2])
    variables = _speaker_model(0.5).init(jax.random.key(0), feats, lengths)
    plain = CNNLSTM(num_classes=3, filters=(4, 4), pools=((2, 2), (2, 2)), lstm_hidden=8)
    headless = {**variables, "params": {k: v for k, v in variables["params"].items()}}
    del headless["params"]["speaker_head"]
    np.testing.assert_array_equal(
        _speaker_model(0.5).apply(variables, feats, lengths),
        plain.apply(headless, feats, lengths),
    )

    def grads(reversal, with_speakers=True):
        model = _speaker_model(reversal)

        def total(params):
            logits, sown = model.apply(
                {**variables, "params": params}, feats, lengths, mutable=["intermediates"]
            )
            emo = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
            spk_logits = sown["intermediates"]["speaker_logits"][0]
            spk = optax.softmax_cross_entropy_with_integer_labels(spk_logits, speakers).mean()
            return emo + spk if with_speakers else emo

        return flax.traverse_util.flatten_dict(jax.grad(total)(variables["params"]))

    # reversal 0: the encoder gets the emotion gradient only; -1: plain (emotion + speaker)
    g0, gm1, g = grads(0.0), grads(-1.0), grads(0.5)
    emotion_only = grads(0.5, with_speakers=False)
    for path in g0:
        if path[0] != "speaker_head":
            np.testing.assert_allclose(g0[path], emotion_only[path], rtol=1e-5, atol=1e-7)
    for path in g:
        want = g0[path] - 0.5 * (gm1[path] - g0[path])
        if path[0] == "speaker_head":  # the head learns speakers with the plain gradient
            want = g0[path]
        np.testing.assert_allclose(g[path], want, rtol=1e-4, atol=1e-6)
    assert (
        np.abs(gm1[("block0", "Conv_0", "kernel")] - g0[("block0", "Conv_0", "kernel")]).max()
        > 1e-6
    )


def test_train_step_adds_the_speaker_loss_and_reports_the_emotion_loss():
    state, step, batch = _tiny_step_and_batch(_speaker_model(1.0), optax.sgd(0.1))
    classes = class_terms(jnp.ones(3), jnp.zeros(3))
    without, m0 = step(state, batch, classes)
    with_, m1 = step(state, {**batch, "speaker": jnp.array([0, 1, 3, 4], jnp.int32)}, classes)
    np.testing.assert_allclose(m1["loss"], m0["loss"], rtol=1e-6)  # the emotion loss
    head0 = state.params["speaker_head"]["kernel"]
    assert np.array_equal(without.params["speaker_head"]["kernel"], head0)  # no speakers: idle
    assert not np.allclose(with_.params["speaker_head"]["kernel"], head0)
    assert not np.allclose(
        with_.params["block0"]["Conv_0"]["kernel"], without.params["block0"]["Conv_0"]["kernel"]
    )


def test_speaker_ids_index_the_corpus_speakers():
    def clips(*speakers):
        return ClipSet(
            [np.zeros(10, np.float32)] * len(speakers),
            np.zeros(len(speakers), np.int32),
            [SimpleNamespace(speaker=s) for s in speakers],
        )

    data = SimpleNamespace(train=clips("12", "03", "12", "15"), val=clips(), test=clips("08"))
    np.testing.assert_array_equal(_speaker_ids(data, 4), [2, 0, 2, 3])  # 03 08 12 15
    with pytest.raises(ConfigError, match=r"model.speaker_classes=3 is fewer than the corpus's 4"):
        _speaker_ids(data, 3)


def test_a_run_with_a_speaker_head_trains_restores_and_predicts(tmp_path):
    c = tiny_config(epochs=2)
    c.model.speaker_classes = 3  # the demo corpus has 4 speakers
    with pytest.raises(ConfigError, match="model.speaker_classes=3 is fewer"):
        train_and_evaluate(c, tmp_path / "refused")
    c.model.speaker_classes = 4
    c.model.speaker_reversal = 0.3
    results = train_and_evaluate(c, tmp_path / "run")
    assert np.isfinite(results["test_loss"])
    model = load_model(tmp_path / "run")
    assert model.variables.params["speaker_head"]["kernel"].shape[-1] == 4
    rng = np.random.default_rng(0)
    probs = model.probabilities([rng.normal(size=16000).astype(np.float32) * 0.1])
    assert probs.shape == (1, len(model.label_names))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_clip_channel_sits_beside_the_dataset_normalised_log_mel():
    """frontend.clip_channel: channel 0 is the log-mel by the given statistics, channel 1 the
    same clip normalised by its own (what normalize="utterance" gives); padding stays 0."""

    base = dict(sample_rate=8000, n_fft=128, win_length=128, hop_length=64, n_mels=16)
    both = FrontendConfig(**base, normalize="dataset", clip_channel=True)
    assert both.channels == 2
    audio = jnp.asarray(np.random.default_rng(4).normal(size=(2, 4000)) * 0.1, jnp.float32)
    lengths = jnp.array([4000, 2500])
    stats = (jnp.full(16, -3.0), jnp.full(16, 2.0))
    got, flen = make_features(audio, lengths, None, frontend=both, augment=None, stats=stats)
    dataset, _ = make_features(
        audio,
        lengths,
        None,
        frontend=FrontendConfig(**base, normalize="dataset"),
        augment=None,
        stats=stats,
    )
    clip, _ = make_features(
        audio, lengths, None, frontend=FrontendConfig(**base, normalize="utterance"), augment=None
    )
    assert got.shape == (*dataset.shape, 2)
    np.testing.assert_allclose(got[..., 0], dataset, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got[..., 1], clip, rtol=1e-6, atol=1e-6)
    assert not np.asarray(got[1, int(flen[1]) :]).any()
    with pytest.raises(ConfigError, match="frontend.clip_channel=True: needs normalize='dataset'"):
        FrontendConfig(**base, clip_channel=True)


def test_a_run_with_the_clip_channel_trains_restores_and_predicts(tmp_path):
    c = tiny_config(epochs=1)
    c.frontend.normalize = "dataset"
    c.frontend.clip_channel = True
    results = train_and_evaluate(c, tmp_path / "run")
    model = load_model(tmp_path / "run")
    assert model.variables.params["block0"]["Conv_0"]["kernel"].shape[2] == 2
    assert not np.allclose(model.variables.feature_stats["mean"], 0.0)  # training-set stats
    assert np.isfinite(results["test_loss"])
    probs = model.probabilities([np.random.default_rng(1).normal(size=12000).astype(np.float32)])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_train_step_feeds_mixstyle_its_random_stream():
    """With MixStyle on (probability 1) the step's loss differs from the same model's without
    it, from the same state and batch: the train step hands the model the "mixstyle" stream."""
    kw = dict(num_classes=3, filters=(4, 4), pools=((2, 2), (2, 2)), lstm_hidden=8)
    state, step, batch = _tiny_step_and_batch(CNNLSTM(**kw), optax.sgd(0.0))
    mixed_state, mixed_step, _ = _tiny_step_and_batch(
        CNNLSTM(**kw, mixstyle_prob=1.0, mixstyle_alpha=0.5), optax.sgd(0.0)
    )
    classes = class_terms(jnp.ones(3), jnp.zeros(3))
    _, plain = step(state, batch, classes)
    _, mixed = mixed_step(mixed_state, batch, classes)
    assert np.isfinite(mixed["loss"])
    assert abs(float(mixed["loss"]) - float(plain["loss"])) > 1e-4


@pytest.mark.parametrize("pooling", ["last", "attention"])
def test_empty_filling_rows_change_nothing_in_a_train_step(tiny_step, pooling):
    """Speaker batches fill a short batch with empty rows (length 0, weight 0): the step's
    loss, its update of the weights and of the BatchNorm statistics equal those of the real
    rows alone (with attention pooling too: a row without a valid frame must give no NaN)."""
    state, step, batch = tiny_step
    if pooling == "attention":
        model = CNNLSTM(
            num_classes=3, filters=(4, 4), pools=((2, 2), (2, 2)), lstm_hidden=8, pooling=pooling
        )
        state, step, batch = _tiny_step_and_batch(model, optax.adam(1e-2))
    classes = class_terms(jnp.ones(3), jnp.zeros(3))
    real = {k: v[:3] for k, v in batch.items()}
    filled = {
        k: jnp.concatenate([v, jnp.full((2, *v.shape[1:]), -1 if k == "aug_id" else 0, v.dtype)])
        for k, v in real.items()
    }
    assert float(filled["weight"].sum()) == 3 and int(filled["length"][-1]) == 0
    a, ma = step(state, real, classes)
    b, mb = step(state, filled, classes)
    assert bool(mb["finite"]) and float(mb["count"]) == 3
    np.testing.assert_allclose(mb["loss"], ma["loss"], rtol=1e-5)
    assert float(mb["correct"]) == float(ma["correct"])
    for tree in ("params", "batch_stats"):
        for x, y in zip(
            jax.tree.leaves(getattr(a, tree)), jax.tree.leaves(getattr(b, tree)), strict=True
        ):
            np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)
