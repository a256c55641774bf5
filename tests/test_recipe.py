"""ser_jax.recipe: one classification of the config fields that leave a recipe unchanged."""

from __future__ import annotations

from ser_jax.config import get_config
from ser_jax.recipe import BOOKKEEPING, DRAW, SPLIT, config_differences


def test_config_differences_flattens_and_ignores_groups():
    a = {"seed": 0, "data": {"fold": 1, "split": "loso", "root": "/a"}, "model": {"f": (1, 2)}}
    b = {"seed": 3, "data": {"fold": 2, "split": "speakers", "root": "/b"}, "model": {"f": [1, 2]}}
    b["eval"] = {"speaker_bn": True}  # a field only one config has counts as a difference
    everything = ["data.fold", "data.root", "data.split", "eval.speaker_bn", "seed"]
    assert config_differences(a, b) == everything  # tuples and lists are alike
    assert config_differences(a, b, ignore=(DRAW,)) == [
        "data.root",
        "data.split",
        "eval.speaker_bn",
    ]
    assert config_differences(a, b, ignore=(DRAW, SPLIT)) == ["data.root", "eval.speaker_bn"]
    assert config_differences(a, b, ignore=(DRAW, SPLIT, BOOKKEEPING)) == []  # "eval." a section
    b["model"]["f"] = (1, 3)
    assert config_differences(a, b, ignore=(DRAW, SPLIT, BOOKKEEPING)) == ["model.f"]


def test_config_differences_reads_config_dicts_and_their_dicts_alike():
    a, b = get_config(), get_config()
    b.seed, b.model.dropout = a.seed + 1, 0.5
    assert config_differences(a, b, ignore=(DRAW,)) == ["model.dropout"]
    assert config_differences(a.to_dict(), b, ignore=(DRAW,)) == ["model.dropout"]
    assert config_differences(a, a.to_dict()) == []
