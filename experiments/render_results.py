"""Render ``docs/results.md`` from the run records listed in ``docs/results.toml``.

Every figure comes from a run's own JSON (``results/<run>/``, kept there by
``experiments/keep_run.py``): nothing is typed by hand. A row whose records are missing says so
and gives the command that makes them. ``--check`` exits 1 when ``docs/results.md`` is not what
the records render (the test suite runs it).

    python experiments/render_results.py            # rewrite docs/results.md
    python experiments/render_results.py --check    # compare only
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import tomllib

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "docs" / "results.toml"
OUT = REPO / "docs" / "results.md"


def read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


def fig(stat: dict[str, Any] | float | None) -> str:
    """``0.759`` for one value, ``0.759 ± 0.011`` for a mean over several."""
    if stat is None:
        return "–"
    if isinstance(stat, int | float):
        return f"{stat:.3f}"
    if stat.get("n", 1) > 1:
        return f"{stat['mean']:.3f} ± {stat['std']:.3f}"
    return f"{stat['mean']:.3f}"


def minutes(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds / 60:.0f} min"


def made_by(run: Path) -> str:
    """The commit(s) and processor of every ``run_info.json`` under ``run``."""
    infos = [read_json(p) for p in sorted(run.rglob("run_info.json"))]
    commits = sorted({i["git_commit"][:7] + ("+" if i.get("git_dirty") else "") for i in infos})
    cpus = sorted({i.get("processor") or i["devices"]["device_kind"] for i in infos})
    return f"{'/'.join(commits)} on {'/'.join(cpus)}" if infos else "–"


def cv_row(run: Path, summary: dict[str, Any]) -> dict[str, str]:
    def pooled(key: str, metric: str = "test_uar") -> str:
        return fig(summary.get(key, {}).get(metric))

    return {
        "protocol": f"LOSO, {len(summary['seeds'])} seed(s)",
        "uar": pooled("pooled"),
        "accuracy": pooled("pooled", "test_accuracy"),
        "f1": pooled("pooled", "test_macro_f1"),
        "adapted": pooled("pooled_speaker_bn"),
        "tta": pooled("pooled_tta"),
    }


def seeds_row(run: Path, summary: dict[str, Any]) -> dict[str, str]:
    return {
        "protocol": f"stratified 70/15/15, {len(summary['seeds'])} seeds",
        "uar": fig(summary.get("test_uar")),
        "accuracy": fig(summary.get("test_accuracy")),
        "f1": fig(summary.get("test_macro_f1")),
        "adapted": fig(summary.get("speaker_bn", {}).get("test_uar")),
        "tta": fig(summary.get("tta", {}).get("test_uar")),
    }


def nested_row(run: Path, summary: dict[str, Any]) -> dict[str, str]:
    nested = summary["nested"]
    adapted = summary.get("adapted", {}).get("nested", {})
    return {
        "protocol": f"nested LOSO, {len(summary.get('seeds', [0]))} seed(s)",
        "uar": fig(nested.get("uar")),
        "accuracy": fig(nested.get("accuracy")),
        "f1": fig(nested.get("macro_f1")),
        "adapted": fig(adapted.get("uar")),
        "tta": "chosen",
    }


KINDS = {"cv_summary.json": cv_row, "summary.json": seeds_row, "nested_summary.json": nested_row}


def figures(run: Path) -> dict[str, str] | None:
    """A row's figures from the first summary file ``run`` holds, or None."""
    for name, make in KINDS.items():
        summary = read_json(run / name)
        if summary is not None:
            kept = read_json(run / "kept.json") or {}
            row = make(run, summary)
            row["wall"] = minutes(kept.get("wall_seconds"))
            row["made_by"] = made_by(run)
            row["command"] = f"`{summary.get('command', '')}`"
            return row
    return None


COLUMNS = {
    "model": "model",
    "protocol": "protocol",
    "uar": "UAR",
    "accuracy": "accuracy",
    "f1": "macro-F1",
    "adapted": "UAR, speaker-adapted",
    "tta": "UAR, test-time warps",
    "paper": "paper",
    "wall": "wall",
    "made_by": "made by",
    "command": "command",
}


def render_table(table: dict[str, Any]) -> list[str]:
    cols = table.get("columns", list(COLUMNS))
    lines = [f"## {table['title']}", "", table.get("text", "").strip(), ""]
    lines += ["| " + " | ".join(COLUMNS[c] for c in cols) + " |", "|" + "---|" * len(cols)]
    for row in table["rows"]:
        run = REPO / "results" / row["run"]
        got = figures(run)
        if got is None:
            got = {c: "–" for c in COLUMNS}
            got["protocol"] = f"not run yet (`results/{row['run']}` missing)"
            got["command"] = f"`{row.get('command', '')}`"
        got["model"] = row["label"]
        got["paper"] = row.get("paper", "")
        lines.append("| " + " | ".join(got.get(c, "") for c in cols) + " |")
    return [*lines, ""]


def render() -> str:
    data = tomllib.loads(DATA.read_text())
    lines = [
        "# Results",
        "",
        "<!-- Made by `python experiments/render_results.py` from docs/results.toml and the run",
        "records under results/; edit those, not this file. -->",
        "",
        data["intro"].strip(),
        "",
    ]
    for table in data["table"]:
        lines += render_table(table)
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare; exit 1 if stale")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            sys.exit(f"{OUT}: stale; run python experiments/render_results.py")
        print(f"{OUT}: up to date")
        return
    OUT.write_text(text)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
