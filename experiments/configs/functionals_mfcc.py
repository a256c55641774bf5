"""Utterance functionals of cepstral and spectral descriptors, per-speaker standardised.

The classic speech-emotion recipe in full, on this project's parts: every frame gets 20
cepstral coefficients of the log-mel (``frontend.mfcc``) and 6 spectral descriptors (log
energy, zero-crossing rate, log centroid, bandwidth, roll-off, flatness:
``frontend.descriptors``), their delta and delta-delta (``frontend.deltas``); the
functionals model (``model.name = "functionals"``) takes mean, standard deviation,
percentiles, mean absolute change and slope of each over the clip and classifies them.

The statistics are standardised per speaker on both sides: in training every batch holds one
speaker's clips (``data.speaker_batches``), so the functionals' BatchNorm normalises each
speaker by its own batch; in evaluation speaker-adaptive BatchNorm (``eval.speaker_bn``)
normalises the test speaker by the statistics of its own clips (its audio only, no label).

    ser-jax cv --config experiments/configs/functionals_mfcc.py
"""

import importlib.util
from pathlib import Path


def _functionals():
    """The functionals preset (``functionals.py`` beside this file)."""
    spec = importlib.util.spec_from_file_location(
        "_functionals_config", Path(__file__).with_name("functionals.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def get_config():
    c = _functionals()
    c.name = "functionals_mfcc"
    c.frontend.mfcc = 20
    c.frontend.descriptors = True
    c.frontend.deltas = 2
    c.data.speaker_batches = True
    c.eval.speaker_bn = True
    return c
