"""experiments/keep_run.py and experiments/render_results.py: records in, figures out."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stat(mean: float, std: float = 0.0, n: int = 1) -> dict:
    return {"mean": mean, "std": std, "n": n}


def fake_cv_run(root: Path) -> Path:
    run = root / "runs" / "cv"
    fold = run / "fold0-03" / "seed0"
    (fold / "checkpoints" / "2").mkdir(parents=True)
    (fold / "checkpoints" / "2" / "state.json").write_text("{}")
    (fold / "model.msgpack").write_bytes(b"\0" * 64)
    (fold / "curves.png").write_bytes(b"png")
    (fold / "config.json").write_text("{}")
    info = {"git_commit": "abcdef1234", "git_dirty": False, "processor": "Test CPU"}
    (fold / "run_info.json").write_text(json.dumps(info))
    (fold / "test_predictions.jsonl").write_text('{"utt": "a"}\n')
    summary = {
        "command": "ser-jax cv --config x.py",
        "seeds": [0, 1],
        "pooled": {
            "test_uar": stat(0.7512, 0.0101, 2),
            "test_accuracy": stat(0.8),
            "test_macro_f1": stat(0.7),
        },
        "pooled_speaker_bn": {"test_uar": stat(0.8)},
    }
    (run / "cv_summary.json").write_text(json.dumps(summary))
    return run


def test_keep_run_copies_the_records_and_nothing_else(tmp_path):
    keep = load("keep_run")
    run = fake_cv_run(tmp_path)
    dest = tmp_path / "results" / "cv"
    assert keep.keep(run, dest) == 4
    kept = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert kept == [
        "cv_summary.json",
        "fold0-03/seed0/config.json",
        "fold0-03/seed0/run_info.json",
        "fold0-03/seed0/test_predictions.jsonl",
        "kept.json",
    ]
    assert json.loads((dest / "kept.json").read_text())["source"] == str(run)


def test_a_rows_figures_come_from_its_records(tmp_path):
    render = load("render_results")
    keep = load("keep_run")
    dest = tmp_path / "results" / "cv"
    keep.keep(fake_cv_run(tmp_path), dest)
    row = render.figures(dest)
    assert row["uar"] == "0.751 ± 0.010"
    assert row["accuracy"] == "0.800"
    assert row["adapted"] == "0.800"
    assert row["tta"] == "–"
    assert row["protocol"] == "LOSO, 2 seeds"
    assert row["made_by"] == "abcdef1 on Test CPU"
    assert row["command"] == "`ser-jax cv --config x.py`"
    assert render.figures(tmp_path / "results" / "missing") is None


def test_a_lever_row_states_its_effect_against_the_plain_figure(tmp_path):
    render = load("render_results")
    keep = load("keep_run")
    dest = tmp_path / "results" / "cv"
    keep.keep(fake_cv_run(tmp_path), dest)
    table = {
        "title": "Levers",
        "columns": ["model", "uar", "adapted", "effect"],
        "rows": [{"label": "adaptation", "run": str(dest), "lever": "adapted"}],
    }
    lines = render.render_table(table)
    assert "| adaptation | 0.751 ± 0.010 | 0.800 | +0.049 |" in lines
