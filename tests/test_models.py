"""CNN-LSTM: shapes, MinLength guard, and that padding never changes a clip's output."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax.traverse_util import flatten_dict
from ml_collections import ConfigDict
from twins import normal

from ser_jax.config import get_config
from ser_jax.errors import ConfigError
from ser_jax.models import (
    CNNLSTM,
    FEATURE_MODELS,
    FIELDS,
    FUNCTIONALS,
    MODELS,
    TDNN,
    AttentionPool,
    ConvBlock,
    TDNNLayer,
    check_min_frames,
    create_model,
    frame_vectors,
    last_valid_step,
    lstm_scan,
    masked_functionals,
    max_pool_valid,
    mix_statistics,
    model_fields,
    model_section,
    pooled_length,
    register_model,
    shared_fields,
    style_statistics,
)
from ser_jax.models.initializers import KERNEL_INIT, lecun_normal
from ser_jax.serving.shipped import load_shipped, shipped_members, shipped_models
from ser_jax.training.steps import predict_step

POOLS = ((2, 2), (2, 2), (2, 1))


@pytest.fixture(scope="module")
def model_and_vars():
    model = CNNLSTM(num_classes=4, filters=(4, 4, 6), pools=POOLS, lstm_hidden=8, activation="elu")
    rng = np.random.default_rng(0)
    feats = jnp.asarray(rng.normal(size=(3, 40, 16)), jnp.float32)
    variables = model.init(jax.random.key(0), feats, jnp.array([40, 30, 17]), train=False)
    # Non-trivial BatchNorm statistics, so the eval-mode test exercises them.
    _, upd = model.apply(
        variables, feats, jnp.array([40, 30, 17]), train=True, mutable=["batch_stats"]
    )
    variables = {"params": variables["params"], "batch_stats": upd["batch_stats"]}
    apply = jax.jit(lambda v, x, n: model.apply(v, x, n, train=False))
    return model, variables, apply


@pytest.mark.parametrize("shape", [(3, 3, 16, 8), (5, 16, 32), (9, 8)])
def test_kernel_init_draws_jax_lecun_normal_values_flat(shape):
    """Bit for bit jax's lecun_normal, jitted (as the init runs) and eagerly, for conv, TDNN
    and dense kernel shapes: only the way the draw compiles changes."""
    key = jax.random.key(7)
    want = jax.jit(lambda k: jax.nn.initializers.lecun_normal()(k, shape))(key)
    np.testing.assert_array_equal(jax.jit(lambda k: KERNEL_INIT(k, shape))(key), want)
    np.testing.assert_array_equal(KERNEL_INIT(key, shape), want)
    axes = jax.nn.initializers.lecun_normal(in_axis=0, out_axis=-2)(key, shape)
    np.testing.assert_array_equal(lecun_normal(in_axis=0, out_axis=-2)(key, shape), axes)


def test_kernel_init_refuses_what_lecun_normal_cannot_draw():
    with pytest.raises(ValueError, match="rank 2 or more, got shape"):
        KERNEL_INIT(jax.random.key(0), (8,))
    with pytest.raises(ValueError, match="draws float kernels"):
        KERNEL_INIT(jax.random.key(0), (2, 2), jnp.int32)


def test_pooled_length_and_min_length_guard():
    assert pooled_length(201, ((2, 2),) * 4) == 12
    assert pooled_length(201, ((2, 2), (2, 2), (4, 4), (4, 4))) == 3
    check_min_frames(16, ((2, 2),) * 4)
    with pytest.raises(ConfigError, match=r"shortest clip.*15 frames.*at least 16 frames"):
        check_min_frames(15, ((2, 2),) * 4)


def test_last_valid_step_picks_index_length_minus_one():
    out = jnp.arange(2 * 5 * 3, dtype=jnp.float32).reshape(2, 5, 3)
    got = last_valid_step(out, jnp.array([5, 2]))
    np.testing.assert_array_equal(got, np.stack([out[0, 4], out[1, 1]]))


def test_output_shape_and_finite(model_and_vars):
    _, variables, apply = model_and_vars
    logits = apply(variables, jnp.ones((2, 40, 16)), jnp.array([40, 12]))
    assert logits.shape == (2, 4)
    assert np.isfinite(np.asarray(logits)).all()


@pytest.mark.parametrize("n", [24, 25])
def test_padding_does_not_change_the_output(model_and_vars, n):
    _, variables, apply = model_and_vars
    rng = np.random.default_rng(1)
    clip = rng.normal(size=(n, 16)).astype(np.float32)
    alone = apply(variables, jnp.asarray(clip[None]), jnp.array([n]))
    padded = np.zeros((1, 40, 16), np.float32)
    padded[0, :n] = clip
    padded[0, n:] = 7.0  # garbage in the padding must not matter either
    with_pad = apply(variables, jnp.asarray(padded), jnp.array([n]))
    np.testing.assert_allclose(np.asarray(with_pad), np.asarray(alone), atol=1e-5)
    # ...while a change inside the valid frames does change it.
    changed = padded.copy()
    changed[0, 3] += 1.0
    assert not np.allclose(
        np.asarray(apply(variables, jnp.asarray(changed), jnp.array([n]))),
        np.asarray(alone),
        atol=1e-4,
    )


def test_batchnorm_statistics_ignore_padded_frames(model_and_vars):
    model, variables, _ = model_and_vars
    rng = np.random.default_rng(2)
    clips = rng.normal(size=(2, 24, 16)).astype(np.float32)
    lengths = jnp.array([24, 24])
    _, tight = model.apply(
        variables, jnp.asarray(clips), lengths, train=True, mutable=["batch_stats"]
    )
    padded = np.concatenate([clips, np.full((2, 16, 16), 5.0, np.float32)], axis=1)
    _, loose = model.apply(
        variables, jnp.asarray(padded), lengths, train=True, mutable=["batch_stats"]
    )
    for a, b in zip(jax.tree.leaves(tight), jax.tree.leaves(loose), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape,pool", [((3, 41, 16, 5), (2, 2)), ((2, 13, 7, 3), (4, 2))])
def test_max_pool_valid_equals_flax_max_pool(shape, pool):

    x = jnp.asarray(np.random.default_rng(3).normal(size=shape), jnp.float32)
    ref = lambda v: nn.max_pool(v, pool, strides=pool, padding="VALID")  # noqa: E731
    got, vjp = jax.vjp(lambda v: max_pool_valid(v, pool), x)
    want, ref_vjp = jax.vjp(ref, x)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    ct = jnp.asarray(np.random.default_rng(4).normal(size=want.shape), jnp.float32)
    np.testing.assert_array_equal(np.asarray(vjp(ct)[0]), np.asarray(ref_vjp(ct)[0]))


OPTIONS = {
    "residual, dilated": dict(residual=(False, True, True), dilations=(1, 2, 1)),
    "bidirectional, last": dict(bidirectional=True),
    "attention": dict(pooling="attention", projection=12, head_hidden=5),
    "bidirectional, mean": dict(bidirectional=True, pooling="mean"),
    "functionals branch": dict(functionals=6, head_hidden=5),
}


@pytest.fixture(scope="module", params=list(OPTIONS))
def option_model(request):
    """The model options, each with non-trivial BatchNorm statistics and 2 input channels."""
    model = CNNLSTM(
        num_classes=4,
        filters=(4, 6, 6),
        pools=POOLS,
        lstm_hidden=8,
        activation="elu",
        **OPTIONS[request.param],
    )
    rng = np.random.default_rng(1)
    feats = jnp.asarray(rng.normal(size=(3, 40, 16, 2)), jnp.float32)
    lengths = jnp.array([40, 30, 17])
    variables = model.init(jax.random.key(0), feats, lengths, train=False)
    _, upd = model.apply(variables, feats, lengths, train=True, mutable=["batch_stats"])
    variables = {"params": variables["params"], "batch_stats": upd["batch_stats"]}
    apply = jax.jit(lambda v, x, n: model.apply(v, x, n, train=False))
    return request.param, variables, apply


@pytest.mark.parametrize("n", [17, 26])
def test_model_options_ignore_padding(option_model, n):
    """Garbage after a clip's length changes nothing, whatever blocks, LSTM and pooling."""
    name, variables, apply = option_model
    rng = np.random.default_rng(n)
    clip = rng.normal(size=(n, 16, 2)).astype(np.float32)
    alone = apply(variables, jnp.asarray(clip[None]), jnp.array([n]))
    padded = np.concatenate([clip, 50 * rng.normal(size=(40 - n, 16, 2))], axis=0)
    other = rng.normal(size=(40, 16, 2))
    batch = jnp.asarray(np.stack([padded, other]), jnp.float32)
    together = apply(variables, batch, jnp.array([n, 40]))
    np.testing.assert_allclose(
        np.asarray(together[0]), np.asarray(alone[0]), atol=2e-5, err_msg=name
    )


