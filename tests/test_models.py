"""CNN-LSTM: shapes, MinLength guard, and that padding never changes a clip's output."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ser_jax.errors import ConfigError
from ser_jax.models import (
    CNNLSTM,
    check_min_frames,
    last_valid_step,
    max_pool_valid,
    pooled_length,
)

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
    import flax.linen as nn

    x = jnp.asarray(np.random.default_rng(3).normal(size=shape), jnp.float32)
    ref = lambda v: nn.max_pool(v, pool, strides=pool, padding="VALID")  # noqa: E731
    got, vjp = jax.vjp(lambda v: max_pool_valid(v, pool), x)
    want, ref_vjp = jax.vjp(ref, x)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    ct = jnp.asarray(np.random.default_rng(4).normal(size=want.shape), jnp.float32)
    np.testing.assert_array_equal(np.asarray(vjp(ct)[0]), np.asarray(ref_vjp(ct)[0]))
