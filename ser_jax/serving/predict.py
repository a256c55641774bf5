"""Using a trained model: score a corpus (``ser-jax evaluate``), label recordings
(``ser-jax predict``).

The model comes from ``ser_jax.serving.restore.load_model`` (a run directory's selected model). Clips
are scored by the one evaluation policy of ``ser_jax.evaluation.scoring`` (long recordings as
half-overlapping windows whose probabilities are averaged), so ``evaluate`` on a run's own test
split gives the numbers training reported. A file that cannot be read gets its error in the
output; the other files are still scored. ``balanced``: each model's probabilities divided by
the class frequencies it was trained on (its ``run_info.json``), renormalised: the balanced
decision of ``ser_jax.evaluation.metrics``.
"""

from __future__ import annotations

import csv
import functools
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ser_jax.data.pipeline import ClipSet
from ser_jax.data.prepare import load_all, prepare
from ser_jax.errors import ConfigError, SerJaxError
from ser_jax.evaluation.metrics import (
    balanced_probabilities,
    classification_metrics,
    combine_probabilities,
    format_table,
    prediction_rows,
    training_prior,
    write_report,
)
from ser_jax.evaluation.scoring import speaker_bn_clips, speaker_waves
from ser_jax.reports.figures import plot_timeline
from ser_jax.serving.checkpointed import load_run
from ser_jax.serving.restore import LoadedModel
from ser_jax.serving.shipped import (
    DEFAULT_MODEL,
    load_shipped,
    parse_weights,
    shipped_members,
    shipped_rule,
    shipped_semitones,
    shipped_weights,
)
from ser_jax.serving.speakers import group_warnings, speakers_of


def _decision(model: LoadedModel, probs: np.ndarray, balanced: bool) -> np.ndarray:
    """``probs`` as the model decides: divided by its training prior when ``balanced``."""
    if not balanced:
        return probs
    return balanced_probabilities(probs, training_prior(model.source, model.label_names))


def _score_files(
    model: LoadedModel,
    paths: Sequence[str],
    *,
    speaker_bn: bool,
    balanced: bool = False,
    semitones: Sequence[float] = (),
    speakers: Sequence[str] | None = None,
) -> tuple[list[dict[str, Any]], list[int], np.ndarray | None]:
    """``(rows, good, probs)``: one row per file (``path`` and ``seconds``, or ``error``
    naming the cause), the rows that decoded, and their class probabilities (None if none
    decoded; ``semitones``: test-time warps averaged in; ``speakers``: each file's speaker,
    whose files a model adapts to apart; None: all one speaker's)."""
    out: list[dict[str, Any]] = []
    good, waves = [], []
    for p in paths:
        try:
            wave = model.load_audio(p)
        except SerJaxError as err:
            out.append({"path": str(p), "error": str(err)})
            continue
        good.append(len(out))
        waves.append(wave)
        out.append({"path": str(p), "seconds": round(len(wave) / model.sample_rate, 3)})
    if not waves:
        return out, good, None
    if (model.per_speaker or speaker_bn) and speakers is None:
        what = "normalises by" if model.per_speaker else "adapts its BatchNorm to"
        print(
            f"{model.source}: this model {what} the speaker's own statistics; the "
            f"{len(waves)} file(s) given are taken as one speaker's recordings",
            file=sys.stderr,
        )
    names = None if speakers is None else [speakers[i] for i in good]
    probs = model.probabilities(waves, speakers=names, speaker_bn=speaker_bn, semitones=semitones)
    return out, good, _decision(model, probs, balanced)


def _labelled(
    rows: list[dict[str, Any]], good: list[int], probs: np.ndarray, names: Sequence[str]
) -> list[dict[str, Any]]:
    """``rows`` with each decoded file's ``label`` and rounded ``probs``."""
    for row, p in zip(good, probs, strict=True):
        rows[row]["label"] = names[int(p.argmax())]
        rows[row]["probs"] = {n: round(float(v), 5) for n, v in zip(names, p, strict=True)}
    return rows


