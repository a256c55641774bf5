"""On-device data augmentation: waveform transforms before the log-mel, SpecAugment after.

Everything is a pure function of a per-example typed PRNG key, vmapped over the batch and
jit-compiled with a static :class:`AugmentConfig`. Each transform is applied to an example with
its probability; a transform with probability 0 is not even traced (exact identity, no cost).

Waveform transforms, in this order (``augment_waveform``):

1. **speed** ``s``: resample by linear interpolation (``y[j] = x(j*s)``), which changes tempo and
   pitch together like sox ``speed``; the true length becomes ``round(len/s)`` (clipped to the
   buffer).
2. **time shift** by ``k`` samples (uniform in ``±time_shift_max_s``): the clip moves inside its
   own true length, zero-filled (or wrapped around with ``time_shift_wrap``); length unchanged.
3. **gain** ``g`` dB: multiply by ``10**(g/20)`` (no clipping: the features are logarithmic).
4. **noise** at an SNR drawn in ``snr_db``: white or pink (1/f power) Gaussian noise, scaled so
   that signal power / noise power over the true length is exactly the drawn SNR, added only
   inside the true length.

**Pitch shift** is not done on the waveform: it is a warp of the linear frequency axis before the
mel filterbank, like vocal tract length perturbation. The filterbank of example ``b`` samples the
spectrum at ``f / alpha`` with ``alpha = 2**(semitones/12)``, which is what the mel filters would
see of a signal whose every component moved from ``f`` to ``alpha*f``. It costs nothing extra
(the filterbank is built per example), keeps the duration, and, like a resampling pitch shift,
leaves the bands above ``alpha * nyquist`` empty when shifting down. ``augment_waveform`` returns
the factors (``warp``) for ``frontend.log_mel``.

**SpecAugment** (``spec_augment``) zeroes up to ``time_masks`` time stripes of width
``0..time_mask_max_frames`` and ``freq_masks`` mel stripes of width ``0..freq_mask_max_bins``,
all inside each example's valid frames. The features are normalised, so 0 is the mean.

The random draws are separate from their application (``draw_waveform_params``,
``apply_waveform``, ``draw_spec_masks``) so the drawn values can be logged and tested.

Cost on CPU (the waveform stage touches every sample of the batch): the noise samples come from
a counter-based hash of the sample index keyed by the example's key, not from threefry, which
alone took longer than the whole log-mel; speed and shift share one interpolating gather, run
under a ``lax.cond`` that also skips it when no example drew them. Pink noise needs one inverse
FFT of the buffer length and costs about as much as the log-mel itself; white is cheap.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import jax.scipy.special
import numpy as np

from ser_jax.errors import ConfigError
from ser_jax.settings import as_bool, as_int, from_section

_NOISE_COLORS = ("white", "pink", "mixed")
PROBABILITY_FIELDS = (
    "time_shift_prob",
    "noise_prob",
    "gain_prob",
    "pitch_shift_prob",
    "speed_prob",
    "time_mask_prob",
    "freq_mask_prob",
)
_RANGES = ("snr_db", "gain_db", "semitones", "speed")
_COUNTS = ("time_masks", "time_mask_max_frames", "freq_masks", "freq_mask_max_bins")
_CONVERTERS = {
    **dict.fromkeys(_RANGES, lambda v: tuple(float(x) for x in v)),
    **dict.fromkeys(_COUNTS, as_int),
    "time_shift_wrap": as_bool,
    "noise_color": str,
}


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Static augmentation settings (hashable: usable as a ``jit`` static argument)."""

    time_shift_prob: float = 0.0
    time_shift_max_s: float = 0.25
    time_shift_wrap: bool = False
    noise_prob: float = 0.0
    snr_db: tuple[float, float] = (10.0, 30.0)
    noise_color: str = "white"
    gain_prob: float = 0.0
    gain_db: tuple[float, float] = (-6.0, 6.0)
    pitch_shift_prob: float = 0.0
    semitones: tuple[float, float] = (-2.0, 2.0)
    speed_prob: float = 0.0
    speed: tuple[float, float] = (0.9, 1.1)
    time_mask_prob: float = 0.0
    time_masks: int = 2
    time_mask_max_frames: int = 10
    freq_mask_prob: float = 0.0
    freq_masks: int = 2
    freq_mask_max_bins: int = 8

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> ConfigError:
            return ConfigError(f"augment.{name}={getattr(self, name)!r}: {why}")

        for name in PROBABILITY_FIELDS:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise bad(name, "a probability must be in [0, 1]")
        for name in _RANGES:
            value = getattr(self, name)
            if not isinstance(value, tuple) or len(value) != 2 or not value[0] <= value[1]:
                raise bad(name, "must be an ordered pair (low, high) with low <= high")
        for name in _COUNTS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
                raise bad(name, "must be an integer >= 0")
        if not self.time_shift_max_s >= 0:
            raise bad("time_shift_max_s", "must be >= 0")
        if self.noise_color not in _NOISE_COLORS:
            raise bad("noise_color", f"must be one of {_NOISE_COLORS}")
        if not self.speed[0] > 0:
            raise bad("speed", "speed factors must be > 0")

    @classmethod
    def from_config(cls, cfg: Any) -> AugmentConfig:
        """From an ``ml_collections.ConfigDict`` or a mapping; unknown keys raise ConfigError."""
        return from_section(cls, cfg, "augment", _CONVERTERS, float)

    @property
    def waveform_enabled(self) -> bool:
        return any(
            p > 0 for p in (self.time_shift_prob, self.noise_prob, self.gain_prob, self.speed_prob)
        )

    @property
    def spec_enabled(self) -> bool:
        return self.time_mask_prob > 0 or self.freq_mask_prob > 0

    @property
    def enabled(self) -> bool:
        return self.waveform_enabled or self.pitch_shift_prob > 0 or self.spec_enabled