def test_attention_weights_are_masked_and_sum_to_one():

    pool = AttentionPool()
    rng = np.random.default_rng(0)
    out = jnp.asarray(rng.normal(size=(2, 6, 3)), jnp.float32)
    valid = jnp.array([[True] * 6, [True, True, False, False, False, False]])
    v = pool.init(jax.random.key(0), out, valid)
    got = pool.apply(v, out, valid)
    # the second clip: only its 2 valid steps count, as if the rest did not exist
    alone = pool.apply(v, out[1:, :2], valid[1:, :2])
    np.testing.assert_allclose(got[1], alone[0], rtol=1e-6)
    spoiled = out.at[1, 2:].set(1e6)
    np.testing.assert_allclose(pool.apply(v, spoiled, valid)[1], got[1], rtol=1e-6)


def test_residual_block_with_new_channels_has_a_projection_shortcut():

    block = ConvBlock(6, residual=True, pool=(1, 1))
    x = jnp.ones((1, 8, 4, 3))
    v = block.init(jax.random.key(0), x, jnp.ones((1, 8), bool), train=False)
    convs = [k for k in v["params"] if k.startswith("Conv")]
    assert len(convs) == 3  # two 3x3 convs + the 1x1 shortcut
    assert v["params"]["Conv_2"]["kernel"].shape == (1, 1, 3, 6)
    same = ConvBlock(3, residual=True, pool=(1, 1))
    assert len(same.init(jax.random.key(0), x, jnp.ones((1, 8), bool), train=False)["params"]) == 4


