"""The aios benchmark runner: `make bench`, or `.venv/bin/python bench/run.py [--quick]`.

Every figure is the median of several runs (with min and max) so that one slow run (a page
fault, a noisy neighbour) does not decide the result. Figures come from benchmark functions
registered in `BENCHMARKS`; to add one, write a function `Settings -> list[Figure]` and append
it there. See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aios.policy import load_policy
from aios.policy.schema import compose_schema, is_valid, validator
from aios.policy.yaml_source import read_file

REPO = Path(__file__).resolve().parent.parent
POLICIES = REPO / "policies"
BUNDLED_POLICIES = ("default.yaml", "conservative.yaml", "aggressive.yaml")
DEFAULT_JSON = REPO / "bench" / "results" / "latest.json"
ENV_PREFIX = "QT_AI_"  # policy overrides; stripped so the caller's shell cannot skew a run
DECIMALS = {"s": 3, "ms": 2}
SUBPROCESS_TIMEOUT_S = 120.0

# Runs in a fresh interpreter: times the first load_policy call only (it builds the validator),
# not interpreter start-up or the import of aios.policy.
COLD_LOAD_SCRIPT = """
import sys, time
from aios.policy import load_policy
start = time.perf_counter()
load_policy([sys.argv[1]], env={})
print((time.perf_counter() - start) * 1000.0)
"""


class BenchError(RuntimeError):
    """A benchmarked command failed, so its timing would be meaningless."""


@dataclass(frozen=True)
class Settings:
    """How many runs each kind of figure gets; `--quick` keeps the whole run to seconds."""

    quick: bool

    @property
    def in_process_runs(self) -> int:
        return 5 if self.quick else 21

    @property
    def subprocess_runs(self) -> int:
        return 3 if self.quick else 7


@dataclass(frozen=True)
class Target:
    """A bound the median must meet; most figures are costs, throughputs will be floors."""

    limit: float
    higher_is_better: bool = False

    def met_by(self, value: float) -> bool:
        return value >= self.limit if self.higher_is_better else value < self.limit

    def __str__(self) -> str:
        return f"{'>=' if self.higher_is_better else '<'} {self.limit:g}"


@dataclass(frozen=True)
class Figure:
    """One measured quantity: its samples and, optionally, the target it is judged against."""

    name: str
    unit: str
    samples: tuple[float, ...]
    target: Target | None = None

    @property
    def median(self) -> float:
        return float(statistics.median(self.samples))

    @property
    def minimum(self) -> float:
        return min(self.samples)

    @property
    def maximum(self) -> float:
        return max(self.samples)

    @property
    def status(self) -> str:
        """PASS/MISS on the median (not the best run, which flatters); '-' without a target."""
        if self.target is None:
            return "-"
        return "PASS" if self.target.met_by(self.median) else "MISS"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "unit": self.unit,
            "median": self.median,
            "min": self.minimum,
            "max": self.maximum,
            "runs": len(self.samples),
            "samples": list(self.samples),
            "target": str(self.target) if self.target else None,
            "status": self.status,
        }


Benchmark = Callable[[Settings], list[Figure]]


# --- measuring -----------------------------------------------------------------------------


def time_calls(call: Callable[[], object], runs: int, scale: float = 1000.0) -> tuple[float, ...]:
    """Time `runs` calls after one untimed warm-up, so caches (validator, files) are hot."""
    call()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * scale)
    return tuple(samples)


def clean_env() -> dict[str, str]:
    """The caller's environment minus policy overrides, which would change what is loaded."""
    return {key: value for key, value in os.environ.items() if not key.startswith(ENV_PREFIX)}


def run_checked(argv: Sequence[str]) -> str:
    """Run a command from the repo root; fail loudly, since a failed run's timing is noise."""
    result = subprocess.run(
        list(argv),
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=SUBPROCESS_TIMEOUT_S,
    )
    if result.returncode != 0:
        raise BenchError(
            f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}{result.stderr}"
        )
    return result.stdout


def wall_times(argv: Sequence[str], runs: int) -> tuple[float, ...]:
    """Wall seconds of `runs` runs after one warm-up (which fills the OS file cache)."""
    return time_calls(lambda: run_checked(argv), runs, scale=1.0)


def aios_script() -> Path:
    """The venv's `aios` console script, next to this interpreter (what a user would run)."""
    script = Path(sys.executable).parent / "aios"
    if not script.exists():
        raise BenchError(f"no aios script at {script}: run `make bench` to install aios")
    return script


# --- benchmarks ----------------------------------------------------------------------------


def loader(path: Path) -> Callable[[], object]:
    """A load of one file that ignores the real environment (as the tests do)."""
    return lambda: load_policy([path], env={})


