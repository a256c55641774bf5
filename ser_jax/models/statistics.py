"""Utterance statistics over the valid frames (``masked_functionals``), shared by every family:
the functionals model classifies them, the TDNN pools its last layer with them, and the
CNN-LSTM's statistics branch (``model.functionals``) reads them beside its LSTM.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ser_jax.errors import ConfigError

# masked_functionals' statistics: the default set, and the names it knows besides "pNN"
# (the NN-th percentile, 0..100)
FUNCTIONALS = ("mean", "std", "p10", "p50", "p90", "change", "slope")
NAMED_STATISTICS = ("mean", "std", "change", "slope", "skew", "kurtosis")


def check_statistics(statistics: Sequence[str], field: str = "model.statistics") -> tuple[str, ...]:
    """The statistics as a tuple, or a ConfigError naming ``field`` and the bad entry."""
    names = tuple(str(s) for s in statistics)
    if not names:
        raise ConfigError(f"{field}=(): name at least one statistic, e.g. {FUNCTIONALS}")
    for s in names:
        if s in NAMED_STATISTICS:
            continue
        if not (s.startswith("p") and s[1:].isdigit() and 0 <= int(s[1:]) <= 100):
            raise ConfigError(
                f"{field}: unknown statistic {s!r}; choose from {NAMED_STATISTICS} or a "
                "percentile 'p0'..'p100'"
            )
    if len(set(names)) != len(names):
        raise ConfigError(f"{field}={names}: a statistic is named twice")
    return names


def masked_functionals(
    x: jax.Array, frame_lengths: jax.Array, statistics: Sequence[str] = FUNCTIONALS
) -> jax.Array:
    """Statistics over the valid frames of each row: ``x (batch, time, features)`` →
    ``(batch, len(statistics) * features)``, each statistic's block of ``features`` in the
    order named. The default: mean, standard deviation, the 10th, 50th and 90th percentiles,
    the mean absolute frame-to-frame change, and the least-squares slope over the row's valid
    span (time scaled to 0..1); also known: ``skew`` (third standardised moment),
    ``kurtosis`` (fourth, minus 3) and any percentile ``pNN`` (the order statistic at
    ``floor(NN/100 * (n - 1))``, so ``p0`` is the minimum and ``p100`` the maximum). Padding
    never enters them; a row with no valid frame gives zeros."""
    statistics = check_statistics(statistics)
    t = x.shape[1]
    n = frame_lengths.astype(jnp.int32)
    valid = (jnp.arange(t)[None, :] < n[:, None])[..., None]
    count = jnp.maximum(n, 1).astype(x.dtype)[:, None]
    xs = jnp.where(valid, x, 0.0)
    mean = xs.sum(1) / count
    centred = jnp.where(valid, x - mean[:, None], 0.0)
    std = jnp.sqrt((centred**2).sum(1) / count + 1e-6)
    # sorted once, and only when a percentile is asked for
    percentiles = any(s not in NAMED_STATISTICS for s in statistics)
    ordered = jnp.sort(jnp.where(valid, x, jnp.inf), axis=1) if percentiles else None

    def quantile(q: float) -> jax.Array:
        k = jnp.floor(q * (jnp.maximum(n, 1) - 1)).astype(jnp.int32)
        # a one-hot sum (exact), not take_along_axis: jax2onnx mis-broadcasts that gather's
        # indices under a symbolic batch size (ser-jax export --format onnx)
        picked = jnp.arange(t)[None, :, None] == k[:, None, None]
        return jnp.sum(jnp.where(picked, ordered, 0.0), axis=1)

    def change() -> jax.Array:
        pairs = valid[:, 1:] & valid[:, :-1]
        total = jnp.where(pairs, jnp.abs(x[:, 1:] - x[:, :-1]), 0.0).sum(1)
        return total / jnp.maximum(n - 1, 1).astype(x.dtype)[:, None]

    def slope() -> jax.Array:
        # time scaled to 0..1 over each row's valid frames, centred on its valid mean
        time = jnp.arange(t, dtype=x.dtype)[None, :, None] / count[:, :, None]
        time = jnp.where(
            valid, time - jnp.where(valid, time, 0.0).sum(1, keepdims=True) / count[:, :, None], 0.0
        )
        return (time * centred).sum(1) / jnp.maximum((time**2).sum(1), 1e-6)

    def moment(k: int) -> jax.Array:
        return (centred**k).sum(1) / count / std**k

    compute = {
        "mean": lambda: mean,
        "std": lambda: std,
        "change": change,
        "slope": slope,
        "skew": lambda: moment(3),
        "kurtosis": lambda: moment(4) - 3.0,
    }
    out = jnp.concatenate(
        [compute[s]() if s in compute else quantile(int(s[1:]) / 100) for s in statistics],
        axis=-1,
    )
    return jnp.where(n[:, None] > 0, out, 0.0)


def frame_vectors(feats: jax.Array, track_channels: int = 0) -> jax.Array:
    """``feats (batch, time, bands[, channels])`` as one vector a frame ``(batch, time, n)``:
    every band of every channel, and the last ``track_channels`` channels (per-frame tracks
    such as frontend.pitch's, repeated along the band axis by ``ser_jax.frontend.pitch.with_pitch``)
    once each, from band 0."""
    b, t = feats.shape[:2]
    k = int(track_channels)
    if not k:
        return feats.reshape(b, t, -1)
    check_tracks(feats, k)
    return jnp.concatenate([feats[..., :-k].reshape(b, t, -1), feats[:, :, 0, -k:]], axis=-1)


def check_tracks(feats: jax.Array, track_channels: int) -> None:
    """Refuse ``model.track_channels`` that leave no feature channel before the tracks."""
    if feats.ndim != 4 or feats.shape[-1] <= track_channels:
        raise ConfigError(
            f"model.track_channels={track_channels}: the input has "
            f"{feats.shape[-1] if feats.ndim == 4 else 1} channel(s); the tracks "
            "(frontend.pitch: 3, or 2 with pitch_level=False) come after the log-mel"
        )


class FunctionalsNorm(nn.Module):
    """BatchNorm over the rows that have frames (``rows``), sowing how many values it
    averaged (``bn_count``, read by speaker-adaptive BatchNorm as ``ConvBlock``'s is)."""

    momentum: float

    @nn.compact
    def __call__(self, x: jax.Array, rows: jax.Array, *, train: bool) -> jax.Array:
        self.sow("intermediates", "bn_count", rows.sum())
        mask = jnp.broadcast_to(rows[:, None], x.shape)
        return nn.BatchNorm(momentum=self.momentum, epsilon=1e-5)(
            x, use_running_average=not train, mask=mask
        )
