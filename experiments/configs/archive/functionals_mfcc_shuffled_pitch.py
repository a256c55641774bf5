"""The cepstral functionals on shuffled batches (``functionals_mfcc_shuffled.py``) with the
statistics of the three pitch tracks (voicing, log-F0, F0 contour) beside the cepstral and
spectral ones: the pitch tracks of ``frontend.pitch`` are the input's last 3 channels and are
summarised once (``model.track_channels``), not per band. Everything else is the shuffled
cepstral preset's (no augmentation, a linear classifier, speaker-adaptive BatchNorm reported
beside). README lever table: the ``func_mfcc_shuffled_pitch`` row.

    ser-jax cv --config experiments/configs/functionals_mfcc_shuffled_pitch.py --seeds 2
"""

from ser_jax.config import config_beside


def get_config():
    c = config_beside(__file__, "functionals_mfcc_shuffled.py")
    c.name = "functionals_mfcc_shuffled_pitch"
    c.frontend.pitch = True
    c.model.track_channels = 3
    return c