def test_bad_option_lengths_are_refused():
    model = CNNLSTM(num_classes=2, filters=(4, 4), pools=((2, 2), (2, 2)), dilations=(1, 2, 4))
    with pytest.raises(ConfigError, match="model.dilations has 3 entries for 2 blocks"):
        model.init(jax.random.key(0), jnp.ones((1, 16, 8)), jnp.array([16]))
    with pytest.raises(ConfigError, match="model.pooling='max'"):
        CNNLSTM(num_classes=2, filters=(4,), pools=((2, 2),), pooling="max").init(
            jax.random.key(0), jnp.ones((1, 16, 8)), jnp.array([16])
        )
    # 26 bands (20 cepstral coefficients + 6 descriptors) pooled 2 x 4 x 4 = 32x: none left
    pools = ((2, 2), (2, 4), (2, 4))
    with pytest.raises(ConfigError, match=r"pool the 26 bands of the front-end"):
        CNNLSTM(num_classes=2, filters=(4, 4, 4), pools=pools).init(
            jax.random.key(0), jnp.ones((1, 16, 26)), jnp.array([16])
        )
    # 32 bands keep one after 32x pooling: accepted
    CNNLSTM(num_classes=2, filters=(4, 4, 4), pools=pools, lstm_hidden=4).init(
        jax.random.key(0), jnp.ones((1, 16, 32)), jnp.array([16])
    )


