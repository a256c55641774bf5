"""Experiments: seeds with mean ± std, LOSO cross-validation, sweeps, and the Emo-DB protocols."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_config

from ser_jax import sweep as sweep_mod
from ser_jax.data.manifest import EMOTIONS
from ser_jax.errors import ConfigError
from ser_jax.protocols import cross_validate, run_seeds


def test_loso_cross_validation_pools_every_file_once(tmp_path):
    cfg = tiny_config(epochs=2)
    cfg.data.demo.speakers = 3
    cfg.data.demo.utterances_per_class = 3
    cfg.train.members = 3  # the three folds in one compiled step
    cfg.eval.tta_shifts = (-0.05, 0.05)
    cfg.eval.speaker_bn = True
    summary = cross_validate(cfg, tmp_path, seeds=1)
    # speaker-adaptive BatchNorm: beside the plain numbers, from its own predictions
    run0 = next(tmp_path.glob("fold0-*/seed0"))
    adapted = [json.loads(x) for x in run0.joinpath("test_speaker_bn_predictions.jsonl").open()]
    plain0 = [json.loads(x) for x in run0.joinpath("test_predictions.jsonl").open()]
    assert [r["utt_id"] for r in adapted] == [r["utt_id"] for r in plain0]
    assert any(a["probs"] != p["probs"] for a, p in zip(adapted, plain0, strict=True))
    reported = json.loads(run0.joinpath("results.json").read_text())["speaker_bn"]
    hits = np.mean([r["label"] == r["predicted"] for r in adapted])
    assert reported["test_accuracy"] == pytest.approx(hits)
    assert set(summary["pooled_speaker_bn"]) == {"test_accuracy", "test_uar", "test_macro_f1"}
    # test-time augmentation is reported beside the plain numbers, from its own predictions
    assert set(summary["pooled_tta"]) == {"test_accuracy", "test_uar", "test_macro_f1"}
    tta = [
        json.loads(x)
        for x in next(tmp_path.glob("fold0-*/seed0")).joinpath("test_tta_predictions.jsonl").open()
    ]
    plain = [
        json.loads(x)
        for x in next(tmp_path.glob("fold0-*/seed0")).joinpath("test_predictions.jsonl").open()
    ]
    assert [r["utt_id"] for r in tta] == [r["utt_id"] for r in plain]
    assert any(r["probs"] != p["probs"] for r, p in zip(tta, plain, strict=True))
    assert summary["speakers"] == ["01", "02", "03"]
    assert [r["speaker"] for r in summary["per_fold"]] == ["01", "02", "03"]
    cm = np.asarray(summary["pooled_confusion"])
    assert cm.sum() == 3 * 7 * 3  # every file is a test file exactly once
    assert cm.sum(axis=1).tolist() == [9] * 7
    for fold in range(3):
        run = next(tmp_path.glob(f"fold{fold}-*/seed0"))
        data = json.loads((run / "run_info.json").read_text())["data"]
        parts = [set(data[p]["speakers"]) for p in ("train", "val", "test")]
        assert parts[2] == {summary["speakers"][fold]}
        assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert (tmp_path / "pooled_confusion.png").exists()
    md = (tmp_path / "cv_summary.md").read_text()
    for fold, speaker in enumerate(["01", "02", "03"]):
        assert f"| {fold} | {speaker} | 0 |" in md
    # a run ensembled with itself scores what it scored alone (the real files of a cv run)
    from ser_jax.research.committees import ensemble_runs

    ens = ensemble_runs([tmp_path, tmp_path], tmp_path / "ens")
    assert ens["models_per_file"] == 2 and ens["files"] == 3 * 7 * 3
    assert ens["pooled"]["confusion"] == summary["pooled_confusion"]
    assert ens["pooled"]["uar"] == pytest.approx(summary["pooled"]["test_uar"]["mean"])
    assert ens["pooled_speaker_bn"]["uar"] == pytest.approx(
        summary["pooled_speaker_bn"]["test_uar"]["mean"]
    )
    # the balanced decision: the demo corpus trains on every class alike (uniform prior), so
    # it decides as the plain argmax does
    for key in ("pooled_balanced", "pooled_speaker_bn_balanced"):
        assert set(summary[key]) == {"test_accuracy", "test_uar", "test_macro_f1"}
    assert summary["pooled_balanced"]["test_uar"] == summary["pooled"]["test_uar"]
    assert ens["pooled_balanced"]["confusion"] == summary["pooled_confusion"]
    assert "| pooled, balanced decision (÷ training prior) |" in md


def test_loso_without_validation_speakers_trains_on_the_rest_and_keeps_the_last_epoch(tmp_path):
    cfg = tiny_config(epochs=2)
    cfg.data.demo.speakers = 3
    cfg.data.demo.utterances_per_class = 3  # the shapes of the LOSO test above (shared compile)
    cfg.data.split = "loso"
    cfg.data.val_count = 0
    cfg.train.select = "last"
    cfg.train.members = 3
    summary = cross_validate(cfg, tmp_path, seeds=1)
    assert np.asarray(summary["pooled_confusion"]).sum() == 3 * 7 * 3
    for fold in range(3):
        run = next(tmp_path.glob(f"fold{fold}-*/seed0"))
        data = json.loads((run / "run_info.json").read_text())["data"]
        assert set(data["train"]["speakers"]) == {"01", "02", "03"} - set(data["test"]["speakers"])
        assert not data["val"].get("speakers")
        results = json.loads((run / "results.json").read_text())
        assert results["selected_epoch"] == results["epochs_run"] == 2
    assert "pooled_tta" not in summary and "pooled_speaker_bn" not in summary

    # The same finished job with test-time augmentation and speaker-adaptive BatchNorm asked
    # for: both scored from the saved models, nothing trained or tested again.
    run0 = next(tmp_path.glob("fold0-*/seed0"))
    before = {n: (run0 / n).read_bytes() for n in ("metrics.jsonl", "test_predictions.jsonl")}
    cfg.eval.tta_shifts = (-0.05, 0.05)
    cfg.eval.speaker_bn = True
    again = cross_validate(cfg, tmp_path, seeds=1)
    assert {n: (run0 / n).read_bytes() for n in before} == before
    assert again["pooled"] == summary["pooled"]
    assert set(again["pooled_tta"]) == set(again["pooled_speaker_bn"]) == set(summary["pooled"])
    results = json.loads((run0 / "results.json").read_text())
    assert results["tta"]["shifts_seconds"] == pytest.approx([-0.05, 0.05], abs=1e-4)
    later = results["speaker_bn"]["scored_later"]
    assert set(later) == {"command", "git_commit", "git_dirty", "processor"}
    for kind, key in (("test_tta", "tta"), ("test_speaker_bn", "speaker_bn")):
        rows = [json.loads(x) for x in (run0 / f"{kind}_predictions.jsonl").open()]
        plain = [json.loads(x) for x in (run0 / "test_predictions.jsonl").open()]
        assert [r["utt_id"] for r in rows] == [r["utt_id"] for r in plain]
        assert any(r["probs"] != p["probs"] for r, p in zip(rows, plain, strict=True))
        hits = np.mean([r["label"] == r["predicted"] for r in rows])
        assert results[key]["test_accuracy"] == pytest.approx(hits)
    # the restored model with speaker-adaptive BatchNorm (ser-jax evaluate/predict
    # --speaker_bn) gives what training's eval.speaker_bn recorded, and not the plain scores
    from ser_jax.data.prepare import prepare
    from ser_jax.serving.predict import evaluate_run, predict_files
    from ser_jax.serving.restore import load_model

    recorded = [json.loads(x) for x in (run0 / "test_speaker_bn_predictions.jsonl").open()]
    metrics = evaluate_run(
        str(run0), data=None, corpus="demo", out=str(tmp_path / "ev"), speaker_bn=True
    )
    got = [json.loads(x) for x in (tmp_path / "ev" / "test_speaker_bn_predictions.jsonl").open()]
    assert [r["utt_id"] for r in got] == [r["utt_id"] for r in recorded]
    for g, r in zip(got, recorded, strict=True):
        assert g["probs"] == pytest.approx(r["probs"], abs=2e-3)
    assert metrics["accuracy"] == pytest.approx(results["speaker_bn"]["test_accuracy"])
    model = load_model(run0)
    test = prepare(model.config, progress=False).test  # one speaker: the fold's
    rows = predict_files(model, [u.path for u in test.utts], speaker_bn=True)
    by_utt = {r["utt_id"]: r["probs"] for r in recorded}
    for u, row in zip(test.utts, rows, strict=True):
        assert row["probs"] == pytest.approx(by_utt[u.utt_id], abs=2e-3)
    plain = predict_files(model, [u.path for u in test.utts])
    assert any(p["probs"] != row["probs"] for p, row in zip(plain, rows, strict=True))

    # scoring what is there already does nothing; a saved model that no longer gives its
    # recorded test probabilities is refused, naming the run
    stamp = (run0 / "results.json").stat().st_mtime_ns
    cross_validate(cfg, tmp_path, seeds=1)
    assert (run0 / "results.json").stat().st_mtime_ns == stamp
    # vocal-tract warps asked for as well: the test-time augmentation is scored again, every
    # shifted window also warped, and committees average it (ser-jax ensemble)
    shifted = (run0 / "test_tta_predictions.jsonl").read_text()
    cfg.eval.tta_semitones = (-2.0, 2.0)
    warped = cross_validate(cfg, tmp_path, seeds=1)
    results = json.loads((run0 / "results.json").read_text())
    assert results["tta"]["semitones"] == [-2.0, 2.0]
    assert results["tta"]["shifts_seconds"] == pytest.approx([-0.05, 0.05], abs=1e-4)
    assert (run0 / "test_tta_predictions.jsonl").read_text() != shifted
    assert warped["pooled"] == summary["pooled"]
    from ser_jax.research.committees import ensemble_runs

    ens = ensemble_runs([tmp_path], tmp_path / "ens")
    assert ens["pooled_tta"]["uar"] == pytest.approx(warped["pooled_tta"]["test_uar"]["mean"])
    assert (tmp_path / "ens" / "ensemble_tta_confusion.png").exists()
    with pytest.raises(ConfigError, match=r"eval.tta_semitones=\(0.0, 13.0\)"):
        cfg.eval.tta_semitones = (0.0, 13.0)
        cross_validate(cfg, tmp_path, seeds=1)
    cfg.eval.tta_semitones = ()
    cfg.eval.tta_shifts = (0.1,)
    rows = [json.loads(x) for x in (run0 / "test_predictions.jsonl").open()]
    first = rows[0]["probs"]
    top = max(first, key=first.get)
    first[top] = round(first[top] - 0.3, 5)
    (run0 / "test_predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ConfigError, match=f"{run0}.*no longer reproduces"):
        cross_validate(cfg, tmp_path, seeds=1)


def test_seeds_report_mean_and_std(tmp_path):
    cfg = tiny_config(epochs=1)
    cfg.eval.speaker_bn, cfg.eval.speaker_bn_source = True, "all"
    summary = run_seeds(cfg, tmp_path, seeds=2)
    accs = [r["test_accuracy"] for r in summary["per_seed"]]
    assert [r["seed"] for r in summary["per_seed"]] == [0, 1]
    assert summary["test_accuracy"]["mean"] == pytest.approx(np.mean(accs))
    assert summary["test_accuracy"]["std"] == pytest.approx(np.std(accs, ddof=1))
    assert (tmp_path / "seed0" / "results.json").exists()
    assert (tmp_path / "seed1" / "results.json").exists()
    assert "±" in (tmp_path / "summary.md").read_text()
    assert "ensemble" not in summary  # each seed drew its own split: nothing to ensemble
    vals = [
        json.loads((tmp_path / f"seed{s}" / "results.json").read_text())["val_at_selected"]
        for s in (0, 1)
    ]
    for key in ("val_accuracy", "val_uar"):
        assert summary[key]["mean"] == pytest.approx(np.mean([v[key] for v in vals]))
        assert summary[key]["std"] == pytest.approx(np.std([v[key] for v in vals], ddof=1))
    assert "val_accuracy" in (tmp_path / "summary.md").read_text()
    # speaker-adaptive BatchNorm beside, with the clips its statistics came from
    adapted = [
        json.loads((tmp_path / f"seed{s}" / "results.json").read_text())["speaker_bn"]
        for s in (0, 1)
    ]
    assert [a["source"] for a in adapted] == ["all", "all"]
    assert summary["speaker_bn"]["source"] == "all"
    assert summary["speaker_bn"]["test_uar"]["mean"] == pytest.approx(
        np.mean([a["test_uar"] for a in adapted])
    )
    assert "speaker-adaptive BatchNorm (all clips)" in (tmp_path / "summary.md").read_text()
    # test-time warps asked for later: scored from the saved models, summarised beside
    assert "tta" not in summary
    cfg.eval.tta_semitones = (2.0,)
    again = run_seeds(cfg, tmp_path, seeds=2)
    tta = [json.loads((tmp_path / f"seed{s}" / "results.json").read_text())["tta"] for s in (0, 1)]
    assert again["tta"]["semitones"] == [2.0] and again["tta"]["shifts_seconds"] == []
    assert again["tta"]["test_accuracy"]["mean"] == pytest.approx(
        np.mean([t["test_accuracy"] for t in tta])
    )
    assert again["test_accuracy"] == summary["test_accuracy"]
    assert "test_uar, test-time augmentation" in (tmp_path / "summary.md").read_text()
    # ser-jax evaluate --tta_semitones=2 scores the saved model as training's rescoring did
    from ser_jax.serving.predict import evaluate_run

    evaluate_run(
        str(tmp_path / "seed0"),
        data=None,
        corpus="demo",
        out=str(tmp_path / "ev_tta"),
        semitones=(2.0,),
    )
    for name in ("test_tta_predictions.jsonl",):
        want = [json.loads(x) for x in (tmp_path / "seed0" / name).open()]
        got = [json.loads(x) for x in (tmp_path / "ev_tta" / name).open()]
        assert [r["utt_id"] for r in got] == [r["utt_id"] for r in want]
        for g, w in zip(got, want, strict=True):
            assert g["probs"] == pytest.approx(w["probs"], abs=2e-3)
    # ser-jax evaluate --speaker_bn takes the statistics from the clips training took them
    # from (every split here), so it gives what training recorded
    from ser_jax.serving.predict import evaluate_run

    run0 = tmp_path / "seed0"
    recorded = [json.loads(x) for x in (run0 / "test_speaker_bn_predictions.jsonl").open()]
    evaluate_run(str(run0), data=None, corpus="demo", out=str(tmp_path / "ev"), speaker_bn=True)
    got = [json.loads(x) for x in (tmp_path / "ev" / "test_speaker_bn_predictions.jsonl").open()]
    assert [r["utt_id"] for r in got] == [r["utt_id"] for r in recorded]
    for g, r in zip(got, recorded, strict=True):
        assert g["probs"] == pytest.approx(r["probs"], abs=2e-3)


def test_seed_offset_draws_other_models_on_the_same_splits(tmp_path):
    """train.seed_offset: the same seeds' splits and names, other initial weights and batch
    order; so directories with offsets 0 and 1 form a seed ensemble on each seed's split."""
    from ser_jax.research.committees import ensemble_runs

    cfg = tiny_config(epochs=1)
    run_seeds(cfg, tmp_path / "o0", seeds=2)
    cfg.train.seed_offset = 1
    second = run_seeds(cfg, tmp_path / "o1", seeds=2)
    assert [r["seed"] for r in second["per_seed"]] == [0, 1]  # the run's seed, not 1000
    assert "seed_offset" not in json.loads((tmp_path / "o0/seed0/results.json").read_text())
    assert json.loads((tmp_path / "o1/seed0/results.json").read_text())["seed_offset"] == 1

    def preds(d):
        return {r["utt_id"]: r["probs"] for r in map(json.loads, d.open())}

    for s in (0, 1):
        a = preds(tmp_path / f"o0/seed{s}/test_predictions.jsonl")
        b = preds(tmp_path / f"o1/seed{s}/test_predictions.jsonl")
        assert set(a) == set(b)  # the seed's split
        assert any(a[u] != b[u] for u in a)  # another model
    # seeds 0 and 1 drew different splits, with or without the offset
    assert set(preds(tmp_path / "o0/seed0/test_predictions.jsonl")) != set(
        preds(tmp_path / "o0/seed1/test_predictions.jsonl")
    )
    ens = ensemble_runs([tmp_path / "o0", tmp_path / "o1"], tmp_path / "ens")
    assert ens["seeds"] == [0, 1] and ens["committees"]["count"] == 2
    from ser_jax.spec import resolve

    cfg.train.seed_offset = -1
    with pytest.raises(ConfigError, match="train.seed_offset=-1"):
        resolve(cfg)


