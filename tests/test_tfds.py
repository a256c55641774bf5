"""TFDS: build the real ``emodb`` builder from a small corpus and read it back by random access."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ser_jax.data.audio import load_audio
from ser_jax.data.corpora import load_manifest
from ser_jax.data.synthetic import make_demo_corpus
from ser_jax.errors import ConfigError, MissingExtraError

needs_tf = pytest.mark.skipif(
    importlib.util.find_spec("tensorflow") is None
    or importlib.util.find_spec("tensorflow_datasets") is None,
    reason="tensorflow / tensorflow-datasets not installed (pip install -e '.[tfds]'; CI has them)",
)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from ser_jax.data.tfds_emodb import build_emodb_tfds

    root = tmp_path_factory.mktemp("tfds")
    # 22.05 kHz source files, so the builder's resampling to 16 kHz is exercised
    manual = make_demo_corpus(
        root / "manual" / "wav",
        speakers=2,
        utterances_per_class=1,
        seconds=(0.4, 0.7),
        sample_rate=22050,
        seed=5,
    )
    (manual / "README.txt").write_text("not audio: ignored by the reader")
    data_dir = root / "data"
    build_emodb_tfds(manual.parent, data_dir)
    return manual, data_dir


@needs_tf
def test_emodb_builder_round_trip(built: tuple[Path, Path]) -> None:
    from ser_jax.data.tfds_emodb import load_tfds_split

    manual, data_dir = built
    assert list((data_dir / "emodb" / "1.0.0").glob("emodb-train.array_record-*"))
    waves, utts = load_tfds_split("emodb", "train", data_dir)
    source, _ = load_manifest("emodb", manual)
    assert len(waves) == len(utts) == len(source) == 14
    by_id = {u.utt_id: u for u in source}
    assert sorted(by_id) == sorted(u.utt_id for u in utts)
    assert Counter(u.label for u in utts) == Counter(u.label for u in source)
    for wave, utt in zip(waves, utts, strict=True):
        original = by_id[utt.utt_id]
        assert (utt.label, utt.speaker) == (original.label, original.speaker)
        assert utt.path.startswith("tfds:emodb/train/")
        np.testing.assert_array_equal(wave, load_audio(original.path, 16000))


@needs_tf
def test_read_with_resampling_and_slices(built: tuple[Path, Path]) -> None:
    from ser_jax.data.tfds_emodb import load_tfds_split

    _, data_dir = built
    full, _ = load_tfds_split("emodb", "train", data_dir)
    half, utts = load_tfds_split("emodb", "train[:4]", data_dir, sample_rate=8000)
    assert len(half) == len(utts) == 4
    assert all(abs(len(h) - len(f) / 2) <= 1 for h, f in zip(half, full[:4], strict=True))


@needs_tf
def test_unprepared_or_missing_split_is_a_config_error(
    built: tuple[Path, Path], tmp_path: Path
) -> None:
    from ser_jax.data.tfds_emodb import load_tfds_split

    _, data_dir = built
    with pytest.raises(ConfigError, match="is not prepared in"):
        load_tfds_split("emodb", "train", tmp_path)
    with pytest.raises(ConfigError, match="has no split 'test'"):
        load_tfds_split("emodb", "test", data_dir)


def test_missing_extra_is_reported(tmp_path: Path, monkeypatch) -> None:
    from ser_jax.data import tfds_emodb

    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import now fails
    with pytest.raises(MissingExtraError, match=r"TFDS datasets needs the optional extra 'tfds'"):
        tfds_emodb.build_emodb_tfds(tmp_path, tmp_path / "out")
    with pytest.raises(MissingExtraError, match="tfds"):
        tfds_emodb.load_tfds_split("crema_d", "train", tmp_path)


@needs_tf
def test_tfds_corpus_gets_the_file_checks_and_the_configured_rate(tmp_path: Path) -> None:
    """A TFDS corpus is resampled to data.sample_rate and checked like files: a clip that is
    long enough at the dataset's 16 kHz but under one analysis window at 8 kHz is skipped with
    its reason (and stops a strict run)."""
    import soundfile as sf
    from conftest import tiny_config

    from ser_jax.data.prepare import load_all
    from ser_jax.data.tfds_emodb import build_emodb_tfds
    from ser_jax.errors import AudioContentError

    manual = make_demo_corpus(
        tmp_path / "manual", speakers=2, utterances_per_class=1, seconds=(0.4, 0.6), seed=3
    )
    short = np.sin(np.arange(480) / 5.0).astype(np.float32) * 0.3  # 30 ms at 16 kHz
    sf.write(manual / "09a01Wa.wav", short, 16000)
    build_emodb_tfds(manual, tmp_path / "tfds")
    cfg = tiny_config()
    cfg.data.corpus, cfg.data.root = "tfds:emodb", str(tmp_path / "tfds")
    cfg.data.sample_rate = 8000
    waves, utts, skipped = load_all(cfg.data, progress=False)
    files = {p.stem: p for p in manual.glob("*.wav")}
    assert len(utts) == len(files) - 1
    assert len(skipped) == 1 and skipped[0].path.startswith("tfds:emodb/train/")
    assert "too short: 240 samples at 8000 Hz" in skipped[0].reason
    for wave, utt in zip(waves, utts, strict=True):  # at 8 kHz: half the 16 kHz samples
        assert abs(len(wave) - len(load_audio(files[utt.utt_id], 8000))) <= 1
    cfg.data.strict = True
    with pytest.raises(AudioContentError, match="too short"):
        load_all(cfg.data, progress=False)
