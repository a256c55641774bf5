"""The TDNN family (``model.name = "tdnn"``): an x-vector-style time-delay network
(:class:`TDNN`), its ``model`` fields and its factory.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from ser_jax.errors import ConfigError
from ser_jax.models.initializers import KERNEL_INIT
from ser_jax.models.layers import ACTIVATIONS, check_activation
from ser_jax.models.registry import register_model
from ser_jax.models.statistics import check_statistics, frame_vectors, masked_functionals


def config_fields() -> dict[str, Any]:
    """The TDNN's own ``model`` fields and their defaults. It also reads ``filters`` (its
    layers' widths) and ``dilations`` (their dilations; () = all 1), declared by the CNN-LSTM,
    and ``statistics`` (its pooling's), declared by the functionals model."""
    return {
        "tdnn_kernels": (5, 3, 3, 1),  # the kernel width over time of each layer
        # Dense units (with the activation) after the statistics pooling; 0 = none. Unset
        # (None): model.head_hidden, the field that held it in configs written before this
        # one (saved runs read back the same network).
        "embedding": ml_collections.config_dict.placeholder(int),
    }


def tdnn_embedding(model_cfg: Any) -> int:
    """``model.embedding``; for a config written before it, ``model.head_hidden``."""
    embedding = model_cfg.get("embedding")
    head_hidden = int(model_cfg.get("head_hidden", 0))
    if embedding is None:
        return head_hidden
    if head_hidden:
        raise ConfigError(
            f"model.head_hidden={head_hidden} with model.name='tdnn': the TDNN's layer after "
            f"its statistics pooling is model.embedding (={embedding}); leave head_hidden 0"
        )
    return int(embedding)


class TDNNLayer(nn.Module):
    """A time-delay layer: 1-D convolution over time (dilated), BatchNorm over the valid
    frames, activation, padding zeroed; sows its BatchNorm's count (``bn_count``) for
    speaker-adaptive BatchNorm."""

    features: int
    kernel: int = 3
    dilation: int = 1
    activation: str = "relu"
    bn_momentum: float = 0.9

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array, *, train: bool) -> jax.Array:
        """x (batch, time, features_in), mask (batch, time) bool → (batch, time, features)."""
        self.sow("intermediates", "bn_count", mask.sum())
        y = nn.Conv(
            self.features,
            (self.kernel,),
            padding="SAME",
            kernel_dilation=(self.dilation,),
            use_bias=False,
            kernel_init=KERNEL_INIT,
        )(x)
        y = nn.BatchNorm(momentum=self.bn_momentum, epsilon=1e-5)(
            y, use_running_average=not train, mask=jnp.broadcast_to(mask[..., None], y.shape)
        )
        return jnp.where(mask[..., None], ACTIVATIONS[self.activation](y), 0.0)


class TDNN(nn.Module):
    """x-vector-style time-delay network with statistics pooling (Snyder et al. 2018; for
    emotion, Pappagari et al. 2020): each frame's features (every band and channel, the
    per-frame tracks once: :func:`frame_vectors`) through dilated 1-D convolutions over time
    (:class:`TDNNLayer`), the masked statistics of the last layer over the valid frames
    (``statistics``, default mean and standard deviation), an embedding layer and a Dense
    output. Input ``feats (batch, time, bands[, channels])`` and ``frame_lengths (batch,)``;
    output logits ``(batch, classes)``. Padding never reaches the output: every layer zeroes
    the padded frames (what ``SAME`` padding gives an unpadded clip), BatchNorm counts valid
    frames only, and the statistics read valid frames only."""

    num_classes: int
    filters: Sequence[int] = (128, 128, 128, 256)
    kernels: Sequence[int] = (5, 3, 3, 1)
    dilations: Sequence[int] = (1, 2, 3, 1)
    activation: str = "relu"
    dropout: float = 0.0
    bn_momentum: float = 0.9
    embedding: int = 128  # Dense units (with the activation) after the pooling; 0 = none
    statistics: tuple[str, ...] = ("mean", "std")
    track_channels: int = 0

    @nn.compact
    def __call__(
        self, feats: jax.Array, frame_lengths: jax.Array, *, train: bool = False
    ) -> jax.Array:
        n = len(self.filters)
        for name in ("kernels", "dilations"):
            if len(getattr(self, name)) != n:
                raise ConfigError(
                    f"model.{'tdnn_kernels' if name == 'kernels' else name} has "
                    f"{len(getattr(self, name))} entries for {n} layers (model.filters): give "
                    "one per layer"
                )
        lengths = frame_lengths.astype(jnp.int32)
        mask = jnp.arange(feats.shape[1])[None, :] < lengths[:, None]
        x = jnp.where(mask[..., None], frame_vectors(feats, self.track_channels), 0.0)
        for i, (features, kernel, dilation) in enumerate(
            zip(self.filters, self.kernels, self.dilations, strict=True)
        ):
            x = TDNNLayer(
                int(features),
                int(kernel),
                int(dilation),
                self.activation,
                self.bn_momentum,
                name=f"layer{i}",
            )(x, mask, train=train)
        h = masked_functionals(x, lengths, self.statistics)
        if self.embedding:
            h = ACTIVATIONS[self.activation](
                nn.Dense(self.embedding, kernel_init=KERNEL_INIT, name="embedding")(h)
            )
        if self.dropout > 0:
            h = nn.Dropout(self.dropout)(h, deterministic=not train)
        return nn.Dense(self.num_classes, kernel_init=KERNEL_INIT, name="head")(h)


@register_model("tdnn", fields=config_fields)
def _tdnn(model_cfg: Any, num_classes: int) -> nn.Module:
    check_activation(model_cfg)
    filters = tuple(int(f) for f in model_cfg.filters)
    if not filters or any(f <= 0 for f in filters):
        raise ConfigError(f"model.filters={filters}: the TDNN needs positive layer widths")
    kernels = tuple(int(k) for k in model_cfg.get("tdnn_kernels", (5, 3, 3, 1)))
    dilations = tuple(int(d) for d in model_cfg.dilations) or (1,) * len(filters)
    if any(k <= 0 for k in kernels) or any(d <= 0 for d in dilations):
        raise ConfigError(
            f"model.tdnn_kernels={kernels}, model.dilations={dilations}: must be positive"
        )
    return TDNN(
        num_classes=num_classes,
        filters=filters,
        kernels=kernels,
        dilations=dilations,
        activation=model_cfg.activation,
        dropout=float(model_cfg.dropout),
        bn_momentum=float(model_cfg.bn_momentum),
        embedding=tdnn_embedding(model_cfg),
        statistics=check_statistics(model_cfg.get("statistics", ("mean", "std"))),
        track_channels=int(model_cfg.get("track_channels", 0)),
    )
