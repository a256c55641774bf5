"""Packaging a finished run as a shipped model, a committee of shipped models, and their
model cards (``ser-jax package``).

``package_run`` copies a finished run's model files into a shipped-model folder (bytes as
they are, so packaging the same run twice gives the same files) with the probabilities it
gives a few reference files; ``model_card`` writes its card, the figures read from the same
recipe's held-out runs (checked to be the same recipe: ``recipe_differences``).
``package_committee`` writes a committee folder (``committee.json`` naming shipped members,
the rule and run weights of the ``ser-jax ensemble`` summaries its card's figures come from)
and ``committee_card``. Loading what is shipped is ``ser_jax.serving.shipped``.

A research tool: the core never imports it; the CLI's ``package`` verb does.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ser_jax.errors import ConfigError
from ser_jax.evaluation.tables import fmt
from ser_jax.models.registry import is_feature_model
from ser_jax.recipe import BOOKKEEPING, DRAW, SPLIT, config_differences
from ser_jax.research.nested import card_lines
from ser_jax.rundir import RunDir
from ser_jax.serving.predict import predict_files
from ser_jax.serving.restore import MODEL_FILE, load_model
from ser_jax.serving.shipped import (
    CARD,
    COMMITTEE,
    PRETRAINED,
    REFERENCE,
    card_summary,
    model_dir,
)

RUN_FILES = ("config.json", "run_info.json", "results.json", MODEL_FILE)


def package_committee(
    name: str,
    members: Sequence[str],
    *,
    loso: str | Path | None = None,
    seeds: str | Path | None = None,
    nested: str | Path | None = None,
    weights: Sequence[float] | None = None,
    root: Path | None = None,
) -> Path:
    """A shipped committee ``root/name``: ``committee.json`` naming shipped ``members`` (each
    must be shipped already, one model each, with the same classes) and a model card whose
    figures come from ``ser-jax ensemble`` summaries of the same recipes (``loso``: over cv
    runs; ``seeds``: over seed-protocol runs; ``nested``: the ``ser-jax select`` folder that
    chose it, whose figures lead the card). The committee combines its members by the rule
    those summaries were made with (``ser-jax ensemble --rule``) and with their run weights
    (``--weights``, one a member in order: the weights go into ``committee.json``); summaries
    of two rules or two sets of weights are refused. When the nested choice scored with
    test-time warps, ``committee.json`` records them (``tta_semitones``) and predict uses them."""
    root = root or PRETRAINED
    if len(members) < 2:
        raise ConfigError(f"committee {name!r}: needs two or more members, got {list(members)}")
    summaries = {
        str(given): json.loads((Path(given) / "ensemble_summary.json").read_text())
        for given in (loso, seeds)
        if given
    }
    rules = {d: s.get("rule", "mean") for d, s in summaries.items()}
    if len(set(rules.values())) > 1:
        raise ConfigError(
            f"committee {name!r}: its figures come from ensembles of different rules "
            f"({', '.join(f'{d}: {r}' for d, r in rules.items())}); give summaries of one rule"
        )
    rule = next(iter(rules.values()), "mean")
    given_weights = {d: s.get("weights") for d, s in summaries.items()}
    if len({json.dumps(w) for w in given_weights.values()}) > 1:
        shown = ", ".join(f"{d}: {w or 'alike'}" for d, w in given_weights.items())
        raise ConfigError(
            f"committee {name!r}: its figures come from ensembles of different run weights "
            f"({shown}); give summaries made with the same --weights"
        )
    if weights is not None and any(
        w is not None and [float(x) for x in w] != list(weights) for w in given_weights.values()
    ):
        raise ConfigError(
            f"committee {name!r}: the weights given, {list(weights)}, differ from its "
            "ensembles' (--weights of `ser-jax ensemble`)"
        )
    weights = weights if weights is not None else next(iter(given_weights.values()), None)
    if weights is not None and len(weights) != len(members):
        raise ConfigError(
            f"committee {name!r}: its ensembles weigh {len(weights)} runs, but the committee "
            f"has {len(members)} members (one a run, in the ensemble's order)"
        )
    resolved = _checked_members(name, members, root)
    out = root / name
    out.mkdir(parents=True, exist_ok=True)
    recipe: dict[str, Any] = {"members": list(members)}
    if rule != "mean":
        recipe["rule"] = rule
    if weights is not None:
        recipe["weights"] = [float(w) for w in weights]
    semitones = nested_semitones(nested) if nested else []
    if semitones:
        recipe["tta_semitones"] = semitones
    (out / COMMITTEE).write_text(json.dumps(recipe, indent=2) + "\n")
    card = committee_card(
        name,
        resolved,
        loso=loso,
        seeds=seeds,
        nested=nested,
        root=root,
        rule=rule,
        weights=weights,
        semitones=semitones,
    )
    (out / CARD).write_text(card)
    return out


def nested_semitones(nested: str | Path) -> list[float]:
    """The test-time warps of the choice a ``ser-jax select`` folder made on all speakers:
    its ``tta_semitones`` when the winner's view is ``tta``, else none."""
    summary = json.loads((Path(nested) / "nested_summary.json").read_text())
    if summary["winner"]["view"] != "tta":
        return []
    if not summary.get("tta_semitones"):
        raise ConfigError(
            f"{nested}: its choice scores with test-time warps but its nested_summary.json "
            "does not record them (tta_semitones); run `ser-jax select` again"
        )
    return [float(v) for v in summary["tta_semitones"]]


