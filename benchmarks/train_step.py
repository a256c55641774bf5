"""Train-step throughput: ser_jax (jit) on 1 and N CPU devices vs PyTorch eager, in one run.

    python benchmarks/train_step.py [--batch 32] [--seconds 2.0] [--steps 12] [--warmup 3]
        [--devices 8] [--torch-threads N] [--json PATH]

One network for every row, Zhao-style: 4 x (Conv 3x3 → BatchNorm → ELU → max-pool) with
64-64-128-128 filters and pools (2,2),(2,2),(4,4),(4,4) over (time, mel), LSTM 256 on the last
valid step, 7 classes; Adam 1e-3; one batch of ``--batch`` clips of ``--seconds`` s at 16 kHz
(2 s → 201 frames x 64 mels). Rows:

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

Each row lives in its own worker process (JAX's device count is fixed at import, and no
framework's idle threads then compete with another's), and the driver interleaves single steps
of all rows round-robin, so that load from other users of the machine hits every row alike. The
table shows the median over ``--steps`` rounds after ``--warmup`` rounds; "vs torch" is samples/s
over the PyTorch row of the same kind (net or full).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

FILTERS = (64, 64, 128, 128)
POOLS = ((2, 2), (2, 2), (4, 4), (4, 4))
LSTM = 256
CLASSES = 7
SAMPLE_RATE = 16000
N_MELS = 64


def make_audio(batch: int, seconds: float) -> tuple[Any, Any, Any]:
    """A speech-like batch (harmonic tone with a syllable envelope + noise), all full length."""
    import numpy as np

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


# ----------------------------------------------------------------------------------------------
# Workers: build the steps, then run one step per request line on stdin.
# ----------------------------------------------------------------------------------------------


def jax_worker(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    import functools

    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    sys.path.insert(0, str(ROOT))
    from ser_jax import parallel
    from ser_jax.frontend.augment import AugmentConfig
    from ser_jax.frontend.logmel import FrontendConfig, log_mel
    from ser_jax.models import CNNLSTM
    from ser_jax.training.steps import class_terms, create_train_state, train_step

    audio_np, lengths_np, labels_np = make_audio(args.batch, args.seconds)
    frontend = FrontendConfig(sample_rate=SAMPLE_RATE, n_mels=N_MELS)
    model = CNNLSTM(
        num_classes=CLASSES, filters=FILTERS, pools=POOLS, activation="elu", lstm_hidden=LSTM
    )
    mesh = parallel.make_mesh()
    parallel.check_batch_divides(args.batch, mesh)
    repl, batch_sh = parallel.replicated(mesh), parallel.batch_sharding(mesh)
    feats, frames = jax.jit(log_mel, static_argnums=2)(audio_np, lengths_np, frontend)
    feats, frames = np.asarray(feats), np.asarray(frames)

    def put(batch: dict[str, Any]) -> dict[str, Any]:
        return jax.device_put(batch, batch_sh)

    tx = optax.adam(1e-3)  # one object: the state's static metadata must match the shardings'

    def new_state() -> Any:
        state = create_train_state(model, tx, 0, N_MELS)
        return jax.device_put(state, parallel.state_sharding(mesh, state))

    def net_step(state, batch):
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

    state_sh = parallel.state_sharding(mesh, new_state())
    net = jax.jit(
        net_step,
        in_shardings=(state_sh, batch_sh),
        out_shardings=(state_sh, repl),
        donate_argnums=0,
    )
    net_batch = put({"feats": feats, "frames": frames, "label": labels_np})
    full = jax.jit(
        functools.partial(
            train_step,
            frontend=frontend,
            augment=AugmentConfig(),
            offline=False,
            seed=0,
            label_smoothing=0.0,
        ),
        in_shardings=(state_sh, batch_sh, repl),
        out_shardings=(state_sh, repl),
        donate_argnums=0,
    )
    full_batch = put(
        {
            "audio": audio_np,
            "length": lengths_np,
            "label": labels_np,
            "weight": np.ones(args.batch, np.float32),
        }
    )
    classes = jax.device_put(
        class_terms(jnp.ones(CLASSES, jnp.float32), jnp.zeros(CLASSES, jnp.float32)), repl
    )
    holders = {"net": [new_state()], "full": [new_state()]}

    def run_net() -> None:
        holders["net"][0], loss = net(holders["net"][0], net_batch)
        loss.block_until_ready()

    def run_full() -> None:
        holders["full"][0], m = full(holders["full"][0], full_batch, classes)
        m["loss"].block_until_ready()

    steps = {"net": run_net, "full": run_full}
    devices = jax.devices()
    info = {
        "framework": f"jax {jax.__version__} (jaxlib {jax.lib.__version__})",
        "backend": jax.default_backend(),
        "device_count": len(devices),
        "device_kind": devices[0].device_kind,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }
    return steps, info


def torch_worker(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    import librosa
    import torch
    from torch import nn

    threads = args.torch_threads or (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    )
    torch.set_num_threads(int(threads or 1))
    torch.manual_seed(0)
    audio_np, lengths_np, labels_np = make_audio(args.batch, args.seconds)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers: list[nn.Module] = []
            cin = 1
            for f, p in zip(FILTERS, POOLS, strict=True):
                layers += [
                    nn.Conv2d(cin, f, 3, padding=1, bias=False),
                    nn.BatchNorm2d(f, eps=1e-5, momentum=0.1),
                    nn.ELU(),
                    nn.MaxPool2d(p),
                ]
                cin = f
            self.cnn = nn.Sequential(*layers)
            self.lstm = nn.LSTM(FILTERS[-1] * (N_MELS // 64), LSTM, batch_first=True)
            self.head = nn.Linear(LSTM, CLASSES)

        def forward(self, feats: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
            h = self.cnn(feats[:, None])  # (batch, channels, time, mel)
            b, c, t, f = h.shape
            out, _ = self.lstm(h.permute(0, 2, 1, 3).reshape(b, t, c * f))
            steps = frames
            for pt, _ in POOLS:
                steps = steps // pt
            last = (steps - 1).clamp(0, t - 1)
            return self.head(out[torch.arange(b), last])

    window = torch.hann_window(400, periodic=True)
    mel_fb = torch.tensor(librosa.filters.mel(sr=SAMPLE_RATE, n_fft=512, n_mels=N_MELS))

    def log_mel(audio: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(
            audio, 512, 160, 400, window, center=True, pad_mode="constant", return_complex=True
        )
        power = spec.real.square() + spec.imag.square()  # (batch, freq, frames)
        feats = torch.log(torch.clamp(mel_fb @ power, min=1e-6)).transpose(1, 2)
        mean = feats.mean(dim=1, keepdim=True)
        var = feats.var(dim=1, unbiased=False, keepdim=True)
        return (feats - mean) * torch.rsqrt(var + 1e-5)

    audio = torch.from_numpy(audio_np)
    frames = torch.from_numpy(1 + lengths_np // 160).long()
    labels = torch.from_numpy(labels_np).long()
    with torch.no_grad():
        feats = log_mel(audio)
    assert feats.shape[1] == 1 + audio.shape[1] // 160

    def make(front: bool):
        net = Net()
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            x = log_mel(audio) if front else feats
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


class Worker:
    def __init__(self, label: str, kind: str, args: argparse.Namespace, devices: int = 1):
        self.label = label
        env = dict(os.environ)
        if kind == "jax":
            env["JAX_PLATFORMS"] = "cpu"
            flags = [
                f
                for f in env.get("XLA_FLAGS", "").split()
                if not f.startswith("--xla_force_host_platform_device_count")
            ]
            flags.append(f"--xla_force_host_platform_device_count={devices}")
            env["XLA_FLAGS"] = " ".join(flags)
        argv = [sys.executable, __file__, "--worker", kind]
        argv += ["--batch", str(args.batch), "--seconds", str(args.seconds)]
        argv += ["--torch-threads", str(args.torch_threads)]
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--steps", type=int, default=12, help="timed rounds (median)")
    p.add_argument("--warmup", type=int, default=3, help="untimed rounds after compilation")
    p.add_argument("--devices", type=int, default=8, help="virtual CPU devices for the mesh rows")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch rows")
    p.add_argument(
        "--torch-threads", type=int, default=0, help="torch.set_num_threads (0: usable CPUs)"
    )
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--worker", choices=("jax", "torch"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        serve(args)
        return 0

    specs = [("jax, 1 device", "jax", 1)]
    if args.devices > 1:
        specs.append((f"jax, {args.devices} devices", "jax", args.devices))
    if not args.no_torch:
        specs.append(("torch eager", "torch", 1))
    load_before = load()
    workers: list[Worker] = []
    try:
        for label, kind, devices in specs:  # one at a time: compilation would skew the others
            w = Worker(label, kind, args, devices)
            workers.append(w)
            w.wait_ready()
        rows = [(w, name) for w in workers for name in ("net", "full")]
        times: dict[tuple[str, str], list[float]] = {(w.label, n): [] for w, n in rows}
        for r in range(args.warmup + args.steps):
            for w, name in rows:
                t = w.step(name)
                if r >= args.warmup:
                    times[(w.label, name)].append(t)
    finally:
        for w in workers:
            w.close()

    med = {k: statistics.median(v) for k, v in times.items()}
    torch_label = "torch eager" if not args.no_torch else None
    results = []
    for (label, name), m in med.items():
        ref = med.get((torch_label, name)) if torch_label else None
        results.append(
            {
                "row": f"{label}: {'network + Adam' if name == 'net' else 'log-mel + network + Adam'}",
                "worker": label,
                "step": name,
                "median_ms": 1e3 * m,
                "min_ms": 1e3 * min(times[(label, name)]),
                "samples_per_s": args.batch / m,
                "vs_torch": (ref / m) if ref else None,
            }
        )
    info = {
        "device": cpu_description(),
        "python": platform.python_version(),
        "batch": args.batch,
        "clip_seconds": args.seconds,
        "frames": 1 + int(round(args.seconds * SAMPLE_RATE)) // 160,
        "n_mels": N_MELS,
        "steps": args.steps,
        "warmup": args.warmup,
        "load_average_before": load_before,
        "load_average_after": load(),
        "workers": {w.label: w.ready for w in workers},
    }
    print(f"device: {info['device']}")
    for w in workers:
        i = w.ready["info"]
        extra = f", {i['threads']} threads" if "threads" in i else ""
        print(f"  {w.label}: {i['framework']}, {i['device_count']} x {i['device_kind']}{extra}")
    print(
        f"batch {args.batch} x {args.seconds:g} s at 16 kHz → ({args.batch}, {info['frames']}, "
        f"{N_MELS}) log-mel; median of {args.steps} interleaved steps after {args.warmup} warm-up; "
        f"load average {load_before} → {info['load_average_after']}"
    )
    width = max(len(r["row"]) for r in results)
    print(f"{'row':<{width}}  {'samples/s':>9}  {'ms/step':>8}  {'min ms':>8}  {'vs torch':>8}")
    for r in results:
        ratio = f"{r['vs_torch']:.2f}x" if r["vs_torch"] else "-"
        print(
            f"{r['row']:<{width}}  {r['samples_per_s']:9.1f}  {r['median_ms']:8.1f}  "
            f"{r['min_ms']:8.1f}  {ratio:>8}"
        )
    if args.json:
        args.json.write_text(json.dumps({"info": info, "rows": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
