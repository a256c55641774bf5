"""Many models at once: N members in one compiled step vs N models one after another (JAX and
PyTorch eager), in one run.

    python benchmarks/members.py [--members 1,2,4,8] [--batch 32] [--seconds 2.0]
        [--steps 6] [--warmup 2] [--filters 64,64,128,128] [--lstm 256] [--no-devices]
        [--no-torch] [--torch-threads N] [--loop auto|vmap|unroll] [--json PATH]

    python benchmarks/members.py --tiny   (a smoke run: --members 2 --no-devices, and
        train_step.py's tiny sizes; flags given as well win)

Every row trains the same network on the same batch: the Zhao-style CNN-LSTM of
``benchmarks/train_step.py`` (4 x conv 3x3-BN-ELU-pool, 64-64-128-128 filters, pools
(2,2),(2,2),(4,4),(4,4), LSTM 256; ``--filters`` / ``--lstm`` change the sizes), ``--batch``
clips of ``--seconds`` s at 16 kHz, the whole step: waveform → log-mel → network → Adam. Rows:

- ``JAX, one model``: ``ser_jax.training.steps.train_step``, jit, one model (what
  ``ser-jax train`` runs one seed at a time); N models one after another take N of these steps;
- ``JAX, N members, 1 device``: ``ser_jax.training.steps.members_train_step`` (the stacked
  state, batch ``(N, batch, samples)``, a learning rate and seed per model; on the CPU the
  models' ops are unrolled one after another in the step, ``--loop vmap`` batches them into
  grouped ops);
- ``JAX, N members, N devices``: the same with the members axis split over N virtual CPU
  devices (``--xla_force_host_platform_device_count``, ``jax.shard_map``), as
  ``ser_jax.training.train`` runs it;
- ``PyTorch eager, one model``: the same network and front-end in PyTorch
  (``torch.set_num_threads`` = usable CPUs); N models one after another. PyTorch is optional
  (``pip install -e ".[torch]"``): without it the row is skipped and the output says so.

The members start from copies of one initialisation (the step's cost does not depend on the
values). samples/s counts every model's samples (N x batch per members step). Each row is its
own worker process; the driver interleaves single steps of all rows round-robin, so load from
other users of the machine hits every row alike, and reports medians.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_step as base  # noqa: E402  (the network, the batch, workers and the torch row)

from ser_jax import parallel  # noqa: E402
from ser_jax.frontend.augment import AugmentConfig  # noqa: E402
from ser_jax.frontend.logmel import FrontendConfig  # noqa: E402
from ser_jax.training.steps import (  # noqa: E402
    create_train_state,
    members_train_step,
    train_step,
)

ONE_JAX = "JAX, one model"
ONE_TORCH = "PyTorch eager, one model"


def one_model_step(args: argparse.Namespace, statics: dict[str, Any]) -> tuple[Any, Any, tuple]:
    """The unstacked ``steps.train_step``, jit: ``(step, state, its other arguments)``."""
    mesh = parallel.make_mesh(1)
    state = create_train_state(base.make_model(args), optax.adam(1e-3), 0, base.N_MELS)
    state_sh = parallel.state_sharding(mesh, state)
    repl, batch_sh = parallel.replicated(mesh), parallel.batch_sharding(mesh)
    step = jax.jit(
        functools.partial(train_step, seed=0, **statics),
        in_shardings=(state_sh, batch_sh, repl),
        out_shardings=(state_sh, repl),
        donate_argnums=0,
    )
    batch = parallel.to_global(base.full_batch(args), batch_sh)
    classes = jax.device_put(base.unit_class_terms(), repl)
    return step, jax.device_put(state, state_sh), (batch, classes)


def members_step(
    args: argparse.Namespace, statics: dict[str, Any], n: int
) -> tuple[Any, Any, tuple]:
    """``steps.members_train_step`` over ``n`` stacked models, the members axis over the
    devices: ``(step, state, its other arguments)``."""
    mesh = parallel.make_mesh(n)
    tx = optax.inject_hyperparams(optax.adam)(learning_rate=0.0)
    one = create_train_state(base.make_model(args), tx, 0, base.N_MELS)
    state = jax.tree.map(lambda x: np.stack([np.asarray(x)] * n), one)
    state_sh = parallel.state_sharding(mesh, state, stacked=True)
    msh = parallel.member_sharding(mesh)
    stacked_sh = parallel.batch_sharding(mesh, True)
    loop = args.loop if args.loop != "auto" else "unroll"  # the CPU choice of ser_jax
    fn = functools.partial(members_train_step, loop=loop, **statics)
    step = jax.jit(
        parallel.per_member(fn, mesh, n_args=6, n_out=2),
        in_shardings=(state_sh, stacked_sh, msh, msh, msh, msh),
        out_shardings=(state_sh, msh),
        donate_argnums=0,
    )
    batch = {k: np.stack([v] * n) for k, v in base.full_batch(args).items()}
    rest = (
        parallel.to_global(batch, stacked_sh),
        jax.device_put(base.unit_class_terms((n,)), msh),
        jax.device_put(np.arange(n, dtype=np.int32), msh),
        jax.device_put(np.full(n, 1e-3, np.float32), msh),
        jax.device_put(np.ones(n, bool), msh),
    )
    return step, jax.device_put(state, state_sh), rest


def jax_members_worker(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    frontend = FrontendConfig(sample_rate=base.SAMPLE_RATE, n_mels=base.N_MELS)
    statics = dict(frontend=frontend, augment=AugmentConfig(), offline=False, label_smoothing=0.0)
    if args.n == 0:  # one model, the unstacked step
        step, state, rest = one_model_step(args, statics)
    else:
        step, state, rest = members_step(args, statics, args.n)
    holder = [state]

    def run() -> None:
        holder[0], m = step(holder[0], *rest)
        jax.block_until_ready(m["loss"])

    info = base.jax_info()
    info["mesh"] = {"members": args.n or 1, "devices": info["device_count"]}
    return {"full": run}, info


def serve(args: argparse.Namespace) -> None:
    """Worker loop: the first call (compilation), then one JSON line per request line."""
    if args.worker == "torch":
        base.serve(args)
        return
    out = sys.stdout
    sys.stdout = sys.stderr  # library chatter must not reach the protocol stream
    steps, info = jax_members_worker(args)
    t0 = time.perf_counter()
    steps["full"]()
    first = {"full": time.perf_counter() - t0}
    out.write(json.dumps({"ready": True, "info": info, "first_call_s": first}) + "\n")
    out.flush()
    for line in sys.stdin:
        if not line.strip():
            break
        t0 = time.perf_counter()
        steps["full"]()
        out.write(json.dumps({"seconds": time.perf_counter() - t0}) + "\n")
        out.flush()


class Worker(base.Worker):
    def __init__(self, label: str, kind: str, args: argparse.Namespace, n: int, devices: int):
        self.n = n
        argv = base.worker_argv(__file__, kind, args) + ["--n", str(n), "--loop", args.loop]
        platforms = os.environ.get("JAX_PLATFORMS", "cpu") if kind == "jax" else "cpu"
        super().__init__(label, argv, devices, platforms)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--members", type=base.int_list, default=[1, 2, 4, 8], help="counts to time")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--steps", type=int, default=6, help="timed rounds (median)")
    p.add_argument("--warmup", type=int, default=2, help="untimed rounds after compilation")
    p.add_argument("--filters", type=base.int_list, default=list(base.FILTERS), help="4 convs")
    p.add_argument("--lstm", type=int, default=base.LSTM, help="LSTM hidden size")
    p.add_argument("--network", choices=sorted(base.NETWORKS), default="zhao", help="the pools")
    p.add_argument(
        "--conv_grad", choices=("auto", "matmul", "xla"), default="auto", help="model.conv_grad"
    )
    p.add_argument(
        "--first_block", choices=base.FIRST_BLOCKS, default="auto", help="model.first_block"
    )
    p.add_argument("--no-devices", action="store_true", help="skip the N-device rows")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch row")
    p.add_argument("--torch-threads", type=int, default=0)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument(
        "--loop", default="auto", choices=("auto", "vmap", "unroll"), help="members loop"
    )
    p.add_argument("--tiny", action="store_true", help="a smoke run's sizes (seconds)")
    p.add_argument("--worker", choices=("jax", "torch"), help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    tiny = {k: v for k, v in base.TINY.items() if k != "devices"}
    return base.parse_tiny(p, argv, {**tiny, "members": [2], "no_devices": True})


def measure_group(
    args: argparse.Namespace, n: int, with_torch: bool
) -> tuple[list[Worker], dict[str, float]]:
    """One group: the N-member rows and their one-model references, timed in the same
    interleaved rounds; the medians by row label."""
    specs = [(ONE_JAX, "jax", 0, 1)]
    if with_torch:
        specs.append((ONE_TORCH, "torch", 0, 1))
    specs.append((f"JAX, {n} members, 1 device", "jax", n, 1))
    if n > 1 and not args.no_devices:
        specs.append((f"JAX, {n} members, {n} devices", "jax", n, n))
    workers: list[Worker] = []
    try:
        for label, kind, k, devices in specs:  # one at a time: compilation would skew others
            w = Worker(label, kind, args, k, devices)
            workers.append(w)
            w.wait_ready()
        times = base.interleave(workers, ("full",), args.warmup, args.steps)
    finally:
        for w in workers:
            w.close()
    return workers, {label: statistics.median(v) for (label, _), v in times.items()}


def group_rows(
    args: argparse.Namespace, n: int, workers: list[Worker], med: dict[str, float], first: bool
) -> list[dict[str, Any]]:
    """The group's rows (its one-model references only in the first group)."""
    seq_jax = args.batch / med[ONE_JAX]
    seq_torch = args.batch / med[ONE_TORCH] if ONE_TORCH in med else None
    rows = []
    for w in workers:
        if w.n == 0 and not first:
            continue
        models = max(w.n, 1)
        sps = models * args.batch / med[w.label]
        rows.append(
            {
                "group": n,
                "row": w.label,
                "models": models,
                "step_ms": 1e3 * med[w.label],
                "samples_per_s": sps,
                "vs_sequential_jax": sps / seq_jax,
                "vs_sequential_torch": sps / seq_torch if seq_torch else None,
                "reference_jax_samples_per_s": seq_jax,
                "reference_torch_samples_per_s": seq_torch,
            }
        )
    return rows


