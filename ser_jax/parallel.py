"""Devices, mesh and sharding: one code path for one CPU, every GPU of a machine, or a cluster.

A 1-D ``jax.sharding.Mesh`` with axis ``"data"`` spans every device of every process. The global
batch is sharded over it; parameters and optimizer state are replicated (``state_sharding`` is the
one place to change for FSDP-style sharding of a large model later). Each process feeds only its
own rows (``jax.make_array_from_process_local_data``).

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


def make_mesh(devices: list | None = None) -> Mesh:
    """A 1-D data-parallel mesh over all (global) devices."""
    devices = devices if devices is not None else jax.devices()
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def state_sharding(mesh: Mesh, state: Any) -> Any:
    """Sharding for the train state: replicated everywhere (the seam for FSDP later)."""
    return jax.tree.map(lambda _: replicated(mesh), state)


def check_batch_divides(batch_size: int, mesh: Mesh) -> None:
    if batch_size % mesh.size:
        raise ConfigError(
            f"train.batch_size={batch_size} does not divide by the {mesh.size} devices of the "
            f"mesh: use a multiple of {mesh.size}"
        )


def to_global(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """This process's rows → one global array per field, sharded along the batch axis."""
    sharding = batch_sharding(mesh)
    return {
        k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()
    }


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