def test_mix_statistics_gives_each_example_the_mixed_style_and_keeps_padding_zero():
    """Example b comes out with per-channel mean lam mu_b + (1 - lam) mu_perm[b] and standard
    deviation lam sigma_b + (1 - lam) sigma_perm[b] over its valid steps; lam = 1 is the
    identity; padded steps stay 0; the statistics pass no gradient."""

    rng = np.random.default_rng(5)
    x = rng.normal(size=(3, 10, 4, 2)) * np.array([1.0, 3.0]) + np.array([[[[0.5, -2.0]]]])
    x[1] = x[1] * 0.2 + 4.0  # another "speaker": other level and spread
    valid = np.arange(10)[None, :] < np.array([10, 7, 10])[:, None]
    x = jnp.asarray(np.where(valid[:, :, None, None], x, 0.0), jnp.float32)
    valid = jnp.asarray(valid)
    perm, lam = jnp.array([1, 0, 2]), jnp.array([0.25, 1.0, 0.5])
    out = mix_statistics(x, valid, perm, lam)
    mean, std = style_statistics(x, valid)
    got_mean, got_std = style_statistics(out, valid)
    want_mean = 0.25 * mean[0] + 0.75 * mean[1]
    want_std = 0.25 * std[0] + 0.75 * std[1]
    np.testing.assert_allclose(got_mean[0], want_mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got_std[0], want_std, rtol=1e-4)
    np.testing.assert_array_equal(out[1], x[1])  # lam = 1: untouched
    np.testing.assert_allclose(out[2], x[2], rtol=1e-5, atol=1e-5)  # mixed with itself
    assert np.all(np.asarray(out[1, 7:]) == 0.0)
    # the same second example with garbage in its padding: the same output on its valid steps
    spoiled = x.at[1, 7:].set(100.0)
    again = mix_statistics(spoiled, valid, perm, lam)
    np.testing.assert_allclose(again[0], out[0], rtol=1e-5, atol=1e-5)
    # gradient: the statistics are constants, so d out_0 / d x_0 = std_mix / std_0 elementwise
    g = jax.grad(lambda v: mix_statistics(v, valid, perm, lam)[0].sum())(x)
    np.testing.assert_allclose(g[0], jnp.broadcast_to(want_std / std[0], g[0].shape), rtol=1e-5)
    np.testing.assert_array_equal(g[1], 0.0)  # example 1's statistics reach no gradient


def test_mixstyle_acts_in_training_only_and_only_with_its_own_random_stream():
    """Scoring (train=False) and the BatchNorm statistics pass (train=True, no "mixstyle"
    stream) give what the model without MixStyle gives; the train step's stream changes the
    output; bad settings are refused naming the field."""

    kw = dict(num_classes=4, filters=(4, 4, 6), pools=POOLS, lstm_hidden=8)
    mixed, plain = CNNLSTM(**kw, mixstyle_prob=1.0, mixstyle_alpha=0.5), CNNLSTM(**kw)
    rng = np.random.default_rng(6)
    feats = jnp.asarray(rng.normal(size=(4, 40, 16)) * rng.uniform(0.2, 3, (4, 1, 1)), jnp.float32)
    lengths = jnp.array([40, 33, 40, 21])
    v = plain.init(jax.random.key(0), feats, lengths)
    for train in (False, True):
        kwargs = dict(mutable=["batch_stats"]) if train else {}
        a = mixed.apply(
            v, feats, lengths, train=train, rngs={"dropout": jax.random.key(1)}, **kwargs
        )
        b = plain.apply(
            v, feats, lengths, train=train, rngs={"dropout": jax.random.key(1)}, **kwargs
        )
        np.testing.assert_array_equal(np.asarray(jax.tree.leaves(a)[0]), jax.tree.leaves(b)[0])
    rngs = {"dropout": jax.random.key(1), "mixstyle": jax.random.key(2)}
    a, _ = mixed.apply(v, feats, lengths, train=True, rngs=rngs, mutable=["batch_stats"])
    b, _ = plain.apply(v, feats, lengths, train=True, rngs=rngs, mutable=["batch_stats"])
    assert np.abs(np.asarray(a) - np.asarray(b)).max() > 1e-3
    cfg = ConfigDict(
        dict(
            name="cnn_lstm",
            filters=(4, 4),
            kernel=(3, 3),
            pools=((2, 2), (2, 2)),
            activation="relu",
            lstm_hidden=8,
            dropout=0.0,
            bn_momentum=0.9,
            dilations=(),
            residual=(),
            bidirectional=False,
            pooling="last",
            projection=0,
            head_hidden=0,
            mixstyle_prob=0.5,
            mixstyle_alpha=0.1,
            mixstyle_blocks=(0, 2),
        )
    )
    with pytest.raises(ConfigError, match=r"model.mixstyle_blocks=\(0, 2\): .* 0..1"):
        create_model(cfg, 4)
    cfg.mixstyle_blocks, cfg.mixstyle_prob = (1,), 1.5
    with pytest.raises(ConfigError, match=r"model.mixstyle_prob=1.5"):
        create_model(cfg, 4)
    cfg.mixstyle_prob, cfg.mixstyle_alpha = 0.5, 0.0
    with pytest.raises(ConfigError, match=r"model.mixstyle_alpha=0.0"):
        create_model(cfg, 4)
    cfg.mixstyle_alpha = 0.1
    assert create_model(cfg, 4).mixstyle_blocks == (1,)