def predict_files(
    model: LoadedModel,
    paths: Sequence[str],
    *,
    speaker_bn: bool = False,
    balanced: bool = False,
    semitones: Sequence[float] = (),
    speakers: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """One dict per file: ``label``, ``probs`` and ``seconds``, or ``error`` naming the cause.
    ``speaker_bn``: scored with BatchNorm statistics (or feature standardisation) of each
    speaker's own files (``speakers``, one a file; None: all one speaker's);
    ``balanced``: the balanced decision; ``semitones``: test-time warps (each file also scored
    warped by each, averaged)."""
    rows, good, probs = _score_files(
        model,
        paths,
        speaker_bn=speaker_bn,
        balanced=balanced,
        semitones=semitones,
        speakers=speakers,
    )
    return rows if probs is None else _labelled(rows, good, probs, model.label_names)


def committee_files(
    models: Sequence[LoadedModel],
    paths: Sequence[str],
    *,
    speaker_bn: bool = False,
    balanced: bool = False,
    rule: str = "mean",
    weights: Sequence[float] | None = None,
    semitones: Sequence[float] = (),
    speakers: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """``predict_files`` of several models (a committee, e.g. two model families), each
    file's class probabilities averaged over them (``speaker_bn``: each model adapts its
    BatchNorm to the files, as alone; ``balanced``: each model's own probabilities divided by
    its own training prior, then averaged, as ``ser-jax ensemble`` scores it; ``rule``: how
    they combine, ``ser_jax.evaluation.metrics.combine_probabilities``; ``weights``: one a model;
    ``semitones``: each model's test-time warps, as ``ser-jax ensemble`` averages each
    member's test-time-augmented probabilities). The models must share their classes."""
    names = list(models[0].label_names)
    for m in models[1:]:
        if list(m.label_names) != names:
            raise ConfigError(
                f"{m.source}: its classes {list(m.label_names)} differ from "
                f"{models[0].source}'s {names}; a committee needs the same classes"
            )
    scored = [
        _score_files(
            m,
            paths,
            speaker_bn=speaker_bn,
            balanced=balanced,
            semitones=semitones,
            speakers=speakers,
        )
        for m in models
    ]
    rows = scored[0][0]
    for other, _, _ in scored[1:]:  # a file one model could not read fails for the committee
        for i, row in enumerate(other):
            if "error" in row:
                rows[i] = row
    good = [i for i, row in enumerate(rows) if "error" not in row]
    if not good:
        return rows
    combined = combine_probabilities(
        [p[[g.index(i) for i in good]] for _, g, p in scored], rule, weights
    )
    return _labelled(rows, good, combined, names)


def predict_command(
    run_dir: str | None,
    paths: Sequence[str],
    *,
    as_json: bool,
    model_name: str | None = None,
    timeline: str | None = None,
    csv_path: str | None = None,
    speaker_bn: bool = False,
    balanced: bool = False,
    rule: str | None = None,
    weights: str | None = None,
    semitones: Sequence[float] | None = None,
    speaker_from: str | None = None,
) -> int:
    """Print labels and probabilities (a table, or JSON) of the model of ``run_dir``, or of a
    shipped model (``model_name``, or the default one); optionally a timeline PNG and a CSV
    of each file's window probabilities. Exit code 1 if any file failed.

    ``run_dir`` (or ``model_name``) may name several runs (shipped models), comma-separated,
    or ``model_name`` a shipped committee (``chosen_models``). ``speaker_from``: who speaks in
    each file (``ser_jax.serving.speakers``: ``folder`` or ``csv:FILE:COLUMN``), so that
    ``speaker_bn`` adapts to each speaker's files apart, in one call (without it the files of
    one call are one speaker's); every row then names its speaker, and a group too small or
    read as one class is warned about."""
    models, rule, weight_list, semitones = chosen_models(
        run_dir, model_name, rule, weights, semitones, one_window=bool(timeline or csv_path)
    )
    speakers = speakers_of(paths, speaker_from) if speaker_from else None
    known = [i for i, p in enumerate(paths) if speakers is None or speakers[i] is not None]
    scored = iter(
        _rows(
            models,
            [paths[i] for i in known],
            None if speakers is None else [speakers[i] for i in known],
            speaker_bn=speaker_bn,
            balanced=balanced,
            rule=rule,
            weights=weight_list,
            semitones=semitones,
        )
    )
    unlisted = {"error": f"--speaker_from={speaker_from}: the file is not listed there"}
    rows = [
        next(scored)
        if speakers is None or speakers[i] is not None
        else {"path": str(p), **unlisted}
        for i, p in enumerate(paths)
    ]
    if speakers is not None:
        group_warnings(rows, speakers)
    print_rows(rows, models[0].label_names, as_json)
    if timeline or csv_path:
        good = [r["path"] for r in rows if "error" not in r]
        write_timelines(
            models[0], good, timeline, csv_path, speaker_bn=speaker_bn, balanced=balanced
        )
    return 1 if any("error" in r for r in rows) else 0


def chosen_models(
    run_dir: str | None,
    model_name: str | None,
    rule: str | None,
    weights: str | None,
    semitones: Sequence[float] | None,
    *,
    one_window: bool,
) -> tuple[list[Any], str, list[float] | None, Sequence[float]]:
    """``(models, rule, weights, semitones)`` of ``predict``'s arguments: the runs or shipped
    models named (none: the default); one shipped committee brings its own rule, weights and
    test-time warps unless given (a committee's ``rule`` None: the mean; ``weights``: one a
    model, comma-separated, ``parse_weights``; ``semitones`` None: the committee's own, else
    none). ``one_window``: a timeline or CSV of windows is asked for (one model, no warps)."""
    runs = [r for r in (run_dir or "").split(",") if r]
    given_names = [n for n in (model_name or "").split(",") if n]
    if not runs and not given_names:
        given_names = [DEFAULT_MODEL]
    shipped = [m for n in given_names for m in shipped_members(n)]
    flag, given = ("--run", run_dir) if runs else ("--model", ",".join(given_names))
    one = len(given_names) == 1 and not runs  # one shipped model or committee
    count = len(runs or shipped)
    if count > 1 and one_window:
        raise ConfigError(
            f"{flag}={given}: a committee of {count} models has no timeline or CSV of "
            f"windows; give one model for --timeline/--csv"
        )
    if semitones is None:  # one shipped committee (named, or the default): its own warps
        semitones = shipped_semitones(given_names[0]) if one else ()
    if semitones and one_window:
        raise ConfigError(
            f"--tta_semitones={','.join(f'{v:g}' for v in semitones)}: the timeline and CSV "
            "show each window as the model scores it alone; leave out --tta_semitones for them"
        )
    if weights is not None and count < 2:
        raise ConfigError(f"--weights={weights}: weights are for a committee of several models")
    weight_list = None if weights is None else parse_weights(weights, count)
    models = [load_run(r) for r in runs] if runs else [load_shipped(n) for n in shipped]
    if rule is None:  # one shipped committee: its own rule; otherwise the mean
        rule = shipped_rule(given_names[0]) if one else "mean"
    if weight_list is None and one:  # one shipped committee: its own weights, if it has any
        weight_list = shipped_weights(given_names[0])
    return models, rule, weight_list, semitones


def _rows(
    models: Sequence[Any], paths: Sequence[str], speakers: Sequence[str] | None, **how: Any
) -> list[dict[str, Any]]:
    """Each file's row from one model (``predict_files``) or a committee (``committee_files``)."""
    if len(models) > 1:
        return committee_files(models, paths, speakers=speakers, **how)
    how = {k: v for k, v in how.items() if k not in ("rule", "weights")}
    return predict_files(models[0], paths, speakers=speakers, **how)


def print_rows(rows: Sequence[dict[str, Any]], names: Sequence[str], as_json: bool) -> None:
    """``predict``'s output: the rows as JSON, or a table of each file's label and class
    probabilities (a file that failed: its error; a speaker's group: its warnings after)."""
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'file':<40} {'label':<10} " + " ".join(f"{n[:7]:>7}" for n in names))
    for r in rows:
        if "error" in r:
            print(f"{Path(r['path']).name:<40} ERROR      {r['error']}")
        else:
            print(
                f"{Path(r['path']).name:<40} {r['label']:<10} "
                + " ".join(f"{r['probs'][n]:7.3f}" for n in names)
            )
    for warning in dict.fromkeys(r["warning"] for r in rows if "warning" in r):
        print(f"warning: {warning}")


def write_timelines(
    model: LoadedModel,
    paths: Sequence[str],
    png: str | None,
    csv_path: str | None,
    *,
    speaker_bn: bool = False,
    balanced: bool = False,
) -> None:
    """Each file's half-overlapping windows scored alone: a PNG of the class probabilities
    over time (one panel a file) and/or a CSV with one row a window (``balanced``: each
    window's probabilities with the balanced decision)."""
    tracks, lines = [], []
    waves = [model.load_audio(p) for p in paths]
    # per-speaker models and speaker_bn: the files of one call are one speaker's, as in
    # predict_files
    variables = None
    if (model.per_speaker or speaker_bn) and waves:
        variables = model.speaker_variables(waves, speaker_bn=speaker_bn)
    for p, wave in zip(paths, waves, strict=True):
        start, end, probs = model.window_probabilities(wave, variables=variables)
        probs = _decision(model, probs, balanced)
        tracks.append((Path(p).name, (start + end) / 2, probs))
        for s, e, row in zip(start, end, probs, strict=True):
            lines.append([p, f"{s:.3f}", f"{e:.3f}", *(f"{v:.5f}" for v in row)])
    if png:
        plot_timeline(tracks, model.label_names, Path(png))
        print(f"wrote {png}")
    if csv_path:
        with open(csv_path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "start_s", "end_s", *model.label_names])
            w.writerows(lines)
        print(f"wrote {csv_path}")


