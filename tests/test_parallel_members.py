"""Multi-process runs of one model and of members (2 processes x 2 devices over gloo on
localhost vs 1 process x 4 devices), and a members job killed with SIGKILL and resumed."""

from __future__ import annotations

import json
import time

import pytest
from procs import (
    LONG,
    SHORT,
    TIMEOUT_S,
    Train,
    assert_close_results,
    assert_close_rows,
    committed_steps,
    devices_of,
    epoch_rows,
    free_port,
    kill_after_checkpoints,
    results,
    rows,
    wait_all,
)

pytestmark = pytest.mark.slow


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
    overrides = {**LONG, "train.epochs": "4", "train.members": "2"}
    reference = tmp_path / "reference"
    ref = Train(reference, overrides, cache=cache, devices=1, flags=MEMBERS, name="ref")
    workdir = tmp_path / "killed"
    ckpts = workdir / "members0" / "checkpoints"
    run = Train(workdir, overrides, cache=cache, devices=1, flags=MEMBERS, name="first")
    try:
        deadline = time.monotonic() + TIMEOUT_S
        kill_after_checkpoints(run, ckpts, 5, deadline)
    finally:
        run.kill()
    wait_all(ref)
    resume = committed_steps(ckpts)[-1]
    out = wait_all(Train(workdir, overrides, cache=cache, devices=1, flags=MEMBERS, name="again"))
    assert f"resuming from step {resume} of" in out[0], out[0][-3000:]
    for seed in ("seed0", "seed1"):
        assert rows(workdir / seed) == rows(reference / seed)
        assert results(workdir / seed) == results(reference / seed)
