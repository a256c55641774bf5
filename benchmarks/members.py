"""Many models at once: N members in one compiled step vs N models one after another (JAX and
PyTorch eager), in one run.

    python benchmarks/members.py [--members 1,2,4,8] [--batch 32] [--seconds 2.0]
        [--steps 6] [--warmup 2] [--no-torch] [--torch-threads N] [--json PATH]

Every row trains the same network on the same batch: the Zhao-style CNN-LSTM of
``benchmarks/train_step.py`` (4 x conv 3x3-BN-ELU-pool, 64-64-128-128 filters, pools
(2,2),(2,2),(4,4),(4,4), LSTM 256), ``--batch`` clips of ``--seconds`` s at 16 kHz, the whole
step: waveform → log-mel → network → Adam. Rows:

- ``JAX, one model``: ``ser_jax.training.steps.train_step``, jit, one model (what ``ser-jax train`` runs
  one seed at a time); N models one after another take N of these steps;
- ``JAX, N members, 1 device``: ``ser_jax.training.steps.members_train_step`` (the stacked state, batch
  ``(N, batch, samples)``, a learning rate and seed per model; on the CPU the models' ops are
  unrolled one after another in the step, ``--loop vmap`` batches them into grouped ops);
- ``JAX, N members, N devices``: the same with the members axis split over N virtual CPU devices
  (``--xla_force_host_platform_device_count``, ``jax.shard_map``), as ``ser_jax.training.train`` runs it;
- ``PyTorch eager, one model``: the same network and front-end in PyTorch
  (``torch.set_num_threads`` = usable CPUs); N models one after another.

samples/s counts every model's samples (N x batch per members step). Each row is its own worker
process; the driver interleaves single steps of all rows round-robin, so load from other users
of the machine hits every row alike, and reports medians.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_step as base  # noqa: E402  (the network, the batch, workers and the torch row)


def jax_members_worker(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    import functools

    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    from ser_jax import parallel
    from ser_jax.frontend.augment import AugmentConfig
    from ser_jax.frontend.logmel import FrontendConfig
    from ser_jax.models import CNNLSTM
    from ser_jax.training.steps import create_train_state, members_train_step, train_step

    n = args.n
    audio, lengths, labels = base.make_audio(args.batch, args.seconds)
    frontend = FrontendConfig(sample_rate=base.SAMPLE_RATE, n_mels=base.N_MELS)
    model = CNNLSTM(
        num_classes=base.CLASSES,
        filters=base.FILTERS,
        pools=base.POOLS,
        activation="elu",
        lstm_hidden=base.LSTM,
    )
    statics = dict(frontend=frontend, augment=AugmentConfig(), offline=False, label_smoothing=0.0)
    batch = {
        "audio": audio,
        "length": lengths,
        "label": labels,
        "weight": np.ones(args.batch, np.float32),
    }
    if n == 0:  # one model, the unstacked step
        mesh = parallel.make_mesh(1)
        tx = optax.adam(1e-3)
        state = create_train_state(model, tx, 0, base.N_MELS)
        state_sh = parallel.state_sharding(mesh, state)
        repl, batch_sh = parallel.replicated(mesh), parallel.batch_sharding(mesh)
        step = jax.jit(
            functools.partial(train_step, seed=0, **statics),
            in_shardings=(state_sh, batch_sh, repl),
            out_shardings=(state_sh, repl),
            donate_argnums=0,
        )
        args_ = (parallel.to_global(batch, batch_sh), jax.device_put(jnp.ones(7), repl))
    else:
        mesh = parallel.make_mesh(n)
        tx = optax.inject_hyperparams(optax.adam)(learning_rate=0.0)
        states = [create_train_state(model, tx, k, base.N_MELS) for k in range(n)]
        state = jax.tree.map(lambda *xs: jnp.stack(xs), *states)
        state_sh = parallel.state_sharding(mesh, state, stacked=True)
        msh = parallel.member_sharding(mesh)
        stacked = {k: np.stack([v] * n) for k, v in batch.items()}
        loop = args.loop if args.loop != "auto" else "unroll"  # the CPU choice of ser_jax
        fn = functools.partial(members_train_step, loop=loop, **statics)
        step = jax.jit(
            parallel.per_member(fn, mesh, n_args=6, n_out=2),
            in_shardings=(state_sh, parallel.batch_sharding(mesh, True), msh, msh, msh, msh),
            out_shardings=(state_sh, msh),
            donate_argnums=0,
        )
        args_ = (
            parallel.to_global(stacked, parallel.batch_sharding(mesh, True)),
            jax.device_put(np.ones((n, 7), np.float32), msh),
            jax.device_put(np.arange(n, dtype=np.int32), msh),
            jax.device_put(np.full(n, 1e-3, np.float32), msh),
            jax.device_put(np.ones(n, bool), msh),
        )
    holder = [jax.device_put(state, state_sh)]

    def run() -> None:
        holder[0], m = step(holder[0], *args_)
        jax.block_until_ready(m["loss"])

    devices = jax.devices()
    info = {
        "framework": f"jax {jax.__version__}",
        "device_count": len(devices),
        "device_kind": devices[0].device_kind,
        "mesh": dict(mesh.shape),
    }
    return {"full": run}, info


def serve(args: argparse.Namespace) -> None:
    out = sys.stdout
    sys.stdout = sys.stderr
    if args.worker == "torch":
        steps, info = base.torch_worker(args)
        steps = {"full": steps["full"]}
    else:
        steps, info = jax_members_worker(args)
    t0 = time.perf_counter()
    steps["full"]()
    out.write(json.dumps({"ready": True, "info": info, "first_call_s": time.perf_counter() - t0}))
    out.write("\n")
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
        import subprocess

        self.label, self.n = label, n
        env = dict(os.environ)
        flags = [
            f
            for f in env.get("XLA_FLAGS", "").split()
            if not f.startswith("--xla_force_host_platform_device_count")
        ]
        env["XLA_FLAGS"] = " ".join([*flags, f"--xla_force_host_platform_device_count={devices}"])
        env["JAX_PLATFORMS"] = env.get("JAX_PLATFORMS", "cpu") if kind == "jax" else "cpu"
        argv = [sys.executable, __file__, "--worker", kind, "--n", str(n)]
        argv += ["--batch", str(args.batch), "--seconds", str(args.seconds)]
        argv += ["--torch-threads", str(args.torch_threads), "--loop", args.loop]
        self.proc = subprocess.Popen(
            argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        self.ready = None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--members", default="1,2,4,8", help="member counts to time")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--steps", type=int, default=6, help="timed rounds (median)")
    p.add_argument("--warmup", type=int, default=2, help="untimed rounds after compilation")
    p.add_argument("--no-devices", action="store_true", help="skip the N-device rows")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch row")
    p.add_argument("--torch-threads", type=int, default=0)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--worker", choices=("jax", "torch"), help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument(
        "--loop", default="auto", choices=("auto", "vmap", "unroll"), help="members loop"
    )
    args = p.parse_args(argv)
    if args.worker:
        serve(args)
        return 0
    counts = [int(x) for x in args.members.split(",")]
    load_before = base.load()
    rows: list[dict[str, Any]] = []
    ready: dict[str, Any] = {}
    # One group per member count, each measured against its own one-model references in the
    # same interleaved rounds; groups run one after another (all at once would not fit in
    # memory: a worker holds its compiled step and N models' activations).
    for n in counts:
        specs = [("JAX, one model", "jax", 0, 1)]
        if not args.no_torch:
            specs.append(("PyTorch eager, one model", "torch", 0, 1))
        specs.append((f"JAX, {n} members, 1 device", "jax", n, 1))
        if n > 1 and not args.no_devices:
            specs.append((f"JAX, {n} members, {n} devices", "jax", n, n))
        workers: list[Worker] = []
        try:
            for label, kind, k, devices in specs:
                w = Worker(label, kind, args, k, devices)
                workers.append(w)
                w.wait_ready()
            times: dict[str, list[float]] = {w.label: [] for w in workers}
            for r in range(args.warmup + args.steps):
                for w in workers:
                    t = w.step("full")
                    if r >= args.warmup:
                        times[w.label].append(t)
        finally:
            for w in workers:
                w.close()
        med = {k: statistics.median(v) for k, v in times.items()}
        seq_jax = args.batch / med["JAX, one model"]
        seq_torch = args.batch / med["PyTorch eager, one model"] if not args.no_torch else None
        for w in workers:
            ready[f"N={n}: {w.label}"] = w.ready
            if w.n == 0 and rows and n != counts[0]:
                continue  # the references: reported once per group below
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
    info = {
        "device": base.cpu_description(),
        "python": platform.python_version(),
        "batch": args.batch,
        "clip_seconds": args.seconds,
        "steps": args.steps,
        "warmup": args.warmup,
        "load_average_before": load_before,
        "load_average_after": base.load(),
        "workers": ready,
    }
    print(f"device: {info['device']}")
    print(
        f"batch {args.batch} x {args.seconds:g} s per model, waveform → log-mel → network → Adam; "
        f"median of {args.steps} interleaved steps after {args.warmup} warm-up; load average "
        f"{load_before} → {info['load_average_after']}"
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
    if args.json:
        args.json.write_text(json.dumps({"info": info, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
