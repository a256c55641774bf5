"""A 2-D convolution whose kernel gradient is a matrix product (``model.conv_grad="matmul"``).

The forward pass and the gradient with respect to the input are XLA's own convolutions. The
kernel gradient ``dW[i, j, c, o] = sum_{b,t,f} x_pad[b, t + i*d, f + j*d, c] dy[b, t, f, o]`` is
written as matrix products over the ``b*t*f`` positions instead of XLA's transposed
convolution, which its CPU backend runs 3-4x slower per FLOP than the forward convolution:

- few input channels (the first block: ``kh*kw*c <= IM2COL_MAX``): the whole im2col matrix,
  channel-major ``(kh*kw*c, b*t*f)``, times ``dy (b*t*f, o)``: one GEMM;
- otherwise the mel taps only are unrolled ``(b, t', f, kw*c)`` and the time taps are moved to
  the gradient: ``dy`` shifted down by each tap's rows, concatenated ``(b, t', f, kh*o)``; one
  GEMM of the two gives all ``kh*kw`` taps, a third of the im2col's memory (the unrolled
  input is made once, not sliced again per time tap: 10 % of the best network's CPU step).

Only the float32 summation order differs from XLA's (tests/test_conv.py: relative difference of
the kernel gradient below 1e-4, losses of several train steps within 1e-4). Under ``jax.vmap``
(models trained as members of one step) the products become batched GEMMs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

IM2COL_MAX = 64  # kh*kw*c_in at most this: one im2col GEMM; above: one GEMM per time tap
CONV_GRADS = ("matmul", "xla")
NHWC = ("NHWC", "HWIO", "NHWC")


def pads(padding: Any) -> tuple[tuple[int, int], tuple[int, int]]:
    """Flax's explicit ``((lo, hi), (lo, hi))`` padding as a tuple of int pairs."""
    if isinstance(padding, str):
        raise ValueError(f"conv padding {padding!r}: matmul_grad_conv takes explicit pads")
    (a, b), (c, d) = padding
    return (int(a), int(b)), (int(c), int(d))


def patch_columns(
    x: jax.Array, kernel: Sequence[int], padding: Any, dilation: Sequence[int]
) -> jax.Array:
    """The channel-major im2col of ``x (b, t, f, c)`` for a stride-1 convolution: ``(kh*kw*c,
    b, t, f)``, rows in the kernel's ``(kh, kw, c)`` order."""
    kh, kw = (int(k) for k in kernel)
    (pt, pf), (dt, df) = pads(padding), (int(dilation[0]), int(dilation[1]))
    b, t, f, c = x.shape
    xt = jnp.pad(jnp.transpose(x, (3, 0, 1, 2)), ((0, 0), (0, 0), pt, pf))
    return jnp.concatenate(
        [xt[:, :, i * dt : i * dt + t, j * df : j * df + f] for i in range(kh) for j in range(kw)],
        axis=0,
    )


def kernel_gradient(
    x: jax.Array, dy: jax.Array, kernel_shape: Sequence[int], padding: Any, dilation: Sequence[int]
) -> jax.Array:
    """``dW (kh, kw, c, o)`` of a stride-1 NHWC convolution, as matrix products."""
    kh, kw, c, o = (int(s) for s in kernel_shape)
    (pt, pf), (dt, df) = pads(padding), (int(dilation[0]), int(dilation[1]))
    b, t, f = dy.shape[0], dy.shape[1], dy.shape[2]
    dy2 = dy.reshape(b * t * f, o)
    if kh * kw * c <= IM2COL_MAX:  # channel-major im2col: taps x channels by positions
        cols = patch_columns(x, (kh, kw), (pt, pf), (dt, df)).reshape(kh * kw * c, b * t * f)
        dw = jnp.dot(cols, dy2)
        return dw.reshape(kh, kw, c, o)
    # the mel taps unrolled once (b, t + pads, f, kw*c); each time tap i becomes a copy of dy
    # shifted down by i*dt rows, concatenated over the taps (b, t + pads, f, kh*o): one GEMM
    # gives every (mel tap, channel) x (time tap, filter) product
    xp = jnp.pad(x, ((0, 0), pt, pf, (0, 0)))
    tp = xp.shape[1]
    mel_taps = jnp.concatenate([xp[:, :, j * df : j * df + f] for j in range(kw)], axis=-1)
    shifted = jnp.concatenate(
        [jnp.pad(dy, ((0, 0), (i * dt, tp - t - i * dt), (0, 0), (0, 0))) for i in range(kh)],
        axis=-1,
    )
    dw = lax.dot_general(
        mel_taps.reshape(-1, kw * c), shifted.reshape(-1, kh * o), (((0,), (0,)), ((), ()))
    )
    return dw.reshape(kw, c, kh, o).transpose(2, 0, 1, 3)


def xla_conv(x: jax.Array, w: jax.Array, padding: Any, dilation: Sequence[int]) -> jax.Array:
    """XLA's stride-1 NHWC convolution (the forward pass of both gradients)."""
    return lax.conv_general_dilated(
        x, w, (1, 1), padding, rhs_dilation=tuple(dilation), dimension_numbers=NHWC
    )


def make_matmul_grad_conv(padding: Any, dilation: Sequence[int]):
    """``conv(x, w)``: XLA's convolution forward and for ``dx``, :func:`kernel_gradient` for
    ``dw`` (padding and dilation fixed: they are static to a layer)."""
    padding = pads(padding)
    dilation = tuple(int(d) for d in dilation)

    @jax.custom_vjp
    def conv(x: jax.Array, w: jax.Array) -> jax.Array:
        return xla_conv(x, w, padding, dilation)

    def forward(x, w):
        return conv(x, w), (x, w)

    def backward(res, dy):
        x, w = res
        _, input_vjp = jax.vjp(lambda x_: xla_conv(x_, w, padding, dilation), x)
        (dx,) = input_vjp(dy)
        return dx, kernel_gradient(x, dy, w.shape, padding, dilation).astype(w.dtype)

    conv.defvjp(forward, backward)
    return conv


def matmul_grad_conv_general_dilated(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: Any,
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    feature_group_count: int = 1,
    precision: Any = None,
) -> jax.Array:
    """``lax.conv_general_dilated``'s signature (what ``nn.Conv(conv_general_dilated=...)``
    calls) for the one case the CNN-LSTM's blocks use: 2-D, stride 1, NHWC/HWIO, no input
    dilation or feature groups; anything else is refused rather than computed differently."""
    del precision
    dn = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    expected = lax.conv_dimension_numbers(lhs.shape, rhs.shape, NHWC)
    if (
        tuple(window_strides) != (1, 1)
        or any(int(d) != 1 for d in (lhs_dilation or (1, 1)))
        or feature_group_count != 1
        or dn != expected
    ):
        raise ValueError(
            "model.conv_grad='matmul' supports 2-D stride-1 NHWC convolutions without input "
            "dilation or feature groups; use model.conv_grad='xla' for this layer"
        )
    dilation = tuple(int(d) for d in (rhs_dilation or (1, 1)))
    if isinstance(padding, str):  # "SAME" / "VALID" as explicit pads, as lax resolves them
        window = [(k - 1) * d + 1 for k, d in zip(rhs.shape[:2], dilation, strict=True)]
        padding = lax.padtype_to_pads(lhs.shape[1:3], window, (1, 1), padding)
    return make_matmul_grad_conv(padding, dilation)(lhs, rhs)
