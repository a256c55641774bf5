"""Models shipped inside the package (``ser_jax/pretrained/<name>/``): listing and loading them.

A shipped model is a small run directory: ``model.msgpack`` (params, BatchNorm and feature
statistics), ``config.json`` (the resolved config), ``run_info.json`` (labels, data, commit),
``results.json``, ``reference_predictions.json`` (the model's probabilities for a few named
Emo-DB files, which a test reproduces) and ``MODEL_CARD.md``.
``ser_jax.serving.restore.load_model`` reads it like any run directory: no orbax, no trainer.

A shipped committee is a folder with ``committee.json`` (its member models: shipped names, or
folders of its own, ``<committee>/<member>/``; and the rule and member weights when it records
them) and its ``MODEL_CARD.md``:
``ser-jax predict --model NAME`` combines the members' probabilities per file
(``shipped_members``, ``shipped_rule``, ``shipped_weights``), each member's own averaged over
the committee's test-time warps when it records them (``shipped_semitones``); ``load_committee``
loads one whole (a :class:`Committee`: what ``ser-jax export`` writes as one function). Making
them (``ser-jax package``) is a research tool: ``ser_jax.research.package``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ser_jax.errors import ConfigError
from ser_jax.evaluation.metrics import combine_probabilities
from ser_jax.serving.restore import MODEL_FILE, LoadedModel, load_model
from ser_jax.spec import check_semitones

PRETRAINED = Path(__file__).parent.parent / "pretrained"  # ser_jax/pretrained
DEFAULT_MODEL = "emodb-committee"
# the shipped committee whose members are all JAX functions (ONNX and StableHLO export it; the
# default's openSMILE member computes its features outside JAX)
ALL_JAX = "emodb-committee-jax"
CARD = "MODEL_CARD.md"
REFERENCE = "reference_predictions.json"
COMMITTEE = "committee.json"


def shipped_models(root: Path | None = None) -> list[str]:
    """Names of the models (and committees) shipped in the package, sorted."""
    root = root or PRETRAINED
    if not root.is_dir():
        return []
    return sorted(
        p.name for p in root.iterdir() if (p / MODEL_FILE).is_file() or (p / COMMITTEE).is_file()
    )


def model_dir(name: str | None = None, root: Path | None = None) -> Path:
    """The folder of a shipped model or committee (the default model when ``name`` is None);
    ``COMMITTEE/MEMBER`` names a member kept inside a committee's folder."""
    root = root or PRETRAINED
    names = shipped_models(root)
    name = name or DEFAULT_MODEL
    owner, _, member = name.partition("/")
    if name in names or (owner in names and member and (root / name / MODEL_FILE).is_file()):
        return root / name
    raise ConfigError(
        f"no shipped model {name!r} (shipped: {', '.join(names) or 'none'}); "
        "train one and package it, or pass --run DIR"
    )


def shipped_members(name: str | None = None, root: Path | None = None) -> list[str]:
    """The shipped models a name stands for: a committee's members (those kept in its own
    folder as ``COMMITTEE/MEMBER``), else the model itself."""
    name = name or DEFAULT_MODEL
    folder = model_dir(name, root)
    if not (folder / COMMITTEE).is_file():
        return [name]
    members = [
        f"{name}/{m}" if (folder / m / MODEL_FILE).is_file() else m
        for m in json.loads((folder / COMMITTEE).read_text())["members"]
    ]
    for member in members:
        if (model_dir(member, root) / COMMITTEE).is_file():
            raise ConfigError(f"committee {folder.name!r}: its member {member!r} is a committee")
    return members


def committee_recipe(name: str | None = None, root: Path | None = None) -> dict[str, Any]:
    """A shipped committee's ``committee.json`` (members, and the rule, weights and test-time
    warps it records), or ``{}`` for a single model."""
    path = model_dir(name, root) / COMMITTEE
    return json.loads(path.read_text()) if path.is_file() else {}


def shipped_rule(name: str | None = None, root: Path | None = None) -> str:
    """How a shipped committee combines its members' probabilities (its ``committee.json``
    ``rule``: ``mean`` when it names none, as committees made before the rule existed); a
    single model: ``mean``."""
    return str(committee_recipe(name, root).get("rule", "mean"))


def shipped_weights(name: str | None = None, root: Path | None = None) -> list[float] | None:
    """A shipped committee's member weights (its ``committee.json`` ``weights``, one a member,
    in order), or None when its members weigh alike (and for a single model)."""
    weights = committee_recipe(name, root).get("weights")
    return None if weights is None else [float(w) for w in weights]


