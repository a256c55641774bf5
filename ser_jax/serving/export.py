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

A shipped committee (``ser_jax.serving.shipped.Committee``) exports as one function the same
way (``exported_function``): each member's probabilities averaged over the plain window and
the committee's test-time warps, as ``ser-jax predict`` averages its views, then the members'
weighted mean. Its members must share their classes, sample rate, window and silence
trimming (one waveform input), and its rule must be the mean: combining windows and
combining clips then agree, so a long clip's windows averaged give ``predict``'s figure.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ser_jax.errors import ConfigError
from ser_jax.evaluation.scoring import score_clips
from ser_jax.frontend.logmel import FrontendConfig
from ser_jax.models import create_model
from ser_jax.serving.restore import LoadedModel
from ser_jax.serving.shipped import ALL_JAX, Committee
from ser_jax.spec import check_semitones, warp_factors
from ser_jax.training.steps import predict_step

# (audio (batch, samples) float32, lengths (batch,) int32) -> probabilities (batch, classes)
ProbabilitiesFn = Callable[[jax.Array, jax.Array], jax.Array]
# (a model, test-time warps in semitones) -> its function, the views averaged
MemberFn = Callable[[LoadedModel, Sequence[float]], ProbabilitiesFn]
SHARED = ("label_names", "sample_rate", "max_samples", "trim_silence")  # what members share


def refuse_per_speaker(model: LoadedModel) -> None:
    """Refuse a model normalised by each speaker's statistics (no input carries them)."""
    if model.per_speaker:
        raise ConfigError(
            f"{model.source}: frontend.normalize='speaker' normalises by each speaker's own "
            "statistics, which the exported waveform-to-probabilities function has no input "
            "for; export a model trained with normalize='utterance', 'dataset' or 'none'"
        )


def view_averaged(
    model: LoadedModel,
    semitones: Sequence[float] = (),
    *,
    module: Any = None,
    frontend: FrontendConfig | None = None,
) -> ProbabilitiesFn:
    """The model's waveform → probabilities function: the plain window, and with
    ``semitones`` the window warped by each too, averaged (``score_clips``'s test-time views).
    ``module`` and ``frontend`` replace the model's own (the ONNX export's variants).

    The views run as one batch, ``(views * batch, samples)``, the plain one with the
    filterbank warped by 1 (the plain filterbank up to float32 rounding,
    ``ser_jax.frontend.logmel.mel_filterbank``): one copy of the network in the program, not
    one a view (a committee's graph converts three times faster)."""
    refuse_per_speaker(model)
    warps = warp_factors(check_semitones(semitones, "tta_semitones"))
    if module is None:
        module = create_model(model.config.model, len(model.label_names))
    frontend = frontend or model.spec.frontend
    variables = jax.tree.map(jnp.asarray, model.variables)
    views = (1.0, *warps)

    def probabilities(audio: jax.Array, lengths: jax.Array) -> jax.Array:
        if not warps:
            batch = {"audio": audio, "length": lengths}
            return predict_step(module.apply, variables, batch, frontend=frontend)
        warp = [jnp.full_like(lengths, w, dtype=jnp.float32) for w in views]
        batch = {
            "audio": jnp.concatenate([audio] * len(views)),
            "length": jnp.concatenate([lengths] * len(views)),
            "warp": jnp.concatenate(warp),
        }
        probs = predict_step(module.apply, variables, batch, frontend=frontend)
        return probs.reshape(len(views), audio.shape[0], probs.shape[-1]).mean(axis=0)

    return probabilities


def refuse_outside_jax(model: Any) -> None:
    """Refuse a model whose path is not a JAX function (``ser_jax.classical``: openSMILE's
    features, computed by its own library)."""
    if not isinstance(model, LoadedModel):
        raise ConfigError(
            f"{model.source}: model.name={model.config.model.name!r} computes its features "
            "outside JAX, so it has no waveform-to-probabilities function to export (the "
            f"shipped committee without it: --model {ALL_JAX})"
        )


def check_members(committee: Committee) -> None:
    """Refuse a committee that one function of one waveform cannot serve as ``predict``
    scores it: members differing in what the input means, or a rule other than the mean."""
    for m in committee.members:
        refuse_outside_jax(m)
    first = committee.members[0]
    for m in committee.members[1:]:
        for field in SHARED:
            a, b = _setting(first, field), _setting(m, field)
            if a != b:
                raise ConfigError(
                    f"{committee.source}: its members differ in {field} ({first.source.name}: "
                    f"{a}, {m.source.name}: {b}); one exported function takes one waveform "
                    "input: export the members one by one"
                )
    if committee.rule != "mean":
        raise ConfigError(
            f"{committee.source}: rule={committee.rule!r} combines each member's clip average, "
            "which an exported function of one window cannot give for a clip longer than the "
            "window; export a committee with rule 'mean', or its members one by one"
        )


