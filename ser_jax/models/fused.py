"""The first conv block's training pass, fused (``model.first_block="fused"``).

The first block (conv over the log-mel, masked BatchNorm, ELU or ReLU, max-pool) writes the
network's largest tensor: batch 32 x 201 frames x 64 bands x 64 filters, 105 MB; the
elementwise passes over it and their gradients were about 40 % of the CPU train step. Fused,
that tensor is never materialised in the forward pass:

- **BatchNorm's batch statistics from the input patches.** ``y = P w`` for the ``k = kh*kw*c``
  values of each patch, so ``mean_c = pbar . w_c`` and ``var_c = w_c^T C w_c`` with ``pbar`` and
  ``C`` the patches' mean and covariance over the valid steps: a ``k x k`` matrix (9 x 9 on a
  one-channel log-mel), whatever the number of filters.
- **Max-pool before BatchNorm and the activation.** Per channel, BatchNorm is ``(y - mean) * m +
  bias`` and ELU/ReLU never decrease, so ``max act(BN(y)) = act(BN(max y))`` over a window when
  ``m >= 0`` (``min y`` when ``m < 0``): the same value, the same float operations on the
  winning element. The selected value is computed window offset by window offset from the
  input (``k`` multiply-adds each, one fused elementwise loop at the pooled resolution), with
  the offset that won.
- **Its gradient** goes to the winning position (the first of tied ones, which for equal
  patches is the same gradient as sharing it), and from there the kernel gradient is the matrix
  product of :func:`ser_jax.models.conv.kernel_gradient`; the input gradient is XLA's.

Only the float32 summation order differs from the plain layers (the variance is computed
centred, where Flax's BatchNorm takes ``E[y^2] - E[y]^2``): tests/test_fused.py holds them to
the reference. Valid pooled steps never read padding (pooling floors), so no mask is needed
before the pool; the caller zeroes the pooled padding as after the plain block.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ser_jax.models.conv import kernel_gradient, patch_columns, xla_conv
from ser_jax.models.conv import pads as explicit_pads
from ser_jax.models.initializers import KERNEL_INIT

FUSED_ACTIVATIONS = ("elu", "relu")  # non-decreasing: they commute with max-pool
FUSED_MAX_TAPS = 64  # kh*kw*c_in at most this (the patch covariance is taps x taps)


def same_pads(kernel: Sequence[int], dilation: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """``SAME`` padding of a stride-1 convolution with this kernel and dilation (as lax
    resolves it for ``nn.Conv``; stride 1 makes it independent of the input's size)."""
    window = [(int(k) - 1) * dilation + 1 for k in kernel]
    return explicit_pads(jax.lax.padtype_to_pads(window, window, (1, 1), "SAME"))


def patch_moments(
    x: jax.Array, valid: jax.Array, kernel: Sequence[int], pads: Any, dilation: int
) -> tuple[jax.Array, jax.Array]:
    """The mean ``(k,)`` and covariance ``(k, k)`` of the input patches over the valid steps
    (``valid (b, t)``; every band counts), centred before the product."""
    cols = patch_columns(x, kernel, pads, (dilation, dilation))
    k = cols.shape[0]
    weight = jnp.broadcast_to(valid[:, :, None], cols.shape[1:]).astype(x.dtype).reshape(-1)
    cols = cols.reshape(k, -1)
    count = jnp.maximum(weight.sum(), 1.0)
    mean = cols @ weight / count
    centred = (cols - mean[:, None]) * weight
    return mean, centred @ centred.T / count


def _offset_values(
    x: jax.Array, w: jax.Array, pads: Any, dilation: int, pool: tuple[int, int]
) -> list[jax.Array]:
    """The convolution at each window offset of the pool, ``(b, t//pt, f//pf, o)`` each, in the
    window's row-major order: strided slices of the padded input times the kernel's taps."""
    kh, kw, c, _ = w.shape
    pt, pf = pool
    b, t, f, _ = x.shape
    tp, fp = t // pt, f // pf
    xp = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    values = []
    for a in range(pt):
        for e in range(pf):
            y = None
            for i in range(kh):
                for j in range(kw):
                    t0, f0 = a + i * dilation, e + j * dilation
                    view = xp[:, t0 : t0 + tp * pt : pt, f0 : f0 + fp * pf : pf]
                    for ci in range(c):
                        term = view[..., ci : ci + 1] * w[i, j, ci]
                        y = term if y is None else y + term
            values.append(y)
    return values


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def select_pool(
    x: jax.Array, w: jax.Array, sign: jax.Array, pads: Any, dilation: int, pool: tuple[int, int]
) -> jax.Array:
    """Per pool window and channel, the convolution's max (``sign`` +1) or min (-1)."""
    return _select_forward(x, w, sign, pads, dilation, pool)[0]


def select_best(values: list[jax.Array], sign: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Elementwise over ``values`` (one per window offset): the max (``sign`` +1) or min (-1)
    per channel, and the index of the first offset that holds it (int8)."""
    best, index = None, None
    for n, y in enumerate(values):
        y = y * sign
        if best is None:
            best, index = y, jnp.zeros(y.shape, jnp.int8)
        else:
            wins = y > best
            best, index = jnp.where(wins, y, best), jnp.where(wins, jnp.int8(n), index)
    return best * sign, index


def to_winners(g: jax.Array, index: jax.Array, pool: tuple[int, int], shape: Sequence[int]):
    """The pooled gradient ``g (b, t//pt, f//pf, o)`` put back at each window's winning
    offset ``index``: ``shape`` (b, t, f, o), zero elsewhere."""
    pt, pf = pool
    b, tp, fp, o = g.shape
    offsets = jnp.arange(pt * pf, dtype=jnp.int8).reshape(1, 1, pt, 1, pf, 1)
    won = index[:, :, None, :, None, :] == offsets
    dy = jnp.where(won, g[:, :, None, :, None, :], 0.0).reshape(b, tp * pt, fp * pf, o)
    return jnp.pad(dy, ((0, 0), (0, shape[1] - tp * pt), (0, shape[2] - fp * pf), (0, 0)))


def _select_forward(x, w, sign, pads, dilation, pool):
    best, index = select_best(_offset_values(x, w, pads, dilation, pool), sign)
    return best, (x, w, index, sign)


def _select_backward(pads, dilation, pool, residuals, g):
    x, w, index, sign = residuals
    dy = to_winners(g, index, pool, x.shape[:3] + (w.shape[-1],))
    dw = kernel_gradient(x, dy, w.shape, pads, (dilation, dilation)).astype(w.dtype)
    _, input_vjp = jax.vjp(lambda x_: xla_conv(x_, w, pads, (dilation, dilation)), x)
    (dx,) = input_vjp(dy)
    return dx, dw, jnp.zeros_like(sign)


select_pool.defvjp(_select_forward, _select_backward)


def batch_moments(
    x: jax.Array, valid: jax.Array, w: jax.Array, dilation: int = 1
) -> tuple[jax.Array, jax.Array]:
    """The batch mean and variance ``(o,)`` of the convolution (``SAME``, no bias) of ``x (b,
    t, f, c)`` by ``w`` over the ``valid (b, t)`` steps, from the patches' moments."""
    pads = same_pads(w.shape[:2], dilation)
    pbar, cov = patch_moments(x, valid, w.shape[:2], pads, dilation)
    w2 = w.reshape(-1, w.shape[-1])
    return pbar @ w2, jnp.maximum(0.0, ((cov @ w2) * w2).sum(axis=0))


def fused_block(
    x: jax.Array,
    w: jax.Array,
    moments: tuple[jax.Array, jax.Array],
    scale: jax.Array,
    bias: jax.Array,
    *,
    pool: tuple[int, int],
    activation: Callable[[jax.Array], jax.Array],
    dilation: int = 1,
    epsilon: float = 1e-5,
) -> jax.Array:
    """Conv (``SAME``, no bias) → BatchNorm with ``moments`` (mean, variance) → activation →
    max-pool, for ``x (b, t, f, c)`` zero on padding: ``(b, t//pt, f//pf, o)``, the padding
    left to the caller to zero."""
    mean, var = moments
    mul = jax.lax.rsqrt(var + epsilon) * scale
    sign = jax.lax.stop_gradient(jnp.where(mul >= 0, 1.0, -1.0).astype(x.dtype))
    pads = same_pads(w.shape[:2], dilation)
    selected = select_pool(x, w, sign, pads, dilation, tuple(pool))
    return activation((selected - mean) * mul + bias)


class ConvKernel(nn.Module):
    """The kernel ``nn.Conv`` would own (same name, initialiser and shape)."""

    shape: tuple[int, ...]

    @nn.compact
    def __call__(self) -> jax.Array:
        return self.param("kernel", KERNEL_INIT, self.shape, jnp.float32)


class BatchNormVariables(nn.Module):
    """The variables ``nn.BatchNorm`` would own: its ``scale`` and ``bias``, and its running
    ``mean`` and ``var``, updated with this batch's statistics as Flax does."""

    features: int
    momentum: float = 0.9

    @nn.compact
    def __call__(self, mean: jax.Array, var: jax.Array) -> tuple[jax.Array, jax.Array]:
        shape = (self.features,)
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros(shape, jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones(shape, jnp.float32))
        scale = self.param("scale", nn.initializers.ones, shape, jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, shape, jnp.float32)
        if not self.is_initializing():
            ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
            ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
        return scale, bias
