"""The pure, jit-compiled steps: ``train_step(state, batch, ...)`` and ``predict_step``.

One train step runs, on device and inside one ``jax.jit``: waveform augmentation → log-mel →
SpecAugment → model → cross-entropy → optax update. The RNG of step *k* is
``fold_in(key(seed), k)`` and each example's augmentation key is ``fold_in(aug_key, aug_id)``,
so a run is a pure function of its config and seed, and a resumed run continues exactly as the
uninterrupted one. ``predict_step`` scores clean audio with :class:`ModelVariables` only
(params, BatchNorm statistics, feature statistics): no optimiser is needed to use a model.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state

from ser_jax.data.pipeline import bucket_length
from ser_jax.errors import ConfigError
from ser_jax.frontend.augment import AugmentConfig
from ser_jax.frontend.features import make_features
from ser_jax.frontend.logmel import FrontendConfig
from ser_jax.training.optim import set_learning_rate

AUG_STREAM = 0x5EED  # fold_in constant that separates augmentation keys from dropout keys


@flax.struct.dataclass
class ModelVariables:
    """What a trained model is: params, BatchNorm statistics, and the training-set log-mel
    mean/std ``(n_bands,)`` for ``frontend.normalize="dataset"`` (0 and 1 otherwise)."""

    params: Any
    batch_stats: Any
    feature_stats: Any


class TrainState(train_state.TrainState):
    batch_stats: Any
    # Saved with the checkpoint so a restored model normalises exactly as in training.
    feature_stats: Any = None
    # Exponential moving average of the params (train.ema_decay > 0), else None. When it is
    # kept, it is the model that is evaluated, selected and saved.
    ema_params: Any = None

    def model_variables(self) -> ModelVariables:
        params = self.ema_params if self.ema_params is not None else self.params
        return ModelVariables(params, self.batch_stats, self.feature_stats)


def init_variables(model: nn.Module, seed: int, n_bands: int, channels: int = 1) -> ModelVariables:
    """Freshly initialised variables (feature statistics 0 / 1)."""
    shape = (2, 32, n_bands) if channels == 1 else (2, 32, n_bands, channels)
    feats = jnp.zeros(shape, jnp.float32)
    lengths = jnp.array([32, 20], jnp.int32)
    # One compiled init instead of ~100 eagerly compiled ops (~4 s of start-up); same values.
    init = jax.jit(lambda key: model.init(key, feats, lengths, train=False))
    variables = init(jax.random.key(seed))
    return ModelVariables(
        params=variables["params"],
        batch_stats=variables.get("batch_stats", {}),
        feature_stats={
            "mean": jnp.zeros((n_bands,), jnp.float32),
            "std": jnp.ones((n_bands,), jnp.float32),
        },
    )


def create_train_state(
    model: nn.Module,
    tx: optax.GradientTransformation,
    seed: int,
    n_bands: int,
    *,
    channels: int = 1,
    ema: bool = False,
) -> TrainState:
    v = init_variables(model, seed, n_bands, channels)
    return TrainState.create(
        apply_fn=model.apply,
        params=v.params,
        tx=tx,
        batch_stats=v.batch_stats,
        feature_stats=v.feature_stats,
        ema_params=jax.tree.map(jnp.copy, v.params) if ema else None,
    )


def training_features(
    batch: dict[str, jax.Array],
    feature_stats: Any,
    seed: Any,
    *,
    frontend: FrontendConfig,
    augment: AugmentConfig,
    offline: bool,
) -> tuple[jax.Array, jax.Array]:
    """``(feats (batch, frames, mel), frame_lengths)`` of a training batch, augmented when
    ``augment`` is on; in offline mode each file's original copy (``batch["augment"]`` False)
    stays clean. ``frontend.normalize == "speaker"``: each example's speaker's statistics come
    with the batch (``norm_mean``, ``norm_std`` ``(batch, n_bands)``). A batch that brings its
    features (``feats``, ``frames``: ``train.cache_features``) is used as it is."""
    if "feats" in batch:
        return batch["feats"], batch["frames"]
    if frontend.normalize == "speaker":
        stats = (batch["norm_mean"], batch["norm_std"])
    else:
        stats = (feature_stats["mean"], feature_stats["std"])
    keys = None
    if augment.enabled:
        aug_key = jax.random.fold_in(jax.random.key(seed), AUG_STREAM)
        keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(aug_key, batch["aug_id"])
    return make_features(
        batch["audio"],
        batch["length"],
        keys,
        frontend=frontend,
        augment=augment if augment.enabled else None,
        stats=stats,
        apply=batch["augment"] if offline else None,
    )


def cached_training_features(
    waves: Sequence[np.ndarray],
    feature_stats: Any,
    *,
    frontend: FrontendConfig,
    augment: AugmentConfig,
    copies: int,
    seed: int,
    batch_size: int,
    max_samples: int,
    bucket_samples: int,
    model_input: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
) -> dict[str, np.ndarray]:
    """Every training row's features, computed once (``train.cache_features``):
    ``{"feats": (rows + 1, frames, ...), "frames": (rows + 1,)}``; the last row is an empty
    clip's (length 0: the filling rows of speaker batches, whose ``index`` and ``aug_id`` are
    -1). Without augmentation a row is a clip (row ``i``: clip ``i``, found by a batch's
    ``index``); with offline augmentation (``copies`` > 0) a row is an item of the epoch (row
    ``i``: clip ``i % n``, its clean original for ``i < n`` and a fixed augmented copy after,
    found by ``aug_id``), drawn with the train step's own keys (``training_features``). With
    ``model_input`` (``ser_jax.models.cached_input``: the parameter-free start of the model's
    forward pass) ``feats`` holds what it makes of the features instead.

    The rows are what the train step computes for those clips: they are padded to the one
    bucket length every training batch has and scored in batches of ``batch_size``. That holds
    only when no clip is longer than ``max_samples`` (a longer one is cropped at random in each
    epoch) and every clip falls in the same bucket (a batch is padded to its longest clip's
    bucket); otherwise the cache is refused with the reason. Online augmentation (a fresh draw
    every step) cannot be cached (``ser_jax.spec.resolve`` refuses it).
    """
    lengths = np.array([len(w) for w in waves], np.int64)
    if not len(lengths):
        raise ValueError("no training clips to cache features of")
    if lengths.max() > max_samples:
        i = int(lengths.argmax())
        raise ConfigError(
            f"train.cache_features=True: training clip {i} has {lengths[i]} samples, more than "
            f"data.max_seconds ({max_samples} samples), so each epoch crops it at random: raise "
            "data.max_seconds or set train.cache_features=False"
        )
    buckets = sorted({bucket_length(int(n), bucket_samples, max_samples) for n in lengths})
    if len(buckets) > 1:
        raise ConfigError(
            f"train.cache_features=True: the training clips fall in {len(buckets)} buckets "
            f"({buckets[0]}..{buckets[-1]} samples), so batches differ in length: set "
            "data.bucket_seconds to data.max_seconds or train.cache_features=False"
        )
    length, n = buckets[0], len(waves)
    offline = copies > 0 and augment.enabled
    items = n * (copies + 1) if offline else n
    step = jax.jit(
        functools.partial(
            _cached_rows, frontend=frontend, augment=augment, offline=offline, then=model_input
        )
    )
    feats, frames = [], []
    for start in range(0, items + 1, batch_size):
        ids = np.arange(start, min(start + batch_size, items + 1))
        audio = np.zeros((batch_size, length), np.float32)
        count = np.zeros(batch_size, np.int32)
        for r, i in enumerate(ids):
            if i < items:  # the last id is the empty row
                audio[r, : lengths[i % n]] = waves[i % n]
                count[r] = lengths[i % n]
        aug_id = np.full(batch_size, -1, np.int32)
        aug_id[: len(ids)] = np.where(ids < items, ids, -1)
        batch = {
            "audio": audio,
            "length": count,
            "aug_id": aug_id,
            "augment": aug_id >= n,
        }
        f, k = step({k: jnp.asarray(v) for k, v in batch.items()}, feature_stats, seed)
        feats.append(np.asarray(f)[: len(ids)])
        frames.append(np.asarray(k)[: len(ids)])
    return {"feats": np.concatenate(feats), "frames": np.concatenate(frames)}


def _cached_rows(batch, feature_stats, seed, *, frontend, augment, offline, then):
    feats, frames = training_features(
        batch, feature_stats, seed, frontend=frontend, augment=augment, offline=offline
    )
    return (then(feats, frames) if then is not None else feats), frames


def mix(
    key: jax.Array, feats: jax.Array, frames: jax.Array, alpha: float
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Mixup within a batch: example ``i`` becomes ``lam_i x_i + (1 - lam_i) x_perm(i)``,
    ``lam ~ Beta(alpha, alpha)``; returns ``(feats, frames, perm, lam)``. The mixture is as
    long as the longer of the two (the shorter one is zero past its end, as padding is)."""
    k_perm, k_lam = jax.random.split(key)
    batch = feats.shape[0]
    perm = jax.random.permutation(k_perm, batch)
    lam = jax.random.beta(k_lam, alpha, alpha, (batch,)).astype(feats.dtype)
    lam_x = lam.reshape((batch,) + (1,) * (feats.ndim - 1))
    mixed = lam_x * feats + (1.0 - lam_x) * feats[perm]
    return mixed, jnp.maximum(frames, frames[perm]), perm, lam


