"""On-device augmentation: each transform's defining property, identity at probability 0,
per-example independence, determinism, and the composed ``make_features``."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ser_jax.errors import ConfigError
from ser_jax.frontend.augment import (
    AugmentConfig,
    apply_waveform,
    augment_waveform,
    draw_spec_masks,
    draw_waveform_params,
    spec_augment,
)
from ser_jax.frontend.features import make_features
from ser_jax.frontend.logmel import FrontendConfig, log_mel

SR = 8000
FRONT = FrontendConfig(sample_rate=SR, n_fft=256, win_length=200, hop_length=80, n_mels=32)
ALL_ON = AugmentConfig(
    time_shift_prob=1.0,
    noise_prob=1.0,
    gain_prob=1.0,
    pitch_shift_prob=1.0,
    speed_prob=1.0,
    time_mask_prob=1.0,
    freq_mask_prob=1.0,
    noise_color="mixed",
)
B, N = 6, 4000
LENGTHS = np.array([4000, 3999, 3001, 2500, 1777, 4000], np.int32)

augment_jit = jax.jit(augment_waveform, static_argnums=(3, 4))
apply_jit = jax.jit(apply_waveform, static_argnums=(3,))
draw_jit = jax.jit(draw_waveform_params, static_argnums=(1, 2))
spec_jit = jax.jit(spec_augment, static_argnums=(3,))
masks_jit = jax.jit(draw_spec_masks, static_argnums=(2, 3))
features_jit = jax.jit(make_features, static_argnames=("frontend", "augment"))
log_mel_jit = jax.jit(log_mel, static_argnums=(2,))


@pytest.fixture(scope="module")
def audio() -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(N) / SR
    out = np.zeros((B, N), np.float32)
    for i, n in enumerate(LENGTHS):
        tone = np.sin(2 * np.pi * (200 + 50 * i) * t[:n]) + 0.3 * rng.standard_normal(n)
        out[i, :n] = 0.1 * (i + 1) * tone
    return out


@pytest.fixture(scope="module")
def keys() -> jax.Array:
    return jax.random.split(jax.random.key(42), B)


def only(**fields: Any) -> AugmentConfig:
    return AugmentConfig(**fields)


def params_with(cfg: AugmentConfig, keys: jax.Array, **values: Any) -> dict[str, jax.Array]:
    """Drawn parameters with some fields replaced by chosen values (deterministic tests)."""
    p = dict(draw_jit(keys, cfg, SR))
    for name, v in values.items():
        p[name] = jnp.asarray(v, p[name].dtype)
    return p


# ------------------------------------------------------------------------------------------
# Waveform transforms: defining properties
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("color", ["white", "pink", "mixed"])
def test_noise_reaches_drawn_snr_inside_true_length(audio, keys, color):
    cfg = only(noise_prob=1.0, noise_color=color, snr_db=(0.0, 30.0))
    p = draw_jit(keys, cfg, SR)
    out, lengths, _ = augment_jit(keys, audio, LENGTHS, cfg, SR)
    out = np.asarray(out)
    assert np.array_equal(np.asarray(lengths), LENGTHS)
    for i, n in enumerate(LENGTHS):
        noise = out[i, :n] - audio[i, :n]
        snr = 10 * np.log10(np.sum(audio[i, :n] ** 2) / np.sum(noise**2))
        assert abs(snr - float(p["snr_db"][i])) < 0.5, (snr, float(p["snr_db"][i]))
        assert np.all(out[i, n:] == 0)
    if color == "mixed":
        assert 0 < int(np.sum(p["pink"])) < B


def test_noise_samples_are_finite_standard_normal():
    from ser_jax.frontend.augment import _bits_to_normal, _normal

    extremes = np.asarray(
        _bits_to_normal(jnp.array([0, 1, 2**31, 2**32 - 2, 2**32 - 1], jnp.uint32))
    )
    assert np.all(np.isfinite(extremes)) and np.all(np.abs(extremes) < 6)
    z = np.asarray(jax.jit(_normal, static_argnums=1)(jax.random.key(7), 200_000))
    assert np.all(np.isfinite(z))
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    assert abs(np.mean(z**4) - 3) < 0.1  # Gaussian kurtosis
    assert abs(np.corrcoef(z[:-1], z[1:])[0, 1]) < 0.01  # white


def test_pink_noise_has_more_low_than_high_frequency_power(audio, keys):
    cfg = only(noise_prob=1.0, noise_color="pink")
    silent = np.zeros_like(audio)
    silent[:, :N] = 1e-3  # flat signal: the output minus it is the noise itself
    out = np.asarray(augment_jit(keys, silent, np.full(B, N, np.int32), cfg, SR)[0]) - silent
    spec = np.abs(np.fft.rfft(out, axis=1)) ** 2
    low, high = spec[:, 10:100].mean(), spec[:, 1000:2000].mean()
    assert low > 10 * high


@pytest.mark.parametrize("shift", [37, -250])
@pytest.mark.parametrize("wrap", [False, True])
def test_time_shift_moves_signal_by_k_samples(audio, keys, shift, wrap):
    cfg = only(time_shift_prob=1.0, time_shift_wrap=wrap)
    p = params_with(cfg, keys, shift=np.full(B, shift))
    out, lengths, _ = apply_jit(p, audio, LENGTHS, cfg)
    out = np.asarray(out)
    for i, n in enumerate(LENGTHS):
        x = audio[i, :n]
        if wrap:
            expected = np.roll(x, shift)
        elif shift > 0:
            expected = np.concatenate([np.zeros(shift, np.float32), x[:-shift]])
        else:
            expected = np.concatenate([x[-shift:], np.zeros(-shift, np.float32)])
        np.testing.assert_array_equal(out[i, :n], expected)
        assert np.all(out[i, n:] == 0)
    assert np.array_equal(np.asarray(lengths), LENGTHS)
    drawn = np.asarray(draw_jit(keys, cfg, SR)["shift"])
    assert np.all(np.abs(drawn) <= round(0.25 * SR)) and len(set(drawn.tolist())) > 1


def test_gain_scales_by_drawn_db(audio, keys):
    cfg = only(gain_prob=1.0)
    p = draw_jit(keys, cfg, SR)
    out = np.asarray(augment_jit(keys, audio, LENGTHS, cfg, SR)[0])
    g = np.asarray(p["gain_db"])
    assert np.all((g >= -6) & (g <= 6))
    np.testing.assert_allclose(out, audio * 10 ** (g[:, None] / 20), rtol=1e-6, atol=1e-9)


def test_speed_resamples_to_round_len_over_s(audio, keys):
    cfg = only(speed_prob=1.0, speed=(0.8, 1.25))
    p = draw_jit(keys, cfg, SR)
    out, lengths, _ = augment_jit(keys, audio, LENGTHS, cfg, SR)
    out, lengths, s = np.asarray(out), np.asarray(lengths), np.asarray(p["speed"])
    expected = np.minimum(np.round(LENGTHS / s.astype(np.float64)), N).astype(int)
    assert np.array_equal(lengths, expected)
    for i, n in enumerate(LENGTHS):
        m = lengths[i]
        ref = np.interp(np.arange(m) * float(s[i]), np.arange(n), audio[i, :n])
        np.testing.assert_allclose(out[i, :m], ref, atol=1e-4)
        assert np.all(out[i, m:] == 0)


def test_speed_one_is_identity(audio, keys):
    cfg = only(speed_prob=1.0)
    out, lengths, _ = apply_jit(params_with(cfg, keys, speed=np.ones(B)), audio, LENGTHS, cfg)
    assert np.array_equal(np.asarray(out), audio) and np.array_equal(lengths, LENGTHS)


def test_pitch_warp_moves_a_sine_up_in_mel_bins():
    t = np.arange(N) / SR
    sine = np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    higher = np.sin(2 * np.pi * 1000 * 2 ** (3 / 12) * t).astype(np.float32)
    audio = np.stack([sine, sine, higher])
    lengths = np.full(3, N, np.int32)
    raw = dataclasses.replace(FRONT, normalize="none")
    warp = jnp.array([1.0, 2 ** (3 / 12), 1.0])
    feats, _ = jax.jit(log_mel, static_argnums=2)(audio, lengths, raw, warp)
    peak = np.asarray(feats[:, 10:-10].mean(axis=1).argmax(axis=1))
    assert peak[1] > peak[0]
    assert abs(int(peak[1]) - int(peak[2])) <= 1  # warp 3 semitones ≈ a sine 3 semitones up
    plain, _ = log_mel_jit(audio, lengths, raw)
    np.testing.assert_allclose(np.asarray(feats[0]), np.asarray(plain[0]), atol=1e-4)


def test_pitch_shift_draws_warp_in_semitone_range(audio, keys):
    cfg = only(pitch_shift_prob=1.0, semitones=(-2.0, 2.0))
    p = draw_jit(keys, cfg, SR)
    _, _, warp = augment_jit(keys, audio, LENGTHS, cfg, SR)
    st = np.asarray(p["semitones"])
    assert np.all(np.abs(st) <= 2) and len(set(st.tolist())) == B
    np.testing.assert_allclose(np.asarray(warp), 2 ** (st / 12), rtol=1e-6)


# ------------------------------------------------------------------------------------------
# SpecAugment
# ------------------------------------------------------------------------------------------


def test_spec_augment_masks_only_drawn_stripes_inside_valid_frames(keys):
    cfg = only(time_mask_prob=1.0, freq_mask_prob=1.0, time_mask_max_frames=6)
    rng = np.random.default_rng(1)
    flen = np.array([40, 33, 20, 7, 1, 0], np.int32)
    feats = rng.standard_normal((B, 40, 16)).astype(np.float32) + 5.0
    feats[np.arange(40)[None, :] >= flen[:, None]] = 0.0
    out = np.asarray(spec_jit(keys, feats, flen, cfg))
    m = jax.tree.map(np.asarray, masks_jit(keys, flen, 16, cfg))
    for i in range(B):
        zero_t = np.flatnonzero(np.all(out[i] == 0, axis=1) & (np.arange(40) < flen[i]))
        expected_t = set()
        for s, w in zip(m["time_start"][i], m["time_width"][i], strict=True):
            assert 0 <= s and s + w <= flen[i] and w <= 6
            expected_t |= set(range(s, s + w))
        expected_f = set()
        for s, w in zip(m["freq_start"][i], m["freq_width"][i], strict=True):
            assert 0 <= s and s + w <= 16 and w <= 8
            expected_f |= set(range(s, s + w))
        if len(expected_f) < 16:
            assert set(zero_t.tolist()) == expected_t
        zero_f = np.flatnonzero(np.all(out[i, : flen[i]] == 0, axis=0))
        if len(expected_t) < flen[i]:
            assert set(zero_f.tolist()) == expected_f
        kept = out[i] != 0
        np.testing.assert_array_equal(out[i][kept], feats[i][kept])
    assert m["time_width"].sum() > 0 and m["freq_width"].sum() > 0


def test_spec_augment_probability_zero_is_identity(keys):
    feats = np.random.default_rng(2).standard_normal((B, 10, 8)).astype(np.float32)
    out = spec_jit(keys, feats, np.full(B, 10, np.int32), only(time_masks=3))
    assert np.array_equal(np.asarray(out), feats)


# ------------------------------------------------------------------------------------------
# Probabilities, keys, determinism
# ------------------------------------------------------------------------------------------


def test_probability_zero_is_identity_for_every_transform(audio, keys):
    # Every range set wide, every probability 0: nothing may change, not even by rounding.
    cfg = AugmentConfig(snr_db=(-10.0, 0.0), gain_db=(10.0, 20.0), speed=(0.5, 0.6))
    out, lengths, warp = augment_jit(keys, audio, LENGTHS, cfg, SR)
    assert np.array_equal(np.asarray(out), audio)
    assert np.array_equal(np.asarray(lengths), LENGTHS)
    assert np.all(np.asarray(warp) == 1.0)


def test_unselected_examples_are_untouched(audio):
    # Each transform at p = 0.2: examples that drew none of them must come back bit-identical,
    # the others changed.
    n = 24
    many = jax.random.split(jax.random.key(3), n)
    x = np.tile(audio[:1], (n, 1))
    lengths = np.full(n, LENGTHS[0], np.int32)
    probs = ("time_shift_prob", "noise_prob", "gain_prob", "speed_prob", "pitch_shift_prob")
    cfg = only(**{name: 0.2 for name in probs})
    p = {k: np.asarray(v) for k, v in draw_jit(many, cfg, SR).items() if k != "noise_key"}
    drawn = (
        (p["shift"] != 0) | p["noise"] | (p["gain_db"] != 0) | (p["speed"] != 1) | (p["warp"] != 1)
    )
    assert 0 < drawn.sum() < n
    for name, on in [("noise", p["noise"]), ("gain_db", p["gain_db"] != 0)]:
        assert 0 < on.sum() < n, name
    out, new_len, warp = augment_jit(many, x, lengths, cfg, SR)
    out, new_len, warp = np.asarray(out), np.asarray(new_len), np.asarray(warp)
    assert np.array_equal(out[~drawn], x[~drawn]) and np.all(warp[~drawn] == 1.0)
    assert np.array_equal(new_len[~drawn], lengths[~drawn])
    changed = np.any(out != x, axis=1) | (warp != 1.0)
    assert np.all(changed[drawn])


def test_different_keys_give_different_augmentations(audio, keys):
    x = np.tile(audio[:1], (B, 1))
    lengths = np.full(B, LENGTHS[0], np.int32)
    feats, _ = features_jit(x, lengths, keys, frontend=FRONT, augment=ALL_ON)
    feats = np.asarray(feats).reshape(B, -1)
    for i in range(B):
        for j in range(i + 1, B):
            assert not np.allclose(feats[i], feats[j])


def test_augmentation_is_deterministic_for_the_same_keys(audio, keys):
    a = features_jit(audio, LENGTHS, keys, frontend=FRONT, augment=ALL_ON)
    b = features_jit(
        audio, LENGTHS, jax.random.split(jax.random.key(42), B), frontend=FRONT, augment=ALL_ON
    )
    np.testing.assert_array_equal(np.asarray(a[0]), np.asarray(b[0]))
    np.testing.assert_array_equal(np.asarray(a[1]), np.asarray(b[1]))


# ------------------------------------------------------------------------------------------
# make_features
# ------------------------------------------------------------------------------------------


def test_make_features_clean_paths_equal_log_mel(audio, keys):
    clean, flen = log_mel_jit(audio, LENGTHS, FRONT)
    for aug, k in [(None, keys), (ALL_ON, None), (AugmentConfig(), keys)]:
        feats, fl = features_jit(audio, LENGTHS, k, frontend=FRONT, augment=aug)
        np.testing.assert_array_equal(np.asarray(feats), np.asarray(clean))
        np.testing.assert_array_equal(np.asarray(fl), np.asarray(flen))


def test_make_features_augmented_keeps_shapes_and_padding(audio, keys):
    feats, flen = features_jit(audio, LENGTHS, keys, frontend=FRONT, augment=ALL_ON)
    clean, _ = log_mel_jit(audio, LENGTHS, FRONT)
    assert feats.shape == clean.shape and feats.dtype == jnp.float32
    feats, flen = np.asarray(feats), np.asarray(flen)
    assert np.all(np.isfinite(feats))
    for i in range(B):
        assert np.all(feats[i, flen[i] :] == 0)
    assert not np.allclose(feats, np.asarray(clean))


# ------------------------------------------------------------------------------------------
# Configuration
# ------------------------------------------------------------------------------------------


def test_from_config_and_enabled():
    import ml_collections

    c = ml_collections.ConfigDict({"noise_prob": 0.5, "snr_db": [5, 15], "time_masks": 3})
    cfg = AugmentConfig.from_config(c)
    assert cfg.snr_db == (5.0, 15.0) and cfg.time_masks == 3 and cfg.enabled
    assert hash(cfg) == hash(AugmentConfig(noise_prob=0.5, snr_db=(5.0, 15.0), time_masks=3))
    assert not AugmentConfig().enabled and only(freq_mask_prob=0.1).enabled
    with pytest.raises(ConfigError, match="augment.noise_probability"):
        AugmentConfig.from_config({"noise_probability": 0.5})


@pytest.mark.parametrize(
    "fields,setting",
    [
        ({"noise_prob": 1.5}, "noise_prob"),
        ({"gain_db": (6.0, -6.0)}, "gain_db"),
        ({"speed": (0.0, 1.1)}, "speed"),
        ({"noise_color": "brown"}, "noise_color"),
        ({"time_masks": -1}, "time_masks"),
        ({"snr_db": (1.0,)}, "snr_db"),
    ],
)
def test_from_config_validates_values(fields, setting):
    with pytest.raises(ConfigError, match=f"augment.{setting}"):
        AugmentConfig.from_config(fields)
