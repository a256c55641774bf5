"""``ser-jax export`` (StableHLO) of a committee: the default model, its four members with their
weights and test-time warps, is one function that gives ``ser-jax predict``'s probabilities; a
committee that one function of one waveform cannot serve is refused in one line."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from ml_collections import ConfigDict

from ser_jax.errors import ConfigError
from ser_jax.serving.export import export_model, exported_probabilities, load_exported
from ser_jax.serving.predict import predict_command
from ser_jax.serving.shipped import DEFAULT_MODEL, load_committee

ALL_JAX = "emodb-committee-jax"  # the shipped committee whose members are all JAX functions


def test_the_all_jax_committee_exports_as_one_function(emodb_dir, tmp_path, capsys):
    committee = load_committee(ALL_JAX)
    fn, meta = load_exported(export_model(committee, tmp_path / "ser.jaxexport"))
    assert meta["weights"] == list(committee.weights) and meta["tta_semitones"] == [-6.0, 6.0]
    assert len(meta["members"]) == len(committee.members) and "step" not in meta
    paths = [str(p) for p in sorted((emodb_dir / "wav").glob("*.wav"))[:2]]
    assert predict_command(None, paths, as_json=True, model_name=ALL_JAX) == 0  # its own way
    rows = json.loads(capsys.readouterr().out)
    want = np.array([[r["probs"][k] for k in meta["labels"]] for r in rows])
    waves = [committee.members[0].load_audio(p) for p in paths]
    got = exported_probabilities(fn, meta, waves, batch_size=len(waves))
    np.testing.assert_allclose(got, want, atol=2e-5)  # predict rounds to 1e-5


def test_a_committee_one_function_cannot_serve_is_refused_in_one_line(tmp_path):
    committee = load_committee(ALL_JAX)
    config = ConfigDict(committee.members[2].config.to_dict())
    config.data.max_seconds = 3.0
    shorter = dataclasses.replace(committee.members[2], config=config)
    members = (*committee.members[:2], shorter, *committee.members[3:])
    cases = [
        (
            dataclasses.replace(committee, members=members),
            r"emodb-committee-jax: its members differ in max_samples \(emodb-cnn-lstm: 64000, "
            r"emodb-functionals-pitch: 48000\); .* export the members one by one",
        ),
        (dataclasses.replace(committee, rule="geometric"), r"rule='geometric'"),
        (  # the default: its openSMILE member (ser_jax.classical) computes outside JAX
            load_committee(DEFAULT_MODEL),
            r"emodb-opensmile: model.name='opensmile' computes its features outside JAX.*"
            r"emodb-committee-jax",
        ),
    ]
    for target, why in cases:
        with pytest.raises(ConfigError, match=why) as err:
            export_model(target, tmp_path / "never.jaxexport")
        assert "\n" not in str(err.value)
    assert not Path(tmp_path / "never.jaxexport").exists()
