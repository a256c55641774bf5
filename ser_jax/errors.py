"""Typed errors. Each names the file or the setting and the cause."""

from __future__ import annotations


class SerJaxError(Exception):
    """Base class of every error this package raises on purpose."""


class AudioDecodeError(SerJaxError):
    """A file could not be decoded as audio (empty, truncated, not audio, unsupported)."""

    def __init__(self, path: str, cause: str):
        self.path = str(path)
        self.cause = cause
        super().__init__(f"{self.path}: {cause}")


class AudioContentError(SerJaxError):
    """A file decoded but its samples are unusable (NaN/inf, all zero, too short)."""

    def __init__(self, path: str, cause: str):
        self.path = str(path)
        self.cause = cause
        super().__init__(f"{self.path}: {cause}")


class ManifestError(SerJaxError):
    """A corpus listing is wrong: a file name that does not parse, a bad CSV row, no files."""


class ConfigError(SerJaxError):
    """A configuration value (or combination) that cannot work; names the setting."""


class MissingExtraError(SerJaxError, ImportError):
    """An optional feature was asked for but its extra is not installed."""

    def __init__(self, feature: str, extra: str, cause: str = ""):
        msg = f"{feature} needs the optional extra '{extra}': pip install -e '.[{extra}]'"
        if cause:
            msg += f" ({cause})"
        super().__init__(msg)


class SplitError(ConfigError, ValueError):
    """A train/val/test split whose parts overlap (indices or speakers)."""
