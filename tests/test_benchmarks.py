"""Every benchmark runs at a tiny size: exit 0, the device named, the table and its ratios
printed. Nothing here reads a timing: the figures of a tiny run on a shared CPU mean nothing."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RATIO = re.compile(r"\d+\.\d+x")  # a "vs reference" cell: 1.00x
TORCH = importlib.util.find_spec("torch") is not None
ONNX = all(importlib.util.find_spec(m) is not None for m in ("jax2onnx", "onnxruntime"))


def run_benchmark(script: str, *args: str) -> str:
    """``python benchmarks/SCRIPT ARGS`` from the repository root; its stdout."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, f"{script} exited {proc.returncode}:\n{proc.stderr[-4000:]}"
    return proc.stdout


def rows_with_ratio(out: str, *labels: str) -> None:
    """Each of ``labels`` starts a printed row (after an optional "| ") that has a ratio."""
    for label in labels:
        lines = [line for line in out.splitlines() if line.lstrip("| ").startswith(label)]
        assert lines, f"no row {label!r} in:\n{out}"
        assert all(RATIO.search(line) for line in lines), f"row {label!r} has no ratio:\n{out}"


def test_export_benchmark():
    out = run_benchmark("export.py", "--tiny")
    assert "4 synthetic clips of 2 s; device: " in out
    assert "largest probability difference" in out
    assert "| row | first call s | median s | clips/s | vs predict |" in out
    rows_with_ratio(out, "predict (in package, jit)", "exported (jax.export, deserialised)")


@pytest.mark.skipif(
    not ONNX, reason="jax2onnx / onnxruntime not installed (pip install -e '.[onnx]'; CI has them)"
)
def test_onnx_benchmark():
    out = run_benchmark("onnx.py", "--tiny")
    assert "4 synthetic clips of 2 s; device: " in out and "onnxruntime " in out
    assert "largest probability difference" in out
    assert "| row | first call s | median s | clips/s | vs predict |" in out
    rows_with_ratio(out, "predict (in package, jit)", "onnxruntime (exported graph, CPU)")


@pytest.mark.slow
def test_train_step_benchmark():
    out = run_benchmark("train_step.py", "--tiny")
    assert out.startswith("device: ")
    header = next(line for line in out.splitlines() if line.startswith("row "))
    assert "vs 1 dev" in header and "vs torch" in header
    rows_with_ratio(out, "jax, 1 device: network + Adam", "jax, 1 device: log-mel + network + Adam")
    roofline = next(line for line in out.splitlines() if line.startswith("roofline: "))
    assert re.search(r"GEMM 2048\^3 \d+ GFLOP/s in this run", roofline)
    assert re.search(r"jax, 1 device \d+ GFLOP/s = \d+%", roofline)
    if TORCH:
        rows_with_ratio(out, "torch eager: network + Adam")
    else:  # the optional extra is absent: the benchmark still runs, and says what it skipped
        assert "PyTorch reference skipped: torch is not installed" in out


@pytest.mark.slow
def test_feature_cache_benchmark():
    out = run_benchmark("feature_cache.py", "--tiny")
    assert "device: " in out
    assert "| row | epoch s (median) |" in out
    rows_with_ratio(out, "front-end in every step", "feature cache")


@pytest.mark.slow
def test_gpu_script_tiny(tmp_path):
    """benchmarks/gpu.sh --tiny on the CPU: every report written, with its provenance, and
    the LOSO with folds as members finished (its wall time recorded). It runs frontend.py and
    members.py at their tiny sizes too, so it is their smoke test: their tables and ratios are
    checked here (members in one step once crashed on the train step's old per-class
    argument), and no second tiny run of either is needed."""
    out = tmp_path / "bench"
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--tiny", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.startswith("device: cpu")
    assert "LOSO corpus: synthetic" in proc.stdout and "LOSO, folds as members:" in proc.stdout
    for name in ("train_step", "members", "frontend"):
        assert (out / f"{name}_float32.json").exists(), name
    report = json.loads((out / "train_step_float32.json").read_text())
    assert report["made_by"]["command"].startswith("python benchmarks/train_step.py --network best")
    assert report["roofline"]["gemm_gflops"] > 0
    # frontend.py --tiny
    assert "vs librosa" in proc.stdout
    rows_with_ratio(
        proc.stdout,
        "librosa melspectrogram (per file)",
        "jax log_mel (jit, batch)",
        "jax log_mel + augment (all p=1)",
    )
    # members.py --tiny --members 2 --loop vmap --no-torch --no-devices
    assert "PyTorch reference skipped: --no-torch" in proc.stdout
    rows_with_ratio(proc.stdout, "JAX, one model", "JAX, 2 members, 1 device")
    members = json.loads((out / "members_float32.json").read_text())
    assert [r["models"] for r in members["rows"]] == [1, 2]
    summary = json.loads((out / "loso_float32" / "cv_summary.json").read_text())
    assert len(summary["speakers"]) == 2  # two folds: two members in the one step
    assert json.loads((out / "loso_float32" / "wall.json").read_text())["wall_seconds"] > 0
