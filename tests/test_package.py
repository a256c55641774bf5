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
from ser_jax.research.package import package_run
from ser_jax.serving.restore import load_model
from ser_jax.serving.shipped import (
    DEFAULT_MODEL,
    PRETRAINED,
    card_summary,
    load_shipped,
    model_dir,
    reference_predictions,
    shipped_members,
    shipped_models,
    shipped_semitones,
    shipped_weights,
)

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
    # packaged onto itself: the model stays, the card is re-made
    model = (again / "model.msgpack").read_bytes()
    package_run(again, again, card="# tiny\n\nRe-made.\n")
    assert (again / "model.msgpack").read_bytes() == model
    assert card_summary(again) == "Re-made."
    # loading needs no trainer (nor orbax: a finished run reads model.msgpack)
    code = (
        "import sys; from ser_jax.serving.restore import load_model; "
        f"m = load_model({str(out)!r}); "
        "assert 'ser_jax.training.train' not in sys.modules and 'orbax.checkpoint' not in sys.modules; "
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


def test_a_committee_of_shipped_models_is_packaged_and_predicts(
    packaged, tmp_path, monkeypatch, capsys
):
    """``package --members``: a committee folder naming shipped models, its card's figures
    read from an ensemble summary; ``predict --model NAME`` scores it as the members' average;
    one-model commands, one member, a committee as member or other classes are refused."""
    import shutil

    import ser_jax.research.package as package
    import ser_jax.serving.shipped as shipped
    from ser_jax.errors import ConfigError
    from ser_jax.serving.predict import predict_command, predict_files

    _, out, refs = packaged
    root = tmp_path / "pretrained"
    for name in ("a", "b"):
        shutil.copytree(out, root / name)
    ens = tmp_path / "ens"
    ens.mkdir()
    ms = {"mean": 0.8, "std": 0.01, "each": [0.79, 0.81]}
    tta = {"mean": 0.813, "std": 0.004, "each": [0.81, 0.816]}
    (ens / "ensemble_summary.json").write_text(
        json.dumps(
            {
                "command": "ser-jax ensemble --out ens x y",
                "members": [{}, {}],
                "files": 409,
                "committees": {
                    "count": 2,
                    "pooled": {"uar": ms, "accuracy": ms, "macro_f1": ms},
                    "pooled_tta": {"uar": tta, "accuracy": tta, "macro_f1": tta},
                },
            }
        )
    )
    (ens / "run_info.json").write_text(json.dumps({"git_commit": "abc1234567", "processor": "X"}))
    folder = package.package_committee("c", ["a", "b"], loso=ens, root=root)
    assert json.loads((folder / "committee.json").read_text()) == {"members": ["a", "b"]}
    card = (folder / "MODEL_CARD.md").read_text()
    assert "- `a`: A tiny test model." in card
    assert (
        "- Leave-one-speaker-out (all 409 files, pooled), 2 committees of one model per run "
        "(the runs' k-th seeds), mean ± std over them: UAR 0.800 ± 0.010" in card
    )
    assert (
        "; with each member's test-time augmentation as its runs were scored "
        "(`--tta_semitones`): UAR 0.813 ± 0.004" in card
    )
    assert "commit abc1234567 on X" in card and "`ser-jax ensemble --out ens x y`" in card
    assert "No seed-protocol ensemble" in card
    assert shipped.shipped_members("c", root) == ["a", "b"]
    assert shipped.shipped_members("a", root) == ["a"]
    # a committee may keep a member in its own folder: named COMMITTEE/MEMBER, not listed alone
    shutil.copytree(root / "b", root / "d" / "b")
    (root / "d" / "committee.json").write_text(json.dumps({"members": ["a", "b"]}))
    assert shipped.shipped_members("d", root) == ["a", "d/b"]
    assert shipped.model_dir("d/b", root) == root / "d" / "b"
    assert "d/b" not in shipped.shipped_models(root)
    with pytest.raises(ConfigError, match="no shipped model 'a/b'"):
        shipped.model_dir("a/b", root)
    shutil.rmtree(root / "d")
    # packaged so, with weights given (not from an ensemble)
    shutil.copytree(root / "b", root / "e" / "b")
    folder = package.package_committee("e", ["a", "b"], weights=[1, 3], root=root)
    assert json.loads((folder / "committee.json").read_text()) == {
        "members": ["a", "b"],
        "weights": [1.0, 3.0],
    }
    assert "- `e/b` (weight 3): A tiny test model." in (folder / "MODEL_CARD.md").read_text()
    shutil.rmtree(root / "e")
    monkeypatch.setattr(shipped, "PRETRAINED", root)
    assert shipped.shipped_models() == ["a", "b", "c"]
    paths = [str(f) for f in refs]
    alone = predict_files(load_model(root / "a"), paths)
    capsys.readouterr()
    assert predict_command(None, paths, as_json=True, model_name="c") == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["probs"] for r in rows] == [r["probs"] for r in alone]  # the mean of a model twice
    with pytest.raises(ConfigError, match="'c' is a committee of shipped models \\(a, b\\)"):
        shipped.load_shipped("c")
    # a committee that records test-time warps scores with them unless told otherwise
    (root / "w").mkdir()
    (root / "w" / "committee.json").write_text(
        json.dumps({"members": ["a", "a"], "tta_semitones": [-6.0, 6.0]})
    )
    assert shipped.shipped_semitones("w") == (-6.0, 6.0) and shipped.shipped_semitones("a") == ()
    warped = predict_files(load_model(root / "a"), paths, semitones=(-6.0, 6.0))
    assert warped[0]["probs"] != alone[0]["probs"]
    for given, want in ((None, warped), ((), alone), ((-6.0, 6.0), warped)):
        assert predict_command(None, paths, as_json=True, model_name="w", semitones=given) == 0
        rows = json.loads(capsys.readouterr().out)
        assert [r["probs"] for r in rows] == [r["probs"] for r in want], given
    (root / "w" / "committee.json").write_text(
        json.dumps({"members": ["a", "b"], "tta_semitones": [0.0]})
    )
    with pytest.raises(ConfigError, match="committee.json: tta_semitones"):
        shipped.shipped_semitones("w")
    shutil.rmtree(root / "w")
    # the warps come from the nested choice that made the committee, when it scored with them
    summary = {"winner": {"candidate": "x", "view": "tta"}, "tta_semitones": [-6, 6]}
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "nested_summary.json").write_text(json.dumps(summary))
    assert package.nested_semitones(tmp_path / "nested") == [-6.0, 6.0]
    summary["winner"]["view"] = "plain"
    (tmp_path / "nested" / "nested_summary.json").write_text(json.dumps(summary))
    assert package.nested_semitones(tmp_path / "nested") == []
    summary["winner"]["view"] = "tta"
    del summary["tta_semitones"]
    (tmp_path / "nested" / "nested_summary.json").write_text(json.dumps(summary))
    with pytest.raises(ConfigError, match="does not record them"):
        package.nested_semitones(tmp_path / "nested")
    # a committee packaged from a geometric-rule ensemble combines by that rule: b trained on
    # other class counts, so with --balanced the two members differ, and the committee's
    # probabilities are their geometric mean
    info = json.loads((root / "b" / "run_info.json").read_text())
    names = info["data"]["labels"]
    info["data"]["train"]["per_label"] = {n: 5 * (i + 1) for i, n in enumerate(names)}
    (root / "b" / "run_info.json").write_text(json.dumps(info))
    summary = json.loads((ens / "ensemble_summary.json").read_text())
    (ens / "ensemble_summary.json").write_text(json.dumps(summary | {"rule": "geometric"}))
    folder = package.package_committee("cg", ["a", "b"], loso=ens, root=root)
    assert json.loads((folder / "committee.json").read_text())["rule"] == "geometric"
    assert "the members' geometric mean, renormalised" in (folder / "MODEL_CARD.md").read_text()
    assert (
        shipped.shipped_rule("cg", root) == "geometric"
        and shipped.shipped_rule("c", root) == "mean"
    )
    each = [predict_files(load_model(root / m), paths, balanced=True) for m in ("a", "b")]
    capsys.readouterr()
    assert predict_command(None, paths, as_json=True, model_name="cg", balanced=True) == 0
    rows = json.loads(capsys.readouterr().out)
    for i, row in enumerate(rows):
        g = np.sqrt([each[0][i]["probs"][n] * each[1][i]["probs"][n] for n in names])
        np.testing.assert_allclose([row["probs"][n] for n in names], g / g.sum(), atol=1e-3)
        mean = [(each[0][i]["probs"][n] + each[1][i]["probs"][n]) / 2 for n in names]
        assert not np.allclose([row["probs"][n] for n in names], mean, atol=1e-4)
    # a committee packaged from a weighted ensemble (`ensemble --weights 1,3`) records the
    # weights, and predict --model combines by them: b counts three times
    (ens / "ensemble_summary.json").write_text(json.dumps(summary | {"weights": [1.0, 3.0]}))
    cw = package.package_committee("cw", ["a", "b"], loso=ens, root=root)
    assert json.loads((cw / "committee.json").read_text()) == {
        "members": ["a", "b"],
        "weights": [1.0, 3.0],
    }
    card = (cw / "MODEL_CARD.md").read_text()
    assert "each member weighted as listed" in card and "- `b` (weight 3): A tiny" in card
    assert shipped.shipped_weights("cw", root) == [1.0, 3.0]
    assert shipped.shipped_weights("c", root) is None and shipped.shipped_weights("a", root) is None
    capsys.readouterr()
    assert predict_command(None, paths, as_json=True, model_name="cw", balanced=True) == 0
    rows = json.loads(capsys.readouterr().out)
    for i, row in enumerate(rows):
        w = [(each[0][i]["probs"][n] + 3 * each[1][i]["probs"][n]) / 4 for n in names]
        np.testing.assert_allclose([row["probs"][n] for n in names], w, atol=1e-3)
    # --weights overrides the shipped ones: 1,0 is member a alone
    assert (
        predict_command(None, paths, as_json=True, model_name="cw", balanced=True, weights="1,0")
        == 0
    )
    rows = json.loads(capsys.readouterr().out)
    for i, row in enumerate(rows):
        np.testing.assert_allclose(
            [row["probs"][n] for n in names], [each[0][i]["probs"][n] for n in names], atol=1e-3
        )
    other = tmp_path / "ens_w2"
    shutil.copytree(ens, other)
    (other / "ensemble_summary.json").write_text(json.dumps(summary | {"weights": [2.0, 1.0]}))
    with pytest.raises(ConfigError, match="different run weights"):
        package.package_committee("cx", ["a", "b"], loso=ens, seeds=other, root=root)
    (other / "ensemble_summary.json").write_text(json.dumps(summary | {"weights": [1, 1, 1]}))
    with pytest.raises(ConfigError, match="its ensembles weigh 3 runs, but the committee has 2"):
        package.package_committee("cx", ["a", "b"], loso=other, root=root)
    shutil.rmtree(cw)
    (folder / "committee.json").unlink()  # not a committee any more, for what follows
    shutil.rmtree(folder)
    with pytest.raises(ConfigError, match="needs two or more members"):
        package.package_committee("d", ["a"], root=root)
    with pytest.raises(ConfigError, match="its member 'c' is a committee"):
        package.package_committee("d", ["a", "c"], root=root)
    info = json.loads((root / "b" / "run_info.json").read_text())
    info["data"]["labels"] = info["data"]["labels"][::-1]
    (root / "b" / "run_info.json").write_text(json.dumps(info))
    with pytest.raises(ConfigError, match="'b' has classes"):
        package.package_committee("d", ["a", "b"], root=root)
    with pytest.raises(ConfigError, match="no shipped model 'e'"):
        package.package_committee("d", ["a", "e"], root=root)


