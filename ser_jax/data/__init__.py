"""Data stage: corpora → manifest → audio → splits (→ batches, in ``pipeline``).

* :mod:`~ser_jax.data.manifest`: :class:`Utterance`, :class:`Skipped`, :data:`EMOTIONS`.
* :mod:`~ser_jax.data.corpora`: registered readers (``emodb``, ``folder``, ``csv``) and
  :func:`load_manifest`.
* :mod:`~ser_jax.data.audio`: :func:`load_audio` / :func:`load_corpus` (float32 mono,
  resampled with soxr, typed errors for bad files).
* :mod:`~ser_jax.data.splits`: stratified, speaker-independent and LOSO index splits.
* :mod:`~ser_jax.data.synthetic`: :func:`make_demo_corpus`, a small Emo-DB-shaped corpus.
* :mod:`~ser_jax.data.tfds_emodb`: Emo-DB as a TFDS builder; reading TFDS audio sets
  (optional extra ``tfds``, imported lazily).
"""

from ser_jax.data.audio import AudioInfo, audio_info, load_audio, load_audio_cached, load_corpus
from ser_jax.data.corpora import available_corpora, load_manifest, register_corpus
from ser_jax.data.manifest import (
    EMOTIONS,
    Skipped,
    Utterance,
    label_ids,
    label_names,
    speakers_of,
    write_manifest_csv,
)
from ser_jax.data.splits import (
    Split,
    check_disjoint,
    loso_folds,
    speaker_independent_split,
    stratified_split,
)
from ser_jax.data.synthetic import make_demo_corpus
from ser_jax.data.tfds_emodb import build_emodb_tfds, load_tfds_split

__all__ = [
    "EMOTIONS",
    "AudioInfo",
    "Skipped",
    "Split",
    "Utterance",
    "audio_info",
    "available_corpora",
    "build_emodb_tfds",
    "check_disjoint",
    "label_ids",
    "label_names",
    "load_audio",
    "load_audio_cached",
    "load_corpus",
    "load_manifest",
    "load_tfds_split",
    "loso_folds",
    "make_demo_corpus",
    "register_corpus",
    "speaker_independent_split",
    "speakers_of",
    "stratified_split",
    "write_manifest_csv",
]
