"""openSMILE ComParE_2016 functionals (6,373 per file, the whole file) and a multinomial
logistic regression, its inverse regularisation C chosen by leave-one-speaker-out over the
training speakers: the classical baseline of speech emotion recognition, on the same folds and
run directories as the networks (``ser_jax.classical``; needs the ``opensmile`` extra).
Every run reports it plain and speaker-adapted (each speaker's features standardised by their
own recordings) beside each other.

    ser-jax cv --config experiments/configs/opensmile_compare.py
"""

import os

from ser_jax.config import get_config as _default


def get_config():
    c = _default()
    c.name = "opensmile_compare"
    c.data.corpus = "emodb"
    c.data.root = os.environ.get("SER_EMODB_DIR", "")
    c.data.split = "stratified"
    c.data.val_count = 0  # C is chosen inside the training speakers: no validation split
    c.model.name = "opensmile"
    c.model.feature_set = "ComParE_2016"
    return c
