"""Reading config sections into the static, hashable settings dataclasses of each stage.

``FrontendConfig`` and ``AugmentConfig`` (and the model registry) take their fields from an
``ml_collections.ConfigDict`` section or a plain mapping; these helpers convert the values
and name the setting when one cannot be used.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from ser_jax.errors import ConfigError


def as_dict(cfg: Any, section: str) -> dict[str, Any]:
    """A config section (``ConfigDict`` or mapping) as a plain dict."""
    if hasattr(cfg, "to_dict"):
        cfg = cfg.to_dict()
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"{section}: expected a mapping or ConfigDict, got {type(cfg).__name__}")
    return dict(cfg)


def as_int(value: Any) -> int:
    if isinstance(value, bool) or float(value) != int(value):
        raise ValueError("must be an integer")
    return int(value)


def as_bool(value: Any) -> bool:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError("must be true or false")


def closest(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest known name, or ``""``."""
    match = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def unknown_setting(section: str, key: str, known: Iterable[str]) -> ConfigError:
    known = sorted(known)
    return ConfigError(f"{section}.{key}: unknown setting{closest(key, known)}; known: {known}")


def optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def from_section(
    cls: type,
    cfg: Any,
    section: str,
    converters: Mapping[str, Callable[[Any], Any]],
    default: Callable[[Any], Any],
) -> Any:
    """``cls(**fields)`` from a config section: each value converted by ``converters[key]``
    (else ``default``); an unknown key or a value that does not convert names the setting."""
    fields = as_dict(cfg, section)
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in fields.items():
        if key not in known:
            raise unknown_setting(section, key, known)
        try:
            kwargs[key] = converters.get(key, default)(value)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{section}.{key}={value!r}: {e}") from e
    return cls(**kwargs)
