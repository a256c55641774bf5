"""A small grid over the demo config: learning rate x LSTM size, 2 seeds each.

python -m ser_jax.sweep experiments/sweeps/demo_lr.py            # run all points
python -m ser_jax.sweep experiments/sweeps/demo_lr.py --emit_slurm  # one array task a point
"""


def get_sweep():
    return {
        "name": "demo_lr",
        "config": "ser_jax/config.py",
        "grid": {"train.learning_rate": [1e-3, 3e-3], "model.lstm_hidden": [16, 32]},
        "seeds": 2,
        "fixed": {"train.epochs": 8, "train.progress": False},
    }
