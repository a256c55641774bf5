"""``ser-jax predict --speaker_from``: files grouped by speaker, each group adapted to apart in
one call, equal to one call per group; warnings for groups too small or read as one class."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ser_jax.errors import ConfigError
from ser_jax.serving.predict import predict_command
from ser_jax.serving.speakers import MIN_GROUP, group_warnings, speakers_of


@pytest.fixture(scope="module")
def by_folder(demo_corpus_dir, tmp_path_factory) -> dict[str, list[str]]:
    """Two speakers' demo files copied into one folder each (Emo-DB names: speaker first)."""
    root = tmp_path_factory.mktemp("speakers")
    out: dict[str, list[str]] = {}
    for wav in sorted(demo_corpus_dir.glob("*.wav")):
        speaker = wav.name[:2]
        if speaker in ("01", "02") and len(out.get(speaker, [])) < 12:
            (root / f"spk{speaker}").mkdir(exist_ok=True)
            out.setdefault(speaker, []).append(str(shutil.copy(wav, root / f"spk{speaker}")))
    return out


def _rows(capsys) -> list[dict]:
    return json.loads(capsys.readouterr().out)


def test_grouped_predict_equals_one_call_per_group(trained, by_folder, tmp_path, capsys):
    """``--speaker_bn --speaker_from folder`` over both speakers' files at once gives each
    file the probabilities of a call with its speaker's files alone; a CSV gives the same
    groups, and a file it does not list gets an error while the others are scored."""
    workdir, _ = trained
    every = by_folder["01"][:6] + by_folder["02"] + by_folder["01"][6:]  # interleaved order
    assert (
        predict_command(str(workdir), every, as_json=True, speaker_bn=True, speaker_from="folder")
        == 0
    )
    grouped = {r["path"]: r for r in _rows(capsys)}
    for speaker, files in by_folder.items():
        assert predict_command(str(workdir), files, as_json=True, speaker_bn=True) == 0
        for alone in _rows(capsys):
            row = grouped[alone["path"]]
            assert row["speaker"] == f"spk{speaker}"
            np.testing.assert_allclose(
                list(row["probs"].values()), list(alone["probs"].values()), atol=1e-5
            )
    # all files as one speaker's differ from the grouped ones (the grouping matters)
    assert predict_command(str(workdir), every, as_json=True, speaker_bn=True) == 0
    pooled = {r["path"]: r["probs"] for r in _rows(capsys)}
    assert any(pooled[p] != grouped[p]["probs"] for p in every)
    table = tmp_path / "meta.csv"
    table.write_text(
        "file,who\n" + "".join(f"{Path(p).name},{Path(p).parent.name}\n" for p in every)
    )
    unlisted = str(shutil.copy(every[0], tmp_path / "other.wav"))
    assert (
        predict_command(
            str(workdir),
            [*every, unlisted],
            as_json=True,
            speaker_bn=True,
            speaker_from=f"csv:{table}:who",
        )
        == 1
    )
    rows = _rows(capsys)
    assert "not listed" in rows[-1]["error"]
    for row in rows[:-1]:
        assert row["speaker"] == grouped[row["path"]]["speaker"]
        np.testing.assert_allclose(
            list(row["probs"].values()), list(grouped[row["path"]]["probs"].values()), atol=1e-5
        )


def test_small_or_one_class_groups_are_warned_about(trained, by_folder, capsys):
    """A group under MIN_GROUP files gets a warning in its rows and in the table; a group
    read as one class gets one too."""
    workdir, _ = trained
    few = by_folder["01"][:3]
    assert (
        predict_command(str(workdir), few, as_json=False, speaker_bn=True, speaker_from="folder")
        == 0
    )
    out = capsys.readouterr().out
    assert "warning: only 3 file(s) of speaker 'spk01'" in out and MIN_GROUP > 3
    rows = [{"path": "a", "label": "anger"}, {"path": "b", "label": "anger"}]
    rows += [{"path": "c", "label": x} for x in ["sadness", "anger"] * MIN_GROUP]
    group_warnings(rows, ["x", "x", *["y"] * 2 * MIN_GROUP])
    assert "every file of speaker 'x' is read as anger" in rows[0]["warning"]
    assert all("warning" not in r for r in rows[2:])


def test_bad_speaker_sources_are_refused_in_one_line(tmp_path):
    with pytest.raises(ConfigError, match="give 'folder' or csv:FILE:COLUMN"):
        speakers_of(["a.wav"], "speakers.txt")
    with pytest.raises(ConfigError, match="give csv:FILE:COLUMN"):
        speakers_of(["a.wav"], "csv:meta.csv")
    with pytest.raises(ConfigError, match="cannot be read"):
        speakers_of(["a.wav"], f"csv:{tmp_path / 'none.csv'}:speaker")
    (tmp_path / "m.csv").write_text("path,gender\na.wav,f\n")
    with pytest.raises(ConfigError, match="needs a 'path' \\(or 'file'\\) column and a 'speaker'"):
        speakers_of(["a.wav"], f"csv:{tmp_path / 'm.csv'}:speaker")
