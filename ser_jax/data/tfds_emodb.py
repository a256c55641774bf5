"""TFDS: Emo-DB as a TensorFlow Datasets builder, and random-access reading of TFDS audio sets.

:func:`build_emodb_tfds` prepares a dataset named ``emodb`` from a manually placed copy of
the corpus (``manual_dir`` holding the ``SSTTTEV.wav`` files, or a ``wav/`` folder with them)
into ``data_dir`` as ``array_record``: one ``train`` split (Emo-DB has no official split; use
:mod:`ser_jax.data.splits` on the speakers), features ``audio`` (float32, 16 kHz, resampled
with :func:`ser_jax.data.audio.load_audio`), ``label`` (``ClassLabel`` over
:data:`~ser_jax.data.manifest.EMOTIONS`), ``speaker_id`` and ``utt_id``. Files that fail to
load are left out with a warning.

:func:`read_tfds` is the corpus reader of ``tfds:<name>``: any prepared TFDS audio dataset with
``audio`` and ``label`` features (``speaker_id`` optional; e.g. the catalogue's ``crema_d``),
read through ``tfds.data_source`` (random access over array_record, no ``tf.data``); its audio
goes through the same checks and resampling as files (:mod:`ser_jax.data.audio`).

TensorFlow Datasets and TensorFlow are optional (extra ``tfds``) and imported only inside
the functions; without them the functions raise :class:`MissingExtraError`.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from ser_jax.data.audio import load_audio, load_corpus, register_decoder
from ser_jax.data.corpora import load_manifest, register_corpus_prefix
from ser_jax.data.manifest import EMOTIONS, Skipped, Utterance
from ser_jax.errors import AudioContentError, AudioDecodeError, ConfigError, MissingExtraError

log = logging.getLogger(__name__)

EMODB_SAMPLE_RATE = 16000
EMODB_VERSION = "1.0.0"


def _import_tfds() -> Any:
    """``tensorflow_datasets``, or :class:`MissingExtraError` if it or TensorFlow is missing."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as err:
        raise MissingExtraError("TFDS datasets", "tfds", str(err)) from err
    if importlib.util.find_spec("tensorflow") is None:
        raise MissingExtraError(
            "TFDS datasets",
            "tfds",
            "tensorflow is not installed (tfds needs it to prepare and read array_record datasets)",
        )
    return tfds


@functools.cache
def emodb_builder_class() -> type:
    """The ``emodb`` ``GeneratorBasedBuilder`` class, defined (and registered) on first call."""
    tfds = _import_tfds()

    class Emodb(tfds.core.GeneratorBasedBuilder):
        """Berlin Database of Emotional Speech (Emo-DB), from a manually placed copy."""

        VERSION = tfds.core.Version(EMODB_VERSION)
        RELEASE_NOTES = {EMODB_VERSION: "Initial release: float32 audio at 16 kHz."}
        MANUAL_DOWNLOAD_INSTRUCTIONS = (
            "Place the Emo-DB wav files (SSTTTEV.wav, e.g. 03a01Wa.wav) in manual_dir, or in "
            "manual_dir/wav. Any sample rate or length is accepted; audio is resampled to 16 kHz."
        )

        def _info(self) -> Any:
            return tfds.core.DatasetInfo(
                builder=self,
                description="Emo-DB: acted German emotional speech, 7 emotions.",
                features=tfds.features.FeaturesDict(
                    {
                        "audio": tfds.features.Audio(
                            shape=(None,), dtype=np.float32, sample_rate=EMODB_SAMPLE_RATE
                        ),
                        "label": tfds.features.ClassLabel(names=list(EMOTIONS)),
                        "speaker_id": tfds.features.Text(),
                        "utt_id": tfds.features.Text(),
                    }
                ),
                supervised_keys=("audio", "label"),
                homepage="http://emodb.bilderbar.info/",
                citation=(
                    "@inproceedings{burkhardt2005emodb, title={A Database of German Emotional "
                    "Speech}, author={Burkhardt, Felix and Paeschke, Astrid and Rolfes, Miriam "
                    "and Sendlmeier, Walter F. and Weiss, Benjamin}, booktitle={Interspeech}, "
                    "year={2005}}"
                ),
            )

        def _split_generators(self, dl_manager: Any) -> dict[str, Any]:
            return {"train": self._generate_examples(Path(dl_manager.manual_dir))}

        def _generate_examples(self, root: Path) -> Any:
            utts, skipped = load_manifest("emodb", root)
            for s in skipped:
                log.warning("emodb tfds: skipping %s: %s", s.path, s.reason)
            for u in utts:
                try:
                    wave = load_audio(u.path, EMODB_SAMPLE_RATE)
                except (AudioDecodeError, AudioContentError) as err:
                    log.warning("emodb tfds: skipping %s: %s", u.path, err.cause)
                    continue
                yield (
                    u.utt_id,
                    {
                        "audio": wave,
                        "label": u.label,
                        "speaker_id": u.speaker,
                        "utt_id": u.utt_id,
                    },
                )

    return Emodb


