"""Features the train step feeds the model: (augmented) waveforms → log-mel → SpecAugment.

One pure, jit-able function, :func:`make_features`, with the front-end and augmentation
settings static. It hands on ``(feats (batch, frames, mel), frame_lengths (batch,))``;
:func:`model_features` is its clean tail (the log-mel bands → the model's channels) alone.
:func:`dataset_feature_stats` computes the training-set statistics of ``normalize="dataset"``,
:func:`speaker_feature_stats` each speaker's of ``normalize="speaker"``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ser_jax.data.pipeline import window_batches, windows
from ser_jax.frontend.augment import AugmentConfig, augment_waveform, spec_augment
from ser_jax.frontend.logmel import (
    FrontendConfig,
    apply_dataset_stats,
    log_mel,
    normalize,
    with_deltas,
)
from ser_jax.frontend.pitch import pitch_track, with_pitch


def make_features(
    audio: jax.Array,
    lengths: jax.Array,
    keys: jax.Array | None,
    *,
    frontend: FrontendConfig,
    augment: AugmentConfig | None,
    stats: tuple[jax.Array, jax.Array] | None = None,
    apply: jax.Array | None = None,
    warp: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Log-mel features of a padded batch, augmented when ``augment`` is on and keys are given.

    Args:
      audio: ``(batch, samples)`` float32, zero-padded after each true length.
      lengths: ``(batch,)`` int32 true lengths.
      keys: ``(batch,)`` typed PRNG keys, one per example, or None (clean features).
      frontend: static front-end settings.
      augment: static augmentation settings, or None.
      stats: ``(mean, std)``, ``(n_bands,)`` training-set statistics (``frontend.normalize ==
        "dataset"``) or ``(batch, n_bands)`` per-example ones (``"speaker"``), applied before
        SpecAugment, so masks sit at the mean.
      apply: optional ``(batch,)`` bool: augment only these examples, the others come out
        clean (offline augmentation keeps each file's original copy clean). One front-end pass
        serves both.
      warp: optional ``(batch,)`` fixed frequency-warp factors of the clean features (test-time
        augmentation, ``eval.tta_semitones``: the warp pitch-shift augmentation draws at random).

    Returns:
      ``feats`` ``(batch, frames, n_bands)`` (``(batch, frames, n_bands, frontend.channels)``
      with ``frontend.deltas`` or ``frontend.pitch``: SpecAugment masks the same stripes in
      every channel) and
      ``frame_lengths`` ``(batch,)`` int32.
    """
    if frontend.normalize in ("dataset", "speaker") and stats is None:
        raise ValueError(f"frontend.normalize={frontend.normalize!r} needs its statistics")

    def standardise(feats, flen, audio, lengths, warp=None):
        pitch = pitch_track(audio, lengths, frontend, warp) if frontend.pitch else None
        return model_features(feats, flen, frontend=frontend, stats=stats, pitch=pitch)

    if augment is None or not augment.enabled or keys is None:
        feats, flen = log_mel(audio, lengths, frontend, warp)
        feats = standardise(feats, flen, audio, lengths, warp)
        return feats, _no_frames_if_empty(flen, lengths)
    # Independent streams for the waveform and the spectrogram stage of each example.
    split = jax.vmap(jax.random.split)(keys)
    wave_keys, spec_keys = split[:, 0], split[:, 1]
    warp = None
    if augment.waveform_enabled or augment.pitch_shift_prob > 0:
        audio, lengths, warp = augment_waveform(
            wave_keys, audio, lengths, augment, frontend.sample_rate, apply
        )
        if augment.pitch_shift_prob == 0:
            warp = None  # the static filterbank: exactly the clean front-end
    feats, flen = log_mel(audio, lengths, frontend, warp)
    feats = standardise(feats, flen, audio, lengths, warp)
    return spec_augment(spec_keys, feats, flen, augment, apply), _no_frames_if_empty(flen, lengths)


