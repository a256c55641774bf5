"""The restore path: a run directory → the selected model, ready to score audio.

A finished run keeps its selected model in ``model.msgpack`` (params, BatchNorm statistics and
the training-set feature statistics, written by the trainer with ``write_model_file``): loading
it needs flax's msgpack reader, the config and the label names, and no optimiser, trainer or
orbax. A run that has not finished has no selected model; ``load_model`` then reads the same
fields from its newest orbax checkpoint and says so (step, unfinished) on stderr.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import serialization

from ser_jax.data.pipeline import window_starts
from ser_jax.errors import ConfigError
from ser_jax.models import create_model
from ser_jax.rundir import RunDir
from ser_jax.scoring import score_clips, score_windows
from ser_jax.spec import RunSpec, resolve
from ser_jax.steps import ModelVariables, predict_step

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

    @functools.cached_property
    def _predict(self):
        model = create_model(self.config.model, len(self.label_names))
        fn = jax.jit(functools.partial(predict_step, model.apply, frontend=self.spec.frontend))
        return lambda batch: fn(self.variables, batch)

    def window_probabilities(
        self, wave: np.ndarray, batch_size: int = 32
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(start_s, end_s, probs (windows, classes))``: each half-overlapping window of
        ``wave`` scored alone (a timeline of a long recording; their mean is the clip's)."""
        starts = np.asarray(window_starts(len(wave), self.max_samples))
        pieces = [wave[s : s + self.max_samples] for s in starts]
        probs = score_windows(
            self._predict,
            pieces,
            len(self.label_names),
            batch_size=batch_size,
            max_samples=self.spec.max_samples,
            bucket_samples=self.spec.bucket_samples,
        )
        ends = starts + np.array([len(p) for p in pieces])
        return starts / self.sample_rate, ends / self.sample_rate, probs.astype(np.float32)

    def probabilities(self, waves: Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
        """``(len(waves), classes)``: clips scored by the evaluation policy of training
        (``ser_jax.scoring``: long clips as half-overlapping windows, averaged)."""
        return score_clips(
            self._predict,
            waves,
            len(self.label_names),
            batch_size=batch_size,
            max_samples=self.spec.max_samples,
            bucket_samples=self.spec.bucket_samples,
        )


def load_model(path: str | Path) -> LoadedModel:
    """The selected model of a run directory (or, for an unfinished run, its newest
    checkpoint, with a note on stderr naming the step)."""
    run = RunDir(path)
    run.check()
    config = run.config()
    labels = run.label_names()
    model_file = run / MODEL_FILE
    if run.finished and model_file.exists():
        variables, step = read_model_file(model_file)
        return LoadedModel(run.path, config, labels, variables, step, True)
    from ser_jax.checkpoint import Checkpointer

    ckpt = Checkpointer(run / "checkpoints", keep=10**6, asynchronous=False)
    try:
        step = ckpt.latest_step()
        if step is None:
            raise ConfigError(f"{run.path} has no checkpoint yet: training has not saved one")
        fields = ckpt.restore_variables(step, (*VARIABLE_FIELDS, "ema_params"))
    finally:
        ckpt.close()
    print(
        f"{run.path}: the run has not finished; using its newest checkpoint, step {step} "
        "(not the model validation would select)",
        file=sys.stderr,
    )
    if fields.get("ema_params"):  # the averaged weights are the model when they are kept
        fields["params"] = fields["ema_params"]
    variables = ModelVariables(**{k: fields.get(k, {}) for k in VARIABLE_FIELDS})
    return LoadedModel(run.path, config, labels, variables, step, False)
