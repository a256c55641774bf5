"""Zhao, Mao & Chen 2019, "Speech emotion recognition using deep 1D & 2D CNN LSTM networks":
the 2-D CNN LSTM on log-mel input.

Four local feature learning blocks (3x3 conv, BN, ELU, max-pool; 64-64-128-128 filters; pools
2x2, 2x2, 4x4, 4x4), LSTM 256, softmax. On 2 s clips at 16 kHz with a 10 ms hop (201 frames x
64 mels) these pools shrink time 64x and leave 3 LSTM steps of 128 features: the LSTM barely
acts as a sequence model.

    ser-jax train --config experiments/configs/zhao2019.py --config.data.root $SER_EMODB_DIR --seeds 3
"""

import os

from ser_jax.config import get_config as _default


def get_config():
    c = _default()
    c.name = "zhao2019"
    c.data.corpus = "emodb"
    c.data.root = os.environ.get("SER_EMODB_DIR", "")
    c.data.split = "stratified"
    c.model.filters = (64, 64, 128, 128)
    c.model.kernel = (3, 3)
    c.model.pools = ((2, 2), (2, 2), (4, 4), (4, 4))
    c.model.activation = "elu"
    c.model.lstm_hidden = 256
    c.train.batch_size = 32
    c.train.epochs = 30
    c.train.optimizer = "adam"
    c.train.learning_rate = 1e-3
    c.train.schedule = "constant"
    c.train.select = "val_uar"
    return c
