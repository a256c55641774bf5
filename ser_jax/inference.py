"""Using a trained run: load its selected model, score corpora, label new recordings.

``load_run(run_dir)`` rebuilds the model from the run's ``config.json`` and restores the
checkpoint that validation selected (``results.json``'s ``selected_step``). ``predict_files``
scores audio files of any length and sample rate: clips longer than ``data.max_seconds`` are cut
into half-overlapping windows whose class probabilities are averaged. A file that cannot be read
gets its error in the output; the other files are still scored.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from ser_jax.checkpoint import Checkpointer
from ser_jax.data.audio import load_audio
from ser_jax.data.pipeline import ClipSet, bucket_length
from ser_jax.errors import ConfigError, SerJaxError
from ser_jax.evaluate import classification_metrics, format_table, write_report
from ser_jax.frontend import FrontendConfig
from ser_jax.models import create_model
from ser_jax.train import (
    TrainState,
    config_from_json,
    create_train_state,
    eval_step,
    frontend_config,
    make_optimizer,
)


@dataclasses.dataclass
class LoadedRun:
    run_dir: Path
    config: Any
    label_names: tuple[str, ...]
    frontend: FrontendConfig
    state: TrainState
    step: int

    @functools.cached_property
    def _eval(self):
        return jax.jit(functools.partial(eval_step, frontend=self.frontend))

    @property
    def sample_rate(self) -> int:
        return int(self.config.data.sample_rate)

    @property
    def max_samples(self) -> int:
        return int(round(float(self.config.data.max_seconds) * self.sample_rate))

    def probabilities(self, waves: Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
        """(len(waves), classes): each clip's windows scored and averaged."""
        windows, owner = [], []
        win = self.max_samples
        for i, w in enumerate(waves):
            if len(w) <= win:
                windows.append(w)
                owner.append(i)
                continue
            hop = win // 2
            starts = list(range(0, len(w) - win + 1, hop))
            if starts[-1] + win < len(w):
                starts.append(len(w) - win)
            for s in starts:
                windows.append(w[s : s + win])
                owner.append(i)
        owner_arr = np.asarray(owner)
        probs = np.zeros((len(windows), len(self.label_names)), np.float32)
        order = np.argsort([len(w) for w in windows], kind="stable")
        bucket = int(round(float(self.config.data.bucket_seconds) * self.sample_rate))
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            length = bucket_length(max(len(windows[j]) for j in chunk), bucket, win)
            audio = np.zeros((batch_size, length), np.float32)
            lengths = np.zeros(batch_size, np.int32)
            for row, j in enumerate(chunk):
                audio[row, : len(windows[j])] = windows[j]
                lengths[row] = len(windows[j])
            batch = {
                "audio": audio,
                "length": lengths,
                "index": np.arange(batch_size, dtype=np.int32),
            }
            p, _ = self._eval(self.state, batch)
            probs[chunk] = np.asarray(p)[: len(chunk)]
        out = np.zeros((len(waves), len(self.label_names)), np.float32)
        np.add.at(out, owner_arr, probs)
        counts = np.bincount(owner_arr, minlength=len(waves))[:, None]
        return out / np.maximum(counts, 1)


def load_run(run_dir: str | Path) -> LoadedRun:
    run_dir = Path(run_dir)
    for name in ("config.json", "run_info.json"):
        if not (run_dir / name).exists():
            raise ConfigError(f"{run_dir} is not a run directory: {name} is missing")
    config = config_from_json(run_dir / "config.json")
    info = json.loads((run_dir / "run_info.json").read_text())
    label_names = tuple(sorted(info["label_map"], key=info["label_map"].get))
    results_path = run_dir / "results.json"
    ckpt = Checkpointer(run_dir / "checkpoints", keep=10**6, best_metric=None, asynchronous=False)
    if results_path.exists():
        step = int(json.loads(results_path.read_text())["selected_step"])
    else:
        step = ckpt.latest_step()
        if step is None:
            raise ConfigError(f"{run_dir} has no checkpoint yet")
        print(
            f"{run_dir}: training not finished, using the latest checkpoint (step {step})",
            file=sys.stderr,
        )
    frontend = frontend_config(config)
    model = create_model(config.model, len(label_names))
    state = create_train_state(
        model, make_optimizer(config.train, 1), int(config.seed), frontend.n_mels
    )
    state, _ = ckpt.restore(step, state)
    ckpt.close()
    return LoadedRun(run_dir, config, label_names, frontend, state, step)


