"""The exported model (``jax.export``, serialised StableHLO) against in-package predict, one run.

    python benchmarks/export.py [--model NAME | --run DIR] [--files N] [--rounds 11]
        [--data DIR] [--json PATH]

Both rows score the same clips with the same weights, batch by batch, by the package's
evaluation policy (``ser_jax.evaluation.scoring``): ``predict`` is ``LoadedModel.probabilities`` (the jit
compiled ``predict_step``, what ``ser-jax predict`` runs after decoding), ``exported`` is
``export.exported_probabilities`` over the deserialised function (what a server that has only
``jax`` runs). Decoding and resampling are done once, before timing; the rounds alternate the
two rows, and the table reports medians, the first call (compile or deserialise + compile)
apart, and the largest difference between their probabilities.

Clips: the first ``--files`` WAVs of ``--data`` (default ``$SER_EMODB_DIR``), or synthetic
speech-like noise of 2 s when no folder is given.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def clips(args: argparse.Namespace, sample_rate: int) -> tuple[list[np.ndarray], str]:
    from ser_jax.data.audio import load_audio

    root = args.data or os.environ.get("SER_EMODB_DIR")
    if root:
        folder = Path(root) / "wav" if (Path(root) / "wav").is_dir() else Path(root)
        files = sorted(folder.glob("*.wav"))[: args.files]
        if files:
            return [load_audio(f, sample_rate) for f in files], f"{len(files)} files of {folder}"
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(2 * sample_rate).astype(np.float32) * 0.1 for _ in range(32)]
    return waves, "32 synthetic clips of 2 s"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default=None, help="a shipped model (default: the default one)")
    p.add_argument("--run", default=None, help="a run directory instead of a shipped model")
    p.add_argument("--data", default=None, help="a folder of WAVs (default: $SER_EMODB_DIR)")
    p.add_argument("--files", type=int, default=64)
    p.add_argument("--rounds", type=int, default=11)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--json", default=None)
    args = p.parse_args()

    import jax

    from ser_jax.package import load_shipped
    from ser_jax.rundir import processor_name
    from ser_jax.serving.export import export_model, exported_probabilities, load_exported
    from ser_jax.serving.restore import load_model

    model = load_model(args.run) if args.run else load_shipped(args.model)
    waves, what = clips(args, model.sample_rate)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        path = export_model(model, Path(tmp) / "model.jaxexport")
        export_s = time.perf_counter() - t0
        size = path.stat().st_size
        t0 = time.perf_counter()
        fn, meta = load_exported(path)
        load_s = time.perf_counter() - t0

    rows = {
        "predict (in package, jit)": lambda: model.probabilities(waves, args.batch),
        "exported (jax.export, deserialised)": lambda: exported_probabilities(
            fn, meta, waves, args.batch
        ),
    }
    first, times, out = {}, {k: [] for k in rows}, {}
    for name, f in rows.items():
        t0 = time.perf_counter()
        out[name] = f()
        first[name] = time.perf_counter() - t0
    for _ in range(args.rounds):
        for name, f in rows.items():
            t0 = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - t0)
    a, b = out.values()
    diff = float(np.abs(a - b).max())
    base = statistics.median(times["predict (in package, jit)"])
    report = {
        "clips": what,
        "audio_seconds": float(sum(len(w) for w in waves) / model.sample_rate),
        "device": f"{jax.devices()[0].platform}: {processor_name()}",
        "cpus": os.cpu_count(),
        "export_seconds": export_s,
        "deserialise_seconds": load_s,
        "exported_bytes": size,
        "max_abs_probability_difference": diff,
        "rows": [
            {
                "row": name,
                "first_call_s": first[name],
                "median_s": statistics.median(times[name]),
                "clips_per_s": len(waves) / statistics.median(times[name]),
                "vs_predict": base / statistics.median(times[name]),
            }
            for name in rows
        ],
    }
    print(f"{what}; {report['device']}; {args.rounds} rounds, batch {args.batch}")
    print(
        f"export {export_s:.2f} s, {size / 1e6:.2f} MB; deserialise {load_s * 1e3:.1f} ms; "
        f"largest probability difference {diff:.2e}"
    )
    print("| row | first call s | median s | clips/s | vs predict |")
    print("|---|---|---|---|---|")
    for r in report["rows"]:
        print(
            f"| {r['row']} | {r['first_call_s']:.2f} | {r['median_s']:.3f} | "
            f"{r['clips_per_s']:.1f} | {r['vs_predict']:.2f}x |"
        )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
