"""``ser-jax explain``: integrated gradients over the log-mel of the shipped models.

The explained function must be the model's own probability (the scoring path's, through the
log-mel), the attributions must add up to f(x) - f(baseline) (completeness), the bands they
rank first must matter more than random ones (occlusion), and the command must write its
picture and totals and refuse bad input in one line. The compiled functions are shared by
the module's fixtures (a model alone and as a committee member share its own)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ser_jax.errors import ConfigError
from ser_jax.serving.explain import (
    CHUNK,
    explain_command,
    explain_corpus,
    initial_grid,
    integrate_path,
    load_explainer,
    position_map,
    trapezoid_weights,
)

# Shared Emo-DB files of five speakers and five classes.
FILES = ("03a01Wa.wav", "08a02Tb.wav", "09a05Lc.wav", "13a04Ta.wav", "10a02Ab.wav")


def wav(emodb_dir: Path, name: str) -> str:
    folder = emodb_dir / "wav" if (emodb_dir / "wav").is_dir() else emodb_dir
    path = folder / name
    if not path.exists():
        pytest.skip(f"{name} is not in SER_EMODB_DIR={emodb_dir}")
    return str(path)


@pytest.fixture(scope="module")
def cnn_lstm():
    return load_explainer("emodb-cnn-lstm")[0]


@pytest.fixture(scope="module")
def committee():
    """The shipped default: a committee over one log-mel, its openSMILE member (outside JAX,
    no gradient) left out with a warning naming it."""
    with pytest.warns(UserWarning, match="emodb-opensmile computes its features outside JAX"):
        explainer, name = load_explainer()
    assert name == "emodb-committee without emodb-opensmile"
    assert len(explainer.models) == 3, "the default is expected to be a committee"
    return explainer


@pytest.fixture(scope="module")
def committee_attributions(emodb_dir, committee):
    return [committee.explain(wav(emodb_dir, name)) for name in FILES[:4]]


def test_the_path_integral_adds_up_where_even_steps_miss():
    """A function that changes only near the baseline, as an utterance-normalised network
    does: 64 even trapezoid steps miss its change by far, the refined log/even path does
    not."""
    c = 1e-3

    def evaluate(alphas):
        return alphas / np.sqrt(alphas**2 + c**2), (c**2 / (alphas**2 + c**2) ** 1.5)[:, None]

    even = np.linspace(0, 1, 64)
    f_even, g_even = evaluate(even)
    miss_even = abs(trapezoid_weights(even) @ g_even[:, 0] - (f_even[-1] - f_even[0]))
    alphas, values, grads = integrate_path(evaluate, np.ones(1), 64)
    miss = abs(trapezoid_weights(alphas) @ grads[:, 0] - (values[-1] - values[0]))
    assert miss_even > 0.05 * (f_even[-1] - f_even[0])
    assert miss < 0.002 * (values[-1] - values[0])
    assert len(initial_grid(64)) == 64 and len(alphas) <= 4 * 64


def test_position_map_keeps_the_totals():
    rng = np.random.default_rng(0)
    att = rng.normal(size=(137, 8))
    binned = position_map(att, 50)
    assert binned.shape == (50, 8)
    np.testing.assert_allclose(binned.sum(axis=0), att.sum(axis=0), atol=1e-9)
    np.testing.assert_allclose(binned.sum(), att.sum(), atol=1e-9)


def test_the_explained_function_is_the_committees_probability(emodb_dir, committee):
    """f through the log-mel equals the scoring path (``predict``, no test-time warps)."""
    wave = committee.load(wav(emodb_dir, FILES[1]))
    window = committee.window(wave)
    through_log_mel = committee.probabilities(window, window.log_mel)[0]
    scored = sum(
        w * m.probabilities([wave])[0]
        for m, w in zip(committee.models, committee.weights, strict=True)
    )
    np.testing.assert_allclose(through_log_mel, scored, atol=1e-5)


def _check_complete(att):
    change = att.f_x - att.f_baseline
    assert abs(change) > 0.1, "the test needs a file whose probability moves"
    assert abs(att.total - change) <= 0.01 * abs(change), (att.total, att.f_x, att.f_baseline)
    np.testing.assert_allclose(att.band_totals.sum(), att.total, rtol=1e-4)
    np.testing.assert_allclose(att.frame_totals.sum(), att.total, rtol=1e-4)


def test_completeness_cnn_lstm(emodb_dir, cnn_lstm):
    att = cnn_lstm.explain(wav(emodb_dir, FILES[0]))
    print(f"cnn-lstm {FILES[0]}: f(x) {att.f_x:.4f} f(b) {att.f_baseline:.4f} sum {att.total:.4f}")
    _check_complete(att)


def test_completeness_default_committee(committee_attributions):
    for att in committee_attributions:
        print(
            f"committee {Path(att.path).name}: f(x) {att.f_x:.4f} f(b) {att.f_baseline:.4f} "
            f"sum {att.total:.4f} gap {100 * att.completeness_gap:.3f} % ({att.points} points)"
        )
        _check_complete(att)


def test_occlusion_top_bands_matter_more_than_random_ones(
    emodb_dir, committee, committee_attributions
):
    """Setting the k bands with the largest attribution to the baseline lowers the class's
    probability more than setting k random bands there, on average over the files."""
    k, draws = 8, CHUNK - 1
    rng = np.random.default_rng(0)
    top_drops, random_drops = [], []
    for att in committee_attributions:
        window = committee.window(att.wave)
        bands = att.log_mel.shape[1]
        masks = [np.argsort(att.band_totals)[::-1][:k]]
        masks += [rng.choice(bands, k, replace=False) for _ in range(draws)]
        points = np.repeat(window.log_mel, len(masks), axis=0)
        for row, chosen in enumerate(masks):
            points[row][: att.log_mel.shape[0], chosen] = att.baseline[chosen]
        probs = committee.probabilities(window, points)[:, att.label]
        top_drops.append(att.f_x - probs[0])
        random_drops.append(att.f_x - probs[1:].mean())
    print(f"mean drop: top-{k} bands {np.mean(top_drops):.4f}, random {np.mean(random_drops):.4f}")
    assert np.mean(top_drops) > np.mean(random_drops)


def test_command_writes_the_picture_and_the_totals(emodb_dir, cnn_lstm, tmp_path, capsys):
    png = tmp_path / "why.png"
    explain_command(
        [wav(emodb_dir, FILES[0])], out=str(png), model_name="emodb-cnn-lstm", as_json=True
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    totals = json.loads(capsys.readouterr().out)
    assert totals["label"] == "anger" and totals["model"] == "emodb-cnn-lstm"
    assert len(totals["band_totals"]) == 64 and len(totals["frame_totals"]) > 100
    change = totals["f_x"] - totals["f_baseline"]
    assert abs(totals["attribution_sum"] - change) <= 0.01 * abs(change)
    assert abs(sum(totals["band_totals"]) - totals["attribution_sum"]) < 1e-3


def test_corpus_panels(emodb_dir, cnn_lstm, tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for name in FILES[:2]:  # links, not copies: two classes of one file each
        (folder / name).symlink_to(wav(emodb_dir, name))
    png = tmp_path / "classes.png"
    result = explain_corpus(cnn_lstm, str(folder), png)
    assert set(result) == {"anger", "sadness"} and png.stat().st_size > 20_000
    for row in result.values():
        assert row["files"] == 1 and len(row["position_totals"]) == 50
        change = row["f_x"] - row["f_baseline"]
        assert abs(sum(row["position_totals"]) - change) <= 0.01 * abs(change)


def test_bad_input_is_refused_in_one_line(emodb_dir, tmp_path):
    good = wav(emodb_dir, FILES[0])
    with pytest.raises(ConfigError, match=r"^--out: explain needs"):
        explain_command([good], out=None)
    with pytest.raises(ConfigError, match=r"cannot read .*missing\.wav: file not found"):
        explain_command(
            [str(tmp_path / "missing.wav")],
            out=str(tmp_path / "a.png"),
            model_name="emodb-cnn-lstm",
        )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ser_jax",
            "explain",
            good,
            "--out",
            str(tmp_path / "a.png"),
            "--model",
            "emodb-cnn-lstm",
            "--label",
            "joy",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [x for x in proc.stderr.splitlines() if x.strip() and "Warning" not in x]
    assert proc.returncode == 2, proc.stderr
    assert lines == [
        "error: --label='joy': not a class of the model (anger, boredom, disgust, fear, "
        "happiness, sadness, neutral)"
    ]
    assert not (tmp_path / "a.png").exists()
