"""Summaries over runs: the headline metrics, mean ± std, and Markdown/CSV tables.

Used by ``ser_jax.protocols`` (seeds, cross-validation, ``ser-jax table``), ``ser_jax.sweep``
and the research tools, so every table of the project formats numbers the same
way: a single value is printed alone (a ± of 0 would claim a spread nobody measured).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

HEADLINE = ("test_accuracy", "test_uar", "test_macro_f1")


def mean_std(values: Sequence[float]) -> dict[str, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value), and the count."""
    arr = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(arr.mean()),
        "std": float(arr.std(ddof=1)) if arr.size > 1 else 0.0,
        "n": int(arr.size),
    }


def summarize(results: Sequence[dict[str, Any]], keys: Sequence[str] = HEADLINE) -> dict:
    """``{key: mean_std}`` over runs' results."""
    return {k: mean_std([r[k] for r in results]) for k in keys}


def fmt(ms: dict[str, float], digits: int = 4) -> str:
    """``mean ± std``, or the mean alone for a single value."""
    if ms.get("n", 2) == 1:
        return f"{ms['mean']:.{digits}f}"
    return f"{ms['mean']:.{digits}f} ± {ms['std']:.{digits}f}"


def cell(value: Any, digits: int = 4) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, dict) and "mean" in value:
        return fmt(value, digits)
    return "" if value is None else str(value)


def markdown(columns: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 4) -> str:
    """A Markdown table; floats to ``digits`` places, mean/std dicts as ``fmt``."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v, digits) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        w.writerows({k: cell(v) if isinstance(v, dict) else v for k, v in r.items()} for r in rows)


def write_tables(
    rows: Sequence[dict[str, Any]], csv_path: Path, md_path: Path, title: str = ""
) -> str:
    """``rows`` (dicts) → a CSV and a Markdown file; returns the Markdown."""
    columns = list(dict.fromkeys(k for r in rows for k in r))
    write_csv(csv_path, rows)
    text = (f"{title}\n\n" if title else "") + markdown(
        columns, [[r.get(c) for c in columns] for r in rows]
    )
    Path(md_path).write_text(text + "\n")
    return text