def test_seed_ensemble_averages_probabilities_over_a_shared_split(tmp_path):
    from ser_jax.protocols import seed_ensemble

    rows = [  # two runs, same 3 test files; averaging fixes the second run's mistake on "b"
        [("a", "anger", [0.9, 0.1]), ("b", "boredom", [0.6, 0.4]), ("c", "boredom", [0.2, 0.8])],
        [("a", "anger", [0.6, 0.4]), ("b", "boredom", [0.1, 0.9]), ("c", "boredom", [0.7, 0.3])],
    ]
    dirs = []
    for k, run in enumerate(rows):
        d = tmp_path / f"seed{k}"
        d.mkdir()
        with open(d / "test_predictions.jsonl", "w") as f:
            for utt, label, p in run:
                f.write(
                    json.dumps(
                        {"utt_id": utt, "label": label, "probs": {"anger": p[0], "boredom": p[1]}}
                    )
                    + "\n"
                )
        dirs.append(d)
    ens = seed_ensemble(dirs)
    # means: a (0.75, 0.25) -> anger ok; b (0.35, 0.65) -> boredom ok; c (0.45, 0.55) -> boredom ok
    assert ens["accuracy"] == 1.0 and ens["count"] == 3 and ens["runs"] == 2
    (dirs[1] / "test_predictions.jsonl").write_text("")
    assert seed_ensemble(dirs) is None


