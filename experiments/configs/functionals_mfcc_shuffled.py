"""The cepstral functionals of ``functionals_mfcc.py`` trained on shuffled batches of 32
(clips of all training speakers mixed) instead of whole-speaker batches, so the input
BatchNorm learns the training set's statistics rather than standardising each speaker by
its own. Everything else is the same: 20 cepstral coefficients and 6 spectral descriptors with
their deltas, 7 statistics each, no augmentation, a linear classifier, speaker-adaptive
BatchNorm reported beside. On leave-one-speaker-out (README lever table, 2 seeds) it scores
level with the preset on the plain protocol and below it on the speaker-adaptive one; it is a
member of the committee (README "Where this stands").

    ser-jax cv --config experiments/configs/functionals_mfcc_shuffled.py --seeds 2
"""

from ser_jax.config import config_beside


def get_config():
    c = config_beside(__file__, "functionals_mfcc.py")
    c.name = "functionals_mfcc_shuffled"
    c.data.speaker_batches = False
    c.train.batch_size = 32
    return c
