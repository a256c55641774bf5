"""Splits: index arrays into the utterance list for train / validation / test.

Every function is seeded and deterministic (``numpy.random.default_rng(seed)``) and returns
sorted ``int64`` index arrays, so a split is reproduced from its arguments alone. Four
protocols:

* :func:`stratified_split`: per class, like MATLAB ``splitEachLabel(ads, 0.70, 0.15, 0.15)``;
  speakers are shared between parts (speaker-dependent).
* :func:`speaker_independent_split`: named speakers held out for test (and validation).
* :func:`loso_folds`: leave-one-speaker-out, one fold per speaker.
* :func:`speaker_kfold`: k folds over groups of speakers (a cheaper speaker-independent CV).

:func:`check_disjoint` verifies any split before it is used.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence

import numpy as np

from ser_jax.errors import ConfigError, SplitError


@dataclasses.dataclass(frozen=True)
class Split:
    """Indices into the utterance list; ``name`` says how it was made (e.g. ``loso-03``)."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    name: str = ""


def _indices(x: Iterable[int]) -> np.ndarray:
    return np.sort(np.asarray(list(x), dtype=np.int64))


def _round_half_up(x: float) -> int:
    # MATLAB's round (half away from zero) for non-negative x; Python's round is half-to-even.
    return int(math.floor(x + 0.5))


def stratified_split(
    labels: Sequence, fractions: Sequence[float] = (0.70, 0.15, 0.15), seed: int = 0
) -> Split:
    """Split each class separately into train / val / test by ``fractions``.

    Per class with ``n`` files (classes visited in sorted order, each shuffled with one
    shared generator): ``n_train = round(n * f_train)``, ``n_val = round(n * f_val)`` capped
    at ``n - n_train``, and the rest is test; ``round`` is half-up on the floating-point
    product (MATLAB's ``round``; 65 * 0.7 == 45.5 rounds to 46), so
    Emo-DB anger (102 files) gives 71 / 15 / 16, disgust (33) 23 / 5 / 5, and the whole
    409-file copy 285 / 62 / 62.
    """
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ConfigError(
            f"fractions={fractions}: need three non-negative fractions (train, val, test) "
            "summing to 1"
        )
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    parts: tuple[list[int], list[int], list[int]] = ([], [], [])
    for value in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == value))
        n = len(idx)
        n_train = min(n, _round_half_up(n * fractions[0]))
        n_val = min(n - n_train, _round_half_up(n * fractions[1]))
        parts[0].extend(idx[:n_train])
        parts[1].extend(idx[n_train : n_train + n_val])
        parts[2].extend(idx[n_train + n_val :])
    name = f"stratified-{'-'.join(f'{f:g}' for f in fractions)}-seed{seed}"
    return Split(*(_indices(p) for p in parts), name=name)


def validation_trains(split: Split) -> Split:
    """``split`` with its validation files moved into training (``data.train_on_val``): the
    test files stay exactly the ones the split held out, so runs with and without it are
    scored on the same files."""
    train = np.sort(np.concatenate([split.train, split.val]).astype(np.int64))
    return Split(train, np.zeros(0, np.int64), split.test, name=f"{split.name}+val-trains")


def _as_names(names: str | Iterable) -> tuple[str, ...]:
    if isinstance(names, str):
        return (names,)
    return tuple(str(n) for n in names)


