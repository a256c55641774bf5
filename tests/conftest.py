"""Shared fixtures. Compiled functions are shared through session-scoped fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def emodb_dir() -> Path:
    """The real Emo-DB working copy (folder with wav/), from SER_EMODB_DIR; skips when unset."""
    value = os.environ.get("SER_EMODB_DIR")
    if not value:
        pytest.skip("SER_EMODB_DIR is not set: point it at a folder of Emo-DB wav files")
    path = Path(value)
    if not path.is_dir():
        pytest.fail(f"SER_EMODB_DIR={value} is not a directory")
    return path
