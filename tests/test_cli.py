"""The command line as a user meets it: help, and the project's errors as one line, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def ser_jax(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "JAX_PLATFORMS": "cpu", **(env or {})}
    full_env.pop("SER_JAX_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "ser_jax", *args],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [x for x in proc.stderr.splitlines() if x.startswith("error: ")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_help_lists_every_verb_with_one_line():
    from ser_jax.cli import VERBS

    proc = ser_jax("--help")
    assert proc.returncode == 0
    for name, verb in VERBS.items():
        assert f"  {name}" in proc.stdout and verb.summary in proc.stdout


def test_verb_help_shows_its_flags_and_an_example():
    proc = ser_jax("cv", "--help")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "--seeds" in out and "--workdir" in out and "--config.X.Y=V" in out
    assert "--wav" not in out  # another verb's flag
    assert "example:" in out and "ser-jax cv --config" in out


def test_every_verb_help_names_only_defined_flags():
    """Each verb's help is built from its flag list: a flag the verb names but nobody defined
    (the ``package`` verb's --loso once) would crash ``ser-jax VERB --help`` and the verb."""
    from ser_jax.cli import VERBS, verb_help

    for name, verb in VERBS.items():
        text = verb_help(verb)
        assert text.startswith(f"ser-jax {name}: ")
        for flag in verb.flags:
            assert f"--{flag}" in text, (name, flag)


def test_config_field_typo_names_the_closest_field():
    line = one_line_error(ser_jax("train", "--config.train.lerning_rate=0.1"))
    assert "lerning_rate" in line and "did you mean 'learning_rate'" in line


def test_typo_in_a_config_file_is_caught_too(tmp_path):
    cfg = tmp_path / "typo.py"
    cfg.write_text(
        "from ser_jax.config import get_config as base\n"
        "def get_config():\n"
        "    c = base()\n"
        "    c.model.dropuot = 0.3\n"
        "    return c\n"
    )
    line = one_line_error(ser_jax("train", f"--config={cfg}", f"--workdir={tmp_path / 'run'}"))
    assert "model.dropuot" in line and "did you mean 'dropout'" in line


def test_bad_data_root_and_missing_run_are_one_line(tmp_path):
    line = one_line_error(
        ser_jax(
            "train",
            "--config.data.corpus=emodb",
            f"--config.data.root={tmp_path / 'nowhere'}",
            f"--workdir={tmp_path / 'run'}",
        )
    )
    assert "data.root=" in line and "does not exist" in line
    line = one_line_error(ser_jax("evaluate", f"--run={tmp_path / 'norun'}"))
    assert "is not a run directory" in line
    line = one_line_error(ser_jax("ensemble", f"--out={tmp_path / 'ens'}", str(tmp_path)))
    assert str(tmp_path) in line and "not a finished cv run directory" in line


def test_debug_shows_the_traceback(tmp_path):
    proc = ser_jax("evaluate", f"--run={tmp_path / 'norun'}", "--debug")
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "ConfigError" in proc.stderr


@pytest.mark.parametrize(
    "args", [("predict", "--run=x"), ("tfds-build",), ("ensemble", "--out=x"), ("ensemble", "a")]
)
def test_missing_argument_is_a_usage_error(args):
    line = one_line_error(ser_jax(*args))
    assert "needs" in line


def test_cpu_layout_one_device_per_core_dividing_the_batch():
    from ser_jax.cli import cpu_devices

    assert cpu_devices(2, 32, 0) == 2
    assert cpu_devices(2, 15, 0) == 1  # an odd batch cannot be split in two
    assert cpu_devices(6, 32, 0) == 4
    assert cpu_devices(64, 32, 0) == 8
    assert cpu_devices(2, 15, 8) == 2  # models, not rows, are split over the devices
    assert cpu_devices(1, 32, 8) == 1


def test_train_reports_the_layout_it_chose(tmp_path):
    """The CLI on a CPU-only machine splits it into one device per core (the run's
    run_info.json says how many devices trained it)."""
    import json

    env = {
        k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_COMPILATION_CACHE_DIR")
    }
    env.update(JAX_PLATFORMS="cpu", SER_JAX_CACHE=str(tmp_path / "cache"))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ser_jax",
            "train",
            "--config.train.epochs=1",
            "--config.train.progress=False",
            "--config.data.demo.speakers=2",
            "--config.data.demo.utterances_per_class=4",
            # a tiny network: the layout is the point here, not the default model's compile
            "--config.frontend.n_mels=32",
            "--config.model.filters=(4,4,8)",
            "--config.model.pools=((2,2),(2,2),(2,2))",
            "--config.model.lstm_hidden=16",
            f"--workdir={tmp_path / 'run'}",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    devices = json.loads((tmp_path / "run" / "run_info.json").read_text())["devices"]
    cores = len(os.sched_getaffinity(0))
    from ser_jax.cli import cpu_devices

    assert devices["device_count"] == cpu_devices(cores, 16, 0)
    # compiled programs were kept in the default cache folder, for the next run
    assert any((tmp_path / "cache" / "xla").iterdir())


def test_compilation_cache_folder_and_opt_out(tmp_path, monkeypatch):
    import jax

    from ser_jax.cli import compilation_cache

    before = jax.config.jax_compilation_cache_dir, jax.config.jax_enable_compilation_cache
    try:
        monkeypatch.setenv("SER_JAX_CACHE", str(tmp_path / "c"))
        monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
        assert compilation_cache(multi_process=True) is None  # not by default on a cluster
        assert compilation_cache() == str(tmp_path / "c" / "xla")
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "c" / "xla")
        monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "mine"))
        assert compilation_cache() == str(tmp_path / "mine")  # the user's choice is kept
        monkeypatch.setenv("SER_JAX_XLA_CACHE", "0")
        assert compilation_cache() is None
        assert jax.config.jax_enable_compilation_cache is False
    finally:
        jax.config.update("jax_compilation_cache_dir", before[0])
        jax.config.update("jax_enable_compilation_cache", before[1])