def _fake_cv(
    root: Path,
    folds: dict[str, list[tuple[str, str, float]]],
    seeds=(0,),
    bn=True,
    trained_on: dict[str, int] | None = None,
):
    """A cv directory as `ser-jax cv` writes it (summary + each fold run's predictions) with
    the given P(anger) per file (fold speaker -> [(utt, label, p)]); P(boredom) = 1 - p.
    ``trained_on``: each run's training class counts (its run_info.json), else none."""
    per_fold = []
    for k, (speaker, rows) in enumerate(folds.items()):
        for seed in seeds:
            run = root / f"fold{k}-{speaker}" / f"seed{seed}"
            run.mkdir(parents=True)
            if trained_on is not None:
                info = {"data": {"train": {"per_label": trained_on}}}
                (run / "run_info.json").write_text(json.dumps(info))
            kinds = ("test", "test_speaker_bn") if bn else ("test",)
            for kind in kinds:
                with open(run / f"{kind}_predictions.jsonl", "w") as f:
                    for utt, label, p in rows:
                        p = p if kind == "test" else 1 - p  # BN probabilities: the other way
                        row = {"utt_id": utt, "label": label}
                        f.write(json.dumps(row | {"probs": {"anger": p, "boredom": 1 - p}}) + "\n")
            per_fold.append({"fold": k, "speaker": speaker, "seed": seed})
    summary = {
        "command": f"ser-jax cv --workdir {root}",
        "per_fold": per_fold,
        "labels": ["anger", "boredom"],
        "pooled": {"test_uar": {"mean": 0.5}},
    }
    if bn:
        summary["pooled_speaker_bn"] = {"test_uar": {"mean": 0.25}}
    (root / "cv_summary.json").write_text(json.dumps(summary))


