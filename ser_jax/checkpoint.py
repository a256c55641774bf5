"""Orbax checkpoints: save every N steps and at the end, keep the last K and the best, resume.

A checkpoint holds the whole train state (params, optimizer state, BatchNorm statistics, step)
and a small JSON ``meta`` item (epoch, best validation score so far, history). The RNG and the
data order are pure functions of ``(seed, step)`` (see ``ser_jax.data.pipeline``), so the step is
all the input-pipeline state there is: a resumed run sees exactly the batches and augmentation
draws the uninterrupted run would have seen.

Orbax writes each checkpoint to a temporary folder and renames it when complete, so a killed job
never leaves a half-written checkpoint as the latest one. Every process must call ``save`` and
``restore`` (orbax coordinates them); only process 0 writes the files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as cm


class Checkpointer:
    """A ``CheckpointManager`` keeping the latest ``keep`` checkpoints plus the best by a metric."""

    def __init__(
        self,
        directory: str | Path,
        *,
        keep: int = 2,
        best_metric: str | None = "val_uar",
        asynchronous: bool = True,
    ):
        policies: list[Any] = [cm.LatestN(n=max(1, keep))]
        if best_metric:
            policies.append(
                cm.BestN(
                    get_metric_fn=lambda metrics: metrics[best_metric],
                    reverse=False,
                    n=1,
                    keep_checkpoints_without_metrics=False,
                )
            )
        options = ocp.CheckpointManagerOptions(
            preservation_policy=cm.AnyPreservationPolicy(policies),
            enable_async_checkpointing=asynchronous,
            create=True,
        )
        self.directory = Path(directory).absolute()
        self.manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "meta")
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def save(
        self,
        step: int,
        state: Any,
        meta: dict[str, Any],
        metrics: dict[str, float] | None = None,
        *,
        force: bool = False,
    ) -> bool:
        # The save is asynchronous: snapshot ``meta`` now, so the caller may keep mutating it.
        snapshot = json.loads(json.dumps(meta))
        return self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(snapshot)
            ),
            metrics=metrics,
            force=force,
        )

    def restore(self, step: int, like: Any) -> tuple[Any, dict[str, Any]]:
        """Restore ``step`` into arrays shaped (and sharded) like ``like``."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        restored = self.manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
            ),
        )
        return restored.state, dict(restored.meta)

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