def shipped_semitones(name: str | None = None, root: Path | None = None) -> tuple[float, ...]:
    """A shipped committee's test-time warps (its ``committee.json`` ``tta_semitones``: every
    file also scored warped by each, as the nested choice that made it scored it), or ``()``
    (no warps; a single model)."""
    given = committee_recipe(name, root).get("tta_semitones") or ()
    return check_semitones(given, f"{name or DEFAULT_MODEL}/{COMMITTEE}: tta_semitones")


def card_summary(path: Path) -> str:
    """The summary line of a model card: its first non-empty line after the title."""
    card = path / CARD
    if not card.exists():
        return "(no model card)"
    lines = [x.strip() for x in card.read_text().splitlines()]
    return next((x for x in lines if x and not x.startswith("#")), "(empty model card)")


def models_command() -> None:
    """``ser-jax models``: the shipped models, each with its card's summary line."""
    names = shipped_models()
    if not names:
        print("no models are shipped in this installation")
        return
    for name in names:
        mark = " (default)" if name == DEFAULT_MODEL else ""
        print(f"{name}{mark}: {card_summary(PRETRAINED / name)}")


def load_shipped(name: str | None = None) -> LoadedModel:
    folder = model_dir(name)
    if (folder / COMMITTEE).is_file():
        raise ConfigError(
            f"{folder.name!r} is a committee of shipped models ({', '.join(shipped_members(name))})"
            ": `ser-jax predict --model` scores it; this command takes one model, name a member"
        )
    return load_model(folder)


def is_committee(name: str | None = None, root: Path | None = None) -> bool:
    """The shipped name (None: the default) is a committee (its folder has ``committee.json``)."""
    return (model_dir(name, root) / COMMITTEE).is_file()


@dataclasses.dataclass(frozen=True)
class Committee:
    """A shipped committee loaded whole: its folder, its member models (in ``committee.json``'s
    order) and how ``ser-jax predict --model NAME`` combines them: each member's probabilities
    averaged over the plain clip and its test-time warps (``semitones``), then combined per
    clip by ``rule`` with ``weights`` (``ser_jax.evaluation.metrics.combine_probabilities``)."""

    source: Path
    members: tuple[LoadedModel, ...]
    rule: str = "mean"
    weights: tuple[float, ...] | None = None
    semitones: tuple[float, ...] = ()

    @property
    def label_names(self) -> tuple[str, ...]:
        return self.members[0].label_names

    @property
    def sample_rate(self) -> int:
        """The first member's (an export checks that every member shares it)."""
        return self.members[0].sample_rate

    @property
    def max_samples(self) -> int:
        """The first member's window (an export checks that every member shares it)."""
        return self.members[0].max_samples

    def probabilities(self, waves: Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
        """``(len(waves), classes)``: what ``committee_files`` gives for files, of waveforms
        at the members' sample rate."""
        each = [m.probabilities(waves, batch_size, semitones=self.semitones) for m in self.members]
        return combine_probabilities(each, self.rule, self.weights).astype(np.float32)


def load_committee(name: str | None = None) -> Committee:
    """A shipped committee (None: the default) with its members loaded; a single model is
    refused, naming it (``load_shipped`` loads it)."""
    if not is_committee(name):
        raise ConfigError(f"{name!r} is a single model, not a committee: load_shipped loads it")
    weights = shipped_weights(name)
    return Committee(
        source=model_dir(name),
        members=tuple(load_shipped(m) for m in shipped_members(name)),
        rule=shipped_rule(name),
        weights=None if weights is None else tuple(weights),
        semitones=shipped_semitones(name),
    )


def reference_predictions(path: Path) -> list[dict[str, Any]]:
    return json.loads((path / REFERENCE).read_text())


def parse_weights(text: str, count: int | None, what: str = "--weights") -> list[float]:
    """``"2,1,1"`` → ``[2.0, 1.0, 1.0]``: ``count`` (None: any number of) non-negative
    numbers, not all 0 (a committee's weights as given on the command line)."""
    try:
        weights = [float(x) for x in str(text).split(",")]
    except ValueError:
        raise ConfigError(f"{what}={text!r}: not comma-separated numbers") from None
    if count is not None and len(weights) != count:
        raise ConfigError(
            f"{what}={text!r}: {len(weights)} weights for {count} runs (one a run, in order)"
        )
    if any(not math.isfinite(w) or w < 0 for w in weights) or not any(weights):
        raise ConfigError(f"{what}={text!r}: weights must be finite, >= 0 and not all 0")
    return weights
