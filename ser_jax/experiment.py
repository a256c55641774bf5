"""Experiments over runs: several seeds, speaker cross-validation, and result tables.

- ``run_seeds``: one config, seeds ``s, s+1, ...``; each seed a run directory ``seed<k>/``; a
  ``summary.json``/``summary.md`` with mean ± std (sample std, ddof=1) of the test metrics,
  and, when the seeds share one split, the ensemble of their averaged probabilities.
- ``cross_validate``: leave-one-speaker-out over every speaker (each fold its own run directory
  ``fold<k>-<speaker>/seed<s>/``), the audio loaded once; per-fold metrics, their mean ± std,
  and pooled metrics from all folds' test predictions with a pooled confusion matrix PNG.
- ``collect_runs``: every ``results.json`` under a folder → one table (CSV and Markdown).

With ``train.members = N`` (N ≥ 2) the seeds or folds are trained N at a time as members of one
compiled step (``ser_jax.training.train.train_members``); each still writes its own run directory, so
every summary here reads the same files either way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from ser_jax.data.prepare import PreparedData, load_all, prepare
from ser_jax.errors import ConfigError
from ser_jax.evaluation.metrics import (
    RULES,
    balanced_probabilities,
    classification_metrics,
    combine_probabilities,
    confusion_matrix,
    format_table,
    read_predictions,
    training_prior,
)
from ser_jax.evaluation.tables import HEADLINE, fmt, markdown, mean_std, summarize, write_tables
from ser_jax.reports.figures import plot_confusion
from ser_jax.research.weights import choose_weights
from ser_jax.rundir import command_line
from ser_jax.training.train import train_members


def with_overrides(config: Any, **updates: Any) -> Any:
    """A copy of ``config`` with dotted fields replaced (``with_overrides(c, **{"a.b": 1})``)."""
    cfg = config.copy_and_resolve_references()
    with cfg.unlocked():
        for dotted, value in updates.items():
            node = cfg
            *parents, leaf = dotted.split(".")
            for p in parents:
                node = node[p]
            node[leaf] = value
    return cfg


def train_all(
    configs: Sequence[Any],
    workdirs: Sequence[Path],
    datas: Sequence[PreparedData | None],
    job_root: Path,
) -> list[dict[str, Any]]:
    """Train every config into its run directory: one at a time, or ``train.members`` at a
    time in one compiled step (job checkpoints under ``job_root/members<i>``)."""
    group = int(configs[0].train.members)
    results: list[dict[str, Any]] = []
    if group < 2:
        for cfg, w, d in zip(configs, workdirs, datas, strict=True):
            print(f"=== {w} ===", flush=True)
            results += train_members([cfg], [w], [d], job_dir=w, stacked=False)
        return results
    for i, start in enumerate(range(0, len(configs), group)):
        part = slice(start, start + group)
        names = ", ".join(str(w) for w in workdirs[part])
        print(f"=== {len(configs[part])} models together: {names} ===", flush=True)
        results += train_members(
            configs[part], workdirs[part], datas[part], job_dir=job_root / f"members{i}"
        )
    return results


def run_seeds(config: Any, workdir: str | Path, seeds: int = 1) -> dict[str, Any]:
    workdir = Path(workdir)
    if seeds <= 1:
        return train_members([config], [workdir], job_dir=workdir, stacked=False)[0]
    base = int(config.seed)
    seed_list = [base + k for k in range(seeds)]
    configs = [with_overrides(config, seed=s) for s in seed_list]
    dirs = [workdir / f"seed{s}" for s in seed_list]
    results = train_all(configs, dirs, [None] * seeds, workdir)
    summary = {
        "name": str(config.name),
        "command": command_line(),
        "seeds": seed_list,
        "per_seed": [{k: r[k] for k in ("seed", *HEADLINE)} for r in results],
        **summarize(results),
        **validation_summary(results),
    }
    if all(r.get("speaker_bn") for r in results):  # eval.speaker_bn: beside, its own protocol
        adapted = [r["speaker_bn"] for r in results]
        summary["speaker_bn"] = {
            "source": adapted[0].get("source", "scored"),
            **summarize(adapted),
        }
    if all(r.get("tta") for r in results):  # test-time augmentation: beside
        tta = [r["tta"] for r in results]
        summary["tta"] = {
            "shifts_seconds": tta[0].get("shifts_seconds", []),
            "semitones": tta[0].get("semitones", []),
            **summarize(tta),
        }
    ensemble = seed_ensemble(dirs)
    if ensemble is not None:
        summary["ensemble"] = ensemble
    if jax.process_index() == 0:
        (workdir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        lines = [
            f"# {config.name}: {seeds} seeds",
            "",
            markdown(
                ["metric", "mean ± std"],
                [[k, summary[k]] for k in (*VAL_HEADLINE, *HEADLINE) if k in summary]
                + [
                    [
                        f"{k}, speaker-adaptive BatchNorm ({summary['speaker_bn']['source']} clips)",
                        v,
                    ]
                    for k, v in summary.get("speaker_bn", {}).items()
                    if k != "source"
                ]
                + [
                    [f"{k}, test-time augmentation", v]
                    for k, v in summary.get("tta", {}).items()
                    if k.startswith("test_")
                ],
            ),
        ]
        if ensemble is not None:
            lines += [
                "",
                f"Ensemble of the {seeds} seeds (class probabilities averaged; all seeds share "
                f"one split): accuracy {ensemble['accuracy']:.4f}, UAR {ensemble['uar']:.4f}, "
                f"macro-F1 {ensemble['macro_f1']:.4f}",
            ]
        (workdir / "summary.md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
    return summary


VAL_HEADLINE = ("val_accuracy", "val_uar")


def validation_summary(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``{val_accuracy, val_uar: mean_std}`` of the seeds' validation split at their selected
    epochs, when every seed has one (a split with no validation files has none): the figures a
    choice between configurations may read on the seed protocol, as the test split may not be
    read for it."""
    vals = [r.get("val_at_selected") for r in results]
    if not vals or any(not v for v in vals):
        return {}
    return summarize(vals, VAL_HEADLINE)


