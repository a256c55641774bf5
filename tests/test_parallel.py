"""Sharding, multi-process training and kill/resume, with real processes and real checkpoints.

Every run here is ``python -m ser_jax train`` in a subprocess, because the device count
(``--xla_force_host_platform_device_count``) is fixed when jax is imported:
- 1 device vs 8 virtual devices: same global batch, same seed → the same metrics;
- 2 processes x 2 devices (gloo collectives on CPU) vs 1 process x 4 devices → the same metrics,
  and only process 0 writes the run's files;
- SIGKILL mid-run, a half-written checkpoint left behind, restart → exactly the uninterrupted
  run's metrics (CPU is deterministic), one ``metrics.jsonl`` row per step written.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "ser_jax" / "config.py"
TIMEOUT_S = 300  # a hang guard per process; a healthy run takes seconds
TIMING = ("epoch_seconds", "samples_per_second")

pytestmark = pytest.mark.slow

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


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """SER_JAX_CACHE for the subprocesses, with the demo corpus already generated in it."""
    path = tmp_path_factory.mktemp("ser_cache")
    old = os.environ.get("SER_JAX_CACHE")
    os.environ["SER_JAX_CACHE"] = str(path)
    try:
        from ser_jax.config import get_config
        from ser_jax.data.prepare import demo_corpus_root

        c = get_config()
        c.data.demo.speakers, c.data.demo.utterances_per_class = 3, 3
        c.data.demo.seconds = (1.0, 1.4)
        demo_corpus_root(c.data)
    finally:
        if old is None:
            os.environ.pop("SER_JAX_CACHE", None)
        else:
            os.environ["SER_JAX_CACHE"] = old
    return path


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


@pytest.fixture(scope="module")
def device_runs(tmp_path_factory, cache):
    """The LONG config on 1 and on 8 devices, and an 8-device run whose batch does not divide."""
    root = tmp_path_factory.mktemp("devices")
    one = Train(root / "one", LONG, cache=cache, devices=1)
    eight = Train(root / "eight", LONG, cache=cache, devices=8)
    bad = Train(
        root / "bad", {**SHORT, "train.batch_size": "12"}, cache=cache, devices=8, name="bad"
    )
    _, _, bad_out = wait_all(one, eight, bad, expect_ok=False)
    for r in (one, eight):
        assert r.proc.returncode == 0, f"{r.log.name}\n{r.output()[-3000:]}"
    return {"one": root / "one", "eight": root / "eight", "bad": (bad, bad_out)}


def test_eight_devices_match_one_device(device_runs):
    one, eight = device_runs["one"], device_runs["eight"]
    assert devices_of(one)["device_count"] == 1
    assert devices_of(eight)["device_count"] == 8
    assert devices_of(eight)["local_device_count"] == 8
    # Sharding the batch only reorders float sums: the first epochs agree to ~1e-6. Training
    # then amplifies those last-bit differences (by epoch 6 about 1e-3 on val_loss here), so
    # the early epochs are compared tightly and the whole trajectory loosely. A real sharding
    # bug (per-device BatchNorm statistics, a dropped or repeated shard) is off by far more
    # from the first step on.
    assert len(epoch_rows(one)) == 6
    assert_close_rows(epoch_rows(eight)[:3], epoch_rows(one)[:3], rel=1e-4)
    steps = lambda rs: [r for r in rs if "train_loss_step" in r]  # noqa: E731
    assert_close_rows(steps(rows(eight))[:15], steps(rows(one))[:15], rel=1e-4)
    assert_close_rows(steps(rows(eight)), steps(rows(one)), rel=1e-2)
    assert results(eight)["test_loss"] == pytest.approx(results(one)["test_loss"], rel=1e-2)


def test_batch_not_dividing_by_devices_is_refused(device_runs):
    bad, out = device_runs["bad"]
    assert bad.proc.returncode != 0
    assert "error: train.batch_size=12 does not divide by the 8 devices" in out, out[-3000:]
    assert not (bad.workdir / "checkpoints").exists() or not committed_steps(
        bad.workdir / "checkpoints"
    )


def test_two_processes_match_one_process(tmp_path, cache):
    port = free_port()
    shared = tmp_path / "two"
    procs = [
        Train(
            shared,
            SHORT,
            cache=cache,
            devices=2,
            name=f"p{i}",
            flags=(f"--coordinator=127.0.0.1:{port}", "--num_processes=2", f"--process_id={i}"),
        )
        for i in range(2)
    ]
    single = Train(tmp_path / "one", SHORT, cache=cache, devices=4)
    out0, out1, _ = wait_all(*procs, single)

    info = devices_of(shared)
    assert (info["process_count"], info["device_count"], info["local_device_count"]) == (2, 4, 2)
    assert devices_of(tmp_path / "one")["device_count"] == 4
    # Only process 0 writes metrics and prints epochs: one row per step logged, not two.
    epochs = epoch_rows(shared)
    assert [r["epoch"] for r in epochs] == [1, 2]
    assert "epoch   2" in out0 and "epoch   2" not in out1
    written = [("epoch" in r, r["step"]) for r in rows(shared)]
    assert len(written) == len(set(written)), written
    assert_close_rows(epochs, epoch_rows(tmp_path / "one"))
    assert_close_results(results(shared), results(tmp_path / "one"))
    # both processes took part in every checkpoint (orbax's save is collective)
    assert committed_steps(shared / "checkpoints")[-1] == epochs[-1]["step"]


def test_kill_and_resume_matches_uninterrupted_run(tmp_path, cache, device_runs):
    reference = device_runs["one"]
    spe = epoch_rows(reference)[0]["step"]
    total = epoch_rows(reference)[-1]["step"]
    workdir = tmp_path / "killed"
    ckpts = workdir / "checkpoints"

    run = Train(workdir, LONG, cache=cache, devices=1, name="first")
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not (workdir / "run.lock").exists() or not (workdir / "run.lock").read_text():
            assert time.monotonic() < deadline and run.proc.poll() is None, run.output()[-3000:]
            time.sleep(0.02)
        # A second job on the same run directory is refused, naming the running one.
        second = Train(workdir, LONG, cache=cache, devices=1, name="second-job")
        out = second.wait(expect_ok=False)
        assert second.proc.returncode == 2, out[-3000:]
        assert f"pid {run.proc.pid}" in out and "being trained by another process" in out, out
        # Two committed checkpoints past epoch 1, so one can be turned back into a partial one.
        while len([s for s in committed_steps(ckpts) if s > spe]) < 2:
            assert run.proc.poll() is None, f"run ended before the kill\n{run.output()[-3000:]}"
            assert time.monotonic() < deadline, "no two checkpoints past epoch 1 in time"
            time.sleep(0.02)
        run.proc.send_signal(signal.SIGKILL)
        run.proc.wait(timeout=30)
    finally:
        run.kill()
    assert run.proc.returncode == -signal.SIGKILL
    assert not (workdir / "results.json").exists()
    # The killed run has no selected model: predict says which checkpoint it uses instead.
    wav = next((cache).rglob("*.wav"))
    pred = subprocess.run(
        [sys.executable, "-m", "ser_jax", "predict", f"--run={workdir}", str(wav)],
        cwd=REPO,
        env={**os.environ, "JAX_PLATFORMS": "cpu", "SER_JAX_CACHE": str(cache)},
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    newest_now = committed_steps(ckpts)[-1]
    assert pred.returncode == 0, pred.stderr[-3000:]
    assert f"has not finished; using its newest checkpoint, step {newest_now}" in pred.stderr

    # The kill came while training: make the newest checkpoint a half-written one (orbax's
    # temporary name, as a kill during its save leaves it). It must not be resumed from.
    steps = committed_steps(ckpts)
    newest, resume = steps[-1], steps[-2]
    assert spe < resume < newest < total, steps
    shutil.move(ckpts / str(newest), ckpts / f"{newest}.orbax-checkpoint-tmp")
    written = []
    for line in (workdir / "metrics.jsonl").read_text().splitlines():
        try:  # the kill may have cut the last line short; the restart must drop it
            written.append(json.loads(line)["step"])
        except json.JSONDecodeError:
            pass
    assert max(written) >= newest > resume  # rows the restart must replace, not repeat

    # The killed job's lock is stale (its holder is gone): the restart takes it over.
    again = Train(workdir, LONG, cache=cache, devices=1, name="restart")
    out = wait_all(again)[0]
    assert f"resuming from step {resume} of {total}" in out, out[-3000:]
    assert rows(workdir) == rows(reference)  # exactly one row per step and epoch, same values
    assert results(workdir) == results(reference)
    assert committed_steps(ckpts)[-1] == total


def test_unreadable_newest_checkpoint_is_set_aside_and_an_older_one_resumes(
    tmp_path, cache, device_runs
):
    reference = device_runs["one"]
    workdir = tmp_path / "damaged"
    shutil.copytree(reference, workdir)
    for name in ("results.json", "model.msgpack"):  # as if killed right after the last save
        (workdir / name).unlink()
    ckpts = workdir / "checkpoints"
    steps = committed_steps(ckpts)
    newest, older = steps[-1], steps[-2]
    # Flip bytes in every data file of the newest checkpoint's state.
    damaged = [p for p in (ckpts / str(newest) / "state").rglob("*") if p.is_file()]
    damaged = [p for p in damaged if p.stat().st_size > 64 and "/d/" in str(p)]
    assert damaged, list((ckpts / str(newest)).rglob("*"))
    for p in damaged:
        data = bytearray(p.read_bytes())
        for i in range(16, len(data), 7):
            data[i] ^= 0xFF
        p.write_bytes(bytes(data))
    out = Train(workdir, LONG, cache=cache, devices=1, name="resume").wait()
    lines = [x for x in out.splitlines() if f"checkpoint step {newest} in" in x]
    assert len(lines) == 1 and "unreadable" in lines[0], out[-3000:]
    assert "Traceback" not in out and "Event loop is closed" not in out, out[-3000:]
    assert f"resuming from step {older} of" in out
    aside = list((tmp_path / "damaged" / "checkpoints.unreadable").iterdir())
    assert [p.name.split("-")[0] for p in aside] == [str(newest)]  # kept, not deleted
    assert results(workdir) == results(reference)
    assert rows(workdir) == rows(reference)


def test_disk_full_while_saving_stops_in_one_line_and_a_rerun_finishes_identically(
    tmp_path, cache, device_runs
):
    """An injected ENOSPC on every file write under a checkpoint of step >= 9 (the first run
    stops with one line), then the same command with space again resumes and finishes like an
    uninterrupted run."""
    reference = device_runs["one"]
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import builtins, errno, os, re\n"
        "_open = builtins.open\n"
        "def _full(file, mode='r', *args, **kwargs):\n"
        "    m = re.search(r'checkpoints/(\\d+)\\.orbax-checkpoint-tmp', str(file))\n"
        "    if m and int(m.group(1)) >= 9 and any(c in mode for c in 'wax+'):\n"
        "        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(file))\n"
        "    return _open(file, mode, *args, **kwargs)\n"
        "builtins.open = _full\n"
    )
    workdir = tmp_path / "full"
    first = Train(workdir, LONG, cache=cache, devices=1, name="full", pythonpath=hook)
    out = first.wait(expect_ok=False)
    assert first.proc.returncode == 2, out[-3000:]
    errors = [x for x in out.splitlines() if x.startswith("error: ")]
    assert len(errors) == 1, out[-3000:]
    assert "No space left on device" in errors[0] and "checkpoint of step 9" in errors[0]
    assert str(workdir / "checkpoints") in errors[0] and "resumes from step 6" in errors[0]
    assert "Traceback" not in out, out[-3000:]
    again = Train(workdir, LONG, cache=cache, devices=1, name="space-again").wait()
    assert "resuming from step 6 of" in again
    assert results(workdir) == results(reference)
    assert rows(workdir) == rows(reference)


MEMBERS = ("--seeds=2",)


def test_members_across_two_processes_match_one_process(tmp_path, cache):
    """Two seeds as members (train.members=2) on 2 processes x 2 devices: the members axis
    puts one model on each process; the same job on 1 process x 4 devices agrees."""
    overrides = {**SHORT, "train.members": "2"}
    port = free_port()
    shared = tmp_path / "two"
    procs = [
        Train(
            shared,
            overrides,
            cache=cache,
            devices=2,
            name=f"p{i}",
            flags=(
                *MEMBERS,
                f"--coordinator=127.0.0.1:{port}",
                "--num_processes=2",
                f"--process_id={i}",
            ),
        )
        for i in range(2)
    ]
    single = Train(tmp_path / "one", overrides, cache=cache, devices=4, flags=MEMBERS)
    wait_all(*procs, single)
    for seed in ("seed0", "seed1"):
        info = devices_of(shared / seed)
        assert (info["process_count"], info["device_count"]) == (2, 4)
        assert_close_rows(epoch_rows(shared / seed), epoch_rows(tmp_path / "one" / seed))
        assert_close_results(results(shared / seed), results(tmp_path / "one" / seed))
        assert results(shared / seed)["members"] == 2
    summary = json.loads((shared / "summary.json").read_text())
    assert [r["seed"] for r in summary["per_seed"]] == [0, 1]


def test_members_job_killed_and_resumed_matches_uninterrupted(tmp_path, cache):
    overrides = {**LONG, "train.members": "2"}
    reference = tmp_path / "reference"
    ref = Train(reference, overrides, cache=cache, devices=1, flags=MEMBERS, name="ref")
    workdir = tmp_path / "killed"
    ckpts = workdir / "members0" / "checkpoints"
    run = Train(workdir, overrides, cache=cache, devices=1, flags=MEMBERS, name="first")
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while len([s for s in committed_steps(ckpts) if s > 5]) < 2:
            assert run.proc.poll() is None, f"run ended before the kill\n{run.output()[-3000:]}"
            assert time.monotonic() < deadline, "no two checkpoints past epoch 1 in time"
            time.sleep(0.02)
        run.proc.send_signal(signal.SIGKILL)
        run.proc.wait(timeout=30)
    finally:
        run.kill()
    wait_all(ref)
    resume = committed_steps(ckpts)[-1]
    out = wait_all(Train(workdir, overrides, cache=cache, devices=1, flags=MEMBERS, name="again"))
    assert f"resuming from step {resume} of" in out[0], out[0][-3000:]
    for seed in ("seed0", "seed1"):
        assert rows(workdir / seed) == rows(reference / seed)
        assert results(workdir / seed) == results(reference / seed)