def evaluate_run(
    run_dir: str,
    *,
    data: str | None,
    corpus: str,
    out: str | None,
    speaker_bn: bool = False,
    balanced: bool = False,
    semitones: Sequence[float] = (),
) -> dict[str, Any]:
    """Score the run's selected model on its own test split (no ``data``) or on every file of
    another corpus; writes metrics, predictions and confusion PNGs to ``out``. ``speaker_bn``:
    each speaker's clips with BatchNorm statistics of their own (the files ``<split>_speaker_bn_*``,
    as training's ``eval.speaker_bn`` names them); ``balanced``: the balanced decision (the
    files ``<split>[_speaker_bn]_balanced_*``); ``semitones``: test-time warps (the files
    ``<split>_tta*``, as training's ``eval.tta_semitones`` names them)."""
    model = load_run(run_dir)
    names = model.label_names
    if data:
        cfg = model.config.copy_and_resolve_references()
        with cfg.unlocked():
            cfg.data.corpus, cfg.data.root = corpus, data
        waves, utts, skipped = load_all(cfg.data)
        unknown = sorted({u.label for u in utts} - set(names))
        if unknown:
            raise ConfigError(
                f"{data}: labels {unknown} are not classes of the run ({list(names)})"
            )
        clips = ClipSet(waves, [names.index(u.label) for u in utts], utts)
        split = f"eval-{Path(data).name}"
        for s in skipped:
            print(f"skipped {s.path}: {s.reason}", file=sys.stderr)
        stats = None  # per-speaker models: each speaker's statistics from all their files
        bn_waves = None  # speaker-adaptive BatchNorm: from the files of the speaker scored
    else:
        prepared = prepare(model.config, progress=False)
        clips = prepared.test
        split = "test"
        stats = None
        if model.per_speaker:  # as in training: from the speaker's files in every split
            parts = [c for c in (prepared.train, prepared.val, prepared.test) if len(c)]
            stats = model.speaker_stats(
                [w for c in parts for w in c.waves], [u.speaker for c in parts for u in c.utts]
            )
        # speaker-adaptive BatchNorm from the clips training took it from (eval.speaker_bn_source)
        source = str(model.config.eval.get("speaker_bn_source", "scored"))
        bn_parts = speaker_bn_clips(source, prepared)
        bn_waves = None if bn_parts is None else functools.partial(speaker_waves, bn_parts)
    speakers = [u.speaker for u in clips.utts] if model.per_speaker or speaker_bn else None
    probs = model.probabilities(
        clips.waves,
        speakers=speakers,
        stats=stats,
        speaker_bn=speaker_bn,
        bn_waves=bn_waves,
        semitones=semitones,
    )
    probs = _decision(model, probs, balanced)
    split = f"{split}_tta" if semitones else split
    split = f"{split}_speaker_bn" if speaker_bn else split
    split = f"{split}_balanced" if balanced else split
    metrics = classification_metrics(clips.labels, probs.argmax(-1), names)
    metrics["model_step"] = model.step
    metrics["run_finished"] = model.finished
    out_dir = Path(out) if out else model.source / "eval"
    write_report(out_dir, split, metrics, prediction_rows(clips, probs, names))
    print(format_table(metrics))
    print(f"wrote {out_dir / (split + '_metrics.json')}")
    return metrics