def test_masked_functionals_match_numpy_on_the_valid_frames_only():

    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 40, 5)).astype(np.float32)
    n = np.array([40, 17, 0])
    garbage = x.copy()
    garbage[1, 17:] = 1e4  # padding must not enter any statistic
    out = np.asarray(masked_functionals(jnp.asarray(garbage), jnp.asarray(n)))
    assert out.shape == (3, 7 * 5)
    for r in range(2):
        v, k = x[r, : n[r]], n[r]
        s = np.sort(v, axis=0)
        want = [
            v.mean(0),
            v.std(0),
            s[int(0.1 * (k - 1))],
            s[int(0.5 * (k - 1))],
            s[int(0.9 * (k - 1))],
            np.abs(np.diff(v, axis=0)).mean(0),
            np.polyfit(np.arange(k) / k, v, 1)[0],  # slope over the span scaled to 0..1
        ]
        np.testing.assert_allclose(out[r], np.concatenate(want), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(out[2], 0.0)  # no valid frame: zeros, no NaN


def test_masked_functionals_named_statistics_match_numpy_in_their_order():

    assert tuple(get_config().model.statistics) == FUNCTIONALS  # the config's default
    rng = np.random.default_rng(2)
    x = rng.gamma(2.0, size=(2, 30, 3)).astype(np.float32)  # skewed, so skew is not ~0
    n = np.array([30, 11])
    padded = x.copy()
    padded[1, 11:] = -1e4
    names = ("kurtosis", "p0", "p25", "p100", "skew", "mean")
    out = np.asarray(masked_functionals(jnp.asarray(padded), jnp.asarray(n), names))
    assert out.shape == (2, 6 * 3)
    for r in range(2):
        v, k = x[r, : n[r]].astype(np.float64), n[r]
        z = (v - v.mean(0)) / v.std(0)
        want = [
            (z**4).mean(0) - 3.0,
            v.min(0),
            np.sort(v, axis=0)[int(0.25 * (k - 1))],
            v.max(0),
            (z**3).mean(0),
            v.mean(0),
        ]
        np.testing.assert_allclose(out[r], np.concatenate(want), rtol=1e-3, atol=1e-4)
        assert np.all(np.abs(out[r, 12:15]) > 0.05)  # gamma draws: the skew is real
    # the functionals model reads them: one block of every feature per statistic
    cfg = get_config().model
    cfg.name = "functionals"
    cfg.mlp_hidden = ()
    cfg.statistics = ("mean", "p5", "p95")
    model = create_model(cfg, 3)
    v = model.init(jax.random.key(0), jnp.asarray(x), jnp.asarray(n))
    assert v["params"]["head"]["kernel"].shape == (3 * 3, 3)
    for bad, match in [
        ((), "name at least one"),
        (("mean", "p101"), "unknown statistic 'p101'"),
        (("median",), "unknown statistic 'median'"),
        (("mean", "mean"), "named twice"),
    ]:
        cfg.statistics = bad
        with pytest.raises(ConfigError, match="model.statistics"):
            create_model(cfg, 3)
        with pytest.raises(ConfigError, match=match):
            create_model(cfg, 3)


def test_functionals_model_ignores_padding_and_empty_rows_in_its_batchnorm():

    cfg = get_config().model
    cfg.name = "functionals"
    cfg.mlp_hidden = (8,)
    model = create_model(cfg, 3)
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(3, 30, 6)), jnp.float32)
    n = jnp.array([30, 12, 0])
    v = model.init(jax.random.key(0), x, n)
    logits = model.apply(v, x, n)
    padded = x.at[1, 12:].set(50.0).at[2].set(-7.0)
    np.testing.assert_allclose(model.apply(v, padded, n), logits, rtol=1e-6)
    # training-mode statistics come from the two rows with frames only, and say so
    _, upd = model.apply(v, padded, n, train=True, mutable=["batch_stats", "intermediates"])
    _, ref = model.apply(v, x[:2], n[:2], train=True, mutable=["batch_stats", "intermediates"])
    for a, b in zip(
        jax.tree.leaves(upd["batch_stats"]), jax.tree.leaves(ref["batch_stats"]), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert int(flatten_dict(upd["intermediates"])[("norm", "bn_count")][0]) == 2
    cfg.mlp_hidden = (8, 0)
    with pytest.raises(ConfigError, match="model.mlp_hidden"):
        create_model(cfg, 3)
    # pitch-like tracks repeated along the mel axis are summarised once: 7 x (6 bands + 2)
    cfg.mlp_hidden = (8,)
    cfg.track_channels = 2
    model = create_model(cfg, 3)
    track = jnp.broadcast_to(x[:, :, :1, None], (3, 30, 6, 2))
    v = model.init(jax.random.key(0), jnp.concatenate([x[..., None], track], -1), n)
    assert v["params"]["hidden0"]["kernel"].shape == (7 * (6 + 2), 8)
    with pytest.raises(ConfigError, match="model.track_channels=2"):
        model.init(jax.random.key(0), x, n)


def test_tdnn_ignores_padding_pools_valid_frames_and_counts_its_batchnorm():
    """The x-vector-style TDNN: garbage after a clip's length changes nothing, its output is
    the head over the embedding of the mean and std of the last layer's valid frames, and each
    layer's BatchNorm reports the valid frames it averaged (speaker-adaptive BatchNorm)."""

    cfg = get_config().model
    cfg.name = "tdnn"
    cfg.filters = (6, 5)
    cfg.tdnn_kernels = (5, 3)
    cfg.dilations = (1, 2)
    cfg.embedding = 4
    cfg.statistics = ("mean", "std")
    model = create_model(cfg, 3)
    assert isinstance(model, TDNN) and model.embedding == 4 and model.kernels == (5, 3)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(3, 20, 7)), jnp.float32)
    n = jnp.array([20, 9, 14])
    v = model.init(jax.random.key(0), x, n)
    _, upd = model.apply(v, x, n, train=True, mutable=["batch_stats", "intermediates"])
    v = {"params": v["params"], "batch_stats": upd["batch_stats"]}
    sown = flatten_dict(upd["intermediates"])
    assert int(sown[("layer0", "bn_count")][0]) == 20 + 9 + 14
    assert v["params"]["layer0"]["Conv_0"]["kernel"].shape == (5, 7, 6)
    assert v["params"]["embedding"]["kernel"].shape == (2 * 5, 4)
    logits = model.apply(v, x, n)
    spoiled = x.at[1, 9:].set(40.0).at[2, 14:].set(-9.0)
    np.testing.assert_allclose(model.apply(v, spoiled, n), logits, rtol=1e-5, atol=1e-6)
    alone = model.apply(v, x[1:2, :9], n[1:2])
    np.testing.assert_allclose(alone[0], logits[1], rtol=1e-5, atol=1e-6)
    # the statistics pooling by hand: layers, masked mean/std of the valid frames, embedding, head
    mask = (jnp.arange(20)[None, :] < n[:, None])[..., None]
    h = x * mask

    for i, (f, k, d) in enumerate(((6, 5, 1), (5, 3, 2))):
        lv = {"params": v["params"][f"layer{i}"], "batch_stats": v["batch_stats"][f"layer{i}"]}
        h = TDNNLayer(f, k, d).apply(lv, h, mask[..., 0], train=False)
    cnt = n[:, None].astype(jnp.float32)
    mean = (h * mask).sum(1) / cnt
    std = jnp.sqrt((((h - mean[:, None]) * mask) ** 2).sum(1) / cnt + 1e-6)
    e = jax.nn.relu(
        jnp.concatenate([mean, std], -1) @ v["params"]["embedding"]["kernel"]
        + v["params"]["embedding"]["bias"]
    )
    want = e @ v["params"]["head"]["kernel"] + v["params"]["head"]["bias"]
    np.testing.assert_allclose(logits, want, rtol=1e-4, atol=1e-5)
    cfg.tdnn_kernels = (5,)
    with pytest.raises(ConfigError, match="model.tdnn_kernels has 1 entries for 2 layers"):
        create_model(cfg, 3).init(jax.random.key(0), x, n)
    cfg.tdnn_kernels = (5, 0)
    with pytest.raises(ConfigError, match="must be positive"):
        create_model(cfg, 3)


