"""Serving with onnxruntime alone: a model's whole path as an ONNX graph (the ``onnx`` extra).

``export_onnx(target, out)`` writes ``out`` (an ONNX model converted by jax2onnx) and
``out.json`` (labels, sample rate, window length: the metadata ``ser_jax.serving.export``
writes). The target is one model or a shipped committee (``ser_jax.serving.shipped.Committee``,
the default model is one): a committee is one graph, each member's probabilities averaged
over the plain window and the committee's test-time warps, then the members' weighted mean,
as ``ser-jax predict`` combines them (``ser_jax.serving.export.exported_function``). The graph
is the function ``ser-jax export`` serialises as StableHLO, with every FFT as real matmuls
(``frontend.spectrum="dft"``: ONNX has no complex numbers): the STFT as two with the DFT's
cosine and sine bases, the pitch track's autocorrelation as three
(``ser_jax.frontend.pitch.autocorrelation``), and the CNN-LSTM's LSTM as a plain scan. Inputs
``audio`` float32 ``(batch, samples)``, each clip zero-padded or cut to ``samples`` (the
model's ``data.max_seconds``), and ``lengths`` int32 ``(batch,)``; output ``probabilities``
float32 ``(batch, classes)``; the batch size is symbolic. Log-mel (or cepstra, descriptors,
pitch), normalisation, the networks and the softmax are inside, the weights are
initialisers::

    import json, numpy as np, onnxruntime as ort, soundfile as sf, soxr
    session, meta = ort.InferenceSession("ser.onnx"), json.load(open("ser.onnx.json"))
    wave, rate = sf.read("03a01Wa.wav", dtype="float32")  # mono
    wave = soxr.resample(wave, rate, meta["sample_rate"], quality="HQ")[: meta["samples"]]
    audio = np.zeros((1, meta["samples"]), np.float32); audio[0, : len(wave)] = wave
    probs = session.run(None, {"audio": audio, "lengths": np.array([len(wave)], np.int32)})[0]

(a clip longer than ``samples``: ``onnx_probabilities`` scores half-overlapping windows and
averages them, as ``ser-jax predict`` does). The export checks the graph against the model on
a test batch and refuses it (one-line ``ConfigError``) when onnxruntime cannot run it or its
probabilities differ by more than ``CHECK_TOLERANCE``; a model that jax2onnx cannot convert,
that normalises per speaker, or a committee whose members take different inputs is refused
the same way.

Only the CLI's export verb, the benchmark and the tests import this module (the core never
needs the extra).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import onnxruntime
from jax2onnx import to_onnx

from ser_jax.errors import ConfigError
from ser_jax.models import create_model
from ser_jax.serving.export import (
    ProbabilitiesFn,
    describe,
    export_metadata,
    exported_function,
    view_averaged,
    window_probabilities,
)
from ser_jax.serving.restore import LoadedModel
from ser_jax.serving.shipped import Committee

INPUTS = ("audio", "lengths")
OUTPUT = "probabilities"
CHECK_TOLERANCE = 1e-4  # the export's own check of the graph against the model


def onnx_member(model: LoadedModel, semitones: Sequence[float] = ()) -> ProbabilitiesFn:
    """One model's waveform → probabilities function (its views averaged) as jax2onnx converts
    it: the DFT-matmul front-end and the CNN-LSTM's LSTM as a plain scan (``lstm_scan``)."""
    module = create_model(model.config.model, len(model.label_names))
    if hasattr(module, "plain_lstm"):
        module = module.clone(plain_lstm=True)
    frontend = dataclasses.replace(model.spec.frontend, spectrum="dft")
    return view_averaged(model, semitones, module=module, frontend=frontend)


def onnx_function(target: LoadedModel | Committee) -> ProbabilitiesFn:
    """The model's (or committee's) waveform → probabilities function that the graph holds."""
    return exported_function(target, onnx_member)


