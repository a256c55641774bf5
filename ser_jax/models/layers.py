"""Layers of the CNN-LSTM: the convolution block and its valid-step max-pool, the pooling of
LSTM steps (last valid step, attention), MixStyle and gradient reversal; and the activations
every family names (``model.activation``).

Padding never reaches an output: after every convolution the padded time steps are zeroed (the
value ``SAME`` convolution padding gives an unpadded clip), BatchNorm statistics are gathered on
valid steps only, max-pooling ignores padded steps, and the pooling over time reads valid steps
only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ser_jax.errors import ConfigError
from ser_jax.models.conv import matmul_grad_conv_general_dilated
from ser_jax.models.fused import BatchNormVariables, ConvKernel, batch_moments, fused_block
from ser_jax.models.initializers import KERNEL_INIT

ACTIVATIONS = {"relu": nn.relu, "elu": nn.elu, "gelu": nn.gelu}


def check_activation(model_cfg: Any) -> None:
    """Refuse an unknown ``model.activation``, naming the known ones."""
    if model_cfg.activation not in ACTIVATIONS:
        raise ConfigError(
            f"model.activation={model_cfg.activation!r}; choose one of {sorted(ACTIVATIONS)}"
        )


def pooled_length(length: int, pools: Sequence[Sequence[int]]) -> int:
    """Valid time steps left after the blocks' max-pools for a clip of ``length`` frames.

    Pooling is ``VALID`` (floor): a window that reaches into padding is dropped, exactly as for
    the unpadded clip.
    """
    for pool in pools:
        length = length // int(pool[0])
    return length


def check_min_frames(min_frames: int, pools: Sequence[Sequence[int]], where: str = "") -> None:
    """Refuse a config that would pool the shortest clip's time axis away (MATLAB ``MinLength``)."""
    left = pooled_length(min_frames, pools)
    if left < 1:
        need = 1
        for pool in pools:
            need *= int(pool[0])
        raise ConfigError(
            f"model.pools {tuple(tuple(p) for p in pools)} shrink time {need}x: the shortest clip"
            f"{' (' + where + ')' if where else ''} has {min_frames} frames and would keep "
            f"{left} time steps; it needs at least {need} frames. Use fewer/smaller time pools, a "
            "smaller frontend.hop_length, or drop clips that short."
        )


class ConvBlock(nn.Module):
    """Conv 2-D → BatchNorm (valid steps only) → activation → max-pool over (time, mel).

    ``dilation`` dilates the kernel over time and mel. ``residual`` makes it a residual block:
    conv-BN-activation, conv-BN, plus the input (a 1x1 conv + BN when the channels change),
    then the activation; the padded steps are zeroed between the convolutions, so each sees
    what it would see of the unpadded clip.
    """

    filters: int
    kernel: tuple[int, int] = (3, 3)
    pool: tuple[int, int] = (2, 2)
    activation: str = "relu"
    bn_momentum: float = 0.9
    dilation: int = 1
    residual: bool = False
    dtype: Any = jnp.float32
    # the kernel gradient: "xla" (XLA's transposed convolution) or "matmul" (matrix
    # products, models.conv: faster on CPU; same forward pass)
    conv_grad: str = "xla"
    # the training pass fused (models.fused: BatchNorm statistics from the input patches,
    # max-pool before the activation; no full-resolution activation); plain blocks with ELU
    # or ReLU and few input channels only (``first_block_path`` checks)
    fused: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array, *, train: bool) -> jax.Array:
        """x (batch, time, mel, channels), mask (batch, time) bool → pooled x, zero on padding."""
        act = ACTIVATIONS[self.activation]
        bn_mask = mask[:, :, None, None]
        # How many values this block's BatchNorm layers see (valid steps x mel), kept only
        # when "intermediates" is mutable (speaker-adaptive BatchNorm pools batches by it).
        self.sow("intermediates", "bn_count", mask.sum() * x.shape[2])
        if self.fused and train:
            w = ConvKernel((*self.kernel, x.shape[-1], self.filters), name="Conv_0")()
            moments = batch_moments(x, mask, w, self.dilation)
            scale, bias = BatchNormVariables(self.filters, self.bn_momentum, name="BatchNorm_0")(
                *moments
            )
            return fused_block(
                x,
                w,
                moments,
                scale,
                bias,
                pool=tuple(self.pool),
                activation=act,
                dilation=self.dilation,
            )

        def conv_bn(y: jax.Array, filters: int, kernel: tuple[int, int], dilation: int):
            y = nn.Conv(
                filters,
                kernel,
                padding="SAME",
                kernel_dilation=(dilation, dilation),
                use_bias=False,
                kernel_init=KERNEL_INIT,
                dtype=self.dtype,
                conv_general_dilated=(
                    matmul_grad_conv_general_dilated if self.conv_grad == "matmul" else None
                ),
            )(y)
            return nn.BatchNorm(momentum=self.bn_momentum, epsilon=1e-5, dtype=self.dtype)(
                y, use_running_average=not train, mask=jnp.broadcast_to(bn_mask, y.shape)
            )

        y = act(conv_bn(x, self.filters, self.kernel, self.dilation))
        if self.residual:
            y = jnp.where(bn_mask, y, 0.0)
            y = conv_bn(y, self.filters, self.kernel, self.dilation)
            shortcut = x if x.shape[-1] == self.filters else conv_bn(x, self.filters, (1, 1), 1)
            y = act(y + shortcut)
        # Padded steps must not win a max: send them to -inf, pool, then zero the new padding.
        y = jnp.where(bn_mask, y, -jnp.inf)
        return max_pool_valid(y, tuple(self.pool))