def test_cnn_lstm_statistics_branch_reads_every_valid_frame_and_the_tracks_once():
    """The statistics branch summarises the whole clip (every valid input frame, not the
    pooled sequence's length) and, with ``track_channels``, the tracks once each while the
    convolutions see only the other channels."""

    rng = np.random.default_rng(5)
    bands, t = 16, 40
    mel = rng.normal(size=(2, t, bands, 1))
    track = np.broadcast_to(rng.normal(size=(2, t, 1, 2)), (2, t, bands, 2))
    feats = jnp.asarray(np.concatenate([mel, track], -1), jnp.float32)
    n = jnp.array([40, 23])
    model = CNNLSTM(
        num_classes=3,
        filters=(4, 4, 4),
        pools=POOLS,
        lstm_hidden=5,
        functionals=6,
        track_channels=2,
    )
    v = model.init(jax.random.key(0), feats, n)
    # fresh BatchNorm statistics (mean 0, var 1): the norm's output is its input / sqrt(1 + eps)
    _, got = model.apply(v, feats, n, capture_intermediates=True)
    normed = got["intermediates"]["functionals_norm"]["__call__"][0]
    want = masked_functionals(frame_vectors(feats, 2), n) / np.sqrt(1 + 1e-5)
    np.testing.assert_allclose(normed, want, rtol=1e-5, atol=1e-5)
    assert v["params"]["functionals_dense"]["kernel"].shape == (7 * (bands + 2), 6)
    assert v["params"]["block0"]["Conv_0"]["kernel"].shape[2] == 1  # the log-mel channel only
    # a frame late in the clip (past the pooled length, inside the valid one) moves the branch
    late = feats.at[1, 20].add(3.0)
    assert not np.allclose(model.apply(v, late, n), model.apply(v, feats, n))
    with pytest.raises(ConfigError, match="model.track_channels=2 with model.functionals=0"):
        CNNLSTM(num_classes=3, filters=(4,), pools=((2, 2),), track_channels=2).init(
            jax.random.key(0), feats, n
        )


