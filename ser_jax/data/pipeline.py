"""Batches: in-memory clips → seeded, padded, fixed-shape batches (grain ``MapDataset``).

A training batch is a pure function of ``(seed, step)``: grain's ``MapDataset`` gives random
access (``shuffle(seed).repeat()`` draws a fresh permutation each epoch), so resuming at step *k*
needs nothing but *k* and no iterator state can go stale. Each process builds the same global
batch order and keeps only its own rows (``process_index::process_count`` of every global batch),
so multi-host runs need no coordination beyond the seed.

A batch is a dict of numpy arrays, ready for ``jax.make_array_from_process_local_data``:
- ``audio``   (batch, samples) float32, zero after each clip's true length;
- ``length``  (batch,) int32 true lengths in samples;
- ``label``   (batch,) int32;
- ``weight``  (batch,) float32, 0 for rows that only pad the last evaluation batch;
- ``index``   (batch,) int32 position of the clip in its split (-1 for padding rows);
- ``aug_id``  (batch,) int32 identity of the augmentation draw (see ``TrainBatches``);
- ``augment`` (batch,) bool, False for the original copy in offline augmentation.

All clips of a batch are padded to the same bucket length: the longest clip of the *global*
batch rounded up to a multiple of ``bucket_samples`` (and at most ``max_samples``), so shapes
repeat and jit compiles once per bucket.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence

import grain
import numpy as np

from ser_jax.errors import ConfigError


@dataclasses.dataclass
class ClipSet:
    """One split in memory: waveforms (any lengths), label ids, and the utterances behind them."""

    waves: list[np.ndarray]
    labels: np.ndarray
    utts: list = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int32)
        if len(self.waves) != len(self.labels):
            raise ValueError(f"{len(self.waves)} waveforms but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.waves)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(w) for w in self.waves], dtype=np.int64)

    def subset(self, indices: Sequence[int]) -> ClipSet:
        idx = [int(i) for i in indices]
        return ClipSet(
            [self.waves[i] for i in idx],
            self.labels[idx],
            [self.utts[i] for i in idx] if self.utts else [],
        )


def bucket_length(longest: int, bucket_samples: int, max_samples: int) -> int:
    """Round ``longest`` up to a multiple of ``bucket_samples``, capped at ``max_samples``."""
    if bucket_samples <= 0:
        return min(longest, max_samples)
    return min(int(math.ceil(longest / bucket_samples) * bucket_samples), max_samples)


def _crop(wave: np.ndarray, max_samples: int, rng: np.random.Generator | None) -> np.ndarray:
    if len(wave) <= max_samples:
        return wave
    start = (
        int(rng.integers(0, len(wave) - max_samples + 1))
        if rng is not None
        else (len(wave) - max_samples) // 2
    )
    return wave[start : start + max_samples]


def _check_batch(batch_size: int, process_count: int) -> int:
    if batch_size <= 0:
        raise ConfigError(f"train.batch_size={batch_size} must be positive")
    if batch_size % process_count:
        raise ConfigError(
            f"train.batch_size={batch_size} does not divide by the {process_count} processes"
        )
    return batch_size // process_count


def _pack(
    rows: list[tuple[np.ndarray, int, int, int, int, bool]], length: int
) -> dict[str, np.ndarray]:
    audio = np.zeros((len(rows), length), np.float32)
    for i, (wave, *_rest) in enumerate(rows):
        audio[i, : len(wave)] = wave
    return {
        "audio": audio,
        "length": np.array([len(r[0]) for r in rows], np.int32),
        "label": np.array([r[1] for r in rows], np.int32),
        "weight": np.array([1.0 if r[2] >= 0 else 0.0 for r in rows], np.float32),
        "index": np.array([r[2] for r in rows], np.int32),
        "aug_id": np.array([r[3] for r in rows], np.int32),
        "augment": np.array([r[4] for r in rows], bool),
    }


class TrainBatches:
    """Training batches indexed by global step; drops the incomplete last batch of each epoch.

    Online augmentation (``copies == 0``): every file appears once an epoch and its ``aug_id``
    is unique per (epoch, file), so every step draws fresh augmentation. Offline augmentation
    (``copies = N``, MATLAB's NumAugmentations): every file appears N+1 times an epoch, the
    original (``augment=False``) and N copies whose ``aug_id`` is fixed across epochs, so each
    copy is the same augmented clip every time, as if written to disk once.
    """

    def __init__(
        self,
        clips: ClipSet,
        batch_size: int,
        *,
        seed: int,
        max_samples: int,
        bucket_samples: int,
        copies: int = 0,
        process_index: int = 0,
        process_count: int = 1,
    ):
        self.clips = clips
        self.batch_size = batch_size
        self.local_batch = _check_batch(batch_size, process_count)
        self.seed = seed
        self.max_samples = max_samples
        self.bucket_samples = bucket_samples
        self.copies = copies
        self.process_index = process_index
        self.process_count = process_count
        self.items = len(clips) * (copies + 1)
        if self.items < batch_size:
            raise ConfigError(
                f"train.batch_size={batch_size} is larger than the training set "
                f"({self.items} clips with copies): lower train.batch_size"
            )
        self.steps_per_epoch = self.items // batch_size
        self._lengths = np.minimum(clips.lengths, max_samples)
        self._order = (
            grain.MapDataset.range(self.items)
            .shuffle(seed=seed)
            .repeat()
            .batch(batch_size, drop_remainder=True)
        )

    def __getitem__(self, step: int) -> dict[str, np.ndarray]:
        items = np.asarray(self._order[step], dtype=np.int64)
        epoch = step // self.steps_per_epoch
        files = items % len(self.clips)
        copy = items // len(self.clips)
        length = bucket_length(
            int(self._lengths[files].max()), self.bucket_samples, self.max_samples
        )
        lo = self.process_index * self.local_batch
        rows = []
        for item, f, c in zip(
            items[lo : lo + self.local_batch],
            files[lo : lo + self.local_batch],
            copy[lo : lo + self.local_batch],
            strict=True,
        ):
            rng = np.random.default_rng([self.seed, int(epoch), int(item)])
            wave = _crop(self.clips.waves[f], self.max_samples, rng)
            if self.copies:
                aug_id, augment = int(item), bool(c > 0)
            else:
                aug_id, augment = int(epoch * self.items + item), True
            rows.append((wave, int(self.clips.labels[f]), int(f), aug_id, augment))
        return _pack(rows, length)

    def iterate(self, start: int, stop: int) -> Iterator[dict[str, np.ndarray]]:
        """Batches for steps ``start..stop-1``, assembled on a background thread (grain prefetch)."""
        ds = grain.MapDataset.range(start, stop).map(self.__getitem__)
        it = ds.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=2))
        yield from it


def eval_batches(
    clips: ClipSet,
    batch_size: int,
    *,
    max_samples: int,
    bucket_samples: int,
    process_index: int = 0,
    process_count: int = 1,
) -> Iterator[dict[str, np.ndarray]]:
    """Every clip exactly once, in order, centre-cropped; the last batch is padded with weight 0.

    Clips are sorted by length inside the iteration so that batches of similar length share a
    bucket (less padding, fewer shapes); ``index`` says which clip each row is.
    """
    local = _check_batch(batch_size, process_count)
    lengths = np.minimum(clips.lengths, max_samples)
    order = np.argsort(lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        length = bucket_length(int(lengths[chunk].max()), bucket_samples, max_samples)
        global_rows = [
            (_crop(clips.waves[i], max_samples, None), int(clips.labels[i]), int(i), 0, False)
            for i in chunk
        ]
        pad = batch_size - len(global_rows)
        global_rows += [(np.zeros(0, np.float32), 0, -1, 0, False)] * pad
        lo = process_index * local
        yield _pack(global_rows[lo : lo + local], length)