def policy_load_warm(settings: Settings) -> list[Figure]:
    """In-process load + validate + compile of each bundled policy: the hot-reload cost."""
    figures = []
    for name in BUNDLED_POLICIES:
        path = POLICIES / name
        samples = time_calls(loader(path), settings.in_process_runs)
        figures.append(Figure(f"load.{path.stem}", "ms", samples, Target(5.0)))
    return figures


def policy_load_cold(settings: Settings) -> list[Figure]:
    """The first load in a fresh process, which also builds the schema validator."""
    argv = [sys.executable, "-c", COLD_LOAD_SCRIPT, str(POLICIES / "default.yaml")]
    run_checked(argv)
    samples = tuple(float(run_checked(argv).split()[-1]) for _ in range(settings.subprocess_runs))
    return [Figure("load.default.cold", "ms", samples)]


def policy_phases(settings: Settings) -> list[Figure]:
    """Where a warm load of default.yaml spends its time: parsing, the schema check a valid
    policy pays (the Rust validator's yes/no), and the detailed check only an invalid one pays."""
    path = POLICIES / "default.yaml"
    runs = settings.in_process_runs
    data = read_file(path).data
    schema = compose_schema()
    checker = validator(schema)
    return [
        Figure("phase.yaml_parse", "ms", time_calls(lambda: read_file(path), runs)),
        Figure("phase.schema_fast_path", "ms", time_calls(lambda: is_valid(schema, data), runs)),
        Figure(
            "phase.schema_detailed",
            "ms",
            time_calls(lambda: list(checker.iter_errors(data)), runs),
        ),
    ]


def cli_wall(settings: Settings) -> list[Figure]:
    """What a user waits for at the shell, interpreter start-up and imports included."""
    script = str(aios_script())
    runs = settings.subprocess_runs
    return [
        Figure("cli.help", "s", wall_times([script, "--help"], runs), Target(0.3)),
        Figure(
            "cli.validate",
            "s",
            wall_times([script, "validate", "policies/default.yaml"], runs),
            Target(0.3),
        ),
    ]


BENCHMARKS: list[Benchmark] = [policy_load_warm, policy_load_cold, policy_phases, cli_wall]


# --- reporting -----------------------------------------------------------------------------


def cpu_model() -> str:
    """The CPU's marketing name, which explains most differences between machines."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Hardware", "Processor", "cpu model") and value.strip():
            return value.strip()
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    """What the numbers were measured on; figures from different machines do not compare."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
    }


def header(info: Mapping[str, Any], settings: Settings) -> str:
    """Name the machine and the run counts above the table."""
    mode = "quick" if settings.quick else "full"
    return "\n".join(
        [
            f"aios benchmark ({mode})",
            f"machine:  {info['cpu']}, {info['cores']} cores",
            f"python:   {info['python']}",
            f"platform: {info['platform']}",
            f"runs:     in-process {settings.in_process_runs}, "
            f"subprocess {settings.subprocess_runs} (each after 1 warm-up)",
        ]
    )


def table(figures: Sequence[Figure]) -> str:
    """A plain fixed-width table, readable in a terminal, a CI log or a pasted issue comment."""
    rows: list[tuple[str, ...]] = [("figure", "median", "min", "max", "unit", "target", "status")]
    for fig in figures:
        places = DECIMALS.get(fig.unit, 2)
        rows.append(
            (
                fig.name,
                *(f"{v:.{places}f}" for v in (fig.median, fig.minimum, fig.maximum)),
                fig.unit,
                str(fig.target) if fig.target else "-",
                fig.status,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    numeric = {1, 2, 3}
    lines = [
        "  ".join(
            cell.rjust(width) if i in numeric else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def write_json(
    path: Path, info: Mapping[str, Any], settings: Settings, figures: Sequence[Figure]
) -> None:
    """Keep the run for later comparison (bench/results/ is git-ignored)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": settings.quick,
        "machine": dict(info),
        "figures": [fig.to_json() for fig in figures],
    }
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Measure aios start-up and policy-load costs.")
    parser.add_argument(
        "--quick", action="store_true", help="few runs: a smoke test, not a measurement"
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=DEFAULT_JSON,
        metavar="PATH",
        help=f"also write the results here (default: {DEFAULT_JSON.relative_to(REPO)})",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run every registered benchmark; MISS is reported, not an error (exit 0)."""
    args = parse_args(argv)
    settings = Settings(quick=args.quick)
    info = machine()
    print(header(info, settings), flush=True)
    figures = [fig for benchmark in BENCHMARKS for fig in benchmark(settings)]
    print()
    print(table(figures))
    write_json(args.json, info, settings, figures)
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
