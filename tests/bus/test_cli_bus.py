"""The bus commands: clean stop on SIGTERM, clear errors for a bus that cannot work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from distributed import DEFAULT_POLICY
from processes import overlay, stop, wait_for

from aios.bus import BusSettings, open_bus


def aios(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "AIOS_BUS"}
    return subprocess.run(
        [sys.executable, "-m", "aios", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_a_worker_refuses_an_in_process_bus() -> None:
    result = aios("worker", "--bus", "memory://")
    assert result.returncode == 2
    assert "not shared between processes" in result.stderr


def test_an_unreachable_redis_is_a_clear_error(tmp_path: Path) -> None:
    extra = tmp_path / "fast.yaml"
    extra.write_text("version: 1\nbus:\n  reconnect: {initial_s: 0.01, attempts: 2}\n")
    result = aios(
        "service", "rl-agent", "--bus", "redis://127.0.0.1:1/0",
        "-p", str(DEFAULT_POLICY), "-p", str(extra), "--state-dir", str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 1
    assert "unreachable after 2 reconnect attempt(s)" in result.stderr
    assert "Traceback" not in result.stderr


def test_rl_agent_stops_cleanly_on_sigterm(redis_url: str, prefix: str, tmp_path: Path) -> None:
    extra = overlay(tmp_path, prefix, block_ms=50)
    bus = open_bus(redis_url, BusSettings(prefix=prefix))
    env = {k: v for k, v in os.environ.items() if k != "AIOS_BUS"}
    command = [
        sys.executable, "-m", "aios", "service", "rl-agent", "--bus", redis_url,
        "-p", str(DEFAULT_POLICY), "-p", str(extra), "--state-dir", str(tmp_path),
    ]  # fmt: skip
    process = subprocess.Popen(command, stderr=subprocess.PIPE, env=env)
    try:
        wait_for(lambda: bus.read_hash("rl_agent") != {}, "the first statistics")
        first = bus.read_hash("rl_agent")["updated_at"]
        assert stop(process) == 0
        # the final statistics are written on the way out
        assert bus.read_hash("rl_agent")["updated_at"] != first
    finally:
        if process.poll() is None:
            process.kill()
        bus.clear()


def test_risk_gate_command_replays_through_a_worker(
    redis_url: str, prefix: str, tmp_path: Path
) -> None:
    from processes import policy_files, start_worker

    extra = overlay(tmp_path, prefix, block_ms=50)
    files = policy_files(extra)
    bus = open_bus(redis_url, BusSettings(prefix=prefix))
    one = start_worker(redis_url, "only", files, tmp_path / "worker.log")
    try:
        wait_for(lambda: bus.members("workers", 1e12, 1e13) == ["only"], "the worker to join")
        result = aios(
            "service", "risk-gate", "--bus", redis_url, "-p", str(files[0]), "-p", str(files[1]),
            "--state-dir", str(tmp_path / "state"), "--limit", "60", "--replay-id", "cli",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["decided"] == 60
        assert report["candles"] == 60
        assert report["replay_id"] == "cli"
    finally:
        assert stop(one) == 0
        bus.clear()


def test_the_cli_starts_without_importing_redis() -> None:
    probe = "import sys, aios.cli; print(sorted(m for m in ('redis', 'numpy') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.stdout.strip() == "[]"