def _checked_members(name: str, members: Sequence[str], root: Path) -> list[str]:
    """A committee's members as shipped names (``NAME/MEMBER`` for those kept in its own
    folder), each one model with the same classes as the others."""
    kept = root / name
    resolved, labels = [], None
    for member in members:
        inside = (kept / member / MODEL_FILE).is_file()
        folder = kept / member if inside else model_dir(member, root)
        if (folder / COMMITTEE).is_file():
            raise ConfigError(f"committee {name!r}: its member {member!r} is a committee")
        got = json.loads((folder / "run_info.json").read_text())["data"]["labels"]
        if labels is not None and got != labels:
            raise ConfigError(f"committee {name!r}: {member!r} has classes {got}, not {labels}")
        labels = got
        resolved.append(f"{name}/{member}" if inside else member)
    return resolved


def committee_card(
    name: str,
    members: Sequence[str],
    *,
    loso: str | Path | None = None,
    seeds: str | Path | None = None,
    nested: str | Path | None = None,
    root: Path | None = None,
    rule: str = "mean",
    weights: Sequence[float] | None = None,
    semitones: Sequence[float] = (),
) -> str:
    """The model card of a committee: its members (each card's summary line, and its weight
    when they differ) and the committee's figures read from ``ser-jax ensemble`` summaries."""
    root = root or PRETRAINED
    weighed = (
        "every member weighted alike"
        if weights is None
        else "each member weighted as listed (a weight of 2 counts its model twice)"
    )

    def weight(i: int) -> str:
        return "" if weights is None else f" (weight {float(weights[i]):g})"

    how = (
        "the members' geometric mean, renormalised (a product of experts)"
        if rule == "geometric"
        else "the members' averaged"
    )
    lines = [
        f"# {name}",
        "",
        f"A committee of {len(members)} shipped speech emotion classifiers, trained from scratch "
        f"on Emo-DB: each file's class probabilities are {how}, {weighed}; research use on "
        "acted German speech only.",
        "",
        "## Members",
        *(f"- `{m}`{weight(i)}: {card_summary(model_dir(m, root))}" for i, m in enumerate(members)),
        "",
        f"Use: `ser-jax predict --model {name} FILE...`; with `--speaker_bn` when the files of "
        "one call are one speaker's recordings (each member then normalises by their "
        "statistics: a network its BatchNorm layers, a statistics or openSMILE model its "
        "features; its own protocol, the figures marked speaker-adapted).",
        *_warp_lines(semitones),
        "",
        "## How well it does (the same recipes, evaluated on held-out speakers)",
        *(card_lines(nested) if nested else []),
    ]
    for given, what in ((loso, "leave-one-speaker-out"), (seeds, "seed-protocol")):
        if not given and nested:
            continue
        if not given:
            lines.append(
                f"- No {what} ensemble of the members' recipes was given to the packager: see "
                "the README's Results for the committee's figures."
            )
            continue
        lines.append(_committee_figures(given, what, len(members)))
    return "\n".join(lines + COMMITTEE_TAIL) + "\n"


def _warp_lines(semitones: Sequence[float]) -> list[str]:
    if not semitones:
        return []
    shown = ", ".join(f"{v:+g}" for v in semitones)
    return [
        "",
        f"Test-time warps: each file is also scored with its mel filterbank (and pitch track) "
        f"warped by {shown} semitones, each member's probabilities averaged over the views, as "
        "the nested choice scored it (`committee.json` `tta_semitones`; "
        "`--tta_semitones none` scores the file alone); an openSMILE member has no warps and "
        "scores the file as it is.",
    ]


