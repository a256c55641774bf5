"""Corpus readers: a folder (or CSV) on disk → a manifest of :class:`Utterance`.

Each reader is one function registered by name, ``(root, *, strict) -> (utterances,
skipped)``. It only lists files and parses their names or rows; it does not decode audio
(that is :mod:`ser_jax.data.audio`). A file the reader cannot use is returned as
:class:`Skipped` with the reason, or, with ``strict=True``, raises :class:`ManifestError`
naming it. A root with no usable files at all always raises.

Adding a corpus is one short function in this module (or any module imported before use)::

    _RAVDESS = {"01": "neutral", "03": "happiness", "04": "sadness", "05": "anger",
                "06": "fear", "07": "disgust"}  # 02 calm, 08 surprise: not in EMOTIONS

    @register_corpus("ravdess")
    def read_ravdess(root: Path, *, strict: bool) -> tuple[list[Utterance], list[Skipped]]:
        # Actor_XX/MM-VC-EE-II-SS-RR-AA.wav
        utts, skipped = [], []
        for path in sorted(root.glob("Actor_*/*.wav")):
            parts = path.stem.split("-")
            if len(parts) != 7 or parts[2] not in _RAVDESS:
                _skip(skipped, path, "not a RAVDESS speech name or unmapped emotion", strict)
                continue
            utts.append(Utterance(str(path), _RAVDESS[parts[2]], parts[6], path.stem))
        return utts, skipped

CREMA-D (``1001_DFA_ANG_XX.wav``: speaker, sentence, emotion) and TESS
(``OAF_back_angry.wav``: speaker OAF/YAF, word, emotion) are the same shape.
"""

from __future__ import annotations

import csv
import functools
import re
from collections.abc import Callable
from pathlib import Path

from ser_jax.data.manifest import EMOTIONS, MANIFEST_COLUMNS, Skipped, Utterance
from ser_jax.errors import ConfigError, ManifestError

CorpusReader = Callable[..., tuple[list[Utterance], list[Skipped]]]

AUDIO_SUFFIXES: tuple[str, ...] = (".wav", ".flac", ".ogg")
"""File suffixes the folder and Emo-DB readers list (case-insensitive)."""

_READERS: dict[str, CorpusReader] = {}
# Families of corpora named ``<prefix>:<dataset>`` (``tfds:emodb``): ``fn(dataset, root, *,
# strict)``. ``ser_jax.data.tfds_emodb`` registers ``tfds`` (``ser_jax.data`` imports it).
_PREFIX_READERS: dict[str, Callable[..., tuple[list[Utterance], list[Skipped]]]] = {}


def register_corpus(name: str) -> Callable[[CorpusReader], CorpusReader]:
    """Decorator: register ``fn(root: Path, *, strict: bool) -> (utts, skipped)`` as ``name``."""

    def decorate(fn: CorpusReader) -> CorpusReader:
        if name in _READERS and _READERS[name] is not fn:
            raise ConfigError(f"corpus '{name}' is already registered ({_READERS[name]!r})")
        _READERS[name] = fn
        return fn

    return decorate


def register_corpus_prefix(prefix: str) -> Callable[[Callable], Callable]:
    """Decorator: register ``fn(dataset, root, *, strict)`` for the names ``<prefix>:<dataset>``."""

    def decorate(fn: Callable) -> Callable:
        _PREFIX_READERS[prefix] = fn
        return fn

    return decorate


def available_corpora() -> tuple[str, ...]:
    """Names accepted by :func:`load_manifest`, sorted (``<prefix>:<dataset>`` besides)."""
    return (*sorted(_READERS), *(f"{p}:<dataset>" for p in sorted(_PREFIX_READERS)))


