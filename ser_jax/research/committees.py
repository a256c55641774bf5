"""Committees of finished runs (``ser-jax ensemble``): every model of several cv runs, or of
several seed-protocol runs, combined per test file and scored beside the single runs.

- over cv runs (``ensemble_runs``): each file's class probabilities from every fold run of
  every directory, combined by a fixed rule (``ser_jax.evaluation.metrics.combine_probabilities``),
  pooled over all files; the committees of the runs' k-th seeds (a mean ± std like a single
  config's); optionally run weights chosen across speakers (``ser_jax.research.weights``); how
  alike the runs' mistakes are (``error_overlap``);
- over seed-protocol runs (``seed_protocol_committees``): committee k combines the runs' models
  of seed k, which share that seed's split.

A research tool: the core never imports it; the CLI's ``ensemble`` verb does.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ser_jax.errors import ConfigError
from ser_jax.evaluation.metrics import (
    RULES,
    classification_metrics,
    combine_probabilities,
    confusion_matrix,
    read_predictions,
)
from ser_jax.evaluation.predictions import file_probabilities, has_kind, score_mean
from ser_jax.evaluation.tables import markdown, mean_std
from ser_jax.reports.figures import plot_confusion
from ser_jax.research.weights import choose_weights
from ser_jax.rundir import command_line, git_state, processor_name

# A committee's runs: (directory, its cv_summary.json, its fold runs in the summary's order).
Found = Sequence[tuple[Path, dict[str, Any], list[Path]]]
# Committees of one kind: (probs (runs, files, classes), truth (files,), file ids) each.
Committees = list[tuple[np.ndarray, np.ndarray, list[str]]]

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
    found: Found,
    label_names: Sequence[str],
    kind: str,
) -> Committees:
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
    by_kind: dict[str, Committees],
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
    found: Found,
    by_kind: dict[str, Committees],
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
    speaker_of = file_speakers(*found[0][1:])
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


def file_speakers(summary: dict[str, Any], runs: Sequence[Path]) -> dict[str, str]:
    """Each test file's speaker in a cv directory (its ``cv_summary.json`` and fold runs):
    its prediction row's, else its fold's test speaker."""
    return {
        utt: str(row.get("speaker", fold["speaker"]))
        for fold, run in zip(summary["per_fold"], runs, strict=True)
        for utt, row in read_predictions(run).items()
    }


def _scored(
    decisions: Sequence[np.ndarray],
    committees: Committees,
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
    label_names = _seed_protocol_labels(found)
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
        scored = [_seed_committee(found, seed, kind, label_names, rule, weights) for seed in seeds]
        committees[key] = committee_summary(scored)
        committees[key]["confusion"] = np.sum([m["confusion"] for m in scored], axis=0).tolist()
    out["committees"] = committees
    return out


def _seed_protocol_labels(
    found: Sequence[tuple[Path, dict[str, Any], dict[int, Path]]],
) -> list[str]:
    """The classes every seed-protocol run scored (its ``test_metrics.json``); refuses runs
    whose classes differ."""

    def labels_of(run: Path) -> list[str]:
        return list(json.loads((run / "test_metrics.json").read_text())["labels"])

    label_names = labels_of(next(iter(found[0][2].values())))
    for _, _, runs in found:
        for run in runs.values():
            if labels_of(run) != label_names:
                raise ConfigError(f"{run}: its classes {labels_of(run)} differ from {label_names}")
    return label_names


def _seed_committee(
    found: Sequence[tuple[Path, dict[str, Any], dict[int, Path]]],
    seed: int,
    kind: str,
    label_names: Sequence[str],
    rule: str,
    weights: Sequence[float] | None,
) -> dict[str, Any]:
    """The metrics of committee ``seed``: the runs' models of that seed, combined per file of
    its split (run i's model counting ``weights[i]`` times)."""
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
    return score_mean(probs, truth, label_names, rule, None if weights is None else model_weights)


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

    workdir = Path(workdir)
    seed_dirs = _protocol_of(cv_dirs, rule, weights, weight_grid)
    if seed_dirs:
        return _seed_protocol_ensemble(seed_dirs, workdir, rule, weights)
    found = [(Path(d), *cv_models(Path(d))) for d in cv_dirs]
    label_names = list(found[0][1]["labels"])
    for cv_dir, summary, _ in found[1:]:
        if list(summary["labels"]) != label_names:
            raise ConfigError(
                f"{cv_dir}: its classes {summary['labels']} differ from {label_names}"
            )
    kinds = scored_kinds([run for _, _, runs in found for run in runs])
    pooled = _pooled_probabilities(found, cv_dirs, label_names, kinds, weights)
    out = _cv_ensemble_summary(found, pooled, label_names, kinds, rule, weights)
    by_kind = {kind: committee_probabilities(found, label_names, kind) for kind, _ in kinds}
    committees = seed_committees(by_kind, label_names, kinds, rule, weights)
    if committees:
        out["committees"] = committees
    if weight_grid is not None:
        out["weight_grid"] = weight_grid_committees(
            found, by_kind, label_names, kinds, weight_grid, rule
        )
    if len(found) > 1:
        out["error_overlap"] = error_overlap(pooled.per_run, pooled.truth, pooled.ids, rule)
    _write_ensemble_summary(workdir, out)
    _plot_cv_ensemble(workdir, out, rule, weights)
    lines = _cv_ensemble_lines(out, rule, weights)
    (workdir / "ensemble_summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return out


def _protocol_of(
    cv_dirs: Sequence[str | Path],
    rule: str,
    weights: Sequence[float] | None,
    weight_grid: Sequence[float] | None,
) -> list[Path]:
    """Checks ``ensemble_runs``' arguments; returns the seed-protocol directories (none: the
    directories are cv runs). Refuses a mix of protocols."""
    if len(cv_dirs) < 1:
        raise ConfigError("ensemble needs one or more cv run directories")
    if rule not in RULES:
        raise ConfigError(
            f"--rule={rule!r}: not a way to combine probabilities ({', '.join(RULES)})"
        )
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
    if seed_dirs and len(seed_dirs) != len(cv_dirs):
        raise ConfigError(
            f"{', '.join(str(d) for d in cv_dirs if Path(d) not in seed_dirs)}: not a "
            "`ser-jax train --seeds N` directory like the others (no summary.json): a "
            "committee takes runs of one protocol"
        )
    return seed_dirs


@dataclasses.dataclass
class Pooled:
    """Every model's probabilities of each test file, by kind, with each model's weight (its
    run's weight shared among its models; None: all alike), the files' true classes, their
    ids sorted, and each run's own test probabilities (for ``error_overlap``)."""

    probs: dict[str, dict[str, list[np.ndarray]]]
    weights: dict[str, dict[str, list[float]]] | None
    truth: dict[str, int]
    ids: list[str]
    per_run: list[dict[str, list[np.ndarray]]]


def _pooled_probabilities(
    found: Found,
    cv_dirs: Sequence[str | Path],
    label_names: Sequence[str],
    kinds: Sequence[tuple[str, str]],
    weights: Sequence[float] | None,
) -> Pooled:
    """``Pooled`` of the cv runs ``found``; refuses runs whose test files differ."""
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
    return Pooled(
        probs, None if weights is None else model_weights, truth, sorted(files or ()), per_run
    )


def _cv_ensemble_summary(
    found: Found,
    pooled: Pooled,
    label_names: Sequence[str],
    kinds: Sequence[tuple[str, str]],
    rule: str,
    weights: Sequence[float] | None,
) -> dict[str, Any]:
    """The ensemble summary's members and the pooled figures of every kind."""
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
    ids = pooled.ids
    per_file = sorted({len(pooled.probs["test"][u]) for u in ids})
    out: dict[str, Any] = {
        "command": command_line(),
        "members": members,
        "models": sum(len(runs) for _, _, runs in found),
        "models_per_file": per_file[0] if len(per_file) == 1 else per_file,
        "files": len(ids),
        "labels": label_names,
        "member_mean_uar": float(np.mean([m["pooled"] for m in members])),
        "rule": rule,
        **({} if weights is None else {"weights": [float(w) for w in weights]}),
    }
    for kind, key in kinds:
        m = score_mean(
            pooled.probs[kind],
            pooled.truth,
            label_names,
            rule,
            None if pooled.weights is None else pooled.weights[kind],
        )
        out[key] = {k: m[k] for k in ("accuracy", "uar", "macro_f1", "count", "per_class")}
        out[key]["confusion"] = np.asarray(m["confusion"]).tolist()
    return out


def _plot_cv_ensemble(
    workdir: Path, out: dict[str, Any], rule: str, weights: Sequence[float] | None
) -> None:
    """The confusion PNGs of a cv ensemble: each kind's pooled, and the nested weight grid's."""
    runs = len(out["members"])
    for key, png, what in (
        ("pooled", "ensemble_confusion.png", f"{out['models_per_file']} models a file"),
        ("pooled_speaker_bn", "ensemble_speaker_bn_confusion.png", "speaker-adaptive BatchNorm"),
        ("pooled_tta", "ensemble_tta_confusion.png", "each model's test-time augmentation"),
    ):
        if key in out:
            plot_confusion(
                np.asarray(out[key]["confusion"]),
                out["labels"],
                workdir / png,
                title=f"ensemble of {runs} cv runs, {what}{RULE_TITLES[rule]}"
                f"{weights_title(weights)}: "
                f"UAR {out[key]['uar']:.3f}",
            )
    if "weight_grid" in out:
        nested = out["weight_grid"]["pooled"]
        plot_confusion(
            np.asarray(nested["nested_confusion"]),
            out["labels"],
            workdir / "ensemble_weights_nested_confusion.png",
            title=f"{runs} cv runs, run weights chosen on the other speakers"
            f"{RULE_TITLES[rule]}: UAR {nested['nested']['uar']['mean']:.3f} "
            f"({len(nested['nested']['uar']['each'])} committees summed)",
        )


def _cv_ensemble_lines(
    out: dict[str, Any], rule: str, weights: Sequence[float] | None
) -> list[str]:
    """``ensemble_summary.md`` of a cv ensemble."""
    members = out["members"]
    rows = [
        [m["run"], m["models"], m["pooled"], m.get("pooled_speaker_bn", "")]
        + ([m["weight"]] if weights is not None else [])
        for m in members
    ]
    header = ["cv run", "models", "pooled UAR", "pooled UAR, speaker-adaptive BN"]
    lines = [
        f"# Ensemble of {len(members)} cv runs: {out['models_per_file']} models score each of "
        f"the {out['files']} test files ({out['models']} fold runs in all)",
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
    if committees := out.get("committees"):
        lines += [
            "",
            f"Committees of one model per run (the runs' k-th seeds, k = 1..{committees['count']}): "
            "pooled UAR, mean ± std over the committees",
            "",
            committee_table(committees, KIND_NAMES, "UAR per committee", rule),
        ]
    if "weight_grid" in out:
        lines += ["", weight_grid_table(out["weight_grid"], [m["run"] for m in members])]
    return lines


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
    write_summary(workdir, "ensemble_summary.json", out)


def write_summary(workdir: Path, name: str, out: dict[str, Any]) -> None:
    """A research summary ``out`` as ``workdir/name`` (JSON) beside its provenance,
    ``run_info.json``: the command (``out["command"]``), the commit and the processor."""
    commit, dirty = git_state()
    info = {
        "command": out["command"],
        "git_commit": commit,
        "git_dirty": dirty,
        "processor": processor_name(),
    }
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / name).write_text(json.dumps(out, indent=2) + "\n")
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
