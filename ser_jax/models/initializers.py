"""The networks' kernel initialiser: flax's default (LeCun normal, a truncated normal of
variance 1 / fan-in), drawn as one flat vector and reshaped to the kernel's shape.

The values are bit-identical to ``jax.nn.initializers.lecun_normal()``: threefry's counters
run over the row-major flat index either way. What changes is the compiled init: XLA's CPU
backend compiles the draw of a rank-3 or rank-4 kernel about 4x slower than that of a vector
(the counters of a multi-dimensional draw are built from one iota per axis). Measured on a
2-core Xeon, the tiny test network's jitted init compiles in 1.8 s instead of 5.0 s; every
``train`` start and every new configuration in the tests pays that once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# The standard deviation of a standard normal truncated to (-2, 2), as jax writes it.
TRUNCATED_STD = 0.87962566103423978


def lecun_normal(in_axis: int = -2, out_axis: int = -1) -> Any:
    """``jax.nn.initializers.lecun_normal(in_axis, out_axis)`` for float kernels of rank ≥ 2,
    drawing flat (same values, see the module's docstring)."""

    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        shape = tuple(int(d) for d in shape)
        if len(shape) < 2:
            raise ValueError(f"lecun_normal needs a kernel of rank 2 or more, got shape {shape}")
        if not np.issubdtype(np.dtype(dtype), np.floating):
            raise ValueError(f"lecun_normal draws float kernels, got dtype {dtype}")
        in_size, out_size = shape[in_axis], shape[out_axis]
        fan_in = in_size * (math.prod(shape) / in_size / out_size)  # jax's _compute_fans
        variance = jnp.array(1.0 / fan_in, dtype=dtype)
        stddev = jnp.sqrt(variance) / jnp.array(TRUNCATED_STD, dtype)
        flat = jax.random.truncated_normal(key, -2, 2, (math.prod(shape),), dtype)
        return flat.reshape(shape) * stddev

    return init


# What every kernel of the networks here is drawn with (flax's default, drawn flat).
KERNEL_INIT = lecun_normal()
