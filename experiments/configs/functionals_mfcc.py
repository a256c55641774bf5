"""Utterance functionals of cepstral and spectral descriptors, per-speaker standardised.

The classic speech-emotion recipe in full, on this project's parts: every frame gets 20
cepstral coefficients of the log-mel (``frontend.mfcc``) and 6 spectral descriptors (log
energy, zero-crossing rate, log centroid, bandwidth, roll-off, flatness:
``frontend.descriptors``), their delta and delta-delta (``frontend.deltas``); the
functionals model (``model.name = "functionals"``) takes mean, standard deviation,
percentiles, mean absolute change and slope of each over the clip and classifies them.

The statistics are standardised per speaker on both sides, as the classic recipe does: in
training every batch holds all of one speaker's clips (``data.speaker_batches`` with a batch of
72, more than the 69 clips of the largest Emo-DB speaker here; a larger speaker is cut into
near-equal parts), so the functionals' BatchNorm normalises each speaker by its own
statistics; in evaluation speaker-adaptive BatchNorm (``eval.speaker_bn``) normalises the
test speaker by the statistics of its own clips (its audio only, never a label). Its figures
belong to that protocol. The augmentation is off: the test speaker's statistics come from
clean audio, and training batches normalised by augmented statistics scored worse (see the
README's lever table). The classifier is linear (logistic regression: no hidden layer, L2
0.03), trained for 80 epochs of 7 whole-speaker batches. With the augmentation off nothing
before the classifier changes from one step to the next, so the statistics are computed once
before training (``train.cache_features``), about 16x faster an epoch than in every step.

    ser-jax cv --config experiments/configs/functionals_mfcc.py
"""

from ser_jax.config import config_beside


def get_config():
    c = config_beside(__file__, "functionals.py")
    c.name = "functionals_mfcc"
    c.frontend.mfcc = 20
    c.frontend.descriptors = True
    c.frontend.deltas = 2
    c.data.speaker_batches = True
    c.eval.speaker_bn = True
    c.data.val_count = 0
    c.train.select = "last"
    c.train.batch_size = 72
    c.train.epochs = 80
    c.train.learning_rate = 3e-3
    c.train.weight_decay = 0.03
    c.model.mlp_hidden = ()
    c.train.cache_features = True
    for name in ("time_shift", "noise", "gain", "time_mask", "freq_mask", "pitch_shift", "speed"):
        c.augment[f"{name}_prob"] = 0.0
    return c