def test_ensemble_committees_pair_the_runs_kth_seeds(tmp_path):
    """Committee k averages the k-th seed of every run (seeds 0, 1 of run a with seeds 3, 7
    of run b); its pooled metrics give a mean ± std over the committees."""
    from ser_jax.research.committees import ensemble_runs

    def set_p(root: Path, seed: int, ps: dict[str, float]) -> None:
        path = root / "fold0-01" / f"seed{seed}" / "test_predictions.jsonl"
        rows = [json.loads(line) for line in path.open()]
        for row in rows:
            p = ps[row["utt_id"]]
            row["probs"] = {"anger": p, "boredom": 1 - p}
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    files = [("x", "anger", 0.5), ("y", "boredom", 0.5)]
    _fake_cv(tmp_path / "a", {"01": files}, seeds=(0, 1), bn=False)
    _fake_cv(tmp_path / "b", {"01": files}, seeds=(3, 7), bn=False)
    set_p(tmp_path / "a", 0, {"x": 0.9, "y": 0.6})
    set_p(tmp_path / "a", 1, {"x": 0.3, "y": 0.2})
    set_p(tmp_path / "b", 3, {"x": 0.2, "y": 0.1})
    set_p(tmp_path / "b", 7, {"x": 0.65, "y": 0.45})
    ens = ensemble_runs([tmp_path / "a", tmp_path / "b"], tmp_path / "ens")
    # committee 1 (a0, b3): x 0.55 -> anger, y 0.35 -> boredom: UAR 1
    # committee 2 (a1, b7): x 0.475 -> boredom (wrong), y 0.325 -> boredom: UAR 0.5
    c = ens["committees"]
    assert c["count"] == 2 and "pooled_speaker_bn" not in c
    assert c["pooled"]["uar"]["each"] == [1.0, 0.5]
    assert c["pooled"]["uar"]["mean"] == pytest.approx(0.75)
    assert c["pooled"]["uar"]["std"] == pytest.approx(0.5**0.5 / 2)  # sample std, ddof=1
    assert c["pooled"]["accuracy"]["each"] == [1.0, 0.5]
    # all four models at once: x 0.5125 -> anger, y 0.3375 -> boredom
    assert ens["pooled"]["uar"] == 1.0
    md = (tmp_path / "ens" / "ensemble_summary.md").read_text()
    assert "| pooled | 0.7500 ± 0.3536 | 0.7500 ± 0.3536 |" in md and "1.0000, 0.5000" in md


