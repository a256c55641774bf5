"""The openSMILE family (``ser_jax.classical``): the linear classifier and its protocols, the
feature cache, and a feature model trained, cross-validated, restored, predicted and packaged
through the same commands as the networks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import opensmile
import pytest
from sklearn.linear_model import LogisticRegression

from ser_jax.classical.linear import (
    fit_classifier,
    fit_logistic,
    fit_path,
    moments,
    standardise_by_speaker,
)
from ser_jax.errors import ConfigError


def test_the_row_space_fit_is_the_direct_fit():
    """Fewer clips than features: fitting on the SVD rotation gives scikit-learn's own
    model, classes missing from training are never predicted, two classes work too."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 300))
    y = rng.integers(0, 4, 60)
    x[:, :4] += 2.0 * np.eye(4)[y]  # learnable
    for c in (1e-3, 1e-1):
        coef, intercept = fit_logistic(x, y, c, num_classes=5)
        direct = LogisticRegression(C=c, max_iter=5000, tol=1e-8).fit(x, y)
        logits = x @ coef + intercept
        mine = np.exp(logits - logits.max(1, keepdims=True))
        mine /= mine.sum(1, keepdims=True)
        np.testing.assert_allclose(mine[:, :4], direct.predict_proba(x), atol=1e-4)
        assert mine[:, 4].max() < 1e-15  # class 4 has no training clip
    two = y % 2
    coef, intercept = fit_logistic(x, two, 1e-2, num_classes=2)
    direct = LogisticRegression(C=1e-2, max_iter=5000, tol=1e-8).fit(x, two)
    p1 = 1 / (1 + np.exp(-(x @ (coef[:, 1] - coef[:, 0]) + intercept[1] - intercept[0])))
    np.testing.assert_allclose(p1, direct.predict_proba(x)[:, 1], atol=1e-4)
    with pytest.raises(ConfigError, match="two classes"):
        fit_logistic(x, np.zeros(60, int), 1.0, num_classes=3)
    # the warm-started path over a grid: each C's own fit
    path = fit_path(x, y, (1e-3, 1e-1), num_classes=5)
    for (coef, intercept), c in zip(path, (1e-3, 1e-1), strict=True):
        alone, icpt = fit_logistic(x, y, c, num_classes=5)
        np.testing.assert_allclose(x @ coef + intercept, x @ alone + icpt, atol=2e-3)


def test_per_speaker_standardisation_uses_only_that_speakers_files():
    """Two speakers whose features are shifted and scaled copies: each is standardised by its
    own moments, so both come out the same, and changing one speaker's files leaves the
    other's standardised rows unchanged."""
    rng = np.random.default_rng(1)
    base = rng.standard_normal((20, 6))
    feats = np.concatenate([base, 3.0 * base + 10.0])
    speakers = ["a"] * 20 + ["b"] * 20
    z = standardise_by_speaker(feats, speakers)
    np.testing.assert_allclose(z[:20], z[20:], atol=1e-9)
    np.testing.assert_allclose(z[:20].mean(0), 0, atol=1e-9)
    np.testing.assert_allclose(z[:20].std(0), 1, atol=1e-9)
    other = feats.copy()
    other[20:] = rng.standard_normal((20, 6)) * 50
    np.testing.assert_array_equal(standardise_by_speaker(other, speakers)[:20], z[:20])
    mean, scale = moments(np.ones((5, 2)))
    assert scale.tolist() == [1.0, 1.0]  # a constant feature is left at 0, not divided by 0


