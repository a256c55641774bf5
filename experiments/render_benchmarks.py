"""Render the README's benchmark block from the benchmark reports kept under ``results/bench/``
(each written by a benchmark's ``--json``, with its command, commit and processor) and the LOSO
records' wall time. Every figure comes from those files; a goal without a report says so.
Reports from another machine live in a folder of their own under ``results/bench/`` (for
example ``results/bench/amd-epyc/``); each benchmark gets one row per machine that ran it.
``--check`` exits 1 when the README is not what the reports render (a test runs it).

    python experiments/render_benchmarks.py [--check]
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "results" / "bench"
README = REPO / "README.md"
MARKS = ("<!-- bench:start (python experiments/render_benchmarks.py) -->", "<!-- bench:end -->")
# `ser-jax cv --config experiments/configs/best.py --seeds 1 --config.train.members=8`
LOSO = REPO / "results" / "bench" / "loso_best"


REPORTS = ("train_step_best.json", "train_step_zhao.json", "members.json")


def machines() -> list[Path]:
    """The folders of benchmark reports: ``results/bench/`` itself, then every subfolder that
    holds one of ``REPORTS`` (run directories such as the LOSO record hold none)."""
    subs = [
        p for p in sorted(BENCH.iterdir()) if p.is_dir() and any((p / r).exists() for r in REPORTS)
    ]
    return [BENCH, *subs]


def read(folder: Path, name: str) -> dict[str, Any] | None:
    path = folder / name
    return json.loads(path.read_text()) if path.exists() else None


def made_by(report: dict[str, Any]) -> str:
    m = report["made_by"]
    commit = (m["git_commit"] or "?")[:7] + ("+" if m["git_dirty"] else "")
    load = report["info"].get("load_average_before", "?").split()[0]
    return f"`{m['command']}`, {commit} on {m['processor']}, load {load}"


def one_model(folder: Path, name: str) -> tuple[str, str, str] | None:
    """The best JAX layout's network step over PyTorch eager's, the roofline share, and where
    the report comes from."""
    report = read(folder, name)
    if report is None:
        return None
    rows = [r for r in report["rows"] if r["step"] == "net" and r["worker"].startswith("jax")]
    best = max(rows, key=lambda r: r["vs_torch"] or 0.0)
    vs_torch = f"{best['vs_torch']:.2f}x ({best['worker']}; {best['samples_per_s']:.1f} vs "
    vs_torch += f"{best['samples_per_s'] / best['vs_torch']:.1f} samples/s)"
    roof = report["roofline"]
    share = max(v["share"] for v in roof["rows"].values())
    roof_text = f"{100 * share:.0f}% ({max(v['gflops'] for v in roof['rows'].values()):.0f} of "
    roof_text += f"{roof['gemm_gflops']:.0f} GFLOP/s)"
    return vs_torch, roof_text, made_by(report)


def members(report: dict[str, Any], n: int) -> str | None:
    """``n`` members in one step over the same models one after another, the best layout."""
    rows = [r for r in report["rows"] if r["models"] == n and r["row"] != "JAX, one model"]
    if not rows:
        return None
    best = max(rows, key=lambda r: r["vs_sequential_jax"])
    return f"{best['vs_sequential_jax']:.2f}x ({best['row']})"


def loso_wall() -> tuple[str, str] | None:
    kept, summary = LOSO / "kept.json", LOSO / "cv_summary.json"
    if not kept.exists() or not summary.exists():
        return None
    infos = [json.loads(p.read_text()) for p in sorted(LOSO.rglob("run_info.json"))]
    commit = sorted({i["git_commit"][:7] for i in infos})
    wall = json.loads(kept.read_text())["wall_seconds"]
    summary = json.loads(summary.read_text())
    uar = summary["pooled"]["test_uar"]["mean"]
    got = f"{wall / 60:.0f} min (pooled UAR {uar:.3f})"
    return got, f"`{summary['command']}`, {'/'.join(commit)} on {infos[0]['processor']}"


def model_rows(folders: list[Path]) -> list[tuple[str, str, str, str]]:
    """One model vs PyTorch (best and Zhao networks) and the roofline share, a row per machine
    that ran each (a goal that no machine ran still gets its row, "not run")."""
    out = []
    for label, name, goal in (
        ("one model vs PyTorch eager, best config's network", "train_step_best.json", "≥ 1.5x"),
        ("one model vs PyTorch eager, Zhao network", "train_step_zhao.json", "≥ 2x"),
    ):
        got = [g for g in (one_model(f, name) for f in folders) if g] or [None]
        out += [(label, g[0] if g else "–", goal, g[2] if g else "not run") for g in got]
        if name.endswith("best.json"):
            roof = "share of the GEMM roofline, best network"
            out += [(roof, g[1] if g else "–", "≥ 60%", g[2] if g else "not run") for g in got]
    return out


def rows() -> list[str]:
    folders = machines()
    out = model_rows(folders)
    label = "8 members in one step vs 8 one after another"
    got = [
        (members(report, 8) or "–", made_by(report))
        for f in folders
        if (report := read(f, "members.json"))
    ] or [("–", "not run")]
    out += [(label, g, "≥ 2x", by) for g, by in got]
    wall = loso_wall()
    out.append(
        (
            "best-config LOSO, one seed, wall",
            wall[0] if wall else "–",
            "≤ 15 min",
            wall[1] if wall else "not run",
        )
    )
    lines = ["| benchmark | measured | goal | made by |", "|---|---|---|---|"]
    return lines + [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in out]


def render_readme(text: str) -> str:
    head, rest = text.split(MARKS[0], 1)
    _, tail = rest.split(MARKS[1], 1)
    return head + MARKS[0] + "\n" + "\n".join(rows()) + "\n" + MARKS[1] + tail


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare; exit 1 if stale")
    args = parser.parse_args()
    text = README.read_text()
    rendered = render_readme(text)
    if args.check:
        if rendered != text:
            sys.exit("stale: README.md's benchmark block; run experiments/render_benchmarks.py")
        print("the README's benchmark block is up to date")
    elif rendered != text:
        README.write_text(rendered)
        print(f"wrote {README}")


if __name__ == "__main__":
    main()
