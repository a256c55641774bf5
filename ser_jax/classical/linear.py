"""A linear classifier on per-clip feature vectors (numpy and scikit-learn, outside jit).

Standardisation, then multinomial logistic regression with an L2 penalty (scikit-learn's
``LogisticRegression``, lbfgs; the intercept is not penalised), in one of two protocols:

- plain: features standardised by the mean and deviation of the training clips;
- per speaker (the speaker-adaptive protocol): every speaker's clips standardised by that
  speaker's own mean and deviation, in training and at test (it needs a speaker's recordings
  across emotions; ``standardise_by_speaker`` uses only that speaker's files).

The inverse strength C is chosen among a grid by leave-one-speaker-out over the *training*
speakers (pooled UAR of the inner folds; a tie: the smaller C, the stronger penalty), so the
test speaker never chooses it. With far fewer clips than features (Emo-DB: ~350 training clips,
6,373 ComParE features), the fit runs on the standardised clips rotated onto their row space
(the SVD's ``U S``): an L2-penalised linear model's weights lie in that space, so the fit is the
same model at a fraction of the cost (tested against the direct fit).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from ser_jax.errors import ConfigError
from ser_jax.evaluation.metrics import classification_metrics

ABSENT_CLASS_LOGIT = -50.0  # a class with no training clip is never predicted


def moments(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, scale)`` of ``feats (clips, features)``; a constant feature's scale is 1."""
    mean = feats.mean(axis=0)
    std = feats.std(axis=0)
    return mean, np.where(std > 1e-8 * np.maximum(np.abs(mean), 1.0), std, 1.0)


def standardise_by_speaker(feats: np.ndarray, speakers: Sequence[str]) -> np.ndarray:
    """``feats`` with every speaker's rows standardised by that speaker's own moments."""
    speakers = np.asarray(speakers)
    out = np.empty_like(feats, dtype=np.float64)
    for s in np.unique(speakers):
        rows = speakers == s
        mean, scale = moments(feats[rows].astype(np.float64))
        out[rows] = (feats[rows] - mean) / scale
    return out


