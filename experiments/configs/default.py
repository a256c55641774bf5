"""The package default (synthetic demo corpus, small CNN-LSTM): ``ser_jax/config.py``."""

from ser_jax.config import get_config as _package_default


def get_config():
    return _package_default()
