"""The functionals family (``model.name = "functionals"``): utterance statistics and a
perceptron (:class:`Functionals`), its ``model`` fields and its factory.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax

from ser_jax.errors import ConfigError
from ser_jax.models.initializers import KERNEL_INIT
from ser_jax.models.layers import ACTIVATIONS, check_activation
from ser_jax.models.registry import register_model
from ser_jax.models.statistics import (
    FUNCTIONALS,
    FunctionalsNorm,
    check_statistics,
    frame_vectors,
    masked_functionals,
)


def config_fields() -> dict[str, Any]:
    """The functionals model's ``model`` fields and their defaults. The TDNN also reads
    ``statistics`` (its pooling's)."""
    return {
        "mlp_hidden": (256, 128),  # widths of the perceptron over the utterance statistics
        # the statistics of every feature over the clip, in this order
        # (models.masked_functionals: mean, std, change, slope, skew, kurtosis, or "pNN" for
        # the NN-th percentile, p0 the minimum, p100 the maximum)
        "statistics": FUNCTIONALS,
    }


class Functionals(nn.Module):
    """Utterance-level statistics of the front-end's features (``masked_functionals`` of
    every mel band and channel over the valid frames), BatchNorm over the examples that have
    frames, and a multi-layer perceptron: the classic "functionals" recipe of speech emotion
    recognition on our front-end, trained end to end. Its input BatchNorm is what
    speaker-adaptive BatchNorm replaces with a speaker's statistics: the per-speaker
    standardisation of the functionals.

    A 2-D input ``(batch, statistics)`` is taken as the statistics themselves (what
    :func:`cached_input` computed once for the training cache, ``train.cache_features``): no
    parameter comes before them, so they are the same in every step of a clean run."""

    num_classes: int
    hidden: Sequence[int] = (256, 128)
    activation: str = "relu"
    dropout: float = 0.0
    bn_momentum: float = 0.9
    track_channels: int = 0  # the last channels are per-frame tracks (pitch), read once
    statistics: tuple[str, ...] = FUNCTIONALS  # masked_functionals' statistics, in this order

    @nn.compact
    def __call__(
        self, feats: jax.Array, frame_lengths: jax.Array, *, train: bool = False
    ) -> jax.Array:
        if feats.ndim == 2:
            stats = feats
        else:
            x = frame_vectors(feats, self.track_channels)
            stats = masked_functionals(x, frame_lengths, self.statistics)
        stats = FunctionalsNorm(self.bn_momentum, name="norm")(
            stats, frame_lengths > 0, train=train
        )
        act = ACTIVATIONS[self.activation]
        h = stats
        for i, units in enumerate(self.hidden):
            h = act(nn.Dense(int(units), kernel_init=KERNEL_INIT, name=f"hidden{i}")(h))
            if self.dropout > 0:
                h = nn.Dropout(self.dropout)(h, deterministic=not train)
        return nn.Dense(self.num_classes, kernel_init=KERNEL_INIT, name="head")(h)


def cached_input(model: nn.Module) -> Any:
    """``fn(feats, frame_lengths) -> inputs`` that compute, once, the part of ``model``'s
    forward pass that holds no parameter, for the training cache (``train.cache_features``);
    None when the model's first layer learns (its input is the features themselves).
    :class:`Functionals`: the utterance statistics, which its ``__call__`` accepts in place of
    the features (a 2-D input)."""
    if isinstance(model, Functionals):
        return lambda feats, frame_lengths: masked_functionals(
            frame_vectors(feats, model.track_channels), frame_lengths, model.statistics
        )
    return None


@register_model("functionals", fields=config_fields)
def _functionals(model_cfg: Any, num_classes: int) -> nn.Module:
    check_activation(model_cfg)
    hidden = tuple(int(h) for h in model_cfg.get("mlp_hidden", (256, 128)))
    if any(h <= 0 for h in hidden):
        raise ConfigError(f"model.mlp_hidden={hidden}: every layer needs a positive width")
    return Functionals(
        num_classes=num_classes,
        hidden=hidden,
        activation=model_cfg.activation,
        dropout=float(model_cfg.dropout),
        bn_momentum=float(model_cfg.bn_momentum),
        track_channels=int(model_cfg.get("track_channels", 0)),
        statistics=check_statistics(model_cfg.get("statistics", FUNCTIONALS)),
    )
