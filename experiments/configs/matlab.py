"""Reproduction of the MATLAB example "Sequence Classification Using CNN-LSTM Network".

Emo-DB, labels from file names, ``splitEachLabel(ads, 0.70, 0.15, 0.15)`` (stratified per label),
auditory (mel) spectrograms, four conv-BN-ReLU-maxpool blocks (3x3 filters, more filters in the
third and fourth blocks, 2x2 pools), LSTM 256 with OutputMode "last", softmax; Adam, mini-batch
32, 3 epochs, piecewise learning-rate drop. The example reports 0.6329 test accuracy.

Where the example's text does not pin a value here (filter counts, learning rate, drop factor),
we chose 16-16-32-32 filters, lr 3e-3, MATLAB's default drop schedule (x0.1 every 10 epochs,
so none within 3 epochs), and 4 augmented copies. These were picked in pilot runs on seeds 0
and 1 (copies 2 or 4, lr 3e-3 or 5e-3, drop every epoch or not); the README reports seeds
10-12, whose splits the pilots never saw. The example writes augmented copies of the training
files to disk before training; ``augment.mode='offline'`` with ``augment.copies=4`` does the
same on device (each copy is the same augmented clip every epoch), so an epoch is 5x the
training files.

    ser-jax train --config experiments/configs/matlab.py --config.data.root $SER_EMODB_DIR --seeds 3
"""

import os

from ser_jax.config import get_config as _default


def get_config():
    c = _default()
    c.name = "matlab"
    c.data.corpus = "emodb"
    c.data.root = os.environ.get("SER_EMODB_DIR", "")
    c.data.split = "stratified"
    c.data.fractions = (0.70, 0.15, 0.15)
    c.data.max_seconds = 4.0
    c.model.filters = (16, 16, 32, 32)
    c.model.kernel = (3, 3)
    c.model.pools = ((2, 2), (2, 2), (2, 2), (2, 2))
    c.model.activation = "relu"
    c.model.lstm_hidden = 256
    c.train.batch_size = 32
    c.train.epochs = 3
    c.train.optimizer = "adam"
    c.train.schedule = "piecewise"
    c.train.drop_factor = 0.1  # MATLAB's defaults: x0.1 every 10 epochs (no drop within 3)
    c.train.drop_period = 10
    c.train.select = "last"  # MATLAB trains 3 epochs and tests the last network
    # Offline augmentation as in the example (pitch shift, time shift, noise at an SNR): four
    # augmented copies of every training file next to the original, fixed across epochs.
    c.augment.mode = "offline"
    c.augment.copies = 4
    c.augment.pitch_shift_prob = 0.5
    c.augment.semitones = (-2.0, 2.0)
    c.augment.time_shift_prob = 0.5
    c.augment.time_shift_max_s = 0.25
    c.augment.noise_prob = 0.5
    c.augment.snr_db = (10.0, 30.0)
    c.train.learning_rate = 3e-3
    return c