def fit_logistic(
    z: np.ndarray, y: np.ndarray, c: float, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(coef (features, classes), intercept (classes,))`` of the L2 logistic regression of
    standardised ``z`` on ``y``, fitted in ``z``'s row space (module docstring)."""
    return fit_path(z, y, [c], num_classes)[0]


def fit_path(
    z: np.ndarray, y: np.ndarray, grid: Sequence[float], num_classes: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``fit_logistic`` for every C of ``grid`` on the same clips: one SVD, and each fit
    started from the previous C's solution (in ``grid``'s order; the optimum of each C is
    unique, so only the solver's path changes, about 6x shorter on the inner folds)."""
    present = np.unique(y)
    if len(present) < 2:
        raise ConfigError(f"a linear classifier needs two classes to train on, got {present}")
    _, s, vt = np.linalg.svd(z, full_matrices=False)
    basis = vt[s > s[0] * 1e-10].T  # (features, rank)
    rotated = z @ basis
    from sklearn.linear_model import LogisticRegression  # 1.1 s to import: only when fitting

    model = LogisticRegression(max_iter=5000, tol=1e-6, warm_start=True)
    out = []
    for c in grid:
        fitted = model.set_params(C=float(c)).fit(rotated, y)
        rows, icpt = fitted.coef_, fitted.intercept_
        if len(present) == 2:  # one logit a: the softmax of (-a/2, a/2) is the sigmoid of a
            rows, icpt = np.stack([-rows[0], rows[0]]) / 2, np.array([-icpt[0], icpt[0]]) / 2
        coef = np.zeros((z.shape[1], num_classes))
        intercept = np.full(num_classes, ABSENT_CLASS_LOGIT)
        coef[:, fitted.classes_] = basis @ rows.T
        intercept[fitted.classes_] = icpt
        out.append((coef, intercept))
    return out


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@dataclasses.dataclass
class LinearClassifier:
    """A fitted classifier: standardisation (``mean``/``scale``: the training clips'; unused
    when ``per_speaker``), weights over the standardised features, and the chosen ``c``."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    per_speaker: bool
    c: float

    def probabilities(self, feats: np.ndarray, speakers: Sequence[str] | None = None) -> np.ndarray:
        """``(clips, classes)`` float32; ``per_speaker``: each speaker's clips (``speakers``;
        None: all one speaker's) standardised by their own moments."""
        feats = np.asarray(feats, np.float64)
        if self.per_speaker:
            names = speakers if speakers is not None else ["-"] * len(feats)
            z = standardise_by_speaker(feats, names)
        else:
            z = (feats - self.mean) / self.scale
        return softmax(z @ self.coef + self.intercept).astype(np.float32)

    def arrays(self) -> dict[str, Any]:
        """The classifier as a tree of arrays (what ``model.msgpack`` holds)."""
        return {f.name: np.asarray(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_arrays(cls, tree: dict[str, Any]) -> LinearClassifier:
        return cls(
            **{k: np.asarray(tree[k]) for k in ("mean", "scale", "coef", "intercept")},
            per_speaker=bool(np.asarray(tree["per_speaker"])),
            c=float(np.asarray(tree["c"])),
        )


def inner_uar(
    feats: np.ndarray,
    y: np.ndarray,
    speakers: Sequence[str],
    grid: Sequence[float],
    num_classes: int,
    per_speaker: bool,
) -> list[float]:
    """Each C's pooled UAR over leave-one-speaker-out folds of the given (training) clips."""
    speakers = np.asarray(speakers)
    z_all = standardise_by_speaker(feats, speakers) if per_speaker else None
    decided = np.zeros((len(grid), len(y)), np.int64)
    for s in np.unique(speakers):
        out = speakers == s
        if per_speaker:
            z_in, z_out = z_all[~out], z_all[out]
        else:
            mean, scale = moments(feats[~out].astype(np.float64))
            z_in, z_out = (feats[~out] - mean) / scale, (feats[out] - mean) / scale
        for k, (coef, intercept) in enumerate(fit_path(z_in, y[~out], grid, num_classes)):
            decided[k, out] = np.argmax(z_out @ coef + intercept, axis=-1)
    names = [str(i) for i in range(num_classes)]
    return [classification_metrics(y, d, names)["uar"] for d in decided]


def fit_classifier(
    feats: np.ndarray,
    y: np.ndarray,
    speakers: Sequence[str],
    grid: Sequence[float],
    num_classes: int,
    per_speaker: bool,
) -> tuple[LinearClassifier, dict[str, float]]:
    """The classifier of ``feats (clips, features)`` → ``y``, its C chosen by
    leave-one-speaker-out over ``speakers`` (one C given: that one), and each C's inner UAR."""
    grid = [float(c) for c in grid]
    if not grid or any(not np.isfinite(c) or c <= 0 for c in grid):
        raise ConfigError(f"model.inverse_regularisation={grid}: give one or more numbers > 0")
    feats = np.asarray(feats, np.float64)
    y = np.asarray(y, np.int64)
    scores: dict[str, float] = {}
    if len(grid) > 1:
        if len(set(speakers)) < 2:
            raise ConfigError(
                f"model.inverse_regularisation={tuple(grid)}: choosing C needs two or more "
                "training speakers; give one value"
            )
        uars = inner_uar(feats, y, speakers, grid, num_classes, per_speaker)
        scores = {f"{c:g}": u for c, u in zip(grid, uars, strict=True)}
        c = grid[int(np.argmax(uars))]  # argmax: the first best, the smallest C
    else:
        c = grid[0]
    mean, scale = moments(feats)
    z = standardise_by_speaker(feats, speakers) if per_speaker else (feats - mean) / scale
    coef, intercept = fit_logistic(z, y, c, num_classes)
    return LinearClassifier(mean, scale, coef, intercept, per_speaker, c), scores
