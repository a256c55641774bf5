"""Front-end throughput: librosa per file vs the jit-compiled batch log-mel, in one run.

    python benchmarks/frontend.py [--batch 32] [--seconds 3] [--reps 15] [--json PATH]

    python benchmarks/frontend.py --tiny   (a smoke run: --batch 2 --seconds 1 --reps 1;
        flags given as well win)

Same batch for every row: ``--batch`` clips of ``--seconds`` s at 16 kHz (speech-like
synthetic), and a real Emo-DB batch too when ``SER_EMODB_DIR`` is set. Rows:

- ``librosa``: ``librosa.feature.melspectrogram`` on each clip at its true length (float32
  input, the default front-end's settings), one file after another, after a warm-up call,
  with ``OPENBLAS_NUM_THREADS=1`` unless set (its fastest setting on a busy machine).
- ``jax log_mel``: ``jax.jit(log_mel)`` on the padded batch (log + utterance normalisation
  included, which the librosa row does not even do).
- ``jax log_mel + augment``: ``jax.jit(make_features)`` with every transform at probability 1.
- ``openSMILE ComParE_2016``: the openSMILE family's features (6,373 functionals per file),
  one file after another, no cache (when the ``opensmile`` extra is installed): what a first
  run of ``experiments/configs/opensmile_compare.py`` spends before its cache holds them.

Rounds interleave the rows (librosa, jax, jax+augment, repeat) so that machine load drifts
hit all of them alike; the table shows the median of ``--reps`` rounds in audio seconds
processed per second and the ratio to librosa.
"""

from __future__ import annotations

import os

# librosa's reference at its best: with the default multi-threaded OpenBLAS, its small mel
# matmuls spin-wait under CPU contention (5-10x slower on a shared 2-core machine).
# Set before numpy is imported; override from the environment.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import jax
import librosa
import numpy as np
import soundfile as sf
import soxr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ser_jax.frontend.augment import AugmentConfig  # noqa: E402
from ser_jax.frontend.features import make_features  # noqa: E402
from ser_jax.frontend.logmel import FrontendConfig, log_mel  # noqa: E402
from ser_jax.rundir import processor_name  # noqa: E402

try:
    import opensmile
except ImportError:  # the optional extra: its row is left out
    opensmile = None

ALL_ON = AugmentConfig(
    time_shift_prob=1.0,
    noise_prob=1.0,
    gain_prob=1.0,
    pitch_shift_prob=1.0,
    speed_prob=1.0,
    time_mask_prob=1.0,
    freq_mask_prob=1.0,
)


