"""Using a trained run: restore from disk, re-evaluate, predict new files (any length/rate)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from ser_jax.data.audio import load_audio
from ser_jax.serving.predict import evaluate_run, predict_command, predict_files
from ser_jax.serving.restore import load_model


@pytest.fixture(scope="module")
def run(trained):
    workdir, _ = trained
    return load_model(workdir)


def test_restored_model_reproduces_the_test_numbers(trained, run, tmp_path):
    workdir, results = trained
    assert run.step == results["selected_step"]
    metrics = evaluate_run(str(workdir), data=None, corpus="emodb", out=str(tmp_path))
    assert metrics["accuracy"] == pytest.approx(results["test_accuracy"])
    assert metrics["uar"] == pytest.approx(results["test_uar"])
    assert (tmp_path / "test_confusion.png").exists()


def test_predict_scores_good_files_and_reports_bad_ones(run, demo_corpus_dir, tmp_path):
    good = sorted(demo_corpus_dir.glob("*.wav"))[:2]
    wave = load_audio(good[0], 16000)
    # the same clip at 44.1 kHz, stereo: same decision after resampling
    stereo = tmp_path / "stereo44k.wav"
    import soxr

    up = soxr.resample(wave, 16000, 44100)
    sf.write(stereo, np.stack([up, up], axis=1), 44100)
    bad = tmp_path / "notes.wav"
    bad.write_text("this is not audio\n")
    rows = predict_files(run, [str(good[0]), str(bad), str(good[1]), str(stereo)])
    assert [("error" in r) for r in rows] == [False, True, False, False]
    assert "notes.wav" in rows[1]["error"]
    for r in (rows[0], rows[2], rows[3]):
        assert sum(r["probs"].values()) == pytest.approx(1.0, abs=1e-3)
        assert r["label"] == max(r["probs"], key=r["probs"].get)
    assert rows[3]["label"] == rows[0]["label"]


def test_predict_trims_digital_silence_when_the_model_trained_so(run, demo_corpus_dir, tmp_path):
    import dataclasses

    clip = sorted(demo_corpus_dir.glob("*.wav"))[0]
    wave = load_audio(clip, 16000)
    padded = tmp_path / "padded.wav"
    sf.write(padded, np.concatenate([np.zeros(800), wave, np.zeros(8000)]), 16000, subtype="FLOAT")
    config = run.config.copy_and_resolve_references()
    config.data.trim_silence = True
    trimming = dataclasses.replace(run, config=config)
    plain, trimmed = predict_files(run, [str(padded)])[0], predict_files(trimming, [str(padded)])[0]
    assert plain["seconds"] == pytest.approx((len(wave) + 8800) / 16000, abs=1e-3)
    assert trimmed["seconds"] == pytest.approx(len(wave) / 16000, abs=1e-3)
    # the trimmed file is scored as the clip itself
    own = run.probabilities([wave])[0]
    np.testing.assert_allclose(list(trimmed["probs"].values()), own, atol=1e-4)


def test_long_file_is_scored_in_windows_and_averaged(run, demo_corpus_dir):
    files = sorted(demo_corpus_dir.glob("*.wav"))[:3]
    long = np.concatenate([load_audio(f, 16000) for f in files])
    win = run.max_samples
    assert len(long) > 2 * win
    probs = run.probabilities([long])[0]
    hop = win // 2
    starts = list(range(0, len(long) - win + 1, hop))
    if starts[-1] + win < len(long):
        starts.append(len(long) - win)
    each = run.probabilities([long[s : s + win] for s in starts])
    np.testing.assert_allclose(probs, each.mean(axis=0), atol=1e-5)


def test_predict_command_json_and_exit_code(trained, demo_corpus_dir, tmp_path, capsys):
    workdir, _ = trained
    good = str(sorted(demo_corpus_dir.glob("*.wav"))[0])
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    code = predict_command(str(workdir), [good, str(empty)], as_json=True)
    out = json.loads(capsys.readouterr().out)
    assert code == 1
    assert out[0]["label"] in out[0]["probs"]
    assert "empty.wav" in out[1]["error"]


def test_predict_with_test_time_warps_averages_the_warped_views(
    trained, run, demo_corpus_dir, tmp_path
):
    """--tta_semitones: each file also scored warped by each number of semitones, averaged
    with the plain file: 3 P(s, -s) = 2 P(s) + 2 P(-s) - P() for the mean of the views."""
    from ser_jax.errors import ConfigError
    from ser_jax.serving.predict import committee_files

    files = [str(f) for f in sorted(demo_corpus_dir.glob("*.wav"))[:3]]

    def probs(**kw):
        rows = predict_files(run, files, **kw)
        return np.array([[r["probs"][n] for n in run.label_names] for r in rows])

    plain, up, down, both = (probs(semitones=s) for s in ((), (3.0,), (-3.0,), (3.0, -3.0)))
    assert np.abs(up - plain).max() > 1e-3  # a warp is another view
    np.testing.assert_allclose(3 * both, 2 * up + 2 * down - plain, atol=1e-4)
    # a committee averages each member's test-time-augmented probabilities
    rows = committee_files([run, run], files, semitones=(3.0, -3.0))
    got = np.array([[r["probs"][n] for n in run.label_names] for r in rows])
    np.testing.assert_allclose(got, both, atol=1e-4)
    workdir, _ = trained
    with pytest.raises(ConfigError, match="--tta_semitones=-6,6: the timeline"):
        predict_command(
            str(workdir),
            files[:1],
            as_json=True,
            timeline=str(tmp_path / "t.png"),
            semitones=(-6.0, 6.0),
        )
    with pytest.raises(ConfigError, match=r"tta_semitones=\(0.0,\): \[0.0\] not a warp"):
        predict_files(run, files[:1], semitones=(0.0,))
    # the command line: a bad value is named
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "ser_jax",
            "predict",
            "--tta_semitones=-6,x",
            "--run",
            str(workdir),
            files[0],
        ],
        capture_output=True,
        text=True,
    )
    assert cli.returncode != 0 and "--tta_semitones=['-6', 'x']" in cli.stderr


def test_predict_on_real_emodb_files(run, emodb_dir):
    files = sorted((emodb_dir / "wav").glob("*.wav"))[:3]
    rows = predict_files(run, [str(f) for f in files])
    assert all("label" in r and r["seconds"] == pytest.approx(2.0, abs=0.01) for r in rows)


def test_cli_without_a_verb_lists_the_verbs():
    proc = subprocess.run(
        [sys.executable, "-m", "ser_jax"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert "train" in proc.stdout and "predict" in proc.stdout


def test_evaluate_scores_long_test_clips_as_training_did(tmp_path):
    """One evaluation policy: with clips longer than data.max_seconds in the test split,
    `evaluate` reproduces training's test probabilities file by file."""
    from conftest import tiny_config

    from ser_jax.training.train import train_and_evaluate

    cfg = tiny_config(epochs=2)
    cfg.data.max_seconds = 1.2  # the demo clips are 1.0-1.6 s: many are windowed
    cfg.data.bucket_seconds = 0.4
    train_and_evaluate(cfg, tmp_path / "run")
    trained = {
        r["utt_id"]: r
        for r in map(json.loads, (tmp_path / "run" / "test_predictions.jsonl").open())
    }
    evaluate_run(str(tmp_path / "run"), data=None, corpus="emodb", out=str(tmp_path / "ev"))
    again = [json.loads(x) for x in (tmp_path / "ev" / "test_predictions.jsonl").open()]
    assert len(again) == len(trained)
    long = [r for r in again if r["path"] and sf.info(r["path"]).duration > 1.2]
    assert long, "the test split should hold clips longer than max_seconds"
    for r in again:
        for name, p in r["probs"].items():
            assert p == pytest.approx(trained[r["utt_id"]]["probs"][name], abs=2e-5), r["utt_id"]