def export_onnx(target: LoadedModel | Committee, out: str | Path) -> Path:
    """Write the model's (or committee's) waveform → probabilities graph to ``out`` (and
    ``out.json``)."""
    fn = onnx_function(target)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    samples = target.max_samples
    serde = logging.getLogger("onnx_ir.serde")  # warns of every untyped shape value it drops
    level = serde.level
    serde.setLevel(logging.ERROR)
    try:
        proto = to_onnx(
            fn,
            inputs=[
                jax.ShapeDtypeStruct(("B", samples), jnp.float32),
                jax.ShapeDtypeStruct(("B",), jnp.int32),
            ],
            model_name="ser_jax",
            input_names=list(INPUTS),
            output_names=[OUTPUT],
        )
    except Exception as err:  # jax2onnx raises whatever its failing plugin raised
        raise ConfigError(
            f"{target.source}: jax2onnx cannot convert this model ({describe(target)}): "
            f"{_first_line(err)}"
        ) from err
    finally:
        serde.setLevel(level)
    graph = untyped_batch(proto).SerializeToString()
    checked_graph(target, fn, graph)
    out.write_bytes(graph)
    meta = export_metadata(target, samples)
    meta["format"] = "onnx"
    Path(f"{out}.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out


def untyped_batch(proto: Any) -> Any:
    """``proto`` without the shapes jax2onnx declares for intermediate values of a symbolic
    size: it declares a batch of several views (``views * B`` rows, ``view_averaged``) as
    ``B``, which onnxruntime then trusts when it re-uses buffers; it infers them itself."""
    keep = [
        v
        for v in proto.graph.value_info
        if not any(d.dim_param for d in v.type.tensor_type.shape.dim)
    ]
    del proto.graph.value_info[:]
    proto.graph.value_info.extend(keep)
    return proto


def checked_graph(target: LoadedModel | Committee, fn: Any, graph: bytes) -> None:
    """Refuse a converted graph that onnxruntime cannot run, or whose probabilities of a
    test batch (two clips of noise, one full and one half the window) differ from the jitted
    function's by more than ``CHECK_TOLERANCE``: a converter's mistake never ships."""
    samples = target.max_samples
    audio = np.random.default_rng(0).standard_normal((2, samples)).astype(np.float32) * 0.1
    lengths = np.array([samples, samples // 2], np.int32)
    audio[1, samples // 2 :] = 0.0
    try:
        got = session_of(graph).run([OUTPUT], {"audio": audio, "lengths": lengths})[0]
    except Exception as err:  # onnxruntime's own errors have no common base class
        raise ConfigError(
            f"{target.source}: onnxruntime cannot run the graph jax2onnx made of this model "
            f"({describe(target)}): {_first_line(err)}"
        ) from err
    want = np.asarray(jax.jit(fn)(audio, lengths))
    diff = float(np.abs(got - want).max())
    if not diff <= CHECK_TOLERANCE:
        raise ConfigError(
            f"{target.source}: the ONNX graph of this model ({describe(target)}) gives "
            f"probabilities {diff:.1e} away from the model's (tolerance {CHECK_TOLERANCE})"
        )


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def session_of(graph: str | Path | bytes) -> onnxruntime.InferenceSession:
    """An onnxruntime CPU session of a graph (a path or its bytes), quiet below errors."""
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # jax2onnx leaves unused initialisers that ORT warns about
    source = graph if isinstance(graph, bytes) else str(graph)
    return onnxruntime.InferenceSession(
        source, sess_options=options, providers=["CPUExecutionProvider"]
    )


def load_onnx(path: str | Path) -> tuple[onnxruntime.InferenceSession, dict[str, Any]]:
    """An onnxruntime session of an exported graph (CPU) and its metadata."""
    return session_of(path), json.loads(Path(f"{path}.json").read_text())


def onnx_probabilities(
    session: onnxruntime.InferenceSession,
    meta: dict[str, Any],
    waves: list[np.ndarray],
    batch_size: int = 32,
) -> np.ndarray:
    """Score clips with an exported graph, by the package's evaluation policy (long clips as
    half-overlapping windows, averaged; ``ser_jax.evaluation.scoring``)."""
    return window_probabilities(
        lambda audio, lengths: session.run([OUTPUT], {"audio": audio, "lengths": lengths})[0],
        meta,
        waves,
        batch_size,
    )