def load_manifest(
    name: str, root: str | Path, strict: bool = False
) -> tuple[list[Utterance], list[Skipped]]:
    """Read corpus ``name`` at ``root``; utterances sorted by ``utt_id`` for reproducibility.

    ``tfds:<dataset>`` reads a prepared TFDS dataset in the data_dir ``root`` (its ``train``
    split; audio is decoded later, with the same checks as files, by ``load_corpus``).
    Raises :class:`ConfigError` for an unknown corpus name or a missing ``root``, and
    :class:`ManifestError` when no usable file is found (or, with ``strict``, on the first
    unusable one).
    """
    prefix, _, dataset = name.partition(":")
    if dataset and prefix in _PREFIX_READERS:
        reader = functools.partial(_PREFIX_READERS[prefix], dataset)
    elif name in _READERS:
        reader = _READERS[name]
    else:
        raise ConfigError(f"unknown corpus '{name}'; available: {', '.join(available_corpora())}")
    root = Path(root).expanduser()
    if not root.exists():
        raise ConfigError(f"corpus '{name}': root {root} does not exist")
    utts, skipped = reader(root, strict=strict)
    if not utts:
        reasons = "; ".join(f"{Path(s.path).name}: {s.reason}" for s in skipped[:3])
        raise ManifestError(
            f"corpus '{name}': no usable audio files in {root}"
            + (f" ({len(skipped)} skipped, e.g. {reasons})" if skipped else "")
        )
    ids = [u.utt_id for u in utts]
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise ManifestError(f"corpus '{name}' at {root}: duplicate utterance ids {dupes}")
    return sorted(utts, key=lambda u: u.utt_id), skipped


def _skip(skipped: list[Skipped], path: str | Path, reason: str, strict: bool) -> None:
    if strict:
        raise ManifestError(f"{path}: {reason}")
    skipped.append(Skipped(str(path), reason))


def _audio_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in AUDIO_SUFFIXES
    )


# --- Emo-DB -----------------------------------------------------------------------------

EMODB_EMOTIONS: dict[str, str] = {
    "W": "anger",  # Ärger
    "L": "boredom",  # Langeweile
    "E": "disgust",  # Ekel
    "A": "fear",  # Angst
    "F": "happiness",  # Freude
    "T": "sadness",  # Trauer
    "N": "neutral",
}
assert set(EMODB_EMOTIONS.values()) == set(EMOTIONS)

_EMODB_NAME = re.compile(
    r"^(?P<speaker>\d{2})(?P<text>[ab]\d{2})(?P<emotion>[A-Z])(?P<version>[a-z])$"
)


@register_corpus("emodb")
def read_emodb(root: Path, *, strict: bool) -> tuple[list[Utterance], list[Skipped]]:
    """Emo-DB: ``SSTTTEV.wav`` in ``root`` or ``root/wav``.

    SS speaker, TTT text code (a01..b10), E emotion letter (:data:`EMODB_EMOTIONS`), V
    version. Non-audio files (README, hidden files) are ignored; an audio file whose name
    does not parse is skipped with the reason.
    """
    folder = root / "wav" if (root / "wav").is_dir() else root
    if not folder.is_dir():
        raise ManifestError(f"Emo-DB root {root} is not a folder")
    files = _audio_files(folder)
    if not files:
        raise ManifestError(f"no Emo-DB audio files ({'/'.join(AUDIO_SUFFIXES)}) in {folder}")
    utts: list[Utterance] = []
    skipped: list[Skipped] = []
    for path in files:
        m = _EMODB_NAME.match(path.stem)
        if m is None:
            _skip(
                skipped,
                path,
                f"file name '{path.name}' is not Emo-DB's SSTTTEV.wav "
                "(2-digit speaker, text a01..b10, emotion letter, version letter)",
                strict,
            )
            continue
        letter = m["emotion"]
        if letter not in EMODB_EMOTIONS:
            _skip(
                skipped,
                path,
                f"unknown Emo-DB emotion letter '{letter}' in '{path.name}' "
                f"(known: {''.join(EMODB_EMOTIONS)})",
                strict,
            )
            continue
        utts.append(
            Utterance(
                path=str(path),
                label=EMODB_EMOTIONS[letter],
                speaker=m["speaker"],
                utt_id=path.stem,
                extra={"text": m["text"], "version": m["version"]},
            )
        )
    return utts, skipped


@register_corpus("demo")
def read_demo(root: Path, *, strict: bool) -> tuple[list[Utterance], list[Skipped]]:
    """The synthetic demo corpus (``ser_jax.data.synthetic``): Emo-DB's file layout."""
    return read_emodb(root, strict=strict)