def test_balanced_decision_divides_by_each_models_training_prior(tmp_path):
    """The balanced decision: each model's probabilities over its training class frequencies,
    renormalised, in the cv summary's beside rows and in ensembles and committees."""
    from ser_jax.evaluation.metrics import balanced_probabilities, training_prior
    from ser_jax.protocols import pool_by_seed
    from ser_jax.research.committees import ensemble_runs

    # p = (0.6, 0.4) trained on 3:1 -> (0.8, 1.6) / 2.4 = (1/3, 2/3): the decision flips
    q = balanced_probabilities(np.array([[0.6, 0.4], [0.9, 0.1]]), np.array([0.75, 0.25]))
    np.testing.assert_allclose(q, [[1 / 3, 2 / 3], [0.9 / 0.75 / 1.6, 0.1 / 0.25 / 1.6]])
    # run a trained on anger 3 : boredom 1; x (anger) P(anger) 0.8 -> 1.067 vs 0.8: anger;
    # y (boredom) 0.6 -> 0.8 vs 1.6: boredom. Plain argmax reads both as anger.
    files = [("x", "anger", 0.8), ("y", "boredom", 0.6)]
    _fake_cv(
        tmp_path / "a",
        {"01": files},
        seeds=(0, 1),
        bn=False,
        trained_on={"anger": 30, "boredom": 10},
    )
    run = tmp_path / "a" / "fold0-01" / "seed0"
    np.testing.assert_allclose(training_prior(run, ["anger", "boredom"]), [0.75, 0.25])
    keys, dirs = [(0, "01", 0)], [run]
    got = pool_by_seed(keys, dirs, ["anger", "boredom"], "test_balanced")[0]
    assert got["confusion"] == [[1, 0], [0, 1]] and got["uar"] == 1.0
    ens = ensemble_runs([tmp_path / "a"], tmp_path / "ens")
    assert ens["pooled"]["uar"] == 0.5 and ens["pooled_balanced"]["uar"] == 1.0
    assert ens["committees"]["pooled_balanced"]["uar"]["each"] == [1.0, 1.0]
    assert "pooled_speaker_bn_balanced" not in ens  # no speaker-BN predictions to divide
    md = (tmp_path / "ens" / "ensemble_summary.md").read_text()
    assert "| pooled, balanced decision (÷ training prior) | 1.0000 | 1.0000 |" in md
    # with a run that did not record its training counts: plain ensemble only, not a mix
    _fake_cv(tmp_path / "b", {"01": files}, seeds=(0, 1), bn=False)
    mixed = ensemble_runs([tmp_path / "a", tmp_path / "b"], tmp_path / "ens2")
    assert "pooled" in mixed and "pooled_balanced" not in mixed
    # a prior that cannot be divided by: refused, naming the file and the class
    with pytest.raises(ConfigError, match=r"b/fold0-01/seed0/run_info.json: no training class"):
        training_prior(tmp_path / "b" / "fold0-01" / "seed0", ["anger", "boredom"])
    (run / "run_info.json").write_text(json.dumps({"data": {"train": {"per_label": {"anger": 4}}}}))
    with pytest.raises(ConfigError, match="seed0/run_info.json: no training files of boredom"):
        training_prior(run, ["anger", "boredom"])


def _fake_seed_runs(
    root: Path,
    per_seed: dict[int, dict[str, tuple[str, float]]],
    val: dict[int, dict[str, tuple[str, float]]] | None = None,
) -> None:
    """A finished ``ser-jax train --seeds N`` directory: per seed, its test files ``{utt:
    (label, p(anger))}`` with two classes (and its validation files, as ``val``)."""
    rows = []
    for seed, files in per_seed.items():
        d = root / f"seed{seed}"
        d.mkdir(parents=True)
        (d / "test_metrics.json").write_text(json.dumps({"labels": ["anger", "boredom"]}))
        for split, found in (("test", files), ("val", (val or {}).get(seed))):
            if found is None:
                continue
            with open(d / f"{split}_predictions.jsonl", "w") as f:
                for utt, (label, p) in found.items():
                    pred = "anger" if p >= 0.5 else "boredom"
                    f.write(
                        json.dumps(
                            {
                                "utt_id": utt,
                                "label": label,
                                "predicted": pred,
                                "probs": {"anger": p, "boredom": 1 - p},
                            }
                        )
                        + "\n"
                    )
        rows.append({"seed": seed, "test_uar": 0.5})
    (root / "summary.json").write_text(
        json.dumps({"seeds": list(per_seed), "per_seed": rows, "test_uar": {"mean": 0.5}})
    )


