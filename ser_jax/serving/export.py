"""Serving outside this package: a model's whole path as serialised StableHLO (``jax.export``).

``export_model(model, out)`` writes ``out`` (the serialised ``jax.export.Exported``) and
``out.json`` (labels, sample rate, window length). The exported function takes a batch of
waveforms at the model's sample rate, each zero-padded or cut to ``samples`` (the model's
``data.max_seconds``), with their valid lengths, and returns class probabilities; the batch
size is symbolic. Log-mel, normalisation, the network and the softmax are all inside, and the
weights are constants of the program. ``load_exported(path)`` needs only ``jax``::

    import json, jax, numpy as np
    fn = jax.export.deserialize(open("ser.jaxexport", "rb").read())
    meta = json.load(open("ser.jaxexport.json"))
    audio = np.zeros((1, meta["samples"]), np.float32); audio[0, :len(wave)] = wave
    probs = fn.call(audio, np.array([len(wave)], np.int32))
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ser_jax.errors import ConfigError
from ser_jax.evaluation.scoring import score_clips
from ser_jax.models import create_model
from ser_jax.serving.restore import LoadedModel
from ser_jax.training.steps import predict_step


def refuse_per_speaker(model: LoadedModel) -> None:
    """Refuse a model normalised by each speaker's statistics (no input carries them)."""
    if model.per_speaker:
        raise ConfigError(
            f"{model.source}: frontend.normalize='speaker' normalises by each speaker's own "
            "statistics, which the exported waveform-to-probabilities function has no input "
            "for; export a model trained with normalize='utterance', 'dataset' or 'none'"
        )


def export_metadata(model: LoadedModel, samples: int) -> dict[str, Any]:
    """What ``out.json`` says: labels, sample rate, window length, inputs and outputs."""
    return {
        "labels": list(model.label_names),
        "sample_rate": model.sample_rate,
        "samples": samples,
        "inputs": "audio float32 (batch, samples), zero after each clip; lengths int32 (batch,)",
        "outputs": "probabilities float32 (batch, classes), in the order of labels",
        # the model trained on recordings without exact zeros at their ends: trim them first
        "trim_silence": model.spec.trim_silence,
        "source": str(model.source),
        "step": model.step,
    }


def export_model(model: LoadedModel, out: str | Path) -> Path:
    """Write the model's waveform → probabilities function to ``out`` (and ``out.json``)."""
    refuse_per_speaker(model)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    module = create_model(model.config.model, len(model.label_names))
    variables = jax.tree.map(jnp.asarray, model.variables)
    frontend = model.spec.frontend

    def probabilities(audio: jax.Array, lengths: jax.Array) -> jax.Array:
        batch = {"audio": audio, "length": lengths}
        return predict_step(module.apply, variables, batch, frontend=frontend)

    (b,) = jax.export.symbolic_shape("b")
    samples = model.max_samples
    exported = jax.export.export(jax.jit(probabilities))(
        jax.ShapeDtypeStruct((b, samples), jnp.float32),
        jax.ShapeDtypeStruct((b,), jnp.int32),
    )
    out.write_bytes(exported.serialize())
    meta = {
        "labels": list(model.label_names),
        "sample_rate": model.sample_rate,
        "samples": samples,
        "inputs": "audio float32 (batch, samples), zero after each clip; lengths int32 (batch,)",
        "outputs": "probabilities float32 (batch, classes), in the order of labels",
        # the model trained on recordings without exact zeros at their ends: trim them first
        "trim_silence": model.spec.trim_silence,
        "source": str(model.source),
        "step": model.step,
    }
    Path(f"{out}.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out


def load_exported(path: str | Path) -> tuple[Any, dict[str, Any]]:
    """The exported function (call it with ``.call(audio, lengths)``) and its metadata."""
    path = Path(path)
    return jax.export.deserialize(path.read_bytes()), json.loads(Path(f"{path}.json").read_text())


def exported_probabilities(
    fn: Any, meta: dict[str, Any], waves: list[np.ndarray], batch_size: int = 32
) -> np.ndarray:
    """Score clips with an exported function, by the package's evaluation policy (long clips
    as half-overlapping windows, averaged; ``ser_jax.evaluation.scoring``)."""
    samples = int(meta["samples"])

    def predict(batch: dict[str, np.ndarray]) -> np.ndarray:
        audio = np.zeros((len(batch["audio"]), samples), np.float32)
        audio[:, : batch["audio"].shape[1]] = batch["audio"]
        return np.asarray(fn.call(audio, batch["length"]))

    return score_clips(
        predict,
        waves,
        len(meta["labels"]),
        batch_size=batch_size,
        max_samples=samples,
        bucket_samples=samples,
    )
