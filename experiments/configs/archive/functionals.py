"""Utterance functionals + perceptron on the best config's front-end, data and training.

The classic recipe of speech emotion recognition (statistics of frame features over the
utterance, a shallow classifier, per-speaker standardisation of the statistics), built from
this project's parts: the jnp log-mel front-end normalised by the training set's mean and
standard deviation (so a clip keeps its level and spectral tilt, which per-clip normalisation
would remove from the statistics), the best config's on-device augmentation, and ``model.name =
"functionals"`` (``ser_jax.models.Functionals``): mean, standard deviation, 10/50/90th
percentiles, mean absolute change and slope of every mel band over the valid frames,
BatchNorm, two hidden layers. Speaker-adaptive BatchNorm (``eval.speaker_bn``) replaces the
input BatchNorm's statistics with the test speaker's: the per-speaker standardisation of the
functionals.

    ser-jax cv --config experiments/configs/archive/functionals.py --config.eval.speaker_bn=True
"""

import os

from ser_jax.config import get_config as _default


def get_config():
    c = _default()
    c.name = "functionals"
    c.data.corpus = "emodb"
    c.data.root = os.environ.get("SER_EMODB_DIR", "")
    c.data.split = "stratified"
    c.data.val_count = 0
    c.frontend.normalize = "dataset"
    c.model.name = "functionals"
    c.model.mlp_hidden = (256, 128)
    c.model.activation = "relu"
    c.model.dropout = 0.3
    # CNN-LSTM fields the functionals model does not read, at the values of the runs this
    # preset made (recorded in their config.json), so that a new run compares equal with them
    c.model.filters = (64, 64, 128, 128)
    c.model.kernel = (3, 3)
    c.model.pools = ((2, 2), (2, 2), (2, 4), (2, 4))
    c.model.lstm_hidden = 256
    c.augment.time_shift_prob = 0.5
    c.augment.time_shift_max_s = 0.1
    c.augment.noise_prob = 0.3
    c.augment.snr_db = (15.0, 40.0)
    c.augment.gain_prob = 0.5
    c.augment.gain_db = (-6.0, 6.0)
    c.augment.time_mask_prob = 0.5
    c.augment.time_masks = 2
    c.augment.time_mask_max_frames = 12
    c.augment.freq_mask_prob = 0.5
    c.augment.freq_masks = 2
    c.augment.freq_mask_max_bins = 6
    c.train.batch_size = 32
    c.train.epochs = 40
    c.train.optimizer = "adam"
    c.train.learning_rate = 1e-3
    c.train.schedule = "cosine"
    c.train.warmup_epochs = 1
    c.train.label_smoothing = 0.0
    c.train.grad_clip = 5.0
    c.train.select = "last"
    return c
