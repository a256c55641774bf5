"""The best config fed two views of the log-mel and given a branch over their utterance
statistics: the input is standardised over the training set (``frontend.normalize =
"dataset"``) with the clip-normalised log-mel as a second channel (``frontend.clip_channel``),
and the statistics of every band (the functionals model's 7 statistics) pass through a Dense
layer of 128 units whose output joins the LSTM's before the classifier (``model.functionals``).
The CNN-LSTM's sequence view and the functionals' summary view in one network; on
leave-one-speaker-out it scores at or above the best config (README lever table, the
``abl_v0_twoview_func`` row).

``best.py``'s recipe but for the three fields marked below.

    ser-jax cv --config experiments/configs/archive/twoview_functionals.py --seeds 2
"""

import os

from ser_jax.config import get_config as _default


def get_config():
    c = _default()
    c.name = "twoview_functionals"
    c.data.corpus = "emodb"
    c.data.root = os.environ.get("SER_EMODB_DIR", "")
    c.data.split = "stratified"
    c.data.val_count = 0
    c.frontend.normalize = "dataset"  # best.py: utterance
    c.frontend.clip_channel = True  # best.py: off
    c.model.filters = (64, 64, 128, 128)
    c.model.kernel = (3, 3)
    c.model.pools = ((2, 2), (2, 2), (2, 4), (2, 4))
    c.model.activation = "elu"
    c.model.lstm_hidden = 256
    c.model.dropout = 0.2
    c.model.functionals = 128  # best.py: no statistics branch
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
