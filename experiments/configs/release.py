"""The shipped model: the best configuration, trained on all 8 shared Emo-DB speakers.

Nothing is held out (``data.split = "all"``), and the model is the last epoch of the 40, as in
the best config itself (``train.select = "last"``): its leave-one-speaker-out figures are those
of this very recipe, each fold trained on 7 speakers with no validation speaker and its last
epoch tested. The shipped model adds the eighth speaker.

    ser-jax train --config experiments/configs/release.py --workdir runs/release
    ser-jax package --run runs/release --name emodb-cnn-lstm --loso runs/abl_v0_last \\
        --seed_runs runs/best --reference $SER_EMODB_DIR/wav/03a01Fa.wav \\
        --reference $SER_EMODB_DIR/wav/08a01Wa.wav --reference $SER_EMODB_DIR/wav/13a05Tc.wav
"""

from ser_jax.config import config_beside


def get_config():
    c = config_beside(__file__, "best.py")
    c.name = "release"
    c.data.split = "all"
    c.train.select = "last"
    c.seed = 0
    return c