def print_table(args: argparse.Namespace, info: dict[str, Any], rows: list[dict]) -> None:
    print(f"device: {info['device']}")
    if info["torch_skipped"]:
        print(info["torch_skipped"])
    print(
        f"batch {args.batch} x {args.seconds:g} s per model, waveform → log-mel → network → Adam "
        f"({args.network} network: filters {tuple(args.filters)}, LSTM {args.lstm}, conv kernel "
        f"gradient {base.resolve_conv_grad(args.conv_grad)}, first block "
        f"{base.first_block(args)}); median of {args.steps} interleaved "
        f"steps after {args.warmup} warm-up; load average {info['load_average_before']} → "
        f"{info['load_average_after']}"
    )
    print(
        "vs JAX seq / vs torch: samples/s over N one-model steps of JAX / PyTorch, measured in "
        "the same interleaved rounds as the row"
    )
    width = max(len(r["row"]) for r in rows)
    print(
        f"{'row':<{width}}  {'ms/step':>8}  {'samples/s':>9}  {'vs JAX seq':>10}  {'vs torch':>8}"
    )
    for r in rows:
        vt = f"{r['vs_sequential_torch']:.2f}x" if r["vs_sequential_torch"] else "-"
        print(
            f"{r['row']:<{width}}  {r['step_ms']:8.0f}  {r['samples_per_s']:9.1f}  "
            f"{r['vs_sequential_jax']:9.2f}x  {vt:>8}"
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        serve(args)
        return 0
    skipped = "PyTorch reference skipped: --no-torch" if args.no_torch else None
    if not args.no_torch and not base.torch_available():
        skipped = base.TORCH_MISSING
    load_before = base.load()
    rows: list[dict[str, Any]] = []
    ready: dict[str, Any] = {}
    # One group per member count, each measured against its own one-model references in the
    # same interleaved rounds; groups run one after another (all at once would not fit in
    # memory: a worker holds its compiled step and N models' activations).
    for i, n in enumerate(args.members):
        workers, med = measure_group(args, n, with_torch=skipped is None)
        ready.update({f"N={n}: {w.label}": w.ready for w in workers})
        rows += group_rows(args, n, workers, med, first=i == 0)
    info = {
        "device": base.cpu_description(),
        "python": platform.python_version(),
        "batch": args.batch,
        "clip_seconds": args.seconds,
        "filters": list(args.filters),
        "network": args.network,
        "conv_grad": base.resolve_conv_grad(args.conv_grad),
        "first_block": base.first_block(args),
        "lstm": args.lstm,
        "steps": args.steps,
        "warmup": args.warmup,
        "torch_skipped": skipped,
        "load_average_before": load_before,
        "load_average_after": base.load(),
        "workers": ready,
    }
    print_table(args, info, rows)
    if args.json:
        base.write_json(args.json, {"info": info, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