def speaker_independent_split(
    speakers: Sequence,
    test_speakers: str | Iterable[str],
    val_speakers: str | Iterable[str] = (),
    *,
    labels: Sequence | None = None,
    val_fraction: float = 0.15,
    seed: int = 0,
) -> Split:
    """Hold out ``test_speakers`` for test and ``val_speakers`` for validation.

    With ``val_speakers`` empty and ``val_fraction > 0``, validation speakers are drawn
    from the remaining ones by ``seed``: ``max(1, round(val_fraction * n_remaining))``
    speakers (one for Emo-DB's 8 speakers). If ``labels`` is given, only speakers whose files
    cover the most classes are candidates, so validation sees every class it can.
    ``val_fraction=0`` leaves validation empty. Unknown speaker names, a speaker in both
    test and val, or no training speaker left raise :class:`ConfigError`.
    """
    speakers = np.asarray([str(s) for s in speakers])
    known = set(speakers.tolist())
    test = _as_names(test_speakers)
    val = _as_names(val_speakers)
    if not test:
        raise ConfigError("test_speakers is empty: name at least one speaker to hold out")
    unknown = sorted(set(test + val) - known)
    if unknown:
        raise ConfigError(
            f"unknown speakers {unknown} in test_speakers/val_speakers; "
            f"known: {', '.join(sorted(known))}"
        )
    both = sorted(set(test) & set(val))
    if both:
        raise ConfigError(f"speakers {both} are in both test_speakers and val_speakers")
    if not val and val_fraction > 0:
        rest = sorted(known - set(test))
        if len(rest) < 2:
            raise ConfigError(
                f"only {len(rest)} speaker(s) left after test speakers {list(test)}: "
                "cannot draw validation speakers and keep one for training"
            )
        candidates = rest
        if labels is not None:
            labels = np.asarray(labels)
            if len(labels) != len(speakers):
                raise ConfigError(
                    f"labels has {len(labels)} entries but speakers has {len(speakers)}"
                )
            cover = {s: len(np.unique(labels[speakers == s])) for s in rest}
            best = max(cover.values())
            candidates = [s for s in rest if cover[s] == best]
        n_val = min(max(1, _round_half_up(val_fraction * len(rest))), len(rest) - 1)
        n_val = min(n_val, len(candidates))
        rng = np.random.default_rng(seed)
        val = tuple(sorted(rng.choice(candidates, size=n_val, replace=False).tolist()))
    train_speakers = known - set(test) - set(val)
    if not train_speakers:
        raise ConfigError(
            f"no training speaker left: test {list(test)}, val {list(val)} use all of "
            f"{sorted(known)}"
        )
    is_test = np.isin(speakers, test)
    is_val = np.isin(speakers, val)
    split = Split(
        train=_indices(np.flatnonzero(~is_test & ~is_val)),
        val=_indices(np.flatnonzero(is_val)),
        test=_indices(np.flatnonzero(is_test)),
        name=f"speakers-test-{'+'.join(sorted(test))}-val-{'+'.join(sorted(val)) or 'none'}",
    )
    return split


def loso_folds(
    speakers: Sequence, *, val: str = "next", seed: int = 0, val_count: int = 1
) -> list[Split]:
    """Leave-one-speaker-out: one fold per speaker (sorted), named ``loso-<speaker>``.

    ``val``: ``"next"`` takes the next ``val_count`` speakers in sorted order (wrapping) as
    validation, ``"random"`` ``val_count`` seeded random other speakers, ``"none"`` (or
    ``val_count=0``) leaves validation empty: every other speaker trains.
    """
    speakers = np.asarray([str(s) for s in speakers])
    names = sorted(set(speakers.tolist()))
    if val not in ("next", "random", "none"):
        raise ConfigError(f"loso_folds val={val!r}: expected 'next', 'random' or 'none'")
    if val_count == 0:
        val = "none"
    need = 2 if val == "none" else 2 + val_count
    if (val != "none" and val_count < 1) or len(names) < need:
        raise ConfigError(
            f"leave-one-speaker-out with val={val!r} and {val_count} validation speaker(s) "
            f"needs at least {need} speakers, got {len(names)}: {names}"
        )
    rng = np.random.default_rng(seed)
    folds = []
    for i, test_speaker in enumerate(names):
        if val == "next":
            val_names: tuple[str, ...] = tuple(
                names[(i + j) % len(names)] for j in range(1, val_count + 1)
            )
        elif val == "random":
            others = [s for s in names if s != test_speaker]
            val_names = tuple(str(v) for v in rng.choice(others, val_count, replace=False))
        else:
            val_names = ()
        folds.append(_speaker_fold(speakers, (test_speaker,), val_names, f"loso-{test_speaker}"))
    return folds