def class_terms(weight: Any, logit_shift: Any) -> dict[str, Any]:
    """The per-class arrays a train step reads, ``(classes,)`` each (a leading members axis
    when stacked): the loss weight of each class (1 = unweighted) and the shift added to each
    class's logit in the loss only (``tau * log(prior)`` of the logit-adjusted loss; 0 = off)."""
    return {"weight": weight, "logit_shift": logit_shift}


def loss_targets(
    labels: jax.Array,
    weights: jax.Array,
    class_weight: jax.Array,
    *,
    label_smoothing: float,
    mixup: tuple[jax.Array, jax.Array] | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(targets (batch, classes), example_weights (batch,), labels (batch,))`` of a batch.

    ``mixup=(perm, lam)`` (from ``mix``): example ``i``'s target is
    ``lam_i onehot(y_i) + (1 - lam_i) onehot(y_perm(i))`` and its weight mixes the same way;
    its label (what "correct" counts) is the dominant one. Label smoothing comes last."""
    num_classes = class_weight.shape[-1]
    targets = jax.nn.one_hot(labels, num_classes)
    example_weights = weights * class_weight[labels]
    if mixup is not None:
        perm, lam = mixup
        targets = lam[:, None] * targets + (1.0 - lam[:, None]) * targets[perm]
        example_weights = lam * example_weights + (1.0 - lam) * example_weights[perm]
        labels = jnp.where(lam >= 0.5, labels, labels[perm])
    return optax.smooth_labels(targets, label_smoothing), example_weights, labels


def classification_loss(
    logits: jax.Array,
    targets: jax.Array,
    example_weights: jax.Array,
    real: jax.Array,
    logit_shift: jax.Array | float = 0.0,
) -> jax.Array:
    """The weighted mean cross-entropy of ``logits + logit_shift`` over the ``real`` rows
    (batch padding, ``real`` False, counts nothing, even when mixup lent it a weight).

    ``logit_shift = tau * log(training class prior)`` makes it the logit-adjusted loss (Menon
    et al. 2021): the network's own logits, which prediction uses, then carry no bonus for a
    class's frequency, the decision rule for balanced error (UAR)."""
    per_example = optax.softmax_cross_entropy(logits + logit_shift, targets)
    per_example = jnp.where(real, per_example, 0.0)
    return (per_example * example_weights).sum() / jnp.maximum(example_weights.sum(), 1e-9)


def speaker_loss(
    logits: jax.Array,
    speakers: jax.Array,
    weights: jax.Array,
    mixup: tuple[jax.Array, jax.Array] | None = None,
) -> jax.Array:
    """Mean cross-entropy of the speaker head over the real rows (``weights > 0``); with
    mixup the speaker targets mix as the emotion targets do."""
    targets = jax.nn.one_hot(speakers, logits.shape[-1])
    if mixup is not None:
        perm, lam = mixup
        targets = lam[:, None] * targets + (1.0 - lam[:, None]) * targets[perm]
    real = weights > 0
    return classification_loss(logits, targets, real.astype(logits.dtype), real)


def train_step(
    state: TrainState,
    batch: dict[str, jax.Array],
    classes: dict[str, jax.Array],
    *,
    frontend: FrontendConfig,
    augment: AugmentConfig,
    offline: bool,
    seed: Any,
    label_smoothing: float,
    mixup_alpha: float = 0.0,
    ema_decay: float = 0.0,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimiser step on ``batch`` (see the module docstring); returns the new state and
    ``{"loss", "correct", "count"}`` of the batch and ``finite``: whether every updated
    parameter is finite. ``classes``: the per-class loss terms (``class_terms``).

    ``mixup_alpha > 0`` mixes the batch's features and targets (``mix``, ``loss_targets``);
    ``correct`` then counts the dominant label. ``ema_decay > 0`` updates ``state.ema_params``
    with a decay that warms up as ``min(decay, (1 + step) / (10 + step))``.
    """
    step_key = jax.random.fold_in(jax.random.key(seed), state.step)
    feats, frames = training_features(
        batch,
        state.feature_stats,
        seed,
        frontend=frontend,
        augment=augment,
        offline=offline,
    )
    weights = batch["weight"]
    mixup = None
    if mixup_alpha > 0:
        feats, frames, perm, lam = mix(jax.random.fold_in(step_key, 2), feats, frames, mixup_alpha)
        mixup = (perm, lam)
    targets, example_weights, labels = loss_targets(
        batch["label"], weights, classes["weight"], label_smoothing=label_smoothing, mixup=mixup
    )

    adversary = "speaker" in batch  # the model has a speaker head (model.speaker_classes)

    def loss_fn(params):
        logits, updates = state.apply_fn(
            {"params": params, "batch_stats": state.batch_stats},
            feats,
            frames,
            train=True,
            rngs={
                "dropout": jax.random.fold_in(step_key, 1),
                "mixstyle": jax.random.fold_in(step_key, 3),
            },
            mutable=["batch_stats", "intermediates"] if adversary else ["batch_stats"],
        )
        loss = classification_loss(
            logits, targets, example_weights, weights > 0, classes["logit_shift"]
        )
        total = loss
        if adversary:  # its gradient reaches the embedding reversed (models.reverse_gradient)
            total = loss + speaker_loss(
                updates["intermediates"]["speaker_logits"][0], batch["speaker"], weights, mixup
            )
        return total, (loss, logits, updates)

    (_, (loss, logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    new = state.apply_gradients(grads=grads, batch_stats=updates["batch_stats"])
    if ema_decay > 0:
        t = state.step.astype(jnp.float32)
        decay = jnp.minimum(ema_decay, (1.0 + t) / (10.0 + t))
        new = new.replace(
            ema_params=optax.incremental_update(new.params, state.ema_params, 1.0 - decay)
        )
    correct = (jnp.argmax(logits, -1) == labels) * weights
    # A finite loss can still come with an update that overflows the parameters.
    finite = jnp.all(jnp.stack([jnp.isfinite(p).all() for p in jax.tree.leaves(new.params)]))
    metrics = {"loss": loss, "correct": correct.sum(), "count": weights.sum(), "finite": finite}
    return new, metrics


def members_train_step(
    state: TrainState,
    batch: dict[str, jax.Array],
    classes: dict[str, jax.Array],
    seed: jax.Array,
    lr: jax.Array,
    active: jax.Array,
    *,
    loop: str = "vmap",
    **statics: Any,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """``train_step`` for N models at once: every argument has a leading members axis
    ``(members, ...)`` (the batch is ``(members, batch, ...)``). Each model has its own seed
    and learning rate (the optimiser is built with ``injected_lr``); a model whose ``active``
    is False keeps its state and reports zeros.

    ``loop="vmap"`` batches the models into each op (``jax.vmap``; convolutions become grouped
    convolutions: good on a GPU); ``loop="unroll"`` writes each model's ops out one after
    another in the one compiled step, each as compiled for one model (on a CPU, where XLA's
    grouped convolutions are several times slower; ``lax.map`` was slower still: XLA's CPU
    while-loop body lost the fast convolutions).
    """

    def one(args):
        state, batch, classes, seed, lr, active = args
        state = state.replace(opt_state=set_learning_rate(state.opt_state, lr))
        new, metrics = train_step(state, batch, classes, seed=seed, **statics)
        new = jax.tree.map(lambda a, b: jnp.where(active, a, b), new, state)
        metrics = {k: jnp.where(active, v, jnp.zeros_like(v)) for k, v in metrics.items()}
        metrics["finite"] = metrics["finite"] | ~active  # an idle model has nothing to report
        return new, metrics

    args = (state, batch, classes, seed, lr, active)
    if loop == "vmap":
        return jax.vmap(one)(args)
    if loop == "unroll":
        n = jax.tree.leaves(args)[0].shape[0]
        outs = [one(jax.tree.map(lambda x, k=k: x[k], args)) for k in range(n)]
        return jax.tree.map(lambda *xs: jnp.stack(xs), *outs)
    raise ValueError(f"loop={loop!r}: vmap or unroll")


def batchnorm_stats_step(
    apply_fn: Any,
    variables: ModelVariables,
    batch: dict[str, jax.Array],
    *,
    frontend: FrontendConfig,
) -> tuple[Any, Any]:
    """The BatchNorm statistics of clean audio ``batch`` itself, and how many values each
    BatchNorm layer averaged (a tree like ``batch_stats``, a count per layer's ``mean``).

    ``apply_fn`` is the ``apply`` of a copy of the model whose BatchNorm momentum is 0, so the
    "running" statistics it returns are this batch's own (masked: padding and empty rows do
    not count). A layer's count is the ``bn_count`` its block sows (``ConvBlock``)."""
    stats = (variables.feature_stats["mean"], variables.feature_stats["std"])
    feats, frames = make_features(
        batch["audio"], batch["length"], None, frontend=frontend, augment=None, stats=stats
    )
    _, updates = apply_fn(
        {"params": variables.params, "batch_stats": variables.batch_stats},
        feats,
        frames,
        train=True,
        mutable=["batch_stats", "intermediates"],
        rngs={"dropout": jax.random.key(0)},  # dropout follows every BatchNorm: no effect
    )
    sown = flax.traverse_util.flatten_dict(updates["intermediates"])
    counts = {}
    for path in flax.traverse_util.flatten_dict(updates["batch_stats"]):
        if path[-1] == "mean":  # .../<block>/<BatchNorm layer>/mean: the block's count
            block = path[:-2]
            if block + ("bn_count",) not in sown:
                raise ValueError(f"BatchNorm layer {'/'.join(path[:-1])}: its block sows no count")
            counts[path] = sown[block + ("bn_count",)][0].astype(jnp.float32)
    return updates["batch_stats"], flax.traverse_util.unflatten_dict(counts)


def batchnorm_stats_fn(model: nn.Module, frontend: FrontendConfig) -> Any:
    """``batchnorm_stats_step(variables, batch)`` for ``model``: bound to a copy of it whose
    BatchNorm momentum is 0 (speaker-adaptive BatchNorm, in training and for a restored
    model alike); a model without BatchNorm is refused."""
    if not hasattr(model, "bn_momentum"):
        raise ConfigError(
            f"speaker-adaptive BatchNorm (eval.speaker_bn) needs a model with BatchNorm "
            f"(bn_momentum); {type(model).__name__} has none"
        )
    return functools.partial(
        batchnorm_stats_step, model.clone(bn_momentum=0.0).apply, frontend=frontend
    )


def predict_step(
    apply_fn: Any,
    variables: ModelVariables,
    batch: dict[str, jax.Array],
    *,
    frontend: FrontendConfig,
) -> jax.Array:
    """Class probabilities ``(batch, classes)`` of clean audio ``batch["audio"]``, its
    frequency axis warped by ``batch["warp"]`` ``(batch,)`` when the batch has one (test-time
    augmentation)."""
    stats = (variables.feature_stats["mean"], variables.feature_stats["std"])
    feats, frames = make_features(
        batch["audio"],
        batch["length"],
        None,
        frontend=frontend,
        augment=None,
        stats=stats,
        warp=batch.get("warp"),
    )
    logits = apply_fn(
        {"params": variables.params, "batch_stats": variables.batch_stats},
        feats,
        frames,
        train=False,
    )
    return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