def _check_keys(keys: jax.Array, batch: int) -> None:
    if not jax.dtypes.issubdtype(keys.dtype, jax.dtypes.prng_key):
        raise TypeError("keys must be a typed PRNG key array (jax.random.key / jax.random.split)")
    if keys.shape != (batch,):
        raise ValueError(f"keys must have shape ({batch},), one per example; got {keys.shape}")


# --------------------------------------------------------------------------------------------
# Waveform augmentation
# --------------------------------------------------------------------------------------------


def _draw_one(key: jax.Array, cfg: AugmentConfig, max_shift: int) -> dict[str, jax.Array]:
    ks = jax.random.split(key, 12)

    def on(k: jax.Array, p: float) -> jax.Array:
        return jax.random.uniform(k) < p

    def between(k: jax.Array, lo_hi: tuple[float, float]) -> jax.Array:
        return jax.random.uniform(k, minval=lo_hi[0], maxval=lo_hi[1])

    shift = jax.random.randint(ks[1], (), -max_shift, max_shift + 1)
    semitones = jnp.where(on(ks[6], cfg.pitch_shift_prob), between(ks[7], cfg.semitones), 0.0)
    if cfg.noise_color == "mixed":
        pink = jax.random.bernoulli(ks[10])
    else:
        pink = jnp.asarray(cfg.noise_color == "pink")
    return {
        "shift": jnp.where(on(ks[0], cfg.time_shift_prob), shift, 0).astype(jnp.int32),
        "speed": jnp.where(on(ks[2], cfg.speed_prob), between(ks[3], cfg.speed), 1.0),
        "gain_db": jnp.where(on(ks[4], cfg.gain_prob), between(ks[5], cfg.gain_db), 0.0),
        "semitones": semitones,
        "warp": jnp.exp2(semitones / 12.0),
        "noise": on(ks[8], cfg.noise_prob),
        "snr_db": between(ks[9], cfg.snr_db),
        "pink": pink,
        "noise_key": ks[11],
    }


