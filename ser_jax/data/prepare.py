"""From a config to the three splits in memory: corpus → manifest → audio → split → ClipSets.

This is the one place that reads ``config.data``: it resolves the corpus (generating the
synthetic demo corpus on first use), loads every file once (bad files are reported and skipped,
or stop the run in strict mode), and applies the split protocol: ``stratified`` (per label, the
MATLAB example's 70/15/15), ``speakers`` (named held-out speakers), ``loso`` (fold *k* of
leave-one-speaker-out) or ``speaker_kfold`` (fold *k* of k groups of speakers). It hands on a
``PreparedData`` with a ``ClipSet`` per split.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ser_jax.data.audio import load_corpus
from ser_jax.data.corpora import load_manifest
from ser_jax.data.manifest import Skipped, Utterance, label_ids, label_names
from ser_jax.data.pipeline import ClipSet
from ser_jax.data.splits import (
    Split,
    check_disjoint,
    loso_folds,
    speaker_independent_split,
    speaker_kfold,
    stratified_split,
    validation_trains,
)
from ser_jax.data.synthetic import make_demo_corpus
from ser_jax.errors import ConfigError, ManifestError

log = logging.getLogger(__name__)


@dataclasses.dataclass
class PreparedData:
    train: ClipSet
    val: ClipSet
    test: ClipSet
    label_names: tuple[str, ...]
    split: Split
    skipped: list[Skipped]
    corpus: str
    root: str

    def summary(self) -> dict[str, Any]:
        def part(clips: ClipSet) -> dict[str, Any]:
            return {
                "files": len(clips),
                "speakers": sorted({u.speaker for u in clips.utts}),
                "per_label": {
                    name: int((clips.labels == i).sum()) for i, name in enumerate(self.label_names)
                },
            }

        return {
            "corpus": self.corpus,
            "root": self.root,
            "split": self.split.name,
            "labels": list(self.label_names),
            "train": part(self.train),
            "val": part(self.val),
            "test": part(self.test),
            "skipped": [dataclasses.asdict(s) for s in self.skipped],
        }


def cache_dir() -> Path:
    return Path(os.environ.get("SER_JAX_CACHE", Path.home() / ".cache" / "ser_jax"))


def demo_corpus_root(data_cfg: Any) -> Path:
    """Where the demo corpus for these generator settings lives; generated on first use."""
    demo = data_cfg.demo
    lo, hi = (float(s) for s in demo.seconds)
    key = (
        f"demo_s{demo.speakers}_u{demo.utterances_per_class}_{lo:g}-{hi:g}s_{data_cfg.sample_rate}"
    )
    root = cache_dir() / key
    if (root / ".complete").exists():
        return root
    # Written under a private name and renamed when complete: a reader never sees half a
    # corpus, and two processes generating it at once each write their own copy.
    tmp = root.with_name(root.name + f".tmp{os.getpid()}")
    try:
        make_demo_corpus(
            tmp,
            speakers=int(demo.speakers),
            utterances_per_class=int(demo.utterances_per_class),
            seconds=(lo, hi),
            sample_rate=int(data_cfg.sample_rate),
            seed=0,
        )
        (tmp / ".complete").write_text("ok\n")
        tmp.rename(root)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if (root / ".complete").exists():  # another process finished first: same corpus
            return root
        raise ConfigError(
            f"could not write the demo corpus to {root}: {err.strerror or err} "
            "(set SER_JAX_CACHE to a writable folder)"
        ) from err
    return root


def resolve_corpus(data_cfg: Any) -> tuple[str, Path]:
    """The corpus reader name and its root (for ``demo`` with no root: generated on first use)."""
    name = str(data_cfg.corpus)
    if name == "demo" and not data_cfg.root:
        return name, demo_corpus_root(data_cfg)
    if not data_cfg.root:
        raise ConfigError(f"data.root is empty: corpus {name!r} needs the folder (or CSV file)")
    root = Path(os.path.expanduser(str(data_cfg.root)))
    if not root.exists():
        raise ConfigError(f"data.root={str(root)!r} does not exist")
    return name, root


def load_all(
    data_cfg: Any, *, progress: bool = True
) -> tuple[list[np.ndarray], list[Utterance], list[Skipped]]:
    """Every usable clip of the configured corpus, resampled, with the files skipped and why."""
    name, root = resolve_corpus(data_cfg)
    strict = bool(data_cfg.strict)
    # Every corpus, files or TFDS, goes through one reader interface and the same audio checks.
    utts, skipped = load_manifest(name, root, strict=strict)
    waves, kept, bad = load_corpus(
        utts,
        int(data_cfg.sample_rate),
        strict=strict,
        trim_silence=bool(data_cfg.get("trim_silence", False)),
        progress=progress,
    )
    if not kept:
        raise ManifestError(f"no usable audio in {root}: {len(bad)} files failed to load")
    for s in [*skipped, *bad]:
        log.warning("skipped %s: %s", s.path, s.reason)
    return waves, kept, [*skipped, *bad]


def make_split(data_cfg: Any, utts: list[Utterance], labels: np.ndarray, seed: int) -> Split:
    speakers = np.array([u.speaker for u in utts])
    split_seed = seed if int(data_cfg.split_seed) < 0 else int(data_cfg.split_seed)
    kind = str(data_cfg.split)
    if kind == "stratified":
        split = stratified_split(labels, tuple(data_cfg.fractions), seed=split_seed)
        if bool(data_cfg.get("train_on_val", False)):
            split = validation_trains(split)
        check_disjoint(split)
        return split
    if kind == "all":  # a release model: every file trains, nothing is validated or tested
        none = np.zeros(0, np.int64)
        return Split(np.arange(len(utts), dtype=np.int64), none, none, name="all")
    if kind == "speakers":
        if not data_cfg.test_speakers:
            raise ConfigError("data.split='speakers' needs data.test_speakers (e.g. ('03','08'))")
        split = speaker_independent_split(
            speakers,
            tuple(str(s) for s in data_cfg.test_speakers),
            tuple(str(s) for s in data_cfg.val_speakers),
            labels=labels,
            seed=split_seed,
        )
        if bool(data_cfg.get("train_on_val", False)):
            split = validation_trains(split)
    elif kind in ("loso", "speaker_kfold"):
        folds = (
            loso_folds(speakers, seed=split_seed, val_count=int(data_cfg.val_count))
            if kind == "loso"
            else speaker_kfold(
                speakers, int(data_cfg.folds), seed=split_seed, val_count=int(data_cfg.val_count)
            )
        )
        fold = int(data_cfg.fold)
        if not 0 <= fold < len(folds):
            raise ConfigError(
                f"data.fold={fold} but there are {len(folds)} folds (0..{len(folds) - 1})"
            )
        split = folds[fold]
    else:
        raise ConfigError(
            f"data.split={kind!r}; choose stratified, speakers, loso, speaker_kfold or all"
        )
    check_disjoint(split, speakers)
    return split


def prepare(
    config: Any,
    *,
    progress: bool = True,
    loaded: tuple[list[np.ndarray], list[Utterance], list[Skipped]] | None = None,
) -> PreparedData:
    """The configured split of the configured corpus; ``loaded`` reuses ``load_all``'s result
    (cross-validation loads the audio once for every fold)."""
    data_cfg = config.data
    waves, utts, skipped = loaded if loaded is not None else load_all(data_cfg, progress=progress)
    names = tuple(data_cfg.labels) if data_cfg.labels else label_names(utts)
    try:
        labels = label_ids(utts, names)
    except KeyError as err:
        raise ConfigError(f"data.labels={list(names)} does not cover the corpus: {err}") from err
    split = make_split(data_cfg, utts, labels, int(config.seed))
    every = ClipSet(waves, labels, utts)
    _, root = resolve_corpus(data_cfg)
    if split.name == "all":
        parts: tuple[str, ...] = ("train",)
    elif (
        str(data_cfg.split) in ("loso", "speaker_kfold") and int(data_cfg.val_count) == 0
    ) or bool(data_cfg.get("train_on_val", False)):
        parts = ("train", "test")  # no validation file, as asked
    else:
        parts = ("train", "val", "test")
    for part in parts:
        if len(getattr(split, part)) == 0:
            raise ConfigError(f"the {split.name or data_cfg.split} split leaves {part} empty")
    return PreparedData(
        train=every.subset(split.train),
        val=every.subset(split.val),
        test=every.subset(split.test),
        label_names=names,
        split=split,
        skipped=skipped,
        corpus=str(data_cfg.corpus),
        root=str(root),
    )
