"""The feature cache (``train.cache_features``) against features in every step, in one run.

    python benchmarks/feature_cache.py [--config experiments/configs/functionals_mfcc_shuffled_pitch.py]
        [--epochs 10] [--fold 0] [--rounds 1] [--json PATH] [--config.X=Y ...]

Trains the same model twice on the same LOSO fold (``data.split=loso``, ``data.val_count=0``),
once with the front-end in every train step (the default) and once from features computed
once before training, and prints for each: the median epoch time, the wall time of the whole
run (cache and compilation included), the test figures and, against the step row, the largest
difference of the test probabilities. Online augmentation must be off in the config (the
cache holds clean features or offline augmentation's fixed copies; the cepstral presets have
no augmentation). With ``--rounds`` > 1 the two rows
alternate, so load from other jobs hits both alike; medians over rounds are reported.

The corpus is the config's (Emo-DB from ``SER_EMODB_DIR`` for the presets); ``--demo`` uses
the synthetic demo corpus instead (4 speakers, no data needed).
"""

from __future__ import annotations

import copy
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRESET = "experiments/configs/functionals_mfcc_shuffled_pitch.py"


def main(argv: list[str]) -> int:
    from absl import flags
    from ml_collections import config_flags

    config_flags.DEFINE_config_file("config", str(ROOT / PRESET), lock_config=False)
    flags.DEFINE_integer("epochs", 10, "epochs of each run")
    flags.DEFINE_integer("fold", 0, "the LOSO fold (sorted speakers)")
    flags.DEFINE_integer("rounds", 1, "runs of each row, alternated")
    flags.DEFINE_bool("demo", False, "the synthetic demo corpus instead of the config's")
    flags.DEFINE_string("json", "", "also write the figures here")
    FLAGS = flags.FLAGS
    FLAGS(argv)
    args = FLAGS
    import numpy as np

    from ser_jax.data.prepare import prepare
    from ser_jax.training.train import train_and_evaluate

    def config(cache: bool):
        c = copy.deepcopy(FLAGS.config)
        if args.demo:
            c.data.corpus, c.data.root = "demo", ""
            c.data.demo.seconds = (c.data.max_seconds, c.data.max_seconds)
        c.data.split, c.data.fold, c.data.val_count = "loso", args.fold, 0
        c.train.select, c.train.epochs = "last", args.epochs
        c.train.progress = False
        c.train.cache_features = cache
        return c

    data = prepare(config(False), progress=False)
    rows = {False: [], True: []}
    for _ in range(args.rounds):
        for cache in (False, True):
            with tempfile.TemporaryDirectory() as d:
                start = time.perf_counter()
                results = train_and_evaluate(config(cache), Path(d) / "run", data=data)
                wall = time.perf_counter() - start
                probs = [
                    json.loads(line)["probs"]
                    for line in (Path(d) / "run" / "test_predictions.jsonl").open()
                ]
            names = data.label_names
            rows[cache].append(
                {
                    "wall_s": wall,
                    "epoch_s": results["epoch_seconds_median"],
                    "test_accuracy": results["test_accuracy"],
                    "test_uar": results["test_uar"],
                    "probs": np.array([[p[n] for n in names] for p in probs]),
                }
            )
    out = {
        "command": " ".join(argv),
        "epochs": args.epochs,
        "fold": args.fold,
        "rounds": args.rounds,
        "train_clips": len(data.train),
        "test_clips": len(data.test),
        "processor": platform.processor() or platform.machine(),
        "rows": {},
    }
    base_epoch = statistics.median(r["epoch_s"] for r in rows[False])
    print(
        f"{len(data.train)} training clips, {len(data.test)} test clips, {args.epochs} epochs, "
        f"{args.rounds} round(s)"
    )
    print(
        "| row | epoch s (median) | run s (all in) | test acc | test UAR | max |Δ prob| | epoch vs step |"
    )
    print("|---|---|---|---|---|---|---|")
    for cache, label in ((False, "front-end in every step"), (True, "feature cache")):
        rs = rows[cache]
        epoch = statistics.median(r["epoch_s"] for r in rs)
        wall = statistics.median(r["wall_s"] for r in rs)
        diff = max(float(np.abs(r["probs"] - rows[False][0]["probs"]).max()) for r in rs)
        out["rows"][label] = {
            "epoch_s": epoch,
            "run_s": wall,
            "test_accuracy": rs[0]["test_accuracy"],
            "test_uar": rs[0]["test_uar"],
            "max_prob_diff": diff,
            "speedup_epoch": base_epoch / epoch,
        }
        print(
            f"| {label} | {epoch:.3f} | {wall:.1f} | {rs[0]['test_accuracy']:.3f} | "
            f"{rs[0]['test_uar']:.3f} | {diff:.1e} | {base_epoch / epoch:.1f}x |"
        )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
