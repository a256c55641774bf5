"""Re-scoring a finished run: when the command of a finished ``train`` or ``cv`` job asks for
evaluations beside the plain test that a run lacks (``--config.eval.tta_shifts=...``,
``--config.eval.tta_semitones=...``, ``--config.eval.speaker_bn=True``), :func:`score_beside`
scores them from the run's saved model, without training it again, and hands on the run's
results with those blocks added (each with a ``scored_later`` note of who scored it);
:func:`finished_results` does it for every finished run of a job and hands on their results.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from ser_jax import parallel
from ser_jax.data.prepare import PreparedData, prepare
from ser_jax.errors import ConfigError
from ser_jax.evaluation.metrics import read_predictions
from ser_jax.rundir import RunDir, command_line, git_state, processor_name
from ser_jax.serving.restore import MODEL_FILE, read_model_file
from ser_jax.training.results import adapted_test, beside_results, tta_test, write_beside
from ser_jax.training.trainer import build_trainer

# How far a saved model's probabilities may drift from its run's recorded ones (rounded to 5
# digits in test_predictions.jsonl) and still count as the same model on the same files.
REPRODUCE_TOLERANCE = 2e-3


def finished_results(
    configs: Sequence[Any], datas: Sequence[PreparedData | None], runs: Sequence[RunDir]
) -> list[dict[str, Any] | None]:
    """Each finished run's results (``results.json`` present), with the evaluations its
    config asks for and it lacks scored now (:func:`score_beside`); None for a run to train."""
    results: list[dict[str, Any] | None] = [None] * len(runs)
    for k, run in enumerate(runs):
        if run.finished:
            if jax.process_index() == 0:
                print(f"{run.path} is finished (results.json); not training it again")
            results[k] = score_beside(configs[k], datas[k], run)
    return results


def score_beside(config: Any, data: PreparedData | None, run: RunDir) -> dict[str, Any]:
    """A finished run's results, with the evaluations beside the plain test that ``config``
    asks for and the run lacks (``eval.tta_shifts`` and ``eval.tta_semitones``, or others than
    it has; ``eval.speaker_bn``) scored now from its saved model, without training it again:
    so adding ``--config.eval.tta_shifts=...`` or ``--config.eval.speaker_bn=True`` to the
    command of a finished ``train`` or ``cv`` job scores them for every run of the job. The
    model comes from the run's own ``config.json`` (only its ``eval`` fields from ``config``),
    the files from ``data`` (``config``'s split when None). The plain test is never scored
    again as a result: it is recomputed once as a check, and a saved model that no longer
    reproduces the run's recorded test probabilities (other files, or code that changed the
    numerics since) is refused, naming the run, rather than scored beside numbers it did not
    make."""
    results = run.results()
    need_tta, need_bn = _needed(config, results, run)
    if not (need_tta or need_bn) or results.get("test_accuracy") is None:
        return results
    what = " and ".join(n for n, on in (("tta", need_tta), ("speaker_bn", need_bn)) if on)
    if jax.process_index() == 0:
        print(
            f"{run.path}: re-scoring {what} beside its test from its saved model (the "
            "command's eval fields ask for evaluations the run lacks)",
            flush=True,
        )
    shifts = [float(x) for x in config.eval.tta_shifts]
    semitones = [float(x) for x in config.eval.get("tta_semitones", ())]
    own = run.config()
    with own.unlocked():
        own.eval.tta_shifts = tuple(shifts) if need_tta else ()
        own.eval.tta_semitones = tuple(semitones) if need_tta else ()
        own.eval.speaker_bn = need_bn
        own.eval.speaker_bn_source = str(config.eval.get("speaker_bn_source", "scored"))
        own.train.cache_features = False  # scoring trains nothing: no training cache to build
    data = data if data is not None else prepare(own, progress=False)
    added = _score_saved(own, data, run, need_tta, need_bn)
    results.update(added)
    if jax.process_index() == 0:
        run.write_results(results)
        print(f"{run.path}: scored {' and '.join(added)} beside its test, from its saved model")
    return results


def _needed(config: Any, results: dict[str, Any], run: RunDir) -> tuple[bool, bool]:
    """Whether ``config`` asks for test-time augmentation other than the run's (or none it
    has), and for speaker-adaptive BatchNorm it lacks; refuses a BatchNorm source other than
    the one the run scored with."""
    shifts = [float(x) for x in config.eval.tta_shifts]
    semitones = [float(x) for x in config.eval.get("tta_semitones", ())]
    have = results.get("tta") or {}
    have_tta, have_semitones = have.get("shifts_seconds"), have.get("semitones", [])
    need_tta = bool(shifts or semitones) and (
        have_tta is None
        or len(have_tta) != len(shifts)
        or not np.allclose(have_tta, shifts, atol=1e-4)
        or len(have_semitones) != len(semitones)
        or not np.allclose(have_semitones, semitones, atol=1e-6)
    )
    need_bn = bool(config.eval.speaker_bn) and not results.get("speaker_bn")
    source = str(config.eval.get("speaker_bn_source", "scored"))
    have_source = (results.get("speaker_bn") or {}).get("source", "scored")
    if config.eval.speaker_bn and not need_bn and have_source != source:
        raise ConfigError(
            f"{run.path} scored speaker-adaptive BatchNorm from eval.speaker_bn_source="
            f"{have_source!r}, and this command asks for {source!r}: give it another --workdir"
        )
    return need_tta, need_bn


def _score_saved(
    own: Any, data: PreparedData, run: RunDir, need_tta: bool, need_bn: bool
) -> dict[str, Any]:
    """The blocks of results.json scored from the run's saved model under ``own`` (its config
    with the evaluations asked for), after checking that the model reproduces the run's
    recorded test probabilities; writes their reports."""
    recorded = _recorded_probabilities(run, data)
    trainer = build_trainer([own], [data], stacked=False)
    variables = parallel.to_replicated(read_model_file(run / MODEL_FILE)[0], trainer.mesh)
    drift = float(np.abs(trainer.predict(data.test, variables) - recorded).max())
    if drift > REPRODUCE_TOLERANCE:
        raise ConfigError(
            f"{run.path}: its saved model no longer reproduces its recorded test probabilities "
            f"(largest difference {drift:.3g}): the code changed the numerics or the files "
            "differ since it was trained; train it again instead of scoring it beside them"
        )
    tta = tta_test(trainer, data, variables) if need_tta else None
    adapted = adapted_test(trainer, data, variables) if need_bn else None
    added = {k: v for k, v in beside_results(trainer.spec, tta, adapted).items() if v is not None}
    commit, dirty = git_state()
    for block in added.values():  # who scored it, when it was not the training job
        block["scored_later"] = {
            "command": command_line(),
            "git_commit": commit,
            "git_dirty": dirty,
            "processor": processor_name(),
        }
    if jax.process_index() == 0:
        write_beside(run, data, tta, adapted)
    return added


def _recorded_probabilities(run: RunDir, data: PreparedData) -> np.ndarray:
    """The run's ``test_predictions.jsonl`` probabilities in the order of ``data.test``;
    refuses a run whose recorded test files are not those."""
    rows = read_predictions(run.path)
    ids = [u.utt_id for u in data.test.utts]
    if sorted(ids) != sorted(rows):
        raise ConfigError(
            f"{run.path}: its recorded test files differ from this command's split "
            f"({len(rows)} against {len(ids)}); score it with its own config"
        )
    return np.array([[rows[i]["probs"][n] for n in data.label_names] for i in ids])
