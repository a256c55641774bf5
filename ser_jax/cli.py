"""Command line: ``ser-jax VERB [flags]`` (also ``python -m ser_jax VERB``).

Verbs:
  train     train and evaluate one config (``--config FILE --config.x=y``), ``--seeds N`` for
            N seeds with mean ± std; resumes from the run directory's latest checkpoint
  cv        leave-one-speaker-out (or k-fold over speakers): every fold, per-fold and pooled
            metrics and a pooled confusion matrix
  evaluate  score a trained run's selected model on its test split or on another corpus
  predict   label and class probabilities for audio files (any length, any sample rate)
  explore   label histogram, example waveforms and log-mel spectrograms, summary tables
  augment-figure  one utterance, clean and under each augmentation (waveform + log-mel)
  demo-corpus     write the synthetic demo corpus to a folder
  table           every results.json under ``--run DIR`` → results.csv / results.md
  tfds-build      build the ``emodb`` TFDS dataset (array_record) from a manual copy
                  (``--data`` wav folder, ``--out`` TFDS data_dir); train on it with
                  ``--config.data.corpus=tfds:emodb --config.data.root=<data_dir>``

Settings live in ml_collections config files (``experiments/configs/*.py``); the default is
the package's own ``ser_jax/config.py`` (the synthetic demo corpus).
"""

from __future__ import annotations

import sys
from pathlib import Path

from absl import app, flags, logging
from ml_collections import config_flags

from ser_jax import config as default_config_module

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config",
    str(Path(default_config_module.__file__)),
    "Experiment config file (get_config).",
    lock_config=True,
)
flags.DEFINE_string("workdir", None, "Run directory (default: runs/<config.name>).")
flags.DEFINE_integer("seeds", 1, "train/cv: number of seeds (config.seed, +1, ...); mean ± std.")
flags.DEFINE_string("run", None, "evaluate/predict: a run directory written by train.")
flags.DEFINE_string("data", None, "explore/evaluate: corpus folder (or CSV).")
flags.DEFINE_string("corpus", "emodb", "explore/evaluate: corpus reader name (emodb, folder, csv).")
flags.DEFINE_string("out", None, "explore/augment-figure/demo-corpus/evaluate: output path.")
flags.DEFINE_string("wav", None, "augment-figure: the audio file to show.")
flags.DEFINE_bool("json", False, "predict: print JSON instead of a table.")
flags.DEFINE_string("coordinator", None, "Multi-process: coordinator host:port.")
flags.DEFINE_integer("num_processes", None, "Multi-process: number of processes.")
flags.DEFINE_integer("process_id", None, "Multi-process: this process's id.")

VERBS = (
    "train",
    "cv",
    "evaluate",
    "predict",
    "explore",
    "augment-figure",
    "demo-corpus",
    "tfds-build",
    "table",
)


def _workdir(config) -> Path:
    return Path(FLAGS.workdir) if FLAGS.workdir else Path("runs") / str(config.name)


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] not in VERBS:
        print(__doc__, file=sys.stderr)
        got = argv[1] if len(argv) > 1 else "nothing"
        raise app.UsageError(f"give a verb, one of {', '.join(VERBS)} (got {got})")
    verb, rest = argv[1], argv[2:]
    # absl.app turns library INFO logs on (orbax is chatty); keep the console for our output.
    logging.set_verbosity(logging.WARNING)
    from ser_jax import parallel

    parallel.initialize_distributed(FLAGS.coordinator, FLAGS.num_processes, FLAGS.process_id)
    if verb == "train":
        from ser_jax.experiment import run_seeds

        run_seeds(FLAGS.config, _workdir(FLAGS.config), FLAGS.seeds)
    elif verb == "cv":
        from ser_jax.experiment import cross_validate

        cross_validate(FLAGS.config, _workdir(FLAGS.config), FLAGS.seeds)
    elif verb == "evaluate":
        from ser_jax.inference import evaluate_run

        if not FLAGS.run:
            raise app.UsageError("evaluate needs --run DIR")
        evaluate_run(FLAGS.run, data=FLAGS.data, corpus=FLAGS.corpus, out=FLAGS.out)
    elif verb == "predict":
        from ser_jax.inference import predict_command

        if not FLAGS.run or not rest:
            raise app.UsageError("predict needs --run DIR and one or more audio files")
        return predict_command(FLAGS.run, rest, as_json=FLAGS.json)
    elif verb == "explore":
        from ser_jax.inference import explore_command

        explore_command(FLAGS.config, data=FLAGS.data, corpus=FLAGS.corpus, out=FLAGS.out)
    elif verb == "augment-figure":
        from ser_jax.inference import augment_figure_command

        augment_figure_command(FLAGS.config, wav=FLAGS.wav, out=FLAGS.out)
    elif verb == "demo-corpus":
        from ser_jax.data.synthetic import make_demo_corpus

        out = Path(FLAGS.out or "demo_corpus")
        demo = FLAGS.config.data.demo
        make_demo_corpus(
            out,
            speakers=int(demo.speakers),
            utterances_per_class=int(demo.utterances_per_class),
            seconds=tuple(float(s) for s in demo.seconds),
            sample_rate=int(FLAGS.config.data.sample_rate),
        )
        print(f"wrote the demo corpus to {out}")
    elif verb == "table":
        from ser_jax.experiment import collect_runs, write_table

        root = Path(FLAGS.run or "runs")
        rows = collect_runs(root)
        write_table(rows, root / "results.csv", root / "results.md")
        print((root / "results.md").read_text() if rows else f"no results.json under {root}")
    elif verb == "tfds-build":
        from ser_jax.data.tfds_emodb import build_emodb_tfds

        if not FLAGS.data or not FLAGS.out:
            raise app.UsageError("tfds-build needs --data (wav folder) and --out (TFDS data_dir)")
        build_emodb_tfds(FLAGS.data, FLAGS.out)
        print(f"built TFDS dataset 'emodb' in {FLAGS.out}")
    return 0


def run() -> None:
    """Console-script entry point."""
    app.run(main)


if __name__ == "__main__":
    run()
