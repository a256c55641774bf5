"""A small synthetic speech-emotion corpus in Emo-DB's layout, for demos, tests and CI.

:func:`make_demo_corpus` writes ``SSTTTEV.wav`` files (speaker ``01``, ``02``, ...; Emo-DB's
text codes; emotion letters W L E A F T N) that the ``emodb`` corpus reader reads. Each file
is a source-filter imitation of voiced speech: harmonics of an f0 contour with a spectral
tilt, shaped by vowel formants (a different vowel per syllable), gated by a syllable-rate
amplitude envelope, with breath noise and consonant-like bursts. Classes differ the way the
acoustic literature says emotions do (pitch level, range and contour, tempo, energy,
tilt, breathiness, jitter); speakers differ in base pitch and vocal-tract length; every
utterance jitters all of these, so classes are learnable but not identical inside a class.
Output depends only on the arguments (one random stream per file, seeded from ``seed``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from ser_jax.data.corpora import EMODB_EMOTIONS
from ser_jax.data.manifest import EMOTIONS
from ser_jax.errors import ConfigError

EMODB_TEXTS: tuple[str, ...] = (
    "a01",
    "a02",
    "a04",
    "a05",
    "a07",
    "b01",
    "b02",
    "b03",
    "b09",
    "b10",
)
_LETTER = {emotion: letter for letter, emotion in EMODB_EMOTIONS.items()}

# (F1..F5) in Hz of an adult male voice (a, i, u, e, o); speakers scale them. F4 and F5
# keep energy above 3 kHz, as in real speech.
_VOWELS = np.array(
    [
        [730, 1090, 2440, 3400, 4200],
        [270, 2290, 3010, 3600, 4300],
        [300, 870, 2240, 3300, 4100],
        [530, 1840, 2480, 3500, 4250],
        [570, 840, 2410, 3350, 4150],
    ],
    dtype=np.float64,
)
_BANDWIDTHS = (80.0, 110.0, 160.0, 250.0, 300.0)


@dataclasses.dataclass(frozen=True)
class _Style:
    f0_scale: float  # times the speaker's base pitch
    range_st: float  # size of syllable pitch accents, semitones
    slope_st: float  # pitch change over the utterance, semitones
    tempo: float  # syllables per second
    energy_db: float  # level relative to neutral
    tilt: float  # harmonic k has amplitude k**-tilt
    breath: float  # noise relative to voice
    jitter: float  # relative f0 perturbation


_STYLES: dict[str, _Style] = {
    "anger": _Style(1.35, 5.0, -2.0, 5.0, 8.0, 0.3, 0.02, 0.020),
    "boredom": _Style(0.92, 1.5, -1.0, 3.0, -4.0, 1.0, 0.04, 0.005),
    "disgust": _Style(1.00, 3.0, -4.0, 3.4, 0.0, 0.8, 0.07, 0.010),
    "fear": _Style(1.50, 4.0, 1.0, 5.6, 2.0, 0.6, 0.10, 0.040),
    "happiness": _Style(1.30, 7.0, 2.0, 4.6, 5.0, 0.4, 0.03, 0.015),
    "sadness": _Style(0.90, 1.5, -2.0, 2.6, -6.0, 1.2, 0.08, 0.010),
    "neutral": _Style(1.00, 2.5, -1.5, 4.0, 0.0, 0.7, 0.03, 0.008),
}


def _speaker_voice(seed: int, speaker: int) -> tuple[float, float]:
    """(base f0 in Hz, formant scale): odd speakers male-like, even ones female-like."""
    rng = np.random.default_rng([seed, speaker, 7919])
    if speaker % 2:
        return float(rng.uniform(95, 135)), float(rng.uniform(0.95, 1.03))
    return float(rng.uniform(180, 230)), float(rng.uniform(1.12, 1.2))


def _smooth_noise(rng: np.random.Generator, n: int, rate_hz: float, sample_rate: int) -> np.ndarray:
    """Unit-variance noise varying at about ``rate_hz``, length ``n``."""
    knots = max(2, int(n / sample_rate * rate_hz) + 2)
    return np.interp(np.linspace(0, knots - 1, n), np.arange(knots), rng.standard_normal(knots))


def _formant_sos(formants: np.ndarray, sample_rate: int) -> np.ndarray:
    """Cascade of two-pole resonators (unit gain at DC) as second-order sections."""
    sos = []
    for f, bw in zip(formants, _BANDWIDTHS, strict=True):
        if f >= 0.45 * sample_rate:  # above what the sample rate can carry
            continue
        r = np.exp(-np.pi * bw / sample_rate)
        a = [1.0, -2 * r * np.cos(2 * np.pi * f / sample_rate), r * r]
        sos.append([sum(a), 0.0, 0.0, *a])
    return np.asarray(sos)


def synthesize_utterance(
    emotion: str,
    *,
    base_f0: float,
    formant_scale: float,
    seconds: float,
    sample_rate: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """One speech-like utterance, float32 ``(samples,)`` in [-1, 1]."""
    from scipy import signal  # 0.5 s to import: only when synthesising

    style = _STYLES[emotion]
    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate

    def jit(x: float, rel: float) -> float:
        return float(x * np.exp(rel * rng.standard_normal()))

    f0_level = base_f0 * jit(style.f0_scale, 0.05)
    accent = jit(style.range_st, 0.2)
    slope = style.slope_st + rng.normal(0, 1.0)
    tempo = jit(style.tempo, 0.1)
    energy_db = style.energy_db + rng.normal(0, 1.5)
    tilt = style.tilt + rng.normal(0, 0.1)

    # Syllables: onset times at the tempo, a vowel each, occasional pauses.
    start, stop = rng.uniform(0.05, 0.2), seconds - rng.uniform(0.05, 0.2)
    env = np.zeros((len(_VOWELS), n))
    burst_env = np.zeros(n)
    st = slope * (t / seconds - 0.5)
    pos = start
    while pos < stop - 0.08:
        period = rng.uniform(0.75, 1.25) / tempo
        length = min(period * rng.uniform(0.55, 0.8), stop - pos)
        if rng.random() > 0.1:  # else a pause
            i0, i1 = int(pos * sample_rate), int((pos + length) * sample_rate)
            shape = np.sin(np.linspace(0, np.pi, i1 - i0)) ** 1.5
            env[rng.integers(len(_VOWELS)), i0:i1] += shape * rng.uniform(0.6, 1.0)
            peak = rng.uniform(0.3, 1.0) * accent * rng.choice([1.0, 1.0, -0.5])
            st[i0:i1] += peak * np.sin(np.linspace(0, np.pi, i1 - i0))
            b = min(int(rng.uniform(0.01, 0.04) * sample_rate), i1 - i0)
            burst_env[i0 : i0 + b] += np.linspace(1, 0, b) * rng.uniform(0, 1)
        pos += period
    st += 12 * np.log2(1 + style.jitter * _smooth_noise(rng, n, 80, sample_rate))
    f0 = f0_level * 2 ** (st / 12)

    # Harmonic source below 0.45 * sample_rate, phase kept small for float32 accuracy.
    phase = np.mod(2 * np.pi * np.cumsum(f0) / sample_rate, 2 * np.pi).astype(np.float32)
    n_harm = max(1, int(0.45 * sample_rate / f0.max()))
    k = np.arange(1, n_harm + 1, dtype=np.float32)
    source = (k[:, None] ** np.float32(-tilt) * np.sin(k[:, None] * phase[None, :])).sum(0)

    voice = np.zeros(n)
    for v in np.flatnonzero(env.any(axis=1)):
        sos = _formant_sos(_VOWELS[v] * formant_scale, sample_rate)
        voice += env[v] * signal.sosfilt(sos, source)
    voice /= np.sqrt(np.mean(voice**2)) + 1e-12
    voiced = env.sum(0)
    noise = rng.standard_normal(n)
    breath = style.breath * jit(1.0, 0.3) * voiced * noise * 3
    burst = 0.5 * burst_env * np.diff(noise, prepend=0.0)
    floor = 10 ** (-55 / 20) * rng.standard_normal(n)
    x = voice + breath + burst
    x *= 0.06 * 10 ** (energy_db / 20) / (np.sqrt(np.mean(x**2)) + 1e-12)
    x += floor
    peak = np.abs(x).max()
    if peak > 0.95:
        x *= 0.95 / peak
    return x.astype(np.float32)


def make_demo_corpus(
    out_dir: str | os.PathLike,
    *,
    speakers: int = 4,
    utterances_per_class: int = 6,
    seconds: tuple[float, float] = (1.5, 3.0),
    sample_rate: int = 16000,
    seed: int = 0,
    emotions: Sequence[str] = EMOTIONS,
) -> Path:
    """Write ``speakers * len(emotions) * utterances_per_class`` WAV files into ``out_dir``.

    Names follow Emo-DB (``SSTTTEV.wav``), so ``load_manifest("emodb", out_dir)`` reads
    them; ``utterances_per_class`` is per speaker. Durations are uniform in ``seconds``.
    Returns ``out_dir``. 16-bit PCM; deterministic for given arguments.
    """
    unknown = [e for e in emotions if e not in _STYLES]
    if unknown:
        raise ConfigError(f"emotions {unknown} unknown to the demo corpus; known: {list(EMOTIONS)}")
    if not 1 <= speakers <= 99:
        raise ConfigError(f"speakers={speakers}: Emo-DB names have two digits (1..99)")
    if not 1 <= utterances_per_class <= len(EMODB_TEXTS) * 26:
        raise ConfigError(
            f"utterances_per_class={utterances_per_class}: between 1 and {len(EMODB_TEXTS) * 26}"
        )
    lo, hi = seconds
    if not 0 < lo <= hi:
        raise ConfigError(f"seconds={seconds}: need 0 < min <= max")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for s in range(1, speakers + 1):
        base_f0, formant_scale = _speaker_voice(seed, s)
        for emotion in emotions:
            c = EMOTIONS.index(emotion)
            for u in range(utterances_per_class):
                rng = np.random.default_rng([seed, s, c, u])
                text = EMODB_TEXTS[u % len(EMODB_TEXTS)]
                version = chr(ord("a") + u // len(EMODB_TEXTS))
                wave = synthesize_utterance(
                    emotion,
                    base_f0=base_f0,
                    formant_scale=formant_scale,
                    seconds=float(rng.uniform(lo, hi)),
                    sample_rate=sample_rate,
                    rng=rng,
                )
                name = f"{s:02d}{text}{_LETTER[emotion]}{version}.wav"
                sf.write(out / name, wave, sample_rate, subtype="PCM_16")
    return out
