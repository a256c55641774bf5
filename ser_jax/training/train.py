"""Training: ``train_and_evaluate(config, workdir)`` for one model, ``train_members`` for several
trained at once in one compiled step; both build a :class:`Trainer`, run :func:`fit`, then
:func:`select_and_test`.

- :func:`build_trainer`: data, mesh, model, state and the jit-compiled steps (``ser_jax.training.steps``).
  With ``stacked=True`` the state of N models gets a leading members axis and one ``jax.vmap``-ed
  step trains them all: each keeps its own seed, data order, augmentation keys, learning-rate
  schedule, validation-based selection and early stopping.
- :func:`fit`: the loop. Resume from the newest readable checkpoint, step, log, and at each
  model's epoch end: validate, keep the best variables, checkpoint, stop early. A model's epoch
  is its own training set's ``len // batch_size`` steps (models of different folds may differ);
  the job runs until the last model is done, the finished ones idle (their updates are masked).
- :func:`select_and_test`: each model's selected variables (best on validation, or the last
  epoch) are tested once on its test split, and its run directory gets the reports.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ser_jax import parallel
from ser_jax.data.pipeline import ClipSet, TrainBatches, prefetch
from ser_jax.data.prepare import PreparedData, prepare
from ser_jax.errors import ConfigError, SerJaxError
from ser_jax.evaluation.metrics import (
    classification_metrics,
    format_table,
    prediction_rows,
    read_predictions,
    write_report,
)
from ser_jax.evaluation.scoring import (
    batchnorm_statistics,
    clip_speakers,
    score_by_speaker,
    score_clips,
    speaker_bn_clips,
    speaker_waves,
)
from ser_jax.frontend.features import dataset_feature_stats, speaker_feature_stats
from ser_jax.frontend.logmel import num_frames
from ser_jax.models import cached_input, check_min_frames, create_model
from ser_jax.rundir import (
    MetricWriter,
    RunDir,
    command_line,
    git_state,
    processor_name,
    run_info,
)
from ser_jax.serving.restore import MODEL_FILE, read_model_file, write_model_file
from ser_jax.spec import RunSpec, resolve
from ser_jax.training.checkpoint import Checkpointer
from ser_jax.training.optim import make_optimizer, make_schedule
from ser_jax.training.steps import (
    ModelVariables,
    TrainState,
    batchnorm_stats_fn,
    cached_training_features,
    class_terms,
    create_train_state,
    members_train_step,
    predict_step,
    train_step,
)

# Fields in which models trained together may differ; everything else must be equal.
MEMBER_FIELDS = ("seed", "data.fold", "data.split_seed", "data.test_speakers", "data.val_speakers")


class NonFiniteLossError(SerJaxError):
    """Training diverged (NaN or infinite loss or parameters); names the step."""


# ----------------------------------------------------------------------------------------------
# Building
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Member:
    """One model of a trainer: its config, data, batches and per-class loss terms."""

    config: Any
    spec: RunSpec
    data: PreparedData
    batches: TrainBatches
    class_terms: dict[str, np.ndarray]  # steps.class_terms: loss weight and logit shift
    schedule: optax.Schedule  # learning rate by step, for the log and the injected rate
    # frontend.normalize="speaker": each speaker's log-mel mean/std (``speaker_stats``)
    speaker_stats: dict[str, dict[str, np.ndarray]] = dataclasses.field(default_factory=dict)
    # train.cache_features: every training row's features (steps.cached_training_features)
    feature_cache: dict[str, np.ndarray] | None = None

    @property
    def steps_per_epoch(self) -> int:
        return self.batches.steps_per_epoch

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """The training batch of ``step``; with the feature cache, its rows' cached features
        (``feats``, ``frames``) in place of their audio: found by ``index`` (the clip), or by
        ``aug_id`` (the clip's fixed copy) under offline augmentation; a filling row's -1 takes
        the cache's last row, an empty clip's."""
        batch = self.batches[step]
        if self.feature_cache is None:
            return batch
        rows = batch["aug_id"] if self.spec.copies and self.spec.augment.enabled else batch["index"]
        del batch["audio"]
        batch["feats"] = self.feature_cache["feats"][rows]
        batch["frames"] = self.feature_cache["frames"][rows]
        return batch

    @property
    def total_steps(self) -> int:
        return self.spec.epochs * self.steps_per_epoch


@dataclasses.dataclass
class Trainer:
    """Compiled steps and state for one model, or several stacked along a members axis."""

    members: list[Member]
    stacked: bool
    mesh: Any
    model: nn.Module
    state: TrainState
    _train_step: Any
    _predict: Any
    _take: Any  # (stacked tree, k) -> member k's slice, replicated
    # frontend.normalize="speaker": every speaker's statistics (the same in every member: a
    # speaker's come from all of that speaker's recordings, whichever split they are in)
    speaker_stats: dict[str, dict[str, np.ndarray]] = dataclasses.field(default_factory=dict)
    _bn_stats: Any = None  # jitted batchnorm_stats_step (eval.speaker_bn), built on first use

    # --- one-model views (tests, benchmarks) -------------------------------------------------
    @property
    def spec(self) -> RunSpec:
        return self.members[0].spec

    @property
    def data(self) -> PreparedData:
        return self.members[0].data

    @property
    def batches(self) -> TrainBatches:
        return self.members[0].batches

    @property
    def steps_per_epoch(self) -> int:
        return self.members[0].steps_per_epoch

    @property
    def frontend(self):
        return self.spec.frontend

    @property
    def augment(self):
        return self.spec.augment

    # --- stepping ------------------------------------------------------------------------------
    def batch(self, step: int, running: Sequence[bool]) -> dict[str, np.ndarray]:
        """The global training batch of ``step``: one model's, or every model's stacked
        ``(members, batch, ...)`` (padded to the longest); a model no longer ``running``
        repeats its last batch (its update is masked)."""
        if not self.stacked:
            return self.members[0].batch(step)
        parts = [
            m.batch(step if r else m.total_steps - 1)
            for m, r in zip(self.members, running, strict=True)
        ]
        if "feats" in parts[0]:  # the feature cache
            shapes = {p["feats"].shape for p in parts}
            if len(shapes) > 1:
                raise ConfigError(
                    f"train.cache_features=True: the models trained together have cached "
                    f"features of different shapes {sorted(shapes)} (their clips differ in "
                    "length): train them one at a time or set train.cache_features=False"
                )
            return {k: np.stack([p[k] for p in parts]) for k in parts[0]}
        length = max(p["audio"].shape[1] for p in parts)
        out = {}
        for key in parts[0]:
            if key == "audio":
                out[key] = np.stack(
                    [np.pad(p[key], ((0, 0), (0, length - p[key].shape[1]))) for p in parts]
                )
            else:
                out[key] = np.stack([p[key] for p in parts])
        return out

    def train_step(
        self, state: TrainState, batch: dict[str, np.ndarray], step: int, active: Sequence[bool]
    ) -> tuple[TrainState, dict[str, jax.Array]]:
        sharding = parallel.batch_sharding(self.mesh, self.stacked)
        batch = parallel.to_global(batch, sharding)
        if not self.stacked:
            return self._train_step(state, batch)
        per_member = parallel.to_global(
            {
                "lr": np.array([float(m.schedule(step)) for m in self.members], np.float32),
                "active": np.asarray(active, bool),
            },
            parallel.member_sharding(self.mesh),
        )
        return self._train_step(state, batch, per_member["lr"], per_member["active"])

    # --- model variables ---------------------------------------------------------------------
    def variables(self, state: TrainState, k: int = 0) -> ModelVariables:
        """Model ``k``'s variables (replicated over the mesh)."""
        v = state.model_variables()
        return self._take(v, k) if self.stacked else v

    def with_best(self, best: ModelVariables | None, state: TrainState, k: int) -> ModelVariables:
        """``best`` with model ``k``'s slot set to its current variables (a copy: the state's
        buffers are donated to the next step)."""
        v = state.model_variables()
        if not self.stacked:
            return jax.tree.map(jnp.copy, v)
        return _set_member(best, v, k)

    # --- evaluation ----------------------------------------------------------------------------
    def speaker_batchnorm(self, variables: ModelVariables, waves: Sequence[np.ndarray]) -> Any:
        """BatchNorm statistics of ``waves`` (one speaker's clean clips) under ``variables``
        (``ser_jax.evaluation.scoring.batchnorm_statistics``), replicated over the mesh."""
        if self._bn_stats is None:
            self._bn_stats = jax.jit(
                batchnorm_stats_fn(self.model, self.spec.frontend),
                in_shardings=(parallel.replicated(self.mesh), parallel.batch_sharding(self.mesh)),
                out_shardings=parallel.replicated(self.mesh),
            )
        sharding = parallel.batch_sharding(self.mesh)
        stats = batchnorm_statistics(
            lambda b: self._bn_stats(
                variables,
                parallel.to_global({"audio": b["audio"], "length": b["length"]}, sharding),
            ),
            waves,
            batch_size=self.spec.batch_size,
            max_samples=self.spec.max_samples,
            bucket_samples=self.spec.bucket_samples,
        )
        return parallel.to_replicated(stats, self.mesh)

    def predict(
        self,
        clips: ClipSet,
        variables: ModelVariables | None = None,
        shifts: Sequence[int] = (),
        *,
        warps: Sequence[float] = (),
        speaker_bn: bool = False,
        bn_clips: Sequence[ClipSet] | None = None,
    ) -> np.ndarray:
        """Probabilities ``(len(clips), classes)`` on clean audio (``ser_jax.evaluation.scoring``;
        ``shifts``, ``warps``: test-time augmentation; ``speaker_bn``: each speaker's clips with
        BatchNorm statistics of that speaker's clips in ``bn_clips``, None: of the clips
        scored)."""
        variables = variables if variables is not None else self.variables(self.state)
        sharding = parallel.batch_sharding(self.mesh)
        spec = self.spec

        def score(v: ModelVariables, waves: Sequence[np.ndarray]) -> np.ndarray:
            return score_clips(
                lambda batch: self._predict(v, parallel.to_global(batch, sharding)),
                waves,
                len(self.data.label_names),
                batch_size=spec.batch_size,
                max_samples=spec.max_samples,
                bucket_samples=spec.bucket_samples,
                shifts=shifts,
                warps=warps,
            )

        if spec.frontend.normalize != "speaker" and not speaker_bn:
            return score(variables, clips.waves)
        # Each speaker's clips with that speaker's statistics in place of the model's.
        repl = parallel.replicated(self.mesh)

        def one_speaker(speaker: str, waves: Sequence[np.ndarray]) -> np.ndarray:
            v = variables
            if spec.frontend.normalize == "speaker":
                v = v.replace(feature_stats=parallel.to_global(self.speaker_stats[speaker], repl))
            if speaker_bn:
                own = waves if bn_clips is None else speaker_waves(bn_clips, speaker)
                v = v.replace(batch_stats=self.speaker_batchnorm(v, own))
            return score(v, waves)

        return score_by_speaker(
            one_speaker, clips.waves, clip_speakers(clips), len(self.data.label_names)
        )

    def evaluate(
        self,
        clips: ClipSet,
        variables: ModelVariables | None = None,
        shifts: Sequence[int] = (),
        *,
        warps: Sequence[float] = (),
        speaker_bn: bool = False,
        bn_clips: Sequence[ClipSet] | None = None,
    ) -> dict[str, Any]:
        """Metrics of ``clips`` (accuracy, UAR, macro-F1, per class), their loss and probs."""
        probs = self.predict(
            clips, variables, shifts, warps=warps, speaker_bn=speaker_bn, bn_clips=bn_clips
        )
        metrics = classification_metrics(clips.labels, probs.argmax(-1), self.data.label_names)
        nll = -np.log(probs[np.arange(len(clips)), clips.labels] + 1e-12)
        metrics["loss"] = float(nll.mean())
        metrics["probs"] = probs
        return metrics


@functools.partial(jax.jit, donate_argnums=0)
def _set_member(best: Any, current: Any, k: jax.Array) -> Any:
    return jax.tree.map(lambda b, c: b.at[k].set(c[k]), best, current)


def members_loop(spec: RunSpec) -> str:
    """How one device runs its share of the models (``train.members_loop``; ``auto``: batched
    into each op with ``vmap`` on an accelerator, one after another on a CPU, where XLA's
    grouped convolutions, vmap's batched form of a convolution, are several times slower)."""
    if spec.members_loop != "auto":
        return spec.members_loop
    return "unroll" if jax.default_backend() == "cpu" else "vmap"


def check_members(configs: Sequence[Any]) -> None:
    """Models trained together must share everything but ``MEMBER_FIELDS``."""

    def flat(cfg: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}

        def walk(node: Any, prefix: str) -> None:
            for key in node.keys():
                value = node[key]
                if hasattr(value, "keys"):
                    walk(value, f"{prefix}{key}.")
                elif f"{prefix}{key}" not in MEMBER_FIELDS:
                    out[f"{prefix}{key}"] = value
            return None

        walk(cfg, "")
        return out

    ref = flat(configs[0])
    for cfg in configs[1:]:
        other = flat(cfg)
        diff = sorted(k for k in set(ref) | set(other) if ref.get(k) != other.get(k))
        if diff:
            raise ConfigError(
                f"models trained together (train.members) differ in {diff}; only "
                f"{list(MEMBER_FIELDS)} may differ: train them in separate runs"
            )


def _class_terms(spec: RunSpec, data: PreparedData) -> dict[str, np.ndarray]:
    """The loss's per-class terms from the training labels: the weights (inverse class
    frequency with ``train.class_weighting``, else 1; 0 for a class with no training file)
    and the logit shift ``tau * log(prior)`` of ``train.logit_adjustment`` (a class with no
    training file counts as one file, so the shift stays finite)."""
    num_classes = len(data.label_names)
    counts = np.bincount(data.train.labels, minlength=num_classes).astype(np.float64)
    weight = np.ones(num_classes)
    if spec.class_weighting:
        weight = np.where(counts > 0, counts.sum() / (num_classes * np.maximum(counts, 1)), 0.0)
    shift = np.zeros(num_classes)
    if spec.logit_adjustment > 0:
        floored = np.maximum(counts, 1.0)
        shift = spec.logit_adjustment * np.log(floored / floored.sum())
    return class_terms(weight.astype(np.float32), shift.astype(np.float32))


def _speaker_ids(data: PreparedData, heads: int) -> np.ndarray:
    """Each training clip's speaker as an index into the sorted speakers of the whole prepared
    corpus (train, validation and test), the targets of the speaker head."""
    parts = [c for c in (data.train, data.val, data.test) if len(c)]
    speakers = sorted({s for c in parts for s in clip_speakers(c)})
    if len(speakers) > heads:
        raise ConfigError(
            f"model.speaker_classes={heads} is fewer than the corpus's {len(speakers)} speakers "
            f"({', '.join(speakers)}): set it to at least {len(speakers)}"
        )
    return np.array([speakers.index(s) for s in clip_speakers(data.train)], np.int32)


def _speaker_stats(spec: RunSpec, data: PreparedData) -> dict[str, dict[str, np.ndarray]]:
    """Every speaker's log-mel statistics, from all of the speaker's clips in train, val and
    test (audio only, no labels: the test speaker's own recordings normalise it)."""
    parts = [c for c in (data.train, data.val, data.test) if len(c)]
    return speaker_feature_stats(
        [w for c in parts for w in c.waves],
        [s for c in parts for s in clip_speakers(c)],
        spec.frontend,
        batch_size=spec.batch_size,
        max_samples=spec.max_samples,
        bucket_samples=spec.bucket_samples,
    )


def _member(config: Any, data: PreparedData | None) -> Member:
    spec = resolve(config)
    data = data if data is not None else prepare(config, progress=spec.progress)
    speaker_stats, extra = {}, {}
    if spec.frontend.normalize == "speaker":
        speaker_stats = _speaker_stats(spec, data)
        train_speakers = clip_speakers(data.train)
        extra = {
            f"norm_{k}": np.stack([speaker_stats[s][k] for s in train_speakers])
            for k in ("mean", "std")
        }
    heads = int(config.model.get("speaker_classes", 0))
    if heads:
        extra["speaker"] = _speaker_ids(data, heads)
    shortest = min(
        int(min(c.lengths.min(), spec.max_samples))
        for c in (data.train, data.val, data.test)
        if len(c)
    )
    parts = speaker_bn_clips(spec.speaker_bn_source, data) if spec.speaker_bn else None
    for speaker in sorted(set(clip_speakers(data.test))) if parts is not None else ():
        speaker_waves(parts, speaker)  # refused before training, not after it
    pools = tuple(tuple(p) for p in config.model.pools)
    check_min_frames(
        int(num_frames(shortest, spec.frontend)), pools, "data.max_seconds/shortest clip"
    )
    batches = TrainBatches(
        data.train,
        spec.batch_size,
        seed=spec.train_seed,
        max_samples=spec.max_samples,
        bucket_samples=spec.bucket_samples,
        copies=spec.copies,
        extra=extra,
        speakers=clip_speakers(data.train) if config.data.get("speaker_batches") else None,
    )
    return Member(
        config=config,
        spec=spec,
        data=data,
        batches=batches,
        class_terms=_class_terms(spec, data),
        schedule=make_schedule(config.train, batches.steps_per_epoch),
        speaker_stats=speaker_stats,
    )


def build_trainer(configs: Any, datas: Any = None, *, stacked: bool | None = None) -> Trainer:
    """Everything a run needs: data, mesh, model, state, jitted steps.

    ``configs`` is one config (one model) or a list (models trained together, ``stacked``);
    ``datas`` the matching ``PreparedData`` (or None: prepared from each config).
    """
    if not isinstance(configs, list | tuple):
        configs, datas = [configs], [datas]
    datas = list(datas) if datas is not None else [None] * len(configs)
    stacked = len(configs) > 1 if stacked is None else stacked
    if stacked:
        check_members(configs)
    members = [_member(c, d) for c, d in zip(configs, datas, strict=True)]
    spec = members[0].spec
    labels = members[0].data.label_names
    for m in members[1:]:
        if m.data.label_names != labels:
            raise ConfigError(
                f"models trained together have different labels: {labels} vs {m.data.label_names}"
            )
    mesh = parallel.make_mesh(len(members) if stacked else 1)
    parallel.check_batch_divides(spec.batch_size, mesh)
    model = create_model(configs[0].model, len(labels))

    # Stacked models share one optimiser object (their learning rates are injected per step);
    # its static structure must be the same for the states to stack.
    shared_tx = make_optimizer(configs[0].train, members[0].steps_per_epoch, injected_lr=True)
    states = []
    for m in members:
        tx = shared_tx if stacked else make_optimizer(m.config.train, m.steps_per_epoch)
        state = create_train_state(
            model,
            tx,
            m.spec.train_seed,
            spec.frontend.n_bands,
            channels=spec.frontend.channels,
            ema=spec.ema_decay > 0,
        )
        if spec.frontend.normalize == "dataset":
            stats = dataset_feature_stats(
                m.data.train.waves,
                spec.frontend,
                batch_size=spec.batch_size,
                max_samples=spec.max_samples,
                bucket_samples=spec.bucket_samples,
            )
            state = state.replace(feature_stats=jax.tree.map(jnp.asarray, stats))
        if spec.cache_features:
            m.feature_cache = cached_training_features(
                m.data.train.waves,
                state.feature_stats,
                frontend=spec.frontend,
                augment=spec.augment,
                copies=spec.copies,
                seed=m.spec.train_seed,
                batch_size=spec.batch_size,
                max_samples=spec.max_samples,
                bucket_samples=spec.bucket_samples,
                model_input=cached_input(model),
            )
        states.append(state)
    state = jax.tree.map(lambda *xs: jnp.stack(xs), *states) if stacked else states[0]
    state_sh = parallel.state_sharding(mesh, state, stacked)
    state = jax.device_put(state, state_sh)
    repl = parallel.replicated(mesh)

    statics = dict(
        frontend=spec.frontend,
        augment=spec.augment,
        offline=spec.copies > 0,
        label_smoothing=spec.label_smoothing,
        mixup_alpha=spec.mixup_alpha,
        ema_decay=spec.ema_decay,
    )
    if stacked:
        msh = parallel.member_sharding(mesh)
        classes = jax.device_put(
            jax.tree.map(lambda *xs: np.stack(xs), *[m.class_terms for m in members]), msh
        )
        seeds = jax.device_put(np.array([m.spec.train_seed for m in members], np.int32), msh)

        compiled = jax.jit(
            parallel.per_member(
                functools.partial(members_train_step, loop=members_loop(spec), **statics),
                mesh,
                n_args=6,
                n_out=2,
            ),
            in_shardings=(state_sh, parallel.batch_sharding(mesh, True), msh, msh, msh, msh),
            out_shardings=(state_sh, repl),  # metrics readable on every process
            donate_argnums=0,
        )

        def step_fn(state, batch, lr, active):
            return compiled(state, batch, classes, seeds, lr, active)

        take = jax.jit(lambda tree, k: jax.tree.map(lambda x: x[k], tree), out_shardings=repl)
    else:
        classes = jax.device_put(members[0].class_terms, repl)
        compiled = jax.jit(
            functools.partial(train_step, seed=spec.train_seed, **statics),
            in_shardings=(state_sh, parallel.batch_sharding(mesh), repl),
            out_shardings=(state_sh, repl),
            donate_argnums=0,
        )

        def step_fn(state, batch):
            return compiled(state, batch, classes)

        take = None
    predict = jax.jit(
        functools.partial(predict_step, model.apply, frontend=spec.frontend),
        in_shardings=(repl, parallel.batch_sharding(mesh)),
        out_shardings=repl,
    )
    return Trainer(
        members=members,
        stacked=stacked,
        mesh=mesh,
        model=model,
        state=state,
        _train_step=step_fn,
        _predict=lambda v, b: predict(
            v,
            {k: b[k] for k in ("audio", "length", "warp") if k in b},  # not the weights
        ),
        _take=take,
        speaker_stats={k: v for m in reversed(members) for k, v in m.speaker_stats.items()},
    )


# ----------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------


def _zero_sums() -> dict[str, Any]:
    return {"loss": 0.0, "correct": 0.0, "count": 0.0}


@dataclasses.dataclass
class LoopState:
    """Where one model's training stands; saved in every checkpoint's ``meta`` item."""

    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    best_step: int | None = None
    best_score: float | None = None
    stale_evals: int = 0
    stopped_early: bool = False
    epoch_sums: dict[str, float] = dataclasses.field(default_factory=_zero_sums)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LoopState:
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})


