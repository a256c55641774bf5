"""The core protocols over runs: several seeds, speaker cross-validation, and result tables.

- ``run_seeds``: one config, seeds ``s, s+1, ...``; each seed a run directory ``seed<k>/``; a
  ``summary.json``/``summary.md`` with mean ± std (sample std, ddof=1) of the test metrics,
  and, when the seeds share one split, the ensemble of their averaged probabilities.
- ``cross_validate``: leave-one-speaker-out over every speaker (each fold its own run directory
  ``fold<k>-<speaker>/seed<s>/``), the audio loaded once; per-fold metrics, their mean ± std,
  and pooled metrics from all folds' test predictions with a pooled confusion matrix PNG.
- ``collect_runs``: every ``results.json`` under a folder → one table (CSV and Markdown).

With ``train.members = N`` (N ≥ 2) the seeds or folds are trained N at a time as members of one
compiled step (``ser_jax.training.train.train_members``); each still writes its own run
directory, so every summary here reads the same files either way.

Committees of several runs (``ser-jax ensemble``) are research tools:
``ser_jax.research.committees``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from ser_jax.classical.fit import fit_feature_model
from ser_jax.data.prepare import PreparedData, load_all, prepare
from ser_jax.evaluation.metrics import (
    classification_metrics,
    combine_probabilities,
    format_table,
    read_predictions,
)
from ser_jax.evaluation.predictions import BALANCED, file_probabilities, has_kind, score_mean
from ser_jax.evaluation.tables import HEADLINE, fmt, markdown, mean_std, summarize, write_tables
from ser_jax.models import is_feature_model
from ser_jax.reports.figures import plot_confusion
from ser_jax.rundir import command_line
from ser_jax.spec import check_settings
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
    time in one compiled step (job checkpoints under ``job_root/members<i>``); a feature
    model (``model.name="opensmile"``) by ``ser_jax.classical``, one at a time."""
    if is_feature_model(configs[0].model):
        return [
            fit_feature_model(c, w, d) for c, w, d in zip(configs, workdirs, datas, strict=True)
        ]
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
    if seeds <= 1 and is_feature_model(config.model):
        return fit_feature_model(config, workdir)
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
    probs = combine_probabilities([[[r[i]["probs"][n] for n in names] for i in ids] for r in runs])
    truth = [names.index(runs[0][i]["label"]) for i in ids]
    m = classification_metrics(truth, probs.argmax(-1), names)
    return {k: m[k] for k in ("accuracy", "uar", "macro_f1", "count")} | {"runs": len(runs)}


def cross_validate(config: Any, workdir: str | Path, seeds: int = 1) -> dict[str, Any]:
    """Cross-validation over speakers, for ``seeds`` seeds each: leave-one-speaker-out, or
    k-fold over speaker groups when ``config.data.split == "speaker_kfold"``
    (``config.data.folds`` groups)."""
    workdir = Path(workdir)
    check_settings(config)  # before the corpus is read
    loaded = load_all(config.data, progress=bool(config.train.progress))
    speakers = sorted({u.speaker for u in loaded[1]})
    kfold = str(config.data.split) == "speaker_kfold"
    n_folds = int(config.data.folds) if kfold else len(speakers)
    configs, datas, dirs, keys = _fold_jobs(config, workdir, loaded, n_folds, seeds, kfold)
    results = train_all(configs, dirs, datas, workdir)
    label_names = datas[0].label_names
    per_fold = [
        {"fold": fold, "speaker": speaker, "seed": seed, **{m: r[m] for m in HEADLINE}}
        for (fold, speaker, seed), r in zip(keys, results, strict=True)
    ]
    pooled = pool_by_seed(keys, dirs, label_names, "test")
    protocol = (
        f"{n_folds}-fold over speaker groups ({len(speakers)} speakers)"
        if kfold
        else f"leave-one-speaker-out over {len(speakers)} speakers"
    )
    summary = {
        "name": str(config.name),
        "command": command_line(),
        "protocol": protocol,
        "speakers": speakers,
        "seeds": sorted(pooled),
        "per_fold": per_fold,
        "fold_mean": summarize(per_fold),
        **_pooled_figures(keys, dirs, label_names, pooled),
    }
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
        lines = cv_summary_lines(config, summary, len(pooled))
        (workdir / "cv_summary.md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
        print(format_table(pooled[min(pooled)]))
    return summary


def _fold_jobs(
    config: Any, workdir: Path, loaded: Any, n_folds: int, seeds: int, kfold: bool
) -> tuple[list[Any], list[PreparedData], list[Path], list[tuple[int, str, int]]]:
    """``(configs, datas, dirs, keys)`` of every fold × seed run, ``keys`` as
    ``(fold, speaker, seed)``: each fold's data prepared from the audio loaded once."""
    kind = "speaker_kfold" if kfold else "loso"
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
    return configs, datas, dirs, keys


def _pooled_figures(
    keys: Sequence[tuple[int, str, int]],
    dirs: Sequence[Path],
    label_names: Sequence[str],
    pooled: dict[int, dict[str, Any]],
) -> dict[str, Any]:
    """The cv summary's pooled figures: mean ± std over seeds, each seed's, the kinds of
    ``BESIDE`` every fold run has, and the ensemble over seeds when there are several."""
    out: dict[str, Any] = {
        "pooled": {
            m: mean_std([pooled[s][m.removeprefix("test_")] for s in pooled]) for m in HEADLINE
        },
        "pooled_per_seed": {
            str(s): {k: pooled[s][k] for k in ("accuracy", "uar", "macro_f1")} for s in pooled
        },
    }
    for kind, key, _ in BESIDE:  # beside the plain numbers, never instead
        if all(has_kind(d, kind) for d in dirs):
            by_seed = pool_by_seed(keys, dirs, label_names, kind)
            out[key] = {
                m: mean_std([by_seed[s][m.removeprefix("test_")] for s in by_seed])
                for m in HEADLINE
            }
    if len({seed for _, _, seed in keys}) > 1:  # the seeds' probabilities averaged per file
        ens = ensemble_over_seeds(keys, dirs, label_names)
        out["ensemble"] = {k: ens[k] for k in ("accuracy", "uar", "macro_f1", "count")}
    return out


def cv_summary_lines(config: Any, summary: dict[str, Any], n_seeds: int) -> list[str]:
    """``cv_summary.md``: the per-fold table, the aggregates, and the figures beside."""
    per_fold = summary["per_fold"]
    pooled_name = "mean ± std over seeds" if n_seeds > 1 else "one seed"
    lines = [
        f"# {config.name}: {summary['protocol']}, {n_seeds} seed(s)",
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
        seeds = len({r["seed"] for r in per_fold})
        extra.append([f"pooled, ensemble of {seeds} seeds", e["accuracy"], e["uar"], e["macro_f1"]])
    if extra:
        lines += ["", markdown(["beside the single models", "accuracy", "UAR", "macro-F1"], extra)]
    return lines


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
