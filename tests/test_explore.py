"""Corpus exploration: figures and summaries, native formats recorded as the files declare them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ser_jax.data.audio import load_corpus
from ser_jax.data.corpora import load_manifest
from ser_jax.data.synthetic import make_demo_corpus
from ser_jax.reports.explore import explore

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _check_outputs(result: dict, out: Path) -> dict:
    for name in ("label_histogram.png", "examples.png"):
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000, name
    summary = json.loads((out / "summary.json").read_text())
    assert summary == {k: v for k, v in result.items() if k != "outputs"}
    assert set(result["outputs"]) == {
        "label_histogram.png",
        "examples.png",
        "summary.json",
        "summary.md",
    }
    return summary


def test_explore_synthetic_records_native_rates(tmp_path: Path) -> None:
    corpus = make_demo_corpus(
        tmp_path / "corpus",
        speakers=2,
        utterances_per_class=2,
        seconds=(0.5, 1.0),
        sample_rate=22050,
    )
    utts, _ = load_manifest("emodb", corpus)
    waves, utts, _ = load_corpus(utts, 16000, progress=False)
    out = tmp_path / "explore"
    result = explore(utts, waves, 16000, out, n_examples=3, seed=1)
    summary = _check_outputs(result, out)
    assert summary["files"] == 28 and summary["speakers"] == ["01", "02"]
    assert summary["per_label"]["anger"] == 4 and summary["per_speaker"] == {"01": 14, "02": 14}
    assert summary["per_speaker_label"]["02"]["sadness"] == 2
    assert summary["sample_rate"] == 16000
    assert summary["native"]["sample_rates"] == {"22050": 28}
    assert summary["native"]["formats"] == {"WAV/PCM_16": 28}
    assert 0.5 <= summary["duration_s"]["min"] <= summary["duration_s"]["max"] <= 1.0
    assert len(summary["examples"]) == 3
    md = (out / "summary.md").read_text()
    assert "| 01 | 2 | 2 | 2 | 2 | 2 | 2 | 2 | 14 |" in md and "{'22050': 28}" in md
    # the same seed draws the same examples
    again = explore(utts, waves, 16000, tmp_path / "again", n_examples=3, seed=1)
    assert again["examples"] == summary["examples"]


def test_explore_rejects_mismatched_inputs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="2 utterances but 1 waveforms"):
        explore([object(), object()], [[0.0]], 16000, tmp_path)  # type: ignore[list-item]


def test_explore_real_emodb(emodb_dir: Path, tmp_path: Path) -> None:
    utts, _ = load_manifest("emodb", emodb_dir)
    waves, utts, skipped = load_corpus(utts, 16000, progress=False)
    assert skipped == []
    result = explore(utts, waves, 16000, tmp_path, n_examples=2)
    summary = _check_outputs(result, tmp_path)
    assert summary["per_label"] == {
        "anger": 102,
        "boredom": 59,
        "disgust": 33,
        "fear": 52,
        "happiness": 52,
        "sadness": 46,
        "neutral": 65,
    }
    assert summary["per_speaker_label"]["08"]["disgust"] == 0
    assert summary["native"]["sample_rates"] == {"22050": 409}
    assert summary["duration_s"]["min"] == summary["duration_s"]["max"] == 2.0
