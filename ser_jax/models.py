"""Models: Flax (linen) modules only, no training logic, registered by name (``model.name``).

``CNNLSTM`` reads a batch of log-mel "images" ``(batch, time, mel[, channels])`` with their
valid frame counts ``(batch,)`` and returns class logits ``(batch, classes)``. Padding never
reaches the output: after every convolution the padded time steps are zeroed (the value ``SAME``
convolution padding gives an unpadded clip), BatchNorm statistics are gathered on valid steps
only, max-pooling ignores padded steps, the LSTM runs with ``seq_lengths``, and the pooling over
time reads valid steps only (the last *valid* step, MATLAB's ``OutputMode="last"``; their mean;
or masked attention).

A new model is one module plus a factory registered with ``@register_model("name")`` that
builds it from the ``model`` config section.
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

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array, *, train: bool) -> jax.Array:
        """x (batch, time, mel, channels), mask (batch, time) bool → pooled x, zero on padding."""
        act = ACTIVATIONS[self.activation]
        bn_mask = mask[:, :, None, None]
        # How many values this block's BatchNorm layers see (valid steps x mel), kept only
        # when "intermediates" is mutable (speaker-adaptive BatchNorm pools batches by it).
        self.sow("intermediates", "bn_count", mask.sum() * x.shape[2])

        def conv_bn(y: jax.Array, filters: int, kernel: tuple[int, int], dilation: int):
            y = nn.Conv(
                filters,
                kernel,
                padding="SAME",
                kernel_dilation=(dilation, dilation),
                use_bias=False,
                dtype=self.dtype,
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


POOLINGS = ("last", "mean", "attention")


class CNNLSTM(nn.Module):
    """2-D CNN-LSTM for utterance classification.

    Input ``feats (batch, time, mel)`` or ``(batch, time, mel, channels)`` (e.g. log-mel with
    deltas) and ``frame_lengths (batch,)``; output logits ``(batch, num_classes)``.

    Blocks of :class:`ConvBlock` (optionally residual and dilated), the pooled feature map
    reshaped to a sequence over time, an optional linear ``projection``, an LSTM (or a
    bidirectional one) over the valid steps, pooled over time (``pooling``: the last valid
    step, MATLAB's OutputMode "last"; the mean of the valid steps; or attention over them,
    masked), an optional hidden layer, and a Dense layer.

    ``speaker_classes > 0`` adds a speaker head for speaker-adversarial training (Ganin &
    Lempitsky 2015): a Dense layer over the same utterance embedding as the emotion head,
    behind a gradient reversal of scale ``speaker_reversal``; its logits are sown as
    ``intermediates/speaker_logits`` (the train step reads them), the output stays the
    emotion logits, and prediction never uses the head.
    """

    num_classes: int
    filters: Sequence[int] = (16, 16, 32, 32)
    kernel: tuple[int, int] = (3, 3)
    pools: Sequence[tuple[int, int]] = ((2, 2), (2, 2), (2, 2), (2, 2))
    activation: str = "relu"
    lstm_hidden: int = 256
    dropout: float = 0.0
    bn_momentum: float = 0.9
    dilations: Sequence[int] = ()  # per block; () = 1 everywhere
    residual: Sequence[bool] = ()  # per block; () = plain blocks
    bidirectional: bool = False
    pooling: str = "last"
    projection: int = 0  # a Dense layer (with the activation) before the LSTM; 0 = none
    head_hidden: int = 0  # a Dense layer (with the activation) before the output; 0 = none
    speaker_classes: int = 0  # a speaker head over this many speakers; 0 = none
    speaker_reversal: float = 1.0  # the gradient the embedding gets from it, times -1
    mixstyle_prob: float = 0.0  # MixStyle after the mixstyle_blocks in training; 0 = off
    mixstyle_alpha: float = 0.1  # the mixing weight's Beta(alpha, alpha)
    mixstyle_blocks: Sequence[int] = (0, 1)  # after which conv blocks (0-based)
    functionals: int = 0  # a branch: Dense units over the input's utterance statistics; 0 = none
    # the last channels of the input are per-frame tracks (frontend.pitch's 3) that only the
    # statistics branch reads, once each; the convolutions see the other channels
    track_channels: int = 0

    @nn.compact
    def __call__(
        self, feats: jax.Array, frame_lengths: jax.Array, *, train: bool = False
    ) -> jax.Array:
        n = len(self.filters)
        if len(self.pools) != n:
            raise ConfigError(
                f"model.filters has {n} blocks but model.pools has "
                f"{len(self.pools)}: give one pool per block"
            )
        for name in ("dilations", "residual"):
            if len(getattr(self, name)) not in (0, n):
                raise ConfigError(
                    f"model.{name} has {len(getattr(self, name))} entries for {n} blocks: "
                    "give one per block, or none"
                )
        if self.pooling not in POOLINGS:
            raise ConfigError(f"model.pooling={self.pooling!r}; choose one of {POOLINGS}")
        act = ACTIVATIONS[self.activation]
        lengths = frame_lengths.astype(jnp.int32)
        x = feats if feats.ndim == 4 else feats[..., None]
        if self.track_channels:  # per-frame tracks feed the statistics branch only
            if not self.functionals:
                raise ConfigError(
                    f"model.track_channels={self.track_channels} with model.functionals=0: "
                    "the CNN-LSTM reads tracks only in its statistics branch; give "
                    "model.functionals > 0 (or frontend.pitch without track_channels to "
                    "give the convolutions the tracks as channels)"
                )
            check_tracks(feats, self.track_channels)
            x = feats[..., : -self.track_channels]
        if pooled_length(x.shape[2], [(p[1],) for p in self.pools]) < 1:
            raise ConfigError(
                f"model.pools {tuple(tuple(p) for p in self.pools)} pool the {x.shape[2]} bands "
                "of the front-end (frontend.n_mels, or frontend.mfcc + descriptors) away: give "
                "smaller band pools or more bands"
            )
        valid = jnp.arange(x.shape[1])[None, :] < lengths[:, None]
        x = jnp.where(valid[:, :, None, None], x, 0.0)
        for i, (filters, pool) in enumerate(zip(self.filters, self.pools, strict=True)):
            mask = jnp.arange(x.shape[1])[None, :] < lengths[:, None]
            x = ConvBlock(
                filters,
                tuple(self.kernel),
                tuple(pool),
                self.activation,
                self.bn_momentum,
                dilation=int(self.dilations[i]) if self.dilations else 1,
                residual=bool(self.residual[i]) if self.residual else False,
                name=f"block{i}",
            )(x, mask, train=train)
            lengths = lengths // int(pool[0])
            valid = jnp.arange(x.shape[1])[None, :] < lengths[:, None]
            x = jnp.where(valid[:, :, None, None], x, 0.0)
            if (
                train
                and self.mixstyle_prob > 0
                and i in self.mixstyle_blocks
                and self.has_rng("mixstyle")  # the train step's stream only: never in scoring
            ):
                x = mix_style(
                    self.make_rng("mixstyle"), x, valid, self.mixstyle_prob, self.mixstyle_alpha
                )
        batch, steps, mel, channels = x.shape
        seq = x.reshape(batch, steps, mel * channels)
        if self.projection:
            seq = act(nn.Dense(self.projection, name="projection")(seq))
        if self.dropout > 0:
            seq = nn.Dropout(self.dropout)(seq, deterministic=not train)
        seq_lengths = jnp.maximum(lengths, 1)
        forward = nn.RNN(nn.OptimizedLSTMCell(self.lstm_hidden), name="lstm")
        if self.bidirectional:
            backward = nn.RNN(
                nn.OptimizedLSTMCell(self.lstm_hidden),
                reverse=True,
                keep_order=True,
                name="lstm_backward",
            )
            outputs = nn.Bidirectional(forward, backward)(seq, seq_lengths=seq_lengths)
        else:
            outputs = forward(seq, seq_lengths=seq_lengths)
        valid = jnp.arange(steps)[None, :] < seq_lengths[:, None]
        if self.pooling == "last":
            last = last_valid_step(outputs, seq_lengths)
            if self.bidirectional:  # the backward direction has read the whole clip at step 0
                h = self.lstm_hidden
                last = jnp.concatenate([last[:, :h], outputs[:, 0, h:]], axis=-1)
            pooled = last
        elif self.pooling == "mean":
            w = valid[..., None].astype(outputs.dtype)
            pooled = (outputs * w).sum(1) / w.sum(1)
        else:
            pooled = attention_pool(outputs, valid, name="attention")
        if self.functionals:  # the utterance-statistics view beside the sequence model's
            # over every valid input frame (frame_lengths: `lengths` is pooled by now)
            frames = frame_lengths.astype(jnp.int32)
            stats = masked_functionals(frame_vectors(feats, self.track_channels), frames)
            stats = FunctionalsNorm(self.bn_momentum, name="functionals_norm")(
                stats, frames > 0, train=train
            )
            branch = act(nn.Dense(self.functionals, name="functionals_dense")(stats))
            pooled = jnp.concatenate([pooled, branch], axis=-1)
        if self.head_hidden:
            pooled = act(nn.Dense(self.head_hidden, name="head_hidden")(pooled))
        if self.speaker_classes:
            reversed_ = reverse_gradient(pooled, self.speaker_reversal)
            speaker = nn.Dense(self.speaker_classes, name="speaker_head")(reversed_)
            self.sow("intermediates", "speaker_logits", speaker)
        if self.dropout > 0:
            pooled = nn.Dropout(self.dropout)(pooled, deterministic=not train)
        return nn.Dense(self.num_classes, name="head")(pooled)


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
        score = nn.Dense(1, use_bias=False, name="score")(
            jnp.tanh(nn.Dense(hidden, name="key")(outputs))
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
    n = len(model_cfg.filters)
    mixstyle_prob = float(model_cfg.get("mixstyle_prob", 0.0))
    blocks = tuple(int(b) for b in model_cfg.get("mixstyle_blocks", (0, 1)))
    mixstyle_alpha = float(model_cfg.get("mixstyle_alpha", 0.1))
    if not 0.0 <= mixstyle_prob <= 1.0:
        raise ConfigError(f"model.mixstyle_prob={mixstyle_prob}: must be in [0, 1]")
    if mixstyle_prob > 0 and (not blocks or any(not 0 <= b < n for b in blocks)):
        raise ConfigError(
            f"model.mixstyle_blocks={blocks}: give conv block indices in 0..{n - 1} "
            f"(model.filters has {n} blocks)"
        )
    if mixstyle_prob > 0 and mixstyle_alpha <= 0:
        raise ConfigError(
            f"model.mixstyle_alpha={mixstyle_alpha}: must be > 0 "
            "(the mixing weight is drawn from Beta(alpha, alpha))"
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
        dilations=tuple(int(d) for d in model_cfg.dilations),
        residual=tuple(bool(r) for r in model_cfg.residual),
        bidirectional=bool(model_cfg.bidirectional),
        pooling=str(model_cfg.pooling),
        projection=int(model_cfg.projection),
        head_hidden=int(model_cfg.head_hidden),
        speaker_classes=int(model_cfg.get("speaker_classes", 0)),
        speaker_reversal=float(model_cfg.get("speaker_reversal", 1.0)),
        mixstyle_prob=mixstyle_prob,
        mixstyle_alpha=mixstyle_alpha,
        mixstyle_blocks=blocks,
        functionals=int(model_cfg.get("functionals", 0)),
        track_channels=int(model_cfg.get("track_channels", 0)),
    )


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
        return jnp.take_along_axis(ordered, k[:, None, None], axis=1)[:, 0]

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
            h = act(nn.Dense(int(units), name=f"hidden{i}")(h))
            if self.dropout > 0:
                h = nn.Dropout(self.dropout)(h, deterministic=not train)
        return nn.Dense(self.num_classes, name="head")(h)


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


@register_model("functionals")
def _functionals(model_cfg: Any, num_classes: int) -> nn.Module:
    if model_cfg.activation not in ACTIVATIONS:
        raise ConfigError(
            f"model.activation={model_cfg.activation!r}; choose one of {sorted(ACTIVATIONS)}"
        )
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
            h = ACTIVATIONS[self.activation](nn.Dense(self.embedding, name="embedding")(h))
        if self.dropout > 0:
            h = nn.Dropout(self.dropout)(h, deterministic=not train)
        return nn.Dense(self.num_classes, name="head")(h)


@register_model("tdnn")
def _tdnn(model_cfg: Any, num_classes: int) -> nn.Module:
    if model_cfg.activation not in ACTIVATIONS:
        raise ConfigError(
            f"model.activation={model_cfg.activation!r}; choose one of {sorted(ACTIVATIONS)}"
        )
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
        embedding=int(model_cfg.head_hidden),
        statistics=check_statistics(model_cfg.get("statistics", ("mean", "std"))),
        track_channels=int(model_cfg.get("track_channels", 0)),
    )