def test_exported_model_gives_the_probabilities_of_predict(packaged, demo_corpus_dir, tmp_path):
    from ser_jax.serving.export import export_model, exported_probabilities, load_exported

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

    from ser_jax.serving.predict import predict_command

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
    assert DEFAULT_MODEL in names and len(names) <= 3, names  # superseded models leave
    # every model: those shipped by name and the members a committee keeps in its folder
    models = sorted({m for name in names for m in shipped_members(name)})
    for name in names:
        assert card_summary(model_dir(name)) != "(no model card)"
    for name in models:
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


def test_shipped_models_as_a_committee(emodb_dir, capsys):
    """``predict --model A,B``: each file's probabilities are the shipped models' own averaged
    (every shipped model, or the default one twice when only one is shipped); an unknown name
    is refused, naming it, and a committee has no window timeline."""
    from ser_jax.errors import ConfigError
    from ser_jax.serving.predict import predict_command, predict_files

    names = sorted({m for n in shipped_models() for m in shipped_members(n)})  # every model
    members = names if len(names) > 1 else [names[0], names[0]]
    paths = [str(p) for p in sorted((emodb_dir / "wav").glob("*.wav"))[:3]]
    alone = [predict_files(load_shipped(n), paths) for n in members]
    assert predict_command(None, paths, as_json=True, model_name=",".join(members)) == 0
    rows = json.loads(capsys.readouterr().out)
    labels = list(rows[0]["probs"])
    for i, row in enumerate(rows):
        want = np.mean([[a[i]["probs"][k] for k in labels] for a in alone], axis=0)
        np.testing.assert_allclose([row["probs"][k] for k in labels], want, atol=2e-5)
        assert row["label"] == labels[int(np.argmax(want))]
    # a shipped weighted committee: the weighted mean of its members' own probabilities
    weighted = [n for n in shipped_models() if shipped_weights(n) is not None]
    assert weighted, "the package ships a weighted committee"
    for name in weighted:
        weights, semitones = shipped_weights(name), shipped_semitones(name)
        assert predict_command(None, paths, as_json=True, model_name=name) == 0
        rows = json.loads(capsys.readouterr().out)
        of = shipped_members(name)
        # each member's own probabilities, with the committee's own test-time warps
        views = {m: predict_files(load_shipped(m), paths, semitones=semitones) for m in of}
        for i, row in enumerate(rows):
            each = [[views[m][i]["probs"][k] for k in labels] for m in of]
            want = np.average(each, axis=0, weights=weights)
            np.testing.assert_allclose([row["probs"][k] for k in labels], want, atol=2e-5)
    with pytest.raises(ConfigError, match="no shipped model 'nope'"):
        predict_command(None, paths, as_json=True, model_name=f"{names[0]},nope")
    with pytest.raises(ConfigError, match="a committee of 2 models has no timeline"):
        predict_command(
            None, paths, as_json=True, model_name=f"{names[0]},{names[0]}", timeline="t.png"
        )


