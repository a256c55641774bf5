"""Train-step throughput: ser_jax (jit) on 1 and N CPU devices vs PyTorch eager, in one run.

    python benchmarks/train_step.py [--batch 32] [--seconds 2.0] [--steps 12] [--warmup 3]
        [--devices 8] [--filters 64,64,128,128] [--lstm 256] [--no-torch]
        [--torch-threads N] [--json PATH]

    python benchmarks/train_step.py --tiny   (a smoke run: --batch 2 --seconds 1 --steps 1
        --warmup 0 --devices 1 --filters 4,4,8,8 --lstm 8; flags given as well win)

One network for every row, Zhao-style: 4 x (Conv 3x3 → BatchNorm → ELU → max-pool) with
64-64-128-128 filters (``--filters``) and pools (2,2),(2,2),(4,4),(4,4) over (time, mel),
LSTM 256 (``--lstm``) on the last valid step, 7 classes; Adam 1e-3; one batch of ``--batch``
clips of ``--seconds`` s at 16 kHz (2 s → 201 frames x 64 mels; at least 0.64 s, which the
time pools shrink to one step). Rows:

- ``jax net``: ``ser_jax.models.CNNLSTM`` + optax Adam on precomputed log-mel
  ``(batch, 201, 64)``, one ``jax.jit`` step with the state donated;
- ``jax full``: ``ser_jax.training.steps.train_step`` itself: waveform → log-mel → network → Adam;
- the same two on ``--devices`` virtual CPU devices (``--xla_force_host_platform_device_count``,
  batch sharded, state replicated, as ``ser_jax.training.train`` does on a mesh);
- ``torch net``: the same network in PyTorch eager (Conv2d + BatchNorm2d + ELU + MaxPool2d x 4,
  ``nn.LSTM(batch_first=True)``, last valid step, Linear) + ``torch.optim.Adam``,
  ``torch.set_num_threads`` = the CPUs this process may use;
- ``torch full``: the same with a log-mel front-end in the step (``torch.stft``, librosa's mel
  filterbank, log, per-utterance normalisation: the same stages as ser_jax's, not bit-parity).

PyTorch is optional (``pip install -e ".[torch]"``): without it, or with ``--no-torch``, the
PyTorch rows are skipped and the output says so.

Each row lives in its own worker process (JAX's device count is fixed at import, and no
framework's idle threads then compete with another's), and the driver interleaves single steps
of all rows round-robin, so that load from other users of the machine hits every row alike. The
table shows the median over ``--steps`` rounds after ``--warmup`` rounds; "vs 1 dev" is
samples/s over the one-device JAX row of the same kind (net or full), "vs torch" over the
PyTorch row of the same kind.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jax
import librosa
import numpy as np
import optax

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ser_jax import parallel  # noqa: E402
from ser_jax.frontend.augment import AugmentConfig  # noqa: E402
from ser_jax.frontend.logmel import FrontendConfig, log_mel  # noqa: E402
from ser_jax.models import CNNLSTM  # noqa: E402
from ser_jax.models.cnn_lstm import FIRST_BLOCKS, resolve_conv_grad  # noqa: E402
from ser_jax.rundir import git_state, processor_name  # noqa: E402
from ser_jax.training.steps import class_terms, create_train_state, train_step  # noqa: E402

FILTERS = (64, 64, 128, 128)
POOLS = ((2, 2), (2, 2), (4, 4), (4, 4))
# --network: Zhao et al.'s pools (3 LSTM steps on 2 s), or experiments/configs/best.py's (time
# pooled 16x: 12 steps); both pool the 64 mel bands to one
NETWORKS = {"zhao": POOLS, "best": ((2, 2), (2, 2), (2, 4), (2, 4))}
GEMM_SIZE = 2048  # the float32 GEMM whose FLOP/s is the roofline
LSTM = 256
CLASSES = 7
SAMPLE_RATE = 16000
N_MELS = 64
TINY = dict(batch=2, seconds=1.0, steps=1, warmup=0, devices=1, filters=[4, 4, 8, 8], lstm=8)
TORCH_MISSING = 'PyTorch reference skipped: torch is not installed (pip install -e ".[torch]")'


def made_by() -> dict[str, Any]:
    """Where a report comes from: the command, the commit (and a dirty tree), the processor."""
    commit, dirty = git_state()
    argv = [Path(sys.argv[0]).resolve().relative_to(ROOT).as_posix(), *sys.argv[1:]]
    return {
        "command": "python " + shlex.join(argv),
        "git_commit": commit,
        "git_dirty": dirty,
        "processor": processor_name(),
    }


def write_json(path: Path, report: dict[str, Any]) -> None:
    """``report`` with :func:`made_by` as ``made_by``, to ``path`` (its folder made)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**report, "made_by": made_by()}, indent=2) + "\n")