COMMITTEE_TAIL = [
    "- The shipped members have no test split: each trained on every shared file. The "
    "held-out figures are what the same recipes score on speakers (or files) they did not "
    "train on.",
    "",
    "## Intended use and limitations",
    "- As for each member (see their cards): acted German speech, 8 professional speakers, "
    "studio recordings, 2 s crops; expect much lower accuracy on spontaneous speech, other "
    "languages, noisy or far-field audio. Not for decisions about people.",
]


def _committee_figures(given: str | Path, what: str, members: int) -> str:
    """A committee card's line of figures from the ``ser-jax ensemble`` summary in ``given``
    (``what``: its protocol, as the card names it)."""
    s = json.loads((Path(given) / "ensemble_summary.json").read_text())
    c = s.get("committees")
    if not c:
        raise ConfigError(
            f"{given}: its ensemble has no committees (each run needs two or more seeds)"
        )
    if len(s["members"]) != members:
        raise ConfigError(
            f"{given}: an ensemble of {len(s['members'])} runs, but the committee has "
            f"{members} members"
        )
    info = json.loads((Path(given) / "run_info.json").read_text())
    seeds_protocol = s.get("protocol") == "seeds"
    where = (
        f"stratified 70/15/15 splits of seeds {', '.join(map(str, s['seeds']))}, each "
        "committee scored on its seed's test files"
        if seeds_protocol
        else f"all {s['files']} files, pooled"
    )
    which = "the runs' models of one seed" if seeds_protocol else "the runs' k-th seeds"
    figures = [
        f"{what_bn}UAR {_ms(c[key]['uar'])}, accuracy {_ms(c[key]['accuracy'])}, "
        f"macro-F1 {_ms(c[key]['macro_f1'])}"
        for key, what_bn in (
            ("pooled", ""),
            ("pooled_speaker_bn", "with speaker-adaptive BatchNorm: "),
            (
                "pooled_tta",
                "with each member's test-time augmentation as its runs were scored "
                "(`--tta_semitones`): ",
            ),
        )
        if key in c
    ]
    return (
        f"- {what.capitalize()} ({where}), {c['count']} committees of one model per run "
        f"({which}), mean ± std over them: {'; '.join(figures)}. Made by "
        f"{_made_by(info)}. Command: `{s.get('command') or info.get('command', '?')}`"
    )


def package_run(
    run_dir: str | Path,
    out: str | Path,
    *,
    reference_files: Sequence[str | Path] = (),
    card: str = "",
) -> Path:
    """Copy a finished run's model into ``out`` (a shipped-model folder) with the
    probabilities it gives ``reference_files`` and the model card text ``card``. A shipped
    folder packaged onto itself keeps its model and gets the new card (and references): how a
    card is re-made from newer held-out runs of its recipe."""
    run = RunDir(run_dir)
    run.check()
    if not run.finished or not (run / MODEL_FILE).exists():
        raise ConfigError(f"{run.path} has not finished (no results.json / {MODEL_FILE})")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if out.resolve() != run.path.resolve():
        for name in RUN_FILES:
            shutil.copyfile(run / name, out / name)
    if reference_files:
        rows = predict_files(load_model(out), [str(f) for f in reference_files])
        bad = [r for r in rows if "error" in r]
        if bad:
            raise ConfigError(f"reference file {bad[0]['path']}: {bad[0]['error']}")
        reference = [{"file": Path(r["path"]).name, "probs": r["probs"]} for r in rows]
        (out / REFERENCE).write_text(json.dumps(reference, indent=2) + "\n")
    if card:
        (out / CARD).write_text(card)
    return out


