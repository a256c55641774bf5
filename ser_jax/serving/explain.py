"""Why a model decided (``ser-jax explain``): integrated gradients over the log-mel input.

The explained function ``f`` is the probability a model (or a committee) gives one class for
one window of a recording, as a function of the window's log-mel ``L`` ``(frames, mel)``: the
log of its mel energies before any normalisation (``log_mel`` with ``normalize="none"``, no
cepstra, no descriptors). Every member's own input is computed from ``L`` inside the
differentiated function (``member_features``: cepstral coefficients, spectral descriptors,
normalisation, statistics, deltas, as ``ser_jax.frontend.features`` computes them), so a
committee's weighted mean probability is differentiable end to end through ``L``. What is
not a function of the log-mel is held fixed at the recording's own values: the pitch track
and the spectral descriptors (computed from the waveform), and a per-speaker model's log-mel
statistics (taken from the recording, as ``ser-jax predict`` takes them from its files).

The attribution (integrated gradients, Sundararajan, Taly & Yan 2017) of each time-mel cell is
``A = (L - L0) * integral over a in [0, 1] of grad f(L0 + a (L - L0))``, and ``sum(A) = f(L) -
f(L0)`` (completeness). The baseline ``L0`` is the clip's silence level: in each mel band, the
band's ``BASELINE_PERCENTILE``-th percentile over the clip's frames, constant over time. The
integral is the trapezoid rule over points of the straight path ``a`` in ``[0, 1]``
(``integrate_path``): ``--steps`` points to start with, half evenly spaced and half
log-spaced from ``1e-6`` (``initial_grid``), because an utterance-normalised network (each band
standardised over the clip) sees the same features for every ``a`` above about
``sqrt(1e-5 / band variance)``: its whole change happens at ``a < 0.01``, mostly within a factor
of two, which evenly spaced points would step over. Since ``f`` itself is known at every point,
the rule's miss on each interval is known too, and ``CHUNK`` points at a time go to the
intervals that miss most until ``sum(A)`` is within ``TOLERANCE`` (0.2 %) of ``f(L) - f(L0)``
(or ``REFINE_FACTOR`` times ``--steps`` points are spent; the gap is reported either way).

Scope: a recording longer than the model's window (``data.max_seconds``) is explained by its
first window; a committee's test-time warps (``committee.json`` ``tta_semitones``) are left
out, so ``f`` is the unwarped window's probability and can differ a little from what
``ser-jax predict`` prints. It hands on an :class:`Attribution` (the map, its per-band and
per-frame totals, ``f(L)``, ``f(L0)``), and over a corpus (``explain_corpus``) each class's
mean map over utterance position and mel band.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ser_jax.data.corpora import load_manifest
from ser_jax.data.pipeline import bucket_length
from ser_jax.errors import ConfigError, SerJaxError
from ser_jax.frontend.features import model_features
from ser_jax.frontend.logmel import FrontendConfig, dct_matrix, log_mel, mel_filterbank, normalize
from ser_jax.frontend.pitch import pitch_track
from ser_jax.models import create_model
from ser_jax.reports.figures import plot_attribution, plot_class_attributions
from ser_jax.serving.checkpointed import load_run
from ser_jax.serving.restore import LoadedModel
from ser_jax.serving.shipped import (
    DEFAULT_MODEL,
    load_shipped,
    shipped_members,
    shipped_rule,
    shipped_weights,
)

BASELINE_PERCENTILE = 5.0  # the silence level of a band: this percentile of its frames
DEFAULT_STEPS = 64  # points on the path from the baseline to the recording
SMALLEST_ALPHA = 1e-6  # where the log-spaced half of the path starts
CHUNK = 32  # path points differentiated in one compiled call
TOLERANCE = 0.002  # refine the path until sum(A) misses f(x) - f(baseline) by at most this
REFINE_FACTOR = 4  # ... or until it holds this many times --steps points
POSITIONS = 50  # utterance-position bins of the per-class maps (explain_corpus)
DESCRIPTOR_COUNT = 6  # frontend.descriptors: bands after the log-mel (logmel.DESCRIPTORS)


def initial_grid(steps: int) -> np.ndarray:
    """``steps`` points of the path from 0 to 1 to start from: half evenly spaced, half
    log-spaced from ``SMALLEST_ALPHA`` to the first even point (an utterance-normalised
    network changes only there, module docstring), sorted."""
    if steps < 8:
        raise ConfigError(f"--steps={steps}: integrated gradients need at least 8 points")
    even = np.linspace(0.0, 1.0, steps - steps // 2)  # includes 0 and 1
    logs = np.geomspace(SMALLEST_ALPHA, even[1], steps // 2 + 1)[:-1]
    return np.unique(np.concatenate([even, logs]))


def trapezoid_weights(alphas: np.ndarray) -> np.ndarray:
    """The trapezoid rule's weights on sorted points from 0 to 1 (summing to 1)."""
    half = np.diff(alphas) / 2
    weights = np.zeros_like(alphas)
    weights[:-1] += half
    weights[1:] += half
    return weights