def test_c_is_chosen_inside_the_training_speakers():
    """With several values, C is the best by leave-one-speaker-out over the given speakers
    (recorded per value); one value is taken as given; bad grids are refused in one line."""
    rng = np.random.default_rng(2)
    y = np.tile(np.arange(3), 30)
    feats = rng.standard_normal((90, 40)) + 1.5 * np.eye(40)[y]
    speakers = [f"s{i % 3}" for i in range(90)]
    model, scores = fit_classifier(feats, y, speakers, (1e-4, 1.0), 3, per_speaker=False)
    assert set(scores) == {"0.0001", "1"}
    assert model.c == (1e-4 if scores["0.0001"] >= scores["1"] else 1.0)
    alone, none = fit_classifier(feats, y, speakers, (0.5,), 3, per_speaker=True)
    assert alone.c == 0.5 and none == {} and alone.per_speaker
    probs = alone.probabilities(feats, speakers)
    assert probs.shape == (90, 3) and np.allclose(probs.sum(1), 1, atol=1e-5)
    with pytest.raises(ConfigError, match="inverse_regularisation"):
        fit_classifier(feats, y, speakers, (0.0,), 3, per_speaker=False)
    with pytest.raises(ConfigError, match="two or more training speakers"):
        fit_classifier(feats, y, ["one"] * 90, (0.1, 1.0), 3, per_speaker=False)


def test_features_are_cached_by_content_and_feature_set(demo_corpus_dir, tmp_path):
    """The second extraction reads the cache; a changed clip, another feature set or a
    damaged cache file is extracted (again); the values equal openSMILE's own."""
    from ser_jax.classical.features import opensmile_features
    from ser_jax.data.audio import load_audio

    waves = [load_audio(p, 16000) for p in sorted(demo_corpus_dir.glob("*.wav"))[:3]]
    first = opensmile_features(waves, 16000, "eGeMAPSv02", str(tmp_path))
    files = sorted(tmp_path.rglob("*.npy"))
    assert first.shape == (3, 88) and len(files) == 3
    smile = opensmile.Smile(
        feature_set=opensmile.FeatureSet.eGeMAPSv02,
        feature_level=opensmile.FeatureLevel.Functionals,
    )
    np.testing.assert_allclose(
        first[0], smile.process_signal(waves[0], 16000).to_numpy()[0], rtol=1e-6
    )
    stamps = [f.stat().st_mtime_ns for f in files]
    again = opensmile_features(waves, 16000, "eGeMAPSv02", str(tmp_path))
    np.testing.assert_array_equal(again, first)
    assert [f.stat().st_mtime_ns for f in files] == stamps  # read, not written again
    changed = [waves[0] * 0.5, *waves[1:]]
    opensmile_features(changed, 16000, "eGeMAPSv02", str(tmp_path))
    assert len(list(tmp_path.rglob("*.npy"))) == 4
    files[1].write_bytes(b"not an array")
    repaired = opensmile_features(waves, 16000, "eGeMAPSv02", str(tmp_path))
    np.testing.assert_array_equal(repaired, first)
    assert np.load(files[1]).shape == (88,)
    with pytest.raises(ConfigError, match="not an openSMILE feature set"):
        opensmile_features(waves, 16000, "GeMAPS_typo", str(tmp_path))
    from ser_jax.classical.fit import fit_feature_model

    bad = tiny_opensmile(tmp_path / "cache")
    bad.model.feature_set = "GeMAPS_typo"
    with pytest.raises(ConfigError, match="model.feature_set='GeMAPS_typo'"):
        fit_feature_model(bad, tmp_path / "never")
    assert not (tmp_path / "never").exists()  # refused before any folder is made


def test_features_without_opensmile_are_refused_in_one_line(monkeypatch, tmp_path):
    """openSMILE is imported when features are asked for; a broken install is named."""
    import sys

    from ser_jax.classical.features import opensmile_features

    monkeypatch.setitem(sys.modules, "opensmile", None)  # `import opensmile` fails
    wave = np.zeros(16000, np.float32)
    with pytest.raises(ConfigError, match="needs the openSMILE package"):
        opensmile_features([wave], 16000, "eGeMAPSv02", str(tmp_path))


def tiny_opensmile(cache: Path):
    from ser_jax.config import get_config

    c = get_config()
    c.name = "tiny_opensmile"
    c.data.demo.speakers = 4
    c.data.demo.utterances_per_class = 4
    c.data.demo.seconds = (1.0, 1.6)
    c.data.val_count = 0
    c.model.name = "opensmile"
    c.model.feature_set = "eGeMAPSv02"
    c.model.inverse_regularisation = (0.01, 1.0)
    c.model.feature_cache = str(cache)
    c.train.progress = False
    return c


