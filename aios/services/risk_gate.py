"""The risk gate: the one process that holds the global portfolio view.

Workers compute signals per symbol; everything that needs the whole book runs here, in the
single-process runtime's own code: health and directives, the coordinator's risk mode, the
universe, and per signal TP/SL, threshold, the portfolio balancer's caps, sizing, the execution
plan, both brokers, the journal and the state store. Only the signal sources are replaced, by a
relay (named like the built-in source, `signal_model`) that answers `aios_signals` with what the
workers reported.

Deterministic by construction: the gate decides candle time T only when every symbol the engine
will ask about at T has reported T (a barrier per time), and the engine orders the signals of a
cycle canonically (symbol, confidence, id), so neither the number of workers nor their speed
can change a decision. Intents of one time are decided one after the other against the book
including the entries already decided: caps hold across workers.

Per time, after the step (the state store commits fills and equity in it; the journal is
flushed before any order is acted on, as in a single process): the time's `trade.intent`,
`execution.result` and `trade.closed` events and the next time's work are published and the
workers' reports acknowledged, in one atomic commit under one idempotency key.

The gate feeds the replay: it publishes the work (`market.candle:<SYMBOL>`) up to
`bus.replay_window` candle times ahead of the time it decides. A gate that dies ends the replay
(the workers wait); resuming a distributed replay is not built.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from aios.bus import CANDLES, CLOSED, EXECUTIONS, INTENTS, SIGNALS, Bus, Delivery, per_symbol
from aios.bus.events import (
    CandleClosed,
    Event,
    ExecutionReported,
    SignalsReported,
    TradeClosedReported,
    TradeIntentDecided,
    event,
)
from aios.exchange.base import Broker, Fill
from aios.hookspecs import hookimpl
from aios.model import (
    Candle,
    ClosedTrade,
    CycleContext,
    HealthReport,
    HealthStatus,
    OrderIntent,
    Position,
    Signal,
    Stage,
)
from aios.plugin import Subsystem
from aios.policy import Policy
from aios.registry import PluginSet, add_plugin, new_manager
from aios.runtime import BOOKS, RunReport, Runtime

GATE = "risk-gate"
RELAYED = "signal_model"


class BusSignalRelay(Subsystem):
    """Stands in for the signal sources at the gate: the workers' reports for the current time.

    Registered under the built-in source's name, so its policy section (mode, on_error) governs
    the relay exactly as it governs the source in a single process. A source that raised on the
    worker raises here, so the engine records the failure as it would have."""

    name = RELAYED

    def __init__(self) -> None:
        self.time: datetime | None = None
        self.reports: dict[str, SignalsReported] = {}

    def load(self, time: datetime, reports: Mapping[str, SignalsReported]) -> None:
        self.time, self.reports = time, dict(reports)

    @hookimpl
    def aios_signals(self, ctx: CycleContext, symbol: str) -> Sequence[Signal]:
        report = self.reports.get(symbol)
        if report is None:
            raise LookupError(f"no worker report for {symbol} at {ctx.now.isoformat()}")
        if report.errors:
            plugin, error = report.errors[0]
            raise RuntimeError(f"{plugin} on worker {report.worker}: {error}")
        return list(report.signals)

    @hookimpl
    def aios_health(self, ctx: CycleContext) -> HealthReport:
        return HealthReport(self.name, HealthStatus.OK, "signals relayed from the workers")


def relayed_plugins(plugins: PluginSet, relay: BusSignalRelay) -> PluginSet:
    """The same plugins, in the same order, with the signal source replaced by the relay."""
    replaced = PluginSet(new_manager(), problems=list(plugins.problems))
    for name, loaded in plugins.plugins.items():
        if name == RELAYED:
            add_plugin(replaced, relay, "aios (bus signal relay)", builtin=True)
        else:
            add_plugin(replaced, loaded.plugin, loaded.source, loaded.version, loaded.builtin)
    if RELAYED not in replaced.plugins:
        add_plugin(replaced, relay, "aios (bus signal relay)", builtin=True)
    return replaced


@dataclass
class _Recorder:
    """What the brokers did during one candle time, per book."""

    orders: list[tuple[str, OrderIntent]] = field(default_factory=list)
    fills: list[tuple[str, Fill]] = field(default_factory=list)


class RecordingBroker:
    """A broker that notes every order and fill, for publishing; delegates everything."""

    def __init__(self, inner: Broker, book: str, recorder: _Recorder) -> None:
        self.inner, self.book, self.recorder = inner, book, recorder

    @property
    def quote_currency(self) -> str:
        return self.inner.quote_currency

    def cash(self) -> float:
        return self.inner.cash()

    def equity(self, prices: Mapping[str, float]) -> float:
        return self.inner.equity(prices)

    def positions(self) -> tuple[Position, ...]:
        return self.inner.positions()

    def submit(self, order: OrderIntent, now: datetime, price: float) -> list[Fill]:
        fills = self.inner.submit(order, now, price)
        self.recorder.orders.append((self.book, order))
        self.recorder.fills.extend((self.book, f) for f in fills)
        return fills

    def on_candle(self, symbol: str, candle: Candle) -> list[Fill]:
        fills = self.inner.on_candle(symbol, candle)
        self.recorder.fills.extend((self.book, f) for f in fills)
        return fills

    def closed_trades(self) -> Sequence[ClosedTrade]:
        return self.inner.closed_trades()

    def __getattr__(self, name: str) -> Any:
        """Anything else the runtime asks of its broker goes to the real one."""
        return getattr(self.inner, name)


class _GateRuntime(Runtime):
    """The runtime, with the bus's health among the components self-healing sees."""

    bus: Bus

    def _feed_health(self, now: datetime, candidates: Sequence[str]) -> list[HealthReport]:
        return [*super()._feed_health(now, candidates), self.bus.health()]


