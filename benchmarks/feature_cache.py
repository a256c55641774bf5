"""The feature cache (``train.cache_features``) against features in every step, in one run.

    python benchmarks/feature_cache.py [--config experiments/configs/functionals_mfcc_shuffled.py]
        [--epochs 10] [--fold 0] [--rounds 1] [--demo] [--json PATH] [--config.X=Y ...]

    python benchmarks/feature_cache.py --tiny   (a smoke run: --demo --epochs 1 on 2 speakers x
        7 emotions x 2 clips of 1.2 s, batches of 8)

Trains the same model twice on the same LOSO fold (``data.split=loso``, ``data.val_count=0``),
once with the front-end in every train step (the default) and once from features computed
once before training, and prints for each: the median epoch time, the wall time of the whole
run (cache and compilation included), the test figures and, against the step row, the largest
difference of the test probabilities. Online augmentation must be off in the config (the
cache holds clean features or offline augmentation's fixed copies; the cepstral presets have
no augmentation). With ``--rounds`` > 1 the two rows alternate, so load from other jobs hits
both alike; medians over rounds are reported.

The corpus is the config's (Emo-DB from ``SER_EMODB_DIR`` for the presets); ``--demo`` uses
the synthetic demo corpus instead (no data needed; ``--config.data.demo.*`` sizes it).
"""

from __future__ import annotations

import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from absl import flags
from ml_collections import config_flags

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ser_jax.data.prepare import prepare  # noqa: E402
from ser_jax.rundir import processor_name  # noqa: E402
from ser_jax.training.train import train_and_evaluate  # noqa: E402

PRESET = "experiments/configs/functionals_mfcc_shuffled.py"
ROWS = ((False, "front-end in every step"), (True, "feature cache"))

config_flags.DEFINE_config_file("config", str(ROOT / PRESET), lock_config=False)
flags.DEFINE_integer("epochs", 10, "epochs of each run")
flags.DEFINE_integer("fold", 0, "the LOSO fold (sorted speakers)")
flags.DEFINE_integer("rounds", 1, "runs of each row, alternated")
flags.DEFINE_bool("demo", False, "the synthetic demo corpus instead of the config's")
flags.DEFINE_string("json", "", "also write the figures here")
flags.DEFINE_bool("tiny", False, "a smoke run: --demo, 1 epoch (unless given), a tiny corpus")
FLAGS = flags.FLAGS


def apply_tiny() -> None:
    """``--tiny``: the demo corpus at 2 speakers x 7 emotions x 2 clips of 1.2 s, batches of
    8, one epoch unless ``--epochs`` is given."""
    FLAGS.demo = True
    if not FLAGS["epochs"].present:
        FLAGS.epochs = 1
    c = FLAGS.config
    c.train.batch_size = 8
    c.data.demo.speakers, c.data.demo.utterances_per_class = 2, 2
    c.data.max_seconds = 1.2


def run_config(cache: bool) -> Any:
    """The flags' config on the LOSO fold, trained for ``--epochs``, with or without cache."""
    c = copy.deepcopy(FLAGS.config)
    if FLAGS.demo:
        c.data.corpus, c.data.root = "demo", ""
        c.data.demo.seconds = (c.data.max_seconds, c.data.max_seconds)
    c.data.split, c.data.fold, c.data.val_count = "loso", FLAGS.fold, 0
    c.train.select, c.train.epochs = "last", FLAGS.epochs
    c.train.progress = False
    c.train.cache_features = cache
    return c


def train_once(cache: bool, data: Any) -> dict[str, Any]:
    """One run: its wall time, median epoch time, test figures and test probabilities."""
    with tempfile.TemporaryDirectory() as d:
        start = time.perf_counter()
        results = train_and_evaluate(run_config(cache), Path(d) / "run", data=data)
        wall = time.perf_counter() - start
        lines = (Path(d) / "run" / "test_predictions.jsonl").read_text().splitlines()
    probs = [json.loads(line)["probs"] for line in lines]
    return {
        "wall_s": wall,
        "epoch_s": results["epoch_seconds_median"],
        "test_accuracy": results["test_accuracy"],
        "test_uar": results["test_uar"],
        "probs": np.array([[p[n] for n in data.label_names] for p in probs]),
    }


def summarise(rows: dict[bool, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Medians over rounds of each row, and each row against the step row."""
    base_epoch = statistics.median(r["epoch_s"] for r in rows[False])
    out = {}
    for cache, label in ROWS:
        rs = rows[cache]
        epoch = statistics.median(r["epoch_s"] for r in rs)
        out[label] = {
            "epoch_s": epoch,
            "run_s": statistics.median(r["wall_s"] for r in rs),
            "test_accuracy": rs[0]["test_accuracy"],
            "test_uar": rs[0]["test_uar"],
            "max_prob_diff": max(
                float(np.abs(r["probs"] - rows[False][0]["probs"]).max()) for r in rs
            ),
            "speedup_epoch": base_epoch / epoch,
        }
    return out


def print_table(out: dict[str, Any]) -> None:
    print(f"device: {out['device']}")
    print(
        f"{out['train_clips']} training clips, {out['test_clips']} test clips, "
        f"{out['epochs']} epochs, {out['rounds']} round(s)"
    )
    print(
        "| row | epoch s (median) | run s (all in) | test acc | test UAR | max abs Δ prob "
        "| epoch vs step |"
    )
    print("|---|---|---|---|---|---|---|")
    for label, r in out["rows"].items():
        print(
            f"| {label} | {r['epoch_s']:.3f} | {r['run_s']:.1f} | {r['test_accuracy']:.3f} | "
            f"{r['test_uar']:.3f} | {r['max_prob_diff']:.1e} | {r['speedup_epoch']:.1f}x |"
        )


def main(argv: list[str]) -> int:
    FLAGS(argv)
    if FLAGS.tiny:
        apply_tiny()
    data = prepare(run_config(False), progress=False)
    rows: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
    for _ in range(FLAGS.rounds):
        for cache, _label in ROWS:
            rows[cache].append(train_once(cache, data))
    out = {
        "command": " ".join(argv),
        "epochs": FLAGS.epochs,
        "fold": FLAGS.fold,
        "rounds": FLAGS.rounds,
        "train_clips": len(data.train),
        "test_clips": len(data.test),
        "device": f"{jax.devices()[0].platform}: {processor_name()}",
        "rows": summarise(rows),
    }
    print_table(out)
    if FLAGS.json:
        Path(FLAGS.json).parent.mkdir(parents=True, exist_ok=True)
        Path(FLAGS.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
