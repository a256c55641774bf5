"""Render ``docs/results.md`` and the README's results block from the run records listed in
``docs/results.toml``. Every figure comes from a run's own JSON (``results/<run>/``, kept by
``experiments/keep_run.py``); nothing is typed by hand; a row without records says so.
``--check`` exits 1 when either output is not what the records render (a test runs it).

    python experiments/render_results.py [--check]
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import tomllib

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "docs" / "results.toml"
OUT = REPO / "docs" / "results.md"
README = REPO / "README.md"
MARKS = ("<!-- results:start (python experiments/render_results.py) -->", "<!-- results:end -->")


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


def seeds(summary: dict[str, Any]) -> str:
    return f"{len(summary.get('seeds', [0]))} seed" + ("s" * (len(summary.get("seeds", [0])) > 1))


def minutes(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds / 60:.0f} min"


def made_by(run: Path) -> str:
    """The commit(s) and processor of every ``run_info.json`` under ``run``."""
    infos = [read_json(p) for p in sorted(run.rglob("run_info.json"))]
    commits = sorted({i["git_commit"][:7] + ("+" if i.get("git_dirty") else "") for i in infos})
    cpus = sorted({i.get("processor") or i["devices"]["device_kind"] for i in infos})
    return f"{'/'.join(commits)} on {'/'.join(cpus)}" if infos else "–"


def features_note(run: Path) -> str:
    """`` (features N s)``: the openSMILE extraction a run's folds spent (their ``seconds``)."""
    got = [(read_json(p) or {}).get("seconds", {}) for p in sorted(run.rglob("results.json"))]
    spent = [g["features"] for g in got if "features" in g]
    return f" (features {sum(spent):.0f} s)" if spent else ""


def metrics_row(protocol: str, plain: dict, adapted: dict, tta: dict) -> dict[str, str]:
    """Figures of ``test_*`` statistics: plain, speaker-adapted and with test-time warps."""
    return {
        "protocol": protocol,
        "uar": fig(plain.get("test_uar")),
        "accuracy": fig(plain.get("test_accuracy")),
        "f1": fig(plain.get("test_macro_f1")),
        "adapted": fig(adapted.get("test_uar")),
        "tta": fig(tta.get("test_uar")),
    }


def cv_row(run: Path, s: dict[str, Any]) -> dict[str, str]:
    return metrics_row(
        f"LOSO, {seeds(s)}", s["pooled"], s.get("pooled_speaker_bn", {}), s.get("pooled_tta", {})
    )


def seeds_row(run: Path, s: dict[str, Any]) -> dict[str, str]:
    protocol = f"stratified 70/15/15, {seeds(s)}"
    return metrics_row(protocol, s, s.get("speaker_bn", {}), s.get("tta", {}))


def nested_row(run: Path, summary: dict[str, Any]) -> dict[str, str]:
    nested = summary["nested"]
    adapted = summary.get("adapted", {}).get("nested", {})
    return {
        "protocol": f"nested LOSO, {seeds(summary)}",
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
            row["wall"] = minutes(kept.get("wall_seconds")) + features_note(run)
            row["made_by"] = made_by(run)
            row["command"] = f"`{summary.get('command', '')}`"
            return row
    return None


COLUMNS = dict(model="model", protocol="protocol", uar="UAR", accuracy="accuracy")
COLUMNS |= dict(f1="macro-F1", adapted="UAR, speaker-adapted", tta="UAR, test-time warps")
COLUMNS |= dict(paper="paper", effect="effect on UAR", wall="wall", made_by="made by")
COLUMNS |= dict(command="command")


def render_table(table: dict[str, Any]) -> list[str]:
    cols = table.get("columns", list(COLUMNS))
    lines = [f"## {table['title']}", "", table.get("text", "").strip(), ""]
    lines += ["| " + " | ".join(COLUMNS[c] for c in cols) + " |", "|" + "---|" * len(cols)]
    for row in table["rows"]:
        run = REPO / "results" / row["run"]
        got = figures(run)
        if got is None:
            got = {c: "–" for c in COLUMNS} | {"command": f"`{row.get('command', '')}`"}
            got["protocol"] = f"not run yet (`results/{row['run']}` missing)"
        got["model"], got["paper"] = row["label"], row.get("paper", "")
        if "–" not in (got["uar"], got.get(row.get("lever"), "–")):  # a lever: its figure - base
            got["effect"] = f"{float(got[row['lever']][:5]) - float(got['uar'][:5]):+.3f}"
        lines.append("| " + " | ".join(got.get(c, "") for c in cols) + " |")
    return [*lines, ""]


def readme_row(row: dict[str, Any]) -> str:
    """One README row: the LOSO (or nested) and seed-protocol figures of the row's runs."""
    cells = {"loso": "–", "adapted": "–", "seeds": "–", "made_by": [], "wall": []}
    for name in row["runs"]:
        got = figures(REPO / "results" / name)
        if got is None:
            continue
        if got["protocol"].startswith("stratified"):
            cells["seeds"] = f"{got['accuracy']} acc, {got['uar']} UAR ({got['protocol']})"
        else:
            cells["loso"], cells["adapted"] = f"{got['uar']} ({got['protocol']})", got["adapted"]
        cells["made_by"].append(got["made_by"])
        cells["wall"].append(got["wall"])
    made = "; ".join(cells["made_by"]) or "not run yet"
    wall = " + ".join(cells["wall"]) or "–"
    cols = [row["label"], cells["loso"], cells["adapted"], cells["seeds"], row.get("paper", "")]
    return "| " + " | ".join([*cols, wall, made]) + " |"


def render_readme(text: str, rows: list[dict[str, Any]]) -> str:
    """``text`` (the README) with the block between ``MARKS`` rendered from ``rows``."""
    head, rest = text.split(MARKS[0], 1)
    _, tail = rest.split(MARKS[1], 1)
    table = [
        "| model | LOSO UAR | speaker-adapted | stratified seeds | paper | wall | made by |",
        "|---|---|---|---|---|---|---|",
        *(readme_row(r) for r in rows),
    ]
    return head + MARKS[0] + "\n" + "\n".join(table) + "\n" + MARKS[1] + tail


def render() -> str:
    data = tomllib.loads(DATA.read_text())
    made = "<!-- Made by `python experiments/render_results.py` from docs/results.toml and the run"
    lines = ["# Results", "", made, "records under results/; edit those, not this file. -->"]
    lines += ["", data["intro"].strip(), ""]
    for table in data["table"]:
        lines += render_table(table)
    lines += data.get("figures", "").strip().splitlines()  # figures a command made, with it
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare; exit 1 if stale")
    args = parser.parse_args()
    outputs = {
        OUT: render(),
        README: render_readme(README.read_text(), tomllib.loads(DATA.read_text())["readme"]),
    }
    stale = [p for p, text in outputs.items() if not p.exists() or p.read_text() != text]
    if args.check:
        if stale:
            sys.exit(f"stale: {', '.join(map(str, stale))}; run experiments/render_results.py")
        print("docs/results.md and the README's results block are up to date")
        return
    for path in stale:
        path.write_text(outputs[path])
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
