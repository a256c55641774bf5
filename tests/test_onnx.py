"""``ser-jax export --format onnx``: the graph onnxruntime runs alone gives ``ser-jax predict``'s
probabilities, for one model and for the default committee (four members of both families,
weighted, with test-time warps, as one graph), one file serves every batch size, and what it
cannot export is refused in one line. Skips without the optional extra ``onnx`` (jax2onnx,
onnxruntime)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from ml_collections import ConfigDict

from ser_jax.errors import ConfigError
from ser_jax.serving.checkpointed import load_run
from ser_jax.serving.predict import predict_command, predict_files
from ser_jax.serving.shipped import load_committee, load_shipped

ALL_JAX = "emodb-committee-jax"  # the shipped committee whose members are all JAX functions

REPO = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-4  # onnxruntime's probabilities against the package's

needs_onnx = pytest.mark.skipif(
    importlib.util.find_spec("jax2onnx") is None or importlib.util.find_spec("onnxruntime") is None,
    reason="jax2onnx / onnxruntime not installed (pip install -e '.[onnx]'; CI has them)",
)


def run_cli(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run(
        [sys.executable, "-m", "ser_jax", *argv],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def shipped_graph(tmp_path_factory: pytest.TempPathFactory):
    """The shipped CNN-LSTM, exported once: (model, onnxruntime session, metadata)."""
    from ser_jax.serving.onnx import export_onnx, load_onnx

    model = load_shipped("emodb-cnn-lstm")
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / "cnn.onnx")
    session, meta = load_onnx(path)
    return model, session, meta


@pytest.fixture(scope="module")
def committee_graph(tmp_path_factory: pytest.TempPathFactory):
    """The all-JAX shipped committee, exported once by the command line: (onnxruntime
    session, metadata)."""
    from ser_jax.serving.onnx import load_onnx

    out = tmp_path_factory.mktemp("onnx") / "ser.onnx"
    proc = run_cli("export", "--format", "onnx", "--model", ALL_JAX, "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"wrote {out} and {out}.json" in proc.stdout
    return load_onnx(out)


@pytest.fixture(scope="module")
def emodb_paths(emodb_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Three shared Emo-DB files and one recording of three of them in a row, longer than a
    window (scored as half-overlapping windows, averaged)."""
    files = sorted((emodb_dir / "wav").glob("*.wav"))[:6]
    long = tmp_path_factory.mktemp("long") / "long.wav"
    waves = [sf.read(f, dtype="float32") for f in files[3:]]
    sf.write(long, np.concatenate([w for w, _ in waves]), waves[0][1])
    return [str(f) for f in files[:3]] + [str(long)]


def predicted(rows: list[dict], labels: list[str]) -> np.ndarray:
    """``predict``'s probabilities (rounded to 1e-5) in the order of ``labels``."""
    assert all("error" not in r for r in rows), rows
    return np.array([[r["probs"][name] for name in labels] for r in rows])


@needs_onnx
def test_shipped_model_gives_predicts_probabilities(shipped_graph, emodb_paths):
    from ser_jax.serving.onnx import onnx_probabilities

    model, session, meta = shipped_graph
    want = predicted(predict_files(model, emodb_paths), meta["labels"])
    waves = [model.load_audio(f) for f in emodb_paths]
    probs = onnx_probabilities(session, meta, waves, batch_size=len(waves))
    assert meta["labels"] == list(model.label_names) and meta["samples"] == model.max_samples
    assert len(waves[-1]) > meta["samples"]  # the long recording: windows averaged by both
    np.testing.assert_allclose(probs, want, atol=TOLERANCE)  # predict rounds to 1e-5
    assert (probs.argmax(1) == want.argmax(1)).all()


@needs_onnx
def test_the_all_jax_committee_is_one_graph_with_predicts_probabilities(
    committee_graph, emodb_paths, capsys
):
    """``ser-jax export --format onnx --model emodb-committee-jax`` (its four members, weights
    and test-time warps in one graph) against ``ser-jax predict`` of the same committee."""
    from ser_jax.serving.onnx import onnx_probabilities

    session, meta = committee_graph
    committee = load_committee(ALL_JAX)
    assert meta["source"] == str(committee.source) and meta["rule"] == "mean"
    assert meta["weights"] == list(committee.weights)
    assert meta["tta_semitones"] == list(committee.semitones) == [-6.0, 6.0]
    assert [m["source"] for m in meta["members"]] == [str(m.source) for m in committee.members]
    assert predict_command(None, emodb_paths, as_json=True, model_name=ALL_JAX) == 0
    want = predicted(json.loads(capsys.readouterr().out), meta["labels"])
    waves = [committee.members[0].load_audio(f) for f in emodb_paths]
    probs = onnx_probabilities(session, meta, waves, batch_size=len(waves))
    np.testing.assert_allclose(probs, want, atol=TOLERANCE)
    assert (probs.argmax(1) == want.argmax(1)).all()


