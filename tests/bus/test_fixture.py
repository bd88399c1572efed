"""The Redis tests never skip silently in CI: without Redis they fail under CI=true."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGET = f"{HERE / 'test_bus.py'}::test_stats_hash_is_replaced_whole"


def run_without_redis(ci: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["AIOS_TEST_REDIS"] = "redis://127.0.0.1:1/15"  # nothing listens there
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", TARGET, "-q", "-rs", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        env=env,
        cwd=HERE.parent.parent,
        timeout=120,
    )


def test_without_redis_the_redis_tests_fail_in_ci() -> None:
    result = run_without_redis("true")
    assert result.returncode == 1
    assert "CI must run the Redis tests" in result.stdout
    assert "1 passed, 1 error" in result.stdout  # the in-process variant still runs


def test_without_redis_outside_ci_they_are_skipped_with_the_reason() -> None:
    result = run_without_redis(None)
    assert result.returncode == 0
    assert "1 passed, 1 skipped" in result.stdout
    assert "start redis-server to run the bus tests" in result.stdout
