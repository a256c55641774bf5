"""Training and testing a feature model (``model.name = "opensmile"``) into a run directory.

The same run directory as a network's (``config.json``, ``run_info.json``,
``test_metrics.json``, ``test_predictions.jsonl``, confusion PNGs, ``model.msgpack``,
``results.json``), so ``cv``, ``ensemble``, ``select``, ``package`` and ``predict`` read it
unchanged. The classifier trains on the training and validation clips together (its one
choice, C, is made by leave-one-speaker-out over those speakers: no validation split is
needed) and is tested once. Both protocols are always fitted and reported: plain
(``test_*``) and speaker-adaptive (``test_speaker_bn_*``: each speaker standardised by their
own clips), which is cheap here. A finished run is returned as it is.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ser_jax import parallel
from ser_jax.classical.features import check_feature_set, config_features
from ser_jax.classical.linear import fit_classifier
from ser_jax.classical.model import PROTOCOLS, write_classifiers
from ser_jax.data.pipeline import ClipSet
from ser_jax.data.prepare import PreparedData, prepare
from ser_jax.evaluation.metrics import (
    classification_metrics,
    format_table,
    prediction_rows,
    write_report,
)
from ser_jax.rundir import RunDir, run_info
from ser_jax.serving.restore import MODEL_FILE
from ser_jax.spec import check_known_fields

TESTED = {"plain": "test", "adapted": "test_speaker_bn"}


def _tested(probs: np.ndarray, clips: ClipSet, names: tuple[str, ...]) -> dict[str, Any]:
    metrics = classification_metrics(clips.labels, probs.argmax(-1), names)
    picked = probs[np.arange(len(clips)), clips.labels]
    metrics["loss"] = float(-np.log(np.clip(picked, 1e-12, 1.0)).mean())
    return metrics


def fit_feature_model(
    config: Any, workdir: str | Path, data: PreparedData | None = None
) -> dict[str, Any]:
    """Train ``config``'s feature model into ``workdir`` and test it once (module docstring);
    returns its ``results.json`` record."""
    check_known_fields(config)
    check_feature_set(str(config.model.feature_set))  # before any folder is made
    run = RunDir(workdir)
    if run.finished:
        print(f"{run.path} is finished (results.json); not training it again")
        return run.results()
    data = data if data is not None else prepare(config, progress=bool(config.train.progress))
    with run.lock():
        run.write_start(config, run_info(config, data))
        for s in data.skipped:
            print(f"skipped {s.path}: {s.reason}", file=sys.stderr)
        parts = [c for c in (data.train, data.val) if len(c)]
        train = ClipSet(
            [w for c in parts for w in c.waves],
            np.concatenate([c.labels for c in parts]),
            [u for c in parts for u in c.utts],
        )
        start = time.perf_counter()
        feats = config_features(config, train.waves, bool(config.train.progress))
        seconds = {"features": time.perf_counter() - start}
        speakers = [u.speaker for u in train.utts]
        grid = tuple(config.model.inverse_regularisation)
        classifiers, inner = {}, {}
        start = time.perf_counter()
        for protocol in PROTOCOLS:
            classifiers[protocol], inner[protocol] = fit_classifier(
                feats, train.labels, speakers, grid, len(data.label_names), protocol == "adapted"
            )
        seconds["fit"] = time.perf_counter() - start
        results = _test_and_record(config, data, run, classifiers, inner, seconds, len(train))
        write_classifiers(run / MODEL_FILE, classifiers)
        run.write_results(results)
    return results


def _test_and_record(
    config: Any,
    data: PreparedData,
    run: RunDir,
    classifiers: dict[str, Any],
    inner: dict[str, dict[str, float]],
    seconds: dict[str, float],
    trained_on: int,
) -> dict[str, Any]:
    """Test both protocols once on the test split (none: a release model), write their
    reports, and build ``results.json``."""
    tested: dict[str, dict[str, Any] | None] = dict.fromkeys(PROTOCOLS)
    if len(data.test):
        start = time.perf_counter()
        feats = config_features(config, data.test.waves, bool(config.train.progress))
        speakers = [u.speaker for u in data.test.utts]
        seconds["features"] += time.perf_counter() - start
        for protocol, kind in TESTED.items():
            probs = classifiers[protocol].probabilities(feats, speakers)
            tested[protocol] = _tested(probs, data.test, data.label_names)
            rows = prediction_rows(data.test, probs, data.label_names)
            write_report(run.path, kind, tested[protocol], rows)
        print(format_table(tested["plain"]))
    else:
        print(f"trained on all {trained_on} files; no test split (data.split=all)")
    plain, adapted = tested["plain"], tested["adapted"]
    metrics = ("accuracy", "uar", "macro_f1", "loss")
    return {
        "name": str(config.name),
        "seed": int(config.seed),
        "split": data.split.name,
        "model": str(config.model.name),
        "feature_set": str(config.model.feature_set),
        "trained_on": trained_on,
        "selected_c": {p: classifiers[p].c for p in PROTOCOLS},
        "inner_uar": inner,
        **{f"test_{m}": None if plain is None else plain[m] for m in metrics},
        "tta": None,
        "test_time_views": False,  # no warps: the tta view of a committee is its plain one
        "speaker_bn": None
        if adapted is None
        else {"source": "scored", **{f"test_{m}": adapted[m] for m in metrics}},
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "devices": parallel.device_summary(),
    }