def batch_of_three(samples: int) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Three clips of noise (a whole window, half of one, 3000 samples), zero-padded."""
    rng = np.random.default_rng(1)
    lengths = np.array([samples, samples // 2, 3000], np.int32)
    waves = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in lengths]
    audio = np.zeros((3, samples), np.float32)
    for row, wave in zip(audio, waves, strict=True):
        row[: len(wave)] = wave
    return audio, lengths, waves


@needs_onnx
@pytest.mark.parametrize("graph", ["shipped_graph", "committee_graph"])
def test_one_graph_serves_batches_of_1_and_3(graph, request):
    session, meta = request.getfixturevalue(graph)[-2:]
    assert isinstance(session.get_inputs()[0].shape[0], str)  # a symbolic batch size
    audio, lengths, waves = batch_of_three(meta["samples"])
    batch = session.run(None, {"audio": audio, "lengths": lengths})[0]
    assert batch.shape == (3, len(meta["labels"]))
    for i in range(3):
        one = session.run(None, {"audio": audio[i : i + 1], "lengths": lengths[i : i + 1]})[0]
        np.testing.assert_allclose(one[0], batch[i], atol=1e-6)
    if graph == "shipped_graph":
        model = request.getfixturevalue(graph)[0]
        np.testing.assert_allclose(batch, model.probabilities(waves), atol=TOLERANCE)


@needs_onnx
@pytest.mark.slow
def test_a_trained_run_exports_by_the_command_line(trained, demo_corpus_dir, tmp_path):
    from ser_jax.serving.onnx import load_onnx, onnx_probabilities

    workdir, _ = trained
    out = tmp_path / "tiny.onnx"
    proc = run_cli("export", "--format", "onnx", "--run", str(workdir), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"wrote {out} and {out}.json" in proc.stdout
    model = load_run(workdir)
    waves = [model.load_audio(f) for f in sorted(demo_corpus_dir.glob("*.wav"))[:3]]
    session, meta = load_onnx(out)
    probs = onnx_probabilities(session, meta, waves)
    np.testing.assert_allclose(probs, model.probabilities(waves), atol=TOLERANCE)


@needs_onnx
def test_what_it_cannot_export_is_refused_in_one_line():
    from ser_jax.serving.onnx import export_onnx

    model = load_shipped("emodb-cnn-lstm")
    config = ConfigDict(model.config.to_dict())
    config.frontend.normalize = "speaker"
    per_speaker = dataclasses.replace(model, config=config)
    committee = load_committee(ALL_JAX)
    config = ConfigDict(committee.members[1].config.to_dict())
    config.data.sample_rate = 8000
    other_rate = dataclasses.replace(committee.members[1], config=config)
    differing = dataclasses.replace(
        committee, members=(committee.members[0], other_rate, *committee.members[2:])
    )
    cases = [
        (per_speaker, r"normalize='speaker'.*no input"),
        (
            differing,
            r"emodb-committee-jax: its members differ in sample_rate \(emodb-cnn-lstm: 16000",
        ),
        (dataclasses.replace(committee, rule="geometric"), r"rule='geometric'.*rule 'mean'"),
    ]
    for target, why in cases:
        with pytest.raises(ConfigError, match=why) as err:
            export_onnx(target, "never.onnx")
        assert "\n" not in str(err.value)
    assert not Path("never.onnx").exists()


def test_without_the_extra_the_command_names_it(tmp_path):
    """``--format onnx`` without jax2onnx: one line naming the extra (here jax2onnx is hidden
    behind a package of its name that fails to import)."""
    blocked = tmp_path / "blocked" / "jax2onnx"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(blocked.parent)}
    env.pop("SER_JAX_DEBUG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "ser_jax", "export", "--format", "onnx", "--out", "x.onnx"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "optional extra 'onnx'" in errors[0], proc.stderr
    assert "jax2onnx" in errors[0] and not (tmp_path / "x.onnx").exists()