def predict_files(run: LoadedRun, paths: Sequence[str]) -> list[dict[str, Any]]:
    """One dict per file: ``label`` and ``probs``, or ``error`` naming the cause."""
    out: list[dict[str, Any]] = []
    good, waves = [], []
    for p in paths:
        try:
            waves.append(load_audio(p, run.sample_rate))
            good.append(len(out))
            out.append({"path": str(p)})
        except SerJaxError as err:
            out.append({"path": str(p), "error": str(err)})
    if waves:
        probs = run.probabilities(waves)
        for row, p in zip(good, probs, strict=True):
            out[row]["label"] = run.label_names[int(p.argmax())]
            out[row]["probs"] = {
                n: round(float(v), 5) for n, v in zip(run.label_names, p, strict=True)
            }
            out[row]["seconds"] = round(len(waves[good.index(row)]) / run.sample_rate, 3)
    return out


def predict_command(run_dir: str, paths: Sequence[str], *, as_json: bool) -> int:
    run = load_run(run_dir)
    rows = predict_files(run, paths)
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        names = run.label_names
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
    from ser_jax.data.prepare import load_all, prepare

    run = load_run(run_dir)
    if data:
        cfg = run.config.copy_and_resolve_references()
        with cfg.unlocked():
            cfg.data.corpus, cfg.data.root = corpus, data
        waves, utts, skipped = load_all(cfg.data)
        names = run.label_names
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
        clips = prepare(run.config).test
        split = "test"
    probs = run.probabilities(clips.waves)
    metrics = classification_metrics(clips.labels, probs.argmax(-1), run.label_names)
    preds = [
        {
            "utt_id": u.utt_id,
            "path": u.path,
            "speaker": u.speaker,
            "label": run.label_names[int(y)],
            "predicted": run.label_names[int(p.argmax())],
        }
        for u, y, p in zip(clips.utts, clips.labels, probs, strict=True)
    ]
    out_dir = Path(out) if out else run.run_dir / "eval"
    write_report(out_dir, split, metrics, preds)
    print(format_table(metrics))
    print(f"wrote {out_dir / (split + '_metrics.json')}")
    return metrics


def explore_command(
    config: Any, *, data: str | None, corpus: str, out: str | None
) -> dict[str, Any]:
    from ser_jax.data.prepare import load_all
    from ser_jax.reports.explore import explore

    cfg = config.copy_and_resolve_references()
    if data:
        with cfg.unlocked():
            cfg.data.corpus, cfg.data.root = corpus, data
    waves, utts, skipped = load_all(cfg.data)
    for s in skipped:
        print(f"skipped {s.path}: {s.reason}", file=sys.stderr)
    out_dir = Path(out or "runs/explore")
    summary = explore(utts, waves, int(cfg.data.sample_rate), out_dir)
    print(f"wrote {out_dir}/label_histogram.png, examples.png, summary.json, summary.md")
    return summary


def augment_figure_command(config: Any, *, wav: str | None, out: str | None) -> Path:
    from ser_jax.reports.augment_figure import write_augmentation_figure
    from ser_jax.train import augment_config

    if not wav:
        raise ConfigError("augment-figure needs --wav FILE")
    path = write_augmentation_figure(
        wav, Path(out or "runs/augmentations.png"), frontend_config(config), augment_config(config)
    )
    print(f"wrote {path}")
    return path
