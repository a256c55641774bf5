"""Any run directory → a model ready to score audio: a finished run's selected model
(``ser_jax.serving.restore.load_model``, no orbax needed), or, for a run that has not finished,
the newest orbax checkpoint's variables, with a note on stderr naming the step.

Kept apart from ``restore`` so that loading a finished run (a shipped model, a packaged run)
never imports orbax; ``ser-jax predict --run`` and ``ser-jax evaluate`` load through here.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ser_jax.errors import ConfigError
from ser_jax.rundir import RunDir
from ser_jax.serving.restore import MODEL_FILE, VARIABLE_FIELDS, LoadedModel, load_model
from ser_jax.training.checkpoint import Checkpointer
from ser_jax.training.steps import ModelVariables


def load_run(path: str | Path) -> LoadedModel:
    """The selected model of a run directory (or, for an unfinished run, its newest
    checkpoint, with a note on stderr naming the step)."""
    run = RunDir(path)
    run.check()
    if run.finished and (run / MODEL_FILE).exists():
        return load_model(run.path)
    config = run.config()
    labels = run.label_names()
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