class RiskGate:
    """Feeds the work, waits for each time's reports, decides, publishes, acknowledges."""

    def __init__(
        self,
        bus: Bus,
        policy: Policy,
        plugins: PluginSet,
        series: Mapping[str, Sequence[Candle]],
        state_dir: Path,
        broker_factory: Callable[[Policy], Broker],
        *,
        stage: Stage | None = None,
        replay_id: str | None = None,
        limit: int | None = None,
    ) -> None:
        self.bus = bus
        self.replay_id = replay_id or uuid.uuid4().hex[:12]
        self.relay = BusSignalRelay()
        self.recorder = _Recorder()
        books = iter(BOOKS)

        def recording(policy: Policy) -> Broker:
            return RecordingBroker(broker_factory(policy), next(books), self.recorder)

        self.runtime = _GateRuntime(
            policy, relayed_plugins(plugins, self.relay), series, state_dir, recording, stage=stage
        )
        self.runtime.bus = bus
        self.series = {s: list(c) for s, c in series.items()}
        self._by_time = {s: {c.time: c for c in candles} for s, candles in self.series.items()}
        self._first = {s: c[0].time for s, c in self.series.items() if c}
        self.times = sorted({c.time for candles in self.series.values() for c in candles})
        if limit is not None:
            self.times = self.times[:limit]
        self._published = 0
        self._buffer: dict[datetime, dict[str, tuple[SignalsReported, Delivery]]] = {}
        self._seen_trades = {book: 0 for book in BOOKS}
        self.stop = threading.Event()
        self.decided = 0
        bus.ensure_group(SIGNALS, GATE)
        for symbol in self.series:
            bus.ensure_group(per_symbol(CANDLES, symbol), "workers")

    # --- the work ------------------------------------------------------------------------------

    def candidates(self, time: datetime) -> list[str]:
        """The symbols the engine asks its signal sources about at `time` (as `_candidates`)."""
        visible = [s for s, first in self._first.items() if first <= time]
        configured = self.runtime.policy.get("universe", "symbols", default=None)
        if isinstance(configured, list):
            return [s for s in configured if s in visible]
        return sorted(visible)

    def _work(self, upto: int) -> list[tuple[str, Event[Any]]]:
        """The work of the candle times not published yet, up to index `upto`."""
        items: list[tuple[str, Event[Any]]] = []
        while self._published < min(upto, len(self.times)):
            time = self.times[self._published]
            for symbol in self.candidates(time):
                work = CandleClosed(symbol, time, self._by_time[symbol].get(time))
                work_id = f"{self.replay_id}/candle/{symbol}/{time.isoformat()}"
                items.append((per_symbol(CANDLES, symbol), event(work_id, work)))
            self._published += 1
        return items

    def _read(self, block_ms: int | None) -> int:
        """Buffer the reports that arrived (waiting up to `block_ms` for the first)."""
        prefix = f"{self.replay_id}/"
        deliveries = self.bus.consume([SIGNALS], GATE, "gate", block_ms=block_ms or None)
        for delivery in deliveries:
            report = delivery.event.payload
            if not isinstance(report, SignalsReported) or not delivery.event.id.startswith(prefix):
                self.bus.ack(delivery, GATE)  # another replay's, or not a report
                continue
            slot = self._buffer.setdefault(report.time, {})
            if report.symbol in slot:
                self.bus.ack(delivery, GATE)  # a second report of one (symbol, time)
                continue
            slot[report.symbol] = (report, delivery)
        self._malformed_reports()
        return len(deliveries)

    def _malformed_reports(self) -> None:
        """A worker's report that arrived malformed stands for an error of that (symbol, time),
        so the barrier completes and the engine records the failure (as a source that raised);
        otherwise the gate would wait for it forever."""
        prefix = f"{self.replay_id}/signals/"
        for letter in self.bus.take_dead_letters():
            entry_id = letter.raw.get("id", "")
            if letter.source != SIGNALS or not entry_id.startswith(prefix):
                continue
            symbol, _, stamp = entry_id[len(prefix) :].rpartition("/")
            try:
                time = datetime.fromisoformat(stamp)
            except ValueError:
                continue
            if symbol not in self.series:
                continue
            slot = self._buffer.setdefault(time, {})
            if symbol in slot:
                continue
            error = (
                "bus",
                f"malformed report (dead-lettered as {letter.entry_id}): {letter.reason}",
            )
            report = SignalsReported(symbol, time, "?", (), (error,))
            slot[symbol] = (report, Delivery(SIGNALS, letter.entry_id, event(entry_id, report)))

    def _ready(self, time: datetime) -> bool:
        return set(self.candidates(time)) <= set(self._buffer.get(time, {}))

    # --- one time ------------------------------------------------------------------------------

    def decide(self, time: datetime) -> None:
        """Step the runtime at `time` on its reports; then, in one atomic commit, publish the
        outcome and the next time's work and acknowledge the reports."""
        reports = self._buffer.pop(time, {})
        self.relay.load(time, {symbol: report for symbol, (report, _) in reports.items()})
        self.runtime.advance_to(time)  # the store commits; the journal is flushed on orders
        self.decided += 1
        self.bus.commit_many(
            [delivery for _, delivery in reports.values()],
            GATE,
            [*self._outputs(time), *self._work(self.decided + self.bus.settings.replay_window)],
            key=f"{GATE}:{self.replay_id}:{time.isoformat()}",
        )

    def _outputs(self, time: datetime) -> list[tuple[str, Event[Any]]]:
        outputs: list[tuple[str, Event[Any]]] = []
        stamp = f"{self.replay_id}/{time.isoformat()}"
        for index, (book, order) in enumerate(self.recorder.orders):
            outputs.append(
                (
                    INTENTS,
                    event(f"{stamp}/intent/{index}", TradeIntentDecided(book, time, order)),
                )
            )
        for index, (book, fill) in enumerate(self.recorder.fills):
            outputs.append(
                (EXECUTIONS, event(f"{stamp}/fill/{index}", ExecutionReported(book, fill)))
            )
        for book in BOOKS:
            trades = self.runtime.books[book].broker.closed_trades()
            for trade in trades[self._seen_trades[book] :]:
                outputs.append(
                    (
                        CLOSED,
                        event(
                            f"{self.replay_id}/closed/{book}/{trade.position_id}",
                            TradeClosedReported(book, trade),
                        ),
                    )
                )
            self._seen_trades[book] = len(trades)
        self.recorder.orders.clear()
        self.recorder.fills.clear()
        return outputs

    # --- the whole replay ----------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self.decided >= len(self.times)

    def start(self) -> None:
        if not self.times:
            raise ValueError("no candles to replay")
        self.runtime.begin(self.times[0])
        self.bus.publish_many(self._work(self.bus.settings.replay_window))

    def pump(self, block_ms: int | None = None) -> int:
        """Read what arrived, then decide every time whose barrier is complete, in order."""
        wait = self.bus.settings.block_ms if block_ms is None else block_ms
        self._read(wait)
        decided = 0
        while not self.finished and self._ready(self.times[self.decided]):
            self.decide(self.times[self.decided])
            decided += 1
        return decided

    def finish(self) -> RunReport | None:
        status = "finished" if self.finished else "interrupted"
        return self.runtime.end(status)

    def run(self) -> RunReport | None:
        """Replay every time (or until stopped); the report of what was decided."""
        self.start()
        try:
            while not self.finished and not self.stop.is_set():
                self.pump()
        finally:
            report = self.finish()
        return report

    def poll(self) -> int:
        return self.pump()

    def close(self) -> None:
        pass
