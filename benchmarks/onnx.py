"""The ONNX graph (``ser-jax export --format onnx``) in onnxruntime against in-package predict.

    python benchmarks/onnx.py [--model NAME | --run DIR] [--files N] [--rounds 11]
        [--batch 32] [--data DIR | --synthetic] [--json PATH]

    python benchmarks/onnx.py --tiny   (a smoke run: --files 4 --rounds 1 --batch 4
        --synthetic; flags given as well win)

Needs the optional extra ``onnx`` (and jax2onnx). Both rows score the same clips with the same
weights, batch by batch, by the package's evaluation policy (``ser_jax.evaluation.scoring``):
``predict`` is ``LoadedModel.probabilities`` (the jit-compiled ``predict_step``, what
``ser-jax predict`` runs after decoding; for a committee, the default model,
``Committee.probabilities``: each member's, with its warps), ``onnxruntime`` is
``onnx.onnx_probabilities`` over an onnxruntime CPU session of the exported graph (what a
server without JAX runs). Decoding is done once, before timing; the rounds alternate the two
rows, and the table reports medians, the first call (jit compile, or the session's first run)
apart, and the largest difference between their probabilities. Clips as
``benchmarks/export.py`` picks them.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# This file is named onnx.py: its folder, first on sys.path, would shadow the onnx package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))

import jax  # noqa: E402
import onnxruntime  # noqa: E402

from benchmarks.export import (  # noqa: E402
    against_predict,
    clips,
    export_and_load,
    load_target,
    print_rows,
    write_report,
)
from ser_jax.rundir import processor_name  # noqa: E402
from ser_jax.serving.onnx import export_onnx, load_onnx, onnx_probabilities  # noqa: E402

ONNXRUNTIME = "onnxruntime (exported graph, CPU)"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--model",
        default=None,
        help="a shipped model (default: emodb-committee-jax, the all-JAX committee)",
    )
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


def print_report(report: dict[str, Any], args: argparse.Namespace) -> None:
    print(
        f"{report['clips']}; device: {report['device']}; onnxruntime {report['onnxruntime']}; "
        f"{args.rounds} rounds, batch {args.batch}"
    )
    print(
        f"export {report['export_seconds']:.2f} s, {report['graph_bytes'] / 1e6:.2f} MB; "
        f"session {report['session_seconds'] * 1e3:.1f} ms; largest probability "
        f"difference {report['max_abs_probability_difference']:.2e}"
    )
    print_rows(report["rows"])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    model = load_target(args)
    waves, what = clips(args, model.sample_rate)
    with tempfile.TemporaryDirectory() as tmp:
        (session, meta), export_s, size, load_s = export_and_load(
            lambda path: export_onnx(model, path), load_onnx, Path(tmp) / "model.onnx"
        )
    compared = against_predict(
        args,
        model,
        waves,
        ONNXRUNTIME,
        lambda: onnx_probabilities(session, meta, waves, args.batch),
    )
    report = {
        "clips": what,
        "audio_seconds": float(sum(len(w) for w in waves) / model.sample_rate),
        "device": f"{jax.devices()[0].platform}: {processor_name()}",
        "onnxruntime": f"{onnxruntime.__version__} {', '.join(session.get_providers())}",
        "cpus": os.cpu_count(),
        "export_seconds": export_s,
        "session_seconds": load_s,
        "graph_bytes": size,
        **compared,
    }
    print_report(report, args)
    write_report(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