def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def make_audio(batch: int, seconds: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A speech-like batch (harmonic tone with a syllable envelope + noise), all full length."""
    rng = np.random.default_rng(0)
    n = int(round(seconds * SAMPLE_RATE))
    t = np.arange(n) / SAMPLE_RATE
    audio = np.zeros((batch, n), np.float32)
    for i in range(batch):
        f0 = 110 + 80 * rng.random() + 30 * np.sin(2 * np.pi * 1.3 * t)
        phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
        y = sum(np.sin(k * phase) / k for k in range(1, 12)) * np.abs(np.sin(2 * np.pi * 2 * t))
        audio[i] = 0.1 * y + 0.005 * rng.standard_normal(n)
    lengths = np.full((batch,), n, np.int32)
    labels = rng.integers(0, CLASSES, batch).astype(np.int32)
    return audio, lengths, labels


def make_model(args: argparse.Namespace) -> CNNLSTM:
    """The benchmark's network at the sizes of ``--filters`` and ``--lstm``, the pools of
    ``--network``, the kernel gradient of ``--conv_grad`` and the first block's training pass
    of ``--first_block`` (auto: what training uses here)."""
    return CNNLSTM(
        num_classes=CLASSES,
        filters=tuple(args.filters),
        pools=NETWORKS[args.network],
        activation="elu",
        lstm_hidden=args.lstm,
        conv_grad=resolve_conv_grad(args.conv_grad),
        first_block=args.first_block,
    )


def first_block(args: argparse.Namespace) -> str:
    """The first block's training pass the benchmark's network runs (``--first_block``
    resolved by the network itself, over the one log-mel channel)."""
    return "fused" if make_model(args).first_block_fused(1) else "plain"


def gemm_gflops(repeats: int = 5) -> float:
    """The best float32 GEMM FLOP/s of ``GEMM_SIZE``-square matrices under jit, in GFLOP/s."""
    a = jax.device_put(np.ones((GEMM_SIZE, GEMM_SIZE), np.float32), jax.devices()[0])
    dot = jax.jit(lambda x, y: x @ y)
    dot(a, a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        dot(a, a).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2 * GEMM_SIZE**3 / best / 1e9


def step_flops(compiled: Any) -> float:
    """FLOPs of one call of a compiled step, as XLA counts them (its cost analysis)."""
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost.get("flops", 0.0))


def full_batch(args: argparse.Namespace) -> dict[str, np.ndarray]:
    """The waveform batch ``steps.train_step`` reads."""
    audio, lengths, labels = make_audio(args.batch, args.seconds)
    weight = np.ones(args.batch, np.float32)
    return {"audio": audio, "length": lengths, "label": labels, "weight": weight}


def unit_class_terms(shape: tuple[int, ...] = ()) -> dict[str, np.ndarray]:
    """``steps.class_terms`` of an unweighted loss without logit shift (``shape``: a leading
    members axis, if any)."""
    return class_terms(
        np.ones((*shape, CLASSES), np.float32), np.zeros((*shape, CLASSES), np.float32)
    )


# ----------------------------------------------------------------------------------------------
# Workers: build the steps, then run one step per request line on stdin.
# ----------------------------------------------------------------------------------------------


def net_step(state: Any, batch: dict[str, Any]) -> tuple[Any, jax.Array]:
    """Network + Adam on precomputed log-mel (no front-end, no augmentation)."""

    def loss_fn(params):
        logits, updates = state.apply_fn(
            {"params": params, "batch_stats": state.batch_stats},
            batch["feats"],
            batch["frames"],
            train=True,
            mutable=["batch_stats"],
        )
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
        return loss, updates

    (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    return state.apply_gradients(grads=grads, batch_stats=updates["batch_stats"]), loss


def jax_worker(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    frontend = FrontendConfig(sample_rate=SAMPLE_RATE, n_mels=N_MELS)
    model = make_model(args)
    mesh = parallel.make_mesh()
    parallel.check_batch_divides(args.batch, mesh)
    repl, batch_sh = parallel.replicated(mesh), parallel.batch_sharding(mesh)
    batch = full_batch(args)
    feats, frames = jax.jit(log_mel, static_argnums=2)(batch["audio"], batch["length"], frontend)
    tx = optax.adam(1e-3)  # one object: the state's static metadata must match the shardings'

    # One init (steps.init_variables compiles it afresh at every call), then a copy per row:
    # each row donates its own state.
    first = create_train_state(model, tx, 0, N_MELS)
    state_sh = parallel.state_sharding(mesh, first)

    def new_state() -> Any:
        return jax.device_put(jax.tree.map(np.copy, first), state_sh)

    net = jax.jit(
        net_step,
        in_shardings=(state_sh, batch_sh),
        out_shardings=(state_sh, repl),
        donate_argnums=0,
    )
    statics = dict(frontend=frontend, augment=AugmentConfig(), offline=False, label_smoothing=0.0)
    full = jax.jit(
        functools.partial(train_step, seed=0, **statics),
        in_shardings=(state_sh, batch_sh, repl),
        out_shardings=(state_sh, repl),
        donate_argnums=0,
    )
    net_batch = jax.device_put(
        {"feats": np.asarray(feats), "frames": np.asarray(frames), "label": batch["label"]},
        batch_sh,
    )
    batch = jax.device_put(batch, batch_sh)
    classes = jax.device_put(unit_class_terms(), repl)
    holders = {"net": new_state(), "full": new_state()}
    net = net.lower(holders["net"], net_batch).compile()  # one compilation: run and counted

    def run_net() -> None:
        holders["net"], loss = net(holders["net"], net_batch)
        loss.block_until_ready()

    def run_full() -> None:
        holders["full"], m = full(holders["full"], batch, classes)
        m["loss"].block_until_ready()

    info = jax_info()
    if len(jax.devices()) == 1:  # the roofline: the step's FLOPs and this CPU's GEMM rate
        info["net_gflop_per_sample"] = step_flops(net) / args.batch / 1e9
        info["gemm_gflops"] = gemm_gflops()
    return {"net": run_net, "full": run_full}, info


def jax_info() -> dict[str, Any]:
    devices = jax.devices()
    return {
        "framework": f"jax {jax.__version__} (jaxlib {jax.lib.__version__})",
        "backend": jax.default_backend(),
        "device_count": len(devices),
        "device_kind": devices[0].device_kind,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def torch_net(args: argparse.Namespace) -> Any:
    """The benchmark's network in PyTorch (a fresh, seeded instance)."""
    import torch  # optional: the PyTorch extra
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers: list[nn.Module] = []
            cin = 1
            for f, p in zip(args.filters, NETWORKS[args.network], strict=True):
                layers += [
                    nn.Conv2d(cin, f, 3, padding=1, bias=False),
                    nn.BatchNorm2d(f, eps=1e-5, momentum=0.1),
                    nn.ELU(),
                    nn.MaxPool2d(p),
                ]
                cin = f
            self.cnn = nn.Sequential(*layers)
            self.lstm = nn.LSTM(args.filters[-1] * (N_MELS // 64), args.lstm, batch_first=True)
            self.head = nn.Linear(args.lstm, CLASSES)

        def forward(self, feats: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
            h = self.cnn(feats[:, None])  # (batch, channels, time, mel)
            b, c, t, f = h.shape
            out, _ = self.lstm(h.permute(0, 2, 1, 3).reshape(b, t, c * f))
            steps = frames
            for pt, _ in NETWORKS[args.network]:
                steps = steps // pt
            last = (steps - 1).clamp(0, t - 1)
            return self.head(out[torch.arange(b), last])

    return Net()


def torch_log_mel() -> Any:
    """A log-mel front-end in torch: the same stages as ser_jax's (not bit-parity)."""
    import torch  # optional: the PyTorch extra

    window = torch.hann_window(400, periodic=True)
    mel_fb = torch.tensor(librosa.filters.mel(sr=SAMPLE_RATE, n_fft=512, n_mels=N_MELS))

    def log_mel_torch(audio: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(
            audio, 512, 160, 400, window, center=True, pad_mode="constant", return_complex=True
        )
        power = spec.real.square() + spec.imag.square()  # (batch, freq, frames)
        feats = torch.log(torch.clamp(mel_fb @ power, min=1e-6)).transpose(1, 2)
        mean = feats.mean(dim=1, keepdim=True)
        var = feats.var(dim=1, unbiased=False, keepdim=True)
        return (feats - mean) * torch.rsqrt(var + 1e-5)

    return log_mel_torch


def torch_worker(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    import torch  # optional: the PyTorch extra
    from torch import nn

    threads = args.torch_threads or (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    )
    torch.set_num_threads(int(threads or 1))
    torch.manual_seed(0)
    audio_np, lengths_np, labels_np = make_audio(args.batch, args.seconds)
    log_mel_torch = torch_log_mel()
    audio = torch.from_numpy(audio_np)
    frames = torch.from_numpy(1 + lengths_np // 160).long()
    labels = torch.from_numpy(labels_np).long()
    with torch.no_grad():
        feats = log_mel_torch(audio)
    assert feats.shape[1] == 1 + audio.shape[1] // 160

    def make(front: bool):
        net = torch_net(args)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            x = log_mel_torch(audio) if front else feats
            loss = nn.functional.cross_entropy(net(x, frames), labels)
            loss.backward()
            opt.step()

        return step

    steps = {"net": make(False), "full": make(True)}
    info = {
        "framework": f"torch {torch.__version__}",
        "backend": "cpu",
        "device_count": 1,
        "device_kind": "cpu",
        "threads": torch.get_num_threads(),
    }
    return steps, info


def serve(args: argparse.Namespace) -> None:
    """Worker loop: one JSON line out per request line in (the step name → its seconds)."""
    out = sys.stdout
    sys.stdout = sys.stderr  # library chatter must not reach the protocol stream
    steps, info = jax_worker(args) if args.worker == "jax" else torch_worker(args)
    first = {}
    for name, fn in steps.items():
        t0 = time.perf_counter()
        fn()
        first[name] = time.perf_counter() - t0
    out.write(json.dumps({"ready": True, "info": info, "first_call_s": first}) + "\n")
    out.flush()
    for line in sys.stdin:
        name = line.strip()
        if not name:
            break
        t0 = time.perf_counter()
        steps[name]()
        out.write(json.dumps({"seconds": time.perf_counter() - t0}) + "\n")
        out.flush()


# ----------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------


def worker_argv(script: str, kind: str, args: argparse.Namespace) -> list[str]:
    """The command line of a worker process: the sizes of ``args``, run as ``kind``."""
    argv = [sys.executable, script, "--worker", kind]
    argv += ["--batch", str(args.batch), "--seconds", str(args.seconds)]
    argv += ["--filters", ",".join(map(str, args.filters)), "--lstm", str(args.lstm)]
    argv += ["--network", args.network, "--conv_grad", args.conv_grad]
    argv += ["--first_block", args.first_block]
    return argv + ["--torch-threads", str(args.torch_threads)]


class Worker:
    """A worker process, driven one step at a time over its stdin / stdout."""

    def __init__(self, label: str, argv: list[str], devices: int = 1, platforms: str = "cpu"):
        self.label = label
        env = dict(os.environ)
        flags = [
            f
            for f in env.get("XLA_FLAGS", "").split()
            if not f.startswith("--xla_force_host_platform_device_count")
        ]
        env["XLA_FLAGS"] = " ".join([*flags, f"--xla_force_host_platform_device_count={devices}"])
        env["JAX_PLATFORMS"] = platforms
        self.proc = subprocess.Popen(
            argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        self.ready: dict[str, Any] | None = None

    def wait_ready(self) -> dict[str, Any]:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.label} exited with {self.proc.wait()} before ready")
        self.ready = json.loads(line)
        return self.ready

    def step(self, name: str) -> float:
        self.proc.stdin.write(name + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.label} exited with {self.proc.wait()}")
        return float(json.loads(line)["seconds"])

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


def interleave(
    workers: list[Worker], names: tuple[str, ...], warmup: int, steps: int
) -> dict[tuple[str, str], list[float]]:
    """Round-robin single steps over every (worker, step name); the timed rounds' seconds."""
    rows = [(w, name) for w in workers for name in names]
    times: dict[tuple[str, str], list[float]] = {(w.label, n): [] for w, n in rows}
    for r in range(warmup + steps):
        for w, name in rows:
            t = w.step(name)
            if r >= warmup:
                times[(w.label, name)].append(t)
    return times


def cpu_description() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}, {usable} CPUs usable ({os.cpu_count()} online)"


def load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--steps", type=int, default=12, help="timed rounds (median)")
    p.add_argument("--warmup", type=int, default=3, help="untimed rounds after compilation")
    p.add_argument("--devices", type=int, default=8, help="virtual CPU devices for the mesh rows")
    p.add_argument("--filters", type=int_list, default=list(FILTERS), help="conv filters, 4")
    p.add_argument("--lstm", type=int, default=LSTM, help="LSTM hidden size")
    p.add_argument("--network", choices=sorted(NETWORKS), default="zhao", help="the pools")
    p.add_argument(
        "--conv_grad",
        choices=("auto", "matmul", "xla"),
        default="auto",
        help="the conv kernel gradient (model.conv_grad; auto: what training uses here)",
    )
    p.add_argument(
        "--first_block",
        choices=FIRST_BLOCKS,
        default="auto",
        help="the first block's training pass (model.first_block; auto: what training uses here)",
    )
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch rows")
    p.add_argument(
        "--torch-threads", type=int, default=0, help="torch.set_num_threads (0: usable CPUs)"
    )
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--tiny", action="store_true", help="a smoke run's sizes (seconds)")
    p.add_argument("--worker", choices=("jax", "torch"), help=argparse.SUPPRESS)
    return parse_tiny(p, argv, TINY)


def parse_tiny(p: argparse.ArgumentParser, argv: list[str] | None, tiny: dict) -> Any:
    """``p``'s arguments; with ``--tiny`` the defaults are ``tiny``'s (flags given still win)."""
    args = p.parse_args(argv)
    if args.tiny:
        p.set_defaults(**tiny)
        args = p.parse_args(argv)
    return args


def measure(args: argparse.Namespace, with_torch: bool) -> tuple[list[Worker], dict]:
    """Start the workers one at a time (compilation would skew the others), then time them."""
    specs = [("jax, 1 device", "jax", 1)]
    if args.devices > 1:
        specs.append((f"jax, {args.devices} devices", "jax", args.devices))
    if with_torch:
        specs.append(("torch eager", "torch", 1))
    workers: list[Worker] = []
    try:
        for label, kind, devices in specs:
            w = Worker(label, worker_argv(__file__, kind, args), devices)
            workers.append(w)
            w.wait_ready()
        times = interleave(workers, ("net", "full"), args.warmup, args.steps)
    finally:
        for w in workers:
            w.close()
    return workers, times


def result_rows(args: argparse.Namespace, times: dict, with_torch: bool) -> list[dict[str, Any]]:
    med = {k: statistics.median(v) for k, v in times.items()}
    results = []
    for (label, name), m in med.items():
        ref = med.get(("torch eager", name)) if with_torch else None
        results.append(
            {
                "row": f"{label}: {'network + Adam' if name == 'net' else 'log-mel + network + Adam'}",
                "worker": label,
                "step": name,
                "median_ms": 1e3 * m,
                "min_ms": 1e3 * min(times[(label, name)]),
                "samples_per_s": args.batch / m,
                "vs_one_device": med[("jax, 1 device", name)] / m,
                "vs_torch": (ref / m) if ref else None,
            }
        )
    return results


def roofline(workers: list[Worker], rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The JAX network rows' achieved FLOP/s as a share of the GEMM FLOP/s measured in the
    same run (the FLOPs per sample: XLA's count of the one-device step)."""
    one = next((w.ready["info"] for w in workers if w.label == "jax, 1 device"), {})
    if "gemm_gflops" not in one:
        return None
    shares = {}
    for r in rows:
        if r["worker"].startswith("jax") and r["step"] == "net":
            achieved = one["net_gflop_per_sample"] * r["samples_per_s"]
            shares[r["worker"]] = {"gflops": achieved, "share": achieved / one["gemm_gflops"]}
    return {
        "gemm_gflops": one["gemm_gflops"],
        "gflop_per_sample": one["net_gflop_per_sample"],
        "rows": shares,
    }


def print_roofline(roof: dict[str, Any] | None) -> None:
    if roof is None:
        return
    parts = [
        f"{k} {v['gflops']:.0f} GFLOP/s = {100 * v['share']:.0f}%" for k, v in roof["rows"].items()
    ]
    print(
        f"roofline: float32 GEMM {GEMM_SIZE}^3 {roof['gemm_gflops']:.0f} GFLOP/s in this run; the "
        f"network step {roof['gflop_per_sample']:.2f} GFLOP a sample (XLA's count); network + "
        f"Adam: {'; '.join(parts)} of the GEMM rate"
    )


def print_table(args: argparse.Namespace, info: dict, workers: list[Worker], rows: list) -> None:
    print(f"device: {info['device']}")
    for w in workers:
        i = w.ready["info"]
        extra = f", {i['threads']} threads" if "threads" in i else ""
        print(f"  {w.label}: {i['framework']}, {i['device_count']} x {i['device_kind']}{extra}")
    if info["torch_skipped"]:
        print(info["torch_skipped"])
    print(
        f"batch {args.batch} x {args.seconds:g} s at 16 kHz → ({args.batch}, {info['frames']}, "
        f"{N_MELS}) log-mel; {args.network} network: filters {tuple(args.filters)}, pools "
        f"{NETWORKS[args.network]}, LSTM {args.lstm}, conv kernel gradient "
        f"{resolve_conv_grad(args.conv_grad)}, first block {first_block(args)}; median of "
        f"{args.steps} interleaved steps after {args.warmup} warm-up; "
        f"load average {info['load_average_before']} → {info['load_average_after']}"
    )
    width = max(len(r["row"]) for r in rows)
    print(
        f"{'row':<{width}}  {'samples/s':>9}  {'ms/step':>8}  {'min ms':>8}  {'vs 1 dev':>8}  "
        f"{'vs torch':>8}"
    )
    for r in rows:
        ratio = f"{r['vs_torch']:.2f}x" if r["vs_torch"] else "-"
        print(
            f"{r['row']:<{width}}  {r['samples_per_s']:9.1f}  {r['median_ms']:8.1f}  "
            f"{r['min_ms']:8.1f}  {r['vs_one_device']:7.2f}x  {ratio:>8}"
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        serve(args)
        return 0
    skipped = "PyTorch reference skipped: --no-torch" if args.no_torch else None
    if not args.no_torch and not torch_available():
        skipped = TORCH_MISSING
    load_before = load()
    workers, times = measure(args, with_torch=skipped is None)
    rows = result_rows(args, times, with_torch=skipped is None)
    info = {
        "device": cpu_description(),
        "python": platform.python_version(),
        "batch": args.batch,
        "clip_seconds": args.seconds,
        "frames": 1 + int(round(args.seconds * SAMPLE_RATE)) // 160,
        "n_mels": N_MELS,
        "filters": list(args.filters),
        "network": args.network,
        "pools": [list(p) for p in NETWORKS[args.network]],
        "conv_grad": resolve_conv_grad(args.conv_grad),
        "first_block": first_block(args),
        "lstm": args.lstm,
        "steps": args.steps,
        "warmup": args.warmup,
        "torch_skipped": skipped,
        "load_average_before": load_before,
        "load_average_after": load(),
        "workers": {w.label: w.ready for w in workers},
    }
    roof = roofline(workers, rows)
    print_table(args, info, workers, rows)
    print_roofline(roof)
    if args.json:
        write_json(args.json, {"info": info, "rows": rows, "roofline": roof})
    return 0


if __name__ == "__main__":
    sys.exit(main())
