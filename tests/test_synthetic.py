"""The synthetic demo corpus: layout, determinism, and class structure a model can learn."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser_jax.data.audio import load_corpus
from ser_jax.data.corpora import load_manifest
from ser_jax.data.manifest import EMOTIONS, label_ids, speakers_of
from ser_jax.data.splits import loso_folds
from ser_jax.data.synthetic import make_demo_corpus
from ser_jax.errors import ConfigError


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.wav"))}


def test_demo_corpus_reads_as_emodb(demo_corpus_dir: Path) -> None:
    utts, skipped = load_manifest("emodb", demo_corpus_dir, strict=True)
    assert len(utts) == 4 * 7 * 6 and skipped == []
    assert sorted({u.speaker for u in utts}) == ["01", "02", "03", "04"]
    assert Counter(u.label for u in utts) == {e: 24 for e in EMOTIONS}
    infos = [sf.info(u.path) for u in utts]
    assert {(i.samplerate, i.channels, i.subtype) for i in infos} == {(16000, 1, "PCM_16")}
    durations = [i.frames / i.samplerate for i in infos]
    assert 1.5 <= min(durations) and max(durations) <= 3.0 and np.std(durations) > 0.2


def test_deterministic_for_the_seed(tmp_path: Path) -> None:
    kwargs = dict(speakers=2, utterances_per_class=1, seconds=(0.5, 0.8))
    a = _digest(make_demo_corpus(tmp_path / "a", seed=3, **kwargs))
    b = _digest(make_demo_corpus(tmp_path / "b", seed=3, **kwargs))
    c = _digest(make_demo_corpus(tmp_path / "c", seed=4, **kwargs))
    assert a == b and len(a) == 14
    assert a.keys() == c.keys() and all(a[k] != c[k] for k in a)


def test_other_rate_and_subset_of_emotions(tmp_path: Path) -> None:
    out = make_demo_corpus(
        tmp_path,
        speakers=1,
        utterances_per_class=12,
        seconds=(0.5, 0.6),
        sample_rate=22050,
        emotions=("anger", "sadness"),
    )
    utts, _ = load_manifest("emodb", out, strict=True)
    assert Counter(u.label for u in utts) == {"anger": 12, "sadness": 12}
    assert {sf.info(u.path).samplerate for u in utts} == {22050}
    # 12 per class needs a second version letter after Emo-DB's ten texts
    assert {u.extra["version"] for u in utts} == {"a", "b"}


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"emotions \['surprise'\] unknown"):
        make_demo_corpus(tmp_path, emotions=("anger", "surprise"))
    with pytest.raises(ConfigError, match="two digits"):
        make_demo_corpus(tmp_path, speakers=100)
    with pytest.raises(ConfigError, match="seconds"):
        make_demo_corpus(tmp_path, seconds=(2.0, 1.0))


def _features(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """Level, brightness, voicing rate: a crude stand-in for what a model would pick up."""
    frames = wave[: len(wave) // 400 * 400].reshape(-1, 400)
    energy = np.sqrt(np.mean(frames**2, axis=1))
    active = energy > 0.1 * energy.max()
    spec = np.abs(np.fft.rfft(frames[active] * np.hanning(400), axis=1))
    freqs = np.fft.rfftfreq(400, 1 / sample_rate)
    centroid = (spec * freqs).sum(1) / spec.sum(1)
    onsets = np.count_nonzero(np.diff(active.astype(int)) == 1) / (len(wave) / sample_rate)
    zcr = np.mean(np.abs(np.diff(np.sign(frames[active]), axis=1)) > 0)
    return np.array(
        [20 * np.log10(energy[active].mean()), np.median(centroid) / 1000, onsets, 10 * zcr]
    )


def test_classes_are_learnable_across_speakers_but_vary_within(demo_corpus_dir: Path) -> None:
    utts, _ = load_manifest("emodb", demo_corpus_dir)
    waves, utts, _ = load_corpus(utts, 16000, progress=False)
    x = np.stack([_features(w, 16000) for w in waves])
    y, speakers = label_ids(utts, EMOTIONS), speakers_of(utts)
    correct = 0
    for fold in loso_folds(speakers, val="none"):
        mu, sd = x[fold.train].mean(0), x[fold.train].std(0) + 1e-9
        z = (x - mu) / sd
        centroids = np.stack([z[fold.train][y[fold.train] == c].mean(0) for c in range(7)])
        pred = np.argmin(((z[fold.test, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
        correct += int((pred == y[fold.test]).sum())
    accuracy = correct / len(y)
    assert accuracy > 0.35, accuracy  # chance is 1/7; 4 crude features, unseen speakers
    # and no two files of a class and speaker are the same
    anger_01 = [
        w for w, u in zip(waves, utts, strict=True) if u.speaker == "01" and u.label == "anger"
    ]
    assert len({len(w) for w in anger_01}) == len(anger_01)
    level = x[:, 0]
    assert level[y == 0].mean() > level[y == 5].mean() + 6  # anger louder than sadness
    assert all(np.std(level[y == c]) > 0.3 for c in range(7))  # levels jitter within a class
