"""Shared fixtures. Compiled functions are shared through session-scoped fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_XLA_CACHE: list[str] = []


def pytest_configure(config):
    """One XLA compilation cache for the whole session, in-process and for every subprocess
    the tests start: the many small runs here compile the same programs again and again (a
    reference run and its killed and resumed twin, the members and their sequential twins).
    A fresh folder each session: nothing carries over from an earlier run or code version."""
    import tempfile

    worker = os.environ.get("PYTEST_XDIST_WORKER")
    inherited = os.environ.get("SER_JAX_TEST_XLA_CACHE")
    if worker and inherited:  # a pytest-xdist worker: the controller's folder, shared
        folder = inherited
    else:
        folder = tempfile.mkdtemp(prefix="ser_jax_xla_")
        _XLA_CACHE.append(folder)
        os.environ["SER_JAX_TEST_XLA_CACHE"] = folder
    os.environ["JAX_COMPILATION_CACHE_DIR"] = folder
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    import jax

    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)


def pytest_unconfigure(config):
    import shutil

    for folder in _XLA_CACHE:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def emodb_dir() -> Path:
    """The real Emo-DB working copy (folder with wav/), from SER_EMODB_DIR; skips when unset."""
    value = os.environ.get("SER_EMODB_DIR")
    if not value:
        pytest.skip("SER_EMODB_DIR is not set: point it at a folder of Emo-DB wav files")
    path = Path(value)
    if not path.is_dir():
        pytest.fail(f"SER_EMODB_DIR={value} is not a directory")
    return path


@pytest.fixture(scope="session")
def demo_corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic demo corpus (4 speakers x 7 emotions x 6 files, 16 kHz), written once."""
    from ser_jax.data.synthetic import make_demo_corpus

    return make_demo_corpus(tmp_path_factory.mktemp("demo_corpus"), seed=0)


@pytest.fixture(scope="session")
def write_tone():
    """``write_tone(path, seconds=0.5, sample_rate=16000, channels=1, freq=440.0, subtype=None)``.

    Writes a sine (channel c scaled by 1 / (c + 1)) with soundfile; the format follows the
    suffix. Returns the path.
    """
    import numpy as np
    import soundfile as sf

    def write(
        path: Path,
        seconds: float = 0.5,
        sample_rate: int = 16000,
        channels: int = 1,
        freq: float = 440.0,
        subtype: str | None = None,
    ) -> Path:
        t = np.arange(int(round(seconds * sample_rate))) / sample_rate
        wave = 0.5 * np.sin(2 * np.pi * freq * t)
        data = np.stack([wave / (c + 1) for c in range(channels)], axis=1)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, data, sample_rate, subtype=subtype)
        return path

    return write


def tiny_config(**train):
    """A CNN-LSTM small enough to train on the demo corpus in seconds (learns it to ~0.75)."""
    from ser_jax.config import get_config

    c = get_config()
    c.name = "tiny"
    c.data.demo.speakers = 4
    c.data.demo.utterances_per_class = 4
    c.data.demo.seconds = (1.0, 1.6)
    c.data.max_seconds = 1.6
    c.data.bucket_seconds = 0.8
    c.frontend.n_mels = 32
    c.frontend.n_fft = 256
    c.frontend.win_length = 256
    c.model.filters = (8, 8, 16)
    c.model.pools = ((2, 2), (2, 2), (2, 2))
    c.model.lstm_hidden = 24
    c.train.batch_size = 16
    c.train.epochs = 20
    c.train.learning_rate = 1e-2
    c.train.progress = False
    for k, v in train.items():
        c.train[k] = v
    return c


@pytest.fixture(scope="session", autouse=True)
def _demo_cache(tmp_path_factory):
    """Generated demo corpora go to a per-session cache, never to the user's ~/.cache."""
    os.environ["SER_JAX_CACHE"] = str(tmp_path_factory.mktemp("ser_cache"))


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    from ser_jax.training.train import train_and_evaluate

    workdir = tmp_path_factory.mktemp("run")
    results = train_and_evaluate(tiny_config(), workdir)
    return workdir, results


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """SER_JAX_CACHE for the subprocesses, with the demo corpus already generated in it."""
    path = tmp_path_factory.mktemp("ser_cache")
    old = os.environ.get("SER_JAX_CACHE")
    os.environ["SER_JAX_CACHE"] = str(path)
    try:
        from ser_jax.config import get_config
        from ser_jax.data.prepare import demo_corpus_root

        c = get_config()
        c.data.demo.speakers, c.data.demo.utterances_per_class = 3, 3
        c.data.demo.seconds = (1.0, 1.4)
        demo_corpus_root(c.data)
    finally:
        if old is None:
            os.environ.pop("SER_JAX_CACHE", None)
        else:
            os.environ["SER_JAX_CACHE"] = old
    return path


# Files whose tests start several training processes each: kept on one pytest-xdist worker,
# so that no two of them load the 2 CPU cores at once.
_PROCESS_FILES = {"test_parallel", "test_parallel_members"}


def pytest_collection_modifyitems(config, items):
    """Under ``pytest -n N --dist loadgroup`` a file's tests stay on one worker (their module
    fixtures are built once), and the multi-process files share one worker."""
    for item in items:
        stem = item.path.stem
        item.add_marker(pytest.mark.xdist_group("processes" if stem in _PROCESS_FILES else stem))
