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
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from procs import (
    LONG,
    REPO,
    SHORT,
    TIMEOUT_S,
    Train,
    assert_close_rows,
    committed_steps,
    devices_of,
    epoch_rows,
    kill_after_checkpoints,
    results,
    rows,
    wait_all,
)

pytestmark = pytest.mark.slow


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
        kill_after_checkpoints(run, ckpts, spe, deadline)
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
