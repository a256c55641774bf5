"""Helper of the tests that hold a faster training path to the plain one: the same tiny batch
(clips of different lengths, so the padding masks act) trained a few steps."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn

from ser_jax.models import CNNLSTM


def normal(rng: np.random.Generator, shape: tuple[int, ...]) -> jax.Array:
    """Standard normal test inputs drawn by numpy: a multi-axis ``jax.random.normal`` compiles
    for about a second per shape on a 2-core CPU, for data any values would do."""
    return jnp.asarray(rng.standard_normal(shape), jnp.float32)


FEATS = normal(np.random.default_rng(3), (4, 24, 16))
FRAMES = jnp.array([24, 17, 9, 24])
LABELS = jnp.array([0, 1, 2, 3])


def tiny_network(**fields: Any) -> CNNLSTM:
    """A two-block CNN-LSTM (4 and 8 filters, ELU, LSTM 8) with ``fields`` changed."""
    return CNNLSTM(
        **{
            "num_classes": 4,
            "filters": (4, 8),
            "pools": ((2, 2), (2, 2)),
            "activation": "elu",
            "lstm_hidden": 8,
            **fields,
        }
    )


def train_steps(model: nn.Module, tx: optax.GradientTransformation, steps: int = 5) -> dict:
    """``model`` initialised with key 0 and trained ``steps`` steps on the batch: its initial
    ``variables``, their ``logits`` in scoring, the first step's ``grads``, every step's
    ``losses`` and the final ``params``."""
    variables = model.init(jax.random.PRNGKey(0), FEATS, FRAMES)
    params, stats = variables["params"], variables["batch_stats"]
    opt = tx.init(params)

    def loss_fn(p: Any, s: Any):
        logits, upd = model.apply(
            {"params": p, "batch_stats": s}, FEATS, FRAMES, train=True, mutable=["batch_stats"]
        )
        return optax.softmax_cross_entropy_with_integer_labels(logits, LABELS).mean(), upd

    grad_fn = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    first_grads, losses = None, []
    for _ in range(steps):
        (loss, upd), grads = grad_fn(params, stats)
        first_grads = grads if first_grads is None else first_grads
        updates, opt = tx.update(grads, opt)
        params, stats = optax.apply_updates(params, updates), upd["batch_stats"]
        losses.append(float(loss))
    logits = model.apply(variables, FEATS, FRAMES)
    return {
        "variables": variables,
        "logits": logits,
        "grads": first_grads,
        "losses": losses,
        "params": params,
    }
