"""``model.first_block="fused"`` (ser_jax.models.fused): the first conv block's training pass
without its full-resolution activation gives the plain layers' outputs, running statistics and
gradients within float32 rounding, trains a CNN-LSTM the same way, and is refused where it does
not apply."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import twins
from ml_collections import ConfigDict
from twins import normal, train_steps

from ser_jax.errors import ConfigError
from ser_jax.models import CNNLSTM, create_model, model_section
from ser_jax.models.layers import ConvBlock


def relative(a: jax.Array, b: jax.Array) -> float:
    return float(jnp.linalg.norm(a - b) / jnp.maximum(jnp.linalg.norm(b), 1e-30))


def block_run(fused: bool, x, mask, variables, activation, pool, dilation):
    """The block's pooled output (zero on pooled padding), its updated running statistics,
    and the gradients of a weighted sum of the output w.r.t. the parameters and the input."""
    block = ConvBlock(5, (3, 3), pool, activation, dilation=dilation, fused=fused)
    steps = x.shape[1] // pool[0]
    valid = (jnp.arange(steps)[None, :] < (mask.sum(1) // pool[0])[:, None])[..., None, None]
    weights = jnp.cos(jnp.arange(5 * 7.0)).reshape(7, 5)[: x.shape[2] // pool[1]]

    def loss(params, x_):
        out, upd = block.apply(
            {"params": params, "batch_stats": variables["batch_stats"]},
            x_,
            mask,
            train=True,
            mutable=["batch_stats"],
        )
        out = jnp.where(valid, out, 0.0)
        return (out * weights[None, None, :, :] ** 2).sum() + (out**2).sum(), (out, upd)

    (_, (out, upd)), grads = jax.value_and_grad(loss, (0, 1), has_aux=True)(variables["params"], x)
    return out, upd["batch_stats"], grads


@pytest.mark.parametrize(
    "activation, channels, pool, dilation",
    [
        ("elu", 1, (2, 2), 1),  # the best config's first block
        ("relu", 3, (3, 2), 2),  # log-mel with deltas, a pool with a remainder, dilated
    ],
)
def test_fused_block_equals_the_plain_layers(activation, channels, pool, dilation):
    """Outputs, running mean and variance, and the gradients of the kernel, BatchNorm scale and
    bias and of the input agree; two channels have a negative BatchNorm scale (the window's
    minimum wins) and a stretch of constant input makes tied maxima (ties with equal patches
    get the same gradient whichever position takes it)."""
    kp = jax.random.PRNGKey(7)
    x = normal(np.random.default_rng(7), (3, 17, 14, channels)) * 2.0 + 0.5
    x = x.at[1, 4:10].set(0.25)  # constant patches: exact ties inside pool windows
    lengths = jnp.array([17, 11, 6])
    mask = jnp.arange(17)[None, :] < lengths[:, None]
    x = jnp.where(mask[:, :, None, None], x, 0.0)
    plain = ConvBlock(5, (3, 3), pool, activation, dilation=dilation)
    variables = plain.init(kp, x, mask, train=False)
    params = jax.tree.map(lambda v: v, variables["params"])
    params["BatchNorm_0"]["scale"] = jnp.array([1.0, -0.5, 2.0, -1.5, 0.7])
    params["BatchNorm_0"]["bias"] = jnp.array([0.1, -0.2, 0.0, 0.3, -0.1])
    variables = {"params": params, "batch_stats": variables["batch_stats"]}
    out_p, stats_p, (gp, gxp) = block_run(False, x, mask, variables, activation, pool, dilation)
    out_f, stats_f, (gf, gxf) = block_run(True, x, mask, variables, activation, pool, dilation)
    assert out_f.shape == out_p.shape
    np.testing.assert_allclose(np.asarray(out_f), np.asarray(out_p), rtol=1e-5, atol=1e-5)
    assert jax.tree.structure(stats_f) == jax.tree.structure(stats_p)
    for a, b in zip(jax.tree.leaves(stats_f), jax.tree.leaves(stats_p), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    assert jax.tree.structure(gf) == jax.tree.structure(gp)
    for a, b in zip(jax.tree.leaves(gf), jax.tree.leaves(gp), strict=True):
        assert relative(a, b) < 1e-4
    # the input's gradient too, away from the ties (there it goes to the first tied position,
    # the plain max-pool shares it: another valid subgradient; training never reads it)
    away = [(0, slice(None)), (2, slice(None)), (1, slice(0, 3))]
    for b, rows in away:
        assert relative(gxf[b, rows], gxp[b, rows]) < 1e-4


def tiny_network(first_block: str) -> CNNLSTM:
    return twins.tiny_network(conv_grad="matmul", first_block=first_block)


def test_cnn_lstm_trains_the_same_with_the_fused_first_block():
    """Five Adam steps from the same start: losses within 1e-4 relative, the same parameter
    tree, and scoring (the plain layers either way) gives equal logits from equal weights."""
    runs = {b: train_steps(tiny_network(b), optax.adam(1e-2)) for b in ("plain", "fused")}
    plain, fused = runs["plain"], runs["fused"]
    for key in ("variables", "params"):
        assert jax.tree.structure(plain[key]) == jax.tree.structure(fused[key])
    np.testing.assert_array_equal(np.asarray(plain["logits"]), np.asarray(fused["logits"]))
    np.testing.assert_allclose(fused["losses"], plain["losses"], rtol=1e-4)
    assert fused["losses"][-1] < fused["losses"][0]


def test_fused_block_gradients_under_vmap_are_each_members():
    """Members trained in one step (jax.vmap over the variables and the batch): each member's
    gradient is its own."""
    block = ConvBlock(3, (3, 3), (2, 2), "elu", fused=True)
    xs = normal(np.random.default_rng(4), (2, 2, 8, 6, 1))
    mask = jnp.ones((2, 8), bool)
    variables = [block.init(jax.random.PRNGKey(i), xs[i], mask, train=False) for i in (0, 1)]

    def grad(v, x):
        def loss(p):
            out, _ = block.apply(
                {"params": p, "batch_stats": v["batch_stats"]},
                x,
                mask,
                train=True,
                mutable=["batch_stats"],
            )
            return jnp.sin(out).sum()

        return jax.grad(loss)(v["params"])

    stacked = jax.tree.map(lambda *a: jnp.stack(a), *variables)
    batched = jax.vmap(grad)(stacked, xs)
    for i in (0, 1):
        for a, b in zip(
            jax.tree.leaves(jax.tree.map(lambda t, i=i: t[i], batched)),
            jax.tree.leaves(grad(variables[i], xs[i])),
            strict=True,
        ):
            assert relative(a, b) < 1e-5


def test_first_block_setting_resolved_and_refused():
    feats, frames = jnp.ones((1, 8, 8)), jnp.array([8])
    cfg = ConfigDict(model_section().to_dict())
    cfg.first_block = "fast"
    with pytest.raises(ConfigError, match=r"model\.first_block='fast'"):
        create_model(cfg, 4)
    gelu = CNNLSTM(
        num_classes=2,
        filters=(2,),
        pools=((2, 2),),
        activation="gelu",
        lstm_hidden=2,
        first_block="fused",
    )
    with pytest.raises(ConfigError, match=r"model\.first_block='fused'.*gelu"):
        gelu.init(jax.random.PRNGKey(0), feats, frames, train=True)
    # auto where it does not apply: the plain layers, no error
    auto = gelu.clone(first_block="auto")
    variables = auto.init(jax.random.PRNGKey(0), feats, frames)
    auto.apply(variables, feats, frames, train=True, mutable=["batch_stats"])
    residual = gelu.clone(activation="elu", residual=(True,))
    with pytest.raises(ConfigError, match="residual"):
        residual.init(jax.random.PRNGKey(0), feats, frames, train=True)
