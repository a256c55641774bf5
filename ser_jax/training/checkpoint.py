"""Orbax checkpoints: save at every epoch end (and every N steps), keep the latest K, resume.

A checkpoint holds the whole train state (params, optimizer state, BatchNorm and feature
statistics, step; stacked over the members axis when several models train at once), the model
variables each model scored best with on validation so far (``best``), and a small JSON ``meta``
item (each model's loop state: history, best step and score, early-stopping count, the sums of
a partial epoch). The RNG and the data order are pure functions of ``(seed, step)`` (see
``ser_jax.data.pipeline``), so the step is all the input-pipeline state there is: a resumed run
sees exactly the batches and augmentation draws the uninterrupted run would have seen.

Orbax writes each checkpoint to a temporary folder and renames it when complete, so a killed job
never leaves a half-written checkpoint as the latest one. A checkpoint that is complete but
unreadable (damaged files) is moved aside to ``<dir>.unreadable/`` with the reason printed, and
the run resumes from the newest one that restores. A save that fails (a full disk) stops with
one line: the step, the folder, the cause, and the step a rerun will resume from. Every process
calls ``save`` and ``restore`` (orbax coordinates them); only process 0 writes the files.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as cm

from ser_jax.errors import SerJaxError

log = logging.getLogger(__name__)


class CheckpointError(SerJaxError):
    """A checkpoint could not be written or read; names the step, the folder and the cause."""


def root_cause(err: BaseException) -> str:
    """The innermost error of a chain (orbax wraps OS errors several levels deep), one line."""
    seen = set()
    best = err
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.strerror:
            return err.strerror + (f": {err.filename}" if err.filename else "")
        best = err
        err = err.__cause__ or err.__context__
    text = str(best).strip().splitlines()
    line = (text[0] if text else "").split(" [tensorstore_spec")[0]  # drop the spec dump
    if len(line) > 300:
        line = line[:300] + " ..."
    return f"{type(best).__name__}: {line}".strip()


class Checkpointer:
    """A ``CheckpointManager`` keeping the latest ``keep`` checkpoints."""

    def __init__(self, directory: str | Path, *, keep: int = 2, asynchronous: bool = True):
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(
            preservation_policy=cm.LatestN(n=max(1, keep)),
            enable_async_checkpointing=asynchronous,
            create=True,
        )
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=options,
            item_handlers={
                "state": ocp.PyTreeCheckpointHandler(),
                "best": ocp.PyTreeCheckpointHandler(),
                "meta": ocp.JsonCheckpointHandler(),
            },
        )
        self._pending: int | None = None  # the step of an asynchronous save in flight
        self._failed = False  # a save failed: orbax's leftovers must not bury our message
        # A failure surfaces here only at the next save or wait; its aftermath in orbax's
        # threads starts at once, so the filters are in place from the start.
        _install_log_filters()
        _quiet_orbax_aftermath()

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(self, step: int, state: Any, best: Any, meta: dict[str, Any]) -> None:
        """Save (asynchronously) ``state``, ``best`` (or None) and a JSON snapshot of ``meta``."""
        self.wait()  # a failed earlier save surfaces here, named, before a new one starts
        items = {
            "state": ocp.args.PyTreeSave(state),
            # Snapshot now: the caller keeps mutating ``meta`` while the save runs.
            "meta": ocp.args.JsonSave(json.loads(json.dumps(meta))),
        }
        if best is not None:
            items["best"] = ocp.args.PyTreeSave(best)
        try:
            self.manager.save(step, args=ocp.args.Composite(**items), force=True)
        except Exception as err:  # orbax raises many types; re-raised as one named error
            raise self._save_error(step, err) from err
        self._pending = step

    def wait(self) -> None:
        if self._pending is None:
            return
        step, self._pending = self._pending, None
        try:
            self.manager.wait_until_finished()
        except Exception as err:
            raise self._save_error(step, err) from err

    def _save_error(self, step: int, err: BaseException) -> CheckpointError:
        self._failed = True
        _quiet_orbax_aftermath()
        complete = [s for s in self.all_steps() if s != step]
        resume = f"step {complete[-1]}" if complete else "the start (no complete checkpoint)"
        return CheckpointError(
            f"could not save the checkpoint of step {step} in {self.directory}: "
            f"{root_cause(err)}. Nothing earlier is lost: after fixing the cause, the same "
            f"command resumes from {resume}."
        )

    def restore(self, step: int, like_state: Any, like_best: Any) -> tuple[Any, Any, dict]:
        """Restore ``step`` into arrays shaped (and sharded) like the ``like_*`` trees."""
        items = {"state": _restore_args(like_state), "meta": ocp.args.JsonRestore()}
        if like_best is not None:
            items["best"] = _restore_args(like_best)
        restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        best = restored.best if like_best is not None else None
        return restored.state, best, dict(restored.meta)

    def restore_latest(self, like_state: Any, like_best: Any) -> tuple[int, Any, Any, dict] | None:
        """The newest checkpoint that restores, as ``(step, state, best, meta)``, or None.

        A checkpoint that fails to restore is moved to ``<dir>.unreadable/`` (never deleted)
        with a one-line note naming the step and the cause, and the next older one is tried.
        """
        for step in reversed(self.all_steps()):
            try:
                state, best, meta = self.restore(step, like_state, like_best)
            except Exception as err:  # damaged files: tensorstore, json, orbax metadata errors
                _quiet_orbax_aftermath()
                self._set_aside(step, root_cause(err))
                continue
            return step, state, best, meta
        return None

    def _set_aside(self, step: int, cause: str) -> None:
        aside = self.directory.with_name(self.directory.name + ".unreadable")
        target = aside / f"{step}-{time.strftime('%Y%m%d-%H%M%S')}"
        if jax.process_index() == 0:
            aside.mkdir(parents=True, exist_ok=True)
            shutil.move(str(self.directory / str(step)), str(target))
        print(
            f"checkpoint step {step} in {self.directory} is unreadable ({cause}); "
            f"moved it to {target} and trying the next older one",
            file=sys.stderr,
        )
        self.manager.reload()

    def restore_variables(self, step: int, names: tuple[str, ...]) -> dict[str, Any]:
        """Only the named fields of the saved train state (e.g. params, batch_stats), as
        numpy arrays: no optimiser or model is needed to read them."""
        tree = self.manager.item_metadata(step)["state"]
        tree = getattr(tree, "tree", tree)
        like = {k: tree[k] for k in names if k in tree}
        restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), like)
        restored = self.manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.PyTreeRestore(
                    item=like, restore_args=restore_args, partial_restore=True
                )
            ),
        )
        return dict(restored.state)

    def close(self) -> None:
        try:
            self.wait()
        finally:
            try:
                self.manager.close()
            except Exception:
                if not self._failed:  # else: the same failure, already raised as one line
                    raise
            if self._failed:
                gc.collect()  # tear orbax's abandoned coroutines down now, quietly


class _OrbaxAftermath(logging.Filter):
    """Drops the log records that repeat a checkpoint failure ``Checkpointer`` reports itself,
    in one line, as an exception: orbax's own ERROR records (logged from its background
    threads, with tracebacks, before the failure reaches the caller) and asyncio's "Task
    exception was never retrieved" for the reads or writes orbax abandoned. ``SER_JAX_DEBUG=1``
    keeps them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if os.environ.get("SER_JAX_DEBUG", "") not in ("", "0"):
            return True
        if record.levelno >= logging.ERROR and "/orbax/" in record.pathname:
            return False
        text = record.getMessage()
        return not (text.startswith("Task exception was never retrieved") and "orbax" in text)


