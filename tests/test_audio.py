"""Audio loading: formats, rates, channels, and a typed error with a useful message per bad file."""

from __future__ import annotations

import logging
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser_jax.data.audio import audio_info, load_audio, load_corpus
from ser_jax.data.corpora import load_manifest
from ser_jax.data.manifest import Utterance
from ser_jax.errors import AudioContentError, AudioDecodeError

# --- good files ----------------------------------------------------------------------------


def test_22050_hz_two_seconds_becomes_32000_samples(tmp_path: Path, write_tone) -> None:
    path = write_tone(tmp_path / "a.wav", seconds=2.0, sample_rate=22050)
    wave = load_audio(path)
    assert wave.dtype == np.float32 and wave.shape == (32000,)
    assert wave.flags["C_CONTIGUOUS"]


def test_44100_hz_stereo_is_mixed_and_resampled(tmp_path: Path, write_tone) -> None:
    # left 0.5 sin, right 0.25 sin -> mono 0.375 sin; 1 kHz must stay at 1 kHz
    path = write_tone(tmp_path / "s.wav", seconds=1.3, sample_rate=44100, channels=2, freq=1000.0)
    wave = load_audio(path, 16000)
    assert wave.shape == (20800,)
    mid = wave[2000:-2000]
    assert np.max(np.abs(mid)) == pytest.approx(0.375, abs=2e-3)
    spectrum = np.abs(np.fft.rfft(mid * np.hanning(len(mid))))
    peak_hz = np.argmax(spectrum) * 16000 / len(mid)
    assert abs(peak_hz - 1000.0) < 2.0


def test_16k_file_of_odd_length_is_unchanged(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    ints = rng.integers(-20000, 20000, size=12345, dtype=np.int16)
    sf.write(tmp_path / "odd.wav", ints, 16000, subtype="PCM_16")
    wave = load_audio(tmp_path / "odd.wav", 16000)
    np.testing.assert_array_equal(wave, ints.astype(np.float32) / 32768)


@pytest.mark.parametrize("suffix", [".flac", ".ogg"])
def test_flac_and_ogg(tmp_path: Path, write_tone, suffix: str) -> None:
    path = write_tone(tmp_path / f"x{suffix}", seconds=0.8, sample_rate=48000)
    wave = load_audio(path, 16000)
    assert abs(len(wave) - 12800) <= 1 and np.max(np.abs(wave)) > 0.4


def test_audio_info_reports_the_native_format(tmp_path: Path, write_tone) -> None:
    info = audio_info(write_tone(tmp_path / "a.wav", seconds=1.0, sample_rate=44100, channels=2))
    assert (info.sample_rate, info.channels, info.frames) == (44100, 2, 44100)
    assert info.duration == pytest.approx(1.0) and info.format == "WAV"


# --- bad files: one typed error each, message checked ---------------------------------------


def _valid_wav_bytes(tmp_path: Path, write_tone) -> bytes:
    return write_tone(tmp_path / "ok.wav", seconds=0.5).read_bytes()


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AudioDecodeError, match="nope.wav: file not found"):
        load_audio(tmp_path / "nope.wav")


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.wav").touch()
    with pytest.raises(AudioDecodeError, match=r"empty\.wav: empty file \(0 bytes\)"):
        load_audio(tmp_path / "empty.wav")


def test_truncated_header(tmp_path: Path, write_tone) -> None:
    (tmp_path / "cut.wav").write_bytes(_valid_wav_bytes(tmp_path, write_tone)[:30])
    with pytest.raises(AudioDecodeError) as err:
        load_audio(tmp_path / "cut.wav")
    msg = str(err.value)
    assert "cut.wav: corrupt or truncated header" in msg
    assert "WAV header present but unreadable (30 bytes in file)" in msg
    assert "No 'data' chunk" in msg


def test_corrupt_fmt_chunk(tmp_path: Path, write_tone) -> None:
    data = bytearray(_valid_wav_bytes(tmp_path, write_tone))
    data[20:22] = struct.pack("<H", 0x1234)  # unknown codec tag
    (tmp_path / "codec.wav").write_bytes(bytes(data))
    with pytest.raises(
        AudioDecodeError, match=r"corrupt or truncated header .*Malformed 'fmt ' chunk"
    ):
        load_audio(tmp_path / "codec.wav")


def test_text_file_named_wav(tmp_path: Path) -> None:
    (tmp_path / "notes.wav").write_text("speaker 03, take 2\nsecond line\n")
    with pytest.raises(AudioDecodeError) as err:
        load_audio(tmp_path / "notes.wav")
    assert "not audio: the file starts with text 'speaker 03, take 2'" in str(err.value)
    assert "unsupported or unrecognised format '.wav'" in str(err.value)