def test_release_config_is_the_best_config_trained_on_every_file():
    """The shipped recipe differs from experiments/configs/best.py only in its split and its
    epoch choice, so the best config's LOSO and seed-protocol figures describe it."""
    import importlib.util

    from ser_jax.research.package import recipe_differences

    def load(name):
        spec = importlib.util.spec_from_file_location(name, REPO / "experiments/configs" / name)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return json.loads(mod.get_config().to_json())

    best, release = load("best.py"), load("release.py")
    assert release["data"]["split"] == "all" and release["train"]["select"] == "last"
    assert recipe_differences(release, best) == []
    best["model"]["filters"] = [32, 32, 64, 128]
    best["train"]["ema_decay"] = 0.995
    assert recipe_differences(release, best) == ["model.filters", "train.ema_decay"]


def test_every_preset_resolves_and_committee_members_change_only_their_model(monkeypatch):
    """Each experiment config under experiments/configs (and its archive/) passes the checks
    a run applies before it trains (known fields, valid choices); the committee's member
    presets train as their base preset does and differ from it only in the fields their
    docstrings name."""
    import importlib.util

    from ser_jax.research.package import recipe_differences
    from ser_jax.spec import resolve

    monkeypatch.setenv("SER_EMODB_DIR", "/nowhere")  # presets read it; resolve needs no data

    folders = (REPO / "experiments/configs", REPO / "experiments/configs/archive")

    def load(name):
        path = next(f / name for f in folders if (f / name).exists())
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod.get_config()

    presets = sorted(p.name for f in folders for p in f.glob("*.py"))
    members = {
        "bilstm_attention.py",
        "functionals_pitch.py",
        "functionals_mfcc_shuffled.py",
        "twoview_functionals.py",
        "functionals_mfcc_shuffled_pitch.py",
    }
    assert members | {"best.py", "functionals_mfcc.py"} <= set(presets)
    for name in presets:
        spec = resolve(load(name))
        assert spec.name == load(name).name, name

    def as_json(name):
        return json.loads(load(name).to_json())

    assert recipe_differences(as_json("bilstm_attention.py"), as_json("best.py")) == [
        "model.bidirectional",
        "model.lstm_hidden",
        "model.pooling",
    ]
    assert recipe_differences(as_json("functionals_pitch.py"), as_json("functionals.py")) == [
        "frontend.pitch",
        "model.track_channels",
    ]
    shuffled = as_json("functionals_mfcc_shuffled.py")
    assert recipe_differences(shuffled, as_json("functionals_mfcc.py")) == [
        "data.speaker_batches",
        "train.batch_size",
    ]
    assert recipe_differences(as_json("twoview_functionals.py"), as_json("best.py")) == [
        "frontend.clip_channel",
        "frontend.normalize",
        "model.functionals",
    ]
    with_pitch = as_json("functionals_mfcc_shuffled_pitch.py")
    assert recipe_differences(with_pitch, shuffled) == ["frontend.pitch", "model.track_channels"]
    # the feature cache says where the features are computed, not what they are: a run made
    # before the presets turned it on trained the same recipe
    assert with_pitch["train"]["cache_features"] is True
    uncached = dict(with_pitch, train=dict(with_pitch["train"], cache_features=False))
    assert recipe_differences(with_pitch, uncached) == []
    # the sixth round's best row, as a preset: exactly its command's overrides
    assert recipe_differences(as_json("cepstral_vtlp.py"), with_pitch) == [
        "augment.copies",
        "augment.mode",
        "augment.pitch_shift_prob",
        "augment.semitones",
        "model.statistics",
    ]


