"""Emo-DB, best config: does augmentation help? Augmentation off vs on, 3 seeds each.

python -m ser_jax.sweep experiments/sweeps/emodb_augment.py
"""

import os


def get_sweep():
    return {
        "name": "emodb_augment",
        "config": "experiments/configs/best.py",
        "grid": {
            "augment.noise_prob": [0.0, 0.5],
            "augment.time_mask_prob": [0.0, 0.5],
        },
        "seeds": 3,
        "fixed": {"data.root": os.environ.get("SER_EMODB_DIR", ""), "train.progress": False},
    }