def test_seed_protocol_committees_score_each_seeds_split(tmp_path):
    """On the seed protocol each seed is its own split: committee k averages the runs' models
    of seed k on that split's files; a seed one run lacks forms no committee, and runs whose
    seed drew other test files, or a mix with a cv directory, are refused."""
    from ser_jax.errors import ConfigError
    from ser_jax.research.committees import ensemble_runs

    _fake_seed_runs(
        tmp_path / "a",
        {
            10: {"x": ("anger", 0.9), "y": ("boredom", 0.6)},
            11: {"u": ("anger", 0.3), "v": ("boredom", 0.2)},
            12: {"w": ("anger", 0.9)},
        },
    )
    _fake_seed_runs(
        tmp_path / "b",
        {
            10: {"x": ("anger", 0.2), "y": ("boredom", 0.2)},
            11: {"u": ("anger", 0.8), "v": ("boredom", 0.6)},
        },
    )
    ens = ensemble_runs([tmp_path / "a", tmp_path / "b"], tmp_path / "ens")
    # seed 10: x 0.55 -> anger, y 0.4 -> boredom: UAR 1; seed 11: u 0.55 -> anger, v 0.4 ->
    # boredom: UAR 1, though run a alone gets u wrong and run b alone v
    c = ens["committees"]
    assert ens["seeds"] == [10, 11] and c["count"] == 2
    assert c["pooled"]["uar"]["each"] == [1.0, 1.0]
    assert c["pooled"]["confusion"] == [[2, 0], [0, 2]]
    assert "pooled_speaker_bn" not in c and "pooled" not in ens  # no ensemble across splits
    md = (tmp_path / "ens" / "ensemble_summary.md").read_text()
    assert "| each seed's test split | 1.0000 ± 0.0000 |" in md
    assert (tmp_path / "ens" / "ensemble_confusion.png").stat().st_size > 0
    # run c's seed 11 reads u as boredom too: the committee's u 0.2 -> boredom (wrong), v 0.25
    # -> boredom: UAR 0.5 on that seed's split
    _fake_seed_runs(
        tmp_path / "c",
        {
            10: {"x": ("anger", 0.2), "y": ("boredom", 0.2)},
            11: {"u": ("anger", 0.1), "v": ("boredom", 0.3)},
        },
    )
    c2 = ensemble_runs([tmp_path / "a", tmp_path / "c"], tmp_path / "ens2")["committees"]
    assert c2["pooled"]["uar"]["each"] == [1.0, 0.5]
    assert c2["pooled"]["uar"]["std"] == pytest.approx(0.5**0.5 / 2)  # ddof=1
    # fixed weights (chosen elsewhere, e.g. on LOSO): b counts twice. Seed 10: x (0.9 + 2 x
    # 0.2) / 3 = 0.43 -> boredom (wrong), y 0.33 -> boredom: UAR 0.5; seed 11: u 0.63 ->
    # anger, v 0.47 -> boredom: UAR 1
    w = ensemble_runs([tmp_path / "a", tmp_path / "b"], tmp_path / "ens_w", weights=[1, 2])
    assert w["committees"]["pooled"]["uar"]["each"] == [0.5, 1.0]
    assert w["weights"] == [1.0, 2.0] and [m["weight"] for m in w["members"]] == [1.0, 2.0]
    # weight 0 leaves a run out: run a alone (x right, y wrong; u wrong, v right)
    a_only = ensemble_runs([tmp_path / "a", tmp_path / "b"], tmp_path / "ens_a", weights=[1, 0])
    assert a_only["committees"]["pooled"]["uar"]["each"] == [0.5, 0.5]
    assert "| weight |" in (tmp_path / "ens_w" / "ensemble_summary.md").read_text()
    with pytest.raises(ConfigError, match="1 weights for 2 run directories"):
        ensemble_runs([tmp_path / "a", tmp_path / "b"], tmp_path / "bad_w", weights=[1])
    with pytest.raises(ConfigError, match="--weight_grid chooses the run weights across"):
        ensemble_runs([tmp_path / "a", tmp_path / "b"], tmp_path / "bad_g", weight_grid=[0, 1])
    _fake_seed_runs(tmp_path / "d", {10: {"x": ("anger", 0.9), "z": ("boredom", 0.1)}})
    with pytest.raises(ConfigError, match="d: seed 10's test files differ"):
        ensemble_runs([tmp_path / "a", tmp_path / "d"], tmp_path / "out_d")
    _fake_seed_runs(tmp_path / "e", {13: {"x": ("anger", 0.9)}})
    with pytest.raises(ConfigError, match="the runs share no seed"):
        ensemble_runs([tmp_path / "a", tmp_path / "e"], tmp_path / "out_e")
    _fake_cv(tmp_path / "f", {"01": [("x", "anger", 0.9)]})
    with pytest.raises(ConfigError, match="f: not a `ser-jax train --seeds N` directory"):
        ensemble_runs([tmp_path / "a", tmp_path / "f"], tmp_path / "out_f")


def test_seed_protocol_committees_are_scored_on_validation_files_too(tmp_path):
    """Runs that saved their validation predictions give committees a validation figure (to
    choose a committee by); a run without them drops it rather than mixing."""
    from ser_jax.research.committees import ensemble_runs

    test = {10: {"x": ("anger", 0.9), "y": ("boredom", 0.4)}}
    # validation: run g reads q as anger (0.7), run h as boredom (0.1): mean 0.4 -> boredom,
    # wrong; p right by both -> committee UAR 0.5, accuracy 0.5
    _fake_seed_runs(tmp_path / "g", test, val={10: {"p": ("anger", 0.8), "q": ("anger", 0.7)}})
    _fake_seed_runs(tmp_path / "h", test, val={10: {"p": ("anger", 0.6), "q": ("anger", 0.1)}})
    c = ensemble_runs([tmp_path / "g", tmp_path / "h"], tmp_path / "ens")["committees"]
    assert c["pooled"]["accuracy"]["each"] == [1.0]
    assert c["val"]["accuracy"]["each"] == [0.5]
    assert c["val"]["confusion"] == [[1, 1], [0, 0]]
    md = (tmp_path / "ens" / "ensemble_summary.md").read_text()
    assert "| each seed's validation split | 0.5000 ± 0.0000 |" in md
    _fake_seed_runs(tmp_path / "k", test)
    mixed = ensemble_runs([tmp_path / "g", tmp_path / "k"], tmp_path / "ens2")["committees"]
    assert "val" not in mixed and "pooled" in mixed


