"""Screening of the accuracy levers, one at a time against one base (speaker 4-fold, 1 seed).

A cheap first pass (4 models a point, trained together) to prune levers before the full
leave-one-speaker-out ablation over 2 seeds; a gain here is not claimed until LOSO shows it.
The base is the best config as it stood then (one validation speaker, the epoch selected on its
UAR: fixed below) with narrower early blocks (32-32-64-128 filters: 3x faster on a CPU than
64-64-128-128).

    python -m ser_jax.sweep experiments/sweeps/screen_levers.py
"""


def get_sweep():
    return {
        "name": "screen_levers",
        "config": "experiments/configs/best.py",
        "verb": "cv",
        "seeds": 1,
        "fixed": {
            "model.filters": (32, 32, 64, 128),
            "data.split": "speaker_kfold",
            "data.folds": 4,
            "train.members": 4,
            "train.progress": False,
            "data.val_count": 1,
            "train.select": "val_uar",
        },
        "points": [
            {},
            {"model.bidirectional": True, "model.pooling": "attention", "model.lstm_hidden": 128},
            {"train.mixup_alpha": 0.2},
            {"train.ema_decay": 0.995},
            # Their own protocol (the test speaker's unlabelled audio adapts the model):
            # speaker-adaptive BatchNorm is scored beside the plain numbers of the same run.
            {"eval.speaker_bn": True},
            {"frontend.normalize": "speaker", "eval.speaker_bn": True},
            # no validation speaker: the one it held out trains too; the last epoch is kept
            {"data.val_count": 0, "train.select": "last"},
            {"data.val_count": 2},
            {"frontend.deltas": 2},
            {"train.class_weighting": True, "train.label_smoothing": 0.1},
            {"augment.speed_prob": 0.5, "augment.pitch_shift_prob": 0.5},
            {"train.epochs": 80},
        ],
    }
