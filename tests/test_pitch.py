"""The pitch (F0) track: known tones, noise, padding, librosa's pYIN on real speech, channels."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ser_jax.errors import ConfigError
from ser_jax.frontend.logmel import FrontendConfig, num_frames
from ser_jax.frontend.pitch import pitch_track

CFG = FrontendConfig(pitch=True)
SR = 16000
track = jax.jit(pitch_track, static_argnums=2)


def harmonic(f0: float, seconds: float = 1.0, harmonics: int = 9) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.1 * sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, harmonics + 1))).astype(
        np.float32
    )


def f0_of(features: np.ndarray) -> np.ndarray:
    """F0 in Hz from the (voicing, voicing * log2(F0/150), ...) channels."""
    return 150.0 * 2 ** (features[..., 1] / np.maximum(features[..., 0], 1e-9))


def test_tones_give_their_f0_and_noise_is_unvoiced():
    noise = np.random.default_rng(0).standard_normal(SR).astype(np.float32) * 0.1
    audio = np.stack([harmonic(90.0), harmonic(120.0), harmonic(233.0), noise])
    out = np.asarray(track(audio, np.full(4, SR), CFG))
    assert out.shape == (4, num_frames(SR, CFG), 3)
    middle = out[:, 10:-10]  # frames whose 40 ms window lies inside the clip
    for i, f0 in enumerate((90.0, 120.0, 233.0)):
        assert middle[i, :, 0].min() > 0.95
        np.testing.assert_allclose(f0_of(middle[i]), f0, rtol=0.005)
        # the contour channel: a steady tone has none
        assert np.abs(middle[i, :, 2]).max() < 0.03  # edge frames pull the mean a little
    assert middle[3, :, 0].mean() < 0.4


def test_a_glide_has_a_contour_and_the_warp_moves_log_f0():
    t = np.arange(SR) / SR
    f0 = 100.0 * 2**t  # one octave up in a second
    phase = 2 * np.pi * np.cumsum(f0) / SR
    glide = (0.1 * sum(np.sin(k * phase) / k for k in range(1, 9))).astype(np.float32)
    out = np.asarray(track(glide[None], np.array([SR]), CFG))[0, 10:-10]
    expected = 100.0 * 2 ** (np.arange(10, num_frames(SR, CFG) - 10) * 160 / SR)
    np.testing.assert_allclose(f0_of(out), expected, rtol=0.02)
    contour = out[:, 2] / out[:, 0]
    assert contour[0] < -0.35 and contour[-1] > 0.35  # log2 F0 around the clip's mean
    warped = np.asarray(pitch_track(glide[None], np.array([SR]), CFG, jnp.array([1.25])))[0]
    np.testing.assert_allclose(
        warped[10:-10, 1], out[:, 1] + out[:, 0] * np.log2(1.25), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(warped[10:-10, 2], out[:, 2], atol=1e-6)


def test_padding_never_leaks_into_the_track():
    clip = harmonic(150.0, 0.6)
    n = len(clip)
    garbage = np.random.default_rng(1).standard_normal(SR).astype(np.float32)
    short = np.asarray(track(clip[None], np.array([n]), CFG))[0]
    long = np.asarray(track(np.concatenate([clip, garbage])[None], np.array([n]), CFG))[0]
    frames = num_frames(n, CFG)
    np.testing.assert_allclose(long[:frames], short, rtol=1e-5, atol=1e-6)
    assert not long[frames:].any()


@pytest.mark.parametrize("sample_rate", [16000, 11025])  # a 640- and a 441-sample window
def test_dft_autocorrelation_gives_the_fft_track(sample_rate):
    """frontend.spectrum="dft" (the ONNX export's front-end: the autocorrelation as real
    matmuls on the window's own samples, no FFT, no complex values) gives the FFT's pitch
    features within float32 rounding: tones, a glide, noise, a padded clip, and a window of
    odd length, whose own samples sit one off the centre."""
    cfg = FrontendConfig(sample_rate=sample_rate, pitch=True)
    dft = dataclasses.replace(cfg, spectrum="dft")
    t = np.arange(sample_rate) / sample_rate
    phase = 2 * np.pi * np.cumsum(100.0 * 2**t) / sample_rate
    glide = (0.1 * sum(np.sin(k * phase) / k for k in range(1, 9))).astype(np.float32)
    noise = np.random.default_rng(2).standard_normal(sample_rate).astype(np.float32) * 0.1
    tone = (0.1 * np.sin(2 * np.pi * 180.0 * t) + 0.05 * np.sin(2 * np.pi * 360.0 * t)).astype(
        np.float32
    )
    audio = np.stack([tone, glide, noise, tone])
    lengths = np.array([sample_rate] * 3 + [sample_rate // 3])
    want = np.asarray(track(audio, lengths, cfg))
    got = np.asarray(track(audio, lengths, dft))
    assert np.abs(got - want).max() <= 1e-4
    assert want[:3, :, 0].max() > 0.9  # voiced frames were compared, not only silence


def test_config_checks_name_the_setting():
    with pytest.raises(ConfigError, match="frontend.pitch=True: needs center=True"):
        FrontendConfig(pitch=True, center=False)
    with pytest.raises(ConfigError, match="frontend.pitch_fmin"):
        FrontendConfig(pitch=True, pitch_fmin=400.0, pitch_fmax=300.0)
    with pytest.raises(ConfigError, match="frontend.pitch_fmax"):
        FrontendConfig(pitch=True, pitch_fmin=490.0, pitch_fmax=500.0)
    assert FrontendConfig(pitch=True, deltas=2).channels == 6


def test_real_speech_follows_librosa_pyin(emodb_dir: Path):
    import librosa

    from ser_jax.data.audio import load_audio

    for name in ("03a01Wa.wav", "08a01Fd.wav", "15a01La.wav"):
        x = load_audio(next(emodb_dir.rglob(name)), SR)
        ours = np.asarray(track(x[None], np.array([len(x)]), CFG))[0]
        f0, voiced, _ = librosa.pyin(
            x, fmin=60, fmax=500, sr=SR, frame_length=1024, hop_length=160, center=True
        )
        both = voiced & (ours[: len(voiced), 0] > 0.6)
        assert both.sum() > 40, name
        rel = np.abs(f0_of(ours[: len(voiced)][both]) / f0[both] - 1)
        assert np.median(rel) < 0.03, name
        assert (rel > 0.1).mean() < 0.2, name  # octave errors are rare


def test_features_and_a_model_take_the_pitch_channels():
    from ser_jax.frontend.features import make_features
    from ser_jax.models import CNNLSTM

    cfg = FrontendConfig(n_mels=16, deltas=1, pitch=True)
    audio = jnp.asarray(np.stack([harmonic(120.0, 0.5), harmonic(200.0, 0.5)]))
    feats, flen = make_features(audio, jnp.array([8000, 6000]), None, frontend=cfg, augment=None)
    assert feats.shape == (2, 51, 16, cfg.channels)
    np.testing.assert_array_equal(feats[..., 2], feats[..., :1, 2].repeat(16, axis=-1))
    assert float(feats[1, 45:, :, 2:].max()) == 0.0  # padded frames of the shorter clip
    model = CNNLSTM(num_classes=3, filters=(4,), pools=((2, 2),), lstm_hidden=8)
    init = functools.partial(model.init, jax.random.key(0))
    variables = init(feats, flen)
    assert variables["params"]["block0"]["Conv_0"]["kernel"].shape[2] == cfg.channels

    # pitch_level=False: the same features without the log-F0 channel (voicing, contour)
    rel = FrontendConfig(n_mels=16, deltas=1, pitch=True, pitch_level=False)
    assert rel.channels == cfg.channels - 1 == 4
    feats_rel, _ = make_features(audio, jnp.array([8000, 6000]), None, frontend=rel, augment=None)
    np.testing.assert_array_equal(feats_rel, feats[..., [0, 1, 2, 4]])
    assert model.apply(variables, feats, flen).shape == (2, 3)


def test_a_run_with_pitch_channels_trains_restores_and_predicts(tmp_path):
    from conftest import tiny_config

    from ser_jax.serving.restore import load_model
    from ser_jax.training.train import train_and_evaluate

    c = tiny_config(epochs=2)
    c.frontend.pitch = True
    results = train_and_evaluate(c, tmp_path / "run")
    assert np.isfinite(results["test_loss"])
    model = load_model(tmp_path / "run")
    assert model.variables.params["block0"]["Conv_0"]["kernel"].shape[2] == 4
    probs = model.probabilities([harmonic(140.0, 1.2), harmonic(210.0, 0.9)])
    assert probs.shape == (2, len(model.label_names))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
