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
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import pluggy

from aios.app import load
from aios.data import bundled_data_dir, symbol_from_filename
from aios.engine import Engine
from aios.hookspecs import hookimpl
from aios.journal import Decision, Journal
from aios.model import (
    CycleContext,
    DirectiveProposal,
    EntryIntent,
    EntryVerdict,
    ExecutionPlan,
    HealthReport,
    HealthStatus,
    ModelProposal,
    OrderType,
    PortfolioView,
    RiskAssessment,
    RiskMode,
    Side,
    Signal,
    SizeProposal,
    Stage,
    TpSlProposal,
    UniverseProposal,
)
from aios.policy import load_policy, yaml_source
from aios.policy.schema import compose_schema, is_valid, validator
from aios.policy.yaml_source import read_file
from aios.registry import HookResult, call_each, plugin_set
from aios.testing import T0, candles_from_closes, default_policy, market

REPO = Path(__file__).resolve().parent.parent
POLICIES = REPO / "policies"
BUNDLED_POLICIES = ("default.yaml", "conservative.yaml", "aggressive.yaml")
DEFAULT_JSON = REPO / "bench" / "results" / "latest.json"
ENV_PREFIX = "QT_AI_"  # policy overrides; stripped so the caller's shell cannot skew a run
DECIMALS = {"s": 3, "ms": 2, "candles/s": 0, "decisions/s": 0, "rows/s": 0}
SUBPROCESS_TIMEOUT_S = 120.0
REPLAY_TIMEOUT_S = 600.0
# The ten BTC-quoted 5m files of the shared data set (57,546 candles), in the `shared/` folder
# beside the repository (AIOS_BENCH_DATA names another); the bundled data when absent.
SHARED_DATA = Path(
    os.environ.get(
        "AIOS_BENCH_DATA", Path(__file__).resolve().parents[2] / "shared" / "data" / "csv"
    )
)
SHARED_SYMBOLS = tuple(
    f"{base}/BTC"
    for base in ("ADA", "DASH", "ETC", "ETH", "LTC", "NXT", "TRX", "XLM", "XMR", "ZEC")
)
# The built-in subsystems, as the core schema lists them.
SUBSYSTEMS = tuple(compose_schema()["properties"]["subsystems"]["properties"])

# Runs in a fresh interpreter: times the first load_policy call only (it builds the validator),
# not interpreter start-up or the import of aios.policy.
COLD_LOAD_SCRIPT = """
import sys, time
from aios.policy import load_policy
start = time.perf_counter()
load_policy([sys.argv[1]], env={})
print((time.perf_counter() - start) * 1000.0)
"""

