"""The model registry: ``model.name`` → a factory, and each family's fields of the ``model``
config section.

A family registers ``fn(model_cfg, num_classes) -> nn.Module`` with
``@register_model("name", fields=config_fields)``, where ``config_fields()`` returns the
fields it adds to the ``model`` section with their defaults (a fresh dict each call).
:func:`model_section` assembles the section: the fields every family reads
(:func:`shared_fields`) and then each family's own, in the order the families registered.
The section stays flat (``model.lstm_hidden``, not ``model.cnn_lstm.lstm_hidden``), so every
command line and every saved ``config.json`` keeps its meaning; a field is declared once, by
the family that owns it, and other families may read it (the TDNN reads the CNN-LSTM's
``filters`` and ``dilations`` and the functionals model's ``statistics``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import ml_collections

from ser_jax.errors import ConfigError

ModelFactory = Callable[[Any, int], nn.Module]
FieldsFn = Callable[[], dict[str, Any]]
MODELS: dict[str, ModelFactory] = {}
FIELDS: dict[str, FieldsFn] = {}
# Families without a Flax network (a linear classifier on features computed outside jit,
# trained by ser_jax.classical): their fields join the section, create_model refuses them.
FEATURE_MODELS: dict[str, str] = {}


def shared_fields() -> dict[str, Any]:
    """The ``model`` fields every family reads, with their defaults."""
    return {
        "name": "cnn_lstm",  # a registered model: cnn_lstm | functionals | tdnn | opensmile
        "activation": "relu",  # relu | elu | gelu
        "dropout": 0.0,
        "bn_momentum": 0.9,  # Flax's default 0.99 lags far behind at ~10 steps an epoch
        # The last channels of the input are per-frame tracks (the pitch channels of
        # frontend.pitch: 3, or 2 with pitch_level=False), summarised once, not per band: by
        # the functionals model and the TDNN; the CNN-LSTM reads them in its statistics branch
        # only (model.functionals > 0), its convolutions see the other channels
        "track_channels": 0,
    }


def register_model(
    name: str, fields: FieldsFn | None = None
) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator: register ``fn(model_cfg, num_classes) -> nn.Module`` as ``model.name``, and
    ``fields()`` (the family's own ``model`` fields and defaults) for :func:`model_section`."""

    def decorate(fn: ModelFactory) -> ModelFactory:
        MODELS[name] = fn
        if fields is not None:
            FIELDS[name] = fields
        return fn

    return decorate


def register_feature_model(name: str, fields: FieldsFn, trained_by: str) -> None:
    """Register a family without a network (``trained_by`` names what trains it) and its
    ``model`` fields."""
    FEATURE_MODELS[name] = trained_by
    FIELDS[name] = fields


def is_feature_model(model_cfg: Any) -> bool:
    """Whether ``model_cfg.name`` is a family without a network (``register_feature_model``)."""
    return str(model_cfg.get("name", "cnn_lstm")) in FEATURE_MODELS


def create_model(model_cfg: Any, num_classes: int) -> nn.Module:
    """Build the module named by ``model_cfg.name`` from an ml_collections config section."""
    name = str(model_cfg.get("name", "cnn_lstm"))
    if name in FEATURE_MODELS:
        raise ConfigError(
            f"model.name={name!r} has no network: it is a linear classifier on features "
            f"computed outside jit, trained by {FEATURE_MODELS[name]}"
        )
    if name not in MODELS:
        raise ConfigError(f"model.name={name!r} is not a known model (known: {sorted(MODELS)})")
    return MODELS[name](model_cfg, num_classes)


def model_fields() -> dict[str, Any]:
    """Every field of the ``model`` section and its default: the shared ones, then each
    registered family's own; a field declared twice is a programming error."""
    out = shared_fields()
    owner = dict.fromkeys(out, "shared")
    for family, fields in FIELDS.items():
        for key, value in fields().items():
            if key in out:
                raise ValueError(
                    f"model.{key} is declared by both {owner[key]!r} and {family!r}: "
                    "declare a field once, in the family that owns it"
                )
            out[key], owner[key] = value, family
    return out


def model_section() -> ml_collections.ConfigDict:
    """The ``model`` config section (flat) with every registered family's defaults."""
    section = ml_collections.ConfigDict()
    for key, value in model_fields().items():
        section[key] = value
    return section