def test_unsupported_format(tmp_path: Path) -> None:
    (tmp_path / "clip.m4a").write_bytes(b"\x00\x00\x00\x18ftypM4A " + bytes(200))
    with pytest.raises(AudioDecodeError) as err:
        load_audio(tmp_path / "clip.m4a")
    msg = str(err.value)
    assert "clip.m4a: unsupported or unrecognised format '.m4a'" in msg
    assert "first bytes 00 00 00 18 66 74 79 70" in msg and "readable: WAV, FLAC" in msg


def test_nan_and_inf_samples(tmp_path: Path) -> None:
    x = np.full(16000, 0.1, dtype=np.float32)
    x[[5, 10, 20]] = [np.nan, np.inf, -np.inf]
    sf.write(tmp_path / "nan.wav", x, 16000, subtype="FLOAT")
    with pytest.raises(
        AudioContentError, match=r"nan\.wav: 3 of 16000 samples are NaN or inf \(first at frame 5\)"
    ):
        load_audio(tmp_path / "nan.wav")


def test_all_zero(tmp_path: Path) -> None:
    sf.write(tmp_path / "zero.wav", np.zeros(8000, dtype=np.int16), 16000, subtype="PCM_16")
    with pytest.raises(
        AudioContentError, match=r"all 8000 samples are zero \(silent file, 0\.500 s\)"
    ):
        load_audio(tmp_path / "zero.wav")


def test_header_without_samples(tmp_path: Path, write_tone) -> None:
    (tmp_path / "hdr.wav").write_bytes(_valid_wav_bytes(tmp_path, write_tone)[:44])
    with pytest.raises(AudioContentError, match=r"no samples \(header is valid, 1 channel"):
        load_audio(tmp_path / "hdr.wav")


def test_too_short_after_resampling(tmp_path: Path, write_tone) -> None:
    # 1000 samples at 44.1 kHz are 363 at 16 kHz: fewer than one 400-sample window
    path = write_tone(tmp_path / "blip.wav", seconds=1000 / 44100, sample_rate=44100)
    with pytest.raises(AudioContentError) as err:
        load_audio(path, 16000, min_samples=400)
    assert "too short: 363 samples at 16000 Hz (22.7 ms, from 1000 at 44100 Hz)" in str(err.value)
    assert "need at least min_samples=400" in str(err.value)
    assert len(load_audio(path, 16000, min_samples=300)) == 363


# --- whole corpus ----------------------------------------------------------------------------


def _mixed_corpus(tmp_path: Path, write_tone) -> list[Utterance]:
    good1 = write_tone(tmp_path / "good1.wav", seconds=1.0, sample_rate=16000)
    good2 = write_tone(tmp_path / "good2.wav", seconds=0.7, sample_rate=44100, channels=2)
    (tmp_path / "empty.wav").touch()
    sf.write(tmp_path / "zero.wav", np.zeros(4000, dtype=np.int16), 16000)
    names = [good1, tmp_path / "empty.wav", good2, tmp_path / "zero.wav"]
    return [Utterance(str(p), "anger", "s", Path(p).stem) for p in names]


def test_load_corpus_skips_and_reports_every_bad_file(tmp_path: Path, write_tone, caplog) -> None:
    utts = _mixed_corpus(tmp_path, write_tone)
    with caplog.at_level(logging.WARNING, logger="ser_jax.data.audio"):
        waves, kept, skipped = load_corpus(utts, 16000, progress=False)
    assert [u.utt_id for u in kept] == ["good1", "good2"]
    assert [len(w) for w in waves] == [16000, 11200]
    assert [(Path(s.path).name, s.reason) for s in skipped] == [
        ("empty.wav", "AudioDecodeError: empty file (0 bytes)"),
        ("zero.wav", "AudioContentError: all 4000 samples are zero (silent file, 0.250 s)"),
    ]
    logged = caplog.text
    assert "empty.wav" in logged and "zero.wav" in logged and "skipped 2 of 4 files" in logged


def test_load_corpus_strict_raises_the_first_error(tmp_path: Path, write_tone) -> None:
    utts = _mixed_corpus(tmp_path, write_tone)
    with pytest.raises(AudioDecodeError, match="empty.wav: empty file"):
        load_corpus(utts, 16000, strict=True, progress=False)


