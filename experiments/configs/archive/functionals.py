"""Utterance functionals + perceptron on the best config's front-end, data and training.

The classic recipe of speech emotion recognition (statistics of frame features over the
utterance, a shallow classifier, per-speaker standardisation of the statistics), built from
this project's parts: the jnp log-mel front-end normalised by the training set's mean and
standard deviation (so a clip keeps its level and spectral tilt, which per-clip normalisation
would remove from the statistics), the same on-device augmentation, and ``model.name =
"functionals"`` (``ser_jax.models.Functionals``): mean, standard deviation, 10/50/90th
percentiles, mean absolute change and slope of every mel band over the valid frames,
BatchNorm, two hidden layers. Speaker-adaptive BatchNorm (``eval.speaker_bn``) replaces the
input BatchNorm's statistics with the test speaker's: the per-speaker standardisation of the
functionals.

    ser-jax cv --config experiments/configs/functionals.py --config.eval.speaker_bn=True
"""

from ser_jax.config import config_beside


def get_config():
    c = config_beside(__file__, "best.py")
    c.name = "functionals"
    c.frontend.normalize = "dataset"
    c.model.name = "functionals"
    c.model.mlp_hidden = (256, 128)
    c.model.activation = "relu"
    c.model.dropout = 0.3
    return c
