"""Evaluation: metrics from predictions, and the reports a run writes for its test split.

Metrics are plain numpy on host: accuracy, unweighted average recall (UAR, = balanced
accuracy, the field's headline number for imbalanced corpora), macro-F1, per-class precision and
recall, and the confusion matrix (rows = true class, columns = predicted class).

The balanced decision (``balanced_probabilities``) is post-hoc logit adjustment (Menon et al.
2021, "Long-tail learning via logit adjustment", tau = 1): a model's class probabilities divided
by the class frequencies it was trained on (``training_prior``) and renormalised, so the
decision is argmax(logit - log prior), the Bayes rule for balanced error (UAR) when the model is
calibrated to its training prior. A fixed rule, computed from saved predictions.

Several models' probabilities of one file combine by a rule (``combine_probabilities``): their
mean (``mean``), or their geometric mean, renormalised (``geometric``: the mean of the
log-probabilities, a product of experts, where a class one model finds unlikely loses more).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ser_jax.errors import ConfigError
from ser_jax.reports.figures import plot_confusion


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> np.ndarray:
    """(num_classes, num_classes) int64 counts; rows are true classes, columns predictions."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{y_true.shape[0]} true labels but {y_pred.shape[0]} predictions")
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def metrics_from_confusion(cm: np.ndarray, label_names: Sequence[str]) -> dict[str, Any]:
    """Accuracy, UAR, macro-F1 and per-class precision/recall/F1/support.

    Classes absent from the true labels are left out of UAR and macro-F1 (a recall of 0/0 is
    undefined, not zero); ``classes_present`` says which were averaged.
    """
    cm = np.asarray(cm, dtype=np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    tp = np.diag(cm)
    total = cm.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(support > 0, tp / support, np.nan)
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        f1 = np.where(
            (precision + np.nan_to_num(recall)) > 0,
            2 * precision * recall / (precision + recall),
            0.0,
        )
    present = support > 0
    per_class = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]) if present[i] else None,
            "f1": float(f1[i]) if present[i] else None,
            "support": int(support[i]),
        }
        for i, name in enumerate(label_names)
    }
    return {
        "accuracy": float(tp.sum() / total) if total else float("nan"),
        "uar": float(np.mean(recall[present])) if present.any() else float("nan"),
        "macro_f1": float(np.mean(f1[present])) if present.any() else float("nan"),
        "count": int(total),
        "classes_present": [n for n, p in zip(label_names, present, strict=True) if p],
        "per_class": per_class,
    }


def classification_metrics(
    y_true: Sequence[int], y_pred: Sequence[int], label_names: Sequence[str]
) -> dict[str, Any]:
    cm = confusion_matrix(y_true, y_pred, len(label_names))
    out = metrics_from_confusion(cm, label_names)
    out["confusion"] = cm.tolist()
    out["labels"] = list(label_names)
    return out


def format_table(metrics: dict[str, Any]) -> str:
    """A short text table: headline numbers, then per-class precision/recall/F1/support."""
    lines = [
        f"accuracy {metrics['accuracy']:.4f}   UAR {metrics['uar']:.4f}   "
        f"macro-F1 {metrics['macro_f1']:.4f}   (n={metrics['count']})",
        f"{'class':<12}{'precision':>10}{'recall':>10}{'F1':>10}{'support':>9}",
    ]
    for name, row in metrics["per_class"].items():
        rec = "-" if row["recall"] is None else f"{row['recall']:.3f}"
        f1 = "-" if row["f1"] is None else f"{row['f1']:.3f}"
        lines.append(f"{name:<12}{row['precision']:>10.3f}{rec:>10}{f1:>10}{row['support']:>9}")
    return "\n".join(lines)


def prediction_rows(
    clips: Any, probs: np.ndarray, label_names: Sequence[str]
) -> list[dict[str, Any]]:
    """One row per clip of a ``ClipSet``: id, path, speaker, true and predicted label, and the
    class probabilities."""
    rows = []
    for u, p, y in zip(clips.utts, probs, clips.labels, strict=True):
        rows.append(
            {
                "utt_id": u.utt_id,
                "path": u.path,
                "speaker": u.speaker,
                "label": label_names[int(y)],
                "predicted": label_names[int(p.argmax())],
                "probs": {n: round(float(v), 5) for n, v in zip(label_names, p, strict=True)},
            }
        )
    return rows


