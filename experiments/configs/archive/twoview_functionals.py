"""The best config fed two views of the log-mel and given a branch over their utterance
statistics: the input is standardised over the training set (``frontend.normalize =
"dataset"``) with the clip-normalised log-mel as a second channel (``frontend.clip_channel``),
and the statistics of every band (the functionals model's 7 statistics) pass through a Dense
layer of 128 units whose output joins the LSTM's before the classifier (``model.functionals``).
The CNN-LSTM's sequence view and the functionals' summary view in one network; on
leave-one-speaker-out it scores at or above the best config (README lever table, the
``abl_v0_twoview_func`` row).

    ser-jax cv --config experiments/configs/twoview_functionals.py --seeds 2
"""

from ser_jax.config import config_beside


def get_config():
    c = config_beside(__file__, "best.py")
    c.name = "twoview_functionals"
    c.frontend.normalize = "dataset"
    c.frontend.clip_channel = True
    c.model.functionals = 128
    return c
