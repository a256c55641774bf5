"""Metrics against scikit-learn's definitions, and the report files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score
from sklearn.metrics import confusion_matrix as sk_confusion

from ser_jax.evaluation.metrics import classification_metrics, write_report
from ser_jax.evaluation.tables import mean_std

NAMES = ("anger", "boredom", "disgust", "fear")


def test_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)
    p = np.where(rng.random(200) < 0.6, y, rng.integers(0, 4, 200))
    m = classification_metrics(y, p, NAMES)
    np.testing.assert_array_equal(m["confusion"], sk_confusion(y, p, labels=range(4)))
    assert m["accuracy"] == pytest.approx((y == p).mean())
    assert m["uar"] == pytest.approx(balanced_accuracy_score(y, p))
    assert m["macro_f1"] == pytest.approx(f1_score(y, p, average="macro"))
    assert m["per_class"]["fear"]["support"] == int((y == 3).sum())


def test_uar_differs_from_accuracy_on_imbalanced_data():
    y = np.array([0] * 9 + [1])
    p = np.zeros(10, int)
    m = classification_metrics(y, p, NAMES[:2])
    assert m["accuracy"] == pytest.approx(0.9)
    assert m["uar"] == pytest.approx(0.5)


def test_absent_class_is_left_out_of_uar():
    m = classification_metrics([0, 0, 1], [0, 1, 1], NAMES[:3])
    assert m["classes_present"] == ["anger", "boredom"]
    assert m["uar"] == pytest.approx((0.5 + 1.0) / 2)
    assert m["per_class"]["disgust"]["recall"] is None


def test_mean_std_uses_sample_std():
    ms = mean_std([0.5, 0.7, 0.9])
    assert ms["mean"] == pytest.approx(0.7)
    assert ms["std"] == pytest.approx(0.2)
    assert mean_std([0.4])["std"] == 0.0


def test_write_report_files(tmp_path):
    m = classification_metrics([0, 1, 1], [0, 1, 0], NAMES[:2])
    write_report(tmp_path, "test", m, [{"utt_id": "a", "label": "anger", "predicted": "anger"}])
    assert json.loads((tmp_path / "test_metrics.json").read_text())["accuracy"] == pytest.approx(
        2 / 3
    )
    assert (tmp_path / "test_confusion.png").stat().st_size > 1000
    assert (tmp_path / "test_predictions.jsonl").read_text().count("\n") == 1
