"""The shipped model: the best configuration, trained on all 8 shared Emo-DB speakers.

Nothing is held out (``data.split = "all"``), so there is no validation split to select an
epoch on: the model is the last epoch of the best config's schedule (``train.select =
"last"``). Why that is safe: with the cosine schedule to 1% of the peak learning rate (and the
weight average, where the best config keeps one), the leave-one-speaker-out runs of the same
config end within the validation noise of their best epoch (README, "Results"); the selected
epochs there vary from fold to fold, so a fixed "LOSO-chosen" epoch would be a guess too.

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
