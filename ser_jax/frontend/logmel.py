"""On-device log-mel front-end: padded waveforms ``(batch, samples)`` → ``(batch, frames, mel)``.

Pure ``jax.numpy`` under ``jit`` with a static, hashable :class:`FrontendConfig`. It matches
``librosa.feature.melspectrogram`` (+ ``np.log`` / ``librosa.power_to_db``) on each unpadded clip
(float32; see ``tests/test_frontend.py`` for the measured tolerance) and hands on the features
plus the number of valid frames per example, which the model uses to ignore padding.

Padding never leaks: every example is framed from its own true length (samples at or after
``length`` read as zero, as librosa's zero centre-padding does, or are reflected at the true end
for ``pad_mode="reflect"``), statistics use valid frames only, and padded frames are 0.

Speed (CPU): frames are gathered straight from the unpadded buffer with the window folded in,
one batched ``rfft``, ``|X|**2``, one mel matmul over the bins the filterbank actually uses. On
CPU the batch is processed in equal blocks of about ``_CPU_BLOCK_FRAMES`` frames (``lax.map``):
the intermediates then stay in cache instead of streaming ~60 MB through memory per batch,
worth ~2x there. Other backends process the whole batch at once. Measured alternatives that
lost on the 2-core CPU: a DFT as a real matmul (also with the window's even/odd symmetry
folded in, 2x fewer flops), a strided convolution, framing by reshaped hop-sized chunks, two
real frames packed into one complex FFT. The FFT itself is about half of the time.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ser_jax.errors import ConfigError
from ser_jax.settings import as_bool, as_int, from_section, optional_float

_WINDOWS = ("hann", "hamming")
_PAD_MODES = ("constant", "reflect")
_MEL_SCALES = ("slaney", "htk")
_MEL_NORMS = ("slaney", None)
_LOGS = ("log", "db", "none")
_SPECTRA = ("rfft", "dft")
_NORMALIZE = ("utterance", "dataset", "speaker", "none")
_NORM_EPS = 1e-5  # variance floor of the utterance normalisation (constant bands → 0)
_CPU_BLOCK_FRAMES = 2048  # frames per lax.map block on CPU (cache-sized intermediates)


@dataclasses.dataclass(frozen=True)
class FrontendConfig:
    """Static front-end settings (hashable: usable as a ``jit`` static argument).

    Defaults follow librosa 0.11's ``melspectrogram`` (zero centre padding, periodic window
    centred in ``n_fft``, Slaney mel scale and area normalisation).
    """

    sample_rate: int = 16000
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    window: str = "hann"
    center: bool = True
    pad_mode: str = "constant"
    power: float = 2.0
    n_mels: int = 64
    fmin: float = 0.0
    fmax: float | None = None
    mel_scale: str = "slaney"
    mel_norm: str | None = "slaney"
    log: str = "log"
    log_floor: float = 1e-6
    top_db: float | None = 80.0
    normalize: str = "utterance"
    deltas: int = 0  # extra channels: 1 = + delta, 2 = + delta and delta-delta
    delta_width: int = 9  # frames of the Savitzky-Golay window (librosa.feature.delta's width)
    pitch: bool = False  # + 3 channels: voicing, log-F0, F0 contour (ser_jax.frontend.pitch)
    # False: leave out the log-F0 channel (each speaker's own pitch level): voicing and contour
    pitch_level: bool = True
    # With normalize "dataset" or "speaker": + the clip-normalised log-mel as one more channel
    clip_channel: bool = False
    pitch_fmin: float = 60.0  # Hz, the lowest F0 searched
    pitch_fmax: float = 500.0  # Hz, the highest F0 searched
    # > 0: the first ``mfcc`` cepstral coefficients (orthonormal DCT-II of the log-mel, as
    # librosa.feature.mfcc) replace the mel bands
    mfcc: int = 0
    # + 6 spectral descriptors per frame as more bands (``DESCRIPTORS``, ``descriptors``)
    descriptors: bool = False
    # How the power spectrum is computed: "rfft" (jnp.fft, the default) or "dft" (two matmuls
    # with cosine and sine bases: no complex values, for converters such as ONNX's; equal
    # within float32 rounding, slower on CPU). Not a config setting: ``ser-jax export
    # --format onnx`` sets it on the model's front-end.
    spectrum: str = "rfft"

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> ConfigError:
            return ConfigError(f"frontend.{name}={getattr(self, name)!r}: {why}")

        for name in ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels", "delta_width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise bad(name, "must be a positive integer")
        if self.win_length > self.n_fft:
            raise bad("win_length", f"must be <= n_fft ({self.n_fft})")
        if self.window not in _WINDOWS:
            raise bad("window", f"must be one of {_WINDOWS}")
        if self.pad_mode not in _PAD_MODES:
            raise bad("pad_mode", f"must be one of {_PAD_MODES}")
        if not isinstance(self.center, bool):
            raise bad("center", "must be true or false")
        if self.power not in (1.0, 2.0):
            raise bad("power", "must be 1.0 (magnitude) or 2.0 (power)")
        nyquist = self.sample_rate / 2
        if not 0.0 <= self.fmin < nyquist:
            raise bad("fmin", f"must be in [0, sample_rate/2={nyquist})")
        if self.fmax is not None and not self.fmin < self.fmax <= nyquist:
            raise bad("fmax", f"must be in (fmin={self.fmin}, sample_rate/2={nyquist}] or None")
        if self.mel_scale not in _MEL_SCALES:
            raise bad("mel_scale", f"must be one of {_MEL_SCALES}")
        if self.mel_norm not in _MEL_NORMS:
            raise bad("mel_norm", f"must be one of {_MEL_NORMS}")
        if self.log not in _LOGS:
            raise bad("log", f"must be one of {_LOGS}")
        if not self.log_floor > 0:
            raise bad("log_floor", "must be > 0")
        if self.top_db is not None and not self.top_db >= 0:
            raise bad("top_db", "must be >= 0 or None")
        if self.normalize not in _NORMALIZE:
            raise bad("normalize", f"must be one of {_NORMALIZE}")
        if self.spectrum not in _SPECTRA:
            raise bad("spectrum", f"must be one of {_SPECTRA}")
        if self.deltas not in (0, 1, 2):
            raise bad("deltas", "must be 0, 1 (delta) or 2 (delta and delta-delta)")
        if self.delta_width < 3 or self.delta_width % 2 == 0:
            raise bad("delta_width", "must be an odd integer >= 3")
        if not isinstance(self.pitch, bool):
            raise bad("pitch", "must be true or false")
        if not isinstance(self.pitch_level, bool):
            raise bad("pitch_level", "must be true or false")
        if not isinstance(self.clip_channel, bool):
            raise bad("clip_channel", "must be true or false")
        if self.clip_channel and self.normalize not in ("dataset", "speaker"):
            raise bad(
                "clip_channel",
                f"needs normalize='dataset' or 'speaker' (normalize={self.normalize!r} leaves "
                "nothing beside the clip-normalised log-mel)",
            )
        if isinstance(self.mfcc, bool) or not isinstance(self.mfcc, int | np.integer):
            raise bad("mfcc", "must be an integer (0: the log-mel bands themselves)")
        if not 0 <= self.mfcc <= self.n_mels:
            raise bad("mfcc", f"must be in 0..n_mels={self.n_mels} (coefficients of the log-mel)")
        if not isinstance(self.descriptors, bool):
            raise bad("descriptors", "must be true or false")
        if self.pitch and not self.center:
            raise bad("pitch", "needs center=True (pitch frames share the log-mel's centres)")
        if not 0 < self.pitch_fmin < self.pitch_fmax <= nyquist:
            raise bad("pitch_fmin", f"must be in (0, pitch_fmax={self.pitch_fmax})")
        longest = min(0.04 * self.sample_rate - 2, self.sample_rate / self.pitch_fmin)
        if self.pitch and longest - self.sample_rate / self.pitch_fmax < 2:
            raise bad("pitch_fmax", "leaves no period to search in the 40 ms pitch window")

    @classmethod
    def from_config(cls, cfg: Any) -> FrontendConfig:
        """From an ``ml_collections.ConfigDict`` or a mapping; unknown keys raise ConfigError."""
        return from_section(cls, cfg, "frontend", _CONVERTERS, str)

    @property
    def n_freq(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def n_bands(self) -> int:
        """Features per frame and channel: the mel bands (or ``mfcc`` coefficients), then the
        spectral descriptors."""
        return (self.mfcc or self.n_mels) + (len(DESCRIPTORS) if self.descriptors else 0)

    @property
    def channels(self) -> int:
        """Input channels of the features: log-mel, its deltas, the clip-normalised log-mel,
        the pitch track's three (two without the log-F0 level)."""
        pitch = (3 if self.pitch_level else 2) if self.pitch else 0
        return 1 + self.deltas + int(self.clip_channel) + pitch


