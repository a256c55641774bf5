"""The CNN-LSTM family (``model.name = "cnn_lstm"``): :class:`CNNLSTM`, its ``model`` fields
and its factory.

``CNNLSTM`` reads a batch of log-mel "images" ``(batch, time, mel[, channels])`` with their
valid frame counts ``(batch,)`` and returns class logits ``(batch, classes)``. Padding never
reaches the output: after every convolution the padded time steps are zeroed (the value ``SAME``
convolution padding gives an unpadded clip), BatchNorm statistics are gathered on valid steps
only, max-pooling ignores padded steps, the LSTM runs with ``seq_lengths``, and the pooling over
time reads valid steps only (the last *valid* step, MATLAB's ``OutputMode="last"``; their mean;
or masked attention).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ser_jax.errors import ConfigError
from ser_jax.frontend.logmel import floor_div
from ser_jax.models.conv import CONV_GRADS
from ser_jax.models.fused import FUSED_ACTIVATIONS, FUSED_MAX_TAPS
from ser_jax.models.initializers import KERNEL_INIT
from ser_jax.models.layers import (
    ACTIVATIONS,
    ConvBlock,
    attention_pool,
    check_activation,
    last_valid_step,
    lstm_scan,
    mix_style,
    pooled_length,
    reverse_gradient,
)
from ser_jax.models.registry import register_model
from ser_jax.models.statistics import (
    FunctionalsNorm,
    check_tracks,
    frame_vectors,
    masked_functionals,
)

POOLINGS = ("last", "mean", "attention")
FIRST_BLOCKS = ("auto", "fused", "plain")


def config_fields() -> dict[str, Any]:
    """The CNN-LSTM's ``model`` fields and their defaults (a small network for the demo
    corpus). The TDNN also reads ``filters`` (its layers' widths) and ``dilations``."""
    return {
        "filters": (8, 8, 16, 16),
        "kernel": (3, 3),
        "pools": ((2, 2), (2, 2), (2, 2), (2, 2)),  # (time, mel) per block
        "lstm_hidden": 32,
        "dilations": (),  # per block kernel dilation over (time, mel); () = all 1
        "residual": (),  # per block: a residual block (two convs + shortcut); () = all plain
        "projection": 0,  # Dense units (with the activation) before the LSTM; 0 = none
        "bidirectional": False,  # a bidirectional LSTM (forward and backward halves)
        "pooling": "last",  # over LSTM steps: last (valid step) | mean | attention (masked)
        "head_hidden": 0,  # Dense units (with the activation) before the output; 0 = none
        # a branch of this many Dense units over the input's utterance statistics
        # (models.masked_functionals of every band and channel), concatenated with the pooled
        # LSTM output before the head; 0 = none
        "functionals": 0,
        # Speaker-adversarial training: a speaker head over the utterance embedding, behind a
        # gradient reversal of scale speaker_reversal, trained on the training speakers (the
        # corpus's speakers in sorted order index it, so it needs at least that many
        # classes); prediction never uses it. 0 = off.
        "speaker_classes": 0,
        "speaker_reversal": 1.0,
        # MixStyle (domain generalisation across speakers): in training, after the conv
        # blocks mixstyle_blocks, each example's per-channel feature statistics are mixed
        # with another example's with probability mixstyle_prob, weight ~ Beta(mixstyle_alpha,
        # mixstyle_alpha); scoring never mixes. 0 = off.
        "mixstyle_prob": 0.0,
        "mixstyle_alpha": 0.1,
        "mixstyle_blocks": (0, 1),
        # the conv blocks' kernel gradient: "matmul" (matrix products, ser_jax.models.conv),
        # "xla" (XLA's own), or "auto" (matmul on CPU, where it is faster; xla elsewhere).
        # The forward pass is the same; only the float32 summation order of training differs.
        "conv_grad": "auto",
        # the first conv block's training pass: "fused" (ser_jax.models.fused: BatchNorm
        # statistics from the input patches, max-pool before the activation, never the
        # full-resolution activation; plain block, ELU or ReLU, kh*kw*channels <= 64),
        # "plain" (the layers one by one), "auto" (fused on CPU where it applies, where it
        # is faster; plain elsewhere). Scoring always runs the plain layers.
        "first_block": "auto",
    }


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
    # Apply only: the LSTM's trained weights run as one plain lax.scan (models.lstm_scan)
    # instead of Flax's RNN, equal on valid steps; ``ser-jax export --format onnx`` sets it
    plain_lstm: bool = False
    conv_grad: str = "xla"  # the blocks' kernel gradient: xla | matmul (models.conv)
    first_block: str = "plain"  # the first block's training pass: plain | fused | auto

    @nn.compact
    def __call__(
        self, feats: jax.Array, frame_lengths: jax.Array, *, train: bool = False
    ) -> jax.Array:
        self.check_blocks()
        x = self.conv_input(feats)
        lengths = frame_lengths.astype(jnp.int32)
        x, lengths = self.conv_blocks(x, lengths, train)
        outputs, seq_lengths = self.sequence(x, lengths, train)
        pooled = self.pool_steps(outputs, seq_lengths)
        if self.functionals:  # the utterance-statistics view beside the sequence model's
            pooled = jnp.concatenate(
                [pooled, self.statistics_branch(feats, frame_lengths, train)], axis=-1
            )
        return self.head(pooled, train)

    def check_blocks(self) -> None:
        """Refuse per-block settings that do not match ``filters``, and unknown poolings."""
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

    def conv_input(self, feats: jax.Array) -> jax.Array:
        """The channels the convolutions read ``(batch, time, bands, channels)``: the input
        without its per-frame tracks (``track_channels``), which only the statistics branch
        reads; refuses band pools that leave no band."""
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
        return x

    def conv_blocks(
        self, x: jax.Array, lengths: jax.Array, train: bool
    ) -> tuple[jax.Array, jax.Array]:
        """The conv blocks (MixStyle after the chosen ones, in training): the feature map,
        zero on padding, and the valid steps left of each row."""
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
                conv_grad=self.conv_grad,
                fused=i == 0 and self.first_block_fused(x.shape[-1]),
                name=f"block{i}",
            )(x, mask, train=train)
            lengths = floor_div(lengths, int(pool[0]))
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
        return x, lengths

    def first_block_fused(self, channels: int) -> bool:
        """Whether the first block's training pass is fused (``first_block``)."""
        residual = bool(self.residual and self.residual[0])
        path = first_block_path(self.first_block, self.activation, residual, self.kernel, channels)
        return path == "fused"

    def sequence(
        self, x: jax.Array, lengths: jax.Array, train: bool
    ) -> tuple[jax.Array, jax.Array]:
        """The feature map as a sequence over time (``projection``, dropout) through the LSTM
        (or the bidirectional one): its outputs ``(batch, steps, features)`` and the valid
        steps of each row (at least 1)."""
        batch, steps, mel, channels = x.shape
        seq = x.reshape(batch, steps, mel * channels)
        if self.projection:
            seq = ACTIVATIONS[self.activation](
                nn.Dense(self.projection, kernel_init=KERNEL_INIT, name="projection")(seq)
            )
        if self.dropout > 0:
            seq = nn.Dropout(self.dropout)(seq, deterministic=not train)
        seq_lengths = jnp.maximum(lengths, 1)
        if self.plain_lstm:
            return self.plain_sequence(seq, seq_lengths), seq_lengths
        forward = nn.RNN(
            nn.OptimizedLSTMCell(self.lstm_hidden, kernel_init=KERNEL_INIT), name="lstm"
        )
        if self.bidirectional:
            backward = nn.RNN(
                nn.OptimizedLSTMCell(self.lstm_hidden, kernel_init=KERNEL_INIT),
                reverse=True,
                keep_order=True,
                name="lstm_backward",
            )
            outputs = nn.Bidirectional(forward, backward)(seq, seq_lengths=seq_lengths)
        else:
            outputs = forward(seq, seq_lengths=seq_lengths)
        return outputs, seq_lengths

    def plain_sequence(self, seq: jax.Array, seq_lengths: jax.Array) -> jax.Array:
        """The trained LSTM (or both directions) as plain scans over its weights (apply only:
        the weights must exist, where ``nn.RNN`` put them: its cells belong to this module,
        ``OptimizedLSTMCell_0`` forward and ``_1`` backward)."""
        params = self.variables["params"]
        outputs = lstm_scan(params["OptimizedLSTMCell_0"], seq, seq_lengths)
        if self.bidirectional:
            backward = lstm_scan(params["OptimizedLSTMCell_1"], seq, seq_lengths, reverse=True)
            outputs = jnp.concatenate([outputs, backward], axis=-1)
        return outputs

    def pool_steps(self, outputs: jax.Array, seq_lengths: jax.Array) -> jax.Array:
        """The LSTM's outputs pooled over the valid steps (``pooling``)."""
        valid = jnp.arange(outputs.shape[1])[None, :] < seq_lengths[:, None]
        if self.pooling == "last":
            last = last_valid_step(outputs, seq_lengths)
            if self.bidirectional:  # the backward direction has read the whole clip at step 0
                h = self.lstm_hidden
                last = jnp.concatenate([last[:, :h], outputs[:, 0, h:]], axis=-1)
            return last
        if self.pooling == "mean":
            w = valid[..., None].astype(outputs.dtype)
            return (outputs * w).sum(1) / w.sum(1)
        return attention_pool(outputs, valid, name="attention")

    def statistics_branch(
        self, feats: jax.Array, frame_lengths: jax.Array, train: bool
    ) -> jax.Array:
        """``functionals`` Dense units over the utterance statistics of every valid input
        frame (the input's, not the pooled lengths)."""
        frames = frame_lengths.astype(jnp.int32)
        stats = masked_functionals(frame_vectors(feats, self.track_channels), frames)
        stats = FunctionalsNorm(self.bn_momentum, name="functionals_norm")(
            stats, frames > 0, train=train
        )
        return ACTIVATIONS[self.activation](
            nn.Dense(self.functionals, kernel_init=KERNEL_INIT, name="functionals_dense")(stats)
        )

    def head(self, pooled: jax.Array, train: bool) -> jax.Array:
        """The optional hidden layer, the speaker head (sown, behind the gradient reversal),
        dropout and the output layer."""
        act = ACTIVATIONS[self.activation]
        if self.head_hidden:
            pooled = act(
                nn.Dense(self.head_hidden, kernel_init=KERNEL_INIT, name="head_hidden")(pooled)
            )
        if self.speaker_classes:
            reversed_ = reverse_gradient(pooled, self.speaker_reversal)
            speaker = nn.Dense(self.speaker_classes, kernel_init=KERNEL_INIT, name="speaker_head")(
                reversed_
            )
            self.sow("intermediates", "speaker_logits", speaker)
        if self.dropout > 0:
            pooled = nn.Dropout(self.dropout)(pooled, deterministic=not train)
        return nn.Dense(self.num_classes, kernel_init=KERNEL_INIT, name="head")(pooled)


