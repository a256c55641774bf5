"""Which config fields make a recipe: one classification of the fields that do not.

A recipe is what is trained and how. Three groups of fields leave it unchanged:

- ``DRAW``: one draw of the recipe, the seed and which speakers or fold it holds out. Models
  trained together in one compiled step (``train.members``) may differ in these only.
- ``SPLIT``: how the files are split and the epoch selected.
- ``BOOKKEEPING``: names, paths, evaluation, progress, logging, checkpoints, how the members
  are run and where the features are computed.

An entry ending in ``.`` (``eval.``) stands for a whole section. ``config_differences`` lists
the dotted fields in which two configs differ, leaving out the groups it is told to ignore: the
trainer checks its members ignoring ``DRAW``, a model card checks that its held-out runs
trained the shipped recipe ignoring all three.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

DRAW = ("seed", "data.fold", "data.split_seed", "data.test_speakers", "data.val_speakers")
SPLIT = (
    "data.split",
    "data.fractions",
    "data.val_count",
    "data.train_on_val",
    "data.folds",
    "train.select",
    "train.early_stopping_patience",
    "train.eval_every_epochs",
)
BOOKKEEPING = (
    "name",
    "eval.",
    "data.root",
    "data.strict",
    "train.members",
    "train.members_loop",
    "train.seed_offset",  # another draw of the same recipe, like another seed
    "train.cache_features",  # where the features are computed, not what they are
    "model.feature_cache",  # where openSMILE's features are cached, not what they are
    "model.conv_grad",  # the float32 summation order of the kernel gradient, not the recipe
    "model.first_block",  # likewise: the first block's training pass fused or not
    "train.progress",
    "train.log_every_steps",
    "train.checkpoint_every_steps",
    "train.keep_checkpoints",
)


def _listed(value: Any) -> Any:
    """A default's tuple and a JSON run's list are one value."""
    return [_listed(x) for x in value] if isinstance(value, tuple | list) else value


def flat_config(config: Any, prefix: str = "") -> dict[str, Any]:
    """``{dotted field: value}`` of a config (a ``ConfigDict`` or its ``to_dict()``), sequences
    as lists."""
    out: dict[str, Any] = {}
    for key in config.keys():
        value = config[key]
        if hasattr(value, "keys"):
            out.update(flat_config(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = _listed(value)
    return out


def in_group(field: str, groups: Sequence[Sequence[str]]) -> bool:
    """``field`` (dotted) is one of ``groups``' entries, or in a section one names (``eval.``)."""
    return any(
        field == entry or (entry.endswith(".") and field.startswith(entry))
        for group in groups
        for entry in group
    )


def config_differences(a: Any, b: Any, ignore: Sequence[Sequence[str]] = ()) -> list[str]:
    """The dotted fields, sorted, in which configs ``a`` and ``b`` differ (a field only one has
    included), but those in the groups of ``ignore`` (``DRAW``, ``SPLIT``, ``BOOKKEEPING``)."""
    fa, fb = flat_config(a), flat_config(b)
    return sorted(
        k for k in set(fa) | set(fb) if not in_group(k, ignore) and fa.get(k) != fb.get(k)
    )
