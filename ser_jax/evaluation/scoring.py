"""Scoring clips with a model: the one evaluation policy, used by validation, the test split,
``ser-jax evaluate`` and ``ser-jax predict``.

A clip no longer than ``max_samples`` (``data.max_seconds``) is scored whole. A longer clip is
cut into windows of ``max_samples`` with a hop of half a window (the last window ends at the
clip's end), each window is scored, and the clip's class probabilities are the mean over its
windows. Test-time augmentation (``eval.tta_shifts``, ``eval.tta_semitones``) adds each
window shifted in time by each given amount, and each window (shifted or not) with its
frequency axis warped by each given number of semitones (the warp of pitch-shift
augmentation), to the average; it is reported beside the plain score, never instead of it.
Windows are batched in order of length (less padding, fewer compiled shapes), padded to
a bucket length, and the last batch is filled with empty rows of weight 0.

Speaker-adaptive BatchNorm (``eval.speaker_bn``, AdaBN: Li et al. 2016, "Revisiting Batch
Normalization For Practical Domain Adaptation") scores each speaker's clips with BatchNorm
statistics gathered from that speaker's own clean windows (``batchnorm_statistics``) instead
of the running statistics of training: it needs the speaker's unlabelled recordings, so it is
its own protocol, reported beside the plain score.

:class:`ModelScorer` is the policy written once for the trainer and a restored model: each
hands it its compiled functions (prediction and BatchNorm statistics, taking the variables),
its batching and where statistics live (the trainer's mesh), and scores clips plain, with
test-time views, and speaker by speaker (:class:`SpeakerAdaptation`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from ser_jax.data.pipeline import ClipSet, window_batches, windows
from ser_jax.errors import ConfigError

PredictFn = Callable[[dict[str, np.ndarray]], np.ndarray]  # batch -> (batch, classes) probs
# batch -> (BatchNorm statistics of the batch, the count of values behind each layer's)
StatsFn = Callable[[dict[str, np.ndarray]], tuple[Any, Any]]
# (variables, batch) -> what PredictFn / StatsFn give: a model's compiled functions
VariablesPredictFn = Callable[[Any, dict[str, np.ndarray]], np.ndarray]
VariablesStatsFn = Callable[[Any, dict[str, np.ndarray]], tuple[Any, Any]]


def score_windows(
    predict: PredictFn,
    pieces: Sequence[np.ndarray],
    num_classes: int,
    *,
    batch_size: int,
    max_samples: int,
    bucket_samples: int,
) -> np.ndarray:
    """Class probabilities ``(len(pieces), num_classes)`` of each window (or clip) itself."""
    probs = np.zeros((len(pieces), num_classes), np.float64)
    for rows, batch in window_batches(
        pieces, batch_size, max_samples=max_samples, bucket_samples=bucket_samples
    ):
        probs[rows] = np.asarray(predict(batch))[: len(rows)]
    return probs


def score_clips(
    predict: PredictFn,
    waves: Sequence[np.ndarray],
    num_classes: int,
    *,
    batch_size: int,
    max_samples: int,
    bucket_samples: int,
    shifts: Sequence[int] = (),
    warps: Sequence[float] = (),
) -> np.ndarray:
    """Class probabilities ``(len(waves), num_classes)``, windows averaged per clip; with
    ``shifts`` (samples), every window is also scored shifted by each, and with ``warps``
    (frequency-warp factors, ``batch["warp"]`` to ``predict``) every window and shifted window
    is also scored warped by each; all are averaged (test-time augmentation)."""
    pieces, owner = windows(waves, max_samples, shifts)
    out = np.zeros((len(waves), num_classes), np.float64)
    for warp in (None, *warps):
        view = predict
        if warp is not None:

            def view(batch: dict[str, np.ndarray], w: float = float(warp)) -> np.ndarray:
                return predict({**batch, "warp": np.full(len(batch["length"]), w, np.float32)})

        probs = score_windows(
            view,
            pieces,
            num_classes,
            batch_size=batch_size,
            max_samples=max_samples,
            bucket_samples=bucket_samples,
        )
        np.add.at(out, owner, probs)
    counts = np.bincount(owner, minlength=len(waves))[:, None] * (1 + len(warps))
    return (out / np.maximum(counts, 1)).astype(np.float32)


def batchnorm_statistics(
    stats: StatsFn,
    waves: Sequence[np.ndarray],
    *,
    batch_size: int,
    max_samples: int,
    bucket_samples: int,
) -> Any:
    """BatchNorm statistics (the model's ``batch_stats`` tree of ``mean`` and ``var``) of all
    the windows of ``waves`` together, batched as they are scored: each batch's mean and
    second moment (``var + mean**2``) weighted by the values the layer averaged in it. As in
    "precise BatchNorm", each batch runs in training mode, so a layer's input is normalised by
    that batch's own statistics below it: the first layer's pooled statistics are exactly
    those of all the windows at once, deeper layers' close to them."""
    total, first, second = None, None, None
    for _, batch in window_batches(
        windows(waves, max_samples)[0],
        batch_size,
        max_samples=max_samples,
        bucket_samples=bucket_samples,
    ):
        tree, count_tree = stats(batch)
        flat = {k: np.asarray(v, np.float64) for k, v in flatten_dict(tree).items()}
        counts = {k: float(v) for k, v in flatten_dict(count_tree).items()}
        m1 = {k: counts[k] * v for k, v in flat.items() if k[-1] == "mean"}
        m2 = {
            k: counts[k] * (flat[k[:-1] + ("var",)] + v**2)
            for k, v in flat.items()
            if k[-1] == "mean"
        }
        if first is None or second is None or total is None:
            first, second, total = m1, m2, counts
        else:
            first = {k: first[k] + m1[k] for k in m1}
            second = {k: second[k] + m2[k] for k in m2}
            total = {k: total[k] + counts[k] for k in counts}
    if first is None or second is None or total is None or min(total.values()) == 0:
        raise ValueError("batchnorm_statistics: the clips have no valid frame")
    out = {}
    for k in first:
        mean = first[k] / total[k]
        out[k] = mean.astype(np.float32)
        var = second[k] / total[k] - mean**2
        out[k[:-1] + ("var",)] = np.maximum(var, 0.0).astype(np.float32)
    return unflatten_dict(out)


def score_by_speaker(
    score: Callable[[str, Sequence[np.ndarray]], np.ndarray],
    waves: Sequence[np.ndarray],
    speakers: Sequence[str],
    num_classes: int,
) -> np.ndarray:
    """``score(speaker, that speaker's waves)`` for each speaker, put back in the order of
    ``waves`` (``frontend.normalize="speaker"``: each speaker scored with their statistics)."""
    names = np.asarray([str(s) for s in speakers])
    probs = np.zeros((len(waves), num_classes), np.float32)
    for speaker in sorted(set(names.tolist())):
        rows = np.flatnonzero(names == speaker)
        probs[rows] = score(speaker, [waves[i] for i in rows])
    return probs


def clip_speakers(clips: ClipSet) -> list[str]:
    """The speaker of each clip (``frontend.normalize="speaker"``, ``eval.speaker_bn``,
    ``model.speaker_classes`` and ``data.speaker_batches`` need them)."""
    if len(clips.utts) != len(clips):
        raise ConfigError(
            "frontend.normalize='speaker', eval.speaker_bn, model.speaker_classes and "
            "data.speaker_batches need each clip's speaker, and these clips have none"
        )
    return [str(u.speaker) for u in clips.utts]


def speaker_waves(parts: Sequence[ClipSet], speaker: str) -> list[np.ndarray]:
    """``speaker``'s clips in ``parts`` (for their BatchNorm statistics); refused, naming the
    speaker, when ``parts`` hold none (``eval.speaker_bn_source="train"`` on a protocol whose
    test speakers are not in training, as leave-one-speaker-out)."""
    waves = [
        w for c in parts for w, s in zip(c.waves, clip_speakers(c), strict=True) if s == speaker
    ]
    if not waves:
        raise ConfigError(
            f"speaker {speaker} has no clips to take BatchNorm statistics from in this split "
            "(eval.speaker_bn_source='train' needs the test speakers in training: use 'scored' "
            "or 'all' on leave-one-speaker-out)"
        )
    return waves


def speaker_bn_clips(source: str, data: Any) -> list[ClipSet] | None:
    """The clips of ``data`` (a ``PreparedData``) whose speakers' statistics speaker-adaptive
    BatchNorm uses under ``eval.speaker_bn_source=source`` (None: the clips scored)."""
    if source == "train":
        return [data.train]
    if source == "all":
        return [c for c in (data.train, data.val, data.test) if len(c)]
    return None


def _as_is(tree: Any) -> Any:
    return tree


@dataclasses.dataclass(frozen=True)
class SpeakerAdaptation:
    """What each speaker's clips are scored with in place of the model's own statistics:
    their log-mel statistics (``feature_stats`` by speaker, ``frontend.normalize="speaker"``;
    None: the model's) and, with ``speaker_bn``, BatchNorm statistics of their clips in
    ``bn_waves(speaker)`` (None: of the clips scored; ``eval.speaker_bn_source``)."""

    feature_stats: Mapping[str, dict[str, np.ndarray]] | None = None
    speaker_bn: bool = False
    bn_waves: Callable[[str], Sequence[np.ndarray]] | None = None

    @property
    def by_speaker(self) -> bool:
        """Clips are scored speaker by speaker (their speakers are needed)."""
        return self.feature_stats is not None or self.speaker_bn


@dataclasses.dataclass(frozen=True)
class ModelScorer:
    """A model's compiled functions and batching: the trainer's (on its mesh) and a restored
    model's score clips by this one policy."""

    predict: VariablesPredictFn
    bn_stats: VariablesStatsFn  # BatchNorm statistics of a batch in training mode
    num_classes: int
    batch_size: int  # clips scored in a batch
    bn_batch_size: int  # clips in a batch of BatchNorm statistics (training's batch)
    max_samples: int
    bucket_samples: int
    place: Callable[[Any], Any] = _as_is  # a host statistics tree -> where variables live

    def score(
        self,
        variables: Any,
        waves: Sequence[np.ndarray],
        *,
        shifts: Sequence[int] = (),
        warps: Sequence[float] = (),
    ) -> np.ndarray:
        """``score_clips`` of ``waves`` under ``variables`` (``shifts``, ``warps``: views)."""
        return score_clips(
            lambda batch: self.predict(variables, batch),
            waves,
            self.num_classes,
            batch_size=self.batch_size,
            max_samples=self.max_samples,
            bucket_samples=self.bucket_samples,
            shifts=shifts,
            warps=warps,
        )

    def batchnorm(self, variables: Any, waves: Sequence[np.ndarray]) -> Any:
        """``batchnorm_statistics`` of ``waves`` (one speaker's clean clips) under
        ``variables``, placed where the variables live."""
        stats = batchnorm_statistics(
            lambda b: self.bn_stats(variables, {"audio": b["audio"], "length": b["length"]}),
            waves,
            batch_size=self.bn_batch_size,
            max_samples=self.max_samples,
            bucket_samples=self.bucket_samples,
        )
        return self.place(stats)

    def adapt(
        self,
        variables: Any,
        *,
        feature_stats: dict[str, np.ndarray] | None = None,
        bn_waves: Sequence[np.ndarray] | None = None,
    ) -> Any:
        """``variables`` with one speaker's log-mel statistics (``feature_stats``; None: the
        model's) and, given ``bn_waves`` (that speaker's clips), BatchNorm statistics of them
        (computed under the speaker's log-mel statistics)."""
        if feature_stats is not None:
            variables = variables.replace(feature_stats=self.place(feature_stats))
        if bn_waves is not None:
            variables = variables.replace(batch_stats=self.batchnorm(variables, bn_waves))
        return variables

    def probabilities(
        self,
        variables: Any,
        waves: Sequence[np.ndarray],
        *,
        speakers: Sequence[str] | None = None,
        adaptation: SpeakerAdaptation = SpeakerAdaptation(),
        shifts: Sequence[int] = (),
        warps: Sequence[float] = (),
    ) -> np.ndarray:
        """``(len(waves), classes)``: the clips scored under ``variables``; with an
        ``adaptation``, each speaker's (``speakers``; None: all one speaker's) under their
        own statistics, put back in order (``score_by_speaker``)."""
        if not adaptation.by_speaker:
            return self.score(variables, waves, shifts=shifts, warps=warps)
        stats, own = adaptation.feature_stats, adaptation.bn_waves

        def one_speaker(speaker: str, group: Sequence[np.ndarray]) -> np.ndarray:
            bn_waves = (group if own is None else own(speaker)) if adaptation.speaker_bn else None
            v = self.adapt(
                variables,
                feature_stats=None if stats is None else stats[speaker],
                bn_waves=bn_waves,
            )
            return self.score(v, group, shifts=shifts, warps=warps)

        names = list(speakers) if speakers is not None else ["-"] * len(waves)
        return score_by_speaker(one_speaker, waves, names, self.num_classes)
