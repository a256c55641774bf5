"""An x-vector-style time-delay network (``model.name = "tdnn"``, ``ser_jax.models.TDNN``) on
the best config's front-end, augmentation and training: four 1-D convolutions over time
(128-128-128-256 units, kernels 5-3-3-1, dilations 1-2-3-1: each output frame sees 150 ms),
BatchNorm and ReLU, the mean and standard deviation of the last layer over the clip's valid
frames (statistics pooling), a 128-unit embedding (``model.embedding``), dropout 0.2 and the
output layer. A model family of its own beside the CNN-LSTM (no 2-D convolution, no
recurrence) and the functionals models (it learns its frame features before the statistics).

    ser-jax cv --config experiments/configs/archive/tdnn.py --seeds 2
"""

import os

from ser_jax.config import get_config as _default


def get_config():
    c = _default()
    c.name = "tdnn"
    c.data.corpus = "emodb"
    c.data.root = os.environ.get("SER_EMODB_DIR", "")
    c.data.split = "stratified"
    c.data.val_count = 0
    c.model.name = "tdnn"
    c.model.filters = (128, 128, 128, 256)
    c.model.tdnn_kernels = (5, 3, 3, 1)
    c.model.dilations = (1, 2, 3, 1)
    c.model.embedding = 128
    c.model.statistics = ("mean", "std")
    c.model.activation = "relu"
    c.model.dropout = 0.2
    # CNN-LSTM fields the TDNN does not read, at the values of the runs this preset made
    # (recorded in their config.json), so that a new run compares equal with them
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