def model_card(
    run_dir: str | Path,
    *,
    name: str,
    loso: str | Path | None = None,
    seeds: str | Path | None = None,
) -> str:
    """The model card of a release run, its figures read from run directories: the run's own
    data and config, and the same config's leave-one-speaker-out (``loso``: a ``cv`` workdir)
    and seed-protocol (``seeds``: a ``train --seeds`` workdir) results."""
    run = RunDir(run_dir)
    info, results, config = run.info(), run.results(), run.config()
    data = info["data"]
    labels = ", ".join(data["labels"])
    lines = [
        f"# {name}",
        "",
        f"{_article(config.model.name)} {config.model.name} speech emotion classifier (config `{config.name}`; 7 acted "
        f"emotions: {labels}) trained "
        f"from scratch on {data['train']['files']} Emo-DB files; research use on acted German "
        "speech only.",
        "",
        "## Data",
        f"- Corpus: the shared working copy of Emo-DB (Burkhardt et al., Interspeech 2005): "
        f"{data['train']['files']} files of speakers {', '.join(data['train']['speakers'])}; "
        "speakers 11 and 16 are kept aside for an independent check and are not in it.",
        "- Each file is cut or zero-padded to 2.0 s (the copy's own format, 22,050 Hz); the model "
        f"reads {config.data.sample_rate} Hz audio (any file is resampled) and "
        + (
            "describes a whole recording by one vector of functionals."
            if "selected_c" in results
            else f"scores recordings longer than {config.data.max_seconds} s as "
            "half-overlapping windows, averaged."
        ),
        f"- Labels: {labels} (label id = position in this list).",
        "",
        "## Training",
        f"- Config: `{config.name}` (resolved in `config.json`); split `{results['split']}`: "
        f"every file trains; {_how_trained(results)}.",
        f"- Made by {_made_by(info)}.",
    ]
    if info.get("command"):
        lines.append(f"- Command: `{info['command']}`")
    lines += ["", "## How well it does (the same config, evaluated on held-out speakers)"]
    if loso:
        lines += _loso_lines(run_dir, loso)
    if seeds:
        lines.append(_seed_line(run_dir, seeds))
    for given, flag in ((loso, "--loso"), (seeds, "--seed_runs")):
        if not given:
            lines.append(
                f"- No {'leave-one-speaker-out' if flag == '--loso' else 'seed-protocol'} run "
                f"of this config was given to the packager (`{flag}`): see the README's "
                "Results for the config's figures and their status."
            )
    return "\n".join(lines + MODEL_TAIL) + "\n"


def _article(word: str) -> str:
    return "An" if word[:1].lower() in "aeiou" else "A"


def _how_trained(results: dict[str, Any]) -> str:
    """How a release run trained: a network's epochs, or a feature model's chosen C."""
    if "selected_c" in results:  # the openSMILE family (ser_jax.classical.fit)
        c = results["selected_c"]
        grid = ", ".join(results["inner_uar"]["plain"])
        return (
            f"openSMILE {results['feature_set']} functionals, standardised, and a multinomial "
            f"logistic regression whose inverse regularisation C was chosen by leave-one-"
            f"speaker-out over the training speakers from {grid}: C = {c['plain']:g} (plain), "
            f"{c['adapted']:g} (each speaker standardised by their own files)"
        )
    return f"trained {results['epochs_run']} epochs, the last epoch kept (`train.select=last`)"


def _loso_lines(run_dir: str | Path, loso: str | Path) -> list[str]:
    """A model card's leave-one-speaker-out figures (and speaker-adaptive ones beside) from
    the ``cv`` workdir ``loso``, checked to have trained the release run's recipe."""
    made = _held_out_recipe(run_dir, loso, "fold*/seed*", "--loso")
    cv = json.loads((Path(loso) / "cv_summary.json").read_text())
    p, f = cv["pooled"], cv["fold_mean"]
    n = len(cv["seeds"])
    lines = [
        f"- Leave-one-speaker-out over the {len(cv['speakers'])} speakers ("
        f"{_fold_selection(loso)}), {n} seed{'s' * (n != 1)}, pooled over all test "
        f"predictions: UAR {_ms(p['test_uar'])}, accuracy {_ms(p['test_accuracy'])}, "
        f"macro-F1 {_ms(p['test_macro_f1'])}; mean ± std over the {f['test_uar']['n']} "
        f"fold runs: UAR {_ms(f['test_uar'])}, accuracy {_ms(f['test_accuracy'])}. {made}"
        + (f" Command: `{cv['command']}`" if cv.get("command") else "")
    ]
    if "pooled_speaker_bn" in cv:
        a = cv["pooled_speaker_bn"]
        first = sorted(Path(loso).glob("fold*/seed*/config.json"))[0].parent
        how = (
            "its features standardised by its own files"
            if is_feature_model(RunDir(first).config().model)
            else "BatchNorm statistics of its own clips"
        )
        lines.append(
            f"- The same, each test speaker scored with {how} (speaker adaptation, "
            "`--speaker_bn`: its own protocol, it reads the speaker's unlabelled recordings): "
            f"pooled UAR {_ms(a['test_uar'])}, accuracy {_ms(a['test_accuracy'])}."
        )
    return lines