def read_predictions(run_dir: str | Path, name: str = "test") -> dict[str, dict[str, Any]]:
    """``<name>_predictions.jsonl`` of a run (``write_report``): utt_id → row (label,
    predicted, probs)."""
    with open(Path(run_dir) / f"{name}_predictions.jsonl") as f:
        return {r["utt_id"]: r for r in map(json.loads, f)}


def training_prior(run_dir: str | Path, label_names: Sequence[str]) -> np.ndarray:
    """The class frequencies a run was trained on, in ``label_names`` order: its
    ``run_info.json`` ``data.train.per_label`` counts, normalised. Refuses, naming the file, a
    run that did not record them or had no training file of a class (a zero prior)."""
    path = Path(run_dir) / "run_info.json"
    try:
        per_label = json.loads(path.read_text())["data"]["train"]["per_label"]
    except (FileNotFoundError, KeyError, TypeError, json.JSONDecodeError) as err:
        raise ConfigError(
            f"{path}: no training class counts (data.train.per_label), so no balanced "
            f"decision ({type(err).__name__}: {err})"
        ) from None
    counts = np.array([float(per_label.get(n, 0)) for n in label_names])
    if (counts <= 0).any():
        missing = [n for n, c in zip(label_names, counts, strict=True) if c <= 0]
        raise ConfigError(
            f"{path}: no training files of {', '.join(missing)}, so no balanced decision "
            "(it divides by each class's training frequency)"
        )
    return counts / counts.sum()


def balanced_probabilities(probs: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Class probabilities (``(..., classes)``) divided by the training prior and renormalised:
    the balanced decision, argmax(logit - log prior) (module docstring)."""
    q = np.asarray(probs, dtype=np.float64) / np.asarray(prior, dtype=np.float64)
    return q / q.sum(axis=-1, keepdims=True)


RULES = ("mean", "geometric")
# The smallest probability the geometric rule takes a log of: the resolution of the saved
# predictions (rounded to 5 decimals), so a rounded 0 vetoes a class finitely.
PROBABILITY_FLOOR = 1e-5


def combine_probabilities(
    probs: Sequence[np.ndarray], rule: str = "mean", weights: Sequence[float] | None = None
) -> np.ndarray:
    """One distribution from several models' class probabilities (each ``(..., classes)``):
    their ``mean``, or their ``geometric`` mean renormalised (module docstring); with
    ``weights`` (one a model, >= 0), the weighted mean or weighted geometric mean."""
    stacked = np.asarray(probs, dtype=np.float64)
    if weights is None:
        average = functools.partial(np.mean, axis=0)
    else:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (len(stacked),) or (w < 0).any() or w.sum() <= 0:
            raise ConfigError(
                f"weights {list(map(float, w.ravel()))}: need one weight >= 0 for each of the "
                f"{len(stacked)} models, not all 0"
            )
        w = (w / w.sum()).reshape((-1,) + (1,) * (stacked.ndim - 1))

        def average(x: np.ndarray) -> np.ndarray:
            return (w * x).sum(axis=0)

    if rule == "mean":
        return average(stacked)
    if rule == "geometric":
        log = average(np.log(np.maximum(stacked, PROBABILITY_FLOOR)))
        q = np.exp(log - log.max(axis=-1, keepdims=True))
        return q / q.sum(axis=-1, keepdims=True)
    raise ConfigError(
        f"rule={rule!r}: not a way to combine models' probabilities ({', '.join(RULES)})"
    )


def write_report(
    out_dir: Path, split: str, metrics: dict[str, Any], predictions: list[dict[str, Any]]
) -> None:
    """``{split}_metrics.json``, ``{split}_predictions.jsonl`` and confusion PNGs in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{split}_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    with open(out_dir / f"{split}_predictions.jsonl", "w") as f:
        for row in predictions:
            f.write(json.dumps(row) + "\n")
    plot_confusion(
        np.asarray(metrics["confusion"]),
        metrics["labels"],
        out_dir / f"{split}_confusion.png",
        title=f"{split}: accuracy {metrics['accuracy']:.3f}, UAR {metrics['uar']:.3f}",
    )
