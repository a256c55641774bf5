"""Models: Flax (linen) modules only, no training logic.

``CNNLSTM`` reads a batch of log-mel "images" ``(batch, time, mel)`` with their valid frame
counts ``(batch,)`` and returns class logits ``(batch, classes)``. Padding never reaches the
output: after every block the padded time steps are zeroed (the value ``SAME`` convolution padding
gives an unpadded clip), BatchNorm statistics are gathered on valid steps only, max-pooling ignores
padded steps, the LSTM runs with ``seq_lengths``, and the output is the LSTM state at the last
*valid* step (MATLAB's ``OutputMode="last"``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ser_jax.errors import ConfigError

ACTIVATIONS = {"relu": nn.relu, "elu": nn.elu, "gelu": nn.gelu}


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
    """Conv 2-D → BatchNorm (valid steps only) → activation → max-pool over (time, mel)."""

    filters: int
    kernel: tuple[int, int] = (3, 3)
    pool: tuple[int, int] = (2, 2)
    activation: str = "relu"
    bn_momentum: float = 0.9
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array, *, train: bool) -> jax.Array:
        """x (batch, time, mel, channels), mask (batch, time) bool → pooled x, zero on padding."""
        x = nn.Conv(self.filters, self.kernel, padding="SAME", use_bias=False, dtype=self.dtype)(x)
        bn_mask = jnp.broadcast_to(mask[:, :, None, None], x.shape)
        x = nn.BatchNorm(momentum=self.bn_momentum, epsilon=1e-5, dtype=self.dtype)(
            x, use_running_average=not train, mask=bn_mask
        )
        x = ACTIVATIONS[self.activation](x)
        pt, pf = self.pool
        # Padded steps must not win a max: send them to -inf, pool, then zero the new padding.
        x = jnp.where(mask[:, :, None, None], x, -jnp.inf)
        return max_pool_valid(x, (pt, pf))


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


class CNNLSTM(nn.Module):
    """2-D CNN-LSTM for utterance classification.

    Input ``feats (batch, time, mel)`` and ``frame_lengths (batch,)``; output logits
    ``(batch, num_classes)``.
    """

    num_classes: int
    filters: Sequence[int] = (16, 16, 32, 32)
    kernel: tuple[int, int] = (3, 3)
    pools: Sequence[tuple[int, int]] = ((2, 2), (2, 2), (2, 2), (2, 2))
    activation: str = "relu"
    lstm_hidden: int = 256
    dropout: float = 0.0
    bn_momentum: float = 0.9

    @nn.compact
    def __call__(
        self, feats: jax.Array, frame_lengths: jax.Array, *, train: bool = False
    ) -> jax.Array:
        if len(self.filters) != len(self.pools):
            raise ConfigError(
                f"model.filters has {len(self.filters)} blocks but model.pools has "
                f"{len(self.pools)}: give one pool per block"
            )
        lengths = frame_lengths.astype(jnp.int32)
        valid = jnp.arange(feats.shape[1])[None, :] < lengths[:, None]
        x = jnp.where(valid[:, :, None, None], feats[..., None], 0.0)
        for i, (filters, pool) in enumerate(zip(self.filters, self.pools, strict=True)):
            mask = jnp.arange(x.shape[1])[None, :] < lengths[:, None]
            x = ConvBlock(
                filters,
                tuple(self.kernel),
                tuple(pool),
                self.activation,
                self.bn_momentum,
                name=f"block{i}",
            )(x, mask, train=train)
            lengths = lengths // int(pool[0])
            valid = jnp.arange(x.shape[1])[None, :] < lengths[:, None]
            x = jnp.where(valid[:, :, None, None], x, 0.0)
        batch, steps, mel, channels = x.shape
        seq = x.reshape(batch, steps, mel * channels)
        if self.dropout > 0:
            seq = nn.Dropout(self.dropout)(seq, deterministic=not train)
        outputs = nn.RNN(nn.OptimizedLSTMCell(self.lstm_hidden), name="lstm")(
            seq, seq_lengths=jnp.maximum(lengths, 1)
        )
        last = last_valid_step(outputs, lengths)
        if self.dropout > 0:
            last = nn.Dropout(self.dropout)(last, deterministic=not train)
        return nn.Dense(self.num_classes, name="head")(last)


def last_valid_step(outputs: jax.Array, lengths: jax.Array) -> jax.Array:
    """outputs (batch, time, features) → (batch, features) at index ``length - 1`` of each row."""
    index = jnp.clip(lengths - 1, 0, outputs.shape[1] - 1)
    return jnp.take_along_axis(outputs, index[:, None, None], axis=1)[:, 0]


ModelFactory = Callable[[Any, int], nn.Module]
MODELS: dict[str, ModelFactory] = {}


def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator: register ``fn(model_cfg, num_classes) -> nn.Module`` as ``model.name``."""

    def decorate(fn: ModelFactory) -> ModelFactory:
        MODELS[name] = fn
        return fn

    return decorate


def create_model(model_cfg: Any, num_classes: int) -> nn.Module:
    """Build the module named by ``model_cfg.name`` from an ml_collections config section."""
    name = str(model_cfg.get("name", "cnn_lstm"))
    if name not in MODELS:
        raise ConfigError(f"model.name={name!r} is not a known model (known: {sorted(MODELS)})")
    return MODELS[name](model_cfg, num_classes)


@register_model("cnn_lstm")
def _cnn_lstm(model_cfg: Any, num_classes: int) -> nn.Module:
    if model_cfg.activation not in ACTIVATIONS:
        raise ConfigError(
            f"model.activation={model_cfg.activation!r}; choose one of {sorted(ACTIVATIONS)}"
        )
    return CNNLSTM(
        num_classes=num_classes,
        filters=tuple(int(f) for f in model_cfg.filters),
        kernel=tuple(int(k) for k in model_cfg.kernel),
        pools=tuple(tuple(int(p) for p in pool) for pool in model_cfg.pools),
        activation=model_cfg.activation,
        lstm_hidden=int(model_cfg.lstm_hidden),
        dropout=float(model_cfg.dropout),
        bn_momentum=float(model_cfg.bn_momentum),
    )
