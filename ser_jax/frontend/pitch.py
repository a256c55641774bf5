"""Pitch (F0) track in ``jax.numpy``, on the log-mel's frame grid, inside ``jit``.

Prosody separates the emotions the log-mel confuses most (happiness read as anger is the
largest error on Emo-DB): with 25 ms windows and 64 mel bands the harmonics of a voice are only
partly resolved. This stage estimates, for every log-mel frame, how periodic the frame is and
at which period, from the normalised autocorrelation of a 40 ms Hann-windowed frame centred on
the same sample as the log-mel frame:

- ``r(k) / r(0)``, divided by the window's own autocorrelation (so a periodic signal scores
  close to 1 at its period whatever the taper), on lags ``sample_rate / fmax ..
  sample_rate / fmin``;
- the period is the best lag in ``[k0, 1.5 k0]``, where ``k0`` is the smallest lag reaching 85%
  of the highest peak: the fundamental rather than one of its multiples (octave errors), then
  refined by a parabola through the peak;
- voicing is the normalised autocorrelation at that lag (0..1), set to 0 on frames 40 dB or
  more below the clip's loudest frame and on padded frames.

It hands on ``(batch, frames, 3)``: voicing, ``log2(F0 / 150 Hz)`` and ``log2(F0)`` minus the
clip's voicing-weighted mean (the contour: the speaker's own pitch level removed), the last two
weighted by voicing, so unvoiced frames carry 0. ``ser_jax.frontend.features`` appends them to the
log-mel as channels (``frontend.pitch``), repeated along the mel axis.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from ser_jax.frontend.logmel import (
    FrontendConfig,
    _checked_num_frames,
    _frames,
    _map_examples,
    _matmul,
    dft_bases,
    floor_div,
    frame_lengths,
)

REFERENCE_HZ = 150.0  # log2(F0 / 150 Hz): 0 for a typical voice, ±1 an octave away
WINDOW_SECONDS = 0.04  # two periods of 50 Hz
PEAK_FRACTION = 0.85  # the smallest lag this close to the highest peak is the candidate
SILENCE = 1e-4  # frames 40 dB below the clip's loudest frame are unvoiced


@functools.cache
def _plan(cfg: FrontendConfig) -> tuple[FrontendConfig, int, int, np.ndarray]:
    """``(frame settings, shortest lag, longest lag, the window's autocorrelation)``.

    Frames of 40 ms, zero-padded to a power of two at least twice as long, so the circular
    autocorrelation of the FFT equals the linear one on every lag searched.
    """
    win = int(round(WINDOW_SECONDS * cfg.sample_rate))
    n_fft = 1 << (2 * win - 1).bit_length()
    frames = dataclasses.replace(cfg, n_fft=n_fft, win_length=win, window="hann")
    lo = max(2, int(math.floor(cfg.sample_rate / cfg.pitch_fmax)))
    hi = min(win - 2, int(math.ceil(cfg.sample_rate / cfg.pitch_fmin)))
    w = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(win) / win)
    rw = np.correlate(w, w, "full")[win - 1 : win - 1 + hi + 2]
    return frames, lo, hi, (rw / rw[0]).astype(np.float32)


@functools.cache
def lag_basis(n_fft: int, lags: int) -> np.ndarray:
    """``(n_fft // 2 + 1, lags)`` float32: ``power @ basis`` is ``irfft(power, n_fft)[:lags]``
    for a power spectrum (real and even: a cosine sum, every bin but DC and Nyquist counted
    twice). The phase ``k * lag mod n_fft`` is exact in integers, as in ``dft_bases``."""
    k = np.arange(n_fft // 2 + 1)[:, None]
    lag = np.arange(lags)[None, :]
    weight = np.where((k == 0) | (k == n_fft // 2), 1.0, 2.0) / n_fft
    return (weight * np.cos(2.0 * np.pi * ((k * lag) % n_fft) / n_fft)).astype(np.float32)


def autocorrelation(
    x: jax.Array, length: jax.Array, t: int, cfg: FrontendConfig, lags: int
) -> jax.Array:
    """``(t, lags)`` circular autocorrelation of the ``t`` windowed frames of one example ``x``
    (``cfg``: ``_plan``'s frames) on lags ``0 .. lags - 1``: ``irfft(|rfft|**2)``, or with
    ``cfg.spectrum="dft"`` the same as three real matmuls (the DFT's bases on the window's
    own samples, then ``lag_basis``): no complex values and no FFT, for converters such as
    ONNX's."""
    if cfg.spectrum != "dft":
        spec = jnp.fft.rfft(_frames(x, length, t, cfg), n=cfg.n_fft, axis=-1)
        power = spec.real * spec.real + spec.imag * spec.imag
        return jnp.fft.irfft(power, n=cfg.n_fft, axis=-1)[:, :lags]
    # The window's own samples, without the zeros around it (the same window start: the
    # frame and the window are centred alike); a shift in time leaves |DFT|**2 unchanged.
    own = cfg.win_length + (cfg.n_fft - cfg.win_length) % 2
    frames = _frames(x, length, t, dataclasses.replace(cfg, n_fft=own))
    cos, sin = (jnp.asarray(b[:own]) for b in dft_bases(cfg.n_fft, 0, cfg.n_freq))
    re, im = _matmul(frames, cos), _matmul(frames, sin)
    return _matmul(re * re + im * im, jnp.asarray(lag_basis(cfg.n_fft, lags)))


def _track_one(
    x: jax.Array, length: jax.Array, flen: jax.Array, t: int, cfg: FrontendConfig
) -> jax.Array:
    """``(t, 3)`` pitch features of one example (see the module docstring)."""
    frames_cfg, lo, hi, rw = _plan(cfg)
    r = autocorrelation(x, length, t, frames_cfg, hi + 2)
    energy = r[:, 0]
    rn = r / jnp.maximum(energy, 1e-12)[:, None] / rw
    lags = np.arange(hi + 2)
    searched = (lags >= lo) & (lags <= hi)
    peak = jnp.max(jnp.where(searched, rn, -jnp.inf), axis=1)
    k0 = jnp.argmax(searched & (rn >= PEAK_FRACTION * peak[:, None]), axis=1)
    near = searched & (lags >= k0[:, None]) & (lags <= floor_div(3 * k0, 2)[:, None])
    k = jnp.argmax(jnp.where(near, rn, -jnp.inf), axis=1)
    # rn at lags k - 1, k, k + 1 as one-hot sums (exact: one nonzero term), not a gather:
    # jax2onnx mis-broadcasts a vmapped gather's indices under a symbolic batch size
    a, b, c = (jnp.sum(jnp.where(lags == (k + d)[:, None], rn, 0.0), axis=1) for d in (-1, 0, 1))
    curve = a - 2.0 * b + c
    shift = jnp.where(curve < -1e-6, 0.5 * (a - c) / jnp.where(curve < -1e-6, curve, -1.0), 0.0)
    f0 = cfg.sample_rate / (k + jnp.clip(shift, -0.5, 0.5))
    valid = jnp.arange(t) < flen
    loud = energy >= SILENCE * jnp.max(jnp.where(valid, energy, 0.0))
    voicing = jnp.where(valid & loud, jnp.clip(b, 0.0, 1.0), 0.0)
    log_f0 = jnp.log2(f0 / REFERENCE_HZ)
    mean = jnp.sum(voicing * log_f0) / jnp.maximum(jnp.sum(voicing), 1e-6)
    return jnp.stack([voicing, voicing * log_f0, voicing * (log_f0 - mean)], axis=-1)


def pitch_track(
    audio: jax.Array, lengths: jax.Array, cfg: FrontendConfig, warp: jax.Array | None = None
) -> jax.Array:
    """Pitch features ``(batch, frames, 3)`` of a padded batch, on ``log_mel``'s frames.

    Args:
      audio: ``(batch, samples)`` float32, each clip followed by padding (ignored).
      lengths: ``(batch,)`` int32 true lengths in samples.
      cfg: static front-end settings (``pitch_fmin``, ``pitch_fmax``; ``center=True``).
      warp: optional ``(batch,)`` frequency-warp factors of the pitch-shift augmentation,
        which reads the spectrum at ``f / warp``: the log-F0 channel moves by ``log2(warp)``
        with it (the contour channel is relative and does not move).

    Returns:
      ``(voicing, voicing * log2(F0 / 150), voicing * (log2 F0 - clip mean))`` per frame, 0 on
      padded frames.
    """
    audio = jnp.asarray(audio, jnp.float32)
    lengths = jnp.minimum(jnp.asarray(lengths, jnp.int32), audio.shape[-1])
    t = _checked_num_frames(audio.shape[-1], cfg)
    flen = frame_lengths(lengths, cfg)
    out = _map_examples(lambda x, n, f: _track_one(x, n, f, t, cfg), (audio, lengths, flen), 4 * t)
    if warp is not None:
        moved = out[..., 0] * jnp.log2(jnp.asarray(warp, jnp.float32))[:, None]
        out = out.at[..., 1].add(moved)
    return out


def with_pitch(feats: jax.Array, pitch: jax.Array, level: bool = True) -> jax.Array:
    """Log-mel ``(batch, frames, mel[, channels])`` and pitch ``(batch, frames, 3)`` →
    ``(batch, frames, mel, channels + 3)``: the pitch features repeated along the mel axis, so
    every convolution sees the frame's pitch beside its spectrum. ``level=False`` leaves out
    the log-F0 channel (``channels + 2``: voicing and contour), which carries the speaker's
    own pitch level."""
    x = feats if feats.ndim == 4 else feats[..., None]
    if not level:
        pitch = pitch[..., 0::2]  # voicing, contour
    p = jnp.broadcast_to(pitch[:, :, None, :], (*x.shape[:3], pitch.shape[-1]))
    return jnp.concatenate([x, p.astype(x.dtype)], axis=-1)
