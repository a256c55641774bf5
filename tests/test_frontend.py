"""The on-device log-mel front-end: parity with librosa, frame counts, masking, no retracing.

Tolerances (float32 jnp vs librosa in float64 on the same clip): mel power within 1e-4 relative
wherever it is above 1e-6 of the clip's peak, and ``log(max(mel, 1e-6))`` within 2e-4 absolute.
Measured on speech-like clips: ~3e-5 in log, ~2e-4 dB for ``power_to_db``.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import librosa
import ml_collections
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ser_jax.errors import ConfigError
from ser_jax.frontend.logmel import (
    FrontendConfig,
    floor_div,
    frame_lengths,
    frame_mask,
    log_mel,
    mel_filterbank,
    normalize,
    num_frames,
    power_spectrogram,
    window,
)

SR = 16000
LOG_ATOL = 2e-4
POWER_RTOL = 1e-4
RAW = dict(log="none", normalize="none")  # mel power, for parity on the linear scale

log_mel_jit = jax.jit(log_mel, static_argnums=(2,))


def speech_like(n: int, seed: int) -> np.ndarray:
    """Harmonics with a moving pitch, an envelope, a little noise and a silent gap."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    f0 = 120 + 60 * np.sin(2 * np.pi * 1.5 * t + seed)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    y = sum(np.sin(k * phase) / k for k in range(1, 15))
    y = y * (0.3 + 0.7 * np.abs(np.sin(2 * np.pi * 2 * t))) + 0.01 * rng.standard_normal(n)
    y[n // 3 : n // 3 + n // 10] = 0.0
    return (0.2 * y).astype(np.float32)


def librosa_mel(y: np.ndarray, cfg: FrontendConfig) -> np.ndarray:
    """librosa's mel spectrogram (frames, mel) in float64."""
    s = librosa.feature.melspectrogram(
        y=y.astype(np.float64),
        sr=cfg.sample_rate,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        win_length=cfg.win_length,
        window=cfg.window,
        center=cfg.center,
        pad_mode=cfg.pad_mode,
        power=cfg.power,
        n_mels=cfg.n_mels,
        fmin=cfg.fmin,
        fmax=cfg.fmax,
        htk=cfg.mel_scale == "htk",
        norm=cfg.mel_norm,
    )
    return s.T


def batch(clips: list[np.ndarray], samples: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    samples = samples or max(len(c) for c in clips)
    audio = np.zeros((len(clips), samples), np.float32)
    for i, c in enumerate(clips):
        audio[i, : len(c)] = c
    return audio, np.array([len(c) for c in clips], np.int32)


def assert_mel_parity(clips: list[np.ndarray], cfg: FrontendConfig, samples=None) -> None:
    raw = dataclasses.replace(cfg, **RAW)
    audio, lengths = batch(clips, samples)
    mel, flen = log_mel_jit(audio, lengths, raw)
    for i, y in enumerate(clips):
        ref = librosa_mel(y, cfg)
        assert int(flen[i]) == ref.shape[0]
        got = np.asarray(mel[i, : ref.shape[0]], np.float64)
        big = ref > 1e-6 * ref.max()
        np.testing.assert_allclose(got[big], ref[big], rtol=POWER_RTOL, atol=0)
        floor = cfg.log_floor
        d = np.abs(np.log(np.maximum(got, floor)) - np.log(np.maximum(ref, floor)))
        assert d.max() <= LOG_ATOL, d.max()
        assert np.all(np.asarray(mel[i, ref.shape[0] :]) == 0)


# ------------------------------------------------------------------------------------------
# Parity with librosa
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cfg",
    [
        FrontendConfig(),
        FrontendConfig(pad_mode="reflect"),
        FrontendConfig(center=False),
        FrontendConfig(window="hamming", mel_scale="htk", mel_norm=None, power=1.0),
        FrontendConfig(n_fft=1024, win_length=1024, hop_length=256, n_mels=80, fmin=50, fmax=7600),
    ],
    ids=["default", "reflect", "nocenter", "hamming-htk-mag", "1024"],
)
def test_mel_matches_librosa(cfg):
    clips = [speech_like(4801, 0), speech_like(3333, 1)]  # odd lengths
    assert_mel_parity(clips, cfg)


@settings(max_examples=6, derandomize=True, deadline=None)
@given(
    n_fft=st.sampled_from([128, 200, 256, 400]),
    hop=st.integers(40, 160),
    win_frac=st.sampled_from([0.5, 0.8, 1.0]),
    n_mels=st.integers(8, 40),
    scale=st.sampled_from(["slaney", "htk"]),
    norm=st.sampled_from(["slaney", None]),
    power=st.sampled_from([1.0, 2.0]),
    win=st.sampled_from(["hann", "hamming"]),
    pad=st.sampled_from(["constant", "reflect"]),
)
def test_mel_matches_librosa_property(n_fft, hop, win_frac, n_mels, scale, norm, power, win, pad):
    cfg = FrontendConfig(
        n_fft=n_fft,
        hop_length=hop,
        win_length=int(n_fft * win_frac),
        n_mels=n_mels,
        mel_scale=scale,
        mel_norm=norm,
        power=power,
        window=win,
        pad_mode=pad,
    )
    assert_mel_parity([speech_like(2001, 2), speech_like(1500, 3)], cfg, samples=2400)


@pytest.mark.filterwarnings("ignore:n_fft=512 is too large")
@pytest.mark.parametrize("pad_mode", ["constant", "reflect"])
def test_clip_shorter_than_n_fft(pad_mode):
    # 200 samples < n_fft // 2: reflect padding reflects more than once, as numpy does
    cfg = FrontendConfig(pad_mode=pad_mode)
    assert_mel_parity([speech_like(200, 4), speech_like(1000, 5)], cfg, samples=1100)


def test_log_and_db_match_librosa():
    y = speech_like(4000, 6)
    audio, lengths = batch([y], 4500)
    for log in ("log", "db"):
        cfg = FrontendConfig(log=log, normalize="none")
        feats, flen = log_mel_jit(audio, lengths, cfg)
        s = librosa_mel(y, cfg)
        if log == "log":
            ref, tol = np.log(np.maximum(s, cfg.log_floor)), LOG_ATOL
        else:
            ref = librosa.power_to_db(s, ref=1.0, amin=cfg.log_floor, top_db=cfg.top_db)
            tol = 10 / np.log(10) * LOG_ATOL
        np.testing.assert_allclose(np.asarray(feats[0, : int(flen[0])]), ref, atol=tol, rtol=0)
    # utterance normalisation = the same statistics on librosa's frames
    feats, flen = log_mel_jit(audio, lengths, FrontendConfig())
    ref = np.log(np.maximum(librosa_mel(y, FrontendConfig()), 1e-6))
    ref = (ref - ref.mean(0)) / np.sqrt(ref.var(0) + 1e-5)
    np.testing.assert_allclose(np.asarray(feats[0, : int(flen[0])]), ref, atol=1e-3, rtol=0)


def test_power_spectrogram_matches_librosa_stft():
    cfg = FrontendConfig(n_fft=256, win_length=200, hop_length=80)
    y = speech_like(2000, 7)
    got = np.asarray(jax.jit(power_spectrogram, static_argnums=1)(y[None], cfg)[0])
    ref = (
        np.abs(
            librosa.stft(
                y.astype(np.float64), n_fft=256, hop_length=80, win_length=200, pad_mode="constant"
            )
        )
        ** 2
    ).T
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, atol=1e-5 * ref.max(), rtol=1e-3)


