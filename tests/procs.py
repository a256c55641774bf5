"""Helpers of the multi-process tests: ``python -m ser_jax train`` subprocesses, their run
directories and checkpoints, and the demo corpus they share."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "ser_jax" / "config.py"
TIMEOUT_S = 600  # a hang guard per process; a healthy run takes seconds (minutes under load)
TIMING = ("epoch_seconds", "samples_per_second")

TINY = {
    "data.demo.speakers": "3",
    "data.demo.utterances_per_class": "3",
    "data.demo.seconds": "(1.0,1.4)",
    "data.max_seconds": "1.4",
    "data.bucket_seconds": "0.7",
    "frontend.n_mels": "32",
    "frontend.n_fft": "256",
    "frontend.win_length": "256",
    "model.filters": "(4,4,8)",
    "model.pools": "((2,2),(2,2),(2,2))",
    "model.lstm_hidden": "16",
    "train.batch_size": "8",
    "train.progress": "False",
}
# Shared by the 1-vs-8-device test and the kill/resume test (one reference run serves both):
# a checkpoint every 3 steps and a metrics row every step, so a kill leaves rows past the
# checkpoint the restart resumes from.
LONG = {
    **TINY,
    "train.epochs": "6",
    "train.checkpoint_every_steps": "3",
    "train.log_every_steps": "1",
}
SHORT = {**TINY, "train.epochs": "2"}


class Train:
    """One ``python -m ser_jax train`` subprocess; its output goes to ``<workdir>.<name>.log``."""

    def __init__(
        self,
        workdir: Path,
        overrides: dict[str, str],
        *,
        cache: Path,
        devices: int = 1,
        flags: tuple[str, ...] = (),
        name: str = "run",
        pythonpath: Path | None = None,
    ):
        self.workdir = workdir
        self.log = workdir.with_name(f"{workdir.name}.{name}.log")
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SER_", "SLURM_", "JAX_", "XLA_"))
        }
        env.update(
            JAX_PLATFORMS="cpu",
            XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
            SER_JAX_CACHE=str(cache),
            PYTHONPATH=os.pathsep.join(
                [*([str(pythonpath)] if pythonpath else []), str(REPO), env.get("PYTHONPATH", "")]
            ),
        )
        if not any(f.startswith("--coordinator") for f in flags):
            # single-process runs share the session's compilation cache (see
            # ser_jax.cli.compilation_cache for why multi-process runs do not)
            env["JAX_COMPILATION_CACHE_DIR"] = os.environ["JAX_COMPILATION_CACHE_DIR"]
            env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
        argv = [sys.executable, "-m", "ser_jax", "train", f"--config={CONFIG}"]
        argv += [f"--config.{k}={v}" for k, v in overrides.items()]
        argv += [f"--workdir={workdir}", *flags]
        self._out = open(self.log, "w")
        self.proc = subprocess.Popen(
            argv, cwd=REPO, env=env, stdout=self._out, stderr=subprocess.STDOUT
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait(self, *, expect_ok: bool = True) -> str:
        try:
            rc = self.proc.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.log.name}: no exit within {TIMEOUT_S} s\n{self.output()[-3000:]}")
        self._out.close()
        text = self.output()
        if expect_ok and rc != 0:
            pytest.fail(f"{self.log.name}: exit status {rc}\n{text[-3000:]}")
        return text

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
        self._out.close()


def wait_all(*runs: Train, expect_ok: bool = True) -> list[str]:
    """Wait for every run; on any failure kill the others before failing."""
    try:
        return [r.wait(expect_ok=expect_ok) for r in runs]
    finally:
        for r in runs:
            r.kill()


def rows(workdir: Path) -> list[dict]:
    """metrics.jsonl without the timing fields."""
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k not in TIMING} for x in lines]


def epoch_rows(workdir: Path) -> list[dict]:
    return [r for r in rows(workdir) if "epoch" in r]


def results(workdir: Path) -> dict:
    out = json.loads((workdir / "results.json").read_text())
    for k in ("epoch_seconds_median", "samples_per_second_median", "devices"):
        out.pop(k)
    return out


def assert_close_rows(got: list[dict], want: list[dict], rel: float = 1e-4) -> None:
    assert [r["step"] for r in got] == [r["step"] for r in want]
    for g, w in zip(got, want, strict=True):
        assert g.keys() == w.keys(), (g, w)
        for k in w:
            if isinstance(w[k], float) and "loss" in k:
                assert math.isclose(g[k], w[k], rel_tol=rel), (k, g, w)
            elif isinstance(w[k], float):
                assert math.isclose(g[k], w[k], rel_tol=1e-6, abs_tol=1e-6), (k, g, w)
            else:
                assert g[k] == w[k], (k, g, w)


def assert_close_results(got: dict, want: dict, rel: float = 1e-4) -> None:
    for k in ("test_accuracy", "test_uar", "test_macro_f1", "selected_step", "epochs_run"):
        assert got[k] == pytest.approx(want[k], rel=1e-6, abs=1e-6), k
    assert got["test_loss"] == pytest.approx(want["test_loss"], rel=rel)


def devices_of(workdir: Path) -> dict:
    return json.loads((workdir / "run_info.json").read_text())["devices"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def committed_steps(checkpoints: Path) -> list[int]:
    """Finished orbax checkpoints: ``<step>`` folders (``<step>.orbax-checkpoint-tmp`` is not)."""
    if not checkpoints.is_dir():
        return []
    return sorted(int(p.name) for p in checkpoints.iterdir() if p.is_dir() and p.name.isdigit())


def kill_after_checkpoints(run: Train, checkpoints: Path, past: int, deadline: float) -> None:
    """SIGKILL ``run`` once two checkpoints past step ``past`` are committed (so one can be
    turned back into a partial one); fails if the run ends first or ``deadline`` passes."""
    while len([s for s in committed_steps(checkpoints) if s > past]) < 2:
        assert run.proc.poll() is None, f"run ended before the kill\n{run.output()[-3000:]}"
        assert time.monotonic() < deadline, f"no two checkpoints past step {past} in time"
        time.sleep(0.02)
    run.proc.send_signal(signal.SIGKILL)
    run.proc.wait(timeout=30)
