"""Utterance functionals of the log-mel and of the three pitch tracks (voicing, log-F0, F0
contour), summarised beside the mel bands, with the functionals preset's perceptron. On
leave-one-speaker-out it scores level with the CNN-LSTM (README lever table: pooled UAR 0.710 ±
0.013 over 2 seeds) but reads happiness far better (recall 0.58 against 0.38), which is why
it is a member of the committee (README "Where this stands").

    ser-jax cv --config experiments/configs/functionals_pitch.py --seeds 2
"""

from ser_jax.config import config_beside


def get_config():
    c = config_beside(__file__, "functionals.py")
    c.name = "functionals_pitch"
    c.frontend.pitch = True
    c.model.track_channels = 3
    return c
