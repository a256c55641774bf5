"""ser_jax.evaluation.scoring.ModelScorer: the one scoring policy of the trainer and a restored
model, checked with stand-in compiled functions (no model)."""

from __future__ import annotations

import numpy as np
import pytest

from ser_jax.evaluation.scoring import ModelScorer, SpeakerAdaptation
from ser_jax.training.steps import ModelVariables


def stand_in_scorer() -> ModelScorer:
    """A "model" whose first class's probability is half the sum of its log-mel mean and its
    BatchNorm mean; its BatchNorm statistics of a batch are the mean amplitude of the batch."""

    def predict(v: ModelVariables, batch: dict[str, np.ndarray]) -> np.ndarray:
        a = 0.5 * (float(v.feature_stats["mean"]) + float(v.batch_stats["bn"]["mean"]))
        return np.tile(np.array([a, 1.0 - a], np.float32), (len(batch["length"]), 1))

    def bn_stats(v: ModelVariables, batch: dict[str, np.ndarray]) -> tuple[dict, dict]:
        count = float(batch["length"].sum())
        mean = batch["audio"].sum() / count
        return {"bn": {"mean": mean, "var": np.float32(0.0)}}, {"bn": {"mean": count}}

    return ModelScorer(
        predict, bn_stats, 2, batch_size=2, bn_batch_size=3, max_samples=100, bucket_samples=0
    )


def test_model_scorer_scores_each_speaker_with_their_own_statistics():
    scorer = stand_in_scorer()
    variables = ModelVariables({}, {"bn": {"mean": 0.0, "var": 1.0}}, {"mean": 0.0})
    waves = [np.full(50, x, np.float32) for x in (0.2, 0.6, 0.2, 0.6)]
    speakers = ["a", "b", "a", "b"]
    feature_stats = {"a": {"mean": 0.1}, "b": {"mean": 0.3}}

    def bn_waves(speaker: str) -> list[np.ndarray]:
        return [np.full(40, 0.4, np.float32)] * 2

    def never(speaker: str) -> list[np.ndarray]:
        raise AssertionError("BatchNorm clips asked for without speaker_bn")

    plain = scorer.probabilities(variables, waves)  # no speakers needed
    np.testing.assert_allclose(plain[:, 0], 0.0)
    by_speaker = SpeakerAdaptation(feature_stats=feature_stats, bn_waves=never)
    got = scorer.probabilities(variables, waves, speakers=speakers, adaptation=by_speaker)
    np.testing.assert_allclose(got[:, 0], [0.05, 0.15, 0.05, 0.15], atol=1e-6)
    own = SpeakerAdaptation(feature_stats=feature_stats, speaker_bn=True)
    got = scorer.probabilities(variables, waves, speakers=speakers, adaptation=own)
    np.testing.assert_allclose(got[:, 0], [0.15, 0.45, 0.15, 0.45], atol=1e-6)
    pooled = SpeakerAdaptation(speaker_bn=True, bn_waves=bn_waves)
    got = scorer.probabilities(variables, waves, speakers=speakers, adaptation=pooled)
    np.testing.assert_allclose(got[:, 0], 0.2, atol=1e-6)
    assert scorer.adapt(variables) is variables
    with pytest.raises(KeyError):  # a speaker without log-mel statistics is not guessed
        scorer.probabilities(variables, waves, speakers=["a", "c", "a", "c"], adaptation=own)