@pytest.mark.parametrize(
    "cfg",
    [
        FrontendConfig(),
        FrontendConfig(mel_scale="htk", mel_norm=None, n_mels=40),
        FrontendConfig(sample_rate=22050, n_fft=1024, n_mels=128, fmin=30.0, fmax=9000.0),
    ],
)
def test_mel_filterbank_equals_librosa(cfg):
    ref = librosa.filters.mel(
        sr=cfg.sample_rate,
        n_fft=cfg.n_fft,
        n_mels=cfg.n_mels,
        fmin=cfg.fmin,
        fmax=cfg.fmax,
        htk=cfg.mel_scale == "htk",
        norm=cfg.mel_norm,
    ).T
    fb = mel_filterbank(cfg)
    assert fb.shape == (cfg.n_fft // 2 + 1, cfg.n_mels) and fb.dtype == np.float32
    np.testing.assert_allclose(fb, ref, rtol=1e-6, atol=1e-9)
    warped = np.asarray(mel_filterbank(cfg, jnp.ones(2)))
    assert warped.shape == (2, *fb.shape)
    np.testing.assert_allclose(warped[1], fb, rtol=1e-5, atol=1e-5 * fb.max())


@pytest.mark.parametrize("name,win", [("hann", 400), ("hamming", 300), ("hann", 512)])
def test_window_equals_librosa(name, win):
    cfg = FrontendConfig(window=name, win_length=win)
    ref = librosa.util.pad_center(librosa.filters.get_window(name, win, fftbins=True), size=512)
    np.testing.assert_allclose(window(cfg), ref, atol=1e-7)


@pytest.mark.parametrize("center", [True, False])
def test_num_frames_matches_librosa(center):
    cfg = FrontendConfig(center=center, n_fft=256, hop_length=100, win_length=256)
    lengths = [256, 257, 299, 300, 301, 1000, 1999]
    for n in lengths:
        ref = librosa.stft(np.ones(n), n_fft=256, hop_length=100, center=center).shape[1]
        assert num_frames(n, cfg) == ref
    got = frame_lengths(jnp.array(lengths), cfg)
    assert got.dtype == jnp.int32
    assert got.tolist() == [num_frames(n, cfg) for n in lengths]
    assert num_frames(32000, FrontendConfig()) == 201  # 2 s at 16 kHz, hop 160


# ------------------------------------------------------------------------------------------
# Padding, masking, normalisation
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pad_mode", ["constant", "reflect"])
def test_padding_does_not_change_valid_frames(pad_mode):
    cfg = FrontendConfig(pad_mode=pad_mode)
    y = speech_like(3001, 8)
    a, la = batch([y])
    b, lb = batch([y, speech_like(1200, 9)], samples=6400)
    b[1, 1200:] = 0.5  # junk after the true length must not leak either
    fa, na = log_mel_jit(a, la, cfg)
    fb, nb = log_mel_jit(b, lb, cfg)
    n = int(na[0])
    assert int(nb[0]) == n
    np.testing.assert_allclose(np.asarray(fb[0, :n]), np.asarray(fa[0, :n]), atol=1e-4)
    assert np.all(np.asarray(fb[0, n:]) == 0) and np.all(np.asarray(fb[1, int(nb[1]) :]) == 0)
    clean, _ = log_mel_jit(*batch([speech_like(1200, 9)], samples=6400), cfg)
    np.testing.assert_allclose(np.asarray(fb[1]), np.asarray(clean[0]), atol=1e-4)


def test_normalisation_ignores_padded_frames():
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((2, 12, 5)).astype(np.float32) + 3.0
    lengths = np.array([7, 12])
    junk = feats.copy()
    junk[0, 7:] = 1e6
    out = np.asarray(normalize(jnp.asarray(junk), jnp.asarray(lengths), "utterance"))
    valid = feats[0, :7]
    ref = (valid - valid.mean(0)) / np.sqrt(valid.var(0) + 1e-5)
    np.testing.assert_allclose(out[0, :7], ref, atol=1e-5)
    assert np.all(out[0, 7:] == 0)
    np.testing.assert_allclose(out[1].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(out[1].std(0), 1, atol=1e-3)
    raw = np.asarray(normalize(jnp.asarray(junk), jnp.asarray(lengths), "none"))
    assert np.all(raw[0, 7:] == 0) and np.array_equal(raw[0, :7], junk[0, :7])


def test_frame_mask():
    m = np.asarray(frame_mask(jnp.array([0, 2, 4]), 4))
    assert m.tolist() == [[False] * 4, [True, True, False, False], [True] * 4]


# ------------------------------------------------------------------------------------------
# Compilation
# ------------------------------------------------------------------------------------------


def test_second_batch_of_same_shape_does_not_retrace():
    traces = []

    @functools.partial(jax.jit, static_argnums=2)
    def counted(audio, lengths, cfg):
        traces.append(1)
        return log_mel(audio, lengths, cfg)

    cfg = FrontendConfig(n_mels=16)
    rng = np.random.default_rng(0)
    for _ in range(3):
        audio = rng.standard_normal((2, 1600)).astype(np.float32)
        counted(audio, rng.integers(800, 1600, 2).astype(np.int32), cfg)
    assert len(traces) == 1
    counted(audio, np.array([1600, 1600], np.int32), FrontendConfig(n_mels=16))  # equal config
    assert len(traces) == 1


# ------------------------------------------------------------------------------------------
# Configuration
# ------------------------------------------------------------------------------------------


def test_from_config_reads_config_dict_and_rejects_unknown_keys():
    c = ml_collections.ConfigDict(
        {"sample_rate": 16000, "n_fft": 512, "mel_norm": "slaney", "fmax": 8000.0}
    )
    cfg = FrontendConfig.from_config(c)
    assert cfg == FrontendConfig(fmax=8000.0) and hash(cfg) == hash(FrontendConfig(fmax=8000.0))
    assert FrontendConfig.from_config({"mel_norm": None, "fmax": None}).mel_norm is None
    with pytest.raises(ConfigError, match="n_ftt"):
        FrontendConfig.from_config({"n_ftt": 512})


@pytest.mark.parametrize(
    "fields,setting",
    [
        ({"win_length": 600}, "win_length"),
        ({"window": "blackman"}, "window"),
        ({"fmax": 9000.0}, "fmax"),
        ({"pad_mode": "edge"}, "pad_mode"),
        ({"n_mels": 0}, "n_mels"),
        ({"hop_length": 1.5}, "hop_length"),
        ({"log": "log10"}, "log"),
        ({"normalize": "global"}, "normalize"),
        ({"power": 3.0}, "power"),
        ({"mfcc": 65}, "mfcc"),
        ({"mfcc": -1}, "mfcc"),
        ({"descriptors": "maybe"}, "descriptors"),
    ],
)
def test_from_config_validates_values(fields, setting):
    with pytest.raises(ConfigError, match=f"frontend.{setting}"):
        FrontendConfig.from_config(fields)


def test_cpu_blocked_path_equals_whole_batch(monkeypatch):
    # On CPU the batch runs in lax.map blocks of ~_CPU_BLOCK_FRAMES frames; a batch that no
    # block size near the target divides (5 -> 2 blocks of 3, one dummy example) must give
    # the same features as one vmap.
    import ser_jax.frontend.logmel as frontend

    cfg = FrontendConfig(n_mels=16, log="db", top_db=40.0)
    clips = [speech_like(n, 10 + i) for i, n in enumerate([1600, 1201, 800, 1599, 333])]
    audio, lengths = batch(clips)
    warp = jnp.array([1.0, 1.1, 0.9, 1.0, 1.05])

    def run(block_frames):
        monkeypatch.setattr(frontend, "_CPU_BLOCK_FRAMES", block_frames)
        # fresh functions: jit caches traces per function, and the block size is read at trace
        plain = jax.jit(lambda a, n: log_mel(a, n, cfg))
        warped = jax.jit(lambda a, n, w: log_mel(a, n, cfg, w))
        looped = "while" in plain.lower(audio, lengths).as_text()
        return looped, plain(audio, lengths), warped(audio, lengths, warp)[0]

    looped, (whole, n_whole), warped_whole = run(10**9)
    assert not looped
    looped, (blocked, n_blocked), warped_blocked = run(4 * num_frames(1600, cfg))
    assert looped
    np.testing.assert_allclose(np.asarray(blocked), np.asarray(whole), atol=1e-5)
    assert np.array_equal(np.asarray(n_blocked), np.asarray(n_whole))
    np.testing.assert_allclose(np.asarray(warped_blocked), np.asarray(warped_whole), atol=1e-5)


@pytest.mark.parametrize("order", [1, 2])
def test_deltas_match_librosa_per_clip(order):
    """delta / delta-delta equal librosa.feature.delta(mode="nearest") on each clip's valid
    frames, whatever padding follows, and padded frames are 0."""
    import librosa

    from ser_jax.frontend.logmel import delta

    rng = np.random.default_rng(order)
    x = rng.normal(size=(3, 60, 8)).astype(np.float32)
    lengths = np.array([60, 31, 9])
    x[1, 31:] = 1e3  # garbage padding
    got = np.asarray(delta(jnp.asarray(x), jnp.asarray(lengths), order))
    for b, n in enumerate(lengths):
        want = librosa.feature.delta(x[b, :n].T, width=9, order=order, mode="nearest").T
        np.testing.assert_allclose(got[b, :n], want, atol=1e-5)
        assert (got[b, n:] == 0).all()


def test_features_with_deltas_have_three_channels_and_masks_hit_all():
    from ser_jax.frontend.augment import AugmentConfig
    from ser_jax.frontend.features import make_features

    cfg = FrontendConfig(n_mels=16, deltas=2)
    audio = jnp.asarray(np.random.default_rng(0).normal(size=(2, 8000)), jnp.float32)
    lengths = jnp.array([8000, 5000])
    clean, flen = make_features(audio, lengths, None, frontend=cfg, augment=None)
    assert clean.shape == (2, 51, 16, 3)
    aug = AugmentConfig(freq_mask_prob=1.0, freq_masks=1, freq_mask_max_bins=6)
    keys = jax.random.split(jax.random.key(3), 2)
    masked, _ = make_features(audio, lengths, keys, frontend=cfg, augment=aug)
    zeroed = np.asarray((masked == 0) & (clean != 0))
    # every masked mel band is masked in all three channels
    np.testing.assert_array_equal(zeroed[..., 0], zeroed[..., 1])
    np.testing.assert_array_equal(zeroed[..., 0], zeroed[..., 2])
    assert zeroed.any()


# ------------------------------------------------------------------------------------------
# Cepstral coefficients and spectral descriptors
# ------------------------------------------------------------------------------------------


def test_mfcc_and_descriptors_match_librosa_on_each_clip_whatever_the_padding():
    """``frontend.mfcc`` equals librosa.feature.mfcc on power_to_db of the mel spectrogram;
    the descriptors equal librosa's spectral centroid, bandwidth, roll-off and flatness of the
    same STFT (log-compressed), the log energy ln(sum |X|^2), and the zero-crossing rate the
    sign changes inside each window; padding changes none of them and reads as 0."""
    from ser_jax.frontend.logmel import DESCRIPTORS

    cfg = FrontendConfig(log="db", normalize="none", mfcc=13, descriptors=True)
    assert cfg.n_bands == 13 + len(DESCRIPTORS) == 19
    clips = [speech_like(5000, 11), speech_like(2300, 12)]
    audio, lengths = batch(clips, 6400)
    audio[1, 2300:] = 0.7  # junk after the true length
    feats, flen = log_mel_jit(audio, lengths, cfg)
    assert feats.shape == (2, num_frames(6400, cfg), 19)
    w = window(cfg)
    inside = np.flatnonzero(w > 0)
    for i, y in enumerate(clips):
        n = int(flen[i])
        got = np.asarray(feats[i, :n], np.float64)
        assert np.all(np.asarray(feats[i, n:]) == 0)
        mel = librosa_mel(y, cfg).T
        ref = librosa.feature.mfcc(
            S=librosa.power_to_db(mel, ref=1.0, amin=cfg.log_floor, top_db=cfg.top_db), n_mfcc=13
        ).T
        np.testing.assert_allclose(got[:, :13], ref, atol=2e-3 * np.abs(ref).max(), rtol=0)
        mag = np.abs(librosa.stft(y.astype(np.float64), n_fft=512, hop_length=160, win_length=400))
        kw = dict(S=mag, sr=SR, n_fft=512, hop_length=160)
        centroid = librosa.feature.spectral_centroid(**kw)[0]
        spread = librosa.feature.spectral_bandwidth(**kw)[0]
        rolloff = librosa.feature.spectral_rolloff(**kw, roll_percent=0.85)[0]
        flat = librosa.feature.spectral_flatness(S=mag)[0]
        energy = np.log(np.maximum((mag**2).sum(0), cfg.log_floor))
        loud = (mag**2).sum(0) > 1e-6 * (mag**2).sum(0).max()  # roll-off ties need a spectrum
        for k, want in [(0, energy), (2, np.log1p(centroid)), (3, np.log1p(spread))]:
            np.testing.assert_allclose(got[:, 13 + k], want, atol=1e-4, rtol=0)
        np.testing.assert_allclose(got[loud, 13 + 4], np.log1p(rolloff)[loud], atol=1e-4)
        np.testing.assert_allclose(got[:, 13 + 5], np.log(flat), atol=5e-3)
        # zero crossings: sign changes between neighbours inside each (centred) window
        padded = np.pad(y, 256)
        frames = np.stack([padded[t * 160 : t * 160 + 512] for t in range(n)])[:, inside]
        rate = (np.signbit(frames[:, 1:]) != np.signbit(frames[:, :-1])).mean(1)
        np.testing.assert_allclose(got[:, 13 + 1], rate, atol=1e-6)
        assert rate.min() < rate.max()  # a real check: the rate varies across frames


def test_mfcc_features_are_normalised_and_take_deltas_like_the_log_mel():
    """With mfcc and descriptors the normalisations, deltas and dataset statistics work on the
    bands the front-end hands on (19 here), not on n_mels."""
    from ser_jax.frontend.features import dataset_feature_stats, make_features

    cfg = FrontendConfig(n_mels=32, mfcc=13, descriptors=True, deltas=2, normalize="dataset")
    waves = [speech_like(4000, 20), speech_like(6000, 21)]
    stats = dataset_feature_stats(waves, cfg, batch_size=2, max_samples=8000, bucket_samples=8000)
    assert stats["mean"].shape == stats["std"].shape == (19,)
    audio, lengths = batch(waves, 8000)
    feats, flen = make_features(
        jnp.asarray(audio),
        jnp.asarray(lengths),
        None,
        frontend=cfg,
        augment=None,
        stats=(jnp.asarray(stats["mean"]), jnp.asarray(stats["std"])),
    )
    assert feats.shape == (2, num_frames(8000, cfg), 19, 3)
    valid = np.concatenate([np.asarray(feats[i, : int(flen[i]), :, 0]) for i in range(2)])
    np.testing.assert_allclose(valid.mean(0), 0.0, atol=1e-3)
    # 1 up to the variance floor of the statistics (1e-5: it shows on the zero-crossing rate,
    # whose variance is ~1e-4)
    assert np.all(valid.std(0) <= 1.0 + 1e-3) and np.all(valid.std(0) > 0.9)
    np.testing.assert_allclose(np.median(valid.std(0)), 1.0, atol=1e-3)


@pytest.mark.parametrize(
    "fields",
    [{}, {"log": "db"}, {"center": False}, {"pad_mode": "reflect"}, {"n_fft": 256, "n_mels": 32}],
)
def test_dft_spectrum_equals_the_rfft_log_mel(fields):
    """frontend.spectrum="dft" (the ONNX export's front-end: the power spectrum as two real
    matmuls) gives the rfft path's log-mel within 1e-4, frame counts exactly."""
    win = min(400, fields.get("n_fft", 512))
    cfg = FrontendConfig(win_length=win, **fields)
    dft = dataclasses.replace(cfg, spectrum="dft")
    audio = np.stack([speech_like(16000, 0), speech_like(16000, 1), speech_like(16000, 2)])
    lengths = np.array([16000, 9000, 700], np.int32)
    ref, ref_frames = log_mel_jit(jnp.asarray(audio), jnp.asarray(lengths), cfg)
    got, got_frames = log_mel_jit(jnp.asarray(audio), jnp.asarray(lengths), dft)
    np.testing.assert_array_equal(got_frames, ref_frames)
    assert float(jnp.abs(got - ref).max()) <= 1e-4
    with pytest.raises(ConfigError, match="frontend.spectrum='fft'"):
        FrontendConfig(spectrum="fft")


def test_signbit_by_comparisons_equals_jnp_signbit():
    """The zero-crossing rate's sign test (``_signbit``: comparisons, as onnxruntime runs no
    bit cast) agrees with ``jnp.signbit`` on every finite value and infinity, -0.0 too."""
    from ser_jax.frontend.logmel import _signbit

    x = jnp.array([-1.0, -0.0, 0.0, 1e-38, -1e-38, 1e-45, -1e-45, 3.0, -jnp.inf, jnp.inf])
    np.testing.assert_array_equal(_signbit(x), jnp.signbit(x))


def test_floor_div_equals_python_floor_division():
    n = np.arange(-700, 701, dtype=np.int32)
    for d in (1, 7, 160):
        np.testing.assert_array_equal(np.asarray(floor_div(jnp.asarray(n), d)), n // d)
