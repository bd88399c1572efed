"""Bus benchmark: events per second through Redis end to end, and distributed replay throughput.

`.venv/bin/python bench/bus.py [--quick] [--redis URL] [--times N] [--repeat K]` (also run by
`make bench`). Needs the Redis on 127.0.0.1:6379 (db 15, a fresh key prefix per measurement,
deleted afterwards). Figures (median of K runs, with min and max):

* `bus.redis.publish_per_s`: XADD of one event (encoded, MAXLEN ~) per call, one client.
* `bus.redis.end_to_end_per_s`: a publisher thread and a consumer-group consumer running at once;
  the consumer decodes each event and commits it (idempotency key + one output event + XACK, one
  Lua call). Counted from the first publish to the last commit.
* `bus.memory.end_to_end_per_s`: the same on the in-process bus, for comparison.
* `replay.single_process`: `aios run`'s runtime on the bundled data (first N candle times).
* `replay.gate_only`: the risk gate alone, every worker report already on the bus: the ceiling
  of the serial part.
* `replay.workers_1/2/3`: the same replay through Redis: 1, 2 or 3 `aios worker` processes and
  the risk gate; candles per second of the gate's run, the workers already started.

The JSON with every sample goes to bench/results/bus.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from aios.app import load  # noqa: E402
from aios.bus import Bus, BusSettings, BusUnavailable, open_bus  # noqa: E402
from aios.bus.events import RewardComputed, event  # noqa: E402
from aios.data import bundled_data_dir  # noqa: E402
from aios.exchange.paper import PaperBroker  # noqa: E402
from aios.runtime import Runtime, load_series  # noqa: E402
from aios.services.risk_gate import RiskGate  # noqa: E402
from aios.services.worker import lease_name  # noqa: E402

DEFAULT_POLICY = REPO / "policies" / "default.yaml"
NOW = datetime(2018, 1, 10, tzinfo=UTC)


def reward(index: int) -> object:
    return event(
        f"bench/reward/{index}",
        RewardComputed(f"p{index}", f"s{index}", "ETH/BTC", "shadow", 1.25, 0.0125, NOW),
    )


def publish_rate(bus: Bus, count: int) -> float:
    started = time.perf_counter()
    for index in range(count):
        bus.publish("bench.in", reward(index))  # type: ignore[arg-type]
    return count / (time.perf_counter() - started)


def end_to_end_rate(make_bus: Callable[[], Bus], count: int) -> float:
    consumer_bus, producer_bus = make_bus(), make_bus()
    consumer_bus.ensure_group("bench.in", "bench")
    done = threading.Event()
    committed = 0

    def consume() -> None:
        nonlocal committed
        while committed < count:
            for delivery in consumer_bus.consume(["bench.in"], "bench", "c", block_ms=100):
                consumer_bus.commit(delivery, "bench", [("bench.out", delivery.event)])
                committed += 1
        done.set()

    thread = threading.Thread(target=consume)
    thread.start()
    started = time.perf_counter()
    for index in range(count):
        producer_bus.publish("bench.in", reward(index))  # type: ignore[arg-type]
    done.wait()
    elapsed = time.perf_counter() - started
    thread.join()
    return count / elapsed


def single_process_rate(times: int) -> float:
    policy, plugins = load([DEFAULT_POLICY], env={})
    series = load_series(bundled_data_dir(), policy.get("universe", "symbols"))
    with tempfile.TemporaryDirectory() as state:
        runtime = Runtime(policy, plugins, series, Path(state), PaperBroker.from_policy)
        started = time.perf_counter()
        report = runtime.run(times)
        elapsed = time.perf_counter() - started
    return report.candles * len(series) / elapsed


def distributed_rate(url: str, workers: int, times: int) -> float:
    prefix = f"aios-bench-{uuid.uuid4().hex[:10]}"
    with tempfile.TemporaryDirectory() as scratch:
        overlay = Path(scratch) / "bus.yaml"
        overlay.write_text(f"version: 1\nbus:\n  prefix: {prefix}\n  block_ms: 20\n")
        files = [DEFAULT_POLICY, overlay]
        policy, plugins = load(files, env={})
        series = load_series(bundled_data_dir(), policy.get("universe", "symbols"))
        bus = open_bus(url, BusSettings.from_policy(policy))
        command = [sys.executable, "-m", "aios", "worker", "--bus", url]
        for path in files:
            command += ["--policy", str(path)]
        env = {k: v for k, v in os.environ.items() if k != "AIOS_BUS"}
        processes = [
            subprocess.Popen(
                [*command, "--name", f"bench-{i}", "--state-dir", str(Path(scratch) / f"w{i}")],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for i in range(workers)
        ]
        try:
            names = {f"bench-{i}" for i in range(workers)}
            deadline = time.monotonic() + 120
            while True:  # every worker has joined and the symbols are spread over all of them
                owners = {bus.lease_owner(lease_name(s), time.time()) for s in series}
                if owners == names or (workers > len(series) and None not in owners):
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"workers did not start: leases held by {owners}")
                time.sleep(0.05)
            gate = RiskGate(
                bus, policy, plugins, series, Path(scratch) / "state", PaperBroker.from_policy,
                limit=times,
            )  # fmt: skip
            started = time.perf_counter()
            report = gate.run()
            elapsed = time.perf_counter() - started
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(30)
            bus.clear()
            bus.close()
    assert report is not None
    return report.candles * len(series) / elapsed


def gate_only_rate(url: str, times: int) -> float:
    """The gate's ceiling: every report already on the bus (computed beforehand by an
    in-process worker), so the run measures the serial part alone."""
    from aios.bus import SIGNALS
    from aios.bus.events import CandleClosed
    from aios.services.worker import SignalWorker, signals_event_id

    prefix = f"aios-bench-{uuid.uuid4().hex[:10]}"
    policy, plugins = load([DEFAULT_POLICY], env={})
    series = load_series(bundled_data_dir(), policy.get("universe", "symbols"))
    bus = open_bus(url, BusSettings(prefix=prefix, block_ms=20))
    with tempfile.TemporaryDirectory() as scratch:
        gate = RiskGate(
            bus, policy, plugins, series, Path(scratch), PaperBroker.from_policy, limit=times
        )
        _, worker_plugins = load([DEFAULT_POLICY], env={})
        worker = SignalWorker(bus, policy, worker_plugins, series, "pre", clock=time.time)
        by_time = {s: {c.time: c for c in candles} for s, candles in series.items()}
        items = []
        for moment in gate.times:
            for symbol in gate.candidates(moment):
                work_id = f"{gate.replay_id}/candle/{symbol}/{moment.isoformat()}"
                report = worker.compute(CandleClosed(symbol, moment, by_time[symbol].get(moment)))
                items.append((SIGNALS, event(signals_event_id(work_id), report)))
        for start in range(0, len(items), 500):
            bus.publish_many(items[start : start + 500])  # type: ignore[arg-type]
        started = time.perf_counter()
        report = gate.run()
        elapsed = time.perf_counter() - started
    bus.clear()
    bus.close()
    assert report is not None
    return report.candles * len(series) / elapsed


def summarise(name: str, unit: str, samples: list[float]) -> dict[str, object]:
    return {
        "name": name,
        "unit": unit,
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "samples": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--quick", action="store_true", help="small counts, one run each")
    parser.add_argument("--times", type=int, default=None, help="candle times to replay")
    parser.add_argument("--repeat", type=int, default=None)
    arguments = parser.parse_args()
    repeat = arguments.repeat or (1 if arguments.quick else 3)
    count = 2000 if arguments.quick else 20000
    times = arguments.times or (300 if arguments.quick else 1500)

    def redis_bus() -> Bus:
        return open_bus(arguments.redis, BusSettings(prefix=prefix))

    probe = open_bus(arguments.redis, BusSettings(reconnect_attempts=2))
    try:
        probe.ping()
    except BusUnavailable as exc:
        raise SystemExit(f"bench/bus.py: {exc}; start redis-server on 127.0.0.1:6379") from None
    probe.close()

    figures = []
    samples: dict[str, list[float]] = {}
    for _ in range(repeat):
        prefix = f"aios-bench-{uuid.uuid4().hex[:10]}"
        bus = redis_bus()
        try:
            samples.setdefault("bus.redis.publish_per_s", []).append(publish_rate(bus, count))
            bus.clear()
            samples.setdefault("bus.redis.end_to_end_per_s", []).append(
                end_to_end_rate(redis_bus, count)
            )
        finally:
            bus.clear()
            bus.close()
        memory = open_bus("memory://", BusSettings(prefix="m"))
        samples.setdefault("bus.memory.end_to_end_per_s", []).append(
            end_to_end_rate(lambda memory=memory: memory, count)  # type: ignore[misc]
        )
    units = {k: "events/s" for k in samples}
    for _ in range(repeat):
        samples.setdefault("replay.single_process", []).append(single_process_rate(times))
        samples.setdefault("replay.gate_only", []).append(gate_only_rate(arguments.redis, times))
        for workers in (1, 2, 3):
            samples.setdefault(f"replay.workers_{workers}", []).append(
                distributed_rate(arguments.redis, workers, times)
            )
    units.update({k: "candles/s" for k in samples if k.startswith("replay.")})
    for name, values in samples.items():
        figures.append(summarise(name, units[name], values))

    print(f"bus benchmark: {count} events, replay of {times} candle times, {repeat} run(s)")
    print(f"{'figure':<28} {'median':>10} {'min':>10} {'max':>10}  unit")
    for figure in figures:
        print(
            f"{figure['name']:<28} {figure['median']:>10.0f} {figure['min']:>10.0f}"
            f" {figure['max']:>10.0f}  {figure['unit']}"
        )
    results = REPO / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "bus.json").write_text(
        json.dumps({"events": count, "times": times, "figures": figures}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