def test_load_corpus_cache(tmp_path: Path, write_tone) -> None:
    path = write_tone(tmp_path / "a.wav", seconds=0.5, sample_rate=22050)
    utts = [Utterance(str(path), "anger", "s", "a")]
    cache = tmp_path / "cache"
    first, _, _ = load_corpus(utts, 16000, progress=False, cache_dir=cache)
    assert len(list(cache.glob("a-*.npy"))) == 1
    second, _, _ = load_corpus(utts, 16000, progress=False, cache_dir=cache)
    np.testing.assert_array_equal(first[0], second[0])
    # a rewritten file (new size and mtime) is decoded again, under a new key
    write_tone(path, seconds=0.25, sample_rate=22050)
    os.utime(path, ns=(0, 10**18))
    third, _, _ = load_corpus(utts, 16000, progress=False, cache_dir=cache)
    assert len(third[0]) == 4000 and len(list(cache.glob("a-*.npy"))) == 2
    # rates are part of the key
    fourth, _, _ = load_corpus(utts, 8000, progress=False, cache_dir=cache)
    assert len(fourth[0]) == 2000


def test_trim_silence_drops_exact_zeros_at_both_ends_only(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    speech = rng.uniform(-0.5, 0.5, 11025).astype(np.float32)
    speech[[0, -1]] = 0.25  # the audio itself starts and ends on a non-zero sample
    speech[3000:3500] = 0.0  # a pause inside the recording stays
    padded = np.concatenate([np.zeros(441, np.float32), speech, np.zeros(5000, np.float32)])
    sf.write(tmp_path / "p.wav", padded, 22050, subtype="FLOAT")
    # at the native rate: exactly the recording, its inner pause included
    np.testing.assert_array_equal(load_audio(tmp_path / "p.wav", 22050, trim_silence=True), speech)
    assert len(load_audio(tmp_path / "p.wav", 22050)) == len(padded)  # off by default
    # trimmed before resampling: 11025 samples at 22.05 kHz are 8000 at 16 kHz
    assert len(load_audio(tmp_path / "p.wav", 16000, trim_silence=True)) == 8000
    # the cache keeps trimmed and untrimmed loads apart
    utts = [Utterance(str(tmp_path / "p.wav"), "anger", "s", "a")]
    cache = tmp_path / "cache"
    for trim, n in ((True, 8000), (False, 11948), (True, 8000)):
        waves, _, _ = load_corpus(utts, 16000, progress=False, trim_silence=trim, cache_dir=cache)
        assert len(waves[0]) == n
    assert len(list(cache.glob("p-*.npy"))) == 2


def test_trim_silence_can_leave_too_little_audio(tmp_path: Path) -> None:
    wave = np.zeros(22050, np.float32)
    wave[100:200] = 0.3  # 100 samples of sound in a second of zeros
    sf.write(tmp_path / "short.wav", wave, 22050, subtype="FLOAT")
    assert len(load_audio(tmp_path / "short.wav")) == 16000
    with pytest.raises(AudioContentError, match=r"short\.wav: too short: 73 samples.*trimmed"):
        load_audio(tmp_path / "short.wav", trim_silence=True)


def test_trim_silence_on_the_shared_emodb_copy(emodb_dir: Path) -> None:
    # 03a02Wb.wav ends on speech; 03a02Nc.wav is padded: its zeros start at 1.44 s
    paths = {n: next(emodb_dir.rglob(n)) for n in ("03a02Wb.wav", "03a02Nc.wav")}
    full = {n: load_audio(p, 16000) for n, p in paths.items()}
    trimmed = {n: load_audio(p, 16000, trim_silence=True) for n, p in paths.items()}
    assert {len(w) for w in full.values()} == {32000}
    raw, rate = sf.read(paths["03a02Nc.wav"])
    end = int(np.flatnonzero(raw)[-1]) + 1
    assert end < 0.75 * len(raw)
    assert abs(len(trimmed["03a02Nc.wav"]) - round(end * 16000 / rate)) <= 1
    assert len(trimmed["03a02Wb.wav"]) == 32000
    # the config switch reaches the corpus loader
    from ser_jax.config import get_config
    from ser_jax.data.prepare import load_all

    c = get_config()
    c.data.corpus, c.data.root, c.data.trim_silence = "emodb", str(emodb_dir), True
    waves, utts, _ = load_all(c.data, progress=False)
    lengths = {Path(u.path).name: len(w) for w, u in zip(waves, utts, strict=True)}
    assert lengths["03a02Nc.wav"] == len(trimmed["03a02Nc.wav"])
    assert sum(n < 31200 for n in lengths.values()) == 96  # lost more than 50 ms of zeros


def test_real_emodb_files_load_to_two_seconds(emodb_dir: Path) -> None:
    utts, _ = load_manifest("emodb", emodb_dir)
    waves, kept, skipped = load_corpus(utts[::40], 16000, progress=False, strict=True)
    assert len(kept) == len(utts[::40]) and skipped == []
    assert {w.shape for w in waves} == {(32000,)}
    assert all(w.dtype == np.float32 and 0.1 < np.abs(w).max() <= 1.01 for w in waves)
