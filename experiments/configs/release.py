"""The shipped model: the best configuration, trained on all 8 shared Emo-DB speakers.

``best.py``'s recipe with nothing held out (``data.split = "all"``), and the model is the last
epoch of the 40, as in the best config itself (``train.select = "last"``): its
leave-one-speaker-out figures are those of this very recipe, each fold trained on 7 speakers
with no validation speaker and its last epoch tested. The shipped model adds the eighth
speaker.

    ser-jax train --config experiments/configs/release.py --workdir runs/release
    ser-jax package --run runs/release --name emodb-cnn-lstm --loso runs/abl_v0_last \\
        --seed_runs runs/best --reference $SER_EMODB_DIR/wav/03a01Fa.wav \\
        --reference $SER_EMODB_DIR/wav/08a01Wa.wav --reference $SER_EMODB_DIR/wav/13a05Tc.wav
"""

import os

from ser_jax.config import get_config as _default


def get_config():
    c = _default()
    c.name = "release"
    c.seed = 0
    c.data.corpus = "emodb"
    c.data.root = os.environ.get("SER_EMODB_DIR", "")
    c.data.split = "all"  # every file trains (best.py: stratified)
    c.data.val_count = 0
    # best.py's network, augmentation and optimisation
    c.model.filters = (64, 64, 128, 128)
    c.model.kernel = (3, 3)
    c.model.pools = ((2, 2), (2, 2), (2, 4), (2, 4))
    c.model.activation = "elu"
    c.model.lstm_hidden = 256
    c.model.dropout = 0.2
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
