"""Fixtures for anatomy tests: the shared real data (never copied) and the shipped assets."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
ASSETS = REPO / "assets"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` relative to the repository root; skip when absent (fresh clone)."""
    if not (SHARED_DATA / "ct" / "totalsegmentator-example").is_dir():
        pytest.skip(f"shared reference data not found at {SHARED_DATA} (only present beside the project checkout)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def ts_example(shared_data: Path) -> Path:
    return shared_data / "ct" / "totalsegmentator-example"


@pytest.fixture(scope="session")
def tka(shared_data: Path) -> Path:
    return shared_data / "meshes" / "tka-grand-challenge"


def no_leftovers(out: Path) -> bool:
    """True when neither the bundle nor any temporary sibling of it exists."""
    return not out.exists() and not any(p.name.startswith(f".{out.name}.") for p in out.parent.iterdir())
