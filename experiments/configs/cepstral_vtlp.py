"""The cepstral model with the pitch tracks and 13 statistics, trained with vocal-tract-warped
copies of every training file: the highest single-model pooled LOSO UAR of this project
(README "Vocal-tract perturbation for the functionals models", the ±8 semitone row).

``functionals_mfcc_shuffled_pitch.py`` (20 cepstral coefficients and 6 spectral descriptors
with their deltas, the three pitch tracks, a linear classifier on shuffled batches) with 13
statistics a feature instead of 7, and offline augmentation: each training file also comes as
2 fixed copies whose mel filterbank (and pitch track) is warped by a random factor of up to ±8
semitones (``augment.pitch_shift_prob``: VTLP), drawn once; the originals stay clean and test
clips are never warped. The feature cache (``train.cache_features``) computes every copy's
statistics once, so a LOSO run of 2 seeds takes minutes on a CPU.

    ser-jax cv --config experiments/configs/cepstral_vtlp.py --seeds 2
"""

from ser_jax.config import config_beside

STATISTICS = (
    "mean",
    "std",
    "p1",
    "p10",
    "p25",
    "p50",
    "p75",
    "p90",
    "p99",
    "change",
    "slope",
    "skew",
    "kurtosis",
)


def get_config():
    c = config_beside(__file__, "functionals_mfcc_shuffled_pitch.py")
    c.name = "cepstral_vtlp"
    c.model.statistics = STATISTICS
    c.augment.mode = "offline"
    c.augment.copies = 2
    c.augment.pitch_shift_prob = 1.0
    c.augment.semitones = (-8.0, 8.0)
    return c