def interval_errors(alphas: np.ndarray, values: np.ndarray, slopes: np.ndarray) -> np.ndarray:
    """Per interval of the path, ``|trapezoid of df/da - (f(end) - f(start))|``: how far
    the quadrature of the derivative misses the change of ``f`` it must add up to."""
    trapezoid = np.diff(alphas) * (slopes[:-1] + slopes[1:]) / 2
    return np.abs(trapezoid - np.diff(values))


def refinement(alphas: np.ndarray, errors: np.ndarray, count: int) -> np.ndarray:
    """New points: the middles of the ``count`` intervals with the largest ``errors``
    (geometric middles away from 0, where the points are log-spaced)."""
    worst = np.argsort(errors)[::-1][:count]
    worst = worst[errors[worst] > 0]
    lo, hi = alphas[worst], alphas[worst + 1]
    return np.where(lo > 0, np.sqrt(lo * hi), (lo + hi) / 2)


def integrate_path(
    evaluate: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    direction: np.ndarray,
    steps: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(alphas, f (points,), gradients (points, *direction.shape))`` on the straight path
    ``baseline + a * direction``, ``a`` from 0 to 1, where ``evaluate(alphas)`` gives f and its
    gradient: at the ``steps`` points of ``initial_grid``, then, while the trapezoid rule over
    the directional derivative misses f's change by more than ``TOLERANCE`` of it, at ``CHUNK``
    more points in the intervals that miss most (``refinement``), up to ``REFINE_FACTOR *
    steps`` points in all. Integrated gradients are then ``direction *
    trapezoid_weights(alphas) @ gradients``."""
    alphas, values = np.zeros(0), np.zeros(0)
    grads = np.zeros((0, *direction.shape), np.float32)
    new = initial_grid(steps)
    while len(new):
        f, g = evaluate(new)
        alphas = np.concatenate([alphas, new])
        values = np.concatenate([values, f])
        grads = np.concatenate([grads, g.astype(np.float32)])
        order = np.argsort(alphas)
        alphas, values, grads = alphas[order], values[order], grads[order]
        slopes = np.tensordot(grads.astype(np.float64), direction, axes=direction.ndim)
        change = values[-1] - values[0]
        gap = np.sum(np.diff(alphas) * (slopes[:-1] + slopes[1:]) / 2) - change
        budget = REFINE_FACTOR * steps - len(alphas)
        if abs(gap) <= TOLERANCE * max(abs(change), 1e-3) or budget <= 0:
            break
        new = refinement(alphas, interval_errors(alphas, values, slopes), min(CHUNK, budget))
    return alphas, values, grads


def raw_log_mel_settings(frontend: FrontendConfig) -> FrontendConfig:
    """The log-mel that is explained: ``frontend``'s mel energies, log-compressed, nothing
    more (no normalisation, cepstra, descriptors, deltas or pitch)."""
    return dataclasses.replace(
        frontend,
        normalize="none",
        mfcc=0,
        descriptors=False,
        deltas=0,
        pitch=False,
        clip_channel=False,
        spectrum="rfft",
    )


def member_features(
    log_mel_in: jax.Array,
    frame_lengths: jax.Array,
    fixed: dict[str, jax.Array],
    frontend: FrontendConfig,
    stats: tuple[jax.Array, jax.Array],
) -> jax.Array:
    """A model's clean features from the raw log-mel ``(batch, frames, mel)``: what
    ``log_mel`` makes of it (its cepstral coefficients, the ``fixed`` spectral descriptors
    beside them, the normalisation), then ``model_features`` (statistics, deltas, the
    ``fixed`` pitch track). Equal to the model's own front-end on the clean recording."""
    bands = log_mel_in
    if frontend.mfcc:
        dct = jnp.asarray(dct_matrix(frontend.n_mels, frontend.mfcc))
        bands = jnp.dot(bands, dct, precision=jax.lax.Precision.HIGHEST)
    if frontend.descriptors:
        bands = jnp.concatenate([bands, fixed["descriptors"]], axis=-1)
    bands = normalize(bands, frame_lengths, frontend.normalize)  # "utterance", or the mask
    return model_features(
        bands, frame_lengths, frontend=frontend, stats=stats, pitch=fixed.get("pitch")
    )


_COMPILED: dict[tuple[str, int, FrontendConfig], tuple[Callable[..., Any], Callable[..., Any]]] = {}


def member_functions(model: LoadedModel) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """``(probabilities, value_and_gradient)`` of a model over raw log-mels, compiled once per
    architecture and front-end (a model alone and as a committee member share them):
    ``probabilities(variables, log_mels (n, frames, mel), frame_lengths (n,), fixed)`` →
    ``(n, classes)``; ``value_and_gradient(..., label)`` → the probabilities and
    ``d probs[:, label] / d log_mels`` ``(n, frames, mel)``."""
    key = (model.config.model.to_json(sort_keys=True), len(model.label_names), model.spec.frontend)
    if key not in _COMPILED:
        network = create_model(model.config.model, len(model.label_names))
        frontend = model.spec.frontend

        def probabilities(variables, log_mels, frame_lengths, fixed):
            n = log_mels.shape[0]
            fixed = jax.tree.map(lambda v: jnp.broadcast_to(v, (n, *v.shape[1:])), fixed)
            stats = (variables.feature_stats["mean"], variables.feature_stats["std"])
            feats = member_features(log_mels, frame_lengths, fixed, frontend, stats)
            logits = network.apply(
                {"params": variables.params, "batch_stats": variables.batch_stats},
                feats,
                frame_lengths,
                train=False,
            )
            return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)

        def value_and_gradient(variables, log_mels, frame_lengths, fixed, label):
            probs, pullback = jax.vjp(
                lambda x: probabilities(variables, x, frame_lengths, fixed), log_mels
            )
            (grads,) = pullback(jax.nn.one_hot(jnp.full(probs.shape[:1], label), probs.shape[-1]))
            return probs, grads

        _COMPILED[key] = (jax.jit(probabilities), jax.jit(value_and_gradient))
    return _COMPILED[key]


