"""An x-vector-style time-delay network (``model.name = "tdnn"``, ``ser_jax.models.TDNN``) on
the best config's front-end, augmentation and training: four 1-D convolutions over time
(128-128-128-256 units, kernels 5-3-3-1, dilations 1-2-3-1: each output frame sees 150 ms),
BatchNorm and ReLU, the mean and standard deviation of the last layer over the clip's valid
frames (statistics pooling), a 128-unit embedding, dropout 0.2 and the output layer. A model
family of its own beside the CNN-LSTM (no 2-D convolution, no recurrence) and the functionals
models (it learns its frame features before the statistics).

    ser-jax cv --config experiments/configs/tdnn.py --seeds 2
"""

from ser_jax.config import config_beside


def get_config():
    c = config_beside(__file__, "best.py")
    c.name = "tdnn"
    c.model.name = "tdnn"
    c.model.filters = (128, 128, 128, 256)
    c.model.tdnn_kernels = (5, 3, 3, 1)
    c.model.dilations = (1, 2, 3, 1)
    c.model.head_hidden = 128
    c.model.statistics = ("mean", "std")
    c.model.activation = "relu"
    c.model.dropout = 0.2
    return c
