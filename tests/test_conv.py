"""``model.conv_grad="matmul"`` (ser_jax.models.conv): the kernel gradient as matrix products
equals XLA's transposed convolution within float32 rounding, the forward pass is the same, a
CNN-LSTM trains the same way, and settings it does not cover are refused."""

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
from ser_jax.models.cnn_lstm import resolve_conv_grad
from ser_jax.models.conv import (
    kernel_gradient,
    matmul_grad_conv_general_dilated,
    xla_conv,
)


def relative(a: jax.Array, b: jax.Array) -> float:
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


@pytest.mark.parametrize(
    "kernel, channels, padding, dilation",
    [
        ((3, 3), 1, ((1, 1), (1, 1)), (1, 1)),  # the first block: one im2col GEMM
        ((3, 3), 12, ((1, 1), (1, 1)), (1, 1)),  # 108 > IM2COL_MAX: a GEMM per time tap
        ((3, 3), 12, ((2, 2), (2, 2)), (2, 2)),  # dilated
        ((1, 1), 12, ((0, 0), (0, 0)), (1, 1)),  # a residual block's 1x1 shortcut
        ((2, 3), 5, ((0, 1), (1, 1)), (1, 1)),  # uneven padding and kernel
    ],
)
def test_kernel_gradient_equals_xla(kernel, channels, padding, dilation):
    rng = np.random.default_rng(0)
    x = normal(rng, (3, 11, 9, channels))
    w = normal(rng, (*kernel, channels, 6))
    dy = normal(rng, xla_conv(x, w, padding, dilation).shape)
    _, vjp = jax.vjp(lambda w_: xla_conv(x, w_, padding, dilation), w)
    assert relative(kernel_gradient(x, dy, w.shape, padding, dilation), vjp(dy)[0]) < 1e-5


def test_custom_vjp_conv_matches_lax_in_value_and_both_gradients():
    rng = np.random.default_rng(1)
    x, w = normal(rng, (2, 10, 8, 4)), normal(rng, (3, 3, 4, 5))

    def loss(conv, x_, w_):
        return (
            jnp.tanh(conv(x_, w_, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))) ** 2
        ).sum()

    ours = jax.value_and_grad(lambda a, b: loss(matmul_grad_conv_general_dilated, a, b), (0, 1))
    ref = jax.value_and_grad(lambda a, b: loss(jax.lax.conv_general_dilated, a, b), (0, 1))
    (v1, (dx1, dw1)), (v2, (dx2, dw2)) = ours(x, w), ref(x, w)
    assert float(v1) == float(v2)
    np.testing.assert_array_equal(np.asarray(dx1), np.asarray(dx2))  # XLA's own input gradient
    assert relative(dw1, dw2) < 1e-5
    # members: under vmap the products batch
    xs, ws = jnp.stack([x, 2 * x]), jnp.stack([w, -w])
    dws = jax.vmap(jax.grad(lambda a, b: loss(matmul_grad_conv_general_dilated, a, b), 1))(xs, ws)
    assert (
        relative(dws[1], jax.grad(lambda b: loss(jax.lax.conv_general_dilated, 2 * x, b))(-w))
        < 1e-5
    )


def tiny_network(conv_grad: str) -> CNNLSTM:
    return twins.tiny_network(residual=(False, True), conv_grad=conv_grad)


def test_cnn_lstm_trains_the_same_with_either_kernel_gradient():
    """Same logits, gradients within 1e-5 (relative norm per leaf), and five SGD steps whose
    losses agree within 1e-4 relative; the parameter trees are identical (checkpoints and
    shipped models load either way). Clips of different lengths exercise the padding masks."""
    runs = {g: train_steps(tiny_network(g), optax.sgd(0.1)) for g in ("xla", "matmul")}
    xla, matmul = runs["xla"], runs["matmul"]
    assert jax.tree.structure(xla["variables"]) == jax.tree.structure(matmul["variables"])
    np.testing.assert_array_equal(np.asarray(xla["logits"]), np.asarray(matmul["logits"]))
    for a, b in zip(jax.tree.leaves(matmul["grads"]), jax.tree.leaves(xla["grads"]), strict=True):
        assert relative(a, b) < 1e-5
    np.testing.assert_allclose(matmul["losses"], xla["losses"], rtol=1e-4)


def test_conv_grad_setting_resolved_and_refused():
    assert resolve_conv_grad("auto") == ("matmul" if jax.default_backend() == "cpu" else "xla")
    cfg = ConfigDict(model_section().to_dict())
    cfg.conv_grad = "fft"
    with pytest.raises(ConfigError, match=r"model\.conv_grad='fft'"):
        create_model(cfg, 4)
    x, w = jnp.ones((1, 8, 8, 2)), jnp.ones((3, 3, 2, 2))
    with pytest.raises(ValueError, match="stride-1"):
        matmul_grad_conv_general_dilated(
            x, w, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