def check_mixstyle(model_cfg: Any) -> tuple[float, float, tuple[int, ...]]:
    """``model.mixstyle_prob``, ``mixstyle_alpha`` and ``mixstyle_blocks``, checked."""
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
    return mixstyle_prob, mixstyle_alpha, blocks


@register_model("cnn_lstm", fields=config_fields)
def _cnn_lstm(model_cfg: Any, num_classes: int) -> nn.Module:
    check_activation(model_cfg)
    mixstyle_prob, mixstyle_alpha, blocks = check_mixstyle(model_cfg)
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
        conv_grad=resolve_conv_grad(str(model_cfg.get("conv_grad", "auto"))),
        first_block=check_first_block(str(model_cfg.get("first_block", "auto"))),
    )


def check_first_block(value: str) -> str:
    """``model.first_block`` checked."""
    if value not in FIRST_BLOCKS:
        raise ConfigError(f"model.first_block={value!r}; choose one of {FIRST_BLOCKS}")
    return value


def first_block_path(
    value: str, activation: str, residual: bool, kernel: Sequence[int], channels: int
) -> str:
    """``model.first_block`` resolved to "fused" or "plain" for a first block of this
    activation, kind and kernel over ``channels`` input channels ("auto": fused on CPU where
    it applies); an explicit "fused" where it does not apply is refused."""
    why = fused_block_refusal(activation, residual, kernel, channels)
    if value == "fused" and why:
        raise ConfigError(f"model.first_block='fused': {why}; use 'plain' or 'auto'")
    if value == "auto":
        return "fused" if not why and jax.default_backend() == "cpu" else "plain"
    return value


def fused_block_refusal(
    activation: str, residual: bool, kernel: Sequence[int], channels: int
) -> str:
    """Why the first block's training pass cannot be fused ("" when it can)."""
    if activation not in FUSED_ACTIVATIONS:
        return f"model.activation={activation!r} is not one of {FUSED_ACTIVATIONS}"
    if residual:
        return "the first block is residual (model.residual)"
    taps = int(kernel[0]) * int(kernel[1]) * channels
    if taps > FUSED_MAX_TAPS:
        return f"its kernel reads {taps} values per patch (at most {FUSED_MAX_TAPS})"
    return ""


def resolve_conv_grad(value: str) -> str:
    """``model.conv_grad`` checked, "auto" resolved for the default backend."""
    if value == "auto":
        return "matmul" if jax.default_backend() == "cpu" else "xla"
    if value not in CONV_GRADS:
        raise ConfigError(f"model.conv_grad={value!r}; choose one of {(*CONV_GRADS, 'auto')}")
    return value