def test_ensemble_of_cv_runs_averages_every_models_probabilities_per_file(tmp_path):
    from ser_jax.errors import ConfigError
    from ser_jax.research.committees import ensemble_runs

    # run a: 2 seeds of one fold (speaker 01); run b: 1 seed, no speaker-BN predictions
    _fake_cv(tmp_path / "a", {"01": [("x", "anger", 0.9), ("y", "boredom", 0.6)]}, seeds=(0, 1))
    _fake_cv(tmp_path / "b", {"01": [("x", "anger", 0.2), ("y", "boredom", 0.1)]}, bn=False)
    ens = ensemble_runs([tmp_path / "a", tmp_path / "b"], tmp_path / "ens_levers")
    # x: (0.9 + 0.9 + 0.2) / 3 = 0.67 -> anger (right); y: (0.6 + 0.6 + 0.1) / 3 = 0.43 ->
    # boredom (right), though run a alone reads y as anger
    assert ens["models_per_file"] == 3 and ens["models"] == 3 and ens["files"] == 2
    assert ens["pooled"]["confusion"] == [[1, 0], [0, 1]]
    assert "pooled_speaker_bn" not in ens  # run b has none: not mixed from run a's alone
    assert "committees" not in ens  # run b has one seed: the only committee is the ensemble
    assert ens["member_mean_uar"] == pytest.approx(0.5)
    assert [m["models"] for m in ens["members"]] == [2, 1]
    # each run's own decisions: a misses y, b misses x; never both on one file
    overlap = ens["error_overlap"]
    assert overlap["error"] == [0.5, 0.5]
    assert overlap["double_fault"] == [[0.5, 0.0], [0.0, 0.5]]
    assert overlap["disagreement"] == [[0.0, 1.0], [1.0, 0.0]]
    md = (tmp_path / "ens_levers" / "ensemble_summary.md").read_text()
    assert "both wrong with 2" in md and f"1: {tmp_path / 'a'} | 0.500 |  | 0.000 |" in md
    twice = ensemble_runs([tmp_path / "a", tmp_path / "a"], tmp_path / "twice")["error_overlap"]
    assert twice["double_fault"] == [[0.5, 0.5], [0.5, 0.5]]
    assert twice["disagreement"] == [[0.0, 0.0], [0.0, 0.0]]
    written = json.loads((tmp_path / "ens_levers" / "ensemble_summary.json").read_text())
    assert written["pooled"]["uar"] == 1.0
    assert (tmp_path / "ens_levers" / "ensemble_confusion.png").stat().st_size > 0
    info = json.loads((tmp_path / "ens_levers" / "run_info.json").read_text())
    assert {"git_commit", "processor", "command"} <= set(info)
    # run a alone: its speaker-BN probabilities (flipped) are scored too
    alone = ensemble_runs([tmp_path / "a"], tmp_path / "out_a")
    assert alone["pooled"]["confusion"] == [[1, 0], [1, 0]]
    assert alone["pooled_speaker_bn"]["confusion"] == [[0, 1], [0, 1]]
    assert (tmp_path / "out_a" / "ensemble_speaker_bn_confusion.png").stat().st_size > 0
    assert not (tmp_path / "ens_levers" / "ensemble_speaker_bn_confusion.png").exists()
    # other test files, an unfinished cv directory: refused, naming the directory
    _fake_cv(tmp_path / "c", {"02": [("z", "anger", 0.9)]})
    with pytest.raises(ConfigError, match="c: its test files differ"):
        ensemble_runs([tmp_path / "a", tmp_path / "c"], tmp_path / "out_c")
    (tmp_path / "d").mkdir()
    with pytest.raises(ConfigError, match="d: not a finished cv run directory"):
        ensemble_runs([tmp_path / "a", tmp_path / "d"], tmp_path / "out_d")
    (tmp_path / "a" / "fold0-01" / "seed1" / "test_predictions.jsonl").unlink()
    with pytest.raises(ConfigError, match="seed1: listed in .* test_predictions.jsonl is missing"):
        ensemble_runs([tmp_path / "a"], tmp_path / "out_e")


def _sweep_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "sweep.py"
    path.write_text(body)
    return path


def test_sweep_grid_points_commands_and_aggregation(tmp_path):
    path = _sweep_file(
        tmp_path,
        "def get_sweep():\n"
        "    return {'name': 's', 'config': 'ser_jax/config.py',\n"
        "            'grid': {'train.learning_rate': [0.001, 0.01], 'model.pools': [((2, 2),)]},\n"
        "            'seeds': 2, 'fixed': {'train.epochs': 3, 'data.root': '/a b'}}\n",
    )
    sweep = sweep_mod.load_sweep(path)
    points = sweep_mod.points(sweep)
    assert points == [
        {"train.learning_rate": 0.001, "model.pools": ((2, 2),)},
        {"train.learning_rate": 0.01, "model.pools": ((2, 2),)},
    ]
    cmd = sweep_mod.command(sweep, points[1], tmp_path / "p")
    assert cmd[:4] == [sys.executable, "-m", "ser_jax", "train"]
    assert "--config.train.learning_rate=0.01" in cmd
    assert "--config.model.pools=((2,2),)" in cmd
    assert "--config.data.root=/a b" in cmd and "--seeds=2" in cmd
    # aggregation: finished points only, mean ± std over their seeds
    root = tmp_path / "runs"
    for seed, acc in ((0, 0.5), (1, 0.7)):
        d = root / sweep_mod.point_name(points[0]) / f"seed{seed}"
        d.mkdir(parents=True)
        (d / "results.json").write_text(
            json.dumps({"test_accuracy": acc, "test_uar": acc, "test_macro_f1": acc})
        )
    rows = sweep_mod.collect(sweep, root)
    assert len(rows) == 1 and rows[0]["seeds"] == 2
    assert rows[0]["test_accuracy"] == "0.6000 ± 0.1414"
    sweep_mod.write_results(rows, root, sweep)
    assert "0.6000 ± 0.1414" in (root / "results.md").read_text()
    script = sweep_mod.emit_slurm(sweep, root)
    text = script.read_text()
    assert "#SBATCH --array=0-1" in text and text.count("./launch.sh train") == 2


def test_sweep_random_search_is_seeded_and_validated(tmp_path):
    path = _sweep_file(
        tmp_path,
        "def get_sweep():\n"
        "    return {'name': 'r', 'config': 'ser_jax/config.py', 'trials': 4,\n"
        "            'random': {'train.learning_rate': ('loguniform', 1e-4, 1e-2),\n"
        "                       'model.activation': ('choice', ['relu', 'elu'])}}\n",
    )
    sweep = sweep_mod.load_sweep(path)
    a, b = sweep_mod.points(sweep), sweep_mod.points(sweep)
    assert a == b and len(a) == 4
    assert all(1e-4 <= p["train.learning_rate"] <= 1e-2 for p in a)
    bad = _sweep_file(tmp_path, "def get_sweep():\n    return {'name': 'x', 'config': 'c.py'}\n")
    with pytest.raises(Exception, match="exactly one of 'grid', 'random' or 'points'"):
        sweep_mod.load_sweep(bad)