def draw_waveform_params(
    keys: jax.Array, cfg: AugmentConfig, sample_rate: int
) -> dict[str, jax.Array]:
    """Per-example waveform parameters ``(batch,)`` each, as ``augment_waveform`` draws them.

    ``shift`` (int32 samples, 0 = off), ``speed`` (1.0 = off), ``gain_db`` (0.0 = off),
    ``semitones`` and ``warp = 2**(semitones/12)`` (0 / 1.0 = off), ``noise`` (bool, on/off),
    ``snr_db``, ``pink`` (bool) and ``noise_key`` (the key of the noise samples).
    """
    max_shift = int(round(cfg.time_shift_max_s * sample_rate))
    return jax.vmap(lambda k: _draw_one(k, cfg, max_shift))(keys)


def _speed_and_shift_one(
    x: jax.Array,
    length: jax.Array,
    speed: jax.Array | None,
    shift: jax.Array | None,
    wrap: bool,
) -> tuple[jax.Array, jax.Array]:
    """Resample by ``speed`` (linear interpolation), then shift by ``shift`` samples.

    Both are index maps, so they share one interpolating gather: output sample ``i`` reads the
    input at ``(i - shift) * speed``. With ``speed == 1`` and ``shift == 0`` every position is
    an integer and the output equals the input exactly.
    """
    n = x.shape[0]
    i = jnp.arange(n)
    new_len = length
    if speed is not None:
        new_len = jnp.clip(jnp.round(length / speed), 0, n).astype(jnp.int32)
    src = i if shift is None else i - shift
    inside = i < new_len
    if shift is not None and wrap:
        src = jnp.mod(src, jnp.maximum(new_len, 1))
    elif shift is not None:
        inside = inside & (src >= 0) & (src < new_len)
    if speed is None:
        y = x[jnp.clip(src, 0, n - 1)]
    else:
        pos = src.astype(jnp.float32) * speed
        i0 = jnp.floor(pos).astype(jnp.int32)
        frac = pos - i0.astype(jnp.float32)
        last = jnp.maximum(length - 1, 0)
        x0 = x[jnp.clip(i0, 0, last)]
        x1 = x[jnp.clip(i0 + 1, 0, last)]
        y = x0 + frac * (x1 - x0)
    return jnp.where(inside, y, 0.0), new_len


