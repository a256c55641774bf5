"""The training loop: :func:`fit` trains a :class:`~ser_jax.training.trainer.Trainer`'s models
until every one is done and hands on a :class:`Fitted`: the final state, each model's best
variables and its :class:`LoopState` (history, selected step, early stopping).

Resume from the newest readable checkpoint, step, log, and at each model's epoch end:
validate, keep the best variables, checkpoint, stop early. A model's epoch is its own training
set's ``len // batch_size`` steps (models of different folds may differ); the job runs until
the last model is done, the finished ones idle (their updates are masked). A non-finite loss
or update stops the job (:class:`NonFiniteLossError`) before any later checkpoint is written.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from ser_jax.data.pipeline import prefetch
from ser_jax.errors import ConfigError, SerJaxError
from ser_jax.rundir import MetricWriter, RunDir
from ser_jax.training.checkpoint import Checkpointer
from ser_jax.training.steps import ModelVariables, TrainState
from ser_jax.training.trainer import Member, Trainer


class NonFiniteLossError(SerJaxError):
    """Training diverged (NaN or infinite loss or parameters); names the step."""


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
    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, leave=True)
