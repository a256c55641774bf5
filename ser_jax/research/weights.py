"""Committee weights: a weight per run, given or chosen across speakers.

A committee combines its runs' class probabilities
(``ser_jax.evaluation.metrics.combine_probabilities``, for every candidate here too); with
weights, run ``i`` counts ``w[i]`` times (a weight of 0 leaves it out of the decision).

Weights chosen by looking at the test files would be selection on test. ``ser-jax ensemble
--weight_grid 0,1,2`` therefore reports two figures, never one for the other:

- **nested** (the estimate): each speaker's files are decided with the weights that score best
  on the *other* speakers' files (mean pooled UAR of the committees of the runs' k-th seeds),
  so no speaker's labels choose the weights it is scored with. On leave-one-speaker-out, the
  other speakers' predictions come from models that trained on the scored speaker's clips:
  their labels never decide a weight through that speaker's own files, but this is not a
  fully nested cross-validation, which would train every fold again without them;
- **chosen** on all speakers at once: the weights to use for new recordings (``ser-jax
  predict --weights``), and their score on the files that chose them, which is optimistic.

Candidates are every vector of grid values, one a run, up to scale (``(2, 2)`` is ``(1, 1)``);
a tie goes to the vector closest to equal weights, then to the first in grid order.

``choose_by_speaker`` is the choice across speakers itself, over any candidates' decisions:
the weight grid uses it, and so does ``ser-jax select`` (``ser_jax.research.nested``) over
candidate models and test-time views. Weights as typed on the command line are parsed by
``ser_jax.serving.shipped.parse_weights``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from ser_jax.errors import ConfigError
from ser_jax.evaluation.metrics import combine_probabilities


def weight_vectors(grid: Sequence[float], runs: int) -> np.ndarray:
    """Every vector of ``grid`` values, one a run, not all 0, up to scale; ordered so that the
    vector closest to equal weights comes first (the tie-break), then in grid order."""
    values = sorted({float(g) for g in grid})
    if not values or values[0] < 0 or not any(values):
        raise ConfigError(
            f"--weight_grid={','.join(map(str, grid))}: needs values >= 0, one of them > 0"
        )
    seen, out = set(), []
    for w in itertools.product(values, repeat=runs):
        total = sum(w)
        if total == 0:
            continue
        key = tuple(round(x / total, 9) for x in w)
        if key in seen:
            continue
        seen.add(key)
        out.append(w)
    vectors = np.array(out, np.float64)
    share = vectors / vectors.sum(axis=1, keepdims=True)
    distance = np.abs(share - 1.0 / runs).sum(axis=1)
    return vectors[np.argsort(distance, kind="stable")]


def weighted_decisions(probs: np.ndarray, vectors: np.ndarray, rule: str) -> np.ndarray:
    """The class each weight vector decides per file: ``probs`` ``(runs, files, classes)``,
    ``vectors`` ``(candidates, runs)`` → ``(candidates, files)``, each the argmax of
    ``ser_jax.evaluation.metrics.combine_probabilities`` with that vector's weights."""
    return np.stack([combine_probabilities(list(probs), rule, w).argmax(axis=-1) for w in vectors])


def uar_of_rows(
    decided: np.ndarray, truth: np.ndarray, rows: np.ndarray, classes: int
) -> np.ndarray:
    """UAR of each candidate's decisions (``(candidates, files)``) over the files ``rows``
    (a boolean mask): the mean recall of the classes present in them, as
    ``ser_jax.evaluation.metrics.classification_metrics`` computes it."""
    onehot = (truth[:, None] == np.arange(classes)[None, :]) & rows[:, None]  # (files, classes)
    support = onehot.sum(axis=0)
    correct = (decided == truth[None, :]).astype(np.float64) @ onehot  # (candidates, classes)
    present = support > 0
    return (correct[:, present] / support[present]).mean(axis=1)


def choose_by_speaker(
    decided: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    speakers: np.ndarray,
    classes: int,
) -> tuple[int, dict[str, int], list[np.ndarray]]:
    """A choice among candidates made across speakers, on all files and nested by speaker.

    ``decided``: per committee, each candidate's decisions ``(candidates, files)``; ``truths``:
    per committee, the files' true classes; ``speakers``: each file's speaker. A choice is the
    candidate with the highest UAR over the files it may read (the mean over the committees'
    UARs), the first in candidate order on a tie. Returns ``(chosen, per_speaker, nested)``:
    the candidate chosen on all files, the one each speaker's files get (chosen on the other
    speakers' files only), and each committee's nested decisions (every file decided by its
    speaker's candidate)."""

    def best(rows: np.ndarray) -> int:
        score = np.mean(
            [uar_of_rows(d, t, rows, classes) for d, t in zip(decided, truths, strict=True)],
            axis=0,
        )
        return int(np.argmax(score))  # the first maximum

    chosen = best(np.ones(len(speakers), bool))
    nested = [np.zeros(len(speakers), np.int64) for _ in decided]
    per_speaker = {}
    for speaker in sorted(set(speakers.tolist())):
        rows = speakers == speaker
        k = best(~rows)
        per_speaker[str(speaker)] = k
        for out, d in zip(nested, decided, strict=True):
            out[rows] = d[k][rows]
    return chosen, per_speaker, nested


def choose_weights(
    committees: Sequence[tuple[np.ndarray, np.ndarray]],
    speakers: np.ndarray,
    grid: Sequence[float],
    classes: int,
    rule: str = "mean",
) -> dict[str, Any]:
    """Weights for committees of the same runs (``(probs (runs, files, classes), truth
    (files,))`` each, the files in the order of ``speakers``): chosen on all files, and
    nested by speaker (module docstring, ``choose_by_speaker``; the candidates ordered so that
    the vector nearest equal weights wins a tie). Returns the chosen vector with its
    (optimistic) decisions per committee, and each committee's nested decisions with the
    vector each speaker got."""
    runs = committees[0][0].shape[0]
    vectors = weight_vectors(grid, runs)
    decided = [weighted_decisions(p, vectors, rule) for p, _ in committees]
    chosen, per_speaker, nested = choose_by_speaker(
        decided, [t for _, t in committees], speakers, classes
    )
    return {
        "grid": sorted({float(g) for g in grid}),
        "candidates": len(vectors),
        "chosen": vectors[chosen].tolist(),
        "chosen_decisions": [d[chosen] for d in decided],
        "nested_decisions": nested,
        "per_speaker": {s: vectors[k].tolist() for s, k in per_speaker.items()},
    }
