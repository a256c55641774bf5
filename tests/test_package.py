"""Shipping a model: packaging a run, loading it without the trainer, exporting it with
jax.export, timelines of long recordings, and the model shipped in the package itself."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ser_jax.data.audio import load_audio
from ser_jax.package import (
    PRETRAINED,
    card_summary,
    load_shipped,
    model_dir,
    package_run,
    reference_predictions,
    shipped_models,
)
from ser_jax.restore import load_model

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def packaged(trained, demo_corpus_dir, tmp_path_factory):
    workdir, _ = trained
    out = tmp_path_factory.mktemp("pkg") / "tiny"
    refs = sorted(demo_corpus_dir.glob("*.wav"))[:3]
    package_run(workdir, out, reference_files=refs, card="# tiny\n\nA tiny test model.\n")
    return workdir, out, refs


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_packaging_is_a_deterministic_copy_loaded_without_the_trainer(packaged, tmp_path):
    workdir, out, refs = packaged
    again = package_run(
        workdir, tmp_path / "again", reference_files=refs, card="# tiny\n\nA tiny test model.\n"
    )
    assert digest(again) == digest(out)
    assert card_summary(out) == "A tiny test model."
    # loading needs no trainer (nor orbax: a finished run reads model.msgpack)
    code = (
        "import sys; from ser_jax.restore import load_model; "
        f"m = load_model({str(out)!r}); "
        "assert 'ser_jax.train' not in sys.modules and 'orbax.checkpoint' not in sys.modules; "
        "print(m.label_names[0])"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    # the package's model is the run's selected model
    waves = [load_audio(f, 16000) for f in refs]
    np.testing.assert_array_equal(
        load_model(out).probabilities(waves), load_model(workdir).probabilities(waves)
    )
    for row, ref in zip(reference_predictions(out), refs, strict=True):
        assert row["file"] == ref.name


def test_exported_model_gives_the_probabilities_of_predict(packaged, demo_corpus_dir, tmp_path):
    from ser_jax.export import export_model, exported_probabilities, load_exported

    _, out, _ = packaged
    model = load_model(out)
    path = export_model(model, tmp_path / "m.jaxexport")
    fn, meta = load_exported(path)
    assert meta["labels"] == list(model.label_names) and meta["sample_rate"] == 16000
    files = sorted(demo_corpus_dir.glob("*.wav"))[:4]
    waves = [load_audio(f, 16000) for f in files]
    long = np.concatenate(waves)  # longer than the window: scored as windows by both
    got = exported_probabilities(fn, meta, [*waves, long])
    want = model.probabilities([*waves, long])
    np.testing.assert_allclose(got, want, atol=1e-5)
    # the batch size is symbolic: any batch works
    clip = waves[0][: meta["samples"]]
    one = np.zeros((1, meta["samples"]), np.float32)
    one[0, : len(clip)] = clip
    assert np.asarray(fn.call(one, np.array([len(clip)], np.int32))).shape == (1, 7)


def test_predict_timeline_and_csv_of_a_long_recording(packaged, demo_corpus_dir, tmp_path):
    import soundfile as sf

    from ser_jax.inference import predict_command

    _, out, _ = packaged
    files = sorted(demo_corpus_dir.glob("*.wav"))[:6]
    long = np.concatenate([load_audio(f, 16000) for f in files])
    sf.write(tmp_path / "long.wav", long, 16000)
    code = predict_command(
        str(out),
        [str(tmp_path / "long.wav"), str(files[0])],
        as_json=True,
        timeline=str(tmp_path / "t.png"),
        csv_path=str(tmp_path / "t.csv"),
    )
    assert code == 0 and (tmp_path / "t.png").stat().st_size > 1000
    rows = list(csv.DictReader((tmp_path / "t.csv").open()))
    model = load_model(out)
    starts, ends, probs = model.window_probabilities(long)
    mine = [r for r in rows if r["path"].endswith("long.wav")]
    assert len(mine) == len(starts) > 2
    assert float(mine[-1]["end_s"]) == pytest.approx(len(long) / 16000, abs=1e-3)
    # the windows' mean is the file's probability
    np.testing.assert_allclose(probs.mean(0), model.probabilities([long])[0], atol=1e-5)
    for row, p in zip(mine, probs, strict=True):
        assert float(row["anger"]) == pytest.approx(float(p[0]), abs=1e-5)


def test_shipped_model_reproduces_its_recorded_probabilities(emodb_dir):
    names = shipped_models()
    assert names, f"no model is shipped in {PRETRAINED}"
    for name in names:
        folder = model_dir(name)
        model = load_shipped(name)
        ref = reference_predictions(folder)
        waves = [load_audio(emodb_dir / "wav" / r["file"], model.sample_rate) for r in ref]
        probs = model.probabilities(waves)
        for r, p in zip(ref, probs, strict=True):
            for k, label in enumerate(model.label_names):
                assert float(p[k]) == pytest.approx(r["probs"][label], abs=2e-5), r["file"]
        assert card_summary(folder) != "(no model card)"


def test_predict_with_no_run_uses_the_shipped_model(emodb_dir):
    wav = sorted((emodb_dir / "wav").glob("*.wav"))[0]
    proc = subprocess.run(
        [sys.executable, "-m", "ser_jax", "predict", str(wav), "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = json.loads(proc.stdout)[0]
    assert row["label"] in row["probs"]
    listed = subprocess.run(
        [sys.executable, "-m", "ser_jax", "models"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "(default)" in listed.stdout
