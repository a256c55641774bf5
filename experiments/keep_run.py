"""Keep a finished run directory's records in the repository: ``results/<name>/``.

Copies every JSON, JSONL and Markdown file of a run directory (a ``train``, ``train --seeds``,
``cv``, ``ensemble`` or ``select`` directory, with its fold and seed runs), and nothing else:
no checkpoints, weights, event files or figures. ``kept.json`` records where the run was and its
wall time, read from the directory's own files (first file written to last), since the copies
lose their times. ``experiments/render_results.py`` reads these records.

    python experiments/keep_run.py runs/loso/cnn_lstm results/loso/cnn_lstm
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

KEEP = {".json", ".jsonl", ".md"}
SKIP_DIRS = {"checkpoints", "tb", "xla"}


def records(run_dir: Path) -> list[Path]:
    """The record files under ``run_dir`` (relative paths), sorted."""
    out = []
    for path in run_dir.rglob("*"):
        rel = path.relative_to(run_dir)
        if path.is_file() and path.suffix in KEEP and not SKIP_DIRS & set(rel.parts):
            out.append(rel)
    return sorted(out)


def wall_seconds(run_dir: Path, files: list[Path]) -> float:
    """Seconds from the first record written to the last (the run's wall time)."""
    times = [(run_dir / f).stat().st_mtime for f in files]
    configs = [(run_dir / f).stat().st_mtime for f in files if f.name == "config.json"]
    return round(max(times) - min(configs or times), 1)


def keep(run_dir: Path, dest: Path) -> int:
    """Copy ``run_dir``'s records into ``dest`` (emptied first); the number of files."""
    if not run_dir.is_dir():
        raise SystemExit(f"error: {run_dir}: no such run directory")
    files = records(run_dir)
    if not files:
        raise SystemExit(f"error: {run_dir}: no JSON records (not a run directory?)")
    if dest.exists():
        shutil.rmtree(dest)
    for rel in files:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(run_dir / rel, dest / rel)
    kept = {"source": str(run_dir), "wall_seconds": wall_seconds(run_dir, files)}
    (dest / "kept.json").write_text(json.dumps(kept, indent=2) + "\n")
    return len(files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("dest", type=Path, help="results/<name>")
    args = parser.parse_args()
    n = keep(args.run_dir, args.dest)
    print(f"kept {n} files of {args.run_dir} in {args.dest}")


if __name__ == "__main__":
    main()