def _setting(model: LoadedModel, field: str) -> Any:
    return model.spec.trim_silence if field == "trim_silence" else getattr(model, field)


def exported_function(
    target: LoadedModel | Committee, member: MemberFn = view_averaged
) -> ProbabilitiesFn:
    """The function an export serialises: a model's (``member(model, ())``), or a committee's
    members' (``member(model, committee.semitones)``) weighted mean."""
    if not isinstance(target, Committee):
        refuse_outside_jax(target)
        return member(target, ())
    check_members(target)
    fns = [member(m, target.semitones) for m in target.members]
    given = target.weights or (1.0,) * len(fns)
    weights = [np.float32(w / sum(given)) for w in given]

    def probabilities(audio: jax.Array, lengths: jax.Array) -> jax.Array:
        terms = [w * fn(audio, lengths) for w, fn in zip(weights, fns, strict=True)]
        return sum(terms[1:], terms[0])

    return probabilities


def members(target: LoadedModel | Committee) -> tuple[LoadedModel, ...]:
    return target.members if isinstance(target, Committee) else (target,)


def describe(target: LoadedModel | Committee) -> str:
    """``functionals``, or ``a committee of cnn_lstm, functionals`` (for messages)."""
    names = [m.config.model.name for m in members(target)]
    return f"a committee of {', '.join(names)}" if isinstance(target, Committee) else names[0]


def export_metadata(target: LoadedModel | Committee, samples: int) -> dict[str, Any]:
    """What ``out.json`` says: labels, sample rate, window length, inputs and outputs, and
    where the model comes from (a committee: its members, weights, rule and warps)."""
    model = members(target)[0]
    meta = {
        "labels": list(model.label_names),
        "sample_rate": model.sample_rate,
        "samples": samples,
        "inputs": "audio float32 (batch, samples), zero after each clip; lengths int32 (batch,)",
        "outputs": "probabilities float32 (batch, classes), in the order of labels",
        # the model trained on recordings without exact zeros at their ends: trim them first
        "trim_silence": model.spec.trim_silence,
        "source": str(target.source),
    }
    if not isinstance(target, Committee):
        return {**meta, "step": model.step}
    return {
        **meta,
        "members": [{"source": str(m.source), "step": m.step} for m in target.members],
        "rule": target.rule,
        "weights": None if target.weights is None else list(target.weights),
        "tta_semitones": list(target.semitones),
    }


def export_model(target: LoadedModel | Committee, out: str | Path) -> Path:
    """Write the model's (or committee's) waveform → probabilities function to ``out`` (and
    ``out.json``)."""
    fn = exported_function(target)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    (b,) = jax.export.symbolic_shape("b")
    samples = target.max_samples
    exported = jax.export.export(jax.jit(fn))(
        jax.ShapeDtypeStruct((b, samples), jnp.float32),
        jax.ShapeDtypeStruct((b,), jnp.int32),
    )
    out.write_bytes(exported.serialize())
    meta = export_metadata(target, samples)
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
    return window_probabilities(
        lambda audio, lengths: np.asarray(fn.call(audio, lengths)), meta, waves, batch_size
    )


def window_probabilities(
    call: Any, meta: dict[str, Any], waves: list[np.ndarray], batch_size: int = 32
) -> np.ndarray:
    """Score clips with an exported model's ``call(audio (batch, samples) float32, lengths
    (batch,) int32) -> probabilities``, every batch zero-padded to the model's fixed window
    (``meta["samples"]``), by the package's evaluation policy (``score_clips``)."""
    samples = int(meta["samples"])

    def predict(batch: dict[str, np.ndarray]) -> np.ndarray:
        audio = np.zeros((len(batch["audio"]), samples), np.float32)
        audio[:, : batch["audio"].shape[1]] = batch["audio"]
        return call(audio, np.asarray(batch["length"], np.int32))

    return score_clips(
        predict,
        waves,
        len(meta["labels"]),
        batch_size=batch_size,
        max_samples=samples,
        bucket_samples=samples,
    )