@dataclasses.dataclass
class Fitted:
    """What :func:`fit` hands on: the final state, each model's best variables (None when
    selecting the last epoch) and loop states."""

    state: TrainState
    best: ModelVariables | None
    loops: list[LoopState]


def fit(trainer: Trainer, runs: Sequence[RunDir], ckpt: Checkpointer) -> Fitted:
    """Train until every model is done (see the module docstring); returns the final state,
    the best variables and the loop states."""
    loop = _Loop(trainer, runs, ckpt)
    try:
        for step, batch in loop.batches():
            active = loop.active_at(step)
            if not any(active):
                break
            loop.train_step(step, batch, active)
            s = step + 1
            if s % loop.spec.log_every_steps == 0:
                loop.log_step(s, active)
            ended = [
                k for k, m in enumerate(loop.members) if active[k] and s % m.steps_per_epoch == 0
            ]
            if ended:
                loop.end_epochs(s, ended)
            if loop.checkpoint_due(s, ended):
                loop.save(s)
            if not any(loop.active_at(s)):
                break
        loop.check_finite()
    finally:
        loop.close()
    return Fitted(loop.state, loop.best, loop.loops)


class _Loop:
    """The state of :func:`fit` and its jobs: resume, step, log, epoch ends (validate, keep
    the best, stop early), checkpoint, and the divergence guard."""

    def __init__(self, trainer: Trainer, runs: Sequence[RunDir], ckpt: Checkpointer):
        self.trainer, self.runs, self.ckpt = trainer, runs, ckpt
        self.members, self.spec = trainer.members, trainer.spec
        self.main = jax.process_index() == 0
        # Which models a job checkpoint belongs to, relative to the job folder (movable).
        self.names = [os.path.relpath(r.path, ckpt.directory.parent) for r in runs]
        self.state = trainer.state
        # The variables each model scored best with so far (a copy: the state is donated).
        self.best = (
            None
            if self.spec.select == "last"
            else jax.tree.map(jnp.copy, self.state.model_variables())
        )
        self.loops = [LoopState() for _ in self.members]
        self.total = max(m.total_steps for m in self.members)
        self.start = self._resume()
        self.writers = [MetricWriter(r, enabled=self.main, resume_step=self.start) for r in runs]
        self.sums = _device_sums(self.loops, trainer.stacked)
        self.pending: list[tuple[int, Any, Any]] = []  # (step, loss, finite) not checked yet
        n = len(self.members)
        self.t_epoch, self.samples = [time.perf_counter()] * n, [0] * n
        self.t_log, self.logged = time.perf_counter(), 0
        self.bar = _progress(
            enabled=self.main and self.spec.progress, total=self.total, initial=self.start
        )

    def _resume(self) -> int:
        restored = self.ckpt.restore_latest(self.state, self.best)
        if restored is None:
            return 0
        start, self.state, self.best, meta = restored
        if meta.get("runs", self.names) != self.names:
            raise ConfigError(
                f"{self.ckpt.directory} holds a checkpoint of models {meta.get('runs')}, not of "
                f"{self.names}: use another --workdir"
            )
        self.loops = [LoopState.from_json(m) for m in meta["members"]]
        if self.main:
            print(f"resuming from step {start} of {self.total} ({self.ckpt.directory})", flush=True)
        return start

    def active_at(self, step: int) -> list[bool]:
        return [
            step < m.total_steps and not lp.stopped_early
            for m, lp in zip(self.members, self.loops, strict=True)
        ]

    def batches(self):
        """``(step, batch)`` from the resume step on, assembled ahead on a prefetch thread."""
        if not any(self.active_at(self.start)):
            return iter(())

        def batch_at(step: int) -> dict[str, np.ndarray]:
            # A pure function of the step (it runs ahead): a model that is done repeats its
            # last batch; one that stopped early keeps its data order.
            return self.trainer.batch(step, [step < m.total_steps for m in self.members])

        return enumerate(prefetch(batch_at, self.start, self.total), start=self.start)

    def train_step(self, step: int, batch: dict[str, np.ndarray], active: list[bool]) -> None:
        self.state, m = self.trainer.train_step(self.state, batch, step, active)
        self.pending.append((step, m["loss"], m["finite"]))
        self.sums = {key: self.sums[key] + m[key] for key in self.sums}
        self.last_loss = m["loss"]
        for k, a in enumerate(active):
            self.samples[k] += self.spec.batch_size if a else 0
        self.logged += self.spec.batch_size * sum(active)
        if self.bar is not None:
            self.bar.update(step + 1 - self.bar.n)

    def log_step(self, s: int, active: list[bool]) -> None:
        self.check_finite()
        losses = np.ravel(jax.device_get(self.last_loss))
        for k, a in enumerate(active):
            if a:
                row = {
                    "step": s,
                    "train_loss_step": float(losses[k]),
                    "lr": _lr(self.members[k], s),
                }
                self.writers[k].write(row)
        if self.bar is not None:
            rate = self.logged / max(time.perf_counter() - self.t_log, 1e-9)
            self.bar.set_postfix(loss=f"{float(losses.mean()):.3f}", samples_s=f"{rate:.1f}")

    def end_epochs(self, s: int, ended: list[int]) -> None:
        """Epoch ends of the models in ``ended`` at step ``s``: the epoch row, validation, the
        best variables, early stopping."""
        self.check_finite()
        host = jax.device_get(self.sums)
        for k in ended:
            member, lp = self.members[k], self.loops[k]
            epoch = s // member.steps_per_epoch
            elapsed = time.perf_counter() - self.t_epoch[k]
            part = {key: float(np.ravel(v)[k]) for key, v in host.items()}
            row: dict[str, Any] = {
                "epoch": epoch,
                "step": s,
                "train_loss": part["loss"] / member.steps_per_epoch,
                "train_accuracy": part["correct"] / max(part["count"], 1.0),
                "epoch_seconds": elapsed,
                "samples_per_second": self.samples[k] / max(elapsed, 1e-9),
                "lr": _lr(member, s),
            }
            if len(member.data.val) and (
                epoch % self.spec.eval_every == 0 or epoch == self.spec.epochs
            ):
                self._validate(k, s, row)
            lp.history.append(row)
            self.writers[k].write(row)
            if self.spec.patience and lp.stale_evals >= self.spec.patience:
                lp.stopped_early = True
            self.sums = _reset_member(self.sums, k, len(self.members), self.trainer.stacked)
            self._say((f"[{self.names[k]}] " if len(self.members) > 1 else "") + _epoch_line(row))
            if lp.stopped_early:
                self._say(f"early stop: no validation gain for {self.spec.patience} evaluations")
        for k in ended:
            self.samples[k], self.t_epoch[k] = 0, time.perf_counter()

    def _validate(self, k: int, s: int, row: dict[str, Any]) -> None:
        lp = self.loops[k]
        val = self.trainer.evaluate(self.members[k].data.val, self.trainer.variables(self.state, k))
        row.update(
            val_loss=val["loss"],
            val_accuracy=val["accuracy"],
            val_uar=val["uar"],
            val_macro_f1=val["macro_f1"],
        )
        score = self.spec.select_sign * row[self.spec.select_metric]
        # Ties go to the later epoch (more training on the same validation score).
        improved = lp.best_score is None or score >= lp.best_score
        if improved:
            lp.best_score, lp.best_step, lp.stale_evals = score, s, 0
            if self.best is not None:
                self.best = self.trainer.with_best(self.best, self.state, k)
        else:
            lp.stale_evals += 1
        row["best"] = bool(improved)

    def checkpoint_due(self, s: int, ended: list[int]) -> bool:
        """One model: every epoch end. Several: every shortest epoch, and when all are done.
        And every ``train.checkpoint_every_steps``."""
        every = self.spec.checkpoint_every_steps
        shortest = min(m.steps_per_epoch for m in self.members)
        epoch_end = bool(ended) and (s % shortest == 0 or not any(self.active_at(s)))
        return epoch_end or bool(every and s % every == 0)

    def save(self, step: int) -> None:
        self.check_finite()
        host = jax.device_get(self.sums)
        for k, lp in enumerate(self.loops):
            lp.epoch_sums = {key: float(np.ravel(v)[k]) for key, v in host.items()}
        self.sums = _device_sums(self.loops, self.trainer.stacked)
        meta = {"runs": self.names, "members": [lp.to_json() for lp in self.loops]}
        self.ckpt.save(step, self.state, self.best, meta)

    def check_finite(self) -> None:
        """Raise at the first step whose loss or updated parameters are not finite."""
        if not self.pending:
            return
        values = jax.device_get([(loss, ok) for _, loss, ok in self.pending])
        for (s, _, _), (loss, ok) in zip(self.pending, values, strict=True):
            for k, (lk, okk) in enumerate(zip(np.ravel(loss), np.ravel(ok), strict=True)):
                if math.isfinite(float(lk)) and bool(okk):
                    continue
                who = f" ({self.runs[k].path})" if len(self.members) > 1 else ""
                what = (
                    f"the training loss is {float(lk)}"
                    if not math.isfinite(float(lk))
                    else "the update made the parameters non-finite"
                )
                epoch = s // self.members[k].steps_per_epoch + 1
                raise NonFiniteLossError(
                    f"{what} at step {s}{who} (epoch {epoch}); no checkpoint of a later step "
                    "was written. Lower train.learning_rate or set train.grad_clip."
                )
        self.pending.clear()

    def _say(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line)
        elif self.main:
            print(line, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.ckpt.wait()
        for w in self.writers:
            w.close()


def _device_sums(loops: Sequence[LoopState], stacked: bool) -> dict[str, Any]:
    if not stacked:
        return dict(loops[0].epoch_sums)
    return {k: np.array([lp.epoch_sums[k] for lp in loops], np.float32) for k in _zero_sums()}


def _reset_member(sums: dict[str, Any], k: int, n: int, stacked: bool) -> dict[str, Any]:
    if not stacked:
        return _zero_sums()
    keep = np.ones(n, np.float32)
    keep[k] = 0.0
    return {key: v * keep for key, v in sums.items()}


# ----------------------------------------------------------------------------------------------
# Selection and the test split
# ----------------------------------------------------------------------------------------------


def select_and_test(trainer: Trainer, fitted: Fitted, k: int, run: RunDir) -> dict[str, Any]:
    """Model ``k``'s selected variables, tested once on its test split; writes its reports,
    ``model.msgpack`` and ``results.json``."""
    member, lp = trainer.members[k], fitted.loops[k]
    spec, data = member.spec, member.data
    step = trainer._take(fitted.state.step, k) if trainer.stacked else fitted.state.step
    final_step = int(jax.device_get(step))
    if spec.select != "last" and lp.best_step is not None and fitted.best is not None:
        variables = trainer._take(fitted.best, k) if trainer.stacked else fitted.best
        selected_step = int(lp.best_step)
    else:
        variables = trainer.variables(fitted.state, k)
        selected_step = final_step
    if not len(data.test):  # a release model (data.split="all"): nothing held out to test
        return _write_untested(trainer, fitted, k, run, variables, selected_step)
    # The selected model on the validation split, saved per file so that committees of runs
    # can be compared on validation data (``ser-jax ensemble`` on seed-protocol runs); read
    # before the test split, which stays the last thing a run looks at.
    val = trainer.evaluate(data.val, variables) if len(data.val) else None
    test = trainer.evaluate(data.test, variables)
    # Test-time augmentation, chosen by config before any test result: reported beside.
    tta = _tta_test(trainer, data, variables) if spec.tta else None
    # Speaker-adaptive BatchNorm (its own protocol, chosen by config): reported beside.
    adapted = _adapted_test(trainer, data, variables) if spec.speaker_bn else None
    history = lp.history
    results = {
        "name": spec.name,
        "seed": spec.seed,
        **({"seed_offset": spec.seed_offset} if spec.seed_offset else {}),
        "split": data.split.name,
        "selected_step": selected_step,
        "selected_epoch": selected_step // member.steps_per_epoch,
        "select": spec.select,
        "epochs_run": len(history),
        "stopped_early": lp.stopped_early,
        "test_accuracy": test["accuracy"],
        "test_uar": test["uar"],
        "test_macro_f1": test["macro_f1"],
        "test_loss": test["loss"],
        "val_at_selected": next(
            (
                {k2: h[k2] for k2 in h if k2.startswith("val_")}
                for h in history
                if h["step"] == selected_step
            ),
            None,
        ),
        "epoch_seconds_median": _timing_median(history, "epoch_seconds"),
        "samples_per_second_median": _timing_median(history, "samples_per_second"),
        **_beside_results(spec, tta, adapted),
        "members": len(trainer.members) if trainer.stacked else 1,
        "devices": parallel.device_summary(),
    }
    if jax.process_index() == 0:
        from ser_jax.reports.figures import plot_curves

        probs = test.pop("probs")
        write_report(run.path, "test", test, prediction_rows(data.test, probs, data.label_names))
        _write_beside(run, data, tta, adapted)
        if val is not None:
            rows = prediction_rows(data.val, val.pop("probs"), data.label_names)
            write_report(run.path, "val", val, rows)
        if history:
            plot_curves(history, run / "curves.png", title=f"{spec.name} seed {spec.seed}")
        write_model_file(run / MODEL_FILE, variables, step=selected_step)
        run.write_results(results)
        print(format_table(test))
    return results


def _tta_test(trainer: Trainer, data: PreparedData, variables: Any) -> dict[str, Any]:
    """The test split with test-time augmentation (``eval.tta_shifts``, ``eval.tta_semitones``)."""
    spec = trainer.spec
    return trainer.evaluate(data.test, variables, spec.tta_shifts, warps=spec.tta_warps)


def _adapted_test(trainer: Trainer, data: PreparedData, variables: Any) -> dict[str, Any]:
    """The test split with speaker-adaptive BatchNorm, each speaker's statistics from the
    clips ``eval.speaker_bn_source`` names."""
    bn_clips = speaker_bn_clips(trainer.spec.speaker_bn_source, data)
    return trainer.evaluate(data.test, variables, speaker_bn=True, bn_clips=bn_clips)


def _beside_results(
    spec: RunSpec, tta: dict[str, Any] | None, adapted: dict[str, Any] | None
) -> dict[str, Any]:
    """``results.json``'s blocks of the evaluations reported beside the plain test (None when
    off): test-time augmentation and speaker-adaptive BatchNorm."""
    keys = ("accuracy", "uar", "macro_f1", "loss")
    return {
        "tta": (
            {
                "shifts_seconds": [k / spec.sample_rate for k in spec.tta_shifts],
                "semitones": list(spec.tta_semitones),
                **{f"test_{m}": tta[m] for m in keys},
            }
            if tta
            else None
        ),
        "speaker_bn": (
            {"source": spec.speaker_bn_source, **{f"test_{m}": adapted[m] for m in keys}}
            if adapted
            else None
        ),
    }


def _write_beside(
    run: RunDir, data: PreparedData, tta: dict[str, Any] | None, adapted: dict[str, Any] | None
) -> None:
    """The reports of the evaluations beside the plain test (``test_tta_*``,
    ``test_speaker_bn_*``); pops their probabilities."""
    for name, metrics in (("test_tta", tta), ("test_speaker_bn", adapted)):
        if metrics:
            rows = prediction_rows(data.test, metrics.pop("probs"), data.label_names)
            write_report(run.path, name, metrics, rows)


# How far a saved model's probabilities may drift from its run's recorded ones (rounded to 5
# digits in test_predictions.jsonl) and still count as the same model on the same files.
REPRODUCE_TOLERANCE = 2e-3


def score_beside(config: Any, data: PreparedData | None, run: RunDir) -> dict[str, Any]:
    """A finished run's results, with the evaluations beside the plain test that ``config``
    asks for and the run lacks (``eval.tta_shifts`` and ``eval.tta_semitones``, or others than
    it has;
    ``eval.speaker_bn``) scored now from its saved model, without training it again: so adding
    ``--config.eval.tta_shifts=...`` or ``--config.eval.speaker_bn=True`` to the command of a
    finished ``train`` or ``cv`` job scores them for every run of the job. The model comes
    from the run's own ``config.json`` (only its ``eval`` fields from ``config``), the files
    from ``data`` (``config``'s split when None). The plain test is never scored again as a
    result: it is recomputed once as a check, and a saved model that no longer reproduces the
    run's recorded test probabilities (other files, or code that changed the numerics since)
    is refused, naming the run, rather than scored beside numbers it did not make."""
    results = run.results()
    shifts = [float(x) for x in config.eval.tta_shifts]
    semitones = [float(x) for x in config.eval.get("tta_semitones", ())]
    have = results.get("tta") or {}
    have_tta, have_semitones = have.get("shifts_seconds"), have.get("semitones", [])
    need_tta = bool(shifts or semitones) and (
        have_tta is None
        or len(have_tta) != len(shifts)
        or not np.allclose(have_tta, shifts, atol=1e-4)
        or len(have_semitones) != len(semitones)
        or not np.allclose(have_semitones, semitones, atol=1e-6)
    )
    need_bn = bool(config.eval.speaker_bn) and not results.get("speaker_bn")
    source = str(config.eval.get("speaker_bn_source", "scored"))
    have_source = (results.get("speaker_bn") or {}).get("source", "scored")
    if config.eval.speaker_bn and not need_bn and have_source != source:
        raise ConfigError(
            f"{run.path} scored speaker-adaptive BatchNorm from eval.speaker_bn_source="
            f"{have_source!r}, and this command asks for {source!r}: give it another --workdir"
        )
    if not (need_tta or need_bn) or results.get("test_accuracy") is None:
        return results
    own = run.config()
    with own.unlocked():
        own.eval.tta_shifts = tuple(shifts) if need_tta else ()
        own.eval.tta_semitones = tuple(semitones) if need_tta else ()
        own.eval.speaker_bn = need_bn
        own.eval.speaker_bn_source = source
        own.train.cache_features = False  # scoring trains nothing: no training cache to build
    data = data if data is not None else prepare(own, progress=False)
    recorded = _recorded_probabilities(run, data)
    trainer = build_trainer([own], [data], stacked=False)
    variables = parallel.to_replicated(read_model_file(run / MODEL_FILE)[0], trainer.mesh)
    drift = float(np.abs(trainer.predict(data.test, variables) - recorded).max())
    if drift > REPRODUCE_TOLERANCE:
        raise ConfigError(
            f"{run.path}: its saved model no longer reproduces its recorded test probabilities "
            f"(largest difference {drift:.3g}): the code changed the numerics or the files "
            "differ since it was trained; train it again instead of scoring it beside them"
        )
    spec = trainer.spec
    tta = _tta_test(trainer, data, variables) if need_tta else None
    adapted = _adapted_test(trainer, data, variables) if need_bn else None
    added = {k: v for k, v in _beside_results(spec, tta, adapted).items() if v is not None}
    commit, dirty = git_state()
    for block in added.values():  # who scored it, when it was not the training job
        block["scored_later"] = {
            "command": command_line(),
            "git_commit": commit,
            "git_dirty": dirty,
            "processor": processor_name(),
        }
    results.update(added)
    if jax.process_index() == 0:
        _write_beside(run, data, tta, adapted)
        run.write_results(results)
        print(f"{run.path}: scored {' and '.join(added)} beside its test, from its saved model")
    return results


def _recorded_probabilities(run: RunDir, data: PreparedData) -> np.ndarray:
    """The run's ``test_predictions.jsonl`` probabilities in the order of ``data.test``;
    refuses a run whose recorded test files are not those."""
    rows = read_predictions(run.path)
    ids = [u.utt_id for u in data.test.utts]
    if sorted(ids) != sorted(rows):
        raise ConfigError(
            f"{run.path}: its recorded test files differ from this command's split "
            f"({len(rows)} against {len(ids)}); score it with its own config"
        )
    return np.array([[rows[i]["probs"][n] for n in data.label_names] for i in ids])


def _write_untested(
    trainer: Trainer, fitted: Fitted, k: int, run: RunDir, variables: Any, step: int
) -> dict[str, Any]:
    member, history = trainer.members[k], fitted.loops[k].history
    results = {
        "name": member.spec.name,
        "seed": member.spec.seed,
        **({"seed_offset": member.spec.seed_offset} if member.spec.seed_offset else {}),
        "split": member.data.split.name,
        "selected_step": step,
        "selected_epoch": step // member.steps_per_epoch,
        "select": member.spec.select,
        "epochs_run": len(history),
        "trained_on": len(member.data.train),
        **{m: None for m in ("test_accuracy", "test_uar", "test_macro_f1", "test_loss")},
        "epoch_seconds_median": _timing_median(history, "epoch_seconds"),
        "samples_per_second_median": _timing_median(history, "samples_per_second"),
        "devices": parallel.device_summary(),
    }
    if jax.process_index() == 0:
        from ser_jax.reports.figures import plot_curves

        if history:
            plot_curves(history, run / "curves.png", title=f"{member.spec.name} (all files)")
        write_model_file(run / MODEL_FILE, variables, step=step)
        run.write_results(results)
        print(f"trained on all {len(member.data.train)} files; no test split (data.split=all)")
    return results


# ----------------------------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------------------------


def train_and_evaluate(
    config: Any, workdir: str | Path, *, data: PreparedData | None = None
) -> dict[str, Any]:
    """Train one model (resuming from the newest checkpoint in ``workdir``), select on
    validation, evaluate the selected model once on the test split, write its reports.

    A finished run (``results.json`` present) is not trained or tested again: its results are
    returned as they are.
    """
    return train_members([config], [workdir], [data], job_dir=workdir, stacked=False)[0]


def train_members(
    configs: Sequence[Any],
    workdirs: Sequence[str | Path],
    datas: Sequence[PreparedData | None] | None = None,
    *,
    job_dir: str | Path,
    stacked: bool = True,
) -> list[dict[str, Any]]:
    """Train several models together (one compiled step, ``stacked``) or one alone; each
    model ``k`` gets the run directory ``workdirs[k]``, exactly as if trained by itself. The
    job's checkpoints live in ``job_dir/checkpoints``."""
    runs = [RunDir(w) for w in workdirs]
    datas = list(datas) if datas is not None else [None] * len(configs)
    main = jax.process_index() == 0
    results: list[dict[str, Any] | None] = [None] * len(runs)
    for k, run in enumerate(runs):
        if run.finished:
            if main:
                print(f"{run.path} is finished (results.json); not training it again")
            results[k] = score_beside(configs[k], datas[k], run)
    todo = [k for k, r in enumerate(results) if r is None]
    if not todo:
        return results  # type: ignore[return-value]
    job = RunDir(job_dir)
    with _locks([job, *(runs[k] for k in todo if runs[k].path != job.path)]):
        trainer = build_trainer(
            [configs[k] for k in todo], [datas[k] for k in todo], stacked=stacked
        )
        for k, member in zip(todo, trainer.members, strict=True):
            if main:
                runs[k].write_start(member.config, run_info(member.config, member.data))
                for s in member.data.skipped:
                    print(f"skipped {s.path}: {s.reason}", file=sys.stderr)
        ckpt = Checkpointer(job / "checkpoints", keep=trainer.spec.keep_checkpoints)
        try:
            fitted = fit(trainer, [runs[k] for k in todo], ckpt)
            for i, k in enumerate(todo):
                results[k] = select_and_test(trainer, fitted, i, runs[k])
        finally:
            ckpt.close()
    return results  # type: ignore[return-value]


class _locks:
    """Hold the locks of several run directories (process 0), released in reverse order."""

    def __init__(self, runs: Sequence[RunDir]):
        self.contexts = [r.lock() for r in runs]

    def __enter__(self) -> None:
        entered = []
        try:
            for c in self.contexts:
                c.__enter__()
                entered.append(c)
        except BaseException:
            for c in reversed(entered):
                c.__exit__(None, None, None)
            raise
        self.entered = entered

    def __exit__(self, *exc: Any) -> None:
        for c in reversed(self.entered):
            c.__exit__(*exc)


def _timing_median(history: list[dict[str, Any]], key: str) -> float:
    """Median over epochs, leaving out the first (it includes compilation) when there are more."""
    rows = history[1:] or history
    return float(np.median([h[key] for h in rows])) if rows else 0.0


def _lr(member: Member, step: int) -> float:
    return float(member.schedule(step))


def _epoch_line(row: dict[str, Any]) -> str:
    line = f"epoch {row['epoch']:3d}  train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.3f}"
    if "val_uar" in row:
        line += (
            f"  | val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.3f} "
            f"UAR {row['val_uar']:.3f}{'  *' if row.get('best') else ''}"
        )
    return line + f"  ({row['epoch_seconds']:.1f} s, {row['samples_per_second']:.1f} samples/s)"


def _progress(*, enabled: bool, total: int, initial: int):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, leave=True)
