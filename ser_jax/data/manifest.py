"""Manifest: the list of utterances a corpus reader hands on to audio loading and splits.

An :class:`Utterance` names one audio file with its label, speaker and a corpus-unique id;
a :class:`Skipped` names a file that a reader or the audio loader left out, and why. Label
ids are positions in :func:`label_names` (Emo-DB's seven emotions in :data:`EMOTIONS` order
whenever the labels are a subset of them), so every stage agrees on what class 3 means.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

EMOTIONS: tuple[str, ...] = (
    "anger",
    "boredom",
    "disgust",
    "fear",
    "happiness",
    "sadness",
    "neutral",
)
"""Canonical emotion order; the label id of an emotion is its index here."""

MANIFEST_COLUMNS: tuple[str, ...] = ("path", "label", "speaker", "utt_id")


@dataclasses.dataclass(frozen=True)
class Utterance:
    """One labelled audio file.

    ``extra`` holds corpus-specific string fields (Emo-DB: ``text``, ``version``); it is left
    out of hashing so utterances can still be set members and dict keys.
    """

    path: str
    label: str
    speaker: str
    utt_id: str
    extra: Mapping[str, str] = dataclasses.field(default_factory=dict, hash=False)


@dataclasses.dataclass(frozen=True)
class Skipped:
    """A file left out of the corpus, with the reason (decode error, bad name, bad row)."""

    path: str
    reason: str


def label_names(utts: Iterable[Utterance] | Iterable[str]) -> tuple[str, ...]:
    """The class names present, in :data:`EMOTIONS` order if all are emotions, else sorted.

    Accepts utterances or plain label strings.
    """
    present = {u.label if isinstance(u, Utterance) else str(u) for u in utts}
    if present <= set(EMOTIONS):
        return tuple(e for e in EMOTIONS if e in present)
    return tuple(sorted(present))


def label_ids(utts: Sequence[Utterance], names: Sequence[str] | None = None) -> np.ndarray:
    """Integer label per utterance, shape ``(len(utts),)``; ids index ``names``.

    ``names`` defaults to :func:`label_names` of ``utts``; a label not in ``names`` is a
    ``KeyError`` naming it.
    """
    names = tuple(names) if names is not None else label_names(utts)
    index = {name: i for i, name in enumerate(names)}
    missing = sorted({u.label for u in utts} - index.keys())
    if missing:
        raise KeyError(f"labels {missing} are not among the class names {list(names)}")
    return np.array([index[u.label] for u in utts], dtype=np.int32)


def speakers_of(utts: Sequence[Utterance]) -> np.ndarray:
    """Speaker per utterance as a string array, shape ``(len(utts),)`` (for the split functions)."""
    return np.array([u.speaker for u in utts], dtype=str)


def write_manifest_csv(utts: Iterable[Utterance], path: str | os.PathLike) -> Path:
    """Write ``utts`` as a CSV that the ``csv`` corpus reader reads back unchanged.

    Columns: ``path,label,speaker,utt_id`` plus one column per ``extra`` key. Paths are
    written relative to the CSV's folder when the file lies under it, else absolute.
    """
    path = Path(path)
    utts = list(utts)
    extra_keys = sorted({k for u in utts for k in u.extra})
    clash = set(extra_keys) & set(MANIFEST_COLUMNS)
    if clash:
        raise ValueError(f"extra keys {sorted(clash)} clash with the manifest columns")
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.parent.resolve()
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([*MANIFEST_COLUMNS, *extra_keys])
        for u in utts:
            audio = Path(u.path).resolve()
            try:
                shown = audio.relative_to(base).as_posix()
            except ValueError:
                shown = str(audio)
            row = [shown, u.label, u.speaker, u.utt_id]
            writer.writerow(row + [u.extra.get(k, "") for k in extra_keys])
    return path