_raw_log_mel = jax.jit(log_mel, static_argnums=2)
_pitch_track = jax.jit(pitch_track, static_argnums=2)


@dataclasses.dataclass(frozen=True)
class Window:
    """One window of a recording, ready to differentiate: its samples ``wave``, its raw
    log-mel ``(1, frames, mel)`` (padded as scoring pads it) with ``frame_length`` ``(1,)``
    valid frames, the baseline ``(mel,)``, and each member's fixed inputs (``_fixed_inputs``)
    and variables (a per-speaker model's with the recording's own statistics)."""

    wave: np.ndarray
    log_mel: np.ndarray
    frame_length: np.ndarray
    baseline: np.ndarray
    fixed: tuple[dict[str, np.ndarray], ...]
    variables: tuple[Any, ...]

    @property
    def frames(self) -> int:
        return int(self.frame_length[0])


@dataclasses.dataclass(frozen=True)
class Attribution:
    """The integrated gradients of one class's probability over a window's log-mel."""

    path: str
    label_names: tuple[str, ...]
    label: int  # the class explained
    probs: np.ndarray  # (classes,) f at the recording, every class
    f_baseline: float  # the class's probability at the baseline
    log_mel: np.ndarray  # (frames, mel) the raw log-mel of the valid frames
    baseline: np.ndarray  # (mel,)
    attribution: np.ndarray  # (frames, mel)
    wave: np.ndarray  # the window explained
    sample_rate: int
    frame_seconds: float  # hop between frames
    band_hz: np.ndarray  # (mel,) centre frequency of each band
    points: int  # points of the path the integral took

    @property
    def f_x(self) -> float:
        return float(self.probs[self.label])

    @property
    def predicted(self) -> str:
        return self.label_names[int(np.argmax(self.probs))]

    @property
    def band_totals(self) -> np.ndarray:
        return self.attribution.sum(axis=0)

    @property
    def frame_totals(self) -> np.ndarray:
        return self.attribution.sum(axis=1)

    @property
    def total(self) -> float:
        return float(self.attribution.sum())

    @property
    def completeness_gap(self) -> float:
        """``|sum(A) - (f(x) - f(baseline))|`` relative to ``|f(x) - f(baseline)|``."""
        change = self.f_x - self.f_baseline
        return abs(self.total - change) / max(abs(change), 1e-12)

    def summary(self) -> dict[str, Any]:
        """What ``--json`` prints: the class, f(x), f(baseline), the sum of attributions and
        the per-band and per-frame totals."""
        return {
            "file": self.path,
            "label": self.label_names[self.label],
            "predicted": self.predicted,
            "probabilities": {
                n: round(float(p), 6) for n, p in zip(self.label_names, self.probs, strict=True)
            },
            "f_x": self.f_x,
            "f_baseline": self.f_baseline,
            "attribution_sum": self.total,
            "completeness_gap": self.completeness_gap,
            "points": self.points,
            "baseline": f"per-band {BASELINE_PERCENTILE:g}th percentile of the clip's log-mel",
            "seconds": round(len(self.wave) / self.sample_rate, 4),
            "frame_seconds": self.frame_seconds,
            "band_hz": [round(float(f), 1) for f in self.band_hz],
            "band_totals": [float(v) for v in self.band_totals],
            "frame_totals": [float(v) for v in self.frame_totals],
        }