def _speaker_fold(
    speakers: np.ndarray, test_names: Sequence[str], val_names: Sequence[str], name: str
) -> Split:
    is_test = np.isin(speakers, list(test_names))
    is_val = np.isin(speakers, list(val_names))
    return Split(
        train=_indices(np.flatnonzero(~is_test & ~is_val)),
        val=_indices(np.flatnonzero(is_val)),
        test=_indices(np.flatnonzero(is_test)),
        name=name,
    )


def speaker_kfold(speakers: Sequence, k: int, *, seed: int = 0, val_count: int = 1) -> list[Split]:
    """k-fold cross-validation over speakers: the sorted speakers, shuffled by ``seed``, are
    dealt into ``k`` groups; fold ``g`` tests group ``g`` and validates on the first speaker of
    each of the ``val_count`` groups after it (``g + 1``, ``g + 2``, ..., wrapping); everyone
    else trains (``val_count=0``: no validation speaker). ``k`` = number of speakers is LOSO with a shuffled speaker order. Named
    ``kfold<k>-<g>``.
    """
    speakers = np.asarray([str(s) for s in speakers])
    names = sorted(set(speakers.tolist()))
    if not 2 <= k <= len(names):
        raise ConfigError(f"speaker k-fold: k={k} needs 2 <= k <= {len(names)} speakers")
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    groups = [order[g::k] for g in range(k)]
    left = len(names) - max(len(x) for x in groups) - val_count
    if not 0 <= val_count < k or left < 1:
        raise ConfigError(
            f"speaker k-fold: data.val_count={val_count} validation speakers with k={k} folds "
            f"of {len(names)} speakers leaves {left} to train on (needs 0 <= val_count < k and "
            "at least one training speaker)"
        )
    folds = []
    for g, test_names in enumerate(groups):
        name = f"kfold{k}-{g}-test-{'+'.join(sorted(test_names))}"
        val_names = [groups[(g + j) % k][0] for j in range(1, val_count + 1)]
        folds.append(_speaker_fold(speakers, test_names, val_names, name))
    return folds


def check_disjoint(split: Split, speakers: Sequence | None = None) -> None:
    """Raise :class:`SplitError` (a ``ValueError`` and ``ConfigError``) if parts overlap.

    Checks that no index repeats within or across train/val/test, that indices are
    non-negative, and, when ``speakers`` (one per utterance) is given, that indices are in
    range and no speaker appears in two parts.
    """
    parts = {"train": split.train, "val": split.val, "test": split.test}
    for name, idx in parts.items():
        idx = np.asarray(idx)
        if idx.size and (idx.min() < 0 or not np.issubdtype(idx.dtype, np.integer)):
            raise SplitError(f"split {split.name!r}: {name} has invalid indices")
        if len(np.unique(idx)) != len(idx):
            raise SplitError(f"split {split.name!r}: {name} repeats indices")
    names = list(parts)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            common = np.intersect1d(parts[a], parts[b])
            if common.size:
                raise SplitError(
                    f"split {split.name!r}: {common.size} indices in both {a} and {b} "
                    f"(e.g. {common[:5].tolist()})"
                )
    if speakers is None:
        return
    speakers = np.asarray([str(s) for s in speakers])
    for name, idx in parts.items():
        if len(idx) and np.max(idx) >= len(speakers):
            raise SplitError(
                f"split {split.name!r}: {name} index {int(np.max(idx))} out of range "
                f"for {len(speakers)} utterances"
            )
    who = {
        name: set(speakers[np.asarray(idx, dtype=np.int64)].tolist()) for name, idx in parts.items()
    }
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            common = sorted(who[a] & who[b])
            if common:
                raise SplitError(
                    f"split {split.name!r}: speakers {common} appear in both {a} and {b}"
                )