def _fmix32(h: jax.Array) -> jax.Array:
    """murmur3's 32-bit finaliser: a cheap, well-mixing integer hash."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def _normal(key: jax.Array, n: int) -> jax.Array:
    """``(n,)`` standard normal samples determined by ``key``.

    Counter-based: two seed words from ``key`` (threefry), then a hash of the sample index and
    an inverse-erf transform. On CPU this is ~4x cheaper than ``jax.random.normal`` for the
    ~1.5 M noise samples of a 32 x 3 s batch, whose threefry rounds dominated the augmented
    step; the samples are just as white and Gaussian for noise augmentation.
    """
    seed = jax.random.bits(key, (2,), jnp.uint32)
    i = jnp.arange(n, dtype=jnp.uint32)
    return _bits_to_normal(_fmix32(_fmix32(i * jnp.uint32(0x9E3779B9) ^ seed[0]) + seed[1]))


def _bits_to_normal(h: jax.Array) -> jax.Array:
    """uint32 hashes → standard normal float32 by inverse erf (finite for every input)."""
    # 23 bits: k + 0.5 stays exact in float32, so u never rounds to +-1 (erfinv(1) = inf).
    u = ((h >> 9).astype(jnp.float32) + 0.5) * (2.0 / (1 << 23)) - 1.0  # (-1, 1)
    return np.float32(np.sqrt(2.0)) * jax.scipy.special.erfinv(u)


def _noise_one(x: jax.Array, length: jax.Array, p: dict[str, jax.Array], color: str) -> jax.Array:
    n = x.shape[0]
    valid = jnp.arange(n) < length
    if color == "white":
        noise = _normal(p["noise_key"], n)
    else:
        # Gaussian noise synthesised in the frequency domain: complex Gaussian bins shaped by
        # 1/sqrt(f) (pink: power ~ 1/f) or flat (white), one inverse FFT, no DC.
        bins = n // 2 + 1
        g = _normal(p["noise_key"], 2 * bins).reshape(bins, 2)
        f = jnp.arange(bins, dtype=jnp.float32)
        shape = jnp.where(p["pink"], jax.lax.rsqrt(jnp.maximum(f, 1.0)), 1.0)
        shape = jnp.where(f > 0, shape, 0.0)
        noise = jnp.fft.irfft(jax.lax.complex(g[:, 0] * shape, g[:, 1] * shape), n=n)
    noise = jnp.where(valid, noise, 0.0)
    p_signal = jnp.sum(jnp.square(jnp.where(valid, x, 0.0)))  # powers over the true length
    p_noise = jnp.sum(jnp.square(noise))
    scale = jnp.sqrt(p_signal / (jnp.maximum(p_noise, 1e-30) * 10.0 ** (p["snr_db"] / 10.0)))
    return jnp.where(p["noise"], x + scale * noise, x)


def apply_waveform(
    params: dict[str, jax.Array],
    audio: jax.Array,
    lengths: jax.Array,
    cfg: AugmentConfig,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Apply drawn parameters (``draw_waveform_params``); see ``augment_waveform``."""
    audio = jnp.asarray(audio, jnp.float32)
    lengths = jnp.minimum(jnp.asarray(lengths, jnp.int32), audio.shape[-1])

    if cfg.speed_prob > 0 or cfg.time_shift_prob > 0:

        def move(x, length, speed, shift):
            y, new_len = _speed_and_shift_one(
                x,
                length,
                speed if cfg.speed_prob > 0 else None,
                shift if cfg.time_shift_prob > 0 else None,
                cfg.time_shift_wrap,
            )
            on = (speed != 1.0) | (shift != 0)
            return jnp.where(on, y, x), jnp.where(on, new_len, length)

        # Under lax.cond the resampled audio is materialised in one pass with its gathers fused;
        # otherwise its two consumers (noise power, output) make XLA materialise each gather on
        # its own, ~5x slower on CPU. The cond also skips the pass when no example is drawn.
        on = jnp.any(params["speed"] != 1.0) | jnp.any(params["shift"] != 0)
        audio, lengths = jax.lax.cond(
            on,
            lambda a: jax.vmap(move)(*a),
            lambda a: (a[0], a[1]),
            (audio, lengths, params["speed"], params["shift"]),
        )

    def rest(x, length, p):
        if cfg.gain_prob > 0:
            x = x * 10.0 ** (p["gain_db"] / 20.0)
        if cfg.noise_prob > 0:
            x = _noise_one(x, length, p, cfg.noise_color)
        if cfg.waveform_enabled:
            x = jnp.where(jnp.arange(x.shape[0]) < length, x, 0.0)  # zero after the length
        return x

    out = jax.vmap(rest)(audio, lengths, params)
    return out, lengths, params["warp"].astype(jnp.float32)