_CONVERTERS = {
    **dict.fromkeys(
        (
            "sample_rate",
            "n_fft",
            "win_length",
            "hop_length",
            "n_mels",
            "deltas",
            "delta_width",
            "mfcc",
        ),
        as_int,
    ),
    **dict.fromkeys(("power", "fmin", "log_floor", "pitch_fmin", "pitch_fmax"), float),
    **dict.fromkeys(("fmax", "top_db"), optional_float),
    "center": as_bool,
    "pitch": as_bool,
    "pitch_level": as_bool,
    "clip_channel": as_bool,
    "descriptors": as_bool,
    "mel_norm": lambda v: None if v in (None, "none", "None", "") else str(v),
}


# --------------------------------------------------------------------------------------------
# Frame counts and masks
# --------------------------------------------------------------------------------------------


def num_frames(num_samples: Any, cfg: FrontendConfig) -> Any:
    """Frames librosa's STFT gives for ``num_samples`` samples (python int or int array).

    ``center=True``: ``1 + (n + 2*(n_fft//2) - n_fft) // hop``; ``center=False``:
    ``1 + (n - n_fft) // hop``, 0 when the clip is shorter than ``n_fft``.
    """
    extra = 2 * (cfg.n_fft // 2) - cfg.n_fft if cfg.center else -cfg.n_fft
    if isinstance(num_samples, int | np.integer):
        return max(0, 1 + (int(num_samples) + extra) // cfg.hop_length)
    n = jnp.asarray(num_samples).astype(jnp.int32)
    return jnp.maximum(0, 1 + floor_div(n + extra, cfg.hop_length)).astype(jnp.int32)


def floor_div(x: jax.Array, d: int) -> jax.Array:
    """``x // d`` for an int array and a positive int ``d``, exactly, without the remainder
    (``lax.rem``) that jnp's floor division computes: jax2onnx cannot lower that with a
    symbolic batch size (``ser-jax export --format onnx``)."""
    q = jax.lax.div(x, jnp.asarray(d, x.dtype))  # rounds toward 0
    return jnp.where((x < 0) & (q * d != x), q - 1, q)


def frame_lengths(lengths: jax.Array, cfg: FrontendConfig) -> jax.Array:
    """``(batch,)`` int32 valid frames: librosa's frame count for each true length."""
    return num_frames(jnp.asarray(lengths), cfg)


def frame_mask(frame_lengths: jax.Array, num_frames: int) -> jax.Array:
    """``(batch, frames)`` bool, True on valid frames."""
    return jnp.arange(num_frames)[None, :] < jnp.asarray(frame_lengths)[:, None]


# --------------------------------------------------------------------------------------------
# Window and mel filterbank (numpy float64 → float32 constants; warped version in jnp)
# --------------------------------------------------------------------------------------------


def window(cfg: FrontendConfig) -> np.ndarray:
    """``(n_fft,)`` float32 periodic window of ``win_length`` centred in ``n_fft`` (librosa)."""
    n = np.arange(cfg.win_length)
    a0 = 0.5 if cfg.window == "hann" else 0.54
    w = a0 - (1.0 - a0) * np.cos(2.0 * np.pi * n / cfg.win_length)
    left = (cfg.n_fft - cfg.win_length) // 2
    out = np.zeros(cfg.n_fft)
    out[left : left + cfg.win_length] = w
    return out.astype(np.float32)


def _hz_to_mel(f: np.ndarray, htk: bool) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + f / 700.0)
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(
        f >= min_log_hz,
        min_log_mel + np.log(np.maximum(f, min_log_hz) / min_log_hz) / logstep,
        f / f_sp,
    )


def _mel_to_hz(m: np.ndarray, htk: bool) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    if htk:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def _mel_edges(cfg: FrontendConfig) -> np.ndarray:
    """``(n_mels + 2,)`` float64 band edges in Hz (librosa.mel_frequencies)."""
    htk = cfg.mel_scale == "htk"
    fmax = cfg.sample_rate / 2 if cfg.fmax is None else cfg.fmax
    lo, hi = _hz_to_mel(cfg.fmin, htk), _hz_to_mel(fmax, htk)
    return _mel_to_hz(np.linspace(lo, hi, cfg.n_mels + 2), htk)


def _fft_freqs(cfg: FrontendConfig) -> np.ndarray:
    return np.arange(cfg.n_freq) * (cfg.sample_rate / cfg.n_fft)


def _triangles(freqs: Any, edges: np.ndarray, norm: str | None, xp: Any) -> Any:
    """Filter weights ``(..., n_freq, n_mels)`` at frequencies ``freqs`` (..., n_freq)."""
    lower_edge, centre, upper_edge = edges[:-2], edges[1:-1], edges[2:]
    f = freqs[..., :, None]
    lower = (f - lower_edge) / (centre - lower_edge)
    upper = (upper_edge - f) / (upper_edge - centre)
    weights = xp.maximum(0.0, xp.minimum(lower, upper))
    if norm == "slaney":
        weights = weights * (2.0 / (upper_edge - lower_edge))
    return weights


def mel_filterbank(cfg: FrontendConfig, warp: jax.Array | None = None) -> Any:
    """Mel filterbank, equal to ``librosa.filters.mel(...).T``.

    Without ``warp``: ``(n_freq, n_mels)`` float32 numpy constant. With ``warp`` ``(batch,)``:
    ``(batch, n_freq, n_mels)`` jnp, where example ``b``'s filters read the spectrum at
    ``f / warp[b]`` (weights of the triangle at ``warp[b] * f``): a pitch shift by the factor
    ``warp`` seen through the filterbank (see ``ser_jax.frontend.augment``). ``warp == 1`` gives the plain
    filterbank up to float32 rounding.
    """
    edges = _mel_edges(cfg)
    if warp is None:
        return _triangles(_fft_freqs(cfg), edges, cfg.mel_norm, np).astype(np.float32)
    freqs = jnp.asarray(_fft_freqs(cfg), jnp.float32)
    warp = jnp.asarray(warp, jnp.float32)
    return _triangles(warp[:, None] * freqs, edges.astype(np.float32), cfg.mel_norm, jnp)


def _used_bins(fb: np.ndarray) -> tuple[int, int]:
    """``[lo, hi)`` range of FFT bins with a nonzero weight in some filter."""
    nz = np.flatnonzero(np.any(fb != 0, axis=1))
    if nz.size == 0:
        return 0, fb.shape[0]
    return int(nz[0]), int(nz[-1]) + 1


# --------------------------------------------------------------------------------------------
# Framing and spectra, one example at a time (vmapped / blocked by the callers)
# --------------------------------------------------------------------------------------------


def _frames(x: jax.Array, length: jax.Array, n_out: int, cfg: FrontendConfig) -> jax.Array:
    """``(n_out, n_fft)`` windowed frames of one example ``x`` (samples,) of true ``length``.

    Indices are in unpadded coordinates; centre padding is done by the index map, so the buffer
    never needs an explicit pad and samples at or past ``length`` never leak in.
    """
    samples = x.shape[0]
    offset = cfg.n_fft // 2 if cfg.center else 0
    idx = np.arange(n_out)[:, None] * cfg.hop_length + np.arange(cfg.n_fft)[None, :] - offset
    if cfg.center and cfg.pad_mode == "reflect":
        # numpy's "reflect" padding is the even periodic extension with period 2*(len-1).
        period = jnp.maximum(2 * (length - 1), 1)
        j = jnp.mod(jnp.asarray(idx), period)
        j = jnp.where(j < length, j, period - j)
        j = jnp.where(length > 1, j, 0)
        valid = length > 0
    else:
        j = np.clip(idx, 0, samples - 1)
        valid = (idx >= 0) & (idx < length)
    return jnp.where(valid, x[jnp.clip(j, 0, samples - 1)], 0.0) * window(cfg)


@functools.cache
def dft_bases(n_fft: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """``(n_fft, hi - lo)`` float32 cosine and sine bases of the real DFT's bins ``[lo, hi)``:
    ``frames @ cos`` and ``frames @ sin`` are ``rfft(frames)[..., lo:hi]``'s real and (minus)
    imaginary parts. The phase ``n * k mod n_fft`` is exact in integers before the float64
    cosine, so large bins lose no precision."""
    n = np.arange(n_fft)[:, None]
    k = np.arange(lo, hi)[None, :]
    phase = 2.0 * np.pi * ((n * k) % n_fft) / n_fft
    return np.cos(phase).astype(np.float32), np.sin(phase).astype(np.float32)


def _matmul(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a @ b`` over ``a``'s last axis at full float32 precision, as the ``dot_general``
    primitive itself: what ``jnp.dot`` lowers to, and what jax2onnx converts right under
    ``vmap`` (its own ``jnp.dot`` shim loses the batch axis there)."""
    dims = (((a.ndim - 1,), (0,)), ((), ()))
    return jax.lax.dot_general(a, b, dims, precision=jax.lax.Precision.HIGHEST)


def _spectrum(frames: jax.Array, cfg: FrontendConfig, bins: tuple[int, int]) -> jax.Array:
    """``|rfft(frames)|**power`` on bins ``[lo, hi)`` (``cfg.spectrum``: by the FFT, or as
    two real matmuls with the DFT's bases)."""
    if cfg.spectrum == "dft":
        cos, sin = dft_bases(cfg.n_fft, *bins)
        re, im = _matmul(frames, jnp.asarray(cos)), _matmul(frames, jnp.asarray(sin))
        p = re * re + im * im
    else:
        spec = jnp.fft.rfft(frames, n=cfg.n_fft, axis=-1)[..., bins[0] : bins[1]]
        p = spec.real * spec.real + spec.imag * spec.imag
    return p if cfg.power == 2.0 else jnp.sqrt(p)


def _block_plan(batch: int, target: int) -> tuple[int, int]:
    """``(block, padded_batch)``: a divisor of ``batch`` near ``target``, else pad the batch.

    Equal blocks keep the input a plain reshape; a ragged last block would make XLA read the
    input from two places and materialise (not fuse) whatever computed it.
    """
    for block in range(target, max(1, target // 2) - 1, -1):
        if batch % block == 0:
            return block, batch
    blocks = -(-batch // target)
    block = -(-batch // blocks)
    return block, blocks * block


def _map_examples(fn: Any, args: tuple[jax.Array, ...], frames_per_example: int) -> Any:
    """``vmap`` over the batch; on CPU in cache-sized blocks (see module docstring)."""
    batch = args[0].shape[0]
    target = max(1, _CPU_BLOCK_FRAMES // max(1, frames_per_example))
    # A symbolic batch (jax.export) has no size to block by: plain vmap.
    if jax.default_backend() != "cpu" or not isinstance(batch, int) or target >= batch:
        return jax.vmap(fn)(*args)
    block, padded = _block_plan(batch, target)
    if padded != batch:  # dummy examples of length 0, dropped below
        args = tuple(jnp.pad(a, [(0, padded - batch)] + [(0, 0)] * (a.ndim - 1)) for a in args)
    blocks = tuple(a.reshape(padded // block, block, *a.shape[1:]) for a in args)
    out = jax.lax.map(lambda a: jax.vmap(fn)(*a), blocks)
    return jax.tree.map(lambda o: o.reshape(padded, *o.shape[2:])[:batch], out)


def power_spectrogram(audio: jax.Array, cfg: FrontendConfig) -> jax.Array:
    """``(batch, samples)`` → ``(batch, frames, n_fft//2+1)`` float32 ``|STFT|**power``.

    The whole buffer counts as signal (no lengths); equal to librosa's ``stft`` magnitude.
    """
    audio = jnp.asarray(audio, jnp.float32)
    samples = audio.shape[-1]
    t = _checked_num_frames(samples, cfg)
    bins = (0, cfg.n_freq)

    def one(x: jax.Array) -> jax.Array:
        return _spectrum(_frames(x, jnp.int32(samples), t, cfg), cfg, bins)

    return _map_examples(one, (audio,), t)


def _checked_num_frames(samples: int, cfg: FrontendConfig) -> int:
    t = num_frames(int(samples), cfg)
    if t < 1:
        raise ConfigError(
            f"frontend.n_fft={cfg.n_fft}: longer than the {samples}-sample buffer with center=False"
        )
    return t


def _to_log(m: jax.Array, valid: jax.Array, cfg: FrontendConfig) -> jax.Array:
    """Log compression of one example's mel energies ``(frames, mel)``."""
    if cfg.log == "log":
        return jnp.log(jnp.maximum(m, cfg.log_floor))
    if cfg.log == "db":
        # librosa.power_to_db(ref=1.0, amin=log_floor, top_db): the max is over valid frames.
        db = (10.0 / math.log(10.0)) * jnp.log(jnp.maximum(m, cfg.log_floor))
        db = db - 10.0 * math.log10(max(cfg.log_floor, 1.0))
        if cfg.top_db is not None:
            peak = jnp.max(jnp.where(valid[:, None], db, -jnp.inf))
            db = jnp.maximum(db, peak - cfg.top_db)
        return db
    return m


def _normalize_one(feats: jax.Array, valid: jax.Array, mode: str) -> jax.Array:
    if mode == "utterance":
        w = valid[:, None].astype(feats.dtype)
        count = jnp.maximum(jnp.sum(w), 1.0)
        mean = jnp.sum(feats * w, axis=0) / count
        var = jnp.sum(jnp.square((feats - mean) * w), axis=0) / count
        feats = (feats - mean) * jax.lax.rsqrt(var + _NORM_EPS)
    elif mode not in ("none", "dataset", "speaker"):  # the caller applies those stats
        raise ConfigError(f"frontend.normalize={mode!r}: must be one of {_NORMALIZE}")
    return jnp.where(valid[:, None], feats, 0.0)


def apply_dataset_stats(
    feats: jax.Array, frame_lengths: jax.Array, mean: jax.Array, std: jax.Array
) -> jax.Array:
    """``(feats - mean) / std`` per mel band with statistics ``(n_mels,)`` shared by the batch
    (``"dataset"``: the training set's) or ``(batch, n_mels)``, one row per example
    (``"speaker"``: each example's speaker's).

    The ``"dataset"`` normalisation (MATLAB's standardisation by the training set's mean and
    standard deviation): unlike ``"utterance"`` it keeps each clip's level and spectral tilt,
    which carry emotion (anger is loud, sadness is soft). ``"speaker"`` keeps them relative to
    the speaker's own. Padded frames stay 0.
    """
    if mean.ndim == 2:
        mean, std = mean[:, None, :], std[:, None, :]
    mask = frame_mask(frame_lengths, feats.shape[1])
    return jnp.where(mask[..., None], (feats - mean) / std, 0.0)


def normalize(feats: jax.Array, frame_lengths: jax.Array, mode: str) -> jax.Array:
    """Per example and mel band over valid frames (``"utterance"``) or ``"none"``.

    ``feats`` ``(batch, frames, mel)``; padded frames come back as 0 and never enter the
    statistics. ``"utterance"``: ``(x - mean) / sqrt(var + 1e-5)``.
    """
    mask = frame_mask(frame_lengths, feats.shape[1])
    return jax.vmap(lambda f, v: _normalize_one(f, v, mode))(feats, mask)


def log_mel(
    audio: jax.Array, lengths: jax.Array, cfg: FrontendConfig, warp: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
    """Log-mel features of a padded batch.

    Args:
      audio: ``(batch, samples)`` float32, each clip followed by padding (ignored: read as 0).
      lengths: ``(batch,)`` int32 true lengths in samples.
      cfg: static front-end settings.
      warp: optional ``(batch,)`` frequency-warp factors (pitch shift, 1.0 = none).

    Returns:
      ``feats`` ``(batch, frames, cfg.n_bands)`` float32 (the log-mel, or its ``cfg.mfcc``
      cepstral coefficients, then the ``cfg.descriptors``) with ``frames =
      num_frames(samples)``, 0 on padded frames (index >= frame length), and ``frame_lengths``
      ``(batch,)`` int32.
    """
    audio = jnp.asarray(audio, jnp.float32)
    lengths = jnp.minimum(jnp.asarray(lengths, jnp.int32), audio.shape[-1])
    t = _checked_num_frames(audio.shape[-1], cfg)
    flen = frame_lengths(lengths, cfg)
    fb_np = mel_filterbank(cfg)
    whole = warp is not None or cfg.descriptors  # the descriptors read every bin
    bins = (0, cfg.n_freq) if whole else _used_bins(fb_np)
    fb_const = jnp.asarray(fb_np[bins[0] : bins[1]])

    def one(x: jax.Array, length: jax.Array, fl: jax.Array, *w: jax.Array) -> jax.Array:
        frames = _frames(x, length, t, cfg)
        p = _spectrum(frames, cfg, bins)
        fb = mel_filterbank(cfg, w[0][None])[0] if w else fb_const
        m = _matmul(p, fb)
        valid = jnp.arange(t) < fl
        feats = _to_log(m, valid, cfg)
        if cfg.mfcc:
            feats = _matmul(feats, jnp.asarray(dct_matrix(cfg.n_mels, cfg.mfcc)))
        if cfg.descriptors:
            feats = jnp.concatenate([feats, _descriptors(frames, p, cfg)], axis=-1)
        return _normalize_one(feats, valid, cfg.normalize)

    args = (audio, lengths, flen)
    if warp is not None:
        args = (*args, jnp.asarray(warp, jnp.float32))
    return _map_examples(one, args, t), flen


# --------------------------------------------------------------------------------------------
# Cepstral coefficients and spectral descriptors (frontend.mfcc, frontend.descriptors)
# --------------------------------------------------------------------------------------------

# Per frame, from the magnitude spectrum |X| of the same windowed frame as the log-mel:
DESCRIPTORS = (
    "log_energy",  # ln(sum |X|^2), floored at log_floor
    "zero_crossing_rate",  # sign changes / sample pairs inside the window
    "log_centroid",  # ln(1 + spectral centroid in Hz)
    "log_bandwidth",  # ln(1 + spectral spread around the centroid in Hz)
    "log_rolloff",  # ln(1 + frequency below which 85% of sum |X| lies)
    "log_flatness",  # ln(geometric / arithmetic mean of |X|^2)
)
ROLLOFF = 0.85
_FLATNESS_FLOOR = 1e-10  # librosa.feature.spectral_flatness's amin


@functools.cache
def dct_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``(n_in, n_out)`` float32 orthonormal DCT-II (``scipy.fft.dct(x, type=2,
    norm="ortho")[:n_out]`` as ``x @ matrix``)."""
    n = np.arange(n_in)[:, None]
    k = np.arange(n_out)[None, :]
    m = np.cos(np.pi * k * (2 * n + 1) / (2 * n_in)) * np.sqrt(2.0 / n_in)
    m[:, 0] /= np.sqrt(2.0)
    return m.astype(np.float32)


def _descriptors(frames: jax.Array, p: jax.Array, cfg: FrontendConfig) -> jax.Array:
    """``(frames, 6)`` spectral descriptors (``DESCRIPTORS``) of one example from its windowed
    frames ``(frames, n_fft)`` and spectrum ``p`` ``(frames, n_freq)`` (``|X|**power``).

    librosa's ``spectral_centroid``, ``spectral_bandwidth``, ``spectral_rolloff`` and
    ``spectral_flatness`` on the same magnitude spectrogram, log-compressed; a silent frame
    gives 0 for the first four of them after compression."""
    mag = p if cfg.power == 1.0 else jnp.sqrt(p)
    power = mag * mag
    freqs = jnp.asarray(_fft_freqs(cfg).astype(np.float32))
    total = jnp.sum(mag, axis=-1)
    safe = jnp.maximum(total, 1e-30)
    centroid = jnp.sum(mag * freqs, axis=-1) / safe
    spread = jnp.sqrt(jnp.sum(mag * jnp.square(freqs - centroid[:, None]), axis=-1) / safe)
    reached = jnp.cumsum(mag, axis=-1) >= ROLLOFF * total[:, None]
    # axis=1, not -1: jax2onnx's argmax reduces the wrong axis of a negative one under vmap
    rolloff = jnp.take(freqs, jnp.argmax(reached, axis=1))
    floored = jnp.maximum(power, _FLATNESS_FLOOR)
    flatness = jnp.exp(jnp.mean(jnp.log(floored), axis=-1)) / jnp.mean(floored, axis=-1)
    energy = jnp.log(jnp.maximum(jnp.sum(power, axis=-1), cfg.log_floor))
    inside = np.flatnonzero(window(cfg) > 0)  # samples the window keeps (sign unchanged)
    seg = frames[:, inside[0] : inside[-1] + 1]
    changes = _signbit(seg[:, 1:]) != _signbit(seg[:, :-1])
    zcr = jnp.mean(changes.astype(jnp.float32), axis=-1)
    silent = total <= 0
    return jnp.stack(
        [
            energy,
            zcr,
            jnp.where(silent, 0.0, jnp.log1p(centroid)),
            jnp.where(silent, 0.0, jnp.log1p(spread)),
            jnp.where(silent, 0.0, jnp.log1p(rolloff)),
            jnp.log(flatness),
        ],
        axis=-1,
    )


def _signbit(x: jax.Array) -> jax.Array:
    """``jnp.signbit`` of finite values (-0.0 counts as negative, ``1 / -0.0 = -inf``) by
    comparisons: signbit is a bit cast, which onnxruntime cannot run (ONNX export)."""
    return (x < 0) | ((x == 0) & (1.0 / x < 0))


@functools.cache
def _savgol(width: int, order: int) -> np.ndarray:
    """Savitzky-Golay coefficients of the ``order``-th derivative (polynomial order ``order``),
    as ``librosa.feature.delta`` uses them, ready to dot with ``x[t - w//2 : t + w//2 + 1]``."""
    from scipy.signal import savgol_coeffs

    return savgol_coeffs(width, polyorder=order, deriv=order, use="dot").astype(np.float32)


def delta(feats: jax.Array, frame_lengths: jax.Array, order: int, width: int = 9) -> jax.Array:
    """Delta (``order=1``) or delta-delta (``order=2``) features over time.

    ``feats`` ``(batch, frames, mel)``. Equal to ``librosa.feature.delta(x, width=width,
    order=order, mode="nearest")`` on each clip's valid frames (its first and last valid frame
    repeat past its ends); padded frames come back as 0.
    """
    coeffs = _savgol(width, order)
    half = width // 2
    frames = feats.shape[1]
    t = np.arange(frames)
    last = jnp.maximum(jnp.asarray(frame_lengths, jnp.int32) - 1, 0)[:, None, None]
    # each clip's last valid frame, which repeats past it: a one-hot sum (exact), and frames
    # shifted by static indices, not a gather of per-clip indices (jax2onnx mis-shapes those
    # under a symbolic batch size: ser-jax export --format onnx)
    final = jnp.sum(jnp.where(t[None, :, None] == last, feats, 0.0), axis=1, keepdims=True)
    out = jnp.zeros_like(feats)
    for j, c in enumerate(coeffs):
        shifted = feats[:, np.clip(t + (j - half), 0, frames - 1)]  # the first frame repeats
        shifted = jnp.where(t[None, :, None] + (j - half) > last, final, shifted)
        out = out + float(c) * shifted
    return jnp.where(frame_mask(frame_lengths, frames)[..., None], out, 0.0)


def with_deltas(feats: jax.Array, frame_lengths: jax.Array, cfg: FrontendConfig) -> jax.Array:
    """``(batch, frames, mel)`` → ``(batch, frames, mel, 1 + cfg.deltas)``: the features, then
    their delta and delta-delta (Meng et al. 2019's 3-D log-mel) when ``cfg.deltas`` asks."""
    channels = [feats]
    for order in range(1, cfg.deltas + 1):
        channels.append(delta(feats, frame_lengths, order, cfg.delta_width))
    return jnp.stack(channels, axis=-1)
