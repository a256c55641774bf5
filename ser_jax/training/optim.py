"""Optimisers and learning-rate schedules, each registered by name (``train.optimizer``,
``train.schedule``); ``make_optimizer`` chains clipping, weight decay and the optimiser.

A new schedule is one decorated function ``(train_cfg, steps_per_epoch) -> optax.Schedule``;
a new optimiser one ``(train_cfg, schedule) -> list of optax transformations``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from ser_jax.errors import ConfigError

ScheduleFactory = Callable[[Any, int], optax.Schedule]
OptimizerFactory = Callable[[Any, optax.Schedule], list[optax.GradientTransformation]]
SCHEDULES: dict[str, ScheduleFactory] = {}
OPTIMIZERS: dict[str, OptimizerFactory] = {}


def register_schedule(name: str) -> Callable[[ScheduleFactory], ScheduleFactory]:
    def decorate(fn: ScheduleFactory) -> ScheduleFactory:
        SCHEDULES[name] = fn
        return fn

    return decorate


def register_optimizer(name: str) -> Callable[[OptimizerFactory], OptimizerFactory]:
    def decorate(fn: OptimizerFactory) -> OptimizerFactory:
        OPTIMIZERS[name] = fn
        return fn

    return decorate


@register_schedule("constant")
def _constant(tcfg: Any, steps_per_epoch: int) -> optax.Schedule:
    return optax.constant_schedule(float(tcfg.learning_rate))


@register_schedule("piecewise")
def _piecewise(tcfg: Any, steps_per_epoch: int) -> optax.Schedule:
    """MATLAB's LearnRateSchedule="piecewise": x drop_factor every drop_period epochs."""
    period = max(1, int(round(float(tcfg.drop_period) * steps_per_epoch)))
    return optax.exponential_decay(
        float(tcfg.learning_rate),
        transition_steps=period,
        decay_rate=float(tcfg.drop_factor),
        staircase=True,
    )


@register_schedule("cosine")
def _cosine(tcfg: Any, steps_per_epoch: int) -> optax.Schedule:
    """Linear warm-up, then cosine decay to 1% of the peak at the last step."""
    lr = float(tcfg.learning_rate)
    total = max(1, int(tcfg.epochs) * steps_per_epoch)
    warmup = int(round(float(tcfg.warmup_epochs) * steps_per_epoch))
    return optax.warmup_cosine_decay_schedule(
        0.0 if warmup else lr, lr, warmup, max(total, warmup + 1), end_value=lr * 0.01
    )


def _kernel_mask(params: Any) -> Any:
    """Decay conv/dense/LSTM kernels only, not biases or BatchNorm scales."""
    return jax.tree.map(lambda p: p.ndim > 1, params)


@register_optimizer("adam")
def _adam(tcfg: Any, schedule: optax.Schedule) -> list[optax.GradientTransformation]:
    return [*_l2(tcfg), optax.adam(schedule)]


@register_optimizer("sgd")
def _sgd(tcfg: Any, schedule: optax.Schedule) -> list[optax.GradientTransformation]:
    return [*_l2(tcfg), optax.sgd(schedule, momentum=0.9)]


@register_optimizer("adamw")
def _adamw(tcfg: Any, schedule: optax.Schedule) -> list[optax.GradientTransformation]:
    return [optax.adamw(schedule, weight_decay=float(tcfg.weight_decay), mask=_kernel_mask)]


def _l2(tcfg: Any) -> list[optax.GradientTransformation]:
    """L2 regularisation added to the gradient (MATLAB's L2Regularization), if set."""
    wd = float(tcfg.weight_decay)
    return [optax.add_decayed_weights(wd, mask=_kernel_mask)] if wd > 0 else []


def make_schedule(tcfg: Any, steps_per_epoch: int) -> optax.Schedule:
    kind = str(tcfg.schedule)
    if kind not in SCHEDULES:
        raise ConfigError(f"train.schedule={kind!r}; choose one of {sorted(SCHEDULES)}")
    return SCHEDULES[kind](tcfg, steps_per_epoch)


def make_optimizer(
    tcfg: Any, steps_per_epoch: int, *, injected_lr: bool = False
) -> optax.GradientTransformation:
    """The configured optimiser. With ``injected_lr`` the learning rate is not computed from
    the step inside optax but read from the optimiser state, where ``set_learning_rate`` puts
    it before each update: models trained together (``train.members``) then follow each their
    own schedule (their epochs may differ in steps) inside one compiled step."""
    name = str(tcfg.optimizer)
    if name not in OPTIMIZERS:
        raise ConfigError(f"train.optimizer={name!r}; choose one of {sorted(OPTIMIZERS)}")
    make_schedule(tcfg, steps_per_epoch)  # checks train.schedule

    def chain(learning_rate: Any) -> optax.GradientTransformation:
        parts = []
        if float(tcfg.grad_clip) > 0:
            parts.append(optax.clip_by_global_norm(float(tcfg.grad_clip)))
        parts += OPTIMIZERS[name](tcfg, learning_rate)
        return optax.chain(*parts)

    if injected_lr:
        return optax.inject_hyperparams(chain)(learning_rate=0.0)
    return chain(make_schedule(tcfg, steps_per_epoch))


def set_learning_rate(opt_state: Any, lr: Any) -> Any:
    """An ``injected_lr`` optimiser state with its learning rate replaced by ``lr``."""
    hyper = dict(opt_state.hyperparams)
    hyper["learning_rate"] = jnp.asarray(lr, hyper["learning_rate"].dtype)
    return opt_state._replace(hyperparams=hyper)
