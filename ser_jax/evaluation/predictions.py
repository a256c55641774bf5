"""The saved predictions of finished runs (``<kind>_predictions.jsonl``), read back per file:
which kinds a run can give, each file's class probabilities from several runs (the balanced
decision computed from them), and those probabilities combined over the runs and scored.

Combining goes through ``ser_jax.evaluation.metrics.combine_probabilities``, the one
implementation of the committee rules.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ser_jax.evaluation.metrics import (
    balanced_probabilities,
    classification_metrics,
    combine_probabilities,
    read_predictions,
    training_prior,
)

# The balanced decision of a kind of predictions (``test_balanced``: the ``test`` predictions
# divided by the run's training prior, ``ser_jax.evaluation.metrics.balanced_probabilities``), computed
# from the saved probabilities: no file of its own.
BALANCED = "_balanced"


def has_kind(run_dir: Path, kind: str) -> bool:
    """Whether a run can give ``kind`` predictions: its ``<kind>_predictions.jsonl`` (for a
    balanced kind, its source's, and the training class counts to divide by)."""
    source = kind.removesuffix(BALANCED)
    if not (Path(run_dir) / f"{source}_predictions.jsonl").exists():
        return False
    if source == kind:
        return True
    try:
        json.loads((Path(run_dir) / "run_info.json").read_text())["data"]["train"]["per_label"]
    except (FileNotFoundError, KeyError, TypeError, json.JSONDecodeError):
        return False
    return True


def view_kind(run_dir: Path, kind: str) -> str:
    """The predictions kind ``run_dir`` gives for ``kind``: itself, except that a run without
    test-time views (a feature model: its ``results.json`` says ``test_time_views: false``)
    gives its unwarped predictions for a ``tta`` kind (``test_tta`` → ``test``,
    ``test_tta_speaker_bn`` → ``test_speaker_bn``), as its restored model scores a committee's
    warped views."""
    if "_tta" not in kind or has_kind(run_dir, kind):
        return kind
    try:
        views = json.loads((Path(run_dir) / "results.json").read_text()).get("test_time_views")
    except (FileNotFoundError, json.JSONDecodeError):
        return kind
    return kind.replace("_tta", "") if views is False else kind


def file_probabilities(
    run_dirs: Sequence[Path], label_names: Sequence[str], name: str = "test"
) -> tuple[dict[str, list[np.ndarray]], dict[str, int]]:
    """Per test file, the class probabilities (in ``label_names`` order) of every run that
    scored it (``<name>_predictions.jsonl``), and its true class. A ``name`` ending in
    ``_balanced`` reads the predictions without the suffix and divides each run's by its own
    training prior (the balanced decision)."""
    source = name.removesuffix(BALANCED)
    probs: dict[str, list[np.ndarray]] = {}
    truth: dict[str, int] = {}
    for run_dir in run_dirs:
        prior = training_prior(run_dir, label_names) if source != name else None
        for utt, row in read_predictions(run_dir, source).items():
            p = np.array([row["probs"][n] for n in label_names])
            probs.setdefault(utt, []).append(
                p if prior is None else balanced_probabilities(p, prior)
            )
            truth[utt] = label_names.index(row["label"])
    return probs, truth


def score_mean(
    probs: dict[str, list[np.ndarray]],
    truth: dict[str, int],
    label_names: Sequence[str],
    rule: str = "mean",
    weights: dict[str, list[float]] | None = None,
) -> dict[str, Any]:
    """Metrics of each file's class probabilities combined over its models (``rule``, as
    ``ser_jax.evaluation.metrics.combine_probabilities``: their mean by default; ``weights``: per file,
    a weight for each of its models), over all files at once."""
    ids = sorted(probs)
    combined = np.array(
        [
            combine_probabilities(probs[u], rule, None if weights is None else weights[u])
            for u in ids
        ]
    )
    return classification_metrics([truth[u] for u in ids], combined.argmax(-1), label_names)
