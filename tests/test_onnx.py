"""``ser-jax export --format onnx``: the graph onnxruntime runs alone gives ``ser-jax predict``'s
probabilities, one file serves every batch size, and what it cannot convert is refused in one
line. Skips without the optional extra ``onnx`` (jax2onnx, onnxruntime)."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ml_collections import ConfigDict

from ser_jax.errors import ConfigError
from ser_jax.serving.checkpointed import load_run
from ser_jax.serving.predict import predict_files
from ser_jax.serving.shipped import load_shipped, shipped_members, shipped_models

REPO = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-4  # onnxruntime's probabilities against the package's

needs_onnx = pytest.mark.skipif(
    importlib.util.find_spec("jax2onnx") is None or importlib.util.find_spec("onnxruntime") is None,
    reason="jax2onnx / onnxruntime not installed (pip install -e '.[onnx]'; CI has them)",
)


@pytest.fixture(scope="module")
def shipped_graph(tmp_path_factory: pytest.TempPathFactory):
    """The shipped CNN-LSTM, exported once: (model, onnxruntime session, metadata)."""
    from ser_jax.serving.onnx import export_onnx, load_onnx

    model = load_shipped("emodb-cnn-lstm")
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / "cnn.onnx")
    session, meta = load_onnx(path)
    return model, session, meta


@needs_onnx
def test_shipped_model_gives_predicts_probabilities(shipped_graph, emodb_dir):
    from ser_jax.serving.onnx import onnx_probabilities

    model, session, meta = shipped_graph
    files = sorted((emodb_dir / "wav").glob("*.wav"))[:3]
    rows = predict_files(model, [str(f) for f in files])
    probs = onnx_probabilities(session, meta, [model.load_audio(f) for f in files])
    assert meta["labels"] == list(model.label_names) and meta["samples"] == model.max_samples
    for row, p in zip(rows, probs, strict=True):
        want = np.array([row["probs"][name] for name in meta["labels"]])
        np.testing.assert_allclose(p, want, atol=TOLERANCE)  # predict rounds to 1e-5
        assert meta["labels"][int(p.argmax())] == row["label"]


@needs_onnx
def test_one_graph_serves_batches_of_1_and_3(shipped_graph):
    model, session, meta = shipped_graph
    assert isinstance(session.get_inputs()[0].shape[0], str)  # a symbolic batch size
    samples = meta["samples"]
    rng = np.random.default_rng(1)
    lengths = np.array([samples, samples // 2, 3000], np.int32)
    waves = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in lengths]
    audio = np.zeros((3, samples), np.float32)
    for row, wave in zip(audio, waves, strict=True):
        row[: len(wave)] = wave
    batch = session.run(None, {"audio": audio, "lengths": lengths})[0]
    assert batch.shape == (3, len(meta["labels"]))
    for i in range(3):
        one = session.run(None, {"audio": audio[i : i + 1], "lengths": lengths[i : i + 1]})[0]
        np.testing.assert_allclose(one[0], batch[i], atol=1e-6)
    np.testing.assert_allclose(batch, model.probabilities(waves), atol=TOLERANCE)


@needs_onnx
@pytest.mark.slow
def test_a_trained_run_exports_by_the_command_line(trained, demo_corpus_dir, tmp_path):
    from ser_jax.serving.onnx import load_onnx, onnx_probabilities

    workdir, _ = trained
    out = tmp_path / "tiny.onnx"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    argv = ["export", "--format", "onnx", "--run", str(workdir), "--out", str(out)]
    proc = subprocess.run(
        [sys.executable, "-m", "ser_jax", *argv],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
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
    # a shipped functionals-family model and a shipped committee, whichever ship
    every = sorted({m for n in shipped_models() for m in shipped_members(n)})
    functionals = next(m for m in every if load_shipped(m).config.model.name == "functionals")
    committee = next(n for n in shipped_models() if shipped_members(n) != [n])
    cases = [
        (lambda: export_onnx(per_speaker, "never.onnx"), r"normalize='speaker'.*no input"),
        (
            lambda: export_onnx(load_shipped(functionals), "never.onnx"),
            r"jax2onnx cannot convert this model \(functionals\)",
        ),
        (lambda: load_shipped(committee), "is a committee"),
    ]
    for export, why in cases:
        with pytest.raises(ConfigError, match=why) as err:
            export()
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
