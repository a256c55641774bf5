"""The run directory: what a run writes besides checkpoints, and reading a run back.

``RunDir(path)`` owns the files of one trained model:

- ``config.json``: the resolved config (every field); ``config()`` reads it back;
- ``run_info.json``: git commit (and whether the tree was dirty), library versions, devices,
  seed, label map, files per split/label/speaker, every skipped file with its reason;
- ``metrics.jsonl`` (+ ``tb/`` TensorBoard events): per log interval and per epoch, written by
  :class:`MetricWriter`; on resume the rows past the restored step are dropped first;
- ``model.msgpack``: the selected model's variables (see ``ser_jax.serving.restore``);
- ``results.json``: the headline numbers; its presence marks the run finished;
- ``run.lock``: held while a process trains into the directory, so a second ``ser-jax train``
  on the same directory is refused; the operating system drops it when the holder dies, so a
  killed job's lock is taken over by the next one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import jax
import ml_collections

from ser_jax import parallel
from ser_jax.config import get_config
from ser_jax.errors import ConfigError, SerJaxError

PACKAGES = (
    "ser_jax",
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "orbax-checkpoint",
    "grain",
    "numpy",
    "librosa",
)


class RunLockedError(SerJaxError):
    """Another process is training into the same run directory."""


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def finished(self) -> bool:
        return (self.path / "results.json").exists()

    def results(self) -> dict[str, Any]:
        return _read_json(self.path / "results.json")

    def config(self) -> ml_collections.ConfigDict:
        """The run's resolved config; fields added to the package since then get defaults."""
        config = ml_collections.ConfigDict(_read_json(self.path / "config.json"))
        fill_missing(config, get_config())
        return config

    def info(self) -> dict[str, Any]:
        return _read_json(self.path / "run_info.json")

    def label_names(self) -> tuple[str, ...]:
        label_map = self.info()["label_map"]
        return tuple(sorted(label_map, key=label_map.get))

    def check(self) -> None:
        """Refuse a folder that is not a run directory, naming what is missing."""
        if not self.path.is_dir():
            raise ConfigError(f"{self.path} is not a run directory: it does not exist")
        for name in ("config.json", "run_info.json"):
            if not (self.path / name).exists():
                raise ConfigError(f"{self.path} is not a run directory: {name} is missing")

    def write_start(self, config: Any, info: dict[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "config.json").write_text(config.to_json_best_effort(indent=2) + "\n")
        _write_json(self.path / "run_info.json", info)

    def write_results(self, results: dict[str, Any]) -> None:
        _write_json(self.path / "results.json", results)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold ``run.lock`` (process 0 only) for as long as the block runs."""
        if jax.process_index() != 0:
            yield
            return
        self.path.mkdir(parents=True, exist_ok=True)
        path = self.path / "run.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 4096, 0).decode(errors="replace").strip()
                raise RunLockedError(
                    f"{self.path} is being trained by another process ({holder or 'unknown'}); "
                    "wait for it to finish or stop it, or use another --workdir"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, _holder().encode(), 0)
            yield
        finally:
            os.close(fd)  # releases the lock


def fill_missing(config: Any, default: Any) -> None:
    """Add the fields of ``default`` that ``config`` lacks (recursively), in place."""
    with config.unlocked():
        for key in default.keys():
            if key not in config:
                config[key] = default[key]
            elif hasattr(default[key], "keys") and hasattr(config[key], "keys"):
                fill_missing(config[key], default[key])


def _holder() -> str:
    cmd = " ".join(Path(sys.argv[0]).name if i == 0 else a for i, a in enumerate(sys.argv))
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    return f"pid {os.getpid()} on {socket.gethostname()} since {started}: {cmd}"


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2) + "\n")
    tmp.replace(path)


def run_info(config: Any, data: Any) -> dict[str, Any]:
    """Provenance of a run: code version, libraries, devices, seed, labels, data summary."""

    def version(pkg: str) -> str | None:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return None

    commit, dirty = git_state()
    return {
        "command": command_line(),
        "git_commit": commit,
        "git_dirty": dirty,
        "python": sys.version.split()[0],
        "versions": {p: version(p) for p in PACKAGES},
        "devices": parallel.device_summary(),
        "processor": processor_name(),
        "seed": int(config.seed),
        "label_map": {name: i for i, name in enumerate(data.label_names)},
        "data": data.summary(),
    }


def command_line() -> str:
    """The command that runs this process, as a user would type it (``ser-jax VERB ...``)."""
    argv = list(sys.argv)
    if argv and (argv[0].endswith("ser-jax") or argv[0].endswith("__main__.py")):
        argv[0] = "ser-jax"
    return shlex.join(argv)


def git_state() -> tuple[str | None, bool]:
    """``(commit, dirty)`` of the checkout the package runs from, or ``(None, False)``."""
    here = Path(__file__).parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=here, capture_output=True, text=True, timeout=5
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None, False
    return commit or None, dirty


def processor_name() -> str:
    """The CPU model (XLA's CPU code differs by processor, so a figure names it)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class MetricWriter:
    """``metrics.jsonl`` plus TensorBoard events (tensorboardX), on process 0 only.

    Opening it drops the rows past ``resume_step``: a killed run may have written rows after
    its last checkpoint (and a torn last line), which the resumed run writes again.
    """

    def __init__(self, run: RunDir, *, enabled: bool, resume_step: int = 0):
        self.enabled = enabled
        if not enabled:
            return
        from tensorboardX import SummaryWriter

        drop_rows_after(run / "metrics.jsonl", resume_step)
        self._file = open(run / "metrics.jsonl", "a")
        self._tb = SummaryWriter(
            str(run / "tb"), purge_step=resume_step + 1 if resume_step else None
        )

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        for k, v in row.items():
            if (
                isinstance(v, int | float)
                and not isinstance(v, bool)
                and k not in ("step", "epoch")
            ):
                self._tb.add_scalar(k, v, row["step"])

    def close(self) -> None:
        if self.enabled:
            self._file.close()
            self._tb.close()


def drop_rows_after(path: Path, step: int) -> None:
    """Keep the rows of ``path`` up to ``step``, the step a run resumes from."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # the line a kill cut short
            continue
        if int(row.get("step", 0)) <= step:
            kept.append(line + "\n")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(kept))
    tmp.replace(path)