def model_features(
    bands: jax.Array,
    frame_lengths: jax.Array,
    *,
    frontend: FrontendConfig,
    stats: tuple[jax.Array, jax.Array] | None,
    pitch: jax.Array | None = None,
) -> jax.Array:
    """The clean features a model reads, from what ``log_mel`` hands on: ``bands`` ``(batch,
    frames, n_bands)`` with the dataset (or speaker) ``stats`` applied, then the deltas, the
    clip-normalised channel and the ``pitch`` track ``(batch, frames, 3)`` (``pitch_track``;
    needed with ``frontend.pitch``) as channels, as ``make_features`` describes. The tail of
    the chain on its own: ``ser_jax.serving.explain`` differentiates through it."""
    clip = normalize(bands, frame_lengths, "utterance") if frontend.clip_channel else None
    feats = bands
    if frontend.normalize in ("dataset", "speaker"):
        feats = apply_dataset_stats(feats, frame_lengths, *stats)
    feats = with_deltas(feats, frame_lengths, frontend) if frontend.deltas else feats
    if clip is not None:  # beside the dataset (or speaker) view: the clip's own
        feats = feats if feats.ndim == 4 else feats[..., None]
        feats = jnp.concatenate([feats, clip[..., None]], axis=-1)
    if frontend.pitch:
        feats = with_pitch(feats, pitch, frontend.pitch_level)
    return feats


def _no_frames_if_empty(flen: jax.Array, lengths: jax.Array) -> jax.Array:
    """The frame counts the model gets: an empty row (batch filling) has none, so masked
    BatchNorm statistics never count it (librosa's count for 0 samples is 1 frame, which the
    features above keep, so the clips' own features are unchanged)."""
    return jnp.where(jnp.asarray(lengths) > 0, flen, 0)


_log_mel = jax.jit(log_mel, static_argnums=2)  # one compiled front-end per settings and shape


def dataset_feature_stats(
    waves: Sequence[np.ndarray],
    frontend: FrontendConfig,
    *,
    batch_size: int,
    max_samples: int,
    bucket_samples: int,
) -> dict[str, np.ndarray]:
    """Mean and std ``(n_bands,)`` of the clean, unnormalised log-mel over every valid frame of
    ``waves`` (windowed as in evaluation, see ``ser_jax.evaluation.scoring``)."""
    raw = dataclasses.replace(frontend, normalize="none", clip_channel=False)
    total = np.zeros(frontend.n_bands)
    total_sq = np.zeros(frontend.n_bands)
    count = 0
    pieces, _ = windows(waves, max_samples)
    for _, batch in window_batches(
        pieces, batch_size, max_samples=max_samples, bucket_samples=bucket_samples
    ):
        feats, flen = _log_mel(jnp.asarray(batch["audio"]), jnp.asarray(batch["length"]), raw)
        feats, flen = np.asarray(feats, np.float64), np.asarray(flen)
        valid = (np.arange(feats.shape[1])[None, :] < flen[:, None]) & (
            batch["weight"][:, None] > 0
        )
        total += feats[valid].sum(axis=0)
        total_sq += np.square(feats[valid]).sum(axis=0)
        count += int(valid.sum())
    mean = total / max(count, 1)
    std = np.sqrt(np.maximum(total_sq / max(count, 1) - mean**2, 0.0) + 1e-5)
    return {"mean": mean.astype(np.float32), "std": std.astype(np.float32)}


def speaker_feature_stats(
    waves: Sequence[np.ndarray],
    speakers: Sequence[str],
    frontend: FrontendConfig,
    *,
    batch_size: int,
    max_samples: int,
    bucket_samples: int,
) -> dict[str, dict[str, np.ndarray]]:
    """Per speaker, the mean and std ``(n_bands,)`` of the clean, unnormalised log-mel over
    every valid frame of that speaker's ``waves`` (``normalize="speaker"``): the statistics
    need the speaker's audio only, never a label."""
    if len(speakers) != len(waves):
        raise ValueError(f"{len(waves)} waveforms but {len(speakers)} speakers")
    groups: dict[str, list[np.ndarray]] = {}
    for wave, speaker in zip(waves, speakers, strict=True):
        groups.setdefault(str(speaker), []).append(wave)
    return {
        speaker: dataset_feature_stats(
            group,
            frontend,
            batch_size=batch_size,
            max_samples=max_samples,
            bucket_samples=bucket_samples,
        )
        for speaker, group in sorted(groups.items())
    }
