"""The restore path: a run directory → the selected model, ready to score audio.

A finished run keeps its selected model in ``model.msgpack`` (params, BatchNorm statistics and
the training-set feature statistics, written by the trainer with ``write_model_file``): loading
it needs flax's msgpack reader, the config and the label names, and no optimiser, trainer or
orbax. A run that has not finished has no selected model: ``load_model`` refuses it, and
``ser_jax.serving.checkpointed.load_run`` (what ``predict --run`` and ``evaluate`` use) reads
the same fields from its newest orbax checkpoint and says so (step, unfinished) on stderr;
it lives apart so that importing this module never imports orbax.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import serialization

from ser_jax.classical.model import FeatureModel, read_classifiers
from ser_jax.data.audio import load_audio
from ser_jax.data.pipeline import window_starts
from ser_jax.errors import ConfigError
from ser_jax.evaluation.scoring import ModelScorer, SpeakerAdaptation, score_windows
from ser_jax.frontend.features import speaker_feature_stats
from ser_jax.models import create_model, is_feature_model
from ser_jax.rundir import RunDir
from ser_jax.spec import RunSpec, check_semitones, resolve, warp_factors
from ser_jax.training.steps import ModelVariables, batchnorm_stats_fn, predict_step

MODEL_FILE = "model.msgpack"
VARIABLE_FIELDS = ("params", "batch_stats", "feature_stats")


def write_model_file(path: str | Path, variables: ModelVariables, *, step: int) -> Path:
    """Write ``variables`` (and the step they come from) as one msgpack file, atomically."""
    path = Path(path)
    tree = {
        "step": int(step),
        **{k: jax.device_get(getattr(variables, k)) for k in VARIABLE_FIELDS},
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(serialization.msgpack_serialize(tree))
    tmp.replace(path)
    return path


def read_model_file(path: str | Path) -> tuple[ModelVariables, int]:
    tree = serialization.msgpack_restore(Path(path).read_bytes())
    variables = ModelVariables(**{k: tree.get(k, {}) for k in VARIABLE_FIELDS})
    return variables, int(tree.get("step", -1))


@dataclasses.dataclass
class LoadedModel:
    """A model restored for scoring: its config, labels, variables and the step they are from."""

    source: Path
    config: Any
    label_names: tuple[str, ...]
    variables: ModelVariables
    step: int
    finished: bool

    @functools.cached_property
    def spec(self) -> RunSpec:
        return resolve(self.config)

    @property
    def sample_rate(self) -> int:
        return self.spec.sample_rate

    @property
    def max_samples(self) -> int:
        return self.spec.max_samples

    def load_audio(self, path: str | Path) -> np.ndarray:
        """A recording as this model's training read its files: mono at its sample rate,
        without digital silence at the ends when it trained so (``data.trim_silence``)."""
        return load_audio(path, self.sample_rate, trim_silence=self.spec.trim_silence)

    @functools.cached_property
    def _predict_with(self):
        model = create_model(self.config.model, len(self.label_names))
        return jax.jit(functools.partial(predict_step, model.apply, frontend=self.spec.frontend))

    @property
    def _predict(self):
        return lambda batch: self._predict_with(self.variables, batch)

    @functools.cached_property
    def _bn_stats_with(self):
        model = create_model(self.config.model, len(self.label_names))
        return jax.jit(batchnorm_stats_fn(model, self.spec.frontend))

    def scorer(self, batch_size: int = 32) -> ModelScorer:
        """The scoring policy of training (``ser_jax.evaluation.scoring.ModelScorer``) with
        this model's compiled functions, ``batch_size`` clips a batch (BatchNorm statistics
        batched as training's ``eval.speaker_bn``)."""
        return ModelScorer(
            predict=self._predict_with,
            bn_stats=self._bn_stats_with,
            num_classes=len(self.label_names),
            batch_size=batch_size,
            bn_batch_size=self.spec.batch_size,
            max_samples=self.spec.max_samples,
            bucket_samples=self.spec.bucket_samples,
        )

    def speaker_variables(
        self,
        waves: Sequence[np.ndarray],
        *,
        speaker_bn: bool,
        stats: dict[str, np.ndarray] | None = None,
    ) -> ModelVariables:
        """The variables that score ``waves``, one speaker's recordings: a ``per_speaker``
        model's log-mel statistics (``stats``; None: from ``waves``) and, with ``speaker_bn``,
        BatchNorm statistics of ``waves`` themselves in place of the training ones (speaker-
        adaptive BatchNorm, as ``eval.speaker_bn`` scored the run's test speaker)."""
        if self.per_speaker and stats is None:
            stats = self.speaker_stats(waves)["-"]
        return self.scorer().adapt(
            self.variables,
            feature_stats=stats if self.per_speaker else None,
            bn_waves=waves if speaker_bn else None,
        )

    @property
    def per_speaker(self) -> bool:
        """The model normalises each speaker's log-mel by that speaker's own statistics
        (``frontend.normalize="speaker"``): it scores a group of one speaker's recordings."""
        return self.spec.frontend.normalize == "speaker"

    def speaker_stats(
        self, waves: Sequence[np.ndarray], speakers: Sequence[str] | None = None
    ) -> dict[str, dict[str, np.ndarray]]:
        """Each speaker's log-mel statistics from their ``waves`` (``speakers`` None: all of
        them one speaker's)."""
        return speaker_feature_stats(
            waves,
            list(speakers) if speakers is not None else ["-"] * len(waves),
            self.spec.frontend,
            batch_size=32,
            max_samples=self.spec.max_samples,
            bucket_samples=self.spec.bucket_samples,
        )

    def window_probabilities(
        self,
        wave: np.ndarray,
        batch_size: int = 32,
        *,
        stats: dict[str, np.ndarray] | None = None,
        variables: ModelVariables | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(start_s, end_s, probs (windows, classes))``: each half-overlapping window of
        ``wave`` scored alone (a timeline of a long recording; their mean is the clip's). A
        ``per_speaker`` model uses the speaker's ``stats`` (``{"mean", "std"}``; None: the
        recording's own); ``variables`` (``speaker_variables``) replace the model's."""
        starts = np.asarray(window_starts(len(wave), self.max_samples))
        pieces = [wave[s : s + self.max_samples] for s in starts]
        predict = self._predict
        if variables is None and self.per_speaker:  # the recording is one speaker's
            variables = self.speaker_variables([wave], speaker_bn=False, stats=stats)
        if variables is not None:
            v = variables
            predict = lambda batch: self._predict_with(v, batch)  # noqa: E731
        probs = score_windows(
            predict,
            pieces,
            len(self.label_names),
            batch_size=batch_size,
            max_samples=self.spec.max_samples,
            bucket_samples=self.spec.bucket_samples,
        )
        ends = starts + np.array([len(p) for p in pieces])
        return starts / self.sample_rate, ends / self.sample_rate, probs.astype(np.float32)

    def probabilities(
        self,
        waves: Sequence[np.ndarray],
        batch_size: int = 32,
        *,
        speakers: Sequence[str] | None = None,
        stats: dict[str, dict[str, np.ndarray]] | None = None,
        speaker_bn: bool = False,
        bn_waves: Callable[[str], Sequence[np.ndarray]] | None = None,
        semitones: Sequence[float] = (),
    ) -> np.ndarray:
        """``(len(waves), classes)``: clips scored by the evaluation policy of training
        (``ser_jax.evaluation.scoring``: long clips as half-overlapping windows, averaged).

        A ``per_speaker`` model scores each speaker's clips with that speaker's statistics:
        ``stats`` by speaker name (``speaker_stats``), else computed from ``waves`` grouped
        by ``speakers`` (None: all ``waves`` are one speaker's). ``speaker_bn``: each
        speaker's clips with BatchNorm statistics of their own, or of the clips
        ``bn_waves(speaker)`` gives (a run's ``eval.speaker_bn_source``; asked for only with
        ``speaker_bn``). The policy is training's own (``ModelScorer.probabilities``).
        ``semitones``: test-time warps, every window also scored with its mel filterbank (and
        pitch track) warped by each, all averaged (training's ``eval.tta_semitones``)."""
        warps = warp_factors(check_semitones(semitones, "tta_semitones"))
        names = list(speakers) if speakers is not None else ["-"] * len(waves)
        if self.per_speaker and stats is None:
            stats = self.speaker_stats(waves, names)
        adaptation = SpeakerAdaptation(
            feature_stats=stats if self.per_speaker else None,
            speaker_bn=speaker_bn,
            bn_waves=bn_waves,
        )
        return self.scorer(batch_size).probabilities(
            self.variables, waves, speakers=names, adaptation=adaptation, warps=warps
        )


def load_model(path: str | Path) -> LoadedModel | FeatureModel:
    """The selected model of a finished run directory (its ``model.msgpack``): no trainer, no
    orbax; a feature model's (``model.name="opensmile"``) as a
    ``ser_jax.classical.model.FeatureModel``. A run that has not finished has none: refused,
    naming it (``ser_jax.serving.checkpointed.load_run`` reads its newest checkpoint instead)."""
    run = RunDir(path)
    run.check()
    config = run.config()
    labels = run.label_names()
    model_file = run / MODEL_FILE
    if not (run.finished and model_file.exists()):
        raise ConfigError(
            f"{run.path}: the run has not finished (no results.json / {MODEL_FILE}), so it has "
            "no selected model; `ser-jax predict --run` and `evaluate` read its newest checkpoint"
        )
    if is_feature_model(config.model):
        return FeatureModel(run.path, config, labels, read_classifiers(model_file))
    variables, step = read_model_file(model_file)
    return LoadedModel(run.path, config, labels, variables, step, True)