def seed_ensemble(run_dirs: Sequence[Path]) -> dict[str, Any] | None:
    """Average the test-set class probabilities of runs that share one test split.

    A fixed rule (the mean), chosen before looking at test data, so it selects nothing on test.
    Returns None when the runs' test sets differ (each seed drew its own split).
    """
    runs = [read_predictions(d) for d in run_dirs]
    if len(runs) < 2 or any(set(r) != set(runs[0]) for r in runs[1:]):
        return None
    ids = sorted(runs[0])
    names = list(runs[0][ids[0]]["probs"])
    probs = np.mean([[[r[i]["probs"][n] for n in names] for i in ids] for r in runs], axis=0)
    truth = [names.index(runs[0][i]["label"]) for i in ids]
    m = classification_metrics(truth, probs.argmax(-1), names)
    return {k: m[k] for k in ("accuracy", "uar", "macro_f1", "count")} | {"runs": len(runs)}


def cross_validate(config: Any, workdir: str | Path, seeds: int = 1) -> dict[str, Any]:
    """Cross-validation over speakers, for ``seeds`` seeds each: leave-one-speaker-out, or
    k-fold over speaker groups when ``config.data.split == "speaker_kfold"``
    (``config.data.folds`` groups)."""
    workdir = Path(workdir)
    loaded = load_all(config.data, progress=bool(config.train.progress))
    speakers = sorted({u.speaker for u in loaded[1]})
    kfold = str(config.data.split) == "speaker_kfold"
    kind = "speaker_kfold" if kfold else "loso"
    n_folds = int(config.data.folds) if kfold else len(speakers)
    base = int(config.seed)
    configs, datas, dirs, keys = [], [], [], []
    for fold in range(n_folds):
        for k in range(seeds):
            seed = base + k
            cfg = with_overrides(config, seed=seed, **{"data.split": kind, "data.fold": fold})
            data = prepare(cfg, loaded=loaded)
            speaker = "+".join(sorted({u.speaker for u in data.test.utts}))
            configs.append(cfg)
            datas.append(data)
            dirs.append(workdir / f"fold{fold}-{speaker}" / f"seed{seed}")
            keys.append((fold, speaker, seed))
    results = train_all(configs, dirs, datas, workdir)
    label_names = datas[0].label_names
    per_fold = [
        {"fold": fold, "speaker": speaker, "seed": seed, **{m: r[m] for m in HEADLINE}}
        for (fold, speaker, seed), r in zip(keys, results, strict=True)
    ]
    seed_list = sorted({seed for _, _, seed in keys})
    pooled = pool_by_seed(keys, dirs, label_names, "test")
    beside = {  # summary key → pooled metrics by seed, for the kinds every fold run has
        key: pool_by_seed(keys, dirs, label_names, kind)
        for kind, key, _ in BESIDE
        if all(has_kind(d, kind) for d in dirs)
    }
    summary = {
        "name": str(config.name),
        "command": command_line(),
        "protocol": (
            f"{n_folds}-fold over speaker groups ({len(speakers)} speakers)"
            if kfold
            else f"leave-one-speaker-out over {len(speakers)} speakers"
        ),
        "speakers": speakers,
        "seeds": sorted(pooled),
        "per_fold": per_fold,
        "fold_mean": summarize(per_fold),
        "pooled": {
            m: mean_std([pooled[s][m.removeprefix("test_")] for s in pooled]) for m in HEADLINE
        },
        "pooled_per_seed": {
            str(s): {k: pooled[s][k] for k in ("accuracy", "uar", "macro_f1")} for s in pooled
        },
    }
    for key, by_seed in beside.items():  # beside the plain numbers, never instead
        summary[key] = {
            m: mean_std([by_seed[s][m.removeprefix("test_")] for s in by_seed]) for m in HEADLINE
        }
    if len(seed_list) > 1:  # the seeds' probabilities averaged per file: beside, not instead
        ens = ensemble_over_seeds(keys, dirs, label_names)
        summary["ensemble"] = {k: ens[k] for k in ("accuracy", "uar", "macro_f1", "count")}
    if jax.process_index() == 0:
        workdir.mkdir(parents=True, exist_ok=True)
        cm = np.sum([np.asarray(pooled[s]["confusion"]) for s in pooled], axis=0)
        plot_confusion(
            cm,
            label_names,
            workdir / "pooled_confusion.png",
            title=(
                f"{config.name} {'speaker k-fold' if kfold else 'LOSO'} pooled over {n_folds} "
                f"folds × {len(pooled)} seeds: "
                f"UAR {summary['pooled']['test_uar']['mean']:.3f}"
            ),
        )
        summary["pooled_confusion"] = cm.tolist()
        summary["labels"] = list(label_names)
        (workdir / "cv_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        pooled_name = "mean ± std over seeds" if len(pooled) > 1 else "one seed"
        lines = [
            f"# {config.name}: {summary['protocol']}, {len(pooled)} seed(s)",
            "",
            markdown(
                ["fold", "speaker", "seed", "accuracy", "UAR", "macro-F1"],
                [[r["fold"], r["speaker"], r["seed"], *(r[m] for m in HEADLINE)] for r in per_fold],
            ),
            "",
            markdown(
                ["aggregate", "accuracy", "UAR", "macro-F1"],
                [
                    ["mean ± std over folds", *(fmt(summary["fold_mean"][m]) for m in HEADLINE)],
                    [f"pooled ({pooled_name})", *(fmt(summary["pooled"][m]) for m in HEADLINE)],
                ],
            ),
        ]
        extra = [
            [f"pooled, {what}", *(fmt(summary[key][m]) for m in HEADLINE)]
            for _, key, what in BESIDE
            if key in summary
        ]
        if "ensemble" in summary:
            e = summary["ensemble"]
            extra.append(
                [
                    f"pooled, ensemble of {len(seed_list)} seeds",
                    e["accuracy"],
                    e["uar"],
                    e["macro_f1"],
                ]
            )
        if extra:
            lines += [
                "",
                markdown(["beside the single models", "accuracy", "UAR", "macro-F1"], extra),
            ]
        (workdir / "cv_summary.md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
        print(format_table(pooled[min(pooled)]))
    return summary


# The balanced decision of a kind of predictions (``test_balanced``: the ``test`` predictions
# divided by the run's training prior, ``ser_jax.evaluation.metrics.balanced_probabilities``), computed
# from the saved probabilities: no file of its own.
BALANCED = "_balanced"

# (predictions kind, summary key, what) of the evaluations a cv summary reports beside the
# plain pooled test, when every fold run has them.
BESIDE = (
    ("test_tta", "pooled_tta", "test-time augmentation"),
    ("test_speaker_bn", "pooled_speaker_bn", "speaker-adaptive BatchNorm"),
    ("test_balanced", "pooled_balanced", "balanced decision (÷ training prior)"),
    (
        "test_speaker_bn_balanced",
        "pooled_speaker_bn_balanced",
        "speaker-adaptive BatchNorm, balanced decision",
    ),
)


def has_kind(run_dir: Path, kind: str) -> bool:
    """Whether a run can give ``kind`` predictions: its ``<kind>_predictions.jsonl`` (for a
    balanced kind, its source's, and the training class counts to divide by)."""
    source = kind.removesuffix(BALANCED)
    if not (Path(run_dir) / f"{source}_predictions.jsonl").exists():
        return False
    if source == kind:
        return True
    try:
        json.loads((Path(run_dir) / "run_info.json").read_text())["data"]["train"]["per_label"]
    except (FileNotFoundError, KeyError, TypeError, json.JSONDecodeError):
        return False
    return True


def pool_by_seed(
    keys: Sequence[tuple[int, str, int]],
    dirs: Sequence[Path],
    label_names: Sequence[str],
    name: str,
) -> dict[int, dict[str, Any]]:
    """Per seed, the metrics of every fold's test predictions at once (each file once)."""
    by_seed: dict[int, tuple[list[int], list[int]]] = {}
    for (_, _, seed), run_dir in zip(keys, dirs, strict=True):
        truth, pred = by_seed.setdefault(seed, ([], []))
        if name.endswith(BALANCED):
            probs, labels = file_probabilities([run_dir], label_names, name)
            for utt, (p,) in probs.items():
                truth.append(labels[utt])
                pred.append(int(np.argmax(p)))
            continue
        for row in read_predictions(run_dir, name).values():
            truth.append(label_names.index(row["label"]))
            pred.append(label_names.index(row["predicted"]))
    return {s: classification_metrics(t, p, label_names) for s, (t, p) in by_seed.items()}


def file_probabilities(
    run_dirs: Sequence[Path], label_names: Sequence[str], name: str = "test"
) -> tuple[dict[str, list[np.ndarray]], dict[str, int]]:
    """Per test file, the class probabilities (in ``label_names`` order) of every run that
    scored it (``<name>_predictions.jsonl``), and its true class. A ``name`` ending in
    ``_balanced`` reads the predictions without the suffix and divides each run's by its own
    training prior (the balanced decision)."""
    source = name.removesuffix(BALANCED)
    probs: dict[str, list[np.ndarray]] = {}
    truth: dict[str, int] = {}
    for run_dir in run_dirs:
        prior = training_prior(run_dir, label_names) if source != name else None
        for utt, row in read_predictions(run_dir, source).items():
            p = np.array([row["probs"][n] for n in label_names])
            probs.setdefault(utt, []).append(
                p if prior is None else balanced_probabilities(p, prior)
            )
            truth[utt] = label_names.index(row["label"])
    return probs, truth


def score_mean(
    probs: dict[str, list[np.ndarray]],
    truth: dict[str, int],
    label_names: Sequence[str],
    rule: str = "mean",
    weights: dict[str, list[float]] | None = None,
) -> dict[str, Any]:
    """Metrics of each file's class probabilities combined over its models (``rule``, as
    ``ser_jax.evaluation.metrics.combine_probabilities``: their mean by default; ``weights``: per file,
    a weight for each of its models), over all files at once."""
    ids = sorted(probs)
    combined = np.array(
        [
            combine_probabilities(probs[u], rule, None if weights is None else weights[u])
            for u in ids
        ]
    )
    return classification_metrics([truth[u] for u in ids], combined.argmax(-1), label_names)


def ensemble_over_seeds(
    keys: Sequence[tuple[int, str, int]], dirs: Sequence[Path], label_names: Sequence[str]
) -> dict[str, Any]:
    """Pooled metrics of the seeds' class probabilities averaged per test file (each fold's
    seeds share its split)."""
    return score_mean(*file_probabilities(dirs, label_names), label_names)


def collect_runs(root: str | Path) -> list[dict[str, Any]]:
    """One row per ``results.json`` under ``root``: the run's path, name, seed and test metrics."""
    rows = []
    for path in sorted(Path(root).rglob("results.json")):
        r = json.loads(path.read_text())
        rows.append(
            {
                "run": str(path.parent),
                "name": r.get("name", ""),
                "seed": r.get("seed"),
                "split": r.get("split", ""),
                **{m: r.get(m) for m in HEADLINE},
            }
        )
    return rows


def table_command(root: str | Path) -> None:
    """``ser-jax table``: every run under ``root`` → ``results.csv`` and ``results.md``."""
    root = Path(root)
    rows = collect_runs(root)
    if not rows:
        print(f"no results.json under {root}")
        return
    print(write_tables(rows, root / "results.csv", root / "results.md"))


ENSEMBLE_KINDS = (
    ("test", "pooled"),
    ("test_speaker_bn", "pooled_speaker_bn"),
    ("test_balanced", "pooled_balanced"),
    ("test_speaker_bn_balanced", "pooled_speaker_bn_balanced"),
    ("test_tta", "pooled_tta"),
)
# How the tables name each rule of combining models' probabilities (the first column).
RULE_NAMES = {"mean": "averaged probabilities", "geometric": "geometric mean of probabilities"}
RULE_TITLES = {"mean": "", "geometric": ", geometric mean"}  # in the confusion PNGs' titles
# The validation split's predictions (seed-protocol runs with validation files): committees
# of seed-protocol runs are scored on it too, the figures to choose a committee by. Key and
# kind are the same name in ``ensemble_summary.json``'s committees.
VAL_KINDS = (
    ("val", "each seed's validation split"),
    ("val_balanced", "each seed's validation split, balanced decision (÷ training prior)"),
)
# The names of ENSEMBLE_KINDS' summary keys in tables.
KIND_NAMES = (
    ("pooled", "pooled"),
    ("pooled_speaker_bn", "pooled, speaker-adaptive BatchNorm"),
    ("pooled_balanced", "pooled, balanced decision (÷ training prior)"),
    ("pooled_speaker_bn_balanced", "pooled, speaker-adaptive BatchNorm, balanced decision"),
    ("pooled_tta", "pooled, test-time augmentation"),
)


def cv_models(cv_dir: Path) -> tuple[dict[str, Any], list[Path]]:
    """The ``cv_summary.json`` of a finished ``ser-jax cv`` directory and its fold runs
    (``fold<k>-<speaker>/seed<s>``) as the summary lists them; refuses a folder that is not a
    finished cv directory, or a listed run without its test predictions."""
    summary_path = Path(cv_dir) / "cv_summary.json"
    if not summary_path.exists():
        raise ConfigError(
            f"{cv_dir}: not a finished cv run directory (no cv_summary.json; "
            "`ser-jax cv` writes it when every fold has finished)"
        )
    summary = json.loads(summary_path.read_text())
    runs = [
        Path(cv_dir) / f"fold{r['fold']}-{r['speaker']}" / f"seed{r['seed']}"
        for r in summary["per_fold"]
    ]
    for run in runs:
        if not (run / "test_predictions.jsonl").exists():
            raise ConfigError(
                f"{run}: listed in {summary_path}, but its test_predictions.jsonl is missing"
            )
    return summary, runs


def scored_kinds(runs: Sequence[Path]) -> list[tuple[str, str]]:
    """The ``ENSEMBLE_KINDS`` every one of ``runs`` scored: never a mix of some models'
    probabilities."""
    return [(kind, key) for kind, key in ENSEMBLE_KINDS if all(has_kind(run, kind) for run in runs)]


def committee_summary(scored: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy, UAR and macro-F1 of each committee's metrics: mean, sample std (ddof=1, as
    every mean ± std over seeds here; 0 for one committee) and each."""
    out = {}
    for metric in ("accuracy", "uar", "macro_f1"):
        each = [float(m[metric]) for m in scored]
        out[metric] = mean_std(each) | {"each": each}
    return out


def committee_probabilities(
    found: Sequence[tuple[Path, dict[str, Any], list[Path]]],
    label_names: Sequence[str],
    kind: str,
) -> list[tuple[np.ndarray, np.ndarray, list[str]]]:
    """The committees of one model per cv run (committee k: the k-th seed of every run, their
    seeds sorted; as many as the fewest seeds of any run), each as ``(probs (runs, files,
    classes), truth (files,), file ids)``, the files sorted, every run's row its k-th seed's
    ``kind`` probabilities."""
    seeds = []
    for _, summary, runs in found:
        of_run = [int(r["seed"]) for r in summary["per_fold"]]
        seeds.append((sorted(set(of_run)), of_run, runs))
    out = []
    for k in range(min(len(s) for s, _, _ in seeds)):
        rows, truth = [], {}
        for unique, of_run, runs in seeds:
            chosen = [run for run, s in zip(runs, of_run, strict=True) if s == unique[k]]
            got, labels = file_probabilities(chosen, label_names, kind)
            truth |= labels
            rows.append(got)
        ids = sorted(truth)
        probs = np.stack([np.stack([got[u][0] for u in ids]) for got in rows])
        out.append((probs, np.array([truth[u] for u in ids]), ids))
    return out


def seed_committees(
    by_kind: dict[str, list[tuple[np.ndarray, np.ndarray, list[str]]]],
    label_names: Sequence[str],
    kinds: Sequence[tuple[str, str]],
    rule: str = "mean",
    weights: Sequence[float] | None = None,
) -> dict[str, Any] | None:
    """Committees of one model per cv run (``by_kind``: ``committee_probabilities`` of each
    kind): committee k combines, per file, the k-th seed of every run (``weights``: one a
    run), so an ensemble recipe gets one pooled figure per committee and a mean ± std over
    them, like a single config over its seeds. None when there is one committee (it would be
    the ensemble itself)."""
    out: dict[str, Any] = {}
    for kind, key in kinds:  # (predictions file prefix, summary key), as in ENSEMBLE_KINDS
        committees = by_kind[kind]
        if len(committees) < 2:
            return None
        out["count"] = len(committees)
        scored = [
            classification_metrics(
                truth, combine_probabilities(list(probs), rule, weights).argmax(-1), label_names
            )
            for probs, truth, _ in committees
        ]
        out[key] = committee_summary(scored)
    return out


def weight_grid_committees(
    found: Sequence[tuple[Path, dict[str, Any], list[Path]]],
    by_kind: dict[str, list[tuple[np.ndarray, np.ndarray, list[str]]]],
    label_names: Sequence[str],
    kinds: Sequence[tuple[str, str]],
    grid: Sequence[float],
    rule: str = "mean",
) -> dict[str, Any]:
    """``ser-jax ensemble --weight_grid``: for each kind, the committees' run weights chosen
    across speakers (``ser_jax.research.weights.choose_weights``): the weights chosen on all speakers
    with their (optimistic) figures, and the nested figures, each speaker decided by weights
    the other speakers chose (``by_kind``: ``committee_probabilities`` of each kind; ``found``
    for each file's speaker)."""
    out: dict[str, Any] = {"grid": sorted({float(g) for g in grid})}
    _, summary, runs = found[0]
    speaker_of = {  # each file's speaker: its row's, else its fold's test speaker
        utt: str(row.get("speaker", fold["speaker"]))
        for fold, run in zip(summary["per_fold"], runs, strict=True)
        for utt, row in read_predictions(run).items()
    }
    for kind, key in kinds:
        committees = by_kind[kind]
        ids = committees[0][2]
        speakers = np.array([speaker_of[u] for u in ids])
        got = choose_weights(
            [(p, t) for p, t, _ in committees], speakers, grid, len(label_names), rule
        )
        out["candidates"] = got["candidates"]
        out[key] = {
            "chosen": got["chosen"],
            "on_all_speakers": _scored(got["chosen_decisions"], committees, label_names),
            "nested": _scored(got["nested_decisions"], committees, label_names),
            "nested_confusion": sum(  # the committees' nested decisions, summed
                confusion_matrix(t, d, len(label_names))
                for d, (_, t, _) in zip(got["nested_decisions"], committees, strict=True)
            ).tolist(),
            "per_speaker": got["per_speaker"],
        }
    return out


def _scored(
    decisions: Sequence[np.ndarray],
    committees: Sequence[tuple[np.ndarray, np.ndarray, list[str]]],
    label_names: Sequence[str],
) -> dict[str, Any]:
    """``committee_summary`` of each committee's decisions against its truth."""
    return committee_summary(
        [
            classification_metrics(t, d, label_names)
            for d, (_, t, _) in zip(decisions, committees, strict=True)
        ]
    )


def seed_models(run_dir: Path) -> tuple[dict[str, Any], dict[int, Path]]:
    """The ``summary.json`` of a finished ``ser-jax train --seeds N`` directory (the seed
    protocol: each seed draws its own split) and its runs by seed; refuses a listed run without
    its test predictions."""
    summary = json.loads((Path(run_dir) / "summary.json").read_text())
    runs = {int(r["seed"]): Path(run_dir) / f"seed{r['seed']}" for r in summary["per_seed"]}
    for run in runs.values():
        if not (run / "test_predictions.jsonl").exists():
            raise ConfigError(
                f"{run}: listed in {run_dir}/summary.json, but its "
                "test_predictions.jsonl is missing"
            )
    return summary, runs


def seed_protocol_committees(
    run_dirs: Sequence[Path], rule: str = "mean", weights: Sequence[float] | None = None
) -> dict[str, Any]:
    """Committees over ``ser-jax train --seeds N`` directories: committee k averages, per test
    file, the runs' models of seed k, which share that seed's split and so its test files (each
    seed's split is a different set of test files, so there is no ensemble over seeds). The
    committees are the seeds every run has; each is scored on its split, reported as mean ± std
    over the seeds, like a single config's seed-protocol figure. ``weights`` (one a directory,
    fixed beforehand, e.g. chosen on leave-one-speaker-out): run i's model counts w[i] times."""
    found = [(Path(d), *seed_models(Path(d))) for d in run_dirs]
    if weights is not None and len(weights) != len(found):
        raise ConfigError(
            f"--weights: {len(weights)} weights for {len(found)} run directories (one a "
            "directory, in order)"
        )

    def labels_of(run: Path) -> list[str]:
        return list(json.loads((run / "test_metrics.json").read_text())["labels"])

    label_names = labels_of(next(iter(found[0][2].values())))
    for _, _, runs in found:
        for run in runs.values():
            if labels_of(run) != label_names:
                raise ConfigError(f"{run}: its classes {labels_of(run)} differ from {label_names}")
    seeds = sorted(set.intersection(*(set(runs) for _, _, runs in found)))
    if not seeds:
        raise ConfigError(
            "the runs share no seed: "
            + "; ".join(f"{d}: seeds {sorted(runs)}" for d, _, runs in found)
            + " (a committee averages the models of one seed, which share its split)"
        )
    every = [runs[s] for _, _, runs in found for s in seeds]
    kinds = scored_kinds(every) + [
        (kind, kind) for kind, _ in VAL_KINDS if all(has_kind(run, kind) for run in every)
    ]
    out: dict[str, Any] = {
        "protocol": "seeds",
        "members": [
            {
                "run": str(d),
                "seeds": sorted(runs),
                "command": summary.get("command", ""),
                "test_uar": summary["test_uar"]["mean"],
                **({} if weights is None else {"weight": float(weights[i])}),
            }
            for i, (d, summary, runs) in enumerate(found)
        ],
        "seeds": seeds,
        "labels": label_names,
        "member_mean_uar": float(np.mean([s["test_uar"]["mean"] for _, s, _ in found])),
        "rule": rule,
        **({} if weights is None else {"weights": [float(w) for w in weights]}),
    }
    committees: dict[str, Any] = {"count": len(seeds)}
    for kind, key in kinds:
        scored = []
        for seed in seeds:
            probs: dict[str, list[np.ndarray]] = {}
            model_weights: dict[str, list[float]] = {}
            truth: dict[str, int] = {}
            files: set[str] | None = None
            for i, (d, _, runs) in enumerate(found):
                got, labels = file_probabilities([runs[seed]], label_names, kind)
                if files is not None and set(got) != files:
                    raise ConfigError(
                        f"{d}: seed {seed}'s test files differ from {found[0][0]}'s "
                        f"({len(set(got) ^ files)} not in both): the runs' seed {seed} did not "
                        "draw the same split (another corpus or split setting?)"
                    )
                files = set(got)
                truth |= labels
                for utt, ps in got.items():
                    probs.setdefault(utt, []).extend(ps)
                    w = 1.0 if weights is None else float(weights[i])
                    model_weights.setdefault(utt, []).extend([w] * len(ps))
            scored.append(
                score_mean(
                    probs, truth, label_names, rule, None if weights is None else model_weights
                )
            )
        committees[key] = committee_summary(scored)
        committees[key]["confusion"] = np.sum([m["confusion"] for m in scored], axis=0).tolist()
    out["committees"] = committees
    return out


def ensemble_runs(
    cv_dirs: Sequence[str | Path],
    workdir: str | Path,
    rule: str = "mean",
    weights: Sequence[float] | None = None,
    weight_grid: Sequence[float] | None = None,
) -> dict[str, Any]:
    """``ser-jax ensemble``: average, per test file, the class probabilities of every model of
    several finished cv runs over the same speakers (each fold run of each directory is one
    model, all weighted alike), and score the averages pooled over all files.

    A fixed rule chosen before looking at the test data (the mean of every model), so nothing is
    selected on test; it is reported beside the single models, never instead of them. Also
    averaged, when every model has them: the speaker-adaptive BatchNorm probabilities (their own
    protocol). Writes ``ensemble_summary.json``/``.md``, ``ensemble_confusion.png`` (and
    ``ensemble_speaker_bn_confusion.png``) and ``run_info.json`` (commit, processor, command)
    to ``workdir``. Directories of ``ser-jax train --seeds N`` (the seed protocol) give their
    committees instead (:func:`seed_protocol_committees`).

    ``weights`` (one a directory): run i counts w[i] times, its models sharing its weight.
    ``weight_grid``: the run weights chosen across speakers, nested and on all speakers
    (:func:`weight_grid_committees`, ``ser_jax.research.weights``), reported beside the fixed rule."""

    if len(cv_dirs) < 1:
        raise ConfigError("ensemble needs one or more cv run directories")
    if rule not in RULES:
        raise ConfigError(
            f"--rule={rule!r}: not a way to combine probabilities ({', '.join(RULES)})"
        )
    workdir = Path(workdir)
    if weights is not None and len(weights) != len(cv_dirs):
        raise ConfigError(
            f"--weights: {len(weights)} weights for {len(cv_dirs)} run directories (one a "
            "directory, in order)"
        )
    seed_dirs = [Path(d) for d in cv_dirs if (Path(d) / "summary.json").exists()]
    if seed_dirs and weight_grid is not None:
        raise ConfigError(
            "--weight_grid chooses the run weights across the speakers of leave-one-speaker-out "
            "(cv) committees; seed-protocol directories (`train --seeds N`) take fixed "
            "--weights (e.g. those chosen on leave-one-speaker-out) or the plain mean"
        )
    if seed_dirs:
        if len(seed_dirs) != len(cv_dirs):
            raise ConfigError(
                f"{', '.join(str(d) for d in cv_dirs if Path(d) not in seed_dirs)}: not a "
                "`ser-jax train --seeds N` directory like the others (no summary.json): a "
                "committee takes runs of one protocol"
            )
        return _seed_protocol_ensemble(seed_dirs, workdir, rule, weights)
    found = [(Path(d), *cv_models(Path(d))) for d in cv_dirs]
    label_names = list(found[0][1]["labels"])
    for cv_dir, summary, _ in found[1:]:
        if list(summary["labels"]) != label_names:
            raise ConfigError(
                f"{cv_dir}: its classes {summary['labels']} differ from {label_names}"
            )
    all_runs = [run for _, _, runs in found for run in runs]
    kinds = scored_kinds(all_runs)
    probs: dict[str, dict[str, list[np.ndarray]]] = {kind: {} for kind, _ in kinds}
    model_weights: dict[str, dict[str, list[float]]] = {kind: {} for kind, _ in kinds}
    truth: dict[str, int] = {}
    files: set[str] | None = None
    per_run: list[dict[str, list[np.ndarray]]] = []  # each directory's test probabilities
    for i, (cv_dir, _, runs) in enumerate(found):
        for kind, _ in kinds:
            got, labels = file_probabilities(runs, label_names, kind)
            truth |= labels
            for utt, ps in got.items():
                probs[kind].setdefault(utt, []).extend(ps)
                share = 1.0 if weights is None else weights[i] / len(ps)
                model_weights[kind].setdefault(utt, []).extend([share] * len(ps))
            if kind != "test":
                continue
            per_run.append(got)
            if files is not None and set(got) != files:
                raise ConfigError(
                    f"{cv_dir}: its test files differ from {cv_dirs[0]}'s ({len(got)} against "
                    f"{len(files)}; {len(set(got) ^ files)} not in both): an ensemble needs the "
                    "same speakers and files"
                )
            files = set(got)
    members = [
        {
            "run": str(cv_dir),
            "models": len(runs),
            "command": summary.get("command", ""),
            **({} if weights is None else {"weight": float(weights[i])}),
            **{
                key: summary[key]["test_uar"]["mean"] for _, key in ENSEMBLE_KINDS if key in summary
            },
        }
        for i, (cv_dir, summary, runs) in enumerate(found)
    ]
    models = len(all_runs)
    ids = sorted(files)
    per_file = sorted({len(probs["test"][u]) for u in ids})
    out: dict[str, Any] = {
        "command": command_line(),
        "members": members,
        "models": models,
        "models_per_file": per_file[0] if len(per_file) == 1 else per_file,
        "files": len(ids),
        "labels": label_names,
        "member_mean_uar": float(np.mean([m["pooled"] for m in members])),
        "rule": rule,
        **({} if weights is None else {"weights": [float(w) for w in weights]}),
    }
    for kind, key in kinds:
        m = score_mean(
            probs[kind], truth, label_names, rule, None if weights is None else model_weights[kind]
        )
        out[key] = {k: m[k] for k in ("accuracy", "uar", "macro_f1", "count", "per_class")}
        out[key]["confusion"] = np.asarray(m["confusion"]).tolist()
    by_kind = {kind: committee_probabilities(found, label_names, kind) for kind, _ in kinds}
    committees = seed_committees(by_kind, label_names, kinds, rule, weights)
    if committees:
        out["committees"] = committees
    if weight_grid is not None:
        out["weight_grid"] = weight_grid_committees(
            found, by_kind, label_names, kinds, weight_grid, rule
        )
    if len(found) > 1:
        out["error_overlap"] = error_overlap(per_run, truth, ids, rule)
    _write_ensemble_summary(workdir, out)
    for key, png, what in (
        ("pooled", "ensemble_confusion.png", f"{out['models_per_file']} models a file"),
        ("pooled_speaker_bn", "ensemble_speaker_bn_confusion.png", "speaker-adaptive BatchNorm"),
        ("pooled_tta", "ensemble_tta_confusion.png", "each model's test-time augmentation"),
    ):
        if key in out:
            plot_confusion(
                np.asarray(out[key]["confusion"]),
                label_names,
                workdir / png,
                title=f"ensemble of {len(members)} cv runs, {what}{RULE_TITLES[rule]}"
                f"{weights_title(weights)}: "
                f"UAR {out[key]['uar']:.3f}",
            )
    rows = [
        [m["run"], m["models"], m["pooled"], m.get("pooled_speaker_bn", "")]
        + ([m["weight"]] if weights is not None else [])
        for m in members
    ]
    header = ["cv run", "models", "pooled UAR", "pooled UAR, speaker-adaptive BN"]
    lines = [
        f"# Ensemble of {len(members)} cv runs: {out['models_per_file']} models score each of "
        f"the {len(ids)} test files ({models} fold runs in all)",
        "",
        markdown(header + (["weight"] if weights is not None else []), rows),
        "",
        f"Mean of the runs' pooled UAR: {out['member_mean_uar']:.4f}",
        "",
        markdown(
            [RULE_NAMES[rule], "accuracy", "UAR", "macro-F1"],
            [
                [name, out[key]["accuracy"], out[key]["uar"], out[key]["macro_f1"]]
                for key, name in KIND_NAMES
                if key in out
            ],
        ),
    ]
    if "error_overlap" in out:
        lines += ["", error_overlap_table(out["error_overlap"], [m["run"] for m in members])]
    if committees:
        lines += [
            "",
            f"Committees of one model per run (the runs' k-th seeds, k = 1..{committees['count']}): "
            "pooled UAR, mean ± std over the committees",
            "",
            committee_table(committees, KIND_NAMES, "UAR per committee", rule),
        ]
    if "weight_grid" in out:
        lines += ["", weight_grid_table(out["weight_grid"], [m["run"] for m in members])]
        nested = out["weight_grid"]["pooled"]
        plot_confusion(
            np.asarray(nested["nested_confusion"]),
            label_names,
            workdir / "ensemble_weights_nested_confusion.png",
            title=f"{len(members)} cv runs, run weights chosen on the other speakers"
            f"{RULE_TITLES[rule]}: UAR {nested['nested']['uar']['mean']:.3f} "
            f"({len(nested['nested']['uar']['each'])} committees summed)",
        )
    (workdir / "ensemble_summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return out


def weights_title(weights: Sequence[float] | None) -> str:
    """A figure title's note of the run weights (nothing when the runs weigh alike)."""
    return "" if weights is None else f", run weights {', '.join(f'{w:g}' for w in weights)}"


def error_overlap(
    per_run: Sequence[dict[str, list[np.ndarray]]],
    truth: dict[str, int],
    ids: Sequence[str],
    rule: str = "mean",
) -> dict[str, Any]:
    """How alike the runs' mistakes are, the measure a committee's make-up is judged by: each
    run decides a file by its own models' combined probabilities (``rule``); ``error`` is the
    share of files a run gets wrong, ``double_fault[i][j]`` the share that runs i and j both
    get wrong (Kuncheva & Whitaker 2003: the lower, the more a committee of the two can
    correct), ``disagreement[i][j]`` the share they decide differently."""
    y = np.array([truth[u] for u in ids])
    decided = np.stack(
        [
            np.array([int(np.argmax(combine_probabilities(run[u], rule))) for u in ids])
            for run in per_run
        ]
    )
    wrong = (decided != y[None]).astype(float)
    n = len(ids)
    return {
        "files": n,
        "error": wrong.mean(axis=1).tolist(),
        "double_fault": (wrong @ wrong.T / n).tolist(),
        "disagreement": (decided[:, None, :] != decided[None, :, :]).mean(axis=2).tolist(),
    }


def error_overlap_table(overlap: dict[str, Any], names: Sequence[str]) -> str:
    """``error_overlap`` as markdown: each run's error, and the share of files it and each
    other run both get wrong."""
    heads = [f"both wrong with {i + 1}" for i in range(len(names))]
    rows = [
        [
            f"{i + 1}: {name}",
            f"{overlap['error'][i]:.3f}",
            *("" if i == j else f"{overlap['double_fault'][i][j]:.3f}" for j in range(len(names))),
        ]
        for i, name in enumerate(names)
    ]
    return (
        "Each run's own decision (its models combined): share of files wrong, and the share "
        "it and each other run both get wrong (double fault: the lower, the more they can "
        "correct each other)\n\n" + markdown(["run", "wrong", *heads], rows)
    )


def weight_grid_table(grid: dict[str, Any], names: Sequence[str]) -> str:
    """``weight_grid_committees`` as markdown: per kind, the weights chosen on all speakers
    (their figure optimistic) and the nested figure, each speaker decided by the others'."""
    rows = []
    for key, name in KIND_NAMES:
        if (g := grid.get(key)) is None:
            continue
        nested, on_all = g["nested"]["uar"], g["on_all_speakers"]["uar"]
        rows.append(
            [
                name,
                ", ".join(f"{w:g}" for w in g["chosen"]),
                f"{on_all['mean']:.4f} ± {on_all['std']:.4f}",
                f"{nested['mean']:.4f} ± {nested['std']:.4f}",
                ", ".join(f"{u:.4f}" for u in nested["each"]),
            ]
        )
    runs = ", ".join(f"{i + 1}: {n}" for i, n in enumerate(names))
    return (
        f"Run weights chosen across speakers from the grid {grid['grid']} ({grid['candidates']} "
        f"candidates; runs {runs}): the weights chosen on all speakers and their UAR on the "
        "files that chose them (optimistic), and the nested UAR, each speaker's files decided "
        "by the weights the other speakers' files chose (the estimate)\n\n"
        + markdown(
            [
                "committees of the runs' k-th seeds",
                "weights chosen on all speakers",
                "UAR on all speakers (optimistic)",
                "UAR, nested by speaker",
                "nested UAR per committee",
            ],
            rows,
        )
    )


def committee_table(
    committees: dict[str, Any], names: Sequence[tuple[str, str]], each: str, rule: str = "mean"
) -> str:
    """A markdown table of committees' metrics, mean ± std, a row for each ``(key, name)``
    that ``committees`` holds, the last column the UAR of each committee (``each``)."""
    return markdown(
        [RULE_NAMES[rule], "accuracy", "UAR", "macro-F1", each],
        [
            [
                name,
                *(
                    f"{c[m]['mean']:.4f} ± {c[m]['std']:.4f}"
                    for m in ("accuracy", "uar", "macro_f1")
                ),
                ", ".join(f"{u:.4f}" for u in c["uar"]["each"]),
            ]
            for key, name in names
            if (c := committees.get(key))
        ],
    )


def _write_ensemble_summary(workdir: Path, out: dict[str, Any]) -> None:
    """``ensemble_summary.json`` and ``run_info.json`` (command, commit, processor)."""
    from ser_jax.rundir import git_state, processor_name

    commit, dirty = git_state()
    info = {
        "command": out["command"],
        "git_commit": commit,
        "git_dirty": dirty,
        "processor": processor_name(),
    }
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "ensemble_summary.json").write_text(json.dumps(out, indent=2) + "\n")
    (workdir / "run_info.json").write_text(json.dumps(info, indent=2) + "\n")


def _seed_protocol_ensemble(
    run_dirs: Sequence[Path],
    workdir: Path,
    rule: str,
    weights: Sequence[float] | None = None,
) -> dict[str, Any]:
    """``ser-jax ensemble`` over seed-protocol directories: their committees
    (:func:`seed_protocol_committees`), written as the cv ensemble writes its summary."""
    out = {"command": command_line(), **seed_protocol_committees(run_dirs, rule, weights)}
    _write_ensemble_summary(workdir, out)
    c = out["committees"]
    names = tuple(
        (key, "each seed's test split" + name.removeprefix("pooled")) for key, name in KIND_NAMES
    )
    for (key, what), png in zip(
        names[:2], ("ensemble_confusion.png", "ensemble_speaker_bn_confusion.png"), strict=True
    ):
        if key in c:
            plot_confusion(
                np.asarray(c[key]["confusion"]),
                out["labels"],
                workdir / png,
                title=f"committees of {len(run_dirs)} runs, seeds {out['seeds']} summed "
                f"({what}{RULE_TITLES[rule]}{weights_title(weights)}): "
                f"UAR {c[key]['uar']['mean']:.3f} ± {c[key]['uar']['std']:.3f}",
            )
    lines = [
        f"# Committees of {len(run_dirs)} seed-protocol runs: seeds {out['seeds']}, each scored "
        "on its own split",
        "",
        markdown(
            ["run", "seeds", "test UAR (mean over its seeds)"]
            + (["weight"] if weights is not None else []),
            [
                [m["run"], ", ".join(map(str, m["seeds"])), m["test_uar"]]
                + ([m["weight"]] if weights is not None else [])
                for m in out["members"]
            ],
        ),
        "",
        f"Mean of the runs' test UAR: {out['member_mean_uar']:.4f}",
        "",
        committee_table(c, names + VAL_KINDS, "UAR per seed", rule),
    ]
    (workdir / "ensemble_summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return out
