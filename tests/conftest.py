"""Shared fixtures. Tests that need ../shared skip with a reason when it is absent."""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PRUNEKIT_SHARED", ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent: the shared models and reference outputs are not available")
    return SHARED


def shared_file(relative: str) -> Path:
    """A file under ../shared, or skip the calling test."""
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return path