class Explainer:
    """A model, or a committee of models reading the same log-mel (their weighted mean
    probability, ``weights`` None: alike), as a differentiable function of a window's raw
    log-mel (module docstring)."""

    def __init__(
        self,
        models: Sequence[LoadedModel],
        weights: Sequence[float] | None = None,
        *,
        steps: int = DEFAULT_STEPS,
    ):
        if not models:
            raise ConfigError("explain: no model to explain")
        self.models = tuple(models)
        self.frontend = _shared_log_mel(self.models)
        w = np.ones(len(models)) if weights is None else np.asarray(weights, np.float64)
        if w.shape != (len(models),) or (w < 0).any() or w.sum() <= 0:
            raise ConfigError(f"weights {list(w)}: one weight >= 0 a model, not all 0")
        self.weights = w / w.sum()
        self.steps = int(steps)
        initial_grid(self.steps)  # refuses too few steps now

    @property
    def first(self) -> LoadedModel:
        return self.models[0]

    @property
    def label_names(self) -> tuple[str, ...]:
        return self.first.label_names

    @functools.cached_property
    def band_hz(self) -> np.ndarray:
        """Each mel band's centre frequency (its filter's peak)."""
        bins = mel_filterbank(self.frontend).argmax(axis=0)
        return bins * self.frontend.sample_rate / self.frontend.n_fft

    def load(self, path: str | Path) -> np.ndarray:
        """A recording as the models read it; an unreadable file is refused in one line
        naming it and the cause."""
        try:
            return self.first.load_audio(path)
        except SerJaxError as err:
            raise ConfigError(f"explain: cannot read {path}: {_cause(err)}") from err

    def window(self, wave: np.ndarray) -> Window:
        """``wave`` (at most one window) padded as scoring pads it, with its raw log-mel, its
        baseline and what each member holds fixed."""
        spec = self.first.spec
        length = bucket_length(len(wave), spec.bucket_samples, spec.max_samples)
        audio = np.zeros((1, length), np.float32)
        audio[0, : len(wave)] = wave
        lengths = np.array([len(wave)], np.int32)
        raw, flen = _raw_log_mel(audio, lengths, self.frontend)
        raw, flen = np.asarray(raw), np.asarray(flen)
        baseline = np.percentile(raw[0, : int(flen[0])], BASELINE_PERCENTILE, axis=0)
        fixed, variables = [], []
        for model in self.models:
            fixed.append(_fixed_inputs(model.spec.frontend, audio, lengths))
            own = model.speaker_variables([wave], speaker_bn=False) if model.per_speaker else None
            variables.append(own if own is not None else model.variables)
        return Window(wave, raw, flen, baseline.astype(np.float32), tuple(fixed), tuple(variables))

    def _members(self, window: Window):
        """Each member with its weight, fixed inputs and variables (weight 0 left out)."""
        for model, w, fixed, variables in zip(
            self.models, self.weights, window.fixed, window.variables, strict=True
        ):
            if w > 0:
                yield model, w, fixed, variables

    def value_and_gradient(
        self, window: Window, log_mels: np.ndarray, label: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(probs (n, classes), gradients (n, frames, mel))`` of the (committee's) class
        ``label`` probability at ``log_mels`` ``(n, frames, mel)`` (``window``'s shape)."""
        flen = np.repeat(window.frame_length, len(log_mels))
        probs, grads = 0.0, 0.0
        for model, w, fixed, variables in self._members(window):
            p, g = member_functions(model)[1](variables, log_mels, flen, fixed, label)
            probs, grads = probs + w * np.asarray(p), grads + w * np.asarray(g)
        return probs, grads

    def probabilities(self, window: Window, log_mels: np.ndarray) -> np.ndarray:
        """``(n, classes)``: the (committee's) probabilities at ``log_mels`` ``(n, frames,
        mel)``, ``CHUNK`` at a time (one compiled shape)."""
        out = []
        for start in range(0, len(log_mels), CHUNK):
            part = log_mels[start : start + CHUNK]
            filled = np.concatenate([part, np.repeat(part[-1:], CHUNK - len(part), axis=0)])
            flen = np.repeat(window.frame_length, CHUNK)
            probs = 0.0
            for model, w, fixed, variables in self._members(window):
                probs = probs + w * np.asarray(
                    member_functions(model)[0](variables, filled, flen, fixed)
                )
            out.append(probs[: len(part)])
        return np.concatenate(out)

    def label_index(self, label: str | None, probs: np.ndarray) -> int:
        """The class to explain: ``label`` (refused in one line when the model has no such
        class), else the predicted one."""
        if label is None:
            return int(np.argmax(probs))
        if label not in self.label_names:
            raise ConfigError(
                f"--label={label!r}: not a class of the model ({', '.join(self.label_names)})"
            )
        return self.label_names.index(label)

    def integrate(self, window: Window, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``integrate_path`` of class ``index`` from the baseline to the window's log-mel,
        ``CHUNK`` points of the path in each compiled call."""
        x = window.log_mel[0]
        x0 = np.broadcast_to(window.baseline, x.shape)

        def evaluate(alphas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            values, grads = [], []
            for start in range(0, len(alphas), CHUNK):
                part = alphas[start : start + CHUNK]
                filled = np.pad(part, (0, CHUNK - len(part)), mode="edge")  # one shape
                points = (x0 + filled[:, None, None] * (x - x0)).astype(np.float32)
                probs, g = self.value_and_gradient(window, points, index)
                values.append(probs[: len(part), index])
                grads.append(g[: len(part)])
            return np.concatenate(values), np.concatenate(grads)

        return integrate_path(evaluate, x - x0, self.steps)

    def explain_wave(
        self, wave: np.ndarray, label: str | None = None, path: str = ""
    ) -> Attribution:
        """The integrated gradients of class ``label`` (None: the predicted class) over the
        log-mel of ``wave``'s first window."""
        window = self.window(wave[: self.first.max_samples])
        x = window.log_mel[0]
        probs_x = self.probabilities(window, window.log_mel)[0]
        index = self.label_index(label, probs_x)
        alphas, values, grads = self.integrate(window, index)
        mean_gradient = np.tensordot(trapezoid_weights(alphas), grads.astype(np.float64), axes=1)
        frames = window.frames
        attribution = ((x - window.baseline) * mean_gradient)[:frames]
        return Attribution(
            path=str(path),
            label_names=self.label_names,
            label=index,
            probs=probs_x,
            f_baseline=float(values[0]),
            log_mel=x[:frames],
            baseline=window.baseline,
            attribution=attribution.astype(np.float32),
            wave=window.wave,
            sample_rate=self.frontend.sample_rate,
            frame_seconds=self.frontend.hop_length / self.frontend.sample_rate,
            band_hz=self.band_hz,
            points=len(alphas),
        )

    def explain(self, path: str | Path, label: str | None = None) -> Attribution:
        """``explain_wave`` of the recording at ``path`` (a longer one than the window: its
        first window, said on stderr)."""
        wave = self.load(path)
        if len(wave) > self.first.max_samples:
            rate = self.frontend.sample_rate
            print(
                f"{path}: {len(wave) / rate:.1f} s, longer than the model's window: its first "
                f"{self.first.max_samples / rate:g} s explained",
                file=sys.stderr,
            )
        return self.explain_wave(wave, label, str(path))


def _cause(err: SerJaxError) -> str:
    cause = getattr(err, "cause", None)
    return str(cause) if cause else str(err)


def _fixed_inputs(frontend: FrontendConfig, audio: np.ndarray, lengths: np.ndarray) -> dict:
    """What a member reads beside the log-mel, computed from the waveform and held fixed:
    its spectral descriptors ``(1, frames, 6)`` and pitch track ``(1, frames, 3)``."""
    fixed = {}
    if frontend.descriptors:
        raw = dataclasses.replace(frontend, normalize="none", clip_channel=False)
        fixed["descriptors"] = np.asarray(_raw_log_mel(audio, lengths, raw)[0])[
            ..., -DESCRIPTOR_COUNT:
        ]
    if frontend.pitch:
        fixed["pitch"] = np.asarray(_pitch_track(audio, lengths, frontend))
    return fixed


def _shared_log_mel(models: Sequence[LoadedModel]) -> FrontendConfig:
    """The raw log-mel every model reads; refused, naming the two models, when they read
    different ones (or different audio: rate, window, trimming)."""
    first = models[0]

    def reads(m: LoadedModel) -> tuple[Any, ...]:
        s = m.spec
        return (raw_log_mel_settings(s.frontend), s.max_samples, s.bucket_samples, s.trim_silence)

    for other in models[1:]:
        if reads(other) != reads(first):
            raise ConfigError(
                f"explain: {other.source} and {first.source} read different log-mels (or "
                "windows): a committee is explained through one shared log-mel"
            )
        if other.label_names != first.label_names:
            raise ConfigError(
                f"explain: {other.source}'s classes differ from {first.source}'s; a committee "
                "needs the same classes"
            )
    return raw_log_mel_settings(first.spec.frontend)


def load_explainer(
    model_name: str | None = None, run_dir: str | None = None, *, steps: int = DEFAULT_STEPS
) -> tuple[Explainer, str]:
    """``(explainer, its name)`` of shipped models (``model_name``: a model, a committee, or
    several comma-separated; None: the default) or run directories (``run_dir``, comma-
    separated: their mean). A shipped committee keeps its own weights; one that combines
    its members other than by their mean is refused."""
    runs = [r for r in (run_dir or "").split(",") if r]
    if runs and model_name:
        raise ConfigError(f"--run={run_dir} and --model={model_name}: give one of them")
    if runs:
        return Explainer([load_run(r) for r in runs], steps=steps), ",".join(runs)
    names = [n for n in (model_name or DEFAULT_MODEL).split(",") if n]
    weights = None
    if len(names) == 1:
        rule = shipped_rule(names[0])
        if rule != "mean":
            raise ConfigError(
                f"--model={names[0]}: its members' probabilities combine by {rule!r}; explain "
                "follows a committee's weighted mean probability only"
            )
        weights = shipped_weights(names[0])
    models = [load_shipped(m) for n in names for m in shipped_members(n)]
    models, weights, left_out = differentiable_members(models, weights)
    label = ",".join(names) + (f" without {', '.join(left_out)}" if left_out else "")
    return Explainer(models, weights, steps=steps), label


def differentiable_members(
    models: Sequence[Any], weights: Sequence[float] | None
) -> tuple[list[LoadedModel], list[float] | None, list[str]]:
    """A committee's JAX members and their weights, and the names of those left out: a
    member outside JAX (openSMILE's features, ``ser_jax.classical``) has no gradient over the
    log-mel, so the explanation follows the weighted mean of the others (a warning says so);
    none left is refused."""
    w = [1.0] * len(models) if weights is None else list(weights)
    kept = [(m, x) for m, x in zip(models, w, strict=True) if isinstance(m, LoadedModel)]
    left_out = [Path(str(m.source)).name for m in models if not isinstance(m, LoadedModel)]
    if not kept:
        raise ConfigError("explain: no member of this model is a JAX function of the log-mel")
    if left_out:
        warnings.warn(
            f"explain: {', '.join(left_out)} computes its features outside JAX (no gradient "
            "over the log-mel): the explanation follows the other members' weighted mean",
            stacklevel=2,
        )
    return [m for m, _ in kept], (None if weights is None else [x for _, x in kept]), left_out


def _writable(out: str | None, what: str) -> Path:
    """``--out``, checked before any work: given, and in a folder that exists."""
    if not out:
        raise ConfigError(f"--out: explain needs the PNG to write ({what})")
    path = Path(out)
    if not path.parent.is_dir():
        raise ConfigError(f"--out={out}: the folder {path.parent} does not exist")
    return path


def explain_file(
    explainer: Explainer, path: str, out: str | Path, *, label: str | None = None, name: str = ""
) -> Attribution:
    """Explain one recording and draw it (``plot_attribution``) to ``out``."""
    att = explainer.explain(path, label)
    title = (
        f"{Path(path).name} · {name or 'model'} · explained class: "
        f"{att.label_names[att.label]} (predicted: {att.predicted})\n"
        f"f(x) = {att.f_x:.3f}, f(baseline) = {att.f_baseline:.3f}, sum of attributions = "
        f"{att.total:.3f} · red raises the probability, blue lowers it"
    )
    plot_attribution(
        att.wave,
        att.sample_rate,
        att.log_mel,
        att.attribution,
        att.frame_seconds,
        att.band_hz,
        Path(out),
        title=title,
    )
    return att


def position_map(attribution: np.ndarray, positions: int = POSITIONS) -> np.ndarray:
    """``(frames, mel)`` → ``(positions, mel)``: the attribution summed into equal bins of
    utterance position (each frame's share of a bin by overlap), so utterances of any length
    line up and every bin's total is its part of the utterance's total."""
    frames = len(attribution)
    edges = np.linspace(0.0, frames, positions + 1)
    starts, ends = np.arange(frames), np.arange(1, frames + 1)
    overlap = np.clip(
        np.minimum(ends[None, :], edges[1:, None]) - np.maximum(starts[None, :], edges[:-1, None]),
        0.0,
        None,
    )
    return overlap @ attribution


def pick_per_class(utts: Sequence[Any], per_class: int | None) -> list[Any]:
    """``per_class`` utterances of each label (None or 0: all), evenly spread over each
    label's files in name order (so over speakers)."""
    if not per_class:
        return list(utts)
    out = []
    for label in sorted({u.label for u in utts}):
        group = [u for u in utts if u.label == label]
        take = np.linspace(0, len(group) - 1, min(per_class, len(group))).round().astype(int)
        out += [group[i] for i in sorted(set(take))]
    return out


def explain_corpus(
    explainer: Explainer,
    data: str,
    out: str | Path,
    *,
    corpus: str = "emodb",
    per_class: int | None = None,
    name: str = "",
) -> dict[str, Any]:
    """Each file's labelled class explained (its own label, from the corpus reader), the maps
    summed into utterance-position bins (``position_map``) and averaged per class: one panel
    a class (``plot_class_attributions``) in ``out``. Returns per class the files, the mean
    f(x), f(baseline) and completeness gap, and the mean per-band and per-position totals."""
    utts, skipped = load_manifest(corpus, data)
    for s in skipped:
        print(f"skipped {s.path}: {s.reason}", file=sys.stderr)
    unknown = sorted({u.label for u in utts} - set(explainer.label_names))
    if unknown:
        raise ConfigError(f"--data={data}: labels {unknown} are not classes of the model")
    maps: dict[str, list[np.ndarray]] = {}
    rows: dict[str, list[tuple[float, float, float]]] = {}
    for utt in pick_per_class(utts, per_class):
        att = explainer.explain(utt.path, utt.label)
        maps.setdefault(utt.label, []).append(position_map(att.attribution))
        rows.setdefault(utt.label, []).append((att.f_x, att.f_baseline, att.completeness_gap))
    order = [n for n in explainer.label_names if n in maps]
    panels = [(n, len(maps[n]), np.mean(maps[n], axis=0)) for n in order]
    files = sum(len(m) for m in maps.values())
    title = (
        f"{name or 'model'}: mean integrated gradients of each file's own class over "
        f"{files} files of {Path(data).name} (baseline: each clip's silence level)"
    )
    plot_class_attributions(panels, explainer.band_hz, Path(out), title=title)
    return {
        label: {
            "files": count,
            "f_x": float(np.mean([r[0] for r in rows[label]])),
            "f_baseline": float(np.mean([r[1] for r in rows[label]])),
            "completeness_gap": float(np.mean([r[2] for r in rows[label]])),
            "band_totals": [float(v) for v in mean_map.sum(axis=0)],
            "position_totals": [float(v) for v in mean_map.sum(axis=1)],
        }
        for label, count, mean_map in panels
    }


def explain_command(
    paths: Sequence[str],
    *,
    out: str | None,
    data: str | None = None,
    corpus: str = "emodb",
    label: str | None = None,
    model_name: str | None = None,
    run_dir: str | None = None,
    steps: int = DEFAULT_STEPS,
    per_class: int | None = None,
    as_json: bool = False,
) -> dict[str, Any]:
    """``ser-jax explain FILE --out PNG`` (one recording) or ``--data DIR --out PNG`` (each
    class's mean over a corpus); ``as_json``: print the totals as JSON instead of a summary."""
    if data and paths:
        raise ConfigError(f"explain: --data={data} or audio files ({', '.join(paths)}), not both")
    if not data and len(paths) != 1:
        got = f"got {len(paths)}: {', '.join(paths)}" if paths else "got none"
        raise ConfigError(
            f"explain takes one audio file ({got}); --json prints the totals (> FILE.json)"
        )
    png = _writable(out, "the corpus's class panels" if data else "the recording's map")
    explainer, name = load_explainer(model_name, run_dir, steps=steps)
    if label is not None:
        explainer.label_index(label, np.zeros(len(explainer.label_names)))  # refused early
    if data:
        result = explain_corpus(explainer, data, png, corpus=corpus, per_class=per_class, name=name)
        summary = {"model": name, "data": data, "classes": result}
        lines = [
            f"{k:<10} {v['files']:>4} files  f(x) {v['f_x']:.3f}  f(baseline) "
            f"{v['f_baseline']:.3f}  completeness gap {100 * v['completeness_gap']:.2f} %"
            for k, v in result.items()
        ]
    else:
        att = explain_file(explainer, paths[0], png, label=label, name=name)
        summary = {"model": name, **att.summary()}
        lines = [
            f"{Path(paths[0]).name}: class {summary['label']} (predicted {att.predicted}), "
            f"f(x) {att.f_x:.4f}, f(baseline) {att.f_baseline:.4f}, sum of attributions "
            f"{att.total:.4f} (completeness gap {100 * att.completeness_gap:.2f} %)"
        ]
    if as_json:
        print(json.dumps(summary, indent=2))
        print(f"wrote {png}", file=sys.stderr)
    else:
        print("\n".join([*lines, f"wrote {png}"]))
    return summary