@pytest.fixture(scope="module")
def feature_cv(tmp_path_factory):
    from ser_jax.protocols import cross_validate

    root = tmp_path_factory.mktemp("opensmile")
    summary = cross_validate(tiny_opensmile(root / "cache"), root / "cv")
    return root, summary


def test_a_feature_model_cross_validates_into_run_directories(feature_cv):
    """``cv`` of an openSMILE config: every fold a run directory like a network's, both
    protocols tested once, C chosen inside the training speakers, pooled figures for both;
    a finished run is not fitted again."""
    from ser_jax.protocols import cross_validate

    root, summary = feature_cv
    assert len(summary["per_fold"]) == 4 and "pooled_speaker_bn" in summary
    run = next((root / "cv").glob("fold0-*/seed0"))
    results = json.loads((run / "results.json").read_text())
    held_out = run.parent.name.split("-", 1)[1]
    assert results["test_time_views"] is False and results["speaker_bn"]["test_uar"] >= 0
    assert set(results["selected_c"]) == {"plain", "adapted"}
    assert results["selected_c"]["plain"] in (0.01, 1.0)
    for kind in ("test", "test_speaker_bn"):
        rows = [json.loads(x) for x in (run / f"{kind}_predictions.jsonl").open()]
        assert {r["speaker"] for r in rows} == {held_out}
    info = json.loads((run / "run_info.json").read_text())
    assert held_out not in info["data"]["train"]["speakers"]
    stamp = (run / "results.json").stat().st_mtime_ns
    cross_validate(tiny_opensmile(root / "cache"), root / "cv")
    assert (run / "results.json").stat().st_mtime_ns == stamp


def test_a_feature_model_is_restored_predicts_and_ships(feature_cv, tmp_path, capsys):
    """The run's model restored by ``load_model`` reproduces its test predictions, plain
    and speaker-adapted (the held-out speaker's files as one group); ``predict`` and
    ``package`` take it like a network; it has no timeline."""
    from ser_jax.research.package import package_run
    from ser_jax.serving.predict import predict_command, predict_files
    from ser_jax.serving.restore import load_model

    root, _ = feature_cv
    run = next((root / "cv").glob("fold1-*/seed0"))
    model = load_model(run)
    for kind, adapt in (("test", False), ("test_speaker_bn", True)):
        rows = [json.loads(x) for x in (run / f"{kind}_predictions.jsonl").open()]
        got = predict_files(model, [r["path"] for r in rows], speaker_bn=adapt)
        for want, row in zip(rows, got, strict=True):
            for label, p in want["probs"].items():
                assert row["probs"][label] == pytest.approx(p, abs=2e-5), (kind, row["path"])
    paths = [r["path"] for r in map(json.loads, (run / "test_predictions.jsonl").open())][:2]
    shipped = package_run(run, tmp_path / "shipped", reference_files=paths, card="# f\n\nF.\n")
    again = load_model(shipped).probabilities([model.load_audio(p) for p in paths])
    np.testing.assert_allclose(again, model.probabilities([model.load_audio(p) for p in paths]))
    assert predict_command(str(shipped), paths, as_json=True) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2
    with pytest.raises(ConfigError, match="no timeline"):
        predict_command(str(shipped), paths, as_json=True, timeline=str(tmp_path / "t.png"))


def test_explain_follows_the_jax_members_and_says_which_it_left_out(feature_cv):
    """A committee member outside JAX has no gradient over the log-mel: explain follows the
    other members' weighted mean and warns, naming it; a model with none left is refused."""
    from ser_jax.serving.explain import differentiable_members
    from ser_jax.serving.restore import load_model
    from ser_jax.serving.shipped import load_shipped

    root, _ = feature_cv
    feature = load_model(next((root / "cv").glob("fold0-*/seed0")))
    network = load_shipped("emodb-cnn-lstm")
    with pytest.warns(UserWarning, match="seed0 computes its features outside JAX"):
        models, weights, left_out = differentiable_members([network, feature], [1.0, 2.0])
    assert models == [network] and weights == [1.0] and left_out == ["seed0"]
    with pytest.raises(ConfigError, match="no member of this model is a JAX function"):
        differentiable_members([feature], None)