def build_emodb_tfds(manual_dir: str | os.PathLike, data_dir: str | os.PathLike) -> None:
    """Prepare the ``emodb`` TFDS dataset from ``manual_dir`` into ``data_dir`` (array_record)."""
    tfds = _import_tfds()
    manual_dir = Path(manual_dir)
    if not manual_dir.is_dir():
        raise ConfigError(f"manual_dir {manual_dir} is not a folder of Emo-DB wav files")
    builder = emodb_builder_class()(data_dir=str(data_dir), file_format="array_record")
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir))
    )


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


# Examples read while listing a dataset, kept until audio loading asks for them (each record
# is read once); the sources stay open for a decode of an example asked for again.
_SOURCES: dict[str, tuple[Any, int | None]] = {}
_PENDING: dict[str, tuple[np.ndarray, int]] = {}


@register_corpus_prefix("tfds")
def read_tfds(
    name: str, root: Path, *, strict: bool = False, split: str = "train"
) -> tuple[list[Utterance], list[Skipped]]:
    """Corpus reader for ``tfds:<name>``: a prepared TFDS audio dataset in the data_dir
    ``root`` → utterances ``tfds:<name>/<split>/<index>``.

    Any dataset with ``audio`` and ``label`` features (``speaker_id`` and ``utt_id`` optional,
    e.g. the catalogue's ``crema_d``) is read through ``tfds.data_source`` (random access over
    array_record, no ``tf.data``). The audio itself is decoded by ``ser_jax.data.audio`` like a
    file's: the same checks (NaN/inf, silence, minimum length, ``strict``) and resampling to
    ``data.sample_rate`` from the dataset's declared rate.
    """
    tfds = _import_tfds()
    if name.split(":")[0].split("/")[0] == "emodb":
        emodb_builder_class()  # registers the builder so tfds finds it by name
    try:
        prepared = tfds.builder(name, data_dir=str(root)).is_prepared()
    except tfds.core.registered.DatasetNotFoundError as err:
        first_line = str(err).strip().splitlines()[0]
        raise ConfigError(f"unknown TFDS dataset {name!r} in {root}: {first_line}") from err
    if not prepared:
        raise ConfigError(
            f"TFDS dataset {name!r} is not prepared in {root} (for emodb run "
            "`ser-jax tfds-build` first)"
        )
    try:
        source = tfds.data_source(name, split=split, data_dir=str(root), download=False)
    except (KeyError, ValueError) as err:
        raise ConfigError(f"TFDS dataset {name!r} has no split {split!r}: {err}") from err
    features = source.dataset_info.features
    missing = [k for k in ("audio", "label") if k not in features]
    if missing:
        raise ConfigError(f"TFDS dataset {name!r} lacks feature(s) {missing}: {list(features)}")
    names = features["label"].names
    declared = features["audio"].sample_rate
    if declared is None:
        raise ConfigError(f"TFDS dataset {name!r} does not declare its audio sample rate")
    prefix = f"tfds:{name}/{split}"
    _SOURCES[prefix] = (source, int(declared))
    register_decoder("tfds:", _decode_tfds)
    utts: list[Utterance] = []
    for i in range(len(source)):
        ex = source[i]
        path = f"{prefix}/{i}"
        _PENDING[path] = (_as_samples(ex["audio"]), int(declared))
        utts.append(
            Utterance(
                path=path,
                label=names[int(ex["label"])],
                speaker=_text(ex["speaker_id"]) if "speaker_id" in ex else "unknown",
                utt_id=_text(ex["utt_id"]) if "utt_id" in ex else f"{split}/{i}",
                extra={"tfds_index": str(i), "dataset": name},
            )
        )
    return utts, []


def _as_samples(audio: Any) -> np.ndarray:
    """TFDS audio → float32 ``(frames, channels)``; integer audio (16-bit WAV decodes to
    int64) is divided by 32768."""
    audio = np.asarray(audio)
    if np.issubdtype(audio.dtype, np.integer):
        audio = audio.astype(np.float32) / 32768.0
    audio = audio.astype(np.float32, copy=False)
    return audio[:, None] if audio.ndim == 1 else audio


def _decode_tfds(path: str) -> tuple[np.ndarray, int]:
    if path in _PENDING:
        return _PENDING.pop(path)
    prefix, _, index = path.rpartition("/")
    if prefix not in _SOURCES or not index.isdigit():
        raise AudioDecodeError(path, "not an example of a TFDS dataset read in this process")
    source, rate = _SOURCES[prefix]
    return _as_samples(source[int(index)]["audio"]), rate


def load_tfds_split(
    name: str,
    split: str,
    data_dir: str | os.PathLike,
    *,
    sample_rate: int | None = None,
) -> tuple[list[np.ndarray], list[Utterance]]:
    """Every usable example of a prepared TFDS audio dataset split as ``(waves, utterances)``,
    at ``sample_rate`` (default: the dataset's own rate); see :func:`read_tfds`."""
    utts, _ = read_tfds(name, Path(data_dir), split=split)
    rate = sample_rate if sample_rate is not None else _SOURCES[f"tfds:{name}/{split}"][1]
    waves, kept, _ = load_corpus(utts, rate, progress=False)
    return waves, kept
