"""Settings that cannot train are refused by ``spec.resolve`` before any work starts, each with
one line naming the field, its value and the cause (no data, no training: cheap)."""

from __future__ import annotations

import pytest

from ser_jax.config import get_config
from ser_jax.errors import ConfigError
from ser_jax.protocols import cross_validate
from ser_jax.spec import check_settings, resolve
from ser_jax.training.train import train_and_evaluate


def _config(section: str, field: str, value, **train):
    config = get_config()
    config.train.update(train)
    config[section][field] = value
    return config


@pytest.mark.parametrize(
    ("section", "field", "value", "train", "message"),
    [
        ("train", "learning_rate", -1.0, {}, "train.learning_rate=-1.0: must be a positive number"),
        ("train", "learning_rate", 0.0, {}, "train.learning_rate=0.0: must be a positive number"),
        ("train", "learning_rate", float("nan"), {}, "train.learning_rate=nan: must be a finite"),
        ("train", "learning_rate", float("inf"), {}, "train.learning_rate=inf: must be a finite"),
        ("train", "epochs", 0, {}, "train.epochs=0: must be a whole number >= 1"),
        ("train", "epochs", -3, {}, "train.epochs=-3: must be a whole number >= 1"),
        ("train", "batch_size", 0, {}, "train.batch_size=0: must be a whole number >= 1"),
        ("train", "weight_decay", -0.1, {}, "train.weight_decay=-0.1: must be >= 0"),
        ("train", "grad_clip", -1.0, {}, "train.grad_clip=-1.0: must be >= 0"),
        ("train", "label_smoothing", 1.0, {}, r"train.label_smoothing=1.0: must be in \[0, 1\)"),
        ("train", "label_smoothing", -0.1, {}, r"train.label_smoothing=-0.1: must be in \[0, 1\)"),
        ("model", "dropout", 1.0, {}, r"model.dropout=1.0: must be in \[0, 1\)"),
        ("model", "dropout", -0.2, {}, r"model.dropout=-0.2: must be in \[0, 1\)"),
        ("train", "early_stopping_patience", -1, {}, "train.early_stopping_patience=-1: must be"),
        ("train", "checkpoint_every_steps", -5, {}, "train.checkpoint_every_steps=-5: must be"),
        (
            "train",
            "warmup_epochs",
            -1.0,
            {"schedule": "cosine"},
            "train.warmup_epochs=-1.0: must be >= 0",
        ),
        (
            "train",
            "drop_factor",
            0.0,
            {"schedule": "piecewise"},
            "train.drop_factor=0.0: must be a positive number",
        ),
        (
            "train",
            "drop_factor",
            -0.5,
            {"schedule": "piecewise"},
            "train.drop_factor=-0.5: must be a positive number",
        ),
        (
            "train",
            "drop_period",
            0,
            {"schedule": "piecewise"},
            "train.drop_period=0: must be a positive number",
        ),
    ],
)
def test_a_value_that_cannot_train_is_refused_naming_field_value_and_cause(
    section, field, value, train, message
):
    config = _config(section, field, value, **train)
    with pytest.raises(ConfigError, match=f"^{message}") as err:
        resolve(config)
    assert "\n" not in str(err.value)


def test_a_value_that_is_not_a_number_is_refused():
    config = get_config()
    del config.train["learning_rate"]  # the ConfigDict keeps a field's type: a new field
    config.train.learning_rate = "fast"
    with pytest.raises(ConfigError, match="^train.learning_rate='fast': not a number$"):
        check_settings(config)


@pytest.mark.parametrize(
    ("field", "value", "schedule"),
    [
        # a schedule's own settings are only checked under that schedule
        ("warmup_epochs", -1.0, "constant"),
        ("drop_factor", 0.0, "cosine"),
        ("drop_period", 0, "constant"),
        # edge values that train
        ("drop_factor", 1e30, "piecewise"),  # a rising rate: odd, but it trains
        ("warmup_epochs", 100.0, "cosine"),  # a warm-up longer than the run: still trains
        ("label_smoothing", 0.0, "constant"),
        ("weight_decay", 0.0, "constant"),
    ],
)
def test_values_that_train_are_accepted(field, value, schedule):
    resolve(_config("train", field, value, schedule=schedule))


def test_the_default_config_and_the_edges_of_each_range_are_accepted():
    resolve(get_config())
    config = get_config()
    config.train.epochs, config.train.batch_size = 1, 1
    config.train.learning_rate = 1e-9
    config.train.early_stopping_patience, config.train.checkpoint_every_steps = 0, 0
    config.model.dropout, config.train.label_smoothing = 0.99, 0.99
    resolve(config)


def test_a_config_lacking_a_checked_field_is_not_refused_for_it():
    # older runs' configs (restored for scoring) may predate a field
    config = get_config()
    del config.model["dropout"]
    check_settings(config)


def test_bad_settings_are_refused_before_any_data_is_read(tmp_path):
    config = get_config()
    config.data.corpus, config.data.root = "folder", str(tmp_path / "no-such-corpus")
    config.train.learning_rate = -1.0
    with pytest.raises(ConfigError, match="^train.learning_rate=-1.0: must be a positive number"):
        train_and_evaluate(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # not even the run's folder and lock


def test_cross_validation_refuses_bad_settings_before_reading_the_corpus(tmp_path):
    config = get_config()
    config.data.corpus, config.data.root = "folder", str(tmp_path / "no-such-corpus")
    config.train.epochs = 0
    with pytest.raises(ConfigError, match="^train.epochs=0: "):
        cross_validate(config, tmp_path / "cv")
    assert not (tmp_path / "cv").exists()
