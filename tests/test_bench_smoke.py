"""The benchmark runner still runs and writes well-formed results.

Speed is never asserted here: timings depend on the machine, and a test suite that fails on a
busy CI runner teaches people to ignore it. `make bench` reports PASS/MISS against the targets.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RUNNER = REPO / "bench" / "run.py"
EXPECTED_FIGURES = {
    "load.default",
    "load.conservative",
    "load.aggressive",
    "load.default.cold",
    "phase.yaml_parse",
    "phase.yaml_nodes",
    "phase.schema_fast_path",
    "phase.schema_detailed",
    "cli.help",
    "cli.validate",
    "cli.validate.uncached",
    "entry.pipeline_per_s",
    "entry.dispatch_floor_per_s",
    "entry.pipeline_vs_floor",
    "reload.latency_ms.p50",
    "reload.latency_ms.p95",
    "journal.rows_per_s",
    "replay.enforced",
    "replay.baseline",
    "replay.peak_rss_mb",
    "journal.mb_per_10k_candles",
    "hooks.trace_off_overhead_pct",
}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def test_quick_run_writes_every_figure(tmp_path: Path) -> None:
    output = tmp_path / "results" / "bench.json"
    result = subprocess.run(
        [sys.executable, str(RUNNER), "--quick", "--json", str(output)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "median" in result.stdout

    document = json.loads(output.read_text(encoding="utf-8"))
    machine = document["machine"]
    for key in ("cpu", "cores", "python", "platform"):
        assert machine.get(key), f"machine.{key} missing"

    figures = {figure["name"]: figure for figure in document["figures"]}
    missing = EXPECTED_FIGURES - figures.keys()
    assert not missing, f"figures missing from the results: {sorted(missing)}"
    for name, figure in figures.items():
        low, median, high = figure["min"], figure["median"], figure["max"]
        assert all(_is_number(v) for v in (low, median, high)), name
        assert low <= median <= high, name
        assert figure["status"] in {"PASS", "MISS", "-"}, name
