"""Config → splits in memory: corpus resolution, skipped files reported, TFDS as a corpus."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from conftest import tiny_config

from ser_jax.data.prepare import prepare
from ser_jax.errors import AudioDecodeError, ConfigError, ManifestError


def _folder_corpus(demo_corpus_dir, tmp_path, n=40):
    root = tmp_path / "corpus"
    root.mkdir()
    for f in sorted(demo_corpus_dir.glob("*.wav"))[:n]:
        shutil.copy(f, root / f.name)
    return root


def test_bad_files_are_reported_not_dropped_and_strict_stops(demo_corpus_dir, tmp_path):
    root = _folder_corpus(demo_corpus_dir, tmp_path, n=168)
    (root / "01a01Wz.wav").write_text("not audio")  # a valid Emo-DB name, broken content
    (root / "README.wav").write_bytes(b"")  # a name that does not parse
    cfg = tiny_config()
    cfg.data.corpus, cfg.data.root = "emodb", str(root)
    data = prepare(cfg, progress=False)
    reasons = {s.path.split("/")[-1]: s.reason for s in data.skipped}
    assert set(reasons) == {"01a01Wz.wav", "README.wav"}
    assert len(data.train) + len(data.val) + len(data.test) == 168
    assert data.summary()["skipped"][0]["reason"]
    cfg.data.strict = True
    # strict: the unparsable name stops the listing before any audio is decoded ...
    with pytest.raises(ManifestError, match="README.wav.*not Emo-DB"):
        prepare(cfg, progress=False)
    # ... and without it, the broken content stops the loading, naming the file and the cause
    (root / "README.wav").unlink()
    with pytest.raises(AudioDecodeError, match="01a01Wz.wav: .*not audio"):
        prepare(cfg, progress=False)


def test_unknown_split_and_missing_root_name_the_setting(tmp_path):
    cfg = tiny_config()
    cfg.data.split = "random"
    with pytest.raises(ConfigError, match="data.split='random'"):
        prepare(cfg, progress=False)
    cfg = tiny_config()
    cfg.data.corpus, cfg.data.root = "emodb", str(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="data.root=.*does not exist"):
        prepare(cfg, progress=False)


def test_tfds_dataset_is_a_corpus_like_any_other(demo_corpus_dir, tmp_path):
    pytest.importorskip(
        "tensorflow", reason="the TFDS path needs the 'tfds' extra (CI installs it)"
    )
    from ser_jax.data.tfds_emodb import build_emodb_tfds

    root = _folder_corpus(demo_corpus_dir, tmp_path, n=168)
    build_emodb_tfds(root, tmp_path / "tfds")
    direct = tiny_config()
    direct.data.corpus, direct.data.root = "emodb", str(root)
    via_tfds = tiny_config()
    via_tfds.data.corpus, via_tfds.data.root = "tfds:emodb", str(tmp_path / "tfds")
    a, b = prepare(direct, progress=False), prepare(via_tfds, progress=False)
    assert a.label_names == b.label_names
    for part in ("train", "val", "test"):
        ca, cb = getattr(a, part), getattr(b, part)
        assert sorted(u.utt_id for u in ca.utts) == sorted(u.utt_id for u in cb.utts)
        by_id = {u.utt_id: w for u, w in zip(cb.utts, cb.waves, strict=True)}
        for u, w in zip(ca.utts, ca.waves, strict=True):
            np.testing.assert_allclose(by_id[u.utt_id], w, atol=1e-6)


def test_demo_corpus_race_leaves_nothing_behind_and_real_errors_surface(tmp_path, monkeypatch):
    from ser_jax.data import synthetic
    from ser_jax.data.prepare import demo_corpus_root

    monkeypatch.setenv("SER_JAX_CACHE", str(tmp_path / "cache"))
    real = synthetic.make_demo_corpus
    cfg = tiny_config()

    def racing(out, **kw):  # another process completes the same corpus while this one writes
        root = out.with_name(out.name.rsplit(".tmp", 1)[0])
        real(root, **kw)
        (root / ".complete").write_text("ok\n")
        return real(out, **kw)

    monkeypatch.setattr(synthetic, "make_demo_corpus", racing)
    root = demo_corpus_root(cfg.data)
    assert (root / ".complete").exists()
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [root.name]  # no temp folder

    # Not a race: the target cannot be created (a file is in the way). Say so, clean up.
    monkeypatch.setattr(synthetic, "make_demo_corpus", real)
    monkeypatch.setenv("SER_JAX_CACHE", str(tmp_path / "cache2"))
    blocked = tmp_path / "cache2" / root.name
    blocked.parent.mkdir()
    blocked.write_text("a file where the corpus folder should go")
    with pytest.raises(ConfigError, match="could not write the demo corpus"):
        demo_corpus_root(cfg.data)
    assert [p.name for p in (tmp_path / "cache2").iterdir()] == [root.name]


def test_validation_files_train_when_asked_and_the_test_files_stay(demo_corpus_dir, tmp_path):
    cfg = tiny_config()
    plain = prepare(cfg, progress=False)
    cfg.data.train_on_val = True
    merged = prepare(cfg, progress=False)
    assert len(merged.val) == 0 and len(plain.val) > 0
    assert [u.path for u in merged.test.utts] == [u.path for u in plain.test.utts]
    assert sorted(u.path for u in merged.train.utts) == sorted(
        u.path for u in [*plain.train.utts, *plain.val.utts]
    )
    assert merged.split.name.endswith("+val-trains")
