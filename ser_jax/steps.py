"""The pure, jit-compiled steps: ``train_step(state, batch, ...)`` and ``predict_step``.

One train step runs, on device and inside one ``jax.jit``: waveform augmentation → log-mel →
SpecAugment → model → cross-entropy → optax update. The RNG of step *k* is
``fold_in(key(seed), k)`` and each example's augmentation key is ``fold_in(aug_key, aug_id)``,
so a run is a pure function of its config and seed, and a resumed run continues exactly as the
uninterrupted one. ``predict_step`` scores clean audio with :class:`ModelVariables` only
(params, BatchNorm statistics, feature statistics): no optimiser is needed to use a model.
"""

from __future__ import annotations

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from ser_jax.augment import AugmentConfig
from ser_jax.features import make_features
from ser_jax.frontend import FrontendConfig
from ser_jax.optim import set_learning_rate

AUG_STREAM = 0x5EED  # fold_in constant that separates augmentation keys from dropout keys


@flax.struct.dataclass
class ModelVariables:
    """What a trained model is: params, BatchNorm statistics, and the training-set log-mel
    mean/std ``(n_mels,)`` for ``frontend.normalize="dataset"`` (0 and 1 otherwise)."""

    params: Any
    batch_stats: Any
    feature_stats: Any


class TrainState(train_state.TrainState):
    batch_stats: Any
    # Saved with the checkpoint so a restored model normalises exactly as in training.
    feature_stats: Any = None

    def model_variables(self) -> ModelVariables:
        return ModelVariables(self.params, self.batch_stats, self.feature_stats)


def init_variables(model: nn.Module, seed: int, n_mels: int) -> ModelVariables:
    """Freshly initialised variables (feature statistics 0 / 1)."""
    feats = jnp.zeros((2, 32, n_mels), jnp.float32)
    lengths = jnp.array([32, 20], jnp.int32)
    # One compiled init instead of ~100 eagerly compiled ops (~4 s of start-up); same values.
    init = jax.jit(lambda key: model.init(key, feats, lengths, train=False))
    variables = init(jax.random.key(seed))
    return ModelVariables(
        params=variables["params"],
        batch_stats=variables.get("batch_stats", {}),
        feature_stats={
            "mean": jnp.zeros((n_mels,), jnp.float32),
            "std": jnp.ones((n_mels,), jnp.float32),
        },
    )


def create_train_state(
    model: nn.Module, tx: optax.GradientTransformation, seed: int, n_mels: int
) -> TrainState:
    v = init_variables(model, seed, n_mels)
    return TrainState.create(
        apply_fn=model.apply,
        params=v.params,
        tx=tx,
        batch_stats=v.batch_stats,
        feature_stats=v.feature_stats,
    )


def cross_entropy(
    logits: jax.Array,
    labels: jax.Array,
    weights: jax.Array,
    class_weights: jax.Array,
    label_smoothing: float,
) -> tuple[jax.Array, jax.Array]:
    """Weighted mean cross-entropy and the per-example loss (zero where weight is 0)."""
    num_classes = logits.shape[-1]
    targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), label_smoothing)
    per_example = optax.softmax_cross_entropy(logits, targets)
    w = weights * class_weights[labels]
    per_example = jnp.where(weights > 0, per_example, 0.0)
    return (per_example * w).sum() / jnp.maximum(w.sum(), 1e-9), per_example


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
    stays clean."""
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


def train_step(
    state: TrainState,
    batch: dict[str, jax.Array],
    class_weights: jax.Array,
    *,
    frontend: FrontendConfig,
    augment: AugmentConfig,
    offline: bool,
    seed: Any,
    label_smoothing: float,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimiser step on ``batch`` (see the module docstring); returns the new state and
    ``{"loss", "correct", "count"}`` of the batch and ``finite``: whether every updated
    parameter is finite."""
    step_key = jax.random.fold_in(jax.random.key(seed), state.step)
    feats, frames = training_features(
        batch,
        state.feature_stats,
        seed,
        frontend=frontend,
        augment=augment,
        offline=offline,
    )

    def loss_fn(params):
        logits, updates = state.apply_fn(
            {"params": params, "batch_stats": state.batch_stats},
            feats,
            frames,
            train=True,
            rngs={"dropout": jax.random.fold_in(step_key, 1)},
            mutable=["batch_stats"],
        )
        loss, _ = cross_entropy(
            logits, batch["label"], batch["weight"], class_weights, label_smoothing
        )
        return loss, (logits, updates)

    (loss, (logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads, batch_stats=updates["batch_stats"])
    correct = (jnp.argmax(logits, -1) == batch["label"]) * batch["weight"]
    # A finite loss can still come with an update that overflows the parameters.
    finite = jnp.all(jnp.stack([jnp.isfinite(p).all() for p in jax.tree.leaves(state.params)]))
    metrics = {
        "loss": loss,
        "correct": correct.sum(),
        "count": batch["weight"].sum(),
        "finite": finite,
    }
    return state, metrics


def members_train_step(
    state: TrainState,
    batch: dict[str, jax.Array],
    class_weights: jax.Array,
    seed: jax.Array,
    lr: jax.Array,
    active: jax.Array,
    **statics: Any,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """``train_step`` for N models at once: every argument has a leading members axis
    ``(members, ...)`` (the batch is ``(members, batch, ...)``), ``jax.vmap`` runs them in one
    compiled step. Each model has its own seed and learning rate (the optimiser is built with
    ``injected_lr``); a model whose ``active`` is False keeps its state and reports zeros."""

    def one(state, batch, class_weights, seed, lr, active):
        state = state.replace(opt_state=set_learning_rate(state.opt_state, lr))
        new, metrics = train_step(state, batch, class_weights, seed=seed, **statics)
        new = jax.tree.map(lambda a, b: jnp.where(active, a, b), new, state)
        metrics = {k: jnp.where(active, v, jnp.zeros_like(v)) for k, v in metrics.items()}
        metrics["finite"] = metrics["finite"] | ~active  # an idle model has nothing to report
        return new, metrics

    return jax.vmap(one)(state, batch, class_weights, seed, lr, active)


def predict_step(
    apply_fn: Any,
    variables: ModelVariables,
    batch: dict[str, jax.Array],
    *,
    frontend: FrontendConfig,
) -> jax.Array:
    """Class probabilities ``(batch, classes)`` of clean audio ``batch["audio"]``."""
    stats = (variables.feature_stats["mean"], variables.feature_stats["std"])
    feats, frames = make_features(
        batch["audio"], batch["length"], None, frontend=frontend, augment=None, stats=stats
    )
    logits = apply_fn(
        {"params": variables.params, "batch_stats": variables.batch_stats},
        feats,
        frames,
        train=False,
    )
    return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