def augment_waveform(
    keys: jax.Array,
    audio: jax.Array,
    lengths: jax.Array,
    cfg: AugmentConfig,
    sample_rate: int,
    apply: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Random waveform augmentation of a padded batch, one key per example.

    Args:
      keys: ``(batch,)`` typed PRNG keys.
      audio: ``(batch, samples)`` float32, zero after each true length.
      lengths: ``(batch,)`` int32 true lengths.
      cfg: static settings; sample_rate: Hz (for the time-shift range).
      apply: optional ``(batch,)`` bool; examples where it is False are left as they are.

    Returns:
      ``(audio, lengths, warp)``: augmented audio (same shape, zero after the new lengths),
      new lengths (speed changes them) and ``(batch,)`` float32 pitch warp factors for
      ``frontend.log_mel`` (1.0 = no pitch shift).
    """
    _check_keys(keys, audio.shape[0])
    params = draw_waveform_params(keys, cfg, sample_rate)
    if apply is not None:
        params = skip_examples(params, apply)
    return apply_waveform(params, audio, lengths, cfg)


# --------------------------------------------------------------------------------------------
# SpecAugment
# --------------------------------------------------------------------------------------------


def _stripes(
    key: jax.Array, on: jax.Array, count: int, max_width: int, extent: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """``count`` (start, width) pairs inside ``[0, extent)``; width 0 when ``on`` is False."""
    kw, ks = jax.random.split(key)
    top = jnp.minimum(max_width, extent)
    widths = jax.random.randint(kw, (count,), 0, top + 1)
    starts = jax.random.randint(ks, (count,), 0, extent - widths + 1)
    return starts.astype(jnp.int32), jnp.where(on, widths, 0).astype(jnp.int32)


def draw_spec_masks(
    keys: jax.Array, frame_lengths: jax.Array, n_mels: int, cfg: AugmentConfig
) -> dict[str, jax.Array]:
    """SpecAugment stripes: ``time_start``/``time_width`` ``(batch, time_masks)`` inside the
    valid frames, ``freq_start``/``freq_width`` ``(batch, freq_masks)``; width 0 = no mask."""

    def one(key, flen):
        k = jax.random.split(key, 4)
        t_on = jax.random.uniform(k[0]) < cfg.time_mask_prob
        f_on = jax.random.uniform(k[1]) < cfg.freq_mask_prob
        ts, tw = _stripes(k[2], t_on, cfg.time_masks, cfg.time_mask_max_frames, flen)
        fs, fw = _stripes(k[3], f_on, cfg.freq_masks, cfg.freq_mask_max_bins, jnp.int32(n_mels))
        return {"time_start": ts, "time_width": tw, "freq_start": fs, "freq_width": fw}

    return jax.vmap(one)(keys, jnp.asarray(frame_lengths, jnp.int32))


def _stripe_mask(starts: jax.Array, widths: jax.Array, size: int) -> jax.Array:
    """``(batch, size)`` True inside any stripe."""
    i = jnp.arange(size)[None, None, :]
    inside = (i >= starts[..., None]) & (i < (starts + widths)[..., None])
    return jnp.any(inside, axis=1)


def apply_spec_masks(masks: dict[str, jax.Array], feats: jax.Array) -> jax.Array:
    """Zero the stripes of ``draw_spec_masks`` in ``feats`` ``(batch, frames, mel[, ...])``;
    extra trailing axes (delta channels) share the stripes."""
    masked = _stripe_mask(masks["time_start"], masks["time_width"], feats.shape[1])[:, :, None]
    masked = (
        masked | _stripe_mask(masks["freq_start"], masks["freq_width"], feats.shape[2])[:, None, :]
    )
    masked = masked.reshape(masked.shape + (1,) * (feats.ndim - 3))
    return jnp.where(masked, jnp.zeros((), feats.dtype), feats)


def skip_examples(params: dict[str, jax.Array], apply: jax.Array) -> dict[str, jax.Array]:
    """Drawn waveform or SpecAugment parameters with every transform off where ``apply`` is
    False (``(batch,)`` bool): those examples come out unaugmented."""
    off = {
        "shift": 0,
        "speed": 1.0,
        "gain_db": 0.0,
        "semitones": 0.0,
        "warp": 1.0,
        "noise": False,
        "time_width": 0,
        "freq_width": 0,
    }
    out = dict(params)
    for name, value in off.items():
        if name in out:
            keep = apply.reshape(apply.shape + (1,) * (out[name].ndim - 1))
            out[name] = jnp.where(keep, out[name], jnp.asarray(value, out[name].dtype))
    return out


def spec_augment(
    keys: jax.Array,
    feats: jax.Array,
    frame_lengths: jax.Array,
    cfg: AugmentConfig,
    apply: jax.Array | None = None,
) -> jax.Array:
    """Time and frequency masking of ``feats`` ``(batch, frames, mel)``; masked values are 0.

    Masks lie inside each example's valid frames. Identity when both probabilities are 0, and
    for examples where ``apply`` ``(batch,)`` is False.
    """
    if not cfg.spec_enabled:
        return feats
    _check_keys(keys, feats.shape[0])
    masks = draw_spec_masks(keys, frame_lengths, feats.shape[2], cfg)
    if apply is not None:
        masks = skip_examples(masks, apply)
    return apply_spec_masks(masks, feats)