def _install_log_filters() -> None:
    for name in ("absl", "asyncio"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _OrbaxAftermath) for f in logger.filters):
            logger.addFilter(_OrbaxAftermath())


def _quiet_orbax_aftermath() -> None:
    """After a failed save or restore (and only then), orbax's abandoned coroutines and
    tensorstore callbacks still run: callbacks find its event loop closed ("Event loop is closed") and coroutines are
    torn down half-way (at garbage collection or interpreter exit). Python reports each as an
    unraisable exception with a traceback; drop exactly those, report every other one."""
    previous = sys.unraisablehook
    if getattr(previous, "_ser_jax", False):
        return

    def hook(unraisable: Any) -> None:
        err, obj = unraisable.exc_value, unraisable.object
        code = getattr(obj, "cr_code", None)
        if os.environ.get("SER_JAX_DEBUG", "") not in ("", "0"):
            previous(unraisable)
        elif isinstance(err, RuntimeError) and str(err) == "Event loop is closed":
            return
        if code is not None and "/orbax/" in code.co_filename:
            return
        previous(unraisable)

    hook._ser_jax = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


def _restore_args(like: Any) -> ocp.args.PyTreeRestore:
    """Restore into arrays with the shapes, dtypes and shardings of ``like``."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    return ocp.args.PyTreeRestore(
        item=abstract, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract)
    )
