"""Committee weights (ser_jax.research.weights): given weights, and weights chosen across speakers with
a nested figure that never lets a speaker's files choose their own weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_experiment import _fake_cv

from ser_jax.errors import ConfigError
from ser_jax.evaluation.metrics import classification_metrics, combine_probabilities
from ser_jax.research.weights import choose_weights, uar_of_rows, weight_vectors
from ser_jax.serving.shipped import parse_weights


def test_weight_vectors_are_distinct_up_to_scale_equal_weights_first():
    v = weight_vectors([0, 1, 2], 3)
    # 26 non-zero vectors; (2,2,2)~(1,1,1), (0,2,2)~(0,1,1) x3, (0,0,2)~(0,0,1) x3
    assert len(v) == 19
    assert v[0].tolist() == [1.0, 1.0, 1.0]
    shares = {tuple(np.round(w / w.sum(), 6)) for w in v}
    assert len(shares) == 19 and (v.sum(axis=1) > 0).all()
    with pytest.raises(ConfigError, match="--weight_grid"):
        weight_vectors([0], 2)


def test_parse_weights_refuses_what_is_not_a_weight_per_run():
    assert parse_weights("2,1,0.5", 3) == [2.0, 1.0, 0.5]
    for text, why in (
        ("1,2", "2 weights for 3 runs"),
        ("1,x,1", "not comma-separated"),
        ("0,0,0", "not all 0"),
        ("1,-1,1", ">= 0"),
    ):
        with pytest.raises(ConfigError, match=why):
            parse_weights(text, 3)


def test_uar_of_rows_is_classification_metrics_uar():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 4, 60)
    decided = rng.integers(0, 4, (5, 60))
    rows = rng.random(60) < 0.6
    got = uar_of_rows(decided, truth, rows, 4)
    want = [classification_metrics(truth[rows], d[rows], list("abcd"))["uar"] for d in decided]
    np.testing.assert_allclose(got, want)


def test_weighted_combination():
    a, b = np.array([0.9, 0.1]), np.array([0.3, 0.7])
    np.testing.assert_allclose(combine_probabilities([a, b], weights=[2, 1]), (2 * a + b) / 3)
    np.testing.assert_allclose(combine_probabilities([a, b], weights=[1, 0]), a)
    g = combine_probabilities([a, b], "geometric", weights=[3, 1])
    want = a**0.75 * b**0.25
    np.testing.assert_allclose(g, want / want.sum())
    with pytest.raises(ConfigError, match="one weight >= 0 for each of the 2 models"):
        combine_probabilities([a, b], weights=[1, 1, 1])


# Two speakers, two runs. Run a is right on speaker A (P(true) 0.9) and wrong on B (0.05); run
# b is wrong on A (0.2) and right on B (0.9). Equal weights: A right (0.55), B wrong (0.475).
# Weights (1, 2): A wrong (0.43), B right (0.62). No vector is right on both.
P_TRUE = {"a": {"A": 0.9, "B": 0.05}, "b": {"A": 0.2, "B": 0.9}}


def _two_speaker_runs(root):
    for run, of in P_TRUE.items():
        folds = {
            spk: [
                (f"{spk}1", "anger", of[spk]),  # P(anger) = P(true) for an anger file
                (f"{spk}2", "boredom", 1 - of[spk]),
            ]
            for spk in ("A", "B")
        }
        _fake_cv(root / run, folds, seeds=(0,), bn=False)
    return [root / "a", root / "b"]


def test_nested_weights_decide_each_speaker_by_the_other_speakers_choice(tmp_path):
    from ser_jax.research.committees import ensemble_runs

    runs = _two_speaker_runs(tmp_path)
    ens = ensemble_runs(runs, tmp_path / "ens", weight_grid=[0, 1, 2])
    g = ens["weight_grid"]["pooled"]
    # on all speakers every vector gets one speaker right: a tie, equal weights win it
    assert g["chosen"] == [1.0, 1.0]
    assert g["on_all_speakers"]["uar"]["each"] == [0.5]
    # A's weights come from B's files (b heavier, nearest equal: (1, 2)); B's from A's (equal):
    # both then decide their own speaker wrong
    assert g["per_speaker"] == {"A": [1.0, 2.0], "B": [1.0, 1.0]}
    assert g["nested"]["uar"]["each"] == [0.0]
    assert ens["weight_grid"]["candidates"] == 5  # (0,1) (1,0) (1,1) (1,2) (2,1)
    # the nested decisions' confusion (rows: truth anger, boredom): all four files wrong
    assert g["nested_confusion"] == [[0, 2], [2, 0]]
    assert (tmp_path / "ens" / "ensemble_weights_nested_confusion.png").stat().st_size > 0
    md = (tmp_path / "ens" / "ensemble_summary.md").read_text()
    assert "| pooled | 1, 1 | 0.5000 ± 0.0000 | 0.0000 ± 0.0000 | 0.0000 |" in md
    # given weights: b counts twice, so B is right and A wrong
    weighted = ensemble_runs(runs, tmp_path / "w", weights=[1, 2])
    assert weighted["pooled"]["uar"] == 0.5 and weighted["weights"] == [1.0, 2.0]
    assert [m["weight"] for m in weighted["members"]] == [1.0, 2.0]
    decided = json.loads((tmp_path / "w" / "ensemble_summary.json").read_text())["pooled"]
    assert decided["per_class"]["anger"]["recall"] == 0.5  # B1 right, A1 wrong
    only_a = ensemble_runs(runs, tmp_path / "a_only", weights=[1, 0])
    assert only_a["pooled"]["uar"] == 0.5
    assert only_a["pooled"]["confusion"] == [[1, 1], [1, 1]]
    with pytest.raises(ConfigError, match="3 weights for 2 run directories"):
        ensemble_runs(runs, tmp_path / "bad", weights=[1, 1, 1])


def test_choose_weights_averages_the_committees_scores():
    """With two committees the choice maximises their mean UAR: committee 1 alone would take
    run 0, committee 2 alone run 1; run 1 is right on more files in all."""
    truth = np.array([0, 1, 0, 1])
    speakers = np.array(["s", "s", "t", "t"])
    right, wrong = [0.8, 0.2], [0.2, 0.8]
    flip = lambda p: p[::-1]  # noqa: E731

    def probs(ok: list[bool]) -> np.ndarray:
        return np.array(
            [
                (right if o else wrong) if y == 0 else flip(right if o else wrong)
                for o, y in zip(ok, truth, strict=True)
            ]
        )

    c1 = np.stack([probs([True] * 4), probs([False, False, True, True])])
    c2 = np.stack([probs([False] * 4), probs([True] * 4)])
    got = choose_weights([(c1, truth), (c2, truth)], speakers, [0, 1], 2)
    assert got["chosen"] == [0.0, 1.0]
    assert classification_metrics(truth, got["chosen_decisions"][1], "ab")["uar"] == 1.0