def _seed_line(run_dir: str | Path, seeds: str | Path) -> str:
    """A model card's seed-protocol figures from the ``train --seeds`` workdir ``seeds``,
    checked to have trained the release run's recipe."""
    made = _held_out_recipe(run_dir, seeds, "seed*", "--seed_runs")
    sm = json.loads((Path(seeds) / "summary.json").read_text())
    n = len(sm["seeds"])
    return (
        f"- Stratified 70/15/15 split (speakers shared between parts), {n} "
        f"seed{'s' * (n != 1)}, each its own split: accuracy {_ms(sm['test_accuracy'])}, "
        f"UAR {_ms(sm['test_uar'])}, macro-F1 {_ms(sm['test_macro_f1'])}. {made}"
        + (f" Command: `{sm['command']}`" if sm.get("command") else "")
    )


MODEL_TAIL = [
    "- The shipped model itself has no test split: it trained on every shared file. The "
    "held-out figures are what the same recipe scores on speakers it did not train on.",
    "",
    "## Intended use and limitations",
    "- Research on speech emotion recognition with acted German speech; a baseline to "
    "compare against, and a demonstration of the pipeline.",
    "- Acted emotions by 10 professional speakers (8 here), one language, studio "
    "recordings, 2 s crops: expect much lower accuracy on spontaneous speech, other "
    "languages, noisy or far-field audio, children, or pathological voices.",
    "- Not for decisions about people (hiring, health, policing, surveillance, credit, "
    "education): emotion recognition from voice is unreliable across people and cultures.",
    "",
    "## Licence",
    "- Emo-DB is freely available for research from its authors (Technische Universität "
    "Berlin); cite Burkhardt et al. 2005. These weights are derived from it and are shared "
    "for research under the same terms; the code is Apache-2.0.",
    "",
    "## Reference predictions",
    f"`{REFERENCE}` holds this model's probabilities for a few shared Emo-DB files; the test "
    "suite loads the shipped weights and reproduces them.",
]


def recipe_differences(release: dict[str, Any], other: dict[str, Any]) -> list[str]:
    """Config fields (dotted) in which ``other`` trains differently from ``release``: any
    field but a draw, the split, the epoch selection and bookkeeping (``ser_jax.recipe``)."""
    return config_differences(release, other, ignore=(DRAW, SPLIT, BOOKKEEPING))


def _held_out_recipe(run_dir: str | Path, workdir: str | Path, pattern: str, flag: str) -> str:
    """Checks that every run under ``workdir`` trained the release run's recipe; returns where
    they were made ("Made by commit ... on ..."). Configs are compared as the runs are read
    back: a field added to the package after a run was made counts with its default."""

    def recipe(path: Path) -> dict[str, Any]:
        return RunDir(path).config().to_dict()

    release = recipe(Path(run_dir))
    runs = sorted(p.parent for p in Path(workdir).glob(f"{pattern}/config.json"))
    if not runs:
        raise ConfigError(f"{flag} {workdir}: no run directories ({pattern}/config.json) in it")
    for r in runs:
        diff = recipe_differences(release, recipe(r))
        if diff:
            raise ConfigError(
                f"{flag} {r}: trained another recipe than {run_dir} (differs in {diff}); a model "
                "card shows the figures of the shipped recipe only"
            )
    made = {_made_by(json.loads((r / "run_info.json").read_text())) for r in runs}
    return f"Made by {', '.join(sorted(made))}."


def _fold_selection(workdir: str | Path) -> str:
    """How the folds of a cross-validation run chose their model, from a fold's config."""
    first = sorted(Path(workdir).glob("fold*/seed*/config.json"))[0].parent
    config = RunDir(first).config()
    data, train = config.data, config.train
    if is_feature_model(config.model):
        return "each fold trains on every other speaker, its C chosen inside them"
    if int(data.val_count) == 0:
        return "each fold trains on every other speaker and keeps its last epoch"
    who = "the next speaker" if int(data.val_count) == 1 else f"the next {data.val_count} speakers"
    if str(train.select) == "last":
        return f"{who} validate, each fold keeps its last epoch"
    return f"each fold selects its epoch on {who} ({train.select})"


def _made_by(info: dict[str, Any]) -> str:
    """``commit <sha> [(with uncommitted changes)] on <processor>`` of a run_info.json."""
    dirty = " (with uncommitted changes)" if info.get("git_dirty") else ""
    return f"commit {(info.get('git_commit') or '?')[:10]}{dirty} on {info.get('processor', '?')}"


def _ms(ms: dict[str, float]) -> str:
    return fmt(ms, 3)
