"""Devices, mesh and sharding: one code path for one CPU, every GPU of a machine, or a cluster.

A 2-D ``jax.sharding.Mesh`` with axes ``("members", "data")`` spans every device of every
process. One model: the members axis has size 1, the global batch is sharded over ``data``, and
parameters and optimizer state are replicated (``state_sharding`` is the one place to change for
FSDP-style sharding of a large model later). Several models trained at once (``train.members``):
their stacked state and batches ``(members, batch, ...)`` are split over ``members`` (as many
devices as divide both the device count and the number of models) and each model's batch over
``data``. Every process builds the same global batch and hands its own devices their slices
(``to_global``).

Multi-host: ``initialize_distributed`` calls ``jax.distributed.initialize`` when asked to by the
environment (SLURM is detected by JAX itself) or by explicit coordinator flags/variables.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ser_jax.errors import ConfigError

MEMBERS_AXIS = "members"
DATA_AXIS = "data"


def initialize_distributed(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> bool:
    """Start JAX's distributed runtime if this is a multi-process job; returns True if it did.

    Explicit arguments win; else ``SER_COORDINATOR`` / ``SER_NUM_PROCESSES`` / ``SER_PROCESS_ID``;
    else, under SLURM with more than one task, JAX's own cluster detection.
    """
    coordinator = coordinator or os.environ.get("SER_COORDINATOR") or None
    if num_processes is None and os.environ.get("SER_NUM_PROCESSES"):
        num_processes = int(os.environ["SER_NUM_PROCESSES"])
    if process_id is None and os.environ.get("SER_PROCESS_ID"):
        process_id = int(os.environ["SER_PROCESS_ID"])
    if coordinator:
        if num_processes is None or process_id is None:
            raise ConfigError(
                "a coordinator address was given without the process count and process id "
                "(--num_processes/--process_id or SER_NUM_PROCESSES/SER_PROCESS_ID)"
            )
        if _cpu_requested():
            # CPU processes need a collectives backend to talk to each other.
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator, num_processes, process_id)
        return True
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        jax.distributed.initialize()
        return True
    return False


def _cpu_requested() -> bool:
    return os.environ.get("JAX_PLATFORMS", "").strip().lower() == "cpu"


def members_axis_size(members: int, devices: int) -> int:
    """Devices along the members axis: the largest divisor of ``devices`` that divides
    ``members`` (8 models on 8 GPUs: one each; 3 models on 8 GPUs: all on every GPU)."""
    return max(d for d in range(1, devices + 1) if devices % d == 0 and members % d == 0)


def make_mesh(members: int = 1, devices: list | None = None) -> Mesh:
    """A ``(members, data)`` mesh over all (global) devices."""
    devices = list(devices if devices is not None else jax.devices())
    m = members_axis_size(members, len(devices))
    return Mesh(np.asarray(devices).reshape(m, len(devices) // m), (MEMBERS_AXIS, DATA_AXIS))


def batch_sharding(mesh: Mesh, stacked: bool = False) -> NamedSharding:
    """Rows over ``data``; with ``stacked`` a leading members axis over ``members``."""
    spec = PartitionSpec(MEMBERS_AXIS, DATA_AXIS) if stacked else PartitionSpec(DATA_AXIS)
    return NamedSharding(mesh, spec)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def member_sharding(mesh: Mesh) -> NamedSharding:
    """A leading members axis over ``members``, the rest replicated."""
    return NamedSharding(mesh, PartitionSpec(MEMBERS_AXIS))


def state_sharding(mesh: Mesh, state: Any, stacked: bool = False) -> Any:
    """Sharding for a train state: replicated (the seam for FSDP later), or split by member."""
    sharding = member_sharding(mesh) if stacked else replicated(mesh)
    return jax.tree.map(lambda _: sharding, state)


def per_member(fn: Any, mesh: Mesh, *, n_args: int, n_out: int) -> Any:
    """``fn`` over stacked models, run by each device on its own models only.

    With the members axis over several devices, ``jax.shard_map`` gives each device its block
    of models (the data axis stays automatic inside): the partitioner never sees the models'
    stacked convolutions, and each device's program is that of its own models alone.
    """
    if mesh.shape[MEMBERS_AXIS] == 1:
        return fn
    spec = PartitionSpec(MEMBERS_AXIS)
    return jax.shard_map(
        fn,
        mesh=mesh,
        in_specs=(spec,) * n_args,
        out_specs=(spec,) * n_out,
        axis_names={MEMBERS_AXIS},
        check_vma=False,
    )


def check_batch_divides(batch_size: int, mesh: Mesh) -> None:
    data = mesh.shape[DATA_AXIS]
    if batch_size % data:
        raise ConfigError(
            f"train.batch_size={batch_size} does not divide by the {data} devices of the "
            f"mesh's data axis: use a multiple of {data}"
        )


def to_replicated(tree: Any, mesh: Mesh) -> Any:
    """A host pytree (the same on every process) → arrays replicated over ``mesh``."""
    repl = replicated(mesh)
    return jax.tree.map(
        lambda x: jax.make_array_from_callback(
            np.shape(x), repl, lambda idx, x=x: np.asarray(x)[idx]
        ),
        tree,
    )


def to_global(batch: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
    """The global batch (the same on every process) → arrays laid out by ``sharding``; each
    process copies only the slices of the devices it drives."""
    out = {}
    for k, v in batch.items():
        v = np.asarray(v)
        out[k] = jax.make_array_from_callback(v.shape, sharding, lambda idx, v=v: v[idx])
    return out


def device_summary() -> dict[str, Any]:
    devices = jax.devices()
    return {
        "backend": jax.default_backend(),
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
        "device_count": jax.device_count(),
        "local_device_count": jax.local_device_count(),
        "device_kind": devices[0].device_kind if devices else "",
        "host_cpus": os.cpu_count(),
    }
