"""Selection and the test split: :func:`select_and_test` takes a fitted model's selected
variables (best on validation, or the last epoch), tests them once on its test split (plus the
evaluations reported beside it: test-time augmentation, speaker-adaptive BatchNorm) and hands
on its ``results.json`` record, built by :func:`results_record`; its run directory gets the
reports, ``model.msgpack`` and ``results.json``. A release model (``data.split="all"``) has
no test split: its record says so (test metrics None).
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from ser_jax import parallel
from ser_jax.data.prepare import PreparedData
from ser_jax.evaluation.metrics import format_table, prediction_rows, write_report
from ser_jax.evaluation.scoring import speaker_bn_clips
from ser_jax.reports.figures import plot_curves
from ser_jax.rundir import RunDir
from ser_jax.serving.restore import MODEL_FILE, write_model_file
from ser_jax.spec import RunSpec
from ser_jax.training.loop import Fitted, LoopState
from ser_jax.training.steps import ModelVariables
from ser_jax.training.trainer import Member, Trainer

TEST_METRICS = ("accuracy", "uar", "macro_f1", "loss")


def select_and_test(trainer: Trainer, fitted: Fitted, k: int, run: RunDir) -> dict[str, Any]:
    """Model ``k``'s selected variables, tested once on its test split; writes its reports,
    ``model.msgpack`` and ``results.json``."""
    member, lp = trainer.members[k], fitted.loops[k]
    spec, data = member.spec, member.data
    variables, selected_step = _selected(trainer, fitted, k)
    if not len(data.test):  # a release model (data.split="all"): nothing held out to test
        return _write_untested(trainer, fitted, k, run, variables, selected_step)
    # The selected model on the validation split, saved per file so that committees of runs
    # can be compared on validation data (``ser-jax ensemble`` on seed-protocol runs); read
    # before the test split, which stays the last thing a run looks at.
    val = trainer.evaluate(data.val, variables) if len(data.val) else None
    test = trainer.evaluate(data.test, variables)
    # Test-time augmentation, chosen by config before any test result: reported beside.
    tta = tta_test(trainer, data, variables) if spec.tta else None
    # Speaker-adaptive BatchNorm (its own protocol, chosen by config): reported beside.
    adapted = adapted_test(trainer, data, variables) if spec.speaker_bn else None
    members = len(trainer.members) if trainer.stacked else 1
    results = results_record(member, lp, selected_step, test, tta, adapted, members=members)
    if jax.process_index() == 0:
        probs = test.pop("probs")
        write_report(run.path, "test", test, prediction_rows(data.test, probs, data.label_names))
        write_beside(run, data, tta, adapted)
        if val is not None:
            rows = prediction_rows(data.val, val.pop("probs"), data.label_names)
            write_report(run.path, "val", val, rows)
        if lp.history:
            plot_curves(lp.history, run / "curves.png", title=f"{spec.name} seed {spec.seed}")
        write_model_file(run / MODEL_FILE, variables, step=selected_step)
        run.write_results(results)
        print(format_table(test))
    return results


def _selected(trainer: Trainer, fitted: Fitted, k: int) -> tuple[ModelVariables, int]:
    """Model ``k``'s selected variables and their step: the best on validation, or (with
    ``train.select="last"`` or nothing validated) the final ones."""
    lp, spec = fitted.loops[k], trainer.members[k].spec
    if spec.select != "last" and lp.best_step is not None and fitted.best is not None:
        variables = trainer._take(fitted.best, k) if trainer.stacked else fitted.best
        return variables, int(lp.best_step)
    step = trainer._take(fitted.state.step, k) if trainer.stacked else fitted.state.step
    return trainer.variables(fitted.state, k), int(jax.device_get(step))


def results_record(
    member: Member,
    lp: LoopState,
    selected_step: int,
    test: dict[str, Any] | None,
    tta: dict[str, Any] | None = None,
    adapted: dict[str, Any] | None = None,
    *,
    members: int = 1,
) -> dict[str, Any]:
    """A run's ``results.json``: its selection, its test metrics (``test`` None: a release
    model, trained on all files, whose record holds ``trained_on`` and test metrics of None),
    the validation metrics at the selected step, timings, the evaluations beside the plain
    test and the models trained with it (``members``)."""
    spec, history = member.spec, lp.history
    tested = test is not None
    return {
        "name": spec.name,
        "seed": spec.seed,
        **({"seed_offset": spec.seed_offset} if spec.seed_offset else {}),
        "split": member.data.split.name,
        "selected_step": selected_step,
        "selected_epoch": selected_step // member.steps_per_epoch,
        "select": spec.select,
        "epochs_run": len(history),
        **({"stopped_early": lp.stopped_early} if tested else {}),
        **({} if tested else {"trained_on": len(member.data.train)}),
        **{f"test_{m}": test[m] if tested else None for m in TEST_METRICS},
        **({"val_at_selected": _val_at(history, selected_step)} if tested else {}),
        "epoch_seconds_median": _timing_median(history, "epoch_seconds"),
        "samples_per_second_median": _timing_median(history, "samples_per_second"),
        **(beside_results(spec, tta, adapted) if tested else {}),
        **({"members": members} if tested else {}),
        "devices": parallel.device_summary(),
    }


def _val_at(history: list[dict[str, Any]], step: int) -> dict[str, Any] | None:
    """The validation metrics of the epoch that ended at ``step`` (None when not validated)."""
    return next(
        ({k: h[k] for k in h if k.startswith("val_")} for h in history if h["step"] == step),
        None,
    )


def tta_test(trainer: Trainer, data: PreparedData, variables: Any) -> dict[str, Any]:
    """The test split with test-time augmentation (``eval.tta_shifts``, ``eval.tta_semitones``)."""
    spec = trainer.spec
    return trainer.evaluate(data.test, variables, spec.tta_shifts, warps=spec.tta_warps)


def adapted_test(trainer: Trainer, data: PreparedData, variables: Any) -> dict[str, Any]:
    """The test split with speaker-adaptive BatchNorm, each speaker's statistics from the
    clips ``eval.speaker_bn_source`` names."""
    bn_clips = speaker_bn_clips(trainer.spec.speaker_bn_source, data)
    return trainer.evaluate(data.test, variables, speaker_bn=True, bn_clips=bn_clips)


def beside_results(
    spec: RunSpec, tta: dict[str, Any] | None, adapted: dict[str, Any] | None
) -> dict[str, Any]:
    """``results.json``'s blocks of the evaluations reported beside the plain test (None when
    off): test-time augmentation and speaker-adaptive BatchNorm."""
    return {
        "tta": (
            {
                "shifts_seconds": [k / spec.sample_rate for k in spec.tta_shifts],
                "semitones": list(spec.tta_semitones),
                **{f"test_{m}": tta[m] for m in TEST_METRICS},
            }
            if tta
            else None
        ),
        "speaker_bn": (
            {"source": spec.speaker_bn_source, **{f"test_{m}": adapted[m] for m in TEST_METRICS}}
            if adapted
            else None
        ),
    }


def write_beside(
    run: RunDir, data: PreparedData, tta: dict[str, Any] | None, adapted: dict[str, Any] | None
) -> None:
    """The reports of the evaluations beside the plain test (``test_tta_*``,
    ``test_speaker_bn_*``); pops their probabilities."""
    for name, metrics in (("test_tta", tta), ("test_speaker_bn", adapted)):
        if metrics:
            rows = prediction_rows(data.test, metrics.pop("probs"), data.label_names)
            write_report(run.path, name, metrics, rows)


def _write_untested(
    trainer: Trainer, fitted: Fitted, k: int, run: RunDir, variables: Any, step: int
) -> dict[str, Any]:
    """A release model's record, curves and ``model.msgpack`` (no test split to score)."""
    member, lp = trainer.members[k], fitted.loops[k]
    results = results_record(member, lp, step, None)
    if jax.process_index() == 0:
        if lp.history:
            plot_curves(lp.history, run / "curves.png", title=f"{member.spec.name} (all files)")
        write_model_file(run / MODEL_FILE, variables, step=step)
        run.write_results(results)
        print(f"trained on all {len(member.data.train)} files; no test split (data.split=all)")
    return results


def _timing_median(history: list[dict[str, Any]], key: str) -> float:
    """Median over epochs, leaving out the first (it includes compilation) when there are more."""
    rows = history[1:] or history
    return float(np.median([h[key] for h in rows])) if rows else 0.0
