"""Shared pytest fixtures: where the real reference data are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def _find_data_root() -> Path | None:
    env = os.environ.get("DRCNET_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[2] / "shared" / "data")
    for c in candidates:
        if (c / "spectral_libraries").is_dir() and (c / "observatory").is_dir():
            return c
    return None


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The shared reference data (``$DRCNET_DATA`` or ../shared/data beside the checkout)."""
    root = _find_data_root()
    if root is None:
        pytest.fail(
            "reference data not found: set DRCNET_DATA to the shared data folder (../shared/data in a checkout)"
        )
    os.environ.setdefault("DRCNET_DATA", str(root))
    return root
