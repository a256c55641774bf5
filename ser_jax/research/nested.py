"""A choice among candidate models made nested by speaker (``ser-jax select``).

Inputs: a candidates file (Python, written down before the runs, e.g.
``experiments/selection/default_model.py``) with ``MEMBERS`` (member name → its recipe, in
words), ``CANDIDATES`` (candidate name → ``{member: weight}``: a single model, or a committee
whose members' class probabilities are combined per file by ``RULE``, ``mean`` unless the file
names another, ``ser_jax.evaluation.metrics.combine_probabilities``) and ``VIEWS`` (test-time
views: ``plain``, ``tta``: each member's test-time-augmented predictions, a member without test-time views its
plain ones, ``ser_jax.evaluation.predictions.view_kind``); and a folder with
one finished ``ser-jax cv`` directory per member name (``<runs>/<member>/cv_summary.json``).

A choice is a (candidate, view). For each outer test speaker, the choice with the highest UAR
on the pooled out-of-fold predictions of the *other* speakers only (a tie: the first in the
written order, candidates outer, views inner) scores that speaker's files: the nested pooled
UAR over all files is the estimate of what choosing this way gives, and no speaker's labels
choose what it is scored with (``ser_jax.research.weights.choose_by_speaker``, which the
weight grid uses too). Beside it: every choice's plain pooled figures (the best of them is
optimistic: it was chosen on the files it is scored on), and the winner over all speakers
(the choice made on every file: what would ship). The same again with speaker-adaptive
predictions (``test_speaker_bn``, ``test_tta_speaker_bn``) as its own protocol
(``adapted``), for the views every member has them of; ``tta_semitones``: the warps of the
``tta`` view (every member run's own, which must agree), which a shipped winner then uses.

Writes ``nested_summary.json``, ``nested_summary.md`` and ``run_info.json`` (command, commit,
processor). On leave-one-speaker-out, the other speakers' predictions come from models that
trained on the outer speaker's clips: their labels never choose through the outer speaker's own
files, but this is not a fully nested cross-validation, which would retrain every fold.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ser_jax.errors import ConfigError
from ser_jax.evaluation.metrics import RULES, classification_metrics, combine_probabilities
from ser_jax.evaluation.predictions import file_probabilities, has_kind, view_kind
from ser_jax.evaluation.tables import cell, markdown, mean_std
from ser_jax.research.committees import cv_models, file_speakers, write_summary
from ser_jax.research.weights import choose_by_speaker
from ser_jax.rundir import command_line

# The predictions kind of each view, by protocol.
PROTOCOLS = {
    "plain": {"plain": "test", "tta": "test_tta"},
    "adapted": {"plain": "test_speaker_bn", "tta": "test_tta_speaker_bn"},
}
PROTOCOL_NAMES = {
    "plain": "plain (each speaker's files scored alone)",
    "adapted": "speaker-adaptive BatchNorm (each speaker's own clips adapt the models: its "
    "own protocol)",
}


@dataclasses.dataclass(frozen=True)
class Candidates:
    """A candidates file as read: members (name → recipe), candidates (name → member
    weights), views and rule."""

    path: Path
    members: dict[str, str]
    candidates: dict[str, dict[str, float]]
    views: tuple[str, ...]
    rule: str

    def choices(self, views: Sequence[str]) -> list[tuple[str, str]]:
        """Every (candidate, view) of ``views``, in the written order (candidates outer)."""
        return [(c, v) for c in self.candidates for v in self.views if v in views]

    def used(self) -> list[str]:
        """The members some candidate uses, in ``MEMBERS`` order."""
        return [m for m in self.members if any(m in w for w in self.candidates.values())]


def read_candidates(path: str | Path) -> Candidates:
    """The candidates file at ``path``; refuses, in one line naming the file and the field, a
    file that is missing or not Python, a missing or malformed field, a candidate naming a
    member not in ``MEMBERS``, an unknown view or rule."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such candidates file")
    spec = importlib.util.spec_from_file_location(f"_ser_jax_candidates_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # noqa: BLE001 - any failure of the user's file is its error
        raise ConfigError(
            f"{path}: cannot be read as Python ({type(err).__name__}: {' '.join(str(err).split())})"
        ) from None
    fields = {name: getattr(module, name, None) for name in ("MEMBERS", "CANDIDATES", "VIEWS")}
    for name, value in fields.items():
        if not value:
            raise ConfigError(f"{path}: {name} is missing or empty")
    members, candidates = fields["MEMBERS"], fields["CANDIDATES"]
    if not isinstance(members, dict) or not isinstance(candidates, dict):
        raise ConfigError(f"{path}: MEMBERS and CANDIDATES must be dicts")
    weights = {
        name: _member_weights(path, name, given, members) for name, given in candidates.items()
    }
    views = tuple(fields["VIEWS"]) if not isinstance(fields["VIEWS"], str) else (fields["VIEWS"],)
    unknown = [v for v in views if v not in PROTOCOLS["plain"]]
    if unknown:
        raise ConfigError(
            f"{path}: VIEWS {unknown} are not views ({', '.join(PROTOCOLS['plain'])})"
        )
    rule = str(getattr(module, "RULE", "mean"))
    if rule not in RULES:
        raise ConfigError(f"{path}: RULE={rule!r} is not a rule ({', '.join(RULES)})")
    return Candidates(path, {str(k): str(v) for k, v in members.items()}, weights, views, rule)


def _member_weights(path: Path, name: str, given: Any, members: dict[str, Any]) -> dict[str, float]:
    """One candidate's ``{member: weight}``, checked: known members, finite weights >= 0,
    not all 0."""
    if not isinstance(given, dict) or not given:
        raise ConfigError(f"{path}: candidate {name!r} must map members to weights")
    for member, w in given.items():
        if member not in members:
            raise ConfigError(
                f"{path}: candidate {name!r} names member {member!r}, not in MEMBERS "
                f"({', '.join(members)})"
            )
        if not isinstance(w, int | float) or not math.isfinite(w) or w < 0:
            raise ConfigError(
                f"{path}: candidate {name!r}: the weight {w!r} of {member!r} is not a finite "
                "number >= 0"
            )
    if not any(given.values()):
        raise ConfigError(f"{path}: candidate {name!r}: its weights are all 0")
    return {str(m): float(w) for m, w in given.items()}


def member_runs(
    cands: Candidates, runs: str | Path
) -> dict[str, tuple[dict[str, Any], list[Path]]]:
    """Each used member's finished cv directory ``<runs>/<member>``: its summary and fold
    runs (``ser_jax.research.committees.cv_models``); refuses a member without one, or
    members of different classes, naming them."""
    found = {}
    for member in cands.used():
        folder = Path(runs) / member
        if not (folder / "cv_summary.json").is_file():
            raise ConfigError(
                f"{folder}: no finished cv run of member {member!r} (no cv_summary.json), "
                f"which {cands.path} names"
            )
        found[member] = cv_models(folder)
    labels = {m: list(s["labels"]) for m, (s, _) in found.items()}
    first = next(iter(labels))
    for member, got in labels.items():
        if got != labels[first]:
            raise ConfigError(
                f"{Path(runs) / member}: its classes {got} differ from {first}'s {labels[first]}"
            )
    return found


def run_semitones(runs: Sequence[Path]) -> list[float]:
    """The test-time warps (``eval.tta_semitones`` of their ``config.json``) the runs' ``tta``
    view was scored with (runs without test-time views left out); refused when they differ,
    naming two runs that disagree."""
    found: dict[str, Path] = {}
    for run in runs:
        if view_kind(run, "test_tta") == "test":  # no test-time views of its own
            continue
        eval_cfg = json.loads((Path(run) / "config.json").read_text()).get("eval", {})
        found.setdefault(json.dumps([float(v) for v in eval_cfg.get("tta_semitones", [])]), run)
    if len(found) > 1:
        (a, run_a), (b, run_b) = list(found.items())[:2]
        raise ConfigError(
            f"{run_a}: test-time warps {a}, but {run_b} has {b}; the tta view must be one set "
            "of warps across the member runs"
        )
    return json.loads(next(iter(found), "[]"))


@dataclasses.dataclass
class Scored:
    """Every choice's decision of every file (``decided (choices, files)``), the files' ids
    (sorted), true classes and speakers."""

    choices: list[tuple[str, str]]
    decided: np.ndarray
    ids: list[str]
    truth: np.ndarray
    speakers: np.ndarray


def decide(
    cands: Candidates,
    found: dict[str, tuple[dict[str, Any], list[Path]]],
    kinds: dict[str, str],
    labels: Sequence[str],
) -> Scored:
    """Each (candidate, view)'s decisions: per file, every model of the candidate's members
    (each fold run that scored it) combined by the rule, a member's weight shared among its
    models, from the view's predictions (``kinds``: view → predictions kind; the views of
    ``cands`` it has)."""
    kinds = {v: kind for v, kind in kinds.items() if v in cands.views}
    per_kind = {}  # kind → member → (file → its models' probabilities), truth
    for kind in sorted(set(kinds.values())):
        per_kind[kind] = {
            m: file_probabilities(runs, labels, view_kind(runs[0], kind))
            for m, (_, runs) in found.items()
        }
    first = next(iter(found))
    ids = sorted(next(iter(per_kind.values()))[first][0])
    for kind, by_member in per_kind.items():
        for member, (probs, _) in by_member.items():
            if sorted(probs) != ids:
                raise ConfigError(
                    f"{found[member][1][0].parent.parent}: member {member!r}'s {kind} files "
                    f"differ from {first!r}'s ({len(set(probs) ^ set(ids))} not in both)"
                )
    truth = np.array([per_kind[next(iter(per_kind))][first][1][u] for u in ids])
    choices = cands.choices(list(kinds))
    decided = np.stack(
        [
            _committee_decisions(cands.candidates[c], per_kind[kinds[v]], ids, cands.rule)
            for c, v in choices
        ]
    )
    speaker_of = file_speakers(*found[first])
    return Scored(choices, decided, ids, truth, np.array([speaker_of[u] for u in ids]))


def _committee_decisions(
    weights: dict[str, float],
    by_member: dict[str, tuple[dict[str, list[np.ndarray]], dict[str, int]]],
    ids: Sequence[str],
    rule: str,
) -> np.ndarray:
    """A candidate's class per file: its members' models combined by ``rule``
    (``combine_probabilities``), member m's weight shared among its models of the file."""
    out = np.zeros(len(ids), np.int64)
    for i, u in enumerate(ids):
        probs, shares = [], []
        for member, w in weights.items():
            models = by_member[member][0][u]
            probs += models
            shares += [w / len(models)] * len(models)
        out[i] = int(np.argmax(combine_probabilities(probs, rule, shares)))
    return out


def nested_protocol(scored: Scored, labels: Sequence[str]) -> dict[str, Any]:
    """One protocol's figures: the nested decisions' metrics, each speaker's choice (made on
    the other speakers' files) with its UAR there, every choice's plain pooled metrics (with
    the speakers that chose it), and the winner over all speakers."""
    chosen, per_speaker, (nested,) = choose_by_speaker(
        [scored.decided], [scored.truth], scored.speakers, len(labels)
    )

    def named(k: int) -> dict[str, str]:
        return {"candidate": scored.choices[k][0], "view": scored.choices[k][1]}

    def headline(m: dict[str, Any]) -> dict[str, Any]:
        return {k: m[k] for k in ("accuracy", "uar", "macro_f1", "count")}

    each = [classification_metrics(scored.truth, d, labels) for d in scored.decided]
    m = classification_metrics(scored.truth, nested, labels)
    speakers = []
    for speaker, k in per_speaker.items():
        rows = scored.speakers == speaker
        others = classification_metrics(scored.truth[~rows], scored.decided[k][~rows], labels)
        own = classification_metrics(scored.truth[rows], nested[rows], labels)
        speakers.append(
            {"speaker": speaker, "files": int(rows.sum()), **named(k)}
            | {"uar_on_others": others["uar"], "uar": own["uar"], "accuracy": own["accuracy"]}
        )
    return {
        "views": sorted({v for _, v in scored.choices}, key=[v for _, v in scored.choices].index),
        "nested": headline(m) | {"per_class": m["per_class"], "confusion": m["confusion"]},
        "per_speaker": speakers,
        "winner": named(chosen) | headline(each[chosen]),
        "choices": [
            named(k) | headline(e) | {"chosen_by": [s for s, j in per_speaker.items() if j == k]}
            for k, e in enumerate(each)
        ],
    }


def select(candidates: str | Path, runs: str | Path, out: str | Path) -> dict[str, Any]:
    """``ser-jax select``: the nested choice of the candidates file over the member runs in
    ``runs`` (module docstring); writes ``nested_summary.json``/``.md`` and ``run_info.json``
    to ``out`` and returns the summary: the plain protocol's figures at the top level
    (``nested``, ``per_speaker``, ``winner``, ``choices``, ``views``), the speaker-adaptive
    ones under ``adapted`` (absent, with ``adapted_missing`` saying why, when not every member
    run has them). ``runs`` may name several folders, comma-separated, one a seed: each makes
    its own nested choice, and the figures are their mean ± std (``over_seeds``)."""
    cands = read_candidates(candidates)
    per_seed = [_select_one(cands, folder) for folder in str(runs).split(",") if folder]
    summary = per_seed[0] if len(per_seed) == 1 else over_seeds(per_seed)
    out = Path(out)
    write_summary(out, "nested_summary.json", summary)
    lines = nested_lines(summary)
    (out / "nested_summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return summary


def _select_one(cands: Candidates, runs: str | Path) -> dict[str, Any]:
    """The nested summary of one folder of member runs (``select``)."""
    found = member_runs(cands, runs)
    labels = list(next(iter(found.values()))[0]["labels"])
    every = [run for _, fold_runs in found.values() for run in fold_runs]
    missing = [
        f"{run}/{PROTOCOLS['plain'][v]}_predictions.jsonl"
        for v in cands.views
        for run in every
        if not has_kind(run, view_kind(run, PROTOCOLS["plain"][v]))
    ]
    if missing:
        raise ConfigError(f"{missing[0]}: missing, and {cands.path} lists its view")
    plain = decide(cands, found, PROTOCOLS["plain"], labels)
    summary: dict[str, Any] = {
        "command": command_line(),
        "candidates_file": str(cands.path),
        "runs": str(runs),
        "rule": cands.rule,
        "labels": labels,
        "files": len(plain.ids),
        "speakers": sorted(set(plain.speakers.tolist())),
        "seeds": sorted({int(r["seed"]) for s, _ in found.values() for r in s["per_fold"]}),
        "members": {
            m: {
                "recipe": cands.members[m],
                "run": str(Path(runs) / m),
                "models": len(fold_runs),
                "pooled_uar": s.get("pooled", {}).get("test_uar", {}).get("mean"),
            }
            for m, (s, fold_runs) in found.items()
        },
        "candidates": cands.candidates,
        **nested_protocol(plain, labels),
    }
    if "tta" in cands.views:
        summary["tta_semitones"] = run_semitones(every)
    adapted = {
        v: kind
        for v, kind in PROTOCOLS["adapted"].items()
        if v in cands.views and all(has_kind(run, view_kind(run, kind)) for run in every)
    }
    if adapted:
        summary["adapted"] = nested_protocol(decide(cands, found, adapted, labels), labels)
    else:
        summary["adapted_missing"] = (
            "not every member run has speaker-adaptive predictions "
            f"({', '.join(PROTOCOLS['adapted'][v] for v in cands.views)})"
        )
    return summary


def over_seeds(per_seed: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One summary of several seeds' nested choices (each made on its own runs): the figures
    as mean ± std over seeds, each seed's per-speaker choices (marked with its seeds), and the
    winner over all speakers: the choice with the highest mean pooled UAR (what ships)."""
    first = per_seed[0]
    kept = ("command", "candidates_file", "rule", "labels", "files", "speakers", "candidates")
    out: dict[str, Any] = {k: first[k] for k in kept if k in first}
    out["runs"] = ",".join(str(p["runs"]) for p in per_seed)
    out["seeds"] = sorted(seed for p in per_seed for seed in p["seeds"])
    out["members"] = {str(p["runs"]): p["members"] for p in per_seed}
    if "tta_semitones" in first:
        out["tta_semitones"] = first["tta_semitones"]
    out |= _protocol_over_seeds(per_seed)
    if all("adapted" in p for p in per_seed):
        out["adapted"] = _protocol_over_seeds(
            [p["adapted"] | {"seeds": p["seeds"]} for p in per_seed]
        )
    else:
        out["adapted_missing"] = next(
            p["adapted_missing"] for p in per_seed if "adapted_missing" in p
        )
    return out


def _protocol_over_seeds(ps: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One protocol's figures over seeds: ``nested`` and every choice's as mean ± std."""
    figures = ("accuracy", "uar", "macro_f1")

    def over(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return {m: mean_std([r[m] for r in rows]) for m in figures} | {
            "count": sum(int(r["count"]) for r in rows)
        }

    choices = [
        {"candidate": c["candidate"], "view": c["view"]}
        | over([p["choices"][k] for p in ps])
        | {"chosen_by": [f"{s}@{p['seeds'][0]}" for p in ps for s in p["choices"][k]["chosen_by"]]}
        for k, c in enumerate(ps[0]["choices"])
    ]
    best = max(range(len(choices)), key=lambda k: (choices[k]["uar"]["mean"], -k))
    return {
        "views": ps[0]["views"],
        "nested": over([p["nested"] for p in ps]),
        "per_speaker": [r | {"seed": p["seeds"][0]} for p in ps for r in p["per_speaker"]],
        "winner": dict(choices[best]),
        "choices": choices,
    }


def nested_lines(summary: dict[str, Any]) -> list[str]:
    """``nested_summary.md``: per protocol, the nested figures, each speaker's choice, every
    choice's pooled figures, and the winner over all speakers."""
    lines = [
        f"# Nested choice by speaker: {len(summary['candidates'])} candidates from "
        f"`{summary['candidates_file']}`, {summary['files']} files of "
        f"{len(summary['speakers'])} speakers",
        "",
        "Each speaker's files are scored with the (candidate, view) that has the highest UAR "
        "on the other speakers' pooled out-of-fold predictions (the estimate); each choice's "
        "pooled figures on all files are beside (the best of them is optimistic).",
        "",
        f"## {PROTOCOL_NAMES['plain']}",
        "",
        *_protocol_lines(summary),
        "",
        f"## {PROTOCOL_NAMES['adapted']}",
        "",
    ]
    if "adapted" in summary:
        return lines + _protocol_lines(summary["adapted"])
    return lines + [f"No figures: {summary['adapted_missing']}."]


def _protocol_lines(p: dict[str, Any]) -> list[str]:
    """One protocol's tables in ``nested_summary.md``."""
    n, w = p["nested"], p["winner"]
    seed = (
        [["seed"], lambda r: [r["seed"]]] if "seed" in p["per_speaker"][0] else [[], lambda r: []]
    )
    return [
        markdown(
            ["nested by speaker", "accuracy", "UAR", "macro-F1", "files"],
            [
                ["pooled over all files"]
                + [n[m] for m in ("accuracy", "uar", "macro_f1")]
                + [n["count"]]
            ],
        ),
        "",
        markdown(
            [
                *seed[0],
                "speaker",
                "files",
                "candidate",
                "view",
                "UAR on the others",
                "UAR of the speaker",
            ],
            [
                [*seed[1](s), s["speaker"], s["files"], s["candidate"], s["view"]]
                + [s["uar_on_others"], s["uar"]]
                for s in p["per_speaker"]
            ],
        ),
        "",
        markdown(
            ["candidate", "view", "pooled accuracy", "pooled UAR", "pooled macro-F1", "chosen by"],
            [
                [c["candidate"], c["view"], c["accuracy"], c["uar"], c["macro_f1"]]
                + [", ".join(c["chosen_by"]) or "-"]
                for c in p["choices"]
            ],
        ),
        "",
        f"Winner over all speakers (the choice made on every file: what would ship): "
        f"{w['candidate']}, {w['view']} (pooled UAR {cell(w['uar'])} on the files that chose "
        "it: optimistic).",
    ]


def card_lines(given: str | Path) -> list[str]:
    """A model card's lines for a committee chosen by ``ser-jax select`` (its output folder
    ``given``): the nested figures, plain and speaker-adapted, and the choice made on every
    speaker (what ships)."""
    s = json.loads((Path(given) / "nested_summary.json").read_text())
    info = json.loads((Path(given) / "run_info.json").read_text())

    def figures(p: dict[str, Any]) -> str:
        n = p["nested"]
        return f"UAR {cell(n['uar'], 3)}, accuracy {cell(n['accuracy'], 3)}, macro-F1 {cell(n['macro_f1'], 3)}"

    seeds = ", ".join(map(str, s["seeds"]))
    w = s["winner"]
    adapted = figures(s["adapted"]) if "adapted" in s else f"none ({s['adapted_missing']})"
    return [
        f"- Nested leave-one-speaker-out ({s['files']} files of {len(s['speakers'])} speakers, "
        f"pooled; seed {seeds}): for each test speaker, the choice among the "
        f"{len(s['candidates'])} candidates of `{s['candidates_file']}` (and their test-time "
        f"views: {', '.join(s['views'])}) is made on the other speakers' predictions only, and "
        f"that speaker is scored with it: {figures(s)}; speaker-adapted: {adapted}.",
        f"- The choice made on all {len(s['speakers'])} speakers (what ships): "
        f"`{w['candidate']}`, {w['view']} (its pooled UAR {cell(w['uar'], 3)} is optimistic: chosen "
        f"on those files). Made by commit {str(info.get('git_commit'))[:10]} on "
        f"{info.get('processor')}. Command: `{s['command']}`",
    ]
