"""openSMILE functionals per clip, cached by audio content and feature set.

``opensmile_features(waves, sample_rate, feature_set)`` → ``(clips, features)`` float32: one
vector of openSMILE's functionals (``ComParE_2016``: 6,373; ``eGeMAPSv02``: 88) per clip, the
whole clip (no crop). Each vector is cached in ``<cache>/<feature_set>/<key[:2]>/<key>.npy``
where ``key`` is the SHA-256 of the clip's float32 samples, its sample rate, the feature set
and the openSMILE version: the same audio is never extracted twice, a changed clip or
library never reads a stale vector. A cached file that cannot be read is extracted again and
rewritten (written atomically, so a killed job leaves none half-written).

openSMILE is the optional ``opensmile`` extra; without it, asking for features is refused
in one line naming the install.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ser_jax.data.prepare import cache_dir
from ser_jax.errors import ConfigError
from ser_jax.models.opensmile import FEATURE_SETS


def _opensmile() -> Any:
    """The openSMILE package, imported when features are asked for (it pulls in pandas and
    audformat: 0.4 s that no neural run, and no process that only trains one, should pay)."""
    try:
        import opensmile
    except ImportError:
        raise ConfigError(
            "model.name='opensmile' needs the openSMILE package (a dependency of ser_jax): pip install 'opensmile>=2.5'"
        ) from None
    return opensmile


def cache_root(given: str = "") -> Path:
    """The feature cache: ``given``, else ``opensmile/`` in the package's cache
    (``$SER_JAX_CACHE``, default ``~/.cache/ser_jax``)."""
    return Path(given) if given else cache_dir() / "opensmile"


def check_feature_set(feature_set: str) -> None:
    """Refuse, in one line, a feature set openSMILE does not have, or a missing extra."""
    _extractor(feature_set)


def _extractor(feature_set: str) -> Any:
    opensmile = _opensmile()
    if feature_set not in FEATURE_SETS:
        raise ConfigError(
            f"model.feature_set={feature_set!r} is not an openSMILE feature set "
            f"({', '.join(FEATURE_SETS)})"
        )
    return opensmile.Smile(
        feature_set=getattr(opensmile.FeatureSet, feature_set),
        feature_level=opensmile.FeatureLevel.Functionals,
    )


def content_key(wave: np.ndarray, sample_rate: int, feature_set: str) -> str:
    """The cache key of one clip: its samples, rate, feature set and openSMILE version."""
    h = hashlib.sha256(np.ascontiguousarray(wave, np.float32).tobytes())
    version = getattr(_opensmile(), "__version__", "none")
    h.update(f"|{int(sample_rate)}|{feature_set}|opensmile {version}".encode())
    return h.hexdigest()


def _read_cached(path: Path, dims: int | None) -> np.ndarray | None:
    try:
        vector = np.load(path)
    except (OSError, ValueError):
        return None
    ok = vector.ndim == 1 and (dims is None or len(vector) == dims) and np.isfinite(vector).all()
    return vector.astype(np.float32) if ok else None


def _write_cached(path: Path, vector: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")
    np.save(tmp, vector)
    tmp.replace(path)


def opensmile_features(
    waves: Sequence[np.ndarray],
    sample_rate: int,
    feature_set: str = "ComParE_2016",
    cache: str = "",
    progress: bool = False,
) -> np.ndarray:
    """``(len(waves), features)`` float32: each clip's openSMILE functionals, from the cache
    when it holds them (module docstring). A clip too short for openSMILE is refused naming
    its index and length."""
    smile = _extractor(feature_set)
    root = cache_root(cache) / feature_set
    dims = len(smile.feature_names)
    out = np.empty((len(waves), dims), np.float32)
    for i, wave in enumerate(tqdm(waves, desc=f"openSMILE {feature_set}", disable=not progress)):
        key = content_key(wave, sample_rate, feature_set)
        path = root / key[:2] / f"{key}.npy"
        vector = _read_cached(path, dims) if path.exists() else None
        if vector is None:
            values = smile.process_signal(np.asarray(wave, np.float32), int(sample_rate))
            vector = np.nan_to_num(values.to_numpy(np.float32).reshape(-1))
            if vector.shape != (dims,):
                raise ConfigError(
                    f"clip {i} ({len(wave)} samples): openSMILE gave {vector.size} values, "
                    f"not {dims} (too short to describe?)"
                )
            _write_cached(path, vector)
        out[i] = vector
    return out


def config_features(config: Any, waves: Sequence[np.ndarray], progress: bool = False) -> np.ndarray:
    """``opensmile_features`` of ``waves`` with a run config's settings (``data.sample_rate``,
    ``model.feature_set``, ``model.feature_cache``): what training and scoring both read."""
    m = config.model
    return opensmile_features(
        waves,
        int(config.data.sample_rate),
        str(m.feature_set),
        str(m.get("feature_cache", "")),
        progress=progress,
    )
