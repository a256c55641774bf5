"""The trainer: ``build_trainer(configs, datas)`` turns one config (one model) or several (models
trained together, ``stacked``) into a :class:`Trainer`, which hands on everything the loop
(``ser_jax.training.loop``) and the tests (``ser_jax.training.results``) use.

- :class:`Member`: one model's config, resolved spec, prepared data, training batches,
  per-class loss terms, learning-rate schedule and, when asked for, its speakers' statistics
  and its training feature cache.
- :class:`Trainer`: the mesh, the model, the (stacked) train state and the jit-compiled steps
  (``ser_jax.training.steps``), with the batch of a step, one train step, a model's variables,
  and its predictions and metrics on a split (test-time augmentation and speaker-adaptive
  BatchNorm included). With ``stacked=True`` the state of N models gets a leading members
  axis and one ``jax.vmap``-ed step trains them all: each keeps its own seed, data order,
  augmentation keys and learning-rate schedule.
- :func:`check_members`: models trained together may differ only in a draw
  (``ser_jax.recipe.DRAW``: seed, held-out speakers or fold).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ser_jax import parallel
from ser_jax.data.pipeline import ClipSet, TrainBatches
from ser_jax.data.prepare import PreparedData, prepare
from ser_jax.errors import ConfigError
from ser_jax.evaluation.metrics import classification_metrics
from ser_jax.evaluation.scoring import (
    ModelScorer,
    SpeakerAdaptation,
    clip_speakers,
    speaker_bn_clips,
    speaker_waves,
)
from ser_jax.frontend.features import dataset_feature_stats, speaker_feature_stats
from ser_jax.frontend.logmel import num_frames
from ser_jax.models import cached_input, check_min_frames, create_model
from ser_jax.recipe import DRAW, config_differences
from ser_jax.spec import RunSpec, resolve
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
    def scorer(self) -> ModelScorer:
        """The scoring policy (``ser_jax.evaluation.scoring.ModelScorer``) with this trainer's
        compiled steps: batches laid out over the mesh, statistics replicated on it."""
        sharding = parallel.batch_sharding(self.mesh)
        spec = self.spec
        return ModelScorer(
            predict=lambda v, batch: self._predict(v, parallel.to_global(batch, sharding)),
            bn_stats=lambda v, batch: self._bn_stats_step()(v, parallel.to_global(batch, sharding)),
            num_classes=len(self.data.label_names),
            batch_size=spec.batch_size,
            bn_batch_size=spec.batch_size,
            max_samples=spec.max_samples,
            bucket_samples=spec.bucket_samples,
            place=functools.partial(parallel.to_replicated, mesh=self.mesh),
        )

    def _bn_stats_step(self) -> Any:
        """The jitted ``batchnorm_stats_fn`` (eval.speaker_bn), built on first use."""
        if self._bn_stats is None:
            self._bn_stats = jax.jit(
                batchnorm_stats_fn(self.model, self.spec.frontend),
                in_shardings=(parallel.replicated(self.mesh), parallel.batch_sharding(self.mesh)),
                out_shardings=parallel.replicated(self.mesh),
            )
        return self._bn_stats

    def speaker_batchnorm(self, variables: ModelVariables, waves: Sequence[np.ndarray]) -> Any:
        """BatchNorm statistics of ``waves`` (one speaker's clean clips) under ``variables``
        (``ser_jax.evaluation.scoring.batchnorm_statistics``), replicated over the mesh."""
        return self.scorer().batchnorm(variables, waves)

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
        adaptation = SpeakerAdaptation(
            feature_stats=self.speaker_stats if self.spec.frontend.normalize == "speaker" else None,
            speaker_bn=speaker_bn,
            bn_waves=None if bn_clips is None else functools.partial(speaker_waves, bn_clips),
        )
        return self.scorer().probabilities(
            variables,
            clips.waves,
            speakers=clip_speakers(clips) if adaptation.by_speaker else None,
            adaptation=adaptation,
            shifts=shifts,
            warps=warps,
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
    """Models trained together must share everything but a draw (``ser_jax.recipe.DRAW``)."""
    for cfg in configs[1:]:
        diff = config_differences(configs[0], cfg, ignore=(DRAW,))
        if diff:
            raise ConfigError(
                f"models trained together (train.members) differ in {diff}; only "
                f"{list(DRAW)} may differ: train them in separate runs"
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
    state, state_sh = _initial_state(model, members, mesh, stacked)
    step_fn, take = _compile_train_step(members, mesh, state_sh, stacked)
    repl = parallel.replicated(mesh)
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


def _initial_state(
    model: nn.Module, members: Sequence[Member], mesh: Any, stacked: bool
) -> tuple[TrainState, Any]:
    """The members' initial train states (stacked along a members axis when ``stacked``),
    placed on the mesh, and their sharding."""
    # Stacked models share one optimiser object (their learning rates are injected per step);
    # its static structure must be the same for the states to stack.
    shared_tx = make_optimizer(
        members[0].config.train, members[0].steps_per_epoch, injected_lr=True
    )
    states = []
    for m in members:
        tx = shared_tx if stacked else make_optimizer(m.config.train, m.steps_per_epoch)
        states.append(_member_state(model, m, members[0].spec, tx))
    state = jax.tree.map(lambda *xs: jnp.stack(xs), *states) if stacked else states[0]
    state_sh = parallel.state_sharding(mesh, state, stacked)
    return jax.device_put(state, state_sh), state_sh


def _member_state(
    model: nn.Module, m: Member, spec: RunSpec, tx: optax.GradientTransformation
) -> TrainState:
    """Member ``m``'s initial state (its own seed; ``spec``: the settings the members share),
    with the training set's feature statistics (``frontend.normalize="dataset"``); builds its
    feature cache (``train.cache_features``)."""
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
    return state


def _compile_train_step(
    members: Sequence[Member], mesh: Any, state_sh: Any, stacked: bool
) -> tuple[Any, Any]:
    """The jit-compiled train step (one model's, or the stacked models' with their learning
    rates and active flags) and, when stacked, the function taking member ``k``'s slice."""
    spec = members[0].spec
    repl = parallel.replicated(mesh)
    statics = dict(
        frontend=spec.frontend,
        augment=spec.augment,
        offline=spec.copies > 0,
        label_smoothing=spec.label_smoothing,
        mixup_alpha=spec.mixup_alpha,
        ema_decay=spec.ema_decay,
    )
    if not stacked:
        classes = jax.device_put(members[0].class_terms, repl)
        compiled = jax.jit(
            functools.partial(train_step, seed=spec.train_seed, **statics),
            in_shardings=(state_sh, parallel.batch_sharding(mesh), repl),
            out_shardings=(state_sh, repl),
            donate_argnums=0,
        )

        def step_fn(state, batch):
            return compiled(state, batch, classes)

        return step_fn, None
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

    def members_step_fn(state, batch, lr, active):
        return compiled(state, batch, classes, seeds, lr, active)

    take = jax.jit(lambda tree, k: jax.tree.map(lambda x: x[k], tree), out_shardings=repl)
    return members_step_fn, take
