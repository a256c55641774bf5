"""Who speaks in each file given to ``ser-jax predict`` (``--speaker_from``), and the warnings
a speaker's group earns when the model adapts to it.

- ``folder``: each file's parent folder is its speaker (``spk1/a.wav``, ``spk1/b.wav``, ...);
- ``csv:FILE:COLUMN``: a CSV with a ``path`` (or ``file``) column and the column ``COLUMN``
  naming each file's speaker; a file is matched by its resolved path, else by its name. A file
  the CSV does not list gets an error naming it; the others are still scored.

Adaptation (``--speaker_bn``: BatchNorm statistics, or standardisation, from a speaker's own
files) needs a speaker's recordings across emotions: a group of fewer than ``MIN_GROUP`` files,
or one whose files are all read as the same class, gets a warning in every row of the group.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ser_jax.errors import ConfigError

MIN_GROUP = 10  # files of one speaker below which adaptation statistics are unreliable


def read_speaker_csv(spec: str) -> dict[str, str]:
    """``csv:FILE:COLUMN`` → ``{resolved path or file name: speaker}``."""
    _, _, rest = spec.partition(":")
    file, sep, column = rest.rpartition(":")
    if not sep or not file or not column:
        raise ConfigError(
            f"--speaker_from={spec!r}: give csv:FILE:COLUMN (e.g. csv:meta.csv:speaker)"
        )
    path = Path(file)
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as err:
        raise ConfigError(f"--speaker_from: {path}: cannot be read ({err.strerror})") from None
    fields = rows[0].keys() if rows else []
    key = next((k for k in ("path", "file") if k in fields), None)
    if key is None or column not in fields:
        raise ConfigError(
            f"--speaker_from: {path}: needs a 'path' (or 'file') column and a {column!r} column "
            f"(has: {', '.join(fields) or 'no rows'})"
        )
    out: dict[str, str] = {}
    for row in rows:
        given = Path(row[key])
        where = given if given.is_absolute() else path.parent / given
        out[str(where.resolve())] = row[column]
        out.setdefault(given.name, row[column])
    return out


def speakers_of(paths: Sequence[str], spec: str | None) -> list[str | None]:
    """Each file's speaker by ``spec`` (module docstring); None where a CSV does not list it;
    no ``spec``: all files one speaker's (``"-"``)."""
    if not spec:
        return ["-"] * len(paths)
    if spec == "folder":
        return [Path(p).resolve().parent.name for p in paths]
    if not spec.startswith("csv:"):
        raise ConfigError(f"--speaker_from={spec!r}: give 'folder' or csv:FILE:COLUMN")
    table = read_speaker_csv(spec)
    return [table.get(str(Path(p).resolve()), table.get(Path(p).name)) for p in paths]


def group_warnings(rows: Sequence[dict[str, Any]], speakers: Sequence[str | None]) -> None:
    """Add ``speaker`` to every row and ``warning`` to the rows of a group too small to adapt
    to, or read as one class (rows with an ``error`` count for neither)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row, speaker in zip(rows, speakers, strict=True):
        if speaker is not None:
            row["speaker"] = speaker
            if "error" not in row:
                groups.setdefault(speaker, []).append(row)
    for speaker, members in groups.items():
        labels = {r["label"] for r in members}
        why = []
        if len(members) < MIN_GROUP:
            why.append(f"only {len(members)} file(s) of speaker {speaker!r} to adapt to")
        if len(members) > 1 and len(labels) == 1:
            why.append(f"every file of speaker {speaker!r} is read as {next(iter(labels))}")
        if why:
            text = "; ".join(why) + " (adaptation needs a speaker's recordings across emotions)"
            for r in members:
                r["warning"] = text