def max_pool_valid(x: jax.Array, pool: tuple[int, int]) -> jax.Array:
    """``nn.max_pool(x, pool, strides=pool, padding="VALID")`` for x (batch, time, mel, channels).

    Written as a reshape and a max over each window: the same outputs, but its gradient is a few
    fused elementwise ops, where ``reduce_window``'s select-and-scatter gradient took about a
    quarter of the CPU train step. Only at exact ties inside a window does the gradient differ
    (shared equally instead of all to one element): with ReLU the tied zeros have zero gradient
    either way, and with ELU ties need saturation at -1.
    """
    pt, pf = pool
    b, t, f, c = x.shape
    x = x[:, : t // pt * pt, : f // pf * pf]
    return x.reshape(b, t // pt, pt, f // pf, pf, c).max(axis=(2, 4))


def style_statistics(x: jax.Array, valid: jax.Array, eps: float = 1e-6):
    """Each example's per-channel mean and standard deviation of ``x (batch, time, mel,
    channels)`` over its valid time steps and every mel bin: ``(batch, 1, 1, channels)`` each."""
    m = valid[:, :, None, None].astype(x.dtype)
    n = jnp.maximum(valid.sum(1).astype(x.dtype) * x.shape[2], 1.0)[:, None, None, None]
    mean = (x * m).sum(axis=(1, 2), keepdims=True) / n
    var = (((x - mean) * m) ** 2).sum(axis=(1, 2), keepdims=True) / n
    return mean, jnp.sqrt(var + eps)


def mix_statistics(x: jax.Array, valid: jax.Array, perm: jax.Array, lam: jax.Array) -> jax.Array:
    """Each example's feature map re-styled with the per-channel statistics mixed with those
    of example ``perm[b]``: ``(x - mu) / sigma * (lam sigma + (1 - lam) sigma') + lam mu +
    (1 - lam) mu'``; the statistics are constants to the gradient (as in MixStyle), padded
    steps stay 0, and ``lam = 1`` leaves an example exactly as it is."""
    mean, std = jax.lax.stop_gradient(style_statistics(x, valid))
    lam4 = lam[:, None, None, None].astype(x.dtype)
    mixed_mean = lam4 * mean + (1 - lam4) * mean[perm]
    mixed_std = lam4 * std + (1 - lam4) * std[perm]
    out = (x - mean) / std * mixed_std + mixed_mean
    out = jnp.where((lam4 < 1.0), out, x)
    return jnp.where(valid[:, :, None, None], out, 0.0)


def mix_style(
    key: jax.Array, x: jax.Array, valid: jax.Array, prob: float, alpha: float
) -> jax.Array:
    """MixStyle (Zhou, Yang, Qiao & Xiang 2021, "Domain Generalization with MixStyle"): with
    probability ``prob`` an example's channel statistics (its "style": here much of what
    tells one speaker's recording from another's) are mixed with those of another example of
    the batch, weight ``lam ~ Beta(alpha, alpha)``, so the layers after it learn to classify
    under styles between the training speakers'. Per example, never with an empty row."""
    k_perm, k_lam, k_on = jax.random.split(key, 3)
    batch = x.shape[0]
    perm = jax.random.permutation(k_perm, batch)
    lam = jax.random.beta(k_lam, alpha, alpha, (batch,))
    rows = valid.any(axis=1)
    on = jax.random.bernoulli(k_on, prob, (batch,)) & rows & rows[perm]
    return mix_statistics(x, valid, perm, jnp.where(on, lam, 1.0))


def reverse_gradient(x: jax.Array, scale: float) -> jax.Array:
    """``x`` itself forward; backward, the gradient times ``-scale`` (the gradient reversal
    layer of Ganin & Lempitsky 2015). ``x - stop_gradient(x)`` is exactly 0 forward."""
    frozen = jax.lax.stop_gradient(x)
    return frozen - scale * (x - frozen)


class AttentionPool(nn.Module):
    """Attention over time: ``softmax_t(v · tanh(W h_t))`` over the valid steps only."""

    @nn.compact
    def __call__(self, outputs: jax.Array, valid: jax.Array) -> jax.Array:
        hidden = outputs.shape[-1]
        score = nn.Dense(1, use_bias=False, kernel_init=KERNEL_INIT, name="score")(
            jnp.tanh(nn.Dense(hidden, kernel_init=KERNEL_INIT, name="key")(outputs))
        )[..., 0]
        score = jnp.where(valid, score, -jnp.inf)
        weights = jax.nn.softmax(score, axis=-1)
        weights = jnp.where(valid, weights, 0.0)
        return jnp.einsum("bt,btf->bf", weights, outputs)


def attention_pool(outputs: jax.Array, valid: jax.Array, *, name: str) -> jax.Array:
    """``outputs (batch, time, features)`` → ``(batch, features)``, weights zero off ``valid``."""
    return AttentionPool(name=name)(outputs, valid)


def last_valid_step(outputs: jax.Array, lengths: jax.Array) -> jax.Array:
    """outputs (batch, time, features) → (batch, features) at index ``length - 1`` of each row."""
    index = jnp.clip(lengths - 1, 0, outputs.shape[1] - 1)
    return jnp.take_along_axis(outputs, index[:, None, None], axis=1)[:, 0]


def lstm_scan(
    cell: dict[str, Any], seq: jax.Array, seq_lengths: jax.Array, reverse: bool = False
) -> jax.Array:
    """``nn.RNN(nn.OptimizedLSTMCell)`` with the cell's parameters ``cell`` (its ``ii``, ``if``,
    ``ig``, ``io`` input kernels and ``hi``, ``hf``, ``hg``, ``ho`` recurrent Dense layers) as
    one plain ``lax.scan``: ``seq`` (batch, time, features) → outputs (batch, time, hidden),
    equal to the module's on every valid step (``reverse``: each row's valid steps read
    backwards, as ``nn.RNN(reverse=True, keep_order=True)``; padded steps differ). jax2onnx
    converts this where Flax's own RNN fails to trace with a symbolic batch size."""
    gates = ("i", "f", "g", "o")
    w_in = jnp.concatenate([cell[f"i{g}"]["kernel"] for g in gates], axis=-1)
    w_h = jnp.concatenate([cell[f"h{g}"]["kernel"] for g in gates], axis=-1)
    bias = jnp.concatenate([cell[f"h{g}"]["bias"] for g in gates], axis=-1)
    hidden = w_h.shape[0]
    steps = jnp.arange(seq.shape[1])[None, :]
    lengths = seq_lengths.astype(jnp.int32)[:, None]
    order = jnp.where(steps < lengths, lengths - 1 - steps, steps) if reverse else None
    if reverse:  # each row's valid steps backwards (the padding after them stays put)
        seq = jnp.take_along_axis(seq, order[..., None], axis=1)
    x_proj = _dense(seq, w_in) + bias  # (batch, time, 4 * hidden)

    def step(carry: tuple[jax.Array, jax.Array], x: jax.Array):
        c, h = carry
        z = x + _dense(h, w_h)
        i, f, g, o = (z[:, k * hidden : (k + 1) * hidden] for k in range(4))
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (c, h), h

    zeros = jnp.zeros_like(x_proj[:, 0, :hidden])
    _, out = jax.lax.scan(step, (zeros, zeros), jnp.swapaxes(x_proj, 0, 1))
    out = jnp.swapaxes(out, 0, 1)
    return jnp.take_along_axis(out, order[..., None], axis=1) if reverse else out


def _dense(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """``x @ kernel`` over the last axis, as the ``dot_general`` primitive (jax2onnx's shim
    of ``jnp.dot`` mis-shapes batched operands)."""
    return jax.lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())))
