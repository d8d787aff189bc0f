"""The repository root and ../shared, the folder of shared models, data and reference outputs."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("PRUNEKIT_SHARED", ROOT.parent / "shared"))


def shared_file(relative: str) -> Path:
    """A file under ../shared, or skip the calling test."""
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return path