def test_model_card_states_the_held_out_figures_of_the_same_recipe(trained, tmp_path):
    """The card reads a cv workdir's cv_summary.json and checks that its runs trained the
    shipped run's recipe; a workdir of another recipe is refused, naming the field."""
    from ser_jax.errors import ConfigError
    from ser_jax.research.package import model_card

    workdir, _ = trained
    loso = tmp_path / "loso"
    for fold, speaker in enumerate(("01", "02")):
        run = loso / f"fold{fold}-{speaker}" / "seed0"
        run.mkdir(parents=True)
        config = json.loads((workdir / "config.json").read_text())
        config["data"].update(split="loso", fold=fold)  # a split: the same recipe
        config["train"]["select"] = "val_uar"
        if fold == 0:  # made before these fields existed: each counts with its default (the
            del config["data"]["trim_silence"]  # tuple default equals the JSON list)
            del config["model"]["mixstyle_blocks"]
        (run / "config.json").write_text(json.dumps(config))
        (run / "run_info.json").write_text((workdir / "run_info.json").read_text())
    ms = lambda m, s, n: {"mean": m, "std": s, "n": n}  # noqa: E731
    (loso / "cv_summary.json").write_text(
        json.dumps(
            {
                "command": "ser-jax cv --config C --workdir loso",
                "speakers": ["01", "02"],
                "seeds": [0],
                "pooled": {
                    "test_uar": ms(0.6831, 0.0, 1),
                    "test_accuracy": ms(0.7072, 0.0, 1),
                    "test_macro_f1": ms(0.6702, 0.0, 1),
                },
                "fold_mean": {
                    "test_uar": ms(0.667, 0.078, 2),
                    "test_accuracy": ms(0.69, 0.05, 2),
                },
            }
        )
    )
    card = model_card(workdir, name="tiny", loso=loso)
    commit = (json.loads((workdir / "run_info.json").read_text()).get("git_commit") or "?")[:10]
    config_name = json.loads((workdir / "config.json").read_text())["name"]
    assert f"speech emotion classifier (config `{config_name}`; 7 acted emotions" in card
    line = next(x for x in card.splitlines() if x.startswith("- Leave-one-speaker-out"))
    assert "over the 2 speakers" in line and "1 seed," in line
    assert "(each fold selects its epoch on the next speaker (val_uar))" in line
    assert "UAR 0.683, accuracy 0.707" in line and "fold runs: UAR 0.667 ± 0.078" in line
    assert f"Made by commit {commit}" in line and "`ser-jax cv --config C --workdir loso`" in line
    assert "No seed-protocol run of this config was given" in card
    assert "No leave-one-speaker-out run" not in card
    assert "speaker adaptation" not in card  # the summary has no such figures
    summary = json.loads((loso / "cv_summary.json").read_text())
    summary["pooled_speaker_bn"] = {"test_uar": ms(0.78, 0.0, 1), "test_accuracy": ms(0.8, 0.0, 1)}
    (loso / "cv_summary.json").write_text(json.dumps(summary))
    adapted = model_card(workdir, name="tiny", loso=loso)
    line = next(x for x in adapted.splitlines() if "speaker adaptation" in x)
    assert "BatchNorm statistics of its own clips" in line
    assert "pooled UAR 0.780, accuracy 0.800" in line

    config = json.loads((loso / "fold1-02" / "seed0" / "config.json").read_text())
    config["model"]["lstm_hidden"] += 8
    (loso / "fold1-02" / "seed0" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=r"fold1-02/seed0: trained another recipe .*lstm_hidden"):
        model_card(workdir, name="tiny", loso=loso)
