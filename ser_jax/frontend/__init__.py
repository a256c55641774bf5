"""Front-end stage, inside ``jit``: waveforms → (augmented) waveforms → log-mel (+ pitch) →
SpecAugment → the features a model reads. ``logmel`` (the jnp log-mel, tested against librosa),
``augment`` (waveform and spectrogram augmentation), ``pitch`` (an F0 track on the log-mel's
frame grid), ``features`` (the chain the train and predict steps call)."""