def synthetic_batch(n: int, seconds: float, sr: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    clips = []
    for _ in range(n):
        length = int(sr * seconds * rng.uniform(0.85, 1.0))
        t = np.arange(length) / sr
        f0 = 110 + 80 * rng.random() + 30 * np.sin(2 * np.pi * 1.3 * t)
        phase = 2 * np.pi * np.cumsum(f0) / sr
        y = sum(np.sin(k * phase) / k for k in range(1, 20)) * np.abs(np.sin(2 * np.pi * t * 2))
        clips.append((0.1 * y + 0.005 * rng.standard_normal(length)).astype(np.float32))
    return clips


def emodb_batch(folder: Path, n: int, sr: int) -> list[np.ndarray]:
    files = sorted(folder.glob("*.wav")) or sorted((folder / "wav").glob("*.wav"))
    clips = []
    for path in files[:n]:
        y, file_sr = sf.read(path, dtype="float32", always_2d=True)
        clips.append(soxr.resample(y.mean(axis=1), file_sr, sr).astype(np.float32))
    return clips


def pad(clips: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    audio = np.zeros((len(clips), max(len(c) for c in clips)), np.float32)
    for i, c in enumerate(clips):
        audio[i, : len(c)] = c
    return audio, np.array([len(c) for c in clips], np.int32)


def run(clips: list[np.ndarray], cfg: FrontendConfig, reps: int) -> list[dict]:
    audio_np, lengths_np = pad(clips)
    audio, lengths = jax.device_put(audio_np), jax.device_put(lengths_np)
    keys = jax.random.split(jax.random.key(0), len(clips))
    seconds = float(lengths_np.sum()) / cfg.sample_rate

    def lib() -> None:
        for y in clips:
            librosa.feature.melspectrogram(
                y=y,
                sr=cfg.sample_rate,
                n_fft=cfg.n_fft,
                hop_length=cfg.hop_length,
                win_length=cfg.win_length,
                window=cfg.window,
                n_mels=cfg.n_mels,
            )

    mel = jax.jit(log_mel, static_argnums=2)
    feat = jax.jit(make_features, static_argnames=("frontend", "augment"))
    rows = {
        "librosa melspectrogram (per file)": lib,
        "jax log_mel (jit, batch)": lambda: mel(audio, lengths, cfg)[0].block_until_ready(),
        "jax log_mel + augment (all p=1)": lambda: feat(
            audio, lengths, keys, frontend=cfg, augment=ALL_ON
        )[0].block_until_ready(),
    }
    if opensmile is not None:
        smile = opensmile.Smile(
            feature_set=opensmile.FeatureSet.ComParE_2016,
            feature_level=opensmile.FeatureLevel.Functionals,
        )
        rows["openSMILE ComParE_2016 (per file)"] = lambda: [
            smile.process_signal(y, cfg.sample_rate) for y in clips
        ]
    compile_s = {}
    for name, fn in rows.items():  # warm-up / compile
        t0 = time.perf_counter()
        fn()
        compile_s[name] = time.perf_counter() - t0
    times: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(reps):
        for name, fn in rows.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    ref = statistics.median(times["librosa melspectrogram (per file)"])
    out = []
    for name, ts in times.items():
        med = statistics.median(ts)
        out.append(
            {
                "row": name,
                "median_ms": 1e3 * med,
                "min_ms": 1e3 * min(ts),
                "audio_s_per_s": seconds / med,
                "vs_librosa": ref / med,
                "first_call_s": compile_s[name],
            }
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--json", type=Path, default=None, help="also write the table here as JSON")
    ap.add_argument("--tiny", action="store_true", help="a smoke run's sizes (seconds)")
    args = ap.parse_args()
    if args.tiny:  # the smoke run's sizes; flags given as well still win
        ap.set_defaults(batch=2, seconds=1.0, reps=1)
        args = ap.parse_args()

    cfg = FrontendConfig()
    dev = jax.devices()[0]
    device = f"{dev.platform} / {dev.device_kind} / {os.cpu_count()} CPUs ({processor_name()})"
    batches = {
        f"synthetic {args.batch} x {args.seconds:g} s": synthetic_batch(
            args.batch, args.seconds, cfg.sample_rate
        )
    }
    if os.environ.get("SER_EMODB_DIR"):
        clips = emodb_batch(Path(os.environ["SER_EMODB_DIR"]), args.batch, cfg.sample_rate)
        if clips:
            batches[f"Emo-DB {len(clips)} files"] = clips

    blas = os.environ["OPENBLAS_NUM_THREADS"]
    print(f"device: {device}; jax {jax.__version__}, librosa {librosa.__version__}")
    print(f"OPENBLAS_NUM_THREADS={blas} (librosa row); load average {os.getloadavg()}")
    print(f"front-end: {cfg}")
    result = {
        "device": device,
        "jax": jax.__version__,
        "librosa": librosa.__version__,
        "openblas_num_threads": blas,
        "load_average": os.getloadavg(),
        "batches": {},
    }
    for label, clips in batches.items():
        rows = run(clips, cfg, args.reps)
        result["batches"][label] = rows
        total = sum(len(c) for c in clips) / cfg.sample_rate
        print(f"\n{label} ({total:.1f} s of audio), median of {args.reps} interleaved rounds")
        print(
            f"{'':36s} {'median ms':>10s} {'min ms':>8s} {'audio s/s':>10s} {'vs librosa':>10s} {'1st call s':>10s}"
        )
        for r in rows:
            print(
                f"{r['row']:36s} {r['median_ms']:10.2f} {r['min_ms']:8.2f} "
                f"{r['audio_s_per_s']:10.0f} {r['vs_librosa']:9.2f}x {r['first_call_s']:10.2f}"
            )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
