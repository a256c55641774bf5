"""The exported model (``jax.export``, serialised StableHLO) against in-package predict, one run.

    python benchmarks/export.py [--model NAME | --run DIR] [--files N] [--rounds 11]
        [--batch 32] [--data DIR | --synthetic] [--json PATH]

    python benchmarks/export.py --tiny   (a smoke run: --files 4 --rounds 1 --batch 4
        --synthetic; flags given as well win)

Both rows score the same clips with the same weights, batch by batch, by the package's
evaluation policy (``ser_jax.evaluation.scoring``): ``predict`` is ``LoadedModel.probabilities`` (the
jit-compiled ``predict_step``, what ``ser-jax predict`` runs after decoding; for a committee,
the default model, ``Committee.probabilities``: each member's, with its warps), ``exported`` is
``export.exported_probabilities`` over the deserialised function (what a server that has only
``jax`` runs). Decoding and resampling are done once, before timing; the rounds alternate the
two rows, and the table reports medians, the first call (compile or deserialise + compile)
apart, and the largest difference between their probabilities.

Clips: the first ``--files`` WAVs of ``--data`` (default ``$SER_EMODB_DIR``), or ``--files``
clips of synthetic noise of 2 s when no folder is given (or with ``--synthetic``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ser_jax.data.audio import load_audio  # noqa: E402
from ser_jax.rundir import processor_name  # noqa: E402
from ser_jax.serving.export import (  # noqa: E402
    export_model,
    exported_probabilities,
    load_exported,
)
from ser_jax.serving.restore import LoadedModel, load_model  # noqa: E402
from ser_jax.serving.shipped import (  # noqa: E402
    ALL_JAX,
    Committee,
    is_committee,
    load_committee,
    load_shipped,
)

PREDICT = "predict (in package, jit)"
EXPORTED = "exported (jax.export, deserialised)"


def load_target(args: argparse.Namespace) -> LoadedModel | Committee:
    """The run of ``--run``, else the shipped model or committee of ``--model`` (when not
    given: the all-JAX committee, exported as one function; the default's openSMILE member
    runs outside JAX)."""
    if args.run:
        return load_model(args.run)
    name = args.model or ALL_JAX
    return load_committee(name) if is_committee(name) else load_shipped(name)


def clips(args: argparse.Namespace, sample_rate: int) -> tuple[list[np.ndarray], str]:
    root = None if args.synthetic else args.data or os.environ.get("SER_EMODB_DIR")
    if root:
        folder = Path(root) / "wav" if (Path(root) / "wav").is_dir() else Path(root)
        files = sorted(folder.glob("*.wav"))[: args.files]
        if files:
            return [load_audio(f, sample_rate) for f in files], f"{len(files)} files of {folder}"
    rng = np.random.default_rng(0)
    n = args.files
    waves = [rng.standard_normal(2 * sample_rate).astype(np.float32) * 0.1 for _ in range(n)]
    return waves, f"{n} synthetic clips of 2 s"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default=None, help=f"a shipped model (default: {ALL_JAX})")
    p.add_argument("--run", default=None, help="a run directory instead of a shipped model")
    p.add_argument("--data", default=None, help="a folder of WAVs (default: $SER_EMODB_DIR)")
    p.add_argument("--synthetic", action="store_true", help="synthetic clips, whatever the env")
    p.add_argument("--files", type=int, default=64)
    p.add_argument("--rounds", type=int, default=11)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--json", default=None)
    p.add_argument("--tiny", action="store_true", help="a smoke run's sizes (seconds)")
    args = p.parse_args(argv)
    if args.tiny:  # the smoke run's sizes; flags given as well still win
        p.set_defaults(files=4, rounds=1, batch=4, synthetic=True)
        args = p.parse_args(argv)
    return args


def time_rows(
    rows: dict[str, Callable[[], np.ndarray]], rounds: int
) -> tuple[dict[str, float], dict[str, list[float]], dict[str, np.ndarray]]:
    """The first call of each row, then ``rounds`` alternated calls: (first-call seconds,
    seconds of each round, the first call's output) by row."""
    first, times, out = {}, {k: [] for k in rows}, {}
    for name, f in rows.items():
        t0 = time.perf_counter()
        out[name] = f()
        first[name] = time.perf_counter() - t0
    for _ in range(rounds):
        for name, f in rows.items():
            t0 = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - t0)
    return first, times, out


def print_rows(rows: list[dict[str, Any]]) -> None:
    """The timing table: each row's first call, median, clips/s and ratio to predict."""
    print("| row | first call s | median s | clips/s | vs predict |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['row']} | {r['first_call_s']:.2f} | {r['median_s']:.3f} | "
            f"{r['clips_per_s']:.1f} | {r['vs_predict']:.2f}x |"
        )


def print_report(report: dict[str, Any], args: argparse.Namespace) -> None:
    print(
        f"{report['clips']}; device: {report['device']}; {args.rounds} rounds, batch {args.batch}"
    )
    print(
        f"export {report['export_seconds']:.2f} s, {report['exported_bytes'] / 1e6:.2f} MB; "
        f"deserialise {report['deserialise_seconds'] * 1e3:.1f} ms; largest probability "
        f"difference {report['max_abs_probability_difference']:.2e}"
    )
    print_rows(report["rows"])


def export_and_load(export: Any, load: Any, path: Path) -> tuple[Any, float, int, float]:
    """``(loaded, export seconds, file bytes, load seconds)`` of ``export(model path)`` then
    ``load(path)`` (the caller's temporary folder)."""
    t0 = time.perf_counter()
    path = export(path)
    export_s = time.perf_counter() - t0
    size = path.stat().st_size
    t0 = time.perf_counter()
    loaded = load(path)
    return loaded, export_s, size, time.perf_counter() - t0


def against_predict(
    args: argparse.Namespace, model: Any, waves: list[np.ndarray], name: str, score: Any
) -> dict[str, Any]:
    """The rows of ``predict`` and of ``name`` (``score()``) timed in the same rounds, and
    their largest probability difference."""
    rows = {PREDICT: lambda: model.probabilities(waves, args.batch), name: score}
    first, times, out = time_rows(rows, args.rounds)
    med = {row: statistics.median(ts) for row, ts in times.items()}
    return {
        "max_abs_probability_difference": float(np.abs(out[PREDICT] - out[name]).max()),
        "rows": [
            {
                "row": row,
                "first_call_s": first[row],
                "median_s": med[row],
                "clips_per_s": len(waves) / med[row],
                "vs_predict": med[PREDICT] / med[row],
            }
            for row in rows
        ],
    }


def write_report(report: dict[str, Any], path: str | None) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(report, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    model = load_target(args)
    waves, what = clips(args, model.sample_rate)
    with tempfile.TemporaryDirectory() as tmp:
        (fn, meta), export_s, size, load_s = export_and_load(
            lambda path: export_model(model, path), load_exported, Path(tmp) / "model.jaxexport"
        )
    compared = against_predict(
        args, model, waves, EXPORTED, lambda: exported_probabilities(fn, meta, waves, args.batch)
    )
    report = {
        "clips": what,
        "audio_seconds": float(sum(len(w) for w in waves) / model.sample_rate),
        "device": f"{jax.devices()[0].platform}: {processor_name()}",
        "cpus": os.cpu_count(),
        "export_seconds": export_s,
        "deserialise_seconds": load_s,
        "exported_bytes": size,
        **compared,
    }
    print_report(report, args)
    write_report(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
