"""Scoring clips with a model: the one evaluation policy, used by validation, the test split,
``ser-jax evaluate`` and ``ser-jax predict``.

A clip no longer than ``max_samples`` (``data.max_seconds``) is scored whole. A longer clip is
cut into windows of ``max_samples`` with a hop of half a window (the last window ends at the
clip's end), each window is scored, and the clip's class probabilities are the mean over its
windows. Test-time augmentation (``eval.tta_shifts``) adds each window shifted in time by each
given amount to the average; it is reported beside the plain score, never instead of it.
Windows are batched in order of length (less padding, fewer compiled shapes), padded to
a bucket length, and the last batch is filled with empty rows of weight 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ser_jax.data.pipeline import window_batches, windows

PredictFn = Callable[[dict[str, np.ndarray]], np.ndarray]  # batch -> (batch, classes) probs


def score_windows(
    predict: PredictFn,
    pieces: Sequence[np.ndarray],
    num_classes: int,
    *,
    batch_size: int,
    max_samples: int,
    bucket_samples: int,
) -> np.ndarray:
    """Class probabilities ``(len(pieces), num_classes)`` of each window (or clip) itself."""
    probs = np.zeros((len(pieces), num_classes), np.float64)
    for rows, batch in window_batches(
        pieces, batch_size, max_samples=max_samples, bucket_samples=bucket_samples
    ):
        probs[rows] = np.asarray(predict(batch))[: len(rows)]
    return probs


def score_clips(
    predict: PredictFn,
    waves: Sequence[np.ndarray],
    num_classes: int,
    *,
    batch_size: int,
    max_samples: int,
    bucket_samples: int,
    shifts: Sequence[int] = (),
) -> np.ndarray:
    """Class probabilities ``(len(waves), num_classes)``, windows averaged per clip; with
    ``shifts`` (samples), every window is also scored shifted by each and all are averaged
    (test-time augmentation)."""
    pieces, owner = windows(waves, max_samples, shifts)
    probs = score_windows(
        predict,
        pieces,
        num_classes,
        batch_size=batch_size,
        max_samples=max_samples,
        bucket_samples=bucket_samples,
    )
    out = np.zeros((len(waves), num_classes), np.float64)
    np.add.at(out, owner, probs)
    counts = np.bincount(owner, minlength=len(waves))[:, None]
    return (out / np.maximum(counts, 1)).astype(np.float32)


def score_by_speaker(
    score: Callable[[str, Sequence[np.ndarray]], np.ndarray],
    waves: Sequence[np.ndarray],
    speakers: Sequence[str],
    num_classes: int,
) -> np.ndarray:
    """``score(speaker, that speaker's waves)`` for each speaker, put back in the order of
    ``waves`` (``frontend.normalize="speaker"``: each speaker scored with their statistics)."""
    names = np.asarray([str(s) for s in speakers])
    probs = np.zeros((len(waves), num_classes), np.float32)
    for speaker in sorted(set(names.tolist())):
        rows = np.flatnonzero(names == speaker)
        probs[rows] = score(speaker, [waves[i] for i in rows])
    return probs
