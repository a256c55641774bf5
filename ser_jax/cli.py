"""Command line: ``ser-jax VERB [flags]`` (also ``python -m ser_jax VERB``).

Every verb is one row of :data:`VERBS` (name, one-line summary, the flags it reads, an example,
and the function that runs it); ``ser-jax --help`` lists them and ``ser-jax VERB --help`` shows
one. Settings live in ml_collections config files (``experiments/configs/*.py``; the default is
the package's own ``ser_jax/config.py``, the synthetic demo corpus), and any field can be
overridden with ``--config.section.field=value``.

The project's own errors (a bad setting, a missing file, a run directory that is not one) print
one line, ``error: ...``, and exit with status 2; ``--debug`` (or ``SER_JAX_DEBUG=1``) shows the
traceback instead.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from absl import flags

from ser_jax.errors import SerJaxError

FLAGS = flags.FLAGS
DEFAULT_CONFIG = str(Path(__file__).with_name("config.py"))


def _define_flags() -> None:
    """Define the flags (once). Deferred to ``run``: the config flag parses its overrides
    when defined, and a bad override must become a one-line error, not an import traceback."""
    from ml_collections import config_flags

    if "workdir" in FLAGS:
        return
    _define_run_flags()
    _define_predict_flags()
    _define_committee_flags()
    _define_select_flags()
    _define_package_flags()
    _define_explain_flags()
    flags.DEFINE_string("coordinator", None, "Multi-process: coordinator host:port.")
    flags.DEFINE_integer("num_processes", None, "Multi-process: number of processes.")
    flags.DEFINE_integer("process_id", None, "Multi-process: this process's id.")
    flags.DEFINE_bool("debug", False, "Show tracebacks of the project's own errors.")
    config_flags.DEFINE_config_file(
        "config", DEFAULT_CONFIG, "Experiment config file (get_config).", lock_config=True
    )


def _define_run_flags() -> None:
    """Flags of where runs, data and outputs are."""
    flags.DEFINE_string("workdir", None, "Run directory (default: runs/<config.name>).")
    flags.DEFINE_integer("seeds", 1, "Number of seeds (config.seed, +1, ...); mean ± std.")
    flags.DEFINE_string(
        "run",
        None,
        "A run directory written by train (predict: several, comma-separated: a committee).",
    )
    flags.DEFINE_string("data", None, "Corpus folder (or CSV file).")
    flags.DEFINE_string("corpus", "emodb", "Corpus reader name for --data (emodb, folder, csv).")
    flags.DEFINE_string("out", None, "Output path.")
    flags.DEFINE_enum(
        "format",
        "stablehlo",
        ["stablehlo", "onnx"],
        "export: serialised StableHLO (jax.export) or an ONNX graph for onnxruntime "
        "(the optional extra 'onnx').",
    )
    flags.DEFINE_string("wav", None, "The audio file to show.")
    flags.DEFINE_bool("json", False, "Print JSON instead of a table.")


def _define_predict_flags() -> None:
    """Flags of which model scores recordings, and how."""
    flags.DEFINE_string(
        "model",
        None,
        "A shipped model's name (ser-jax models lists them); predict: several, comma-separated, "
        "score as a committee (probabilities averaged).",
    )
    flags.DEFINE_string("timeline", None, "A PNG of each file's class probabilities over time.")
    flags.DEFINE_string("csv", None, "A CSV of each file's window probabilities, a row a window.")
    flags.DEFINE_bool(
        "speaker_bn",
        False,
        "Speaker adaptation: each speaker's BatchNorm statistics (an openSMILE model: feature "
        "standardisation) from their own clips (several recordings of the speaker needed); "
        "predict takes its files as one speaker's unless --speaker_from groups them, evaluate "
        "groups clips by speaker.",
    )
    flags.DEFINE_string(
        "speaker_from",
        None,
        "predict: who speaks in each file, so --speaker_bn adapts to each speaker apart in one "
        "call: 'folder' (each file's parent folder) or csv:FILE:COLUMN (a CSV with a path or "
        "file column and the speaker in COLUMN).",
    )
    flags.DEFINE_bool(
        "balanced",
        False,
        "The balanced decision: each model's class probabilities divided by the class "
        "frequencies it was trained on (its run_info.json), renormalised, so no class wins for "
        "being frequent in training (aimed at UAR).",
    )
    flags.DEFINE_string(
        "tta_semitones",
        None,
        "Test-time warps, comma-separated semitones (e.g. -6,6): every file also scored with "
        "its mel filterbank (and pitch track) warped by each, the probabilities averaged with "
        "the unwarped file's (a committee: each model's own, as ser-jax ensemble averages them). "
        "predict: a shipped committee that records its warps uses them unless told 'none'.",
    )


def _define_committee_flags() -> None:
    """Flags of how a committee combines its models."""
    flags.DEFINE_enum(
        "rule",
        None,
        ["mean", "geometric"],
        "How a committee combines its models' class probabilities: their mean, or their "
        "geometric mean renormalised (a product of experts). Default: the mean (predict with a "
        "shipped committee: the rule it was shipped with).",
    )
    flags.DEFINE_string(
        "weights",
        None,
        "A committee's weights, comma-separated, one a run or model in order (>= 0): each "
        "counts that many times in the combined probabilities (0 leaves it out). Default: all "
        "alike.",
    )
    flags.DEFINE_string(
        "weight_grid",
        None,
        "ensemble over cv runs: also choose the run weights from these values (e.g. 0,1,2), "
        "nested by speaker (each speaker's files decided by the weights the other speakers' "
        "files chose) and on all speakers (the weights for --weights).",
    )


def _define_select_flags() -> None:
    """Flags of ``select``."""
    flags.DEFINE_string(
        "candidates",
        None,
        "select: the candidates file (Python: MEMBERS, CANDIDATES, VIEWS), e.g. "
        "experiments/selection/default_model.py.",
    )
    flags.DEFINE_string(
        "runs", None, "select: a folder with one finished cv directory per member name."
    )


def _define_package_flags() -> None:
    """Flags of ``package``."""
    flags.DEFINE_string("name", None, "The shipped model's name (its folder).")
    flags.DEFINE_multi_string(
        "reference", [], "Audio files whose probabilities the package records."
    )
    flags.DEFINE_string(
        "loso", None, "The config's LOSO run directory (its figures go on the card)."
    )
    flags.DEFINE_string(
        "seed_runs", None, "The config's seed-protocol run directory (its figures go on the card)."
    )
    flags.DEFINE_string(
        "nested", None, "package --members: the `ser-jax select` folder that chose the committee."
    )
    flags.DEFINE_string(
        "members",
        None,
        "package: shipped models, comma-separated, to ship as a committee named --name (its "
        "card's figures from ensemble directories: --loso over cv runs, --seed_runs over "
        "seed-protocol runs).",
    )


def _define_explain_flags() -> None:
    """Flags of ``explain``."""
    flags.DEFINE_string(
        "label", None, "explain: the class whose probability is explained (default: predicted)."
    )
    flags.DEFINE_integer(
        "steps",
        64,
        "explain: points of the path from the baseline to start the integral with (more are "
        "added where it misses the change of the probability, up to 4x).",
    )
    flags.DEFINE_integer(
        "per_class",
        None,
        "explain --data: this many files of each class, spread over the folder (default: all).",
    )


@dataclasses.dataclass(frozen=True)
class Verb:
    name: str
    summary: str
    flags: tuple[str, ...]
    example: str
    run: Callable[[list[str]], int | None]


def _workdir(config) -> Path:
    return Path(FLAGS.workdir) if FLAGS.workdir else Path("runs") / str(config.name)


def _need(flag: str, verb: str, what: str) -> str:
    value = getattr(FLAGS, flag)
    if not value:
        raise UsageError(f"{verb} needs --{flag} ({what})")
    return value


class UsageError(SerJaxError):
    """The command line lacks something the verb needs."""


def _train(rest: list[str]) -> None:
    from ser_jax.protocols import run_seeds

    run_seeds(FLAGS.config, _workdir(FLAGS.config), FLAGS.seeds)


def _cv(rest: list[str]) -> None:
    from ser_jax.protocols import cross_validate

    cross_validate(FLAGS.config, _workdir(FLAGS.config), FLAGS.seeds)


def _evaluate(rest: list[str]) -> None:
    from ser_jax.serving.predict import evaluate_run

    run = _need("run", "evaluate", "a run directory")
    evaluate_run(
        run,
        data=FLAGS.data,
        corpus=FLAGS.corpus,
        out=FLAGS.out,
        speaker_bn=FLAGS.speaker_bn,
        balanced=FLAGS.balanced,
        semitones=_semitones(),
    )


def _semitones() -> tuple[float, ...]:
    """``--tta_semitones`` as numbers (none given, or ``none``: no test-time warps)."""
    return _given_semitones() or ()


def _given_semitones() -> tuple[float, ...] | None:
    """``--tta_semitones`` as numbers; None when not given (``predict``: a shipped committee's
    own warps), ``()`` for ``none``."""
    from ser_jax.spec import check_semitones

    if FLAGS.tta_semitones is None:
        return None
    if FLAGS.tta_semitones.strip().lower() == "none":
        return ()
    given = [v for v in FLAGS.tta_semitones.split(",") if v.strip()]
    return check_semitones(given, "--tta_semitones")


def _predict(rest: list[str]) -> int:
    from ser_jax.serving.predict import predict_command

    if not rest:
        raise UsageError("predict needs one or more audio files after the flags")
    return predict_command(
        FLAGS.run,
        rest,
        as_json=FLAGS.json,
        model_name=FLAGS.model,
        timeline=FLAGS.timeline,
        csv_path=FLAGS.csv,
        speaker_bn=FLAGS.speaker_bn,
        balanced=FLAGS.balanced,
        rule=FLAGS.rule,
        weights=FLAGS.weights,
        semitones=_given_semitones(),
        speaker_from=FLAGS.speaker_from,
    )


def _models(rest: list[str]) -> None:
    from ser_jax.serving.shipped import models_command

    models_command()


def _package(rest: list[str]) -> None:
    from ser_jax.research.package import model_card, package_committee, package_run
    from ser_jax.serving.shipped import PRETRAINED, parse_weights

    name = _need("name", "package", "the shipped model's name")
    if FLAGS.members:
        if FLAGS.run or FLAGS.reference or FLAGS.out:
            raise UsageError(
                "package --members makes a committee of shipped models: no --run, "
                "--reference or --out with it"
            )
        members = [m for m in FLAGS.members.split(",") if m]
        weights = None if FLAGS.weights is None else parse_weights(FLAGS.weights, len(members))
        done = package_committee(
            name,
            members,
            loso=FLAGS.loso,
            seeds=FLAGS.seed_runs,
            nested=FLAGS.nested,
            weights=weights,
        )
        print(f"packaged the committee {', '.join(members)} into {done}")
        return
    run = _need("run", "package", "the finished run to package")
    out = Path(FLAGS.out) if FLAGS.out else PRETRAINED / name
    card = model_card(run, name=name, loso=FLAGS.loso, seeds=FLAGS.seed_runs)
    done = package_run(run, out, reference_files=FLAGS.reference, card=card)
    print(f"packaged {run} into {done}")


def _export(rest: list[str]) -> None:
    from ser_jax.errors import MissingExtraError
    from ser_jax.serving.export import export_model

    export = export_model
    if FLAGS.format == "onnx":
        try:
            from ser_jax.serving.onnx import export_onnx
        except ImportError as err:
            raise MissingExtraError(
                "ser-jax export --format onnx",
                "onnx",
                f"then pip install --no-deps 'jax2onnx>=0.17.1'; {err}",
            ) from err
        export = export_onnx
    if FLAGS.run:
        from ser_jax.serving.checkpointed import load_run

        model = load_run(FLAGS.run)
    else:  # a shipped model, or a shipped committee (the default is one): one function
        from ser_jax.serving.shipped import is_committee, load_committee, load_shipped

        load = load_committee if is_committee(FLAGS.model) else load_shipped
        model = load(FLAGS.model)
    out = _need("out", "export", "the file to write")
    print(f"wrote {export(model, out)} and {out}.json")


def _explore(rest: list[str]) -> None:
    from ser_jax.reports.explore import explore_command

    explore_command(FLAGS.config, data=FLAGS.data, corpus=FLAGS.corpus, out=FLAGS.out)


def _augment_figure(rest: list[str]) -> None:
    from ser_jax.reports.augment_figure import augment_figure_command

    augment_figure_command(FLAGS.config, wav=FLAGS.wav, out=FLAGS.out)


def _demo_corpus(rest: list[str]) -> None:
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


def _ensemble(rest: list[str]) -> None:
    from ser_jax.research.committees import ensemble_runs
    from ser_jax.serving.shipped import parse_weights

    if not rest:
        raise UsageError(
            "ensemble needs one or more cv (or `train --seeds N`) run directories after the flags"
        )

    ensemble_runs(
        rest,
        _need("out", "ensemble", "the folder to write the ensemble's summary to"),
        rule=FLAGS.rule or "mean",
        weights=None if FLAGS.weights is None else parse_weights(FLAGS.weights, len(rest)),
        weight_grid=(
            None
            if FLAGS.weight_grid is None
            else parse_weights(FLAGS.weight_grid, None, "--weight_grid")
        ),
    )


def _select(rest: list[str]) -> None:
    from ser_jax.research.nested import select

    if rest:
        raise UsageError(f"select takes no arguments after the flags (got {' '.join(rest)})")
    select(
        _need("candidates", "select", "the candidates file"),
        _need("runs", "select", "the folder of the members' cv directories"),
        _need("out", "select", "the folder to write the nested summary to"),
    )


def _table(rest: list[str]) -> None:
    from ser_jax.protocols import table_command

    table_command(FLAGS.run or "runs")


def _explain(rest: list[str]) -> None:
    from ser_jax.serving.explain import explain_command

    explain_command(
        rest,
        out=FLAGS.out,
        data=FLAGS.data,
        corpus=FLAGS.corpus,
        label=FLAGS.label,
        model_name=FLAGS.model,
        run_dir=FLAGS.run,
        steps=FLAGS.steps,
        per_class=FLAGS.per_class,
        as_json=FLAGS.json,
    )


def _tfds_build(rest: list[str]) -> None:
    from ser_jax.data.tfds_emodb import build_emodb_tfds

    data = _need("data", "tfds-build", "the folder of Emo-DB wav files")
    out = _need("out", "tfds-build", "the TFDS data_dir to write")
    build_emodb_tfds(data, out)
    print(f"built TFDS dataset 'emodb' in {out}")


_MP = ("coordinator", "num_processes", "process_id")
VERBS: dict[str, Verb] = {
    v.name: v
    for v in (
        Verb(
            "train",
            "train and evaluate one config (resumes from the run directory); --seeds N for mean ± std",
            ("config", "workdir", "seeds", *_MP),
            "ser-jax train --config experiments/configs/best.py --config.train.epochs=10 --seeds 3",
            _train,
        ),
        Verb(
            "cv",
            "leave-one-speaker-out (or speaker k-fold) cross-validation, per-fold and pooled metrics",
            ("config", "workdir", "seeds", *_MP),
            "ser-jax cv --config experiments/configs/best.py --seeds 2 --config.train.members=8",
            _cv,
        ),
        Verb(
            "evaluate",
            "score a run's selected model on its own test split or on another corpus",
            ("run", "data", "corpus", "out", "speaker_bn", "balanced", "tta_semitones"),
            "ser-jax evaluate --run runs/best/seed10 --data /data/other_emodb --corpus emodb",
            _evaluate,
        ),
        Verb(
            "predict",
            "label and class probabilities for audio files (any length, any sample rate)",
            (
                "run",
                "model",
                "json",
                "timeline",
                "csv",
                "speaker_bn",
                "speaker_from",
                "balanced",
                "tta_semitones",
                "rule",
                "weights",
            ),
            "ser-jax predict clip1.wav long.flac --timeline timeline.png   (the shipped model)",
            _predict,
        ),
        Verb(
            "models",
            "list the models shipped in the package, with their model card's summary",
            (),
            "ser-jax models",
            _models,
        ),
        Verb(
            "package",
            "copy a finished run's selected model into the package (ser_jax/pretrained/NAME), "
            "or ship a committee of shipped models (--members A,B,...)",
            (
                "run",
                "name",
                "out",
                "reference",
                "loso",
                "seed_runs",
                "nested",
                "members",
                "weights",
            ),
            "ser-jax package --run runs/release --name emodb-cnn-lstm --reference 03a01Wa.wav",
            _package,
        ),
        Verb(
            "export",
            "write a model as serialised StableHLO (jax.export) or, with --format onnx, an "
            "ONNX graph for onnxruntime: waveform → probabilities",
            ("run", "model", "out", "format"),
            "ser-jax export --out ser.jaxexport   (the default model, a committee, as one "
            "function; --model NAME, --run DIR for another; --format onnx --out ser.onnx)",
            _export,
        ),
        Verb(
            "explore",
            "label histogram, example waveforms and log-mel spectrograms, summary tables",
            ("config", "data", "corpus", "out"),
            "ser-jax explore --data $SER_EMODB_DIR --out runs/explore",
            _explore,
        ),
        Verb(
            "augment-figure",
            "one utterance, clean and under each augmentation (waveform + log-mel)",
            ("config", "wav", "out"),
            "ser-jax augment-figure --wav 03a01Wa.wav --out runs/augmentations.png",
            _augment_figure,
        ),
        Verb(
            "demo-corpus",
            "write the synthetic demo corpus to a folder",
            ("config", "out"),
            "ser-jax demo-corpus --out demo_corpus",
            _demo_corpus,
        ),
        Verb(
            "ensemble",
            "average the test probabilities of every model of several cv runs (same speakers), "
            "or committees of seed-protocol runs (`train --seeds N`, same seeds)",
            ("out", "rule", "weights", "weight_grid"),
            "ser-jax ensemble --out runs/ens_levers runs/abl_v0_last runs/abl_v0_dsnorm",
            _ensemble,
        ),
        Verb(
            "select",
            "choose among candidate models and test-time views nested by speaker, from one cv "
            "run per member: the nested pooled UAR, each speaker's choice, the winner",
            ("candidates", "runs", "out"),
            "ser-jax select --candidates experiments/selection/default_model.py "
            "--runs results/loso --out results/select/default",
            _select,
        ),
        Verb(
            "table",
            "every results.json under a folder → results.csv and results.md",
            ("run",),
            "ser-jax table --run runs",
            _table,
        ),
        Verb(
            "tfds-build",
            "build the emodb TFDS dataset (array_record) from a folder of Emo-DB wav files",
            ("data", "out"),
            "ser-jax tfds-build --data $SER_EMODB_DIR --out /data/tfds",
            _tfds_build,
        ),
        Verb(
            "explain",
            "integrated gradients of a class's probability over a recording's log-mel (PNG; "
            "--json: the totals), or each class's mean over a corpus (--data DIR)",
            ("model", "run", "out", "label", "steps", "json", "data", "corpus", "per_class"),
            "ser-jax explain 03a01Wa.wav --out why.png   (the shipped default; "
            "--data $SER_EMODB_DIR --per_class 8 --out classes.png)",
            _explain,
        ),
    )
}


def usage() -> str:
    width = max(map(len, VERBS))
    lines = [
        "usage: ser-jax VERB [--config FILE] [--config.section.field=value ...] [flags]",
        "",
        "verbs:",
        *(f"  {v.name:<{width}}  {v.summary}" for v in VERBS.values()),
        "",
        "ser-jax VERB --help shows a verb's flags and an example; --debug shows tracebacks.",
    ]
    return "\n".join(lines)


def verb_help(verb: Verb) -> str:
    _define_flags()
    lines = [f"ser-jax {verb.name}: {verb.summary}", "", "flags:"]
    for name in verb.flags:
        flag = FLAGS[name]
        default = "" if flag.default in (None, False, "") else f" (default: {flag.default})"
        if name == "config":
            default = " (default: ser_jax/config.py, the synthetic demo corpus)"
        lines.append(f"  --{name:<14} {flag.help}{default}")
    if "config" in verb.flags:
        lines.append(f"  --{'config.X.Y=V':<14} override any config field")
    lines += ["", "example:", f"  {verb.example}"]
    return "\n".join(lines)


def _config_error(err: BaseException, argv: list[str]) -> str:
    """A one-line message for a bad ``--config`` file or override."""
    text = str(err).strip().strip("'\"").replace("\\n", "\n")
    match = re.search(r'Did you mean "([^"]+)" instead of "([^"]+)"', text)
    if match:
        wrong = match.group(2)
        arg = next((a.split("=")[0] for a in argv if re.search(rf"\.{wrong}\b", a)), wrong)
        return f"{arg}: {wrong!r} is not a config field (did you mean {match.group(1)!r}?)"
    return " ".join(text.split())


ACCELERATOR_PLUGINS = ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm60_plugin", "libtpu")
MAX_CPU_DEVICES = 8


def cpu_devices(cores: int, batch_size: int, members: int) -> int:
    """Virtual CPU devices for a job on ``cores`` cores: one per core (at most 8), so each
    core runs its own slice of the batch, or its own models with ``train.members``; for one
    model the count must divide the batch (the largest such count up to the cores)."""
    cores = max(1, min(cores, MAX_CPU_DEVICES))
    if members >= 2:
        return cores
    return max(d for d in range(1, cores + 1) if batch_size % d == 0)


def backends_started() -> bool:
    """Whether jax has created its devices (after which ``XLA_FLAGS`` no longer applies)."""
    if "jax" not in sys.modules:
        return False
    from jax._src import xla_bridge  # no public API says whether the backends are up

    return bool(getattr(xla_bridge, "backends_are_initialized", lambda: True)())


def cpu_layout(config: Any) -> int | None:
    """On a machine with no accelerator, split the CPU into virtual devices (``cpu_devices``):
    XLA keeps one device's work on about one core here, and a device per core trains one
    model about 1.7x faster (``benchmarks/train_step.py --devices 2``; ``benchmarks/members.py``
    for several models). Returns the device count set, or None when left alone: an
    accelerator is installed, or ``XLA_FLAGS`` already chose. Must run before jax starts its
    backends (XLA reads the flags then; importing jax, as the config's model fields do, is fine).
    """
    flags_now = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" in flags_now or backends_started():
        return None
    platforms = os.environ.get("JAX_PLATFORMS", "").strip().lower()
    if platforms not in ("", "cpu"):
        return None
    if not platforms and any(importlib.util.find_spec(p) for p in ACCELERATOR_PLUGINS):
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    count = cpu_devices(cores or 1, int(config.train.batch_size), int(config.train.members))
    if count > 1:
        os.environ["XLA_FLAGS"] = f"{flags_now} --xla_force_host_platform_device_count={count}"
    return count


def compilation_cache(multi_process: bool = False) -> str | None:
    """Keep XLA's compiled programs on disk, so a rerun, a resumed job or the next point of a
    sweep skips compiling what an earlier process already compiled (the same program gives the
    same executable: results do not change). ``JAX_COMPILATION_CACHE_DIR`` chooses the folder
    (jax reads it itself); otherwise ``<SER_JAX_CACHE>/xla``, for single-process jobs only: in a
    multi-process job one process finding a program in the cache while another compiles it
    puts them out of step, and CPU (gloo) collectives give up after 30 s of waiting (measured
    on 2 processes on a loaded 2-core machine). ``SER_JAX_XLA_CACHE=0`` turns it off. Returns
    the folder in use, or None when off."""
    import jax

    if os.environ.get("SER_JAX_XLA_CACHE", "1").strip().lower() in ("0", "false", "off", "no"):
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    chosen = os.environ.get("JAX_COMPILATION_CACHE_DIR")
    if chosen:
        return chosen
    if multi_process:
        return None
    from ser_jax.data.prepare import cache_dir

    folder = cache_dir() / "xla"
    jax.config.update("jax_compilation_cache_dir", str(folder))
    return str(folder)


def main(argv: list[str]) -> int:
    verb, rest = argv[1], argv[2:]
    from absl import logging

    # absl turns library INFO logs on (orbax is chatty); keep the console for our output.
    logging.set_verbosity(logging.WARNING)
    from ser_jax import parallel

    multi = parallel.initialize_distributed(
        FLAGS.coordinator, FLAGS.num_processes, FLAGS.process_id
    )
    compilation_cache(multi_process=multi)
    return VERBS[verb].run(rest) or 0


def run(argv: list[str] | None = None) -> None:
    """Console-script entry point: ``sys.exit`` with the verb's status."""
    argv = list(sys.argv if argv is None else argv)
    args = argv[1:]
    debug = "--debug" in args or os.environ.get("SER_JAX_DEBUG", "") not in ("", "0")
    if debug:
        os.environ["SER_JAX_DEBUG"] = "1"  # library layers show what they would hide
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        sys.exit(0 if args else 2)
    verb = args[0]
    if verb not in VERBS:
        print(f"error: unknown verb {verb!r}\n\n{usage()}", file=sys.stderr)
        sys.exit(2)
    if "-h" in args or "--help" in args:
        sys.argv = [argv[0]]  # the config flag must not parse the overrides for help
        print(verb_help(VERBS[verb]))
        sys.exit(0)
    try:
        sys.argv = argv  # the config flag reads its overrides from sys.argv when defined
        _define_flags()
        positional = FLAGS([argv[0], *args])
        if args[0] in ("train", "cv"):
            cpu_layout(FLAGS.config)
        code = main(positional)
    except (flags.Error, OSError, AttributeError, KeyError) as err:
        if debug or not _from_flags(err):
            raise
        print(f"error: {_config_error(err, args)}", file=sys.stderr)
        sys.exit(2)
    except SerJaxError as err:
        if debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code)


def _from_flags(err: BaseException) -> bool:
    """Whether an error came from parsing the command line or loading the config file (not
    from a bug deeper down, whose traceback must stay visible)."""
    if isinstance(err, flags.Error):
        return True
    tb = err.__traceback__
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        if "config_flags" in name or "absl/flags" in name:
            return True
        tb = tb.tb_next
    return False


if __name__ == "__main__":
    run()