# --- Folder per label ---------------------------------------------------------------------


@register_corpus("folder")
def read_folder(root: Path, *, strict: bool) -> tuple[list[Utterance], list[Skipped]]:
    """``root/<label>/*.{wav,flac,ogg}``; speaker ``"unknown"``, utt_id ``<label>/<stem>``.

    Other (non-hidden) files inside a label folder are skipped with the reason.
    """
    if not root.is_dir():
        raise ManifestError(f"folder corpus root {root} is not a folder")
    label_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not label_dirs:
        raise ManifestError(f"no label folders (root/<label>/*.wav) in {root}")
    utts: list[Utterance] = []
    skipped: list[Skipped] = []
    for label_dir in label_dirs:
        for path in sorted(label_dir.iterdir()):
            if path.name.startswith(".") or not path.is_file():
                continue
            if path.suffix.lower() not in AUDIO_SUFFIXES:
                _skip(
                    skipped,
                    path,
                    f"unsupported extension '{path.suffix}' (expected {', '.join(AUDIO_SUFFIXES)})",
                    strict,
                )
                continue
            utts.append(
                Utterance(
                    path=str(path),
                    label=label_dir.name,
                    speaker="unknown",
                    utt_id=f"{label_dir.name}/{path.stem}",
                )
            )
    return utts, skipped


# --- CSV manifest --------------------------------------------------------------------------


@register_corpus("csv")
def read_csv(root: Path, *, strict: bool) -> tuple[list[Utterance], list[Skipped]]:
    """A CSV with header ``path,label[,speaker][,utt_id][,<extra>...]``.

    ``root`` is the CSV file, or a folder holding ``manifest.csv``. Relative paths are
    relative to the CSV's folder. Speaker defaults to ``"unknown"``, utt_id to the path
    without suffix. A bad row (missing path or label, wrong column count, missing file,
    duplicate path) is skipped with its line number (the header is line 1).
    """
    csv_path = root / "manifest.csv" if root.is_dir() else root
    if not csv_path.is_file():
        raise ManifestError(f"no manifest CSV at {csv_path}")
    base = csv_path.parent
    utts: list[Utterance] = []
    skipped: list[Skipped] = []
    seen: set[str] = set()
    with csv_path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise ManifestError(f"{csv_path}: empty CSV (expected header path,label[,speaker])")
        header = [h.strip() for h in header]
        missing = [c for c in ("path", "label") if c not in header]
        if missing:
            raise ManifestError(
                f"{csv_path}: header {header} lacks column(s) {missing} "
                "(expected path,label[,speaker])"
            )
        col = {name: i for i, name in enumerate(header)}
        extra_cols = [h for h in header if h not in MANIFEST_COLUMNS]
        for row in reader:
            line = reader.line_num
            where = f"line {line}"
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                _skip(
                    skipped,
                    csv_path,
                    f"{where}: {len(row)} columns, header has {len(header)}: {row}",
                    strict,
                )
                continue
            rel = row[col["path"]].strip()
            label = row[col["label"]].strip()
            if not rel or not label:
                _skip(
                    skipped,
                    csv_path,
                    f"{where}: empty {'path' if not rel else 'label'}: {row}",
                    strict,
                )
                continue
            audio = Path(rel) if Path(rel).is_absolute() else base / rel
            if not audio.is_file():
                _skip(skipped, csv_path, f"{where}: audio file {audio} does not exist", strict)
                continue
            key = str(audio.resolve())
            if key in seen:
                _skip(skipped, csv_path, f"{where}: duplicate path {rel}", strict)
                continue
            seen.add(key)
            speaker = row[col["speaker"]].strip() if "speaker" in col else ""
            utt_id = row[col["utt_id"]].strip() if "utt_id" in col else ""
            utts.append(
                Utterance(
                    path=str(audio),
                    label=label,
                    speaker=speaker or "unknown",
                    utt_id=utt_id or Path(rel).with_suffix("").as_posix(),
                    extra={k: row[col[k]] for k in extra_cols},
                )
            )
    return utts, skipped
