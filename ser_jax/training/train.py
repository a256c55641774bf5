"""Training's public entry: ``train_and_evaluate(config, workdir)`` for one model,
``train_members`` for several trained at once in one compiled step. Both hand on each model's
``results.json`` record: a finished run's as it is (re-scored beside its test when the command
asks for evaluations it lacks: ``ser_jax.training.rescore``); otherwise each model is built
(``ser_jax.training.trainer``), fitted (``ser_jax.training.loop``), then tested once
(``ser_jax.training.results``).

The names other modules import from here (the trainer, the loop, the results and their
helpers) are re-exported from those modules.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax

from ser_jax.data.prepare import PreparedData
from ser_jax.rundir import RunDir, run_info
from ser_jax.spec import check_settings
from ser_jax.training.checkpoint import Checkpointer
from ser_jax.training.loop import Fitted, LoopState, NonFiniteLossError, fit
from ser_jax.training.rescore import REPRODUCE_TOLERANCE, finished_results, score_beside
from ser_jax.training.results import results_record, select_and_test
from ser_jax.training.trainer import (
    Member,
    Trainer,
    build_trainer,
    check_members,
    members_loop,
)

__all__ = [
    "REPRODUCE_TOLERANCE",
    "Fitted",
    "LoopState",
    "Member",
    "NonFiniteLossError",
    "Trainer",
    "build_trainer",
    "check_members",
    "fit",
    "members_loop",
    "results_record",
    "score_beside",
    "select_and_test",
    "train_and_evaluate",
    "train_members",
]


def train_and_evaluate(
    config: Any, workdir: str | Path, *, data: PreparedData | None = None
) -> dict[str, Any]:
    """Train one model (resuming from the newest checkpoint in ``workdir``), select on
    validation, evaluate the selected model once on the test split, write its reports.

    A finished run (``results.json`` present) is not trained or tested again: its results are
    returned as they are, with the evaluations beside the test that ``config`` asks for and
    it lacks scored from its saved model (``ser_jax.training.rescore``).
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
    for config in configs:  # values that cannot train: refused before any folder or lock
        check_settings(config)
    runs = [RunDir(w) for w in workdirs]
    datas = list(datas) if datas is not None else [None] * len(configs)
    main = jax.process_index() == 0
    results = finished_results(configs, datas, runs)
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
