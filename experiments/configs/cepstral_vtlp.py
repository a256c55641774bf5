"""The cepstral model with the pitch tracks and 13 statistics, trained with vocal-tract-warped
copies of every training file: the highest single-model pooled LOSO UAR of this project
(README "Vocal-tract perturbation for the functionals models", the ±8 semitone row), and the
recipe of the shipped models ``emodb-cepstral-vtlp`` and (with ``--config.model.mlp_hidden=(256,)
--config.model.dropout=0.3``) ``emodb-cepstral-mlp``.

``archive/functionals_mfcc_shuffled_pitch.py`` (20 cepstral coefficients and 6 spectral
descriptors with their deltas, the three pitch tracks, a linear classifier on shuffled batches)
with 13 statistics a feature instead of 7, and offline augmentation: each training file also
comes as 2 fixed copies whose mel filterbank (and pitch track) is warped by a random factor of
up to ±8 semitones (``augment.pitch_shift_prob``: VTLP), drawn once; the originals stay clean
and test clips are never warped. The feature cache (``train.cache_features``) computes every
copy's statistics once, so a LOSO run of 2 seeds takes minutes on a CPU.

    ser-jax cv --config experiments/configs/cepstral_vtlp.py --seeds 2
"""

import os

from ser_jax.config import get_config as _default

STATISTICS = (
    "mean",
    "std",
    "p1",
    "p10",
    "p25",
    "p50",
    "p75",
    "p90",
    "p99",
    "change",
    "slope",
    "skew",
    "kurtosis",
)


def get_config():
    c = _default()
    c.name = "cepstral_vtlp"
    c.data.corpus = "emodb"
    c.data.root = os.environ.get("SER_EMODB_DIR", "")
    c.data.split = "stratified"
    c.data.val_count = 0
    c.frontend.normalize = "dataset"
    c.frontend.mfcc = 20
    c.frontend.descriptors = True
    c.frontend.deltas = 2
    c.frontend.pitch = True
    c.model.name = "functionals"
    c.model.mlp_hidden = ()
    c.model.activation = "relu"
    c.model.dropout = 0.3
    c.model.track_channels = 3  # the pitch tracks, summarised once each
    c.model.statistics = STATISTICS  # 13 a feature, not 7
    # offline VTLP: 2 warped copies of every training file, drawn once
    c.augment.mode = "offline"
    c.augment.copies = 2
    c.augment.pitch_shift_prob = 1.0
    c.augment.semitones = (-8.0, 8.0)
    c.eval.speaker_bn = True
    c.train.batch_size = 32
    c.train.epochs = 80
    c.train.optimizer = "adam"
    c.train.learning_rate = 3e-3
    c.train.weight_decay = 0.03
    c.train.schedule = "cosine"
    c.train.warmup_epochs = 1
    c.train.label_smoothing = 0.0
    c.train.grad_clip = 5.0
    c.train.select = "last"
    c.train.cache_features = True
    # Fields this recipe does not read (the CNN-LSTM's; the sizes of augmentations that are
    # off), at the values of the runs it made (recorded in their config.json), so that a new
    # run compares equal with them
    c.model.filters = (64, 64, 128, 128)
    c.model.kernel = (3, 3)
    c.model.pools = ((2, 2), (2, 2), (2, 4), (2, 4))
    c.model.lstm_hidden = 256
    c.augment.time_shift_max_s = 0.1
    c.augment.snr_db = (15.0, 40.0)
    c.augment.gain_db = (-6.0, 6.0)
    c.augment.time_masks = 2
    c.augment.time_mask_max_frames = 12
    c.augment.freq_masks = 2
    c.augment.freq_mask_max_bins = 6
    return c
