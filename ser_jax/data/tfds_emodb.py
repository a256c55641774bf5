"""TFDS: Emo-DB as a TensorFlow Datasets builder, and random-access reading of TFDS audio sets.

:func:`build_emodb_tfds` prepares a dataset named ``emodb`` from a manually placed copy of
the corpus (``manual_dir`` holding the ``SSTTTEV.wav`` files, or a ``wav/`` folder with them)
into ``data_dir`` as ``array_record``: one ``train`` split (Emo-DB has no official split; use
:mod:`ser_jax.data.splits` on the speakers), features ``audio`` (float32, 16 kHz, resampled
with :func:`ser_jax.data.audio.load_audio`), ``label`` (``ClassLabel`` over
:data:`~ser_jax.data.manifest.EMOTIONS`), ``speaker_id`` and ``utt_id``. Files that fail to
load are left out with a warning.

:func:`load_tfds_split` reads any prepared TFDS audio dataset with ``audio`` and ``label``
features (``speaker_id`` optional; e.g. the catalogue's ``crema_d``) through
``tfds.data_source`` (random access over array_record, no ``tf.data``) and hands on the same
``(waves, utterances)`` as :func:`ser_jax.data.audio.load_corpus`.

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

from ser_jax.data.audio import load_audio
from ser_jax.data.corpora import load_manifest
from ser_jax.data.manifest import EMOTIONS, Utterance
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


def load_tfds_split(
    name: str,
    split: str,
    data_dir: str | os.PathLike,
    *,
    sample_rate: int | None = None,
) -> tuple[list[np.ndarray], list[Utterance]]:
    """Read a prepared TFDS audio dataset split into ``(waves, utterances)``.

    ``waves[i]`` is float32 mono ``(samples,)``: integer audio (TFDS decodes 16-bit WAV to
    int64) is divided by 32768, channels are averaged, and with ``sample_rate`` set the audio
    is resampled (soxr HQ) from the dataset's declared rate. Utterance paths are
    ``tfds:<name>/<split>/<index>``; speaker is ``speaker_id`` when the dataset has it, else
    ``"unknown"``; ``utt_id`` is the dataset's ``utt_id`` or ``<split>/<index>``.
    """
    tfds = _import_tfds()
    if name.split(":")[0].split("/")[0] == "emodb":
        emodb_builder_class()  # registers the builder so tfds finds it by name
    try:
        prepared = tfds.builder(name, data_dir=str(data_dir)).is_prepared()
    except tfds.core.registered.DatasetNotFoundError as err:
        first_line = str(err).strip().splitlines()[0]
        raise ConfigError(f"unknown TFDS dataset {name!r} in {data_dir}: {first_line}") from err
    if not prepared:
        raise ConfigError(
            f"TFDS dataset {name!r} is not prepared in {data_dir} (for emodb run "
            "build_emodb_tfds(manual_dir, data_dir) first)"
        )
    try:
        source = tfds.data_source(name, split=split, data_dir=str(data_dir), download=False)
    except (KeyError, ValueError) as err:
        raise ConfigError(f"TFDS dataset {name!r} has no split {split!r}: {err}") from err
    features = source.dataset_info.features
    missing = [k for k in ("audio", "label") if k not in features]
    if missing:
        raise ConfigError(f"TFDS dataset {name!r} lacks feature(s) {missing}: {list(features)}")
    names = features["label"].names
    declared = features["audio"].sample_rate
    if sample_rate is not None and declared is None:
        raise ConfigError(f"TFDS dataset {name!r} does not declare its audio sample rate")
    waves: list[np.ndarray] = []
    utts: list[Utterance] = []
    for i in range(len(source)):
        ex = source[i]
        audio = np.asarray(ex["audio"])
        if np.issubdtype(audio.dtype, np.integer):
            audio = audio.astype(np.float32) / 32768.0
        audio = audio.astype(np.float32, copy=False)
        if audio.ndim == 2:
            audio = audio.mean(axis=1, dtype=np.float32)
        if sample_rate is not None and declared != sample_rate:
            import soxr

            audio = soxr.resample(audio, declared, sample_rate, quality="HQ").astype(np.float32)
        waves.append(np.ascontiguousarray(audio))
        utt_id = _text(ex["utt_id"]) if "utt_id" in ex else f"{split}/{i}"
        utts.append(
            Utterance(
                path=f"tfds:{name}/{split}/{i}",
                label=names[int(ex["label"])],
                speaker=_text(ex["speaker_id"]) if "speaker_id" in ex else "unknown",
                utt_id=utt_id,
                extra={"tfds_index": str(i), "dataset": name},
            )
        )
    return waves, utts
