"""Audio loading: a manifest's files → float32 mono waveforms at the model's sample rate.

Decoding is libsndfile (``soundfile``: WAV, FLAC, OGG and the other formats it reads),
channels are averaged to mono, and every file is resampled with soxr (HQ) from its own
rate, so corpora at 16 kHz, 22.05 kHz or 44.1 kHz, of any length, come out alike. Files
that cannot be decoded raise :class:`AudioDecodeError`; files whose samples are unusable
(NaN/inf, all zero, shorter than one analysis window) raise :class:`AudioContentError`.
:func:`load_corpus` turns those into :class:`Skipped` entries (or raises with
``strict=True``) and hands on ``(waves, utterances, skipped)`` to the splits and batching.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from ser_jax.data.manifest import Skipped, Utterance
from ser_jax.errors import AudioContentError, AudioDecodeError

log = logging.getLogger(__name__)

_READABLE = "WAV, FLAC, OGG/Vorbis, MP3, AIFF and other libsndfile formats"


@dataclasses.dataclass(frozen=True)
class AudioInfo:
    """What the file itself says, before any conversion."""

    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str

    @property
    def duration(self) -> float:
        """Seconds at the native rate."""
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def _describe_start(path: Path) -> str:
    """A short description of a file's first bytes, to say what it is instead of audio."""
    with path.open("rb") as f:
        head = f.read(64)
    if head[:4] in (b"RIFF", b"RIFX", b"RF64"):
        return f"WAV header present but unreadable ({path.stat().st_size} bytes in file)"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and text.strip() and all(c.isprintable() or c.isspace() for c in text):
        shown = text.strip().splitlines()[0][:40]
        return f"not audio: the file starts with text {shown!r}"
    return "first bytes " + head[:8].hex(" ")


def _decode_error(path: Path, err: sf.LibsndfileError) -> AudioDecodeError:
    reason = (err.error_string or str(err)).strip().rstrip(".")
    start = _describe_start(path)
    if reason.lower().startswith("format not recognised"):
        return AudioDecodeError(
            str(path),
            f"unsupported or unrecognised format '{path.suffix}' ({start}; libsndfile: "
            f"{reason}); readable: {_READABLE}",
        )
    if not str(err).startswith("Error opening"):  # opened fine, failed while reading
        return AudioDecodeError(str(path), f"decoding failed mid-stream (libsndfile: {reason})")
    return AudioDecodeError(
        str(path), f"corrupt or truncated header ({start}; libsndfile: {reason})"
    )


