"""Batches: in-memory clips → seeded, padded, fixed-shape batches (grain ``MapDataset``).

A training batch is a pure function of ``(seed, step)``: grain's ``MapDataset`` gives random
access (``shuffle(seed).repeat()`` draws a fresh permutation each epoch), so resuming at step *k*
needs nothing but *k* and no iterator state can go stale. Every process builds the same global
batch and hands the devices it drives their rows (``ser_jax.parallel.to_global``), so multi-host
runs need no coordination beyond the seed.

A batch is a dict of numpy arrays:
- ``audio``   (batch, samples) float32, zero after each clip's true length;
- ``length``  (batch,) int32 true lengths in samples;
- ``label``   (batch,) int32;
- ``weight``  (batch,) float32, 1 (every training row is a clip);
- ``index``   (batch,) int32 position of the clip in its split;
- ``aug_id``  (batch,) int32 identity of the augmentation draw (see ``TrainBatches``);
- ``augment`` (batch,) bool, False for the original copy in offline augmentation;
- any per-clip arrays given as ``extra`` (rows of the clips in the batch), e.g. each clip's
  speaker statistics for ``frontend.normalize="speaker"``.

All clips of a batch are padded to the same bucket length: the longest clip of the batch
rounded up to a multiple of ``bucket_samples`` (and at most ``max_samples``), so shapes repeat
and jit compiles once per bucket. Evaluation batches are made by ``ser_jax.evaluation.scoring``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence

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


def _random_crop(wave: np.ndarray, max_samples: int, rng: np.random.Generator) -> np.ndarray:
    if len(wave) <= max_samples:
        return wave
    start = int(rng.integers(0, len(wave) - max_samples + 1))
    return wave[start : start + max_samples]


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
        "weight": np.ones(len(rows), np.float32),
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

    Speaker batches (``speakers`` given, ``data.speaker_batches``): every batch holds the clips
    of one speaker, so BatchNorm normalises each training batch by that speaker's statistics,
    as speaker-adaptive BatchNorm (``eval.speaker_bn``) does for the test speaker. Each epoch
    every speaker's items are shuffled and cut into ``ceil(n / batch_size)`` near-equal parts,
    the parts of all speakers are shuffled together, and a part short of ``batch_size`` is
    filled with empty rows (``length`` 0, ``weight`` 0), which the loss and the masked
    BatchNorm never see: every file still appears once an epoch and nothing is dropped.
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
        extra: dict[str, np.ndarray] | None = None,
        speakers: Sequence[str] | None = None,
    ):
        if batch_size <= 0:
            raise ConfigError(f"train.batch_size={batch_size} must be positive")
        self.clips = clips
        self.batch_size = batch_size
        self.seed = seed
        self.max_samples = max_samples
        self.bucket_samples = bucket_samples
        self.copies = copies
        self.extra = {k: np.asarray(v) for k, v in (extra or {}).items()}
        for k, v in self.extra.items():
            if len(v) != len(clips):
                raise ValueError(f"extra[{k!r}] has {len(v)} rows for {len(clips)} clips")
        self.items = len(clips) * (copies + 1)
        if self.items < batch_size:
            raise ConfigError(
                f"train.batch_size={batch_size} is larger than the training set "
                f"({self.items} clips with copies): lower train.batch_size"
            )
        self.steps_per_epoch = self.items // batch_size
        self._lengths = np.minimum(clips.lengths, max_samples)
        self._groups: list[np.ndarray] = []
        self._plan: tuple[int, list[np.ndarray]] | None = None
        if speakers is not None:
            if len(speakers) != len(clips):
                raise ValueError(f"{len(speakers)} speakers for {len(clips)} clips")
            of_item = np.tile(np.asarray([str(s) for s in speakers]), copies + 1)
            self._groups = [np.flatnonzero(of_item == s) for s in sorted(set(of_item.tolist()))]
            self.steps_per_epoch = sum(-(-len(g) // batch_size) for g in self._groups)
        import grain  # here, not at the top: scoring a model needs no grain (nor its orbax)

        self._order = (
            grain.MapDataset.range(self.items)
            .shuffle(seed=seed)
            .repeat()
            .batch(batch_size, drop_remainder=True)
        )

    def _speaker_part(self, step: int) -> np.ndarray:
        """The items of ``step``'s batch under speaker batches (the epoch's plan is cached)."""
        epoch, k = divmod(step, self.steps_per_epoch)
        if self._plan is None or self._plan[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch, len(self._groups)])
            parts = [
                part
                for g in self._groups
                for part in np.array_split(rng.permutation(g), -(-len(g) // self.batch_size))
            ]
            self._plan = (epoch, [parts[i] for i in rng.permutation(len(parts))])
        return self._plan[1][k]

    def __getitem__(self, step: int) -> dict[str, np.ndarray]:
        if self._groups:
            items = self._speaker_part(step)
        else:
            items = np.asarray(self._order[step], dtype=np.int64)
        epoch = step // self.steps_per_epoch
        files = items % len(self.clips)
        copy = items // len(self.clips)
        length = bucket_length(
            int(self._lengths[files].max()), self.bucket_samples, self.max_samples
        )
        rows = []
        for item, f, c in zip(items, files, copy, strict=True):
            rng = np.random.default_rng([self.seed, int(epoch), int(item)])
            wave = _random_crop(self.clips.waves[f], self.max_samples, rng)
            if self.copies:
                aug_id, augment = int(item), bool(c > 0)
            else:
                aug_id, augment = int(epoch * self.items + item), True
            rows.append((wave, int(self.clips.labels[f]), int(f), aug_id, augment))
        batch = _pack(rows, length)
        for k, v in self.extra.items():
            batch[k] = v[files]
        empty = self.batch_size - len(items)
        if empty:  # speaker batches: fill with rows that count nothing
            for k, v in batch.items():
                fill = np.zeros((empty, *v.shape[1:]), v.dtype)
                if k in ("index", "aug_id"):
                    fill -= 1
                batch[k] = np.concatenate([v, fill])
        return batch


def prefetch(make_batch, start: int, stop: int):
    """``make_batch(step)`` for steps ``start..stop-1``, assembled ahead on a background thread
    (grain prefetch) while the device runs the previous step."""
    import grain

    ds = grain.MapDataset.range(start, stop).map(make_batch)
    yield from ds.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=2))


# Evaluation: whole clips, long ones as half-overlapping windows (see ser_jax.evaluation.scoring).


def window_starts(length: int, window: int) -> list[int]:
    """Start samples of the half-overlapping windows that cover a clip of ``length``."""
    if length <= window:
        return [0]
    starts = list(range(0, length - window + 1, window // 2))
    if starts[-1] + window < length:
        starts.append(length - window)
    return starts


def windows(
    waves: Sequence[np.ndarray], max_samples: int, shifts: Sequence[int] = ()
) -> tuple[list[np.ndarray], np.ndarray]:
    """Every clip's windows and the clip each window belongs to; with ``shifts`` (samples),
    each window also comes shifted by each amount inside its own length, zero-filled (the
    time shift of training augmentation), for test-time augmentation."""
    out, owner = [], []
    for i, w in enumerate(waves):
        for s in window_starts(len(w), max_samples):
            piece = w[s : s + max_samples]
            out.append(piece)
            owner.append(i)
            for k in shifts:
                out.append(shift(piece, int(k)))
                owner.append(i)
    return out, np.asarray(owner, np.int64)


def shift(wave: np.ndarray, k: int) -> np.ndarray:
    """``wave`` moved by ``k`` samples (later if positive) inside its length, zero-filled."""
    out = np.zeros_like(wave)
    n = len(wave)
    if k >= 0:
        out[k:] = wave[: max(n - k, 0)]
    else:
        out[: max(n + k, 0)] = wave[-k:]
    return out


def window_batches(
    pieces: Sequence[np.ndarray], batch_size: int, *, max_samples: int, bucket_samples: int
) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """``(rows, batch)``: which pieces a batch holds, and the padded batch (``audio``,
    ``length``, ``weight``)."""
    order = np.argsort([len(p) for p in pieces], kind="stable")
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        length = bucket_length(max(len(pieces[j]) for j in rows), bucket_samples, max_samples)
        audio = np.zeros((batch_size, length), np.float32)
        lengths = np.zeros(batch_size, np.int32)
        for r, j in enumerate(rows):
            audio[r, : len(pieces[j])] = pieces[j]
            lengths[r] = len(pieces[j])
        weight = (np.arange(batch_size) < len(rows)).astype(np.float32)
        yield rows, {"audio": audio, "length": lengths, "weight": weight}