# Runs in a fresh interpreter, so that ru_maxrss is the replay's own peak: one replay of the
# first LIMIT candle times of DATA_DIR (the policy's universe) at STAGE; prints one JSON line.
# Only runtime.run() is timed (not imports, the policy load or reading the CSV files).
REPLAY_SCRIPT = """
import json, resource, sys, time
from pathlib import Path
from aios.app import load
from aios.data import load_directory
from aios.exchange.paper import PaperBroker
from aios.model import Stage
from aios.runtime import Runtime
data_dir, limit, stage, state_dir, *paths = sys.argv[1:]
policy, plugins = load(paths, env={})
series = load_directory(Path(data_dir), list(policy.get("universe", "symbols")))
times = set(sorted({c.time for candles in series.values() for c in candles})[: int(limit) or None])
candles = sum(1 for rows in series.values() for c in rows if c.time in times)
runtime = Runtime(policy, plugins, series, Path(state_dir), PaperBroker.from_policy,
                  stage=Stage(stage))
start = time.perf_counter()
runtime.run(limit=int(limit) or None)
seconds = time.perf_counter() - start
db_bytes = sum(p.stat().st_size for p in Path(state_dir).iterdir() if p.is_file())
print(json.dumps({"candles": candles, "seconds": seconds, "db_bytes": db_bytes,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "plugin_seconds": {n: h.seconds for n, h in runtime.engine.health.items()}}))
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

    @property
    def replay_runs(self) -> int:
        """Replays are long (about 30 s each in the full run), so fewer of them."""
        return 3

    @property
    def replay_limit(self) -> int:
        """Candle times replayed (x the number of symbols): every one of the files in a full
        run (the issue's figure: the ten shared files, 57,546 candles), 120 with `--quick`."""
        return 120 if self.quick else 0

    @property
    def replay_data(self) -> tuple[Path, tuple[str, ...]]:
        """The data directory and symbols replayed: the shared data set when present."""
        if not self.quick and SHARED_DATA.is_dir():
            return SHARED_DATA, SHARED_SYMBOLS
        directory = bundled_data_dir()
        return directory, tuple(sorted(symbol_from_filename(f) for f in directory.glob("*.csv")))

    @property
    def reloads(self) -> int:
        return 10 if self.quick else 50

    @property
    def journal_rows(self) -> int:
        return 2000 if self.quick else 20000


@dataclass(frozen=True)
class Target:
    """A bound the median must meet; most figures are costs, throughputs will be floors."""

    limit: float
    higher_is_better: bool = False
    inclusive: bool = False  # for a ceiling: <= instead of < (floors are always >=)

    def met_by(self, value: float) -> bool:
        if self.higher_is_better:
            return value >= self.limit
        return value <= self.limit if self.inclusive else value < self.limit

    def __str__(self) -> str:
        sign = ">=" if self.higher_is_better else "<=" if self.inclusive else "<"
        return f"{sign} {self.limit:g}"


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


def run_checked(argv: Sequence[str], timeout: float = SUBPROCESS_TIMEOUT_S) -> str:
    """Run a command from the repo root; fail loudly, since a failed run's timing is noise."""
    result = subprocess.run(
        list(argv),
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
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
    # The node-based builder alone: what parsing costs without the one-pass reader.
    with mock.patch.object(yaml_source, "_parse_plain", lambda text, source: None):
        nodes = time_calls(lambda: read_file(path), runs)
    return [
        Figure("phase.yaml_parse", "ms", time_calls(lambda: read_file(path), runs)),
        Figure("phase.yaml_nodes", "ms", nodes),
        Figure("phase.schema_fast_path", "ms", time_calls(lambda: is_valid(schema, data), runs)),
        Figure(
            "phase.schema_detailed",
            "ms",
            time_calls(lambda: list(checker.iter_errors(data)), runs),
        ),
    ]


def cli_wall(settings: Settings) -> list[Figure]:
    """What a user waits for at the shell, interpreter start-up and imports included.

    `aios validate` runs with its plugin declaration cache in a fresh directory: the warm-up run
    fills it (as a user's first validate does), the timed runs read it. The uncached figure
    switches the cache off: what a run pays after a plugin is installed or upgraded."""
    script = str(aios_script())
    runs = settings.subprocess_runs
    validate = [script, "validate", "policies/default.yaml"]
    with tempfile.TemporaryDirectory(prefix="aios-bench-cache-") as cache:
        with mock.patch.dict(os.environ, {"AIOS_CACHE_DIR": cache}):
            cached = wall_times(validate, runs)
        with mock.patch.dict(os.environ, {"AIOS_CACHE_DIR": cache, "AIOS_PLUGIN_CACHE": "off"}):
            uncached = wall_times(validate, runs)
    return [
        Figure("cli.help", "s", wall_times([script, "--help"], runs), Target(0.3)),
        Figure("cli.validate", "s", cached),
        Figure("cli.validate.uncached", "s", uncached),
    ]


# --- replay: the whole runtime (engine, plugins, two paper brokers, journal, store) ----------


def replay_overlay(directory: Path, symbols: Sequence[str], baseline: bool) -> Path:
    """An overlay on default.yaml: the universe is the symbols replayed; the baseline turns every
    subsystem off.

    The replay stays at AUTONOMY throughout: `stages.demotion.on_critical_risk_mode` is null.
    With the default (cap at ADVISORY) a real run would leave AUTONOMY at the first CRITICAL
    risk mode, and this replay, whose stage is given to the runtime rather than recorded in
    the stage store, would instead attempt (and journal the failure of) a demotion on every
    candle the risk mode is CRITICAL: most of them, over these files."""
    lines = [
        "universe:",
        f"  symbols: [{', '.join(json.dumps(s) for s in symbols)}]",
        "stages:",
        "  demotion:",
        "    on_critical_risk_mode: null",
    ]
    if baseline:
        lines.append("subsystems:")
        for name in SUBSYSTEMS:
            lines += [f"  {name}:", "    enabled: false"]
    path = directory / ("baseline.yaml" if baseline else "enforced.yaml")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def replay_once(settings: Settings, baseline: bool) -> dict[str, Any]:
    """One replay in a fresh interpreter at AUTONOMY: its candles, seconds, peak RSS, db size
    (floats) and `plugin_seconds`, the time spent in each plugin's hooks."""
    directory, symbols = settings.replay_data
    with tempfile.TemporaryDirectory(prefix="aios-bench-") as tmp:
        overlay = replay_overlay(Path(tmp), symbols, baseline)
        argv = [
            sys.executable,
            "-c",
            REPLAY_SCRIPT,
            str(directory),
            str(settings.replay_limit),
            Stage.AUTONOMY.value,
            str(Path(tmp) / "state"),
            str(POLICIES / "default.yaml"),
            str(overlay),
        ]
        result = json.loads(run_checked(argv, timeout=REPLAY_TIMEOUT_S).splitlines()[-1])
    if not result["candles"]:
        raise BenchError(f"no candles replayed from {directory}")
    plugin_seconds = {str(k): float(v) for k, v in result.pop("plugin_seconds", {}).items()}
    return {
        **{key: float(value) for key, value in result.items()},
        "plugin_seconds": plugin_seconds,
    }


def plugin_time_line(run: Mapping[str, Any], top: int = 5) -> str:
    """Where a replay's time went: the plugins that took most of it, in seconds and share."""
    spent = sorted(run["plugin_seconds"].items(), key=lambda item: -item[1])
    total = float(run["seconds"]) or 1.0
    inside = sum(seconds for _, seconds in spent)
    parts = [f"{name} {seconds:.2f} s ({seconds / total:.0%})" for name, seconds in spent[:top]]
    return (
        f"{', '.join(parts) or 'none'}; all plugins {inside / total:.0%}, "
        f"the rest (engine, journal, brokers, store) {1 - inside / total:.0%}"
    )


def replay(settings: Settings) -> list[Figure]:
    """Candles per second through the runtime, with every subsystem ENFORCED and with none;
    the enforced replay's peak memory and how much it writes to the state database."""
    directory, symbols = settings.replay_data
    print(
        f"replay:   {len(symbols)} symbols of {directory}, "
        + (
            f"first {settings.replay_limit} candle times"
            if settings.replay_limit
            else "every candle"
        )
        + f", {settings.replay_runs} runs each",
        flush=True,
    )
    enforced = [replay_once(settings, baseline=False) for _ in range(settings.replay_runs)]
    print(f"replay:   time in plugins (enforced, first run): {plugin_time_line(enforced[0])}")
    baseline = [replay_once(settings, baseline=True) for _ in range(settings.replay_runs)]
    floor = Target(20000.0, higher_is_better=True)
    return [
        Figure(
            "replay.enforced",
            "candles/s",
            tuple(r["candles"] / r["seconds"] for r in enforced),
            floor,
        ),
        Figure(
            "replay.baseline",
            "candles/s",
            tuple(r["candles"] / r["seconds"] for r in baseline),
            floor,
        ),
        Figure("replay.peak_rss_mb", "MB", tuple(r["rss_mb"] for r in enforced), Target(300.0)),
        Figure(
            "journal.mb_per_10k_candles",
            "MB",
            tuple(r["db_bytes"] / 1e6 / (r["candles"] / 10000.0) for r in enforced),
        ),
    ]


# --- the entry pipeline against the floor of calling its hooks ------------------------------

ENTRY_SYMBOL = "ETH/BTC"


class _Coordinator:
    """The stub subsystems below each answer their hooks with a fixed proposal."""

    name = "coordinator"

    @hookimpl
    def aios_coordinate(self, ctx: CycleContext) -> RiskAssessment:
        return RiskAssessment(RiskMode.NORMAL, True, "stub")

    @hookimpl
    def aios_health(self, ctx: CycleContext) -> HealthReport:
        return HealthReport(self.name, HealthStatus.OK, "stub")

    @hookimpl
    def aios_collect_metrics(self, ctx: CycleContext) -> dict[str, float]:
        return {"stub_metric": 1.0}


class _SelfHealing:
    name = "self_healing"

    @hookimpl
    def aios_directives(
        self, ctx: CycleContext, health: Sequence[HealthReport]
    ) -> DirectiveProposal:
        return DirectiveProposal(frozenset())


class _Universe:
    name = "universe_os"

    @hookimpl
    def aios_universe(self, ctx: CycleContext, candidates: Sequence[str]) -> UniverseProposal:
        return UniverseProposal(tuple(candidates))


class _Signals:
    name = "signal_model"

    @hookimpl
    def aios_signals(self, ctx: CycleContext, symbol: str) -> list[Signal]:
        return [Signal(f"{symbol}@{ctx.cycle}", symbol, Side.LONG, 0.9, self.name, ctx.now, 100.0)]


class _TpSl:
    name = "dynamic_tpsl"

    @hookimpl
    def aios_adjust_signal(self, ctx: CycleContext, signal: Signal) -> TpSlProposal:
        return TpSlProposal(5.0, 4.0, "stub")


class _Supervisor:
    name = "model_supervisor"

    @hookimpl
    def aios_observe_signal(
        self, ctx: CycleContext, signal: Signal, threshold: float, accepted: bool
    ) -> None:
        return None


class _Balancer:
    name = "portfolio_balancer"

    @hookimpl
    def aios_filter_entry(self, ctx: CycleContext, intent: EntryIntent) -> EntryVerdict:
        return EntryVerdict(True, "stub")


class _Sizing:
    name = "rl_sizing"

    @hookimpl
    def aios_size(self, ctx: CycleContext, intent: EntryIntent) -> SizeProposal:
        return SizeProposal("stub", multiplier=1.0)


class _Execution:
    name = "execution"

    @hookimpl
    def aios_execution_plan(self, ctx: CycleContext, intent: EntryIntent) -> ExecutionPlan:
        return ExecutionPlan(OrderType.MARKET, 1, "stub")


class _Retraining:
    name = "retraining"

    @hookimpl
    def aios_tick(self, ctx: CycleContext) -> list[ModelProposal]:
        return []


ENTRY_STUBS = (
    _Coordinator,
    _SelfHealing,
    _Universe,
    _Signals,
    _TpSl,
    _Supervisor,
    _Balancer,
    _Sizing,
    _Execution,
    _Retraining,
)


class _NoOp:
    """One plugin implementing every entry hook with `pass`: the dispatch floor."""

    name = "coordinator"

    @hookimpl
    def aios_collect_metrics(self, ctx: CycleContext) -> None:
        pass

    @hookimpl
    def aios_health(self, ctx: CycleContext) -> None:
        pass

    @hookimpl
    def aios_directives(self, ctx: CycleContext, health: Sequence[HealthReport]) -> None:
        pass

    @hookimpl
    def aios_coordinate(self, ctx: CycleContext) -> None:
        pass

    @hookimpl
    def aios_universe(self, ctx: CycleContext, candidates: Sequence[str]) -> None:
        pass

    @hookimpl
    def aios_tick(self, ctx: CycleContext) -> None:
        pass

    @hookimpl
    def aios_signals(self, ctx: CycleContext, symbol: str) -> None:
        pass

    @hookimpl
    def aios_observe_signal(
        self, ctx: CycleContext, signal: Signal, threshold: float, accepted: bool
    ) -> None:
        pass

    @hookimpl
    def aios_adjust_signal(self, ctx: CycleContext, signal: Signal) -> None:
        pass

    @hookimpl
    def aios_size(self, ctx: CycleContext, intent: EntryIntent) -> None:
        pass

    @hookimpl
    def aios_filter_entry(self, ctx: CycleContext, intent: EntryIntent) -> None:
        pass

    @hookimpl
    def aios_execution_plan(self, ctx: CycleContext, intent: EntryIntent) -> None:
        pass


def entry_cycle() -> Callable[[], object]:
    """One entry cycle of an engine at AUTONOMY (no journal) whose stubs answer every entry hook:
    ETH/BTC, one signal, an empty book."""
    policy = default_policy(f"universe:\n  symbols: [{ENTRY_SYMBOL}]\n")
    engine = Engine(policy, plugin_set(s() for s in ENTRY_STUBS), None, stage=Stage.AUTONOMY)
    candles = candles_from_closes([100.0] * 30)
    view = market({ENTRY_SYMBOL: candles})
    book = PortfolioView(equity=1.0, cash=1.0, prices={ENTRY_SYMBOL: 100.0})
    now = candles[-1].time
    return lambda: engine.entry_cycle(now, view, book)


def recorded_hook_calls(cycle: Callable[[], object]) -> list[tuple[str, dict[str, Any]]]:
    """The hook calls one entry cycle makes through `Engine._call` (hook name and the arguments
    its implementations are offered), in order."""
    calls: list[tuple[str, dict[str, Any]]] = []
    original = Engine._call

    def recording(
        engine: Engine, ctx: CycleContext, hook: str, subject: str, **kwargs: Any
    ) -> list[HookResult]:
        calls.append((hook, {"ctx": ctx, **kwargs}))
        return original(engine, ctx, hook, subject, **kwargs)

    with mock.patch.object(Engine, "_call", recording):
        cycle()
    return calls


def entry_pipeline(settings: Settings) -> list[Figure]:
    """Entry decisions per second through the whole pipeline, against the floor: the same hook
    calls, through call_each, to implementations that do nothing."""
    cycles = 200 if settings.quick else 2000
    cycle = entry_cycle()
    calls = recorded_hook_calls(cycle)
    print(f"entry:    one entry cycle makes {len(calls)} hook calls", flush=True)
    manager = plugin_set([_NoOp()]).manager

    def floor() -> None:
        for hook_name, kwargs in calls:
            call_each(manager, hook_name, kwargs, lambda name: True)

    def repeat(call: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            for _ in range(cycles):
                call()

        return run

    runs = settings.subprocess_runs
    # Interleaved (a pipeline batch, then a floor batch, per run): each ratio compares two
    # batches taken moments apart, so a busy machine slows both sides of it alike.
    pipeline_batch, floor_batch = repeat(cycle), repeat(floor)
    pipeline_batch()
    floor_batch()
    pipeline_s: list[float] = []
    floor_s: list[float] = []
    for _ in range(runs):
        for batch, sink in ((pipeline_batch, pipeline_s), (floor_batch, floor_s)):
            start = time.perf_counter()
            batch()
            sink.append(time.perf_counter() - start)
    pipeline = tuple(cycles / s for s in pipeline_s)
    dispatch = tuple(cycles / s for s in floor_s)
    ratio = tuple(d / p for p, d in zip(pipeline, dispatch, strict=True))
    return [
        Figure("entry.pipeline_per_s", "decisions/s", pipeline),
        Figure("entry.dispatch_floor_per_s", "decisions/s", dispatch),
        Figure("entry.pipeline_vs_floor", "x", ratio, Target(3.0, inclusive=True)),
    ]


# --- hot reload latency ---------------------------------------------------------------------


def reload_latency(settings: Settings) -> list[Figure]:
    """From writing a changed overlay to PolicyWatcher.take() handing over the new policy."""
    from aios.reload import PolicySource, PolicyWatcher

    latencies: list[float] = []
    with tempfile.TemporaryDirectory(prefix="aios-bench-") as tmp:
        overlay = Path(tmp) / "overlay.yaml"
        overlay.write_text("baseline:\n  stake_pct: 2.0\n", encoding="utf-8")
        paths = [POLICIES / "default.yaml", overlay]
        policy, plugins = load(paths, env={})
        watcher = PolicyWatcher(PolicySource(paths, {}, plugins), policy.hash)
        watcher.start()
        try:
            for index in range(settings.reloads + 1):  # the first is an untimed warm-up
                stake = 1.0 + (index % 2) * 0.5 + index * 0.001
                start = time.perf_counter()
                overlay.write_text(f"baseline:\n  stake_pct: {stake:.3f}\n", encoding="utf-8")
                while True:
                    taken, _results = watcher.take()
                    if taken is not None:
                        break
                    if time.perf_counter() - start > 10.0:
                        raise BenchError("the policy watcher did not pick up a change in 10 s")
                    time.sleep(0.001)
                if index:
                    latencies.append((time.perf_counter() - start) * 1000.0)
        finally:
            watcher.stop()
    # p50: every reload is a sample (so the median is the p50, min and max the range); p95 is
    # one figure over all of them (a single sample: min = max = p95).
    p95 = statistics.quantiles(latencies, n=20, method="inclusive")[-1]
    return [
        Figure("reload.latency_ms.p50", "ms", tuple(latencies)),
        Figure("reload.latency_ms.p95", "ms", (p95,), Target(50.0)),
    ]


# --- journal writes -------------------------------------------------------------------------


def journal_writes(settings: Settings) -> list[Figure]:
    """Journal.record of N synthetic decisions, then flush (committed to a SQLite file)."""
    rows = settings.journal_rows
    decisions = [
        Decision(
            "run-1",
            index,
            T0,
            "dynamic_tpsl",
            "aios_adjust_signal",
            f"signal:ETH/BTC@{index}",
            TpSlProposal(5.0, 4.0, "volatility regime: normal"),
            "ENFORCED",
            "applied",
            True,
            "TP 5.000%, SL 4.000%: volatility regime: normal",
            "0" * 64,
            "ETH/BTC",
            f"ETH/BTC@{index}",
        )
        for index in range(rows)
    ]
    samples = []
    with tempfile.TemporaryDirectory(prefix="aios-bench-") as tmp:
        for run in range(settings.subprocess_runs + 1):  # the first is an untimed warm-up
            journal = Journal(Path(tmp) / f"journal-{run}.sqlite")
            try:
                start = time.perf_counter()
                for decision in decisions:
                    journal.record(decision)
                journal.flush()
                seconds = time.perf_counter() - start
            finally:
                journal.close()
            if run:
                samples.append(rows / seconds)
    return [Figure("journal.rows_per_s", "rows/s", tuple(samples))]


# --- hook observers (AIOS_TRACE, --profile-hooks): what they cost off and on ------------------


def _call_each_without_observers(
    manager: pluggy.PluginManager,
    hook_name: str,
    kwargs: Mapping[str, Any],
    should_call: Callable[[str], bool],
) -> list[HookResult]:
    """call_each as it was before observers: the reference the observer check is measured by."""
    hook = getattr(manager.hook, hook_name)
    results: list[HookResult] = []
    for impl in hook.get_hookimpls():
        name = manager.get_name(impl.plugin) or "?"
        if not should_call(name):
            continue
        started = time.perf_counter()
        try:
            value = impl.function(*[kwargs[arg] for arg in impl.argnames])
        except Exception as exc:
            results.append(HookResult(name, None, str(exc), time.perf_counter() - started))
            continue
        results.append(HookResult(name, value, None, time.perf_counter() - started))
    return results


def hook_observers(settings: Settings) -> list[Figure]:
    """One call_each of aios_filter_entry over one implementation: without the observer check
    (reference), as shipped with nothing observing (AIOS_TRACE unset), traced, profiled."""
    import logging

    from aios.hooktrace import HookProfile, TraceLogger
    from aios.registry import observing

    calls = 2000 if settings.quick else 20000
    runs = settings.in_process_runs
    manager = plugin_set([_Balancer()]).manager
    signal = Signal("s", ENTRY_SYMBOL, Side.LONG, 0.8, "bench", T0, 100.0)
    kwargs = {"ctx": None, "intent": EntryIntent(signal, 6.0, 8.0, 0.02, 0.65)}
    logger = logging.getLogger("aios.trace.bench")
    logger.propagate, logger.handlers = False, [logging.NullHandler()]
    logger.setLevel(logging.INFO)

    def loop(function: Callable[..., object]) -> Callable[[], None]:
        def run() -> None:
            for _ in range(calls):
                function(manager, "aios_filter_entry", kwargs, bool)

        return run

    def per_call(run: Callable[[], None]) -> float:
        started = time.perf_counter()
        run()
        return (time.perf_counter() - started) / calls * 1e6

    reference, off, traced, profiled = [], [], [], []
    loop(call_each)()  # warm-up
    for _ in range(runs):  # interleaved, so a busy moment hits every variant alike
        reference.append(per_call(loop(_call_each_without_observers)))
        off.append(per_call(loop(call_each)))
        with observing(TraceLogger(logger)):
            traced.append(per_call(loop(call_each)))
        with observing(HookProfile()):
            profiled.append(per_call(loop(call_each)))
    # The check costs nanoseconds against a noisy microsecond: many short interleaved pairs,
    # alternating which goes first, and the median of the paired differences.
    pairs, calls = (21, 500) if settings.quick else (201, 2000)
    overhead_samples = []
    for index in range(pairs):
        first, second = (
            (_call_each_without_observers, call_each)
            if index % 2
            else (call_each, _call_each_without_observers)
        )
        timed = {first: per_call(loop(first)), second: per_call(loop(second))}
        base = timed[_call_each_without_observers]
        overhead_samples.append((timed[call_each] - base) / base * 100.0)
    overhead = tuple(overhead_samples)
    return [
        Figure("hooks.call_each_reference_us", "us", tuple(reference)),
        Figure("hooks.call_each_us", "us", tuple(off)),
        Figure("hooks.trace_off_overhead_pct", "%", overhead, Target(3.0)),
        Figure("hooks.call_each_traced_us", "us", tuple(traced)),
        Figure("hooks.call_each_profiled_us", "us", tuple(profiled)),
    ]


BENCHMARKS: list[Benchmark] = [
    policy_load_warm,
    policy_load_cold,
    policy_phases,
    cli_wall,
    entry_pipeline,
    reload_latency,
    journal_writes,
    replay,
    hook_observers,
]


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
    parser.add_argument(
        "--only",
        action="append",
        choices=[benchmark.__name__ for benchmark in BENCHMARKS],
        metavar="BENCHMARK",
        help="run only this benchmark (repeatable): "
        + ", ".join(benchmark.__name__ for benchmark in BENCHMARKS),
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run every registered benchmark; MISS is reported, not an error (exit 0)."""
    args = parse_args(argv)
    settings = Settings(quick=args.quick)
    info = machine()
    print(header(info, settings), flush=True)
    chosen = [b for b in BENCHMARKS if not args.only or b.__name__ in args.only]
    figures = [fig for benchmark in chosen for fig in benchmark(settings)]
    print()
    print(table(figures))
    write_json(args.json, info, settings, figures)
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
