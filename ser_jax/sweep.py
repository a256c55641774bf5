"""Flag sweeps: a sweep file names a base config and a grid (or random search) of overrides.

A sweep file is Python with ``get_sweep()`` returning a dict::

    def get_sweep():
        return {
            "name": "lr_dropout",
            "config": "experiments/configs/best.py",
            "grid": {"train.learning_rate": [1e-3, 3e-3], "model.dropout": [0.0, 0.3]},
            # or "random": {"train.learning_rate": ("loguniform", 1e-4, 1e-2)}, "trials": 8,
            # or "points": [{}, {"model.pooling": "attention"}, {"train.mixup_alpha": 0.2}],
            "seeds": 3,
            "fixed": {"train.epochs": 30},
            # "verb": "cv",  # each point a speaker cross-validation (cv_summary.json pooled)
        }

``python -m ser_jax.sweep FILE`` runs every point one after another (each ``ser-jax train`` in
its own process, into ``runs/sweeps/<name>/<point>``), skipping finished points, then writes
``results.csv`` and ``results.md``: one row per point with its overrides and the test metrics'
mean ± std over seeds. ``--emit_slurm`` writes a SLURM array script instead (one task per
point, each through ``launch.sh train``); ``--aggregate`` only rebuilds the table.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from absl import app, flags

from ser_jax.errors import ConfigError
from ser_jax.evaluation.tables import HEADLINE, fmt, mean_std, write_tables

FLAGS = flags.FLAGS
flags.DEFINE_bool("dry_run", False, "Print the commands only.")
flags.DEFINE_bool("emit_slurm", False, "Write a SLURM array script instead of running.")
flags.DEFINE_bool("aggregate", False, "Only collect finished points into the results table.")
flags.DEFINE_string("root", "runs/sweeps", "Folder for sweep run directories.")


def load_sweep(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"sweep file {path} does not exist")
    spec = importlib.util.spec_from_file_location(f"sweep_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_sweep"):
        raise ConfigError(f"{path} has no get_sweep()")
    sweep = dict(module.get_sweep())
    for key in ("name", "config"):
        if key not in sweep:
            raise ConfigError(f"{path}: get_sweep() must return a '{key}'")
    if sum(k in sweep for k in ("grid", "random", "points")) != 1:
        raise ConfigError(f"{path}: give exactly one of 'grid', 'random' or 'points'")
    return sweep


def _draw(spec: tuple, rng: np.random.Generator) -> Any:
    kind, *args = spec
    if kind == "choice":
        return args[0][int(rng.integers(len(args[0])))]
    if kind == "uniform":
        return float(rng.uniform(args[0], args[1]))
    if kind == "loguniform":
        return float(np.exp(rng.uniform(np.log(args[0]), np.log(args[1]))))
    raise ConfigError(f"unknown random spec {spec!r}: use choice, uniform or loguniform")


def points(sweep: dict[str, Any]) -> list[dict[str, Any]]:
    """The list of override dicts, in a fixed order (grid: product order; random: seeded;
    points: as listed, e.g. one lever at a time against a base)."""
    if "points" in sweep:
        return [dict(p) for p in sweep["points"]]
    if "grid" in sweep:
        keys = list(sweep["grid"])
        return [
            dict(zip(keys, combo, strict=True))
            for combo in itertools.product(*sweep["grid"].values())
        ]
    rng = np.random.default_rng(int(sweep.get("search_seed", 0)))
    return [
        {k: _draw(tuple(v), rng) for k, v in sweep["random"].items()}
        for _ in range(int(sweep.get("trials", 8)))
    ]


def _value(v: Any) -> str:
    if isinstance(v, (tuple, list)):
        return "(" + ",".join(_value(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    return str(v)


def point_name(overrides: dict[str, Any]) -> str:
    parts = [f"{k.split('.')[-1]}={_value(v)}" for k, v in overrides.items()]
    name = "_".join(parts) or "base"
    return "".join(c if c.isalnum() or c in "=._-" else "-" for c in name)[:120]


def command(sweep: dict[str, Any], overrides: dict[str, Any], workdir: Path) -> list[str]:
    verb = str(sweep.get("verb", "train"))
    cmd = [sys.executable, "-m", "ser_jax", verb, f"--config={sweep['config']}"]
    for k, v in {**sweep.get("fixed", {}), **overrides}.items():
        cmd.append(f"--config.{k}={_value(v)}")
    cmd += [f"--seeds={int(sweep.get('seeds', 1))}", f"--workdir={workdir}"]
    return cmd


def collect(sweep: dict[str, Any], root: Path) -> list[dict[str, Any]]:
    rows = []
    for overrides in points(sweep):
        workdir = root / point_name(overrides)
        row: dict[str, Any] = {
            "point": point_name(overrides),
            **{k: _value(v) for k, v in overrides.items()},
        }
        cv = workdir / "cv_summary.json"
        if sweep.get("verb") == "cv":
            if not cv.exists():
                continue
            summary = json.loads(cv.read_text())
            row["seeds"] = len(summary["seeds"])
            row["folds"] = len(summary["per_fold"]) // max(len(summary["seeds"]), 1)
            for m in HEADLINE:  # pooled over the folds, mean ± std over seeds
                row[m] = fmt(summary["pooled"][m])
            rows.append(row)
            continue
        results = sorted(workdir.rglob("results.json"))
        if not results:
            continue
        runs = [json.loads(p.read_text()) for p in results]
        row["seeds"] = len(runs)
        for m in HEADLINE:
            row[m] = fmt(mean_std([r[m] for r in runs]))
        rows.append(row)
    return rows


def write_results(rows: list[dict[str, Any]], root: Path, sweep: dict[str, Any]) -> None:
    if not rows:
        print("no finished points yet")
        return
    title = f"Sweep `{sweep['name']}` over `{sweep['config']}` (fixed: {sweep.get('fixed', {})})"
    print(write_tables(rows, root / "results.csv", root / "results.md", title))


def emit_slurm(sweep: dict[str, Any], root: Path) -> Path:
    pts = points(sweep)
    script = root / "sweep.sbatch"
    cmds = []
    for overrides in pts:
        cmd = command(sweep, overrides, root / point_name(overrides))
        cmds.append(shlex.join(["./launch.sh", "train", *cmd[4:]]))
    body = "\n".join(f"  {i}) {c} ;;" for i, c in enumerate(cmds))
    script.write_text(
        "#!/usr/bin/env bash\n"
        f"#SBATCH --job-name=sweep-{sweep['name']}\n"
        f"#SBATCH --array=0-{len(pts) - 1}\n"
        "#SBATCH --output=slurm-%A_%a.out\n"
        "set -euo pipefail\n"
        f"cd {shlex.quote(str(Path.cwd()))}\n"
        'case "$SLURM_ARRAY_TASK_ID" in\n'
        f"{body}\n"
        "esac\n"
    )
    return script


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise app.UsageError(
            "usage: python -m ser_jax.sweep SWEEP_FILE [--dry_run|--emit_slurm|--aggregate]"
        )
    sweep = load_sweep(argv[1])
    root = Path(FLAGS.root) / str(sweep["name"])
    root.mkdir(parents=True, exist_ok=True)
    if FLAGS.emit_slurm:
        print(f"wrote {emit_slurm(sweep, root)}; submit it with sbatch")
        return
    if not FLAGS.aggregate:
        pts = points(sweep)
        for i, overrides in enumerate(pts):
            workdir = root / point_name(overrides)
            cmd = command(sweep, overrides, workdir)
            print(f"[{i + 1}/{len(pts)}] {shlex.join(cmd)}", flush=True)
            if not FLAGS.dry_run:
                subprocess.run(cmd, check=True)
    if not FLAGS.dry_run:
        write_results(collect(sweep, root), root, sweep)


if __name__ == "__main__":
    app.run(main)
