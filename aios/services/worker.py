"""A signal worker: computes the signals of the symbols it holds, as the engine would.

Several workers share the symbol universe. Each symbol has a lease (`symbol:<SYMBOL>`, on the
worker's clock, renewed every round); a worker holds at most its fair share
(ceil(symbols / live workers)) and takes free or expired leases up to it, so each symbol is
handled by one worker at a time and a dead worker's symbols move to the survivors once its
leases expire. Work arrives on one stream per symbol (`market.candle:<SYMBOL>`, consumer group
`workers`), read in order. When a worker takes a symbol over, the entries the previous holder
left pending are reclaimed first (XAUTOCLAIM once idle for `reclaim_idle_s`); until none is left
the symbol's new entries are not read, so its candles are still handled in order.

Per entry (symbol, time): the market is shown as of that time, every signal source is called
(`aios_signals`, exactly as the engine calls it), and one `ai.signal_generated` event carries
the signals, or the error a source raised. `commit` publishes it and acknowledges the entry
atomically under the entry's event id: a reclaimed entry a slow worker already finished has no
second effect.

The worker holds the whole market (every universe symbol's candles, from `--data`): signal
sources may read any symbol (the built-in model's bootstrap pools them all). Replay only: live
candle feeds to workers are not built yet.

Warm-up: before its first entry at time T, a worker calls its signal sources as the engine
would have at every earlier candle time (every candidate symbol, results discarded), so a
source with learned state (the built-in model trains its bootstrap at the first time enough
rows exist) is in the state a single process would have at T, also in a worker started late, as
the replacement of a dead one. Afterwards a worker calls its sources only for its own symbols:
a source whose state depends on every symbol's calls would diverge (the built-in one does not).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from aios.bus import CANDLES, SIGNALS, Bus, Clock, Delivery, per_symbol
from aios.bus.events import CandleClosed, SignalsReported, event
from aios.market import InMemoryMarket
from aios.model import Candle, CycleContext, Mode, PortfolioView, Signal, Stage, own_mode
from aios.model_registry import ModelRegistry
from aios.policy import Policy
from aios.registry import PluginSet, call_each

WORKERS = "workers"


def lease_name(symbol: str) -> str:
    return f"symbol:{symbol}"


def signals_event_id(work_id: str) -> str:
    """The report's id follows from the work's id (`<replay>/candle/...` -> `<replay>/signals/...`)."""
    return work_id.replace("/candle/", "/signals/", 1)


@dataclass
class WorkerStats:
    processed: int = 0
    duplicates: int = 0
    reclaimed: int = 0
    signals: int = 0


class SignalWorker:
    """One worker process's loop: leases, reclaim, consume, compute, commit."""

    def __init__(
        self,
        bus: Bus,
        policy: Policy,
        plugins: PluginSet,
        series: Mapping[str, Sequence[Candle]],
        name: str,
        *,
        clock: Clock,
        stage: Stage = Stage.OBSERVATION,
        models: ModelRegistry | None = None,
    ) -> None:
        self.bus = bus
        self.policy = policy
        self.plugins = plugins
        self.name = name
        self.clock = clock
        self.stage = stage
        self.models = models
        self.market = InMemoryMarket(series)
        self._by_time = {s: {c.time: c for c in candles} for s, candles in series.items()}
        configured = policy.get("universe", "symbols", default=None)
        self.universe = (
            [s for s in configured if s in series]
            if isinstance(configured, list)
            else sorted(series)
        )
        self.held: list[str] = []
        self._draining: set[str] = set()
        self._rebalanced: float | None = None
        self._stats_at: float | None = None
        self._warm = False
        self._times = sorted({c.time for candles in series.values() for c in candles})
        self._first = {s: c[0].time for s, c in series.items() if c}
        self.stats = WorkerStats()
        self.stop = threading.Event()
        for symbol in self.universe:
            bus.ensure_group(per_symbol(CANDLES, symbol), WORKERS)

    # --- leases ------------------------------------------------------------------------------

    def rebalance(self) -> None:
        """Heartbeat, renew held leases, drop what exceeds the fair share, take free ones."""
        settings = self.bus.settings
        now = self.clock()
        self._rebalanced = now
        self.bus.heartbeat(WORKERS, self.name, now)
        live = max(1, len(self.bus.members(WORKERS, now, settings.lease_s)))
        share = math.ceil(len(self.universe) / live)
        kept: list[str] = []
        for symbol in self.held:
            if len(kept) < share and self.bus.acquire_lease(
                lease_name(symbol), self.name, now, settings.lease_s
            ):
                kept.append(symbol)
            elif len(kept) >= share:
                self.bus.release_lease(lease_name(symbol), self.name)
        for symbol in self.universe:
            if len(kept) >= share:
                break
            if symbol in kept:
                continue
            if self.bus.acquire_lease(lease_name(symbol), self.name, now, settings.lease_s):
                kept.append(symbol)
                self._draining.add(symbol)  # another worker may have left entries pending
        self.held = kept
        self._draining &= set(kept)

    def _drain(self) -> list[Delivery]:
        """Reclaim entries a previous holder left pending; a symbol is clean when none is left."""
        reclaimed: list[Delivery] = []
        for symbol in sorted(self._draining):
            stream = per_symbol(CANDLES, symbol)
            taken = self.bus.reclaim(stream, WORKERS, self.name)
            reclaimed.extend(taken)
            self.stats.reclaimed += len(taken)
            others = self.bus.pending(stream, WORKERS) - self.bus.pending(
                stream, WORKERS, self.name
            )
            if others == 0:
                self._draining.discard(symbol)
        return reclaimed

    # --- work ----------------------------------------------------------------------------------

    def poll(self, block_ms: int | None = None) -> int:
        """One round: leases (renewed every third of `lease_s`), reclaimed entries, then new
        entries of clean symbols."""
        renew_every = self.bus.settings.lease_s / 3
        if self._rebalanced is None or self.clock() - self._rebalanced >= renew_every:
            self.rebalance()
        deliveries = self._drain()
        clean = [per_symbol(CANDLES, s) for s in self.held if s not in self._draining]
        wait = self.bus.settings.block_ms if block_ms is None else block_ms
        deliveries.extend(self.bus.consume(clean, WORKERS, self.name, block_ms=wait or None))
        # in time order across the held symbols (each stream is already in order)
        deliveries.sort(key=lambda d: _work_key(d))
        for delivery in deliveries:
            if self.stop.is_set():
                break  # the rest stays pending: redelivered to whoever holds the symbol
            self.process(delivery)
        self.publish_stats()
        return len(deliveries)

    def publish_stats(self, *, force: bool = False) -> bool:
        """Replace `<prefix>:stats:worker:<name>` every `stats_interval_s` (on the clock)."""
        now = self.clock()
        interval = self.bus.settings.stats_interval_s
        if not force and self._stats_at is not None and now - self._stats_at < interval:
            return False
        self._stats_at = now
        self.bus.write_hash(
            f"worker:{self.name}",
            {
                "held": ",".join(self.held),
                "processed": str(self.stats.processed),
                "duplicates": str(self.stats.duplicates),
                "reclaimed": str(self.stats.reclaimed),
                "signals": str(self.stats.signals),
                "updated_at": repr(now),
            },
        )
        return True

    def process(self, delivery: Delivery) -> bool:
        """Compute and commit one entry's report; False when it had been committed before."""
        work = delivery.event.payload
        if not isinstance(work, CandleClosed):
            self.bus.ack(delivery, WORKERS)  # not work: nothing to do with it
            return False
        report = self.compute(work)
        fresh = self.bus.commit(
            delivery,
            WORKERS,
            [(SIGNALS, event(signals_event_id(delivery.event.id), report))],
        )
        if fresh:
            self.stats.processed += 1
            self.stats.signals += len(report.signals)
        else:
            self.stats.duplicates += 1
        return fresh

    def warm_up(self, until: datetime) -> int:
        """Call the signal sources at every candle time before `until`, as the engine does
        (each universe symbol visible then); returns how many times were replayed."""
        replayed = 0
        for time in self._times:
            if time >= until:
                break
            for symbol in self.universe:
                if self._first.get(symbol, time) <= time:
                    self._signals(time, symbol)
            replayed += 1
        self._warm = True
        return replayed

    def compute(self, work: CandleClosed) -> SignalsReported:
        """The signals every source gives for `work.symbol` with the market as of `work.time`."""
        known = self._by_time.get(work.symbol, {}).get(work.time)
        if work.candle is not None and known != work.candle:
            why = (
                "this worker's data has no candle there"
                if known is None
                else f"this worker's data has {known}, the event {work.candle}"
            )
            error = f"DataMismatch: {work.symbol} at {work.time.isoformat()}: {why}"
            return SignalsReported(work.symbol, work.time, self.name, (), (("worker", error),))
        if not self._warm:
            self.warm_up(work.time)
        signals, errors = self._signals(work.time, work.symbol)
        return SignalsReported(work.symbol, work.time, self.name, signals, errors)

    def _signals(
        self, time: datetime, symbol: str
    ) -> tuple[tuple[Signal, ...], tuple[tuple[str, str], ...]]:
        self.market.advance(time)
        ctx = CycleContext(
            time,
            0,
            self.policy,
            self.stage,
            self.market,
            PortfolioView(0.0, 0.0),
            models=self.models,
        )
        signals: list[Signal] = []
        errors: list[tuple[str, str]] = []
        for result in call_each(
            self.plugins.manager,
            "aios_signals",
            {"ctx": ctx, "symbol": symbol},
            lambda name: own_mode(self.policy, name) is not Mode.OFF,
        ):
            if result.error is not None:
                errors.append((result.plugin, result.error))
            elif result.value:
                signals.extend(s for s in result.value if isinstance(s, Signal))
        return tuple(signals), tuple(errors)

    def close(self) -> None:
        """Leave cleanly: give up the leases (the others take the symbols at once)."""
        for symbol in self.held:
            self.bus.release_lease(lease_name(symbol), self.name)
        self.bus.leave(WORKERS, self.name)
        self.held = []


def _work_key(delivery: Delivery) -> tuple[datetime, str, str]:
    """Work in time order, then symbol, then arrival; anything else first (it is only acked)."""
    payload = delivery.event.payload
    if isinstance(payload, CandleClosed):
        return (payload.time, payload.symbol, delivery.entry_id)
    return (_EARLIEST, "", delivery.entry_id)


_EARLIEST = datetime.min.replace(tzinfo=UTC)