def test_emodb_protocols_on_real_data(emodb_dir):
    """The seed protocol's split sizes and a speaker-independent split on the real corpus."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "experiments" / "configs"))
    import matlab  # experiments/configs/matlab.py

    from ser_jax.data.prepare import load_all, prepare

    cfg = matlab.get_config()
    cfg.data.root = str(emodb_dir)
    cfg.train.progress = False
    loaded = load_all(cfg.data, progress=False)
    data = prepare(cfg, loaded=loaded)
    assert (len(data.train), len(data.val), len(data.test)) == (285, 62, 62)
    assert data.label_names == EMOTIONS
    cfg.data.split = "speakers"
    cfg.data.test_speakers = ("03", "08")
    cfg.data.val_speakers = ("09",)
    si = prepare(cfg, loaded=loaded)
    assert {u.speaker for u in si.test.utts} == {"03", "08"}
    assert {u.speaker for u in si.val.utts} == {"09"}
    assert not {u.speaker for u in si.train.utts} & {"03", "08", "09"}
    assert len(si.train) + len(si.val) + len(si.test) == 409


def test_results_table_collects_every_run(tmp_path):
    from ser_jax.evaluation.tables import write_tables
    from ser_jax.protocols import collect_runs

    for name, acc in (("a/seed0", 0.5), ("b/fold1-03/seed0", 0.75)):
        d = tmp_path / name
        d.mkdir(parents=True)
        (d / "results.json").write_text(
            json.dumps(
                {
                    "name": name[0],
                    "seed": 0,
                    "split": "s",
                    "test_accuracy": acc,
                    "test_uar": acc,
                    "test_macro_f1": acc,
                }
            )
        )
    rows = collect_runs(tmp_path)
    assert [r["test_accuracy"] for r in rows] == [0.5, 0.75]
    write_tables(rows, tmp_path / "r.csv", tmp_path / "r.md")
    assert "0.7500" in (tmp_path / "r.md").read_text()
    assert (tmp_path / "r.csv").read_text().count("\n") == 3


def test_cv_ensemble_averages_each_files_probabilities_over_seeds(tmp_path):
    from ser_jax.protocols import ensemble_over_seeds

    def write(d, rows):
        d.mkdir(parents=True)
        with open(d / "test_predictions.jsonl", "w") as f:
            for utt, label, p in rows:
                f.write(
                    json.dumps(
                        {"utt_id": utt, "label": label, "probs": {"anger": p, "boredom": 1 - p}}
                    )
                    + "\n"
                )

    # fold 0 (a, b) and fold 1 (c), two seeds each; the means decide: a 0.55 -> anger,
    # b 0.45 -> boredom, c 0.6 -> anger
    write(tmp_path / "f0s0", [("a", "anger", 0.9), ("b", "boredom", 0.8)])
    write(tmp_path / "f0s1", [("a", "anger", 0.2), ("b", "boredom", 0.1)])
    write(tmp_path / "f1s0", [("c", "boredom", 0.3)])
    write(tmp_path / "f1s1", [("c", "boredom", 0.9)])
    keys = [(0, "x", 0), (0, "x", 1), (1, "y", 0), (1, "y", 1)]
    dirs = [tmp_path / n for n in ("f0s0", "f0s1", "f1s0", "f1s1")]
    m = ensemble_over_seeds(keys, dirs, ("anger", "boredom"))
    assert m["count"] == 3
    assert m["confusion"] == [[1, 0], [1, 1]]


def test_geometric_rule_lets_one_confident_model_veto_a_class(tmp_path):
    """--rule geometric: the models' probabilities combine by their geometric mean,
    renormalised (a product of experts), in ensembles and their committees."""
    from ser_jax.evaluation.metrics import combine_probabilities
    from ser_jax.research.committees import ensemble_runs

    ps = [np.array([0.9, 0.1]), np.array([0.9, 0.1]), np.array([0.01, 0.99])]
    np.testing.assert_allclose(combine_probabilities(ps), [0.6033, 0.3967], atol=1e-4)
    a, b = (0.9 * 0.9 * 0.01) ** (1 / 3), (0.1 * 0.1 * 0.99) ** (1 / 3)
    np.testing.assert_allclose(combine_probabilities(ps, "geometric"), [a / (a + b), b / (a + b)])
    # a zero (a rounded saved probability) is floored at 1e-5, not a log of 0
    veto = combine_probabilities([np.array([0.0, 1.0]), np.array([1.0, 0.0])], "geometric")
    np.testing.assert_allclose(veto, [0.5, 0.5])
    with pytest.raises(ConfigError, match="rule='median'"):
        combine_probabilities(ps, "median")
    # x (boredom): P(anger) 0.9, 0.9, 0.01 -> mean anger (wrong), geometric boredom (right)
    for run, p in zip("abc", (0.9, 0.9, 0.01), strict=True):
        _fake_cv(tmp_path / run, {"01": [("x", "boredom", p), ("y", "anger", 0.6)]}, (0, 1), False)
    runs = [tmp_path / r for r in "abc"]
    mean = ensemble_runs(runs, tmp_path / "mean")
    geo = ensemble_runs(runs, tmp_path / "geo", rule="geometric")
    assert mean["pooled"]["uar"] == 0.5 and mean["rule"] == "mean"
    assert geo["pooled"]["uar"] == 1.0 and geo["rule"] == "geometric"
    assert geo["committees"]["pooled"]["uar"]["each"] == [1.0, 1.0]
    md = (tmp_path / "geo" / "ensemble_summary.md").read_text()
    assert "| geometric mean of probabilities | accuracy |" in md
    with pytest.raises(ConfigError, match="--rule='vote'"):
        ensemble_runs(runs, tmp_path / "vote", rule="vote")
