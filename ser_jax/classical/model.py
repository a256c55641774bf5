"""A trained openSMILE model, restored for scoring like a network (``LoadedModel``'s face).

Its ``model.msgpack`` holds two linear classifiers (``ser_jax.classical.linear``): ``plain``
(features standardised by the training clips') and ``adapted`` (each speaker standardised by
their own clips: the speaker-adaptive protocol, ``speaker_bn=True``, the flag the networks
use for their BatchNorm statistics). ``probabilities`` takes the arguments a network's does,
so ``predict``, ``evaluate``, committees and packaging use it unchanged; it has no test-time
warps (``semitones`` score the clip as it is: openSMILE describes the whole file) and no
per-window timeline.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from flax import serialization

from ser_jax.classical.features import config_features
from ser_jax.classical.linear import LinearClassifier
from ser_jax.data.audio import load_audio
from ser_jax.errors import ConfigError

PROTOCOLS = ("plain", "adapted")


def write_classifiers(path: Path, classifiers: dict[str, LinearClassifier]) -> Path:
    """``model.msgpack`` of a feature model: each protocol's classifier, atomically."""
    tree = {"step": 0, **{k: c.arrays() for k, c in classifiers.items()}}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(serialization.msgpack_serialize(tree))
    tmp.replace(path)
    return path


def read_classifiers(path: Path) -> dict[str, LinearClassifier]:
    tree = serialization.msgpack_restore(Path(path).read_bytes())
    missing = [k for k in PROTOCOLS if k not in tree]
    if missing:
        raise ConfigError(f"{path}: not a feature model's file (no {', '.join(missing)})")
    return {k: LinearClassifier.from_arrays(tree[k]) for k in PROTOCOLS}


@dataclasses.dataclass
class FeatureModel:
    """An openSMILE model restored for scoring: config, labels and its two classifiers."""

    source: Path
    config: Any
    label_names: tuple[str, ...]
    classifiers: dict[str, LinearClassifier]
    step: int = 0
    finished: bool = True
    per_speaker: bool = False  # plain use needs no speaker; adaptation is asked for

    @property
    def sample_rate(self) -> int:
        return int(self.config.data.sample_rate)

    def load_audio(self, path: str | Path) -> np.ndarray:
        """A recording as training read its files (mono at the sample rate, digital silence
        trimmed at the ends when ``data.trim_silence``); the training-only settings a network
        run's resolve checks do not apply."""
        trim = bool(self.config.data.get("trim_silence", False))
        return load_audio(path, self.sample_rate, trim_silence=trim)

    def probabilities(
        self,
        waves: Sequence[np.ndarray],
        batch_size: int = 32,
        *,
        speakers: Sequence[str] | None = None,
        stats: Any = None,
        speaker_bn: bool = False,
        bn_waves: Callable[[str], Sequence[np.ndarray]] | None = None,
        semitones: Sequence[float] = (),
    ) -> np.ndarray:
        """``(len(waves), classes)``: plain, or with ``speaker_bn`` each speaker's clips
        (``speakers``; None: all one speaker's) standardised by their own moments."""
        if bn_waves is not None:
            raise ConfigError(
                f"{self.source}: an openSMILE model adapts to the scored clips of each speaker "
                "only (eval.speaker_bn_source='scored')"
            )
        feats = config_features(self.config, waves)
        if speaker_bn:
            return self.classifiers["adapted"].probabilities(feats, speakers)
        return self.classifiers["plain"].probabilities(feats)

    def window_probabilities(self, *args: Any, **kwargs: Any) -> Any:
        raise ConfigError(
            f"{self.source}: an openSMILE model describes the whole file; it has no timeline "
            "of windows"
        )

    def speaker_variables(self, *args: Any, **kwargs: Any) -> Any:
        return None  # adaptation happens in probabilities (speaker_bn)