def _check_file(path: Path) -> None:
    if not path.exists():
        raise AudioDecodeError(str(path), "file not found")
    if not path.is_file():
        raise AudioDecodeError(str(path), "not a regular file")
    if path.stat().st_size == 0:
        raise AudioDecodeError(str(path), "empty file (0 bytes)")


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Native sample rate, channels, frames and format of ``path``; typed errors as :func:`load_audio`."""
    path = Path(path)
    _check_file(path)
    try:
        info = sf.info(str(path))
    except sf.LibsndfileError as err:
        raise _decode_error(path, err) from err
    return AudioInfo(
        sample_rate=int(info.samplerate),
        channels=int(info.channels),
        frames=int(info.frames),
        format=str(info.format),
        subtype=str(info.subtype),
    )


# A corpus whose audio is not in files (a TFDS dataset) registers a decoder for its path
# prefix: ``decoder(path) -> (samples (frames, channels) float32, native rate)``. Everything
# after decoding (the checks, mono, resampling) is the same for every corpus.
_DECODERS: dict[str, Callable[[str], tuple[np.ndarray, int]]] = {}


def register_decoder(prefix: str, decoder: Callable[[str], tuple[np.ndarray, int]]) -> None:
    """Decode paths starting with ``prefix`` (e.g. ``"tfds:"``) with ``decoder``."""
    _DECODERS[prefix] = decoder


def _decode_file(path: Path) -> tuple[np.ndarray, int]:
    _check_file(path)
    try:
        data, native_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except sf.LibsndfileError as err:
        raise _decode_error(path, err) from err
    except (RuntimeError, ValueError, EOFError) as err:  # e.g. decoder errors mid-stream
        raise AudioDecodeError(str(path), f"decoding failed: {err}") from err
    return data, int(native_rate)


def decode(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """``(samples (frames, channels) float32, native sample rate)`` of a file or a registered
    non-file source."""
    text = str(path)
    for prefix, decoder in _DECODERS.items():
        if text.startswith(prefix):
            return decoder(text)
    return _decode_file(Path(path))


def load_audio(
    path: str | os.PathLike,
    sample_rate: int = 16000,
    *,
    min_samples: int = 400,
    trim_silence: bool = False,
) -> np.ndarray:
    """Decode ``path`` to float32 mono at ``sample_rate``, shape ``(samples,)``.

    Channels are averaged; resampling (soxr HQ) starts from the file's own rate. Checks, in
    order: the file exists and is not empty, it decodes (:class:`AudioDecodeError`), no
    sample is NaN/inf, not every sample is zero, and at least ``min_samples`` samples remain
    after resampling (one analysis window, e.g. 25 ms at 16 kHz; :class:`AudioContentError`).
    ``trim_silence`` drops the digital silence at both ends first (:func:`trim_digital_silence`).
    """
    data, native_rate = decode(path)
    return to_model_audio(
        data,
        native_rate,
        sample_rate,
        str(path),
        min_samples=min_samples,
        trim_silence=trim_silence,
    )


def trim_digital_silence(mono: np.ndarray) -> np.ndarray:
    """``mono`` without the samples that are exactly zero at its start and end.

    Exact zeros are not recorded silence (a microphone's floor is never exactly zero) but
    padding: the shared Emo-DB copy pads the utterances shorter than 2 s with up to 0.54 s of
    zeros (95 of its 409 files by more than 50 ms). Left in, that padding counts as audio: the
    LSTM's last step reads it, and per-utterance statistics include it. Trimmed, the model
    masks it like any batch padding.
    """
    nonzero = np.flatnonzero(mono)
    if nonzero.size == 0:
        return mono[:0]
    return mono[nonzero[0] : nonzero[-1] + 1]


def to_model_audio(
    data: np.ndarray,
    native_rate: int,
    sample_rate: int,
    name: str,
    *,
    min_samples: int = 400,
    trim_silence: bool = False,
) -> np.ndarray:
    """Decoded samples ``(frames, channels)`` → checked float32 mono at ``sample_rate``
    (``trim_silence``: without the exact zeros at both ends, trimmed at the native rate)."""
    data = np.asarray(data, np.float32)
    if data.ndim == 1:
        data = data[:, None]
    frames, channels = data.shape
    if frames == 0:
        raise AudioContentError(
            name, f"no samples (header is valid, {channels} channel(s) at {native_rate} Hz)"
        )
    bad = ~np.isfinite(data)
    if bad.any():
        raise AudioContentError(
            name,
            f"{int(bad.sum())} of {data.size} samples are NaN or inf "
            f"(first at frame {int(np.argmax(bad.any(axis=1)))})",
        )
    if not data.any():
        raise AudioContentError(
            name, f"all {frames} samples are zero (silent file, {frames / native_rate:.3f} s)"
        )
    mono = data.mean(axis=1, dtype=np.float32) if channels > 1 else data[:, 0]
    if trim_silence:  # before resampling, whose ringing would blur where the zeros start
        mono = trim_digital_silence(mono)
    if native_rate != sample_rate:
        mono = soxr.resample(np.ascontiguousarray(mono), native_rate, sample_rate, quality="HQ")
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    if mono.shape[0] < min_samples:
        raise AudioContentError(
            name,
            f"too short: {mono.shape[0]} samples at {sample_rate} Hz "
            f"({1000 * mono.shape[0] / sample_rate:.1f} ms, from {frames} at {native_rate} Hz"
            f"{', digital silence trimmed' if trim_silence else ''}); "
            f"need at least min_samples={min_samples} (one analysis window)",
        )
    return mono


def _cache_file(
    cache_dir: Path, path: Path, sample_rate: int, min_samples: int, trim_silence: bool
) -> Path:
    st = path.stat()
    key = f"{path.resolve()}|{st.st_mtime_ns}|{st.st_size}|{sample_rate}|{min_samples}"
    if trim_silence:
        key += "|trim"
    digest = hashlib.sha1(key.encode()).hexdigest()[:20]
    return cache_dir / f"{path.stem}-{digest}.npy"


def load_audio_cached(
    path: str | os.PathLike,
    sample_rate: int = 16000,
    *,
    min_samples: int = 400,
    trim_silence: bool = False,
    cache_dir: str | os.PathLike | None = None,
) -> np.ndarray:
    """:func:`load_audio`, memoised as ``.npy`` in ``cache_dir`` (keyed by path, mtime, size, rate).

    Only successful loads are cached; a changed file (new mtime or size) is decoded again.
    """
    load = functools.partial(
        load_audio, sample_rate=sample_rate, min_samples=min_samples, trim_silence=trim_silence
    )
    if cache_dir is None or any(str(path).startswith(p) for p in _DECODERS):
        return load(path)
    path = Path(path)
    _check_file(path)
    cache_dir = Path(cache_dir)
    target = _cache_file(cache_dir, path, sample_rate, min_samples, trim_silence)
    if target.is_file():
        try:
            return np.load(target, allow_pickle=False)
        except (OSError, ValueError) as err:  # a torn cache file: decode again
            log.warning("ignoring unreadable cache file %s: %s", target, err)
    wave = load(path)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as f:
        np.save(f, wave, allow_pickle=False)
    os.replace(tmp, target)
    return wave


def load_corpus(
    utts: Sequence[Utterance],
    sample_rate: int = 16000,
    *,
    strict: bool = False,
    min_samples: int = 400,
    trim_silence: bool = False,
    progress: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> tuple[list[np.ndarray], list[Utterance], list[Skipped]]:
    """Load every utterance; returns ``(waves, kept_utterances, skipped)``.

    ``waves[i]`` is float32 ``(samples_i,)`` for ``kept_utterances[i]``. A file that fails
    becomes ``Skipped(path, "<ErrorType>: <cause>")`` and a warning; ``strict=True`` raises
    the first error instead. ``cache_dir`` enables :func:`load_audio_cached`; ``trim_silence``
    drops each file's digital silence at both ends (:func:`trim_digital_silence`).
    """
    from tqdm.auto import tqdm

    waves: list[np.ndarray] = []
    kept: list[Utterance] = []
    skipped: list[Skipped] = []
    for utt in tqdm(utts, desc="loading audio", unit="file", disable=not progress):
        try:
            wave = load_audio_cached(
                utt.path,
                sample_rate,
                min_samples=min_samples,
                trim_silence=trim_silence,
                cache_dir=cache_dir,
            )
        except (AudioDecodeError, AudioContentError) as err:
            if strict:
                raise
            log.warning("skipping %s: %s", utt.path, err.cause)
            skipped.append(Skipped(utt.path, f"{type(err).__name__}: {err.cause}"))
            continue
        waves.append(wave)
        kept.append(utt)
    if skipped:
        log.warning(
            "skipped %d of %d files (see the returned Skipped list)", len(skipped), len(utts)
        )
    return waves, kept, skipped
