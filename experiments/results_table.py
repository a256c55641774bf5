"""Print the README's results table from the run directories that hold the numbers.

    python experiments/results_table.py [RUNS_DIR]

Reads ``<RUNS_DIR>/<name>/summary.json`` (``ser-jax train --seeds N``) and
``<RUNS_DIR>/<name>/cv_summary.json`` (``ser-jax cv``) for the experiments listed below and
prints one Markdown row per experiment with the command that reproduces it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ser_jax.tables import fmt as _fmt

EXPERIMENTS = (
    (
        "matlab",
        "seed protocol: MATLAB example (stratified 70/15/15, 3 epochs)",
        "ser-jax train --config experiments/configs/matlab.py --config.seed=10 --seeds 3 "
        "--workdir runs/matlab",
    ),
    (
        "zhao2019",
        "Zhao et al. 2019 2-D CNN LSTM, stratified 70/15/15, 30 epochs",
        "ser-jax train --config experiments/configs/zhao2019.py --config.seed=10 --seeds 3 "
        "--workdir runs/zhao2019",
    ),
    (
        "best",
        "best config, stratified 70/15/15 (the seed protocol's split)",
        "ser-jax train --config experiments/configs/best.py --config.seed=10 --seeds 3 "
        "--workdir runs/best",
    ),
    (
        "best_loso",
        "best config, leave-one-speaker-out over the 8 speakers",
        "ser-jax cv --config experiments/configs/best.py --workdir runs/best_loso",
    ),
)


def fmt(ms: dict) -> str:
    return _fmt(ms, digits=3)


def rows(root: Path) -> list[str]:
    out = [
        "| experiment | runs | test accuracy | test UAR | test macro-F1 | command |",
        "|---|---|---|---|---|---|",
    ]
    for name, what, cmd in EXPERIMENTS:
        summary, cv = root / name / "summary.json", root / name / "cv_summary.json"
        if summary.exists():
            s = json.loads(summary.read_text())
            runs = (
                f"{len(s['seeds'])} seeds ({', '.join(map(str, s['seeds']))}), each its own split"
            )
            metrics = [s["test_accuracy"], s["test_uar"], s["test_macro_f1"]]
        elif cv.exists():
            s = json.loads(cv.read_text())
            p = s["pooled"]
            runs = f"{len(s['per_fold'])} folds × {len(s['seeds'])} seed(s), pooled"
            metrics = [p["test_accuracy"], p["test_uar"], p["test_macro_f1"]]
            f = s["fold_mean"]
            out.append(
                f"| {what} | {runs} | {fmt(metrics[0])} | {fmt(metrics[1])} | {fmt(metrics[2])} "
                f"| `{cmd}` |"
            )
            out.append(
                f"| ↳ same, mean ± std over folds | {len(s['per_fold'])} folds | "
                f"{fmt(f['test_accuracy'])} | {fmt(f['test_uar'])} | {fmt(f['test_macro_f1'])} | "
                f"`{root / name / 'cv_summary.md'}` |"
            )
            continue
        else:
            out.append(f"| {what} | not run yet | | | | `{cmd}` |")
            continue
        out.append(
            f"| {what} | {runs} | {fmt(metrics[0])} | {fmt(metrics[1])} | {fmt(metrics[2])} "
            f"| `{cmd}` |"
        )
    return out


if __name__ == "__main__":
    print("\n".join(rows(Path(sys.argv[1] if len(sys.argv) > 1 else "runs"))))
