"""Live feeds: poll a venue for closed candles and drive the runtime with them.

`aios run --exchange ccxt:<id> --dry-run` reads real markets and prices from the venue and books
fills on the paper exchange: the whole system runs on live data with no order sent. Each poll
fetches the latest *closed* candles of every symbol; a candle time is stepped once every symbol
has reported it (or something newer), in time order, so the cycles see aligned markets.

Without `--dry-run` the actual book is a `VenueBroker` (real orders) and the first poll's
backlog is history: it warms the engine and the shadow book up, but the actual book acts only
from the last candle of that first poll on (`Runtime.live_from`), so nothing is bought on a
stale price and a restored position's stops are not checked against candles from before it.

With real orders, what the start-up reconciliation froze (a position whose order has an unknown
outcome, or whose balance the venue no longer covers) is asked about again every
`exchange.recheck_frozen_s` seconds of the runner's clock, at the start of a poll (`recheck`,
`VenueBroker.recheck`); each decision is journaled (`hook = reconcile`) before the poll steps,
and what a settled order filled reaches the books through the next candle of its symbol. An
order found still resting on the venue is cancelled there, as at start-up.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from aios.model import Candle
from aios.runtime import RunReport, Runtime


class CandleSource(Protocol):
    def fetch_candles(
        self,
        symbol: str,
        timeframe: str,
        since: datetime | None = None,
        limit: int = 500,
        *,
        closed_only: bool = False,
    ) -> list[Candle]: ...


class LiveRunner:
    """Polls `source` every `poll_s` seconds and steps `runtime` through new candle times."""

    def __init__(
        self,
        runtime: Runtime,
        source: CandleSource,
        symbols: Sequence[str],
        timeframe: str,
        *,
        poll_s: float,
        warmup_candles: int,
        sleep: Callable[[float], None] | None = None,
        stop: threading.Event | None = None,
        live_orders: bool = False,
        recheck: Callable[[datetime], Sequence[Any]] | None = None,
        recheck_s: float = 300.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.runtime = runtime
        self.source = source
        self.symbols = list(symbols)
        self.timeframe = timeframe
        self.poll_s = poll_s
        self.warmup_candles = warmup_candles
        self.stop = stop or threading.Event()
        #: Between polls; by default a wait that a stop (SIGTERM, SIGINT) cuts short.
        self.sleep: Callable[[float], object] = sleep or self.stop.wait
        self._stepped: datetime | None = None
        self._started = False
        self.errors: list[str] = []
        self.live_orders = live_orders
        #: Asks the venue again about what is frozen (`VenueBroker.recheck`); its decisions
        #: (`Reconciliation`s) are journaled. None: nothing to re-check (dry runs).
        self.recheck = recheck
        self.recheck_s = recheck_s
        self.clock = clock
        self._checked_at: datetime | None = None
        #: Every re-check decision, oldest first (also in the journal).
        self.rechecked: list[Any] = []

    def _recheck_if_due(self) -> None:
        """The periodic re-check; the first poll only starts the clock (the start-up
        reconciliation has just asked)."""
        if self.recheck is None:
            return
        now = self.clock()
        if self._checked_at is None:
            self._checked_at = now
            return
        if (now - self._checked_at).total_seconds() < self.recheck_s:
            return
        self._checked_at = now
        try:
            decisions = list(self.recheck(now))
        except Exception as exc:  # a venue hiccup must not end the run: report and carry on
            self.errors.append(f"re-check of frozen positions: {exc}")
            return
        if decisions:
            self.runtime.journal_reconciliation(decisions, now)
            self.rechecked.extend(decisions)

    def poll(self) -> list[datetime]:
        """Fetch, append, and step every candle time all symbols have reached; the times stepped."""
        self._recheck_if_due()
        latest: dict[str, datetime] = {}
        for symbol in self.symbols:
            limit = self.warmup_candles if self._stepped is None else 10
            try:
                candles = self.source.fetch_candles(
                    symbol, self.timeframe, None, limit, closed_only=True
                )
            except Exception as exc:  # a venue hiccup must not end the run: report and carry on
                self.errors.append(f"{symbol}: {exc}")
                continue
            self.runtime.add_candles(symbol, candles)
            held = self.runtime.series.get(symbol)
            if held:
                latest[symbol] = held[-1].time
        if len(latest) < len(self.symbols):
            return []
        horizon = min(latest.values())
        pending = sorted(
            {
                c.time
                for symbol in self.symbols
                for c in self.runtime.series.get(symbol, [])
                if (self._stepped is None or c.time > self._stepped) and c.time <= horizon
            }
        )
        if pending and not self._started:
            if self.live_orders:
                self.runtime.live_from = pending[-1]
            self.runtime.begin(pending[0])
            self._started = True
        stepped: list[datetime] = []
        for now in pending:
            if self.stop.is_set():  # a stop ends the run after the current candle time
                break
            self.runtime.advance_to(now)
            stepped.append(now)
        if stepped:
            self._stepped = stepped[-1]
        return stepped

    def run(self, max_polls: int | None = None) -> RunReport | None:
        """Poll until stopped (SIGTERM, Ctrl-C, `stop.set()`) or `max_polls`; then report."""
        polls = 0
        status = "failed"
        try:
            while not self.stop.is_set() and (max_polls is None or polls < max_polls):
                self.poll()
                polls += 1
                if max_polls is None or polls < max_polls:
                    self.sleep(self.poll_s)
            status = "stopped"
        except KeyboardInterrupt:
            status = "interrupted"
        if not self._started:
            self.runtime.journal.close()
            self.runtime.store.close()
            self.runtime.models.close()
            self.runtime.stages.close()
            return None
        return self.runtime.end(status)
