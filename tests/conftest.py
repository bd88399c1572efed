"""Shared fixtures: paths to the bundled policies and a loader that ignores the real environment."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

REPO = Path(__file__).resolve().parent.parent
POLICIES = REPO / "policies"
BUNDLED_POLICIES = ("default.yaml", "conservative.yaml", "aggressive.yaml")


@pytest.fixture(autouse=True, scope="session")
def _plugin_cache_in_a_temporary_directory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[None]:
    """`aios validate` caches plugin declarations (aios/plugin_cache.py): never in the user's
    cache directory from a test run."""
    previous = os.environ.get("AIOS_CACHE_DIR")
    os.environ["AIOS_CACHE_DIR"] = str(tmp_path_factory.mktemp("aios-cache"))
    yield
    if previous is None:
        os.environ.pop("AIOS_CACHE_DIR", None)
    else:
        os.environ["AIOS_CACHE_DIR"] = previous


@pytest.fixture
def default_policy_path() -> Path:
    return POLICIES / "default.yaml"


@pytest.fixture
def overlay(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Write overlay text to a file and return [default.yaml, overlay] ready for load_policy."""

    def write(text: str, name: str = "overlay.yaml") -> list[Path]:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return [POLICIES / "default.yaml", path]

    return write


# Hypothesis: `CI=1 pytest` runs the property tests derandomized (the same examples every run,
# no example database), so a CI failure is reproducible and CI never fails by luck.
settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
