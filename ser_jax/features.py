"""Features the train step feeds the model: (augmented) waveforms → log-mel → SpecAugment.

One pure, jit-able function, :func:`make_features`, with the front-end and augmentation
settings static. It hands on ``(feats (batch, frames, mel), frame_lengths (batch,))``.
"""

from __future__ import annotations

import jax

from ser_jax.augment import AugmentConfig, augment_waveform, spec_augment
from ser_jax.frontend import FrontendConfig, log_mel


def make_features(
    audio: jax.Array,
    lengths: jax.Array,
    keys: jax.Array | None,
    *,
    frontend: FrontendConfig,
    augment: AugmentConfig | None,
) -> tuple[jax.Array, jax.Array]:
    """Log-mel features of a padded batch, augmented when ``augment`` is on and keys are given.

    Args:
      audio: ``(batch, samples)`` float32, zero-padded after each true length.
      lengths: ``(batch,)`` int32 true lengths.
      keys: ``(batch,)`` typed PRNG keys, one per example, or None (clean features).
      frontend: static front-end settings.
      augment: static augmentation settings, or None.

    Returns:
      ``feats`` ``(batch, frames, n_mels)`` and ``frame_lengths`` ``(batch,)`` int32.
    """
    if augment is None or not augment.enabled or keys is None:
        return log_mel(audio, lengths, frontend)
    # Independent streams for the waveform and the spectrogram stage of each example.
    split = jax.vmap(jax.random.split)(keys)
    wave_keys, spec_keys = split[:, 0], split[:, 1]
    warp = None
    if augment.waveform_enabled or augment.pitch_shift_prob > 0:
        audio, lengths, warp = augment_waveform(
            wave_keys, audio, lengths, augment, frontend.sample_rate
        )
        if augment.pitch_shift_prob == 0:
            warp = None  # the static filterbank: exactly the clean front-end
    feats, flen = log_mel(audio, lengths, frontend, warp)
    return spec_augment(spec_keys, feats, flen, augment), flen