def test_tdnn_embedding_has_its_own_field_and_old_configs_read_head_hidden():
    """``model.embedding`` sizes the TDNN's layer after the pooling; a config written before
    the field (a saved run's flat model section, read back with the field unset) keeps the
    network it trained: ``model.head_hidden`` held that size then. Both set is refused."""
    old = ConfigDict(
        {
            "name": "tdnn",
            "filters": [6, 5],
            "tdnn_kernels": [5, 3],
            "dilations": [1, 2],
            "head_hidden": 4,
            "statistics": ["mean", "std"],
            "activation": "relu",
            "dropout": 0.0,
            "bn_momentum": 0.9,
        }
    )
    assert create_model(old, 3).embedding == 4
    filled = get_config().model
    filled.update(old)
    assert filled.embedding is None and create_model(filled, 3).embedding == 4
    new = get_config().model
    new.update(dict(old, head_hidden=0))
    new.embedding = 7
    assert create_model(new, 3).embedding == 7
    new.embedding = 0  # none, as head_hidden=0 was
    assert create_model(new, 3).embedding == 0
    new.embedding, new.head_hidden = 7, 4
    with pytest.raises(ConfigError, match="model.head_hidden=4 with model.name='tdnn'"):
        create_model(new, 3)


def test_each_family_declares_its_own_model_fields_once():
    """The ``model`` section is the shared fields plus each registered family's own, each
    declared once beside its family; a new family's fields join it when it registers."""
    section = get_config().model
    assert set(section.keys()) == set(model_fields())
    assert set(FIELDS) == {"cnn_lstm", "functionals", "tdnn", "opensmile"}
    assert {"cnn_lstm", "functionals", "tdnn"} <= set(MODELS)
    assert set(FEATURE_MODELS) == {"opensmile"} and not set(FEATURE_MODELS) & set(MODELS)
    with pytest.raises(ConfigError, match="has no network: it is a linear classifier"):
        create_model(ml_collections.ConfigDict({"name": "opensmile"}), 7)
    owned = [set(shared_fields())] + [set(fields()) for fields in FIELDS.values()]
    assert sum(len(o) for o in owned) == len(set().union(*owned)) == len(section.keys())
    assert {"lstm_hidden", "pools", "head_hidden"} <= set(FIELDS["cnn_lstm"]())
    assert {"mlp_hidden", "statistics"} <= set(FIELDS["functionals"]())
    assert {"tdnn_kernels", "embedding"} <= set(FIELDS["tdnn"]())
    assert {"feature_set", "inverse_regularisation"} <= set(FIELDS["opensmile"]())
    try:

        @register_model("_test_family", fields=lambda: {"_test_width": 3})
        def _family(model_cfg, num_classes):
            return TDNN(num_classes=num_classes)

        assert model_section()._test_width == 3
        with pytest.raises(ValueError, match="declared by both"):
            register_model("_test_twice", fields=lambda: {"lstm_hidden": 1})(_family)
            model_fields()
    finally:
        for name in ("_test_family", "_test_twice"):
            MODELS.pop(name, None)
            FIELDS.pop(name, None)
    assert "_test_width" not in get_config().model


