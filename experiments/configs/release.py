"""The shipped model: the best configuration, trained on all 8 shared Emo-DB speakers.

Nothing is held out (``data.split = "all"``), so there is no validation split to select an
epoch on: the model is the last epoch of the best config's schedule (``train.select =
"last"``), whose cosine decay ends at 1% of the peak learning rate. Why not an epoch chosen by
LOSO: the selected epochs of a LOSO run range widely (17 to 31 of 40 in the 8 folds of the
narrow variant, ``runs/narrow_ema_loso``), so any fixed epoch is a guess. What the last epoch
costs, measured on that run: its validation UAR was below the best epoch's by 0.06 on average
(0.003 to 0.22 over the folds; the best of 40 noisy validation points is biased upward, so the
true cost is smaller). Training on all 8 speakers also adds a seventh of the data.

    ser-jax train --config experiments/configs/release.py --workdir runs/release
    ser-jax package --run runs/release --name emodb-cnn-lstm --loso runs/best_loso \\
        --seed_runs runs/best --reference $SER_EMODB_DIR/wav/03a01Fa.wav \\
        --reference $SER_EMODB_DIR/wav/08a01Wa.wav --reference $SER_EMODB_DIR/wav/13a05Tc.wav
"""

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("best", Path(__file__).with_name("best.py"))
best = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(best)


def get_config():
    c = best.get_config()
    c.name = "release"
    c.data.split = "all"
    c.train.select = "last"
    c.seed = 0
    return c
