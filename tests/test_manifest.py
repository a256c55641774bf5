"""Corpus readers and the manifest: Emo-DB, folder-per-label and CSV."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from ser_jax.data import corpora
from ser_jax.data.corpora import available_corpora, load_manifest, register_corpus
from ser_jax.data.manifest import (
    EMOTIONS,
    Skipped,
    Utterance,
    label_ids,
    label_names,
    write_manifest_csv,
)
from ser_jax.errors import ConfigError, ManifestError


def test_real_emodb_counts(emodb_dir: Path) -> None:
    utts, skipped = load_manifest("emodb", emodb_dir, strict=True)
    assert len(utts) == 409 and skipped == []
    assert sorted({u.speaker for u in utts}) == ["03", "08", "09", "10", "12", "13", "14", "15"]
    letters = Counter(Path(u.path).stem[5] for u in utts)
    assert letters == {"W": 102, "N": 65, "L": 59, "A": 52, "F": 52, "T": 46, "E": 33}
    by_label = Counter(u.label for u in utts)
    assert by_label["anger"] == 102 and by_label["disgust"] == 33 and by_label["fear"] == 52
    assert label_names(utts) == EMOTIONS
    first = utts[0]
    assert first.utt_id == "03a01Fa" and first.label == "happiness"
    assert first.extra == {"text": "a01", "version": "a"}


def test_emodb_reads_root_or_wav_folder(tmp_path: Path, write_tone) -> None:
    write_tone(tmp_path / "flat" / "03a01Wa.wav")
    write_tone(tmp_path / "nested" / "wav" / "16b10Tb.wav")
    (tmp_path / "nested" / "README.md").write_text("ignored")
    flat, _ = load_manifest("emodb", tmp_path / "flat")
    nested, skipped = load_manifest("emodb", tmp_path / "nested")
    assert [(u.speaker, u.label) for u in flat] == [("03", "anger")]
    assert [(u.speaker, u.label, u.extra["text"]) for u in nested] == [("16", "sadness", "b10")]
    assert skipped == []


def test_emodb_bad_names_are_skipped_with_reason(tmp_path: Path, write_tone) -> None:
    write_tone(tmp_path / "03a01Wa.wav")
    write_tone(tmp_path / "hello.wav")
    write_tone(tmp_path / "03a01Xa.wav")
    (tmp_path / "notes.txt").write_text("not audio, not listed")
    utts, skipped = load_manifest("emodb", tmp_path)
    assert [u.utt_id for u in utts] == ["03a01Wa"]
    reasons = {Path(s.path).name: s.reason for s in skipped}
    assert set(reasons) == {"hello.wav", "03a01Xa.wav"}
    assert "'hello.wav' is not Emo-DB's SSTTTEV.wav" in reasons["hello.wav"]
    assert "unknown Emo-DB emotion letter 'X'" in reasons["03a01Xa.wav"]
    with pytest.raises(ManifestError, match=r"03a01Xa\.wav"):
        load_manifest("emodb", tmp_path, strict=True)


def test_emodb_without_files_names_the_folder(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("no audio here")
    with pytest.raises(ManifestError, match=f"no Emo-DB audio files .* in {tmp_path}"):
        load_manifest("emodb", tmp_path)


def test_only_bad_names_is_an_error(tmp_path: Path, write_tone) -> None:
    write_tone(tmp_path / "take1.wav")
    with pytest.raises(ManifestError, match="no usable audio files.*1 skipped.*take1.wav"):
        load_manifest("emodb", tmp_path)


def test_folder_reader(tmp_path: Path, write_tone) -> None:
    write_tone(tmp_path / "calm" / "a.wav")
    write_tone(tmp_path / "calm" / "b.flac")
    write_tone(tmp_path / "angry" / "c.ogg")
    (tmp_path / "angry" / "notes.mp4").write_bytes(b"\x00")
    utts, skipped = load_manifest("folder", tmp_path)
    assert [(u.utt_id, u.label, u.speaker) for u in utts] == [
        ("angry/c", "angry", "unknown"),
        ("calm/a", "calm", "unknown"),
        ("calm/b", "calm", "unknown"),
    ]
    assert len(skipped) == 1 and "unsupported extension '.mp4'" in skipped[0].reason
    assert label_names(utts) == ("angry", "calm")
    with pytest.raises(ManifestError, match=r"notes\.mp4.*unsupported extension"):
        load_manifest("folder", tmp_path, strict=True)


def test_folder_reader_needs_label_folders(tmp_path: Path, write_tone) -> None:
    write_tone(tmp_path / "a.wav")
    with pytest.raises(ManifestError, match="no label folders"):
        load_manifest("folder", tmp_path)


def test_csv_round_trip(tmp_path: Path, write_tone) -> None:
    for name in ("03a01Wa", "08b02Nb", "09a05Tc"):
        write_tone(tmp_path / "audio" / f"{name}.wav")
    utts, _ = load_manifest("emodb", tmp_path / "audio")
    csv_path = write_manifest_csv(utts, tmp_path / "lists" / "manifest.csv")
    back, skipped = load_manifest("csv", csv_path, strict=True)
    assert skipped == []
    assert [(u.label, u.speaker, u.utt_id, dict(u.extra)) for u in back] == [
        (u.label, u.speaker, u.utt_id, dict(u.extra)) for u in utts
    ]
    assert [Path(u.path).resolve() for u in back] == [Path(u.path).resolve() for u in utts]
    # a folder holding manifest.csv works too
    assert len(load_manifest("csv", tmp_path / "lists")[0]) == 3


def test_csv_bad_rows_name_their_line(tmp_path: Path, write_tone) -> None:
    write_tone(tmp_path / "a.wav")
    write_tone(tmp_path / "b.wav")
    (tmp_path / "list.csv").write_text(
        "path,label,speaker\n"
        "a.wav,anger,s1\n"  # line 2: fine
        "missing.wav,anger,s1\n"  # line 3: no such file
        "b.wav,,s2\n"  # line 4: empty label
        "b.wav,sadness\n"  # line 5: too few columns
        "\n"  # blank lines are ignored
        "b.wav,sadness,s2\n"  # line 7: fine, speaker s2
        "a.wav,anger,s1\n"  # line 8: duplicate
    )
    utts, skipped = load_manifest("csv", tmp_path / "list.csv")
    assert [(u.utt_id, u.label, u.speaker) for u in utts] == [
        ("a", "anger", "s1"),
        ("b", "sadness", "s2"),
    ]
    reasons = [s.reason for s in skipped]
    assert (
        reasons[0].startswith("line 3: audio file") and "missing.wav does not exist" in reasons[0]
    )
    assert reasons[1].startswith("line 4: empty label")
    assert reasons[2].startswith("line 5: 2 columns, header has 3")
    assert reasons[3].startswith("line 8: duplicate path a.wav")
    with pytest.raises(ManifestError, match=r"list\.csv: line 3: audio file"):
        load_manifest("csv", tmp_path / "list.csv", strict=True)


def test_csv_header_must_name_path_and_label(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("file,emotion\nx.wav,anger\n")
    with pytest.raises(ManifestError, match=r"lacks column\(s\) \['path', 'label'\]"):
        load_manifest("csv", tmp_path / "m.csv")


def test_unknown_corpus_and_missing_root(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError,
        match="unknown corpus 'ravdess'; available: csv, demo, emodb, folder, tfds:<dataset>",
    ):
        load_manifest("ravdess", tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_manifest("emodb", tmp_path / "nowhere")


def test_a_new_corpus_is_one_function(tmp_path: Path, write_tone, monkeypatch) -> None:
    monkeypatch.setattr(corpora, "_READERS", dict(corpora._READERS))

    @register_corpus("tess")
    def read_tess(root: Path, *, strict: bool):
        files = sorted(root.glob("*.wav"))
        return [
            Utterance(str(p), p.stem.split("_")[2], p.stem.split("_")[0], p.stem) for p in files
        ], []

    with pytest.raises(ConfigError, match="corpus 'emodb' is already registered"):
        register_corpus("emodb")(read_tess)
    write_tone(tmp_path / "OAF_back_angry.wav")
    assert "tess" in available_corpora()
    utts, _ = load_manifest("tess", tmp_path)
    assert (utts[0].speaker, utts[0].label) == ("OAF", "angry")


def test_label_names_and_ids() -> None:
    utts = [
        Utterance(f"{i}.wav", lab, "s", str(i))
        for i, lab in enumerate(["neutral", "anger", "fear"])
    ]
    assert label_names(utts) == ("anger", "fear", "neutral")
    assert label_ids(utts).tolist() == [2, 0, 1]
    assert label_ids(utts, EMOTIONS).tolist() == [6, 0, 3]
    assert label_names(["calm", "surprise", "anger"]) == ("anger", "calm", "surprise")
    with pytest.raises(KeyError, match="fear"):
        label_ids(utts, ("anger", "neutral"))


def test_records_are_frozen_and_hashable() -> None:
    u = Utterance("a.wav", "anger", "03", "a", extra={"text": "a01"})
    assert {u: 1}[Utterance("a.wav", "anger", "03", "a", extra={"text": "a01"})] == 1
    with pytest.raises(AttributeError):
        u.label = "fear"  # type: ignore[misc]
    assert Skipped("x.wav", "empty").reason == "empty"