# every shipped network: those shipped by name and the members a committee keeps in its folder
# (an openSMILE member has no network: tests/test_package.py checks its probabilities)
SHIPPED = sorted(
    m
    for m in {m for n in shipped_models() for m in shipped_members(n)}
    if load_shipped(m).config.model.name != "opensmile"
)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_are_the_tree_their_flat_config_builds(name):
    """Each shipped model's weights (``model.msgpack``) are exactly the parameters and
    BatchNorm statistics that its config.json's flat ``model`` section builds today: the same
    names and shapes, none missing and none left over (traced only, no audio needed; the
    shipped probabilities themselves are checked on Emo-DB by tests/test_package.py)."""
    model = load_shipped(name)
    net = create_model(model.config.model, len(model.label_names))

    def scored_and_initialised(variables, batch):
        made = {}

        def apply_fn(v, feats, frames, train):
            made.update(net.init(jax.random.key(0), feats, frames))
            return net.apply(v, feats, frames, train=train)

        probs = predict_step(apply_fn, variables, batch, frontend=model.spec.frontend)
        return probs, made

    batch = {
        "audio": jax.ShapeDtypeStruct((2, model.sample_rate), jnp.float32),
        "length": jax.ShapeDtypeStruct((2,), jnp.int32),
    }
    probs, made = jax.eval_shape(scored_and_initialised, model.variables, batch)
    assert probs.shape == (2, len(model.label_names))

    def shapes(tree):
        return {"/".join(map(str, k)): tuple(v.shape) for k, v in flatten_dict(tree).items()}

    shipped = model.variables
    assert shapes(shipped.params) and shapes(made["params"]) == shapes(shipped.params)
    assert shapes(made.get("batch_stats", {})) == shapes(shipped.batch_stats)


@pytest.mark.parametrize(
    "bidirectional,pooling", [(False, "last"), (True, "last"), (True, "attention")]
)
def test_plain_lstm_equals_flax_rnn(bidirectional, pooling):
    """CNNLSTM(plain_lstm=True) (the ONNX export's network: the LSTM as one lax.scan over
    the trained weights) gives the Flax RNN's logits, clips of every length in one batch."""
    module = CNNLSTM(
        num_classes=5,
        filters=(4, 8),
        pools=((2, 2), (2, 2)),
        lstm_hidden=6,
        bidirectional=bidirectional,
        pooling=pooling,
    )
    feats = normal(np.random.default_rng(0), (4, 40, 16))
    frames = jnp.array([40, 23, 9, 2])
    variables = module.init(jax.random.key(1), feats, frames)
    ref = module.apply(variables, feats, frames)
    got = module.clone(plain_lstm=True).apply(variables, feats, frames)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    seq = normal(np.random.default_rng(2), (3, 7, 5))
    lengths = jnp.array([7, 4, 1])
    cell = nn.OptimizedLSTMCell(6)
    rnn = nn.RNN(cell, reverse=True, keep_order=True)
    params = rnn.init(jax.random.key(3), seq, seq_lengths=lengths)
    ref = rnn.apply(params, seq, seq_lengths=lengths)
    got = lstm_scan(params["params"]["cell"], seq, lengths, reverse=True)
    valid = np.arange(7)[None, :] < np.asarray(lengths)[:, None]
    np.testing.assert_allclose(np.asarray(got)[valid], np.asarray(ref)[valid], atol=1e-6)
