"""Worker processes for the Redis tests: started with the real CLI, stopped by signal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from distributed import DEFAULT_POLICY

#: Upper bound on any wait for a subprocess (start-up imports numpy and loads the data).
WAIT_S = 90.0


def overlay(tmp_path: Path, prefix: str, **bus: object) -> Path:
    lines = ["version: 1", "bus:", f"  prefix: {prefix}"]
    lines += [f"  {key}: {value}" for key, value in bus.items()]
    path = tmp_path / "bus-overlay.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def start_worker(url: str, name: str, policy: Sequence[Path], log: Path) -> subprocess.Popen[bytes]:
    state = log.parent / f"{name}-state"
    command = [sys.executable, "-m", "aios", "worker", "--bus", url, "--name", name]
    command += ["--state-dir", str(state)]
    for path in policy:
        command += ["--policy", str(path)]
    env = {k: v for k, v in os.environ.items() if k != "AIOS_BUS"}
    with log.open("wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)


def policy_files(extra: Path) -> list[Path]:
    return [DEFAULT_POLICY, extra]


def wait_for(condition: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    """Poll `condition` (every 20 ms) until it holds; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


def stop(process: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    """SIGTERM, then the exit status (killed if it does not stop in time)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError(f"process {process.pid} ignored SIGTERM for {timeout:g} s") from None