def test_balanced_decision_divides_by_the_models_training_prior(trained, demo_corpus_dir, tmp_path):
    """predict/evaluate --balanced: each model's probabilities over the class frequencies of
    its own training files (its run_info.json), renormalised; a committee averages those."""
    import shutil

    from ser_jax.errors import ConfigError
    from ser_jax.serving.predict import committee_files

    workdir, _ = trained
    skewed = tmp_path / "skewed"
    shutil.copytree(workdir, skewed)
    info = json.loads((skewed / "run_info.json").read_text())
    names = info["data"]["labels"]
    counts = {n: 10 * (i + 1) for i, n in enumerate(names)}  # 10, 20, ..., 70
    info["data"]["train"]["per_label"] = counts
    (skewed / "run_info.json").write_text(json.dumps(info))
    model, plain_model = load_model(str(skewed)), load_model(str(workdir))
    files = [str(p) for p in sorted(demo_corpus_dir.glob("*.wav"))[:3]]
    plain = predict_files(model, files)
    balanced = predict_files(model, files, balanced=True)

    def divided(row, per_label):
        prior = np.array([per_label[n] for n in names], float)
        q = np.array([row["probs"][n] for n in names]) / (prior / prior.sum())
        return q / q.sum()

    for p, b in zip(plain, balanced, strict=True):
        want = divided(p, counts)
        np.testing.assert_allclose([b["probs"][n] for n in names], want, atol=1e-3)
        assert b["label"] == names[int(want.argmax())]
    assert any(
        not np.allclose([p["probs"][n] for n in names], [b["probs"][n] for n in names], atol=1e-3)
        for p, b in zip(plain, balanced, strict=True)
    )
    # a committee: each model divided by its own prior, then averaged
    own = json.loads((workdir / "run_info.json").read_text())["data"]["train"]["per_label"]
    other = predict_files(plain_model, files)
    both = committee_files([model, plain_model], files, balanced=True)
    for p, o, c in zip(plain, other, both, strict=True):
        want = (divided(p, counts) + divided(o, own)) / 2
        np.testing.assert_allclose([c["probs"][n] for n in names], want, atol=1e-3)
    # --rule geometric: the committee's probabilities are the models' geometric mean
    geometric = committee_files([model, plain_model], files, rule="geometric")
    for p, o, c in zip(plain, other, geometric, strict=True):
        g = np.sqrt([p["probs"][n] * o["probs"][n] for n in names])
        np.testing.assert_allclose([c["probs"][n] for n in names], g / g.sum(), atol=1e-3)
    # --weights: the committee's probabilities are the models' weighted mean
    weighted = committee_files([model, plain_model], files, weights=[3, 1])
    for p, o, c in zip(plain, other, weighted, strict=True):
        want = [(3 * p["probs"][n] + o["probs"][n]) / 4 for n in names]
        np.testing.assert_allclose([c["probs"][n] for n in names], want, atol=1e-3)
    with pytest.raises(ConfigError, match="--weights=.1,2,3.: 3 weights for 2 runs"):
        predict_command(f"{skewed},{workdir}", files, as_json=True, weights="1,2,3")
    with pytest.raises(ConfigError, match="weights are for a committee"):
        predict_command(str(workdir), files, as_json=True, weights="1")
    # evaluate --balanced writes its own files beside the plain ones
    metrics = evaluate_run(str(skewed), data=None, corpus="emodb", out=str(tmp_path), balanced=True)
    written = json.loads((tmp_path / "test_balanced_metrics.json").read_text())
    assert written["uar"] == pytest.approx(metrics["uar"])
    # a run whose training counts are not recorded: refused, naming its run_info.json
    del info["data"]["train"]["per_label"]
    (skewed / "run_info.json").write_text(json.dumps(info))
    with pytest.raises(ConfigError, match=r"skewed/run_info.json: no training class counts"):
        predict_files(load_model(str(skewed)), files, balanced=True)
