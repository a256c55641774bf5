"""Using a trained model: score a corpus (``ser-jax evaluate``), label recordings
(``ser-jax predict``).

The model comes from ``ser_jax.restore.load_model`` (a run directory's selected model). Clips
are scored by the one evaluation policy of ``ser_jax.scoring`` (long recordings as
half-overlapping windows whose probabilities are averaged), so ``evaluate`` on a run's own test
split gives the numbers training reported. A file that cannot be read gets its error in the
output; the other files are still scored.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ser_jax.data.audio import load_audio
from ser_jax.data.pipeline import ClipSet
from ser_jax.data.prepare import load_all, prepare
from ser_jax.errors import ConfigError, SerJaxError
from ser_jax.evaluate import classification_metrics, format_table, prediction_rows, write_report
from ser_jax.restore import LoadedModel, load_model


def predict_files(model: LoadedModel, paths: Sequence[str]) -> list[dict[str, Any]]:
    """One dict per file: ``label``, ``probs`` and ``seconds``, or ``error`` naming the cause."""
    out: list[dict[str, Any]] = []
    good, waves = [], []
    for p in paths:
        try:
            waves.append(load_audio(p, model.sample_rate))
            good.append(len(out))
            out.append({"path": str(p)})
        except SerJaxError as err:
            out.append({"path": str(p), "error": str(err)})
    if waves:
        probs = model.probabilities(waves)
        names = model.label_names
        for row, wave, p in zip(good, waves, probs, strict=True):
            out[row]["label"] = names[int(p.argmax())]
            out[row]["probs"] = {n: round(float(v), 5) for n, v in zip(names, p, strict=True)}
            out[row]["seconds"] = round(len(wave) / model.sample_rate, 3)
    return out


def predict_command(run_dir: str, paths: Sequence[str], *, as_json: bool) -> int:
    """Print labels and probabilities (a table, or JSON); exit code 1 if any file failed."""
    model = load_model(run_dir)
    rows = predict_files(model, paths)
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        names = model.label_names
        print(f"{'file':<40} {'label':<10} " + " ".join(f"{n[:7]:>7}" for n in names))
        for r in rows:
            if "error" in r:
                print(f"{Path(r['path']).name:<40} ERROR      {r['error']}")
            else:
                print(
                    f"{Path(r['path']).name:<40} {r['label']:<10} "
                    + " ".join(f"{r['probs'][n]:7.3f}" for n in names)
                )
    return 1 if any("error" in r for r in rows) else 0


def evaluate_run(run_dir: str, *, data: str | None, corpus: str, out: str | None) -> dict[str, Any]:
    """Score the run's selected model on its own test split (no ``data``) or on every file of
    another corpus; writes metrics, predictions and confusion PNGs to ``out``."""
    model = load_model(run_dir)
    names = model.label_names
    if data:
        cfg = model.config.copy_and_resolve_references()
        with cfg.unlocked():
            cfg.data.corpus, cfg.data.root = corpus, data
        waves, utts, skipped = load_all(cfg.data)
        unknown = sorted({u.label for u in utts} - set(names))
        if unknown:
            raise ConfigError(
                f"{data}: labels {unknown} are not classes of the run ({list(names)})"
            )
        clips = ClipSet(waves, [names.index(u.label) for u in utts], utts)
        split = f"eval-{Path(data).name}"
        for s in skipped:
            print(f"skipped {s.path}: {s.reason}", file=sys.stderr)
    else:
        clips = prepare(model.config, progress=False).test
        split = "test"
    probs = model.probabilities(clips.waves)
    metrics = classification_metrics(clips.labels, probs.argmax(-1), names)
    metrics["model_step"] = model.step
    metrics["run_finished"] = model.finished
    out_dir = Path(out) if out else model.source / "eval"
    write_report(out_dir, split, metrics, prediction_rows(clips, probs, names))
    print(format_table(metrics))
    print(f"wrote {out_dir / (split + '_metrics.json')}")
    return metrics
