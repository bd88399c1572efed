"""A real venue through ccxt: a synchronous facade over `ccxt.async_support`.

Why this shape
    * ccxt is imported lazily, when a venue is built (never at module import): the CLI must
      start fast, and replay/paper runs never need it.
    * The runtime is synchronous; ccxt's async API is the one that honours cancellation. The
      venue owns an asyncio loop in a daemon thread and waits for each call with
      `run_coroutine_threadsafe(...).result(timeout_s)`: every call has the policy's
      `exchange.timeout_s`, however the venue misbehaves.
    * Every call goes through a `CircuitBreaker` (`exchange.circuit_breaker`). A timeout, a
      network error or a malformed answer is a failure; a request the venue answered by refusing
      it (ccxt `ExchangeError`: bad symbol, insufficient funds, invalid order...) is not, since
      the venue is up. `enableRateLimit` is always on, so the venue is never hammered.
    * API keys come only from the environment (`AIOS_<ID>_API_KEY`, `AIOS_<ID>_SECRET`,
      `AIOS_<ID>_PASSWORD` when set), never from the policy or arguments, and are redacted from
      `repr`, error messages and logs. Without keys the venue serves public data (dry run);
      private calls are refused locally.
    * Errors surface as `VenueError` (a `BrokerError`), naming the exchange and the call; the
      ccxt exception is not chained (its message or its context may carry a key).

Client order ids: `create_order` passes `clientOrderId` so that the venue can recognise a retry
after a restart. Venues enforce uniqueness of client ids, but not all in the same way (Binance
spot, for one, only among *open* orders: an order filled at once can be placed again under its
id). So the venue also keeps the ids it has sent and refuses a repeat locally, before sending:
an id whose outcome is unknown (timeout, network error) stays taken, to be reconciled on the
venue by its client id rather than blindly re-sent. Only an id that never left (breaker open,
invalid arguments, no keys) is released.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import importlib
import inspect
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus

from aios.exchange.base import BrokerError
from aios.exchange.breaker import CircuitBreaker, CircuitOpen
from aios.model import Candle

if TYPE_CHECKING:
    from aios.policy import Policy

logger = logging.getLogger(__name__)

#: Builds an async exchange object from an exchange id and a ccxt config dict (see
#: `ccxt_exchange`). Tests inject a fake with ccxt's method names.
ExchangeFactory = Callable[[str, dict[str, Any]], Any]

_REDACTED = "***"
_SIDES = frozenset({"buy", "sell"})
_ORDER_TYPES = frozenset({"market", "limit"})
_TIMEFRAME = re.compile(r"^(\d+)([smhdwMy])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
#: ccxt exception classes (matched by name, so ccxt need not be imported to classify) meaning
#: "the venue answered and refused": not a sign that the venue is unhealthy.
_REFUSALS = frozenset({"ExchangeError"})
#: ccxt's class for "no such order" (a refusal that answers a reconciliation question).
_NOT_FOUND = frozenset({"OrderNotFound"})
#: ccxt options per venue for what aios trades: spot markets only (the venue broker is spot
#: only), and no private currency listing on every start.
_SPOT_OPTIONS: dict[str, dict[str, Any]] = {
    "binance": {
        "defaultType": "spot",
        "fetchMarkets": {"types": ["spot"]},
        "fetchCurrencies": False,
        "fetchMargins": False,
    },
    # Spot instruments only (ccxt would also load futures, swaps and options: several calls).
    "okx": {"defaultType": "spot", "fetchMarkets": {"types": ["spot"]}},
    "bybit": {"defaultType": "spot", "fetchMarkets": {"types": ["spot"]}},
}


class VenueError(BrokerError):
    """A venue call that failed or was refused; the message names the exchange and the call."""

    def __init__(self, message: str, *, exchange: str, call: str, sent: bool = True) -> None:
        super().__init__(message)
        self.exchange = exchange
        self.call = call
        #: False when the request certainly never left this process (breaker open, closed venue).
        self.sent = sent
        #: The venue answered that the order does not exist (ccxt OrderNotFound).
        self.not_found = False


class VenueUnavailable(VenueError):
    """The venue could not be reached in time (timeout, network, breaker open): counted by the
    circuit breaker, unlike a refusal, and the outcome of an order may be unknown."""


def _ccxt_async() -> Any:
    try:
        return importlib.import_module("ccxt.async_support")
    except ImportError as exc:
        raise ImportError(f"a ccxt venue needs the ccxt package (pip install ccxt): {exc}") from exc


def ccxt_exchange_ids() -> tuple[str, ...]:
    """The exchange ids ccxt knows (imports ccxt): an id is checked before a run starts."""
    return tuple(getattr(_ccxt_async(), "exchanges", ()))


def ccxt_exchange(exchange_id: str, config: dict[str, Any]) -> Any:
    """The real ccxt async exchange class for `exchange_id`, built from `config` (no I/O)."""
    ccxt_async = _ccxt_async()
    if exchange_id not in getattr(ccxt_async, "exchanges", ()):
        raise ValueError(f"ccxt has no exchange {exchange_id!r}")
    return getattr(ccxt_async, exchange_id)(config)


def env_prefix(exchange_id: str) -> str:
    """`AIOS_BINANCE` for `binance`: where the venue's keys are read from."""
    return f"AIOS_{exchange_id.upper()}"


def timeframe_end(start: datetime, timeframe: str) -> datetime:
    """When a candle opened at `start` closes. Months and years are calendar ones (ccxt's
    `parse_timeframe` counts a month as 30 days, which would call a 31-day month closed early)."""
    match = _TIMEFRAME.match(timeframe)
    if match is None:
        raise ValueError(f"unsupported timeframe {timeframe!r} (e.g. 1m, 5m, 1h, 1d, 1w, 1M)")
    amount, unit = int(match.group(1)), match.group(2)
    if unit in _SECONDS:
        return start + timedelta(seconds=amount * _SECONDS[unit])
    months = amount * (12 if unit == "y" else 1)
    index = start.month - 1 + months
    year, month = start.year + index // 12, index % 12 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    return start.replace(year=year, month=month, day=day)


def _is_refusal(exc: BaseException) -> bool:
    return any(cls.__name__ in _REFUSALS for cls in type(exc).__mro__)


def _rebase(urls: Any, base: str) -> Any:
    """Every URL of a ccxt `urls['api']` tree with its scheme and host replaced by `base`."""
    if isinstance(urls, str):
        match = re.match(r"^[a-z]+://[^/]+", urls)
        return base.rstrip("/") + urls[match.end() :] if match else urls
    if isinstance(urls, Mapping):
        return {key: _rebase(value, base) for key, value in urls.items()}
    return urls


class CcxtVenue:
    """A ccxt exchange behind timeouts, a circuit breaker and key redaction.

    Build it with `from_policy`. Thread-safe; `close()` when done (also a context manager).
    """

    def __init__(
        self,
        exchange_id: str,
        env: Mapping[str, str],
        *,
        timeout_s: float = 10.0,
        failure_threshold: int = 5,
        cooldown_s: float = 60.0,
        sandbox: bool = False,
        exchange_factory: ExchangeFactory | None = None,
        clock: Callable[[], float] = time.monotonic,
        utcnow: Callable[[], datetime] | None = None,
    ) -> None:
        if not re.fullmatch(r"[a-z0-9_]+", exchange_id):
            raise ValueError(f"invalid exchange id {exchange_id!r}")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.exchange_id = exchange_id
        self.sandbox = sandbox
        self.timeout_s = float(timeout_s)
        self.breaker = CircuitBreaker(failure_threshold, cooldown_s, clock)
        self._utcnow = utcnow or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        self._client_ids: set[str] = set()
        self._closed = False

        config, self._secrets = self._credentials(env)
        self.authenticated = "apiKey" in config
        config.update({"enableRateLimit": True, "timeout": math.ceil(self.timeout_s * 1000)})
        config["enableLastJsonResponse"] = True  # to tell a malformed answer from an empty one
        if exchange_id in _SPOT_OPTIONS:
            config["options"] = dict(_SPOT_OPTIONS[exchange_id])
        #: `AIOS_<ID>_API_URL`: send every REST call to this origin instead (a local mirror,
        #: a recording proxy, the test suite's fake venue). Never from the policy.
        self.api_url = env.get(f"{env_prefix(exchange_id)}_API_URL") or None
        if self.api_url is not None and not re.match(r"^https?://[^/\s]+/?$", self.api_url):
            raise ValueError(
                f"{env_prefix(exchange_id)}_API_URL must be an origin like "
                f"http://127.0.0.1:8080, got {self.api_url!r}"
            )

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"aios-ccxt-{exchange_id}", daemon=True
        )
        self._thread.start()
        factory = exchange_factory or ccxt_exchange
        if exchange_factory is None:
            # Imported here, not on the loop under the call timeout: importing ccxt takes
            # seconds, and a slow import is not a venue that failed to answer.
            with contextlib.suppress(ImportError):  # ccxt_exchange explains it
                importlib.import_module("ccxt.async_support")
        try:
            # Built on the loop's thread: ccxt binds its throttler and session to the running loop.
            self._exchange = self._run(self._build(factory, config, sandbox), "connect")
        except BaseException:
            self._stop_loop()
            raise

    @classmethod
    def from_policy(
        cls,
        policy: Policy,
        env: Mapping[str, str],
        *,
        sandbox: bool = False,
        exchange_factory: ExchangeFactory | None = None,
        clock: Callable[[], float] = time.monotonic,
        utcnow: Callable[[], datetime] | None = None,
    ) -> CcxtVenue:
        """The venue `exchange.name: ccxt:<id>` names, with the policy's timeout and breaker.
        `env` is the process environment (keys are read from it, never from the policy)."""
        name = str(policy.get("exchange", "name", default="paper"))
        if not name.startswith("ccxt:"):
            raise ValueError(f"exchange.name is {name!r}, not a ccxt venue (ccxt:<exchange id>)")
        return cls(
            name.removeprefix("ccxt:"),
            env,
            timeout_s=float(policy.get("exchange", "timeout_s", default=10.0)),
            failure_threshold=int(
                policy.get("exchange", "circuit_breaker", "failure_threshold", default=5)
            ),
            cooldown_s=float(policy.get("exchange", "circuit_breaker", "cooldown_s", default=60.0)),
            sandbox=sandbox,
            exchange_factory=exchange_factory,
            clock=clock,
            utcnow=utcnow,
        )

    # --- keys and redaction --------------------------------------------------------------------

    def _credentials(self, env: Mapping[str, str]) -> tuple[dict[str, Any], tuple[str, ...]]:
        """ccxt credentials from the environment, and every form of them to redact."""
        prefix = env_prefix(self.exchange_id)
        key = env.get(f"{prefix}_API_KEY") or ""
        secret = env.get(f"{prefix}_SECRET") or ""
        password = env.get(f"{prefix}_PASSWORD") or ""
        values = tuple(value for value in (key, secret, password) if value)
        forms = {
            form for value in values for form in (value, quote(value, safe=""), quote_plus(value))
        }
        # Longest first, so that a key containing another is redacted whole.
        secrets = tuple(sorted(forms, key=len, reverse=True))
        if bool(key) != bool(secret):
            missing = f"{prefix}_SECRET" if key else f"{prefix}_API_KEY"
            raise VenueError(
                f"{self.exchange_id}: {missing} is not set (set both {prefix}_API_KEY and "
                f"{prefix}_SECRET, or neither for public data only)",
                exchange=self.exchange_id,
                call="connect",
            )
        config: dict[str, Any] = {}
        if key:
            config.update({"apiKey": key, "secret": secret})
            if password:
                config["password"] = password
        return config, secrets

    def redact(self, text: str) -> str:
        """`text` with every API key, secret and password (plain or URL-encoded) masked."""
        for secret in self._secrets:
            text = text.replace(secret, _REDACTED)
        return text

    def __repr__(self) -> str:
        keys = "from env" if self.authenticated else "none (public data only)"
        state = "closed" if self._closed else self.breaker.state.value
        return (
            f"CcxtVenue(exchange={self.exchange_id!r}, sandbox={self.sandbox}, keys={keys}, "
            f"timeout_s={self.timeout_s:g}, breaker={state})"
        )

    __str__ = __repr__

    # --- the calls -----------------------------------------------------------------------------

    def markets(self) -> list[str]:
        """Every symbol the venue lists (ccxt caches the markets after the first load)."""
        loaded = self._call("load_markets")
        return sorted(str(symbol) for symbol in loaded)

    def fetch_candles(
        self,
        symbol: str,
        timeframe: str,
        since: datetime | None = None,
        limit: int = 500,
        *,
        closed_only: bool = False,
    ) -> list[Candle]:
        """OHLCV candles, oldest first, times in UTC. `closed_only` drops candles still open
        (the venue's last one usually is), so that nothing acts on a price that will move."""
        if since is not None and since.tzinfo is None:
            raise ValueError(f"since must be timezone-aware (UTC), got {since!r}")
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        timeframe_end(datetime(2000, 1, 1, tzinfo=UTC), timeframe)  # validate before sending
        since_ms = None if since is None else int(since.timestamp() * 1000)
        rows = self._call("fetch_ohlcv", symbol, timeframe, since_ms, limit, what=symbol)
        candles: list[Candle] = []
        for row in rows:
            if len(row) < 6 or any(value is None for value in row[:5]):
                logger.debug(
                    "%s: skipping incomplete candle %r of %s", self.exchange_id, row, symbol
                )
                continue
            candles.append(
                Candle(
                    time=datetime.fromtimestamp(int(row[0]) / 1000, tz=UTC),
                    open=float(row[1]),
                    high=float(row[2]),
                    low=float(row[3]),
                    close=float(row[4]),
                    volume=float(row[5] or 0.0),
                )
            )
        candles.sort(key=lambda candle: candle.time)
        if closed_only:
            now = self._utcnow()
            candles = [c for c in candles if timeframe_end(c.time, timeframe) <= now]
        return candles

    def spread_bps(self, symbol: str) -> float | None:
        """Best ask minus best bid over the mid, in basis points; None without a usable book
        (an empty side, or a crossed one)."""
        book = self._call("fetch_order_book", symbol, what=symbol)
        bids, asks = book.get("bids") or [], book.get("asks") or []
        if not bids or not asks or bids[0][0] is None or asks[0][0] is None:
            return None
        bid, ask = float(bids[0][0]), float(asks[0][0])
        if bid <= 0 or ask < bid:
            return None
        return (ask - bid) / ((ask + bid) / 2.0) * 1e4

    def create_order(
        self,
        client_order_id: str,
        symbol: str,
        side: str,
        amount: float,
        order_type: str = "market",
        price: float | None = None,
        reduce_only: bool = False,
    ) -> dict[str, Any]:
        """Place an order under `client_order_id` (see the module docstring on uniqueness).
        Returns ccxt's unified order structure."""
        call = f"create_order({client_order_id})"
        if not client_order_id:
            raise self._error("a client order id is required", call)
        if side not in _SIDES:
            raise self._error(f"side must be 'buy' or 'sell', got {side!r}", call)
        if order_type not in _ORDER_TYPES:
            raise self._error(f"order_type must be 'market' or 'limit', got {order_type!r}", call)
        if not amount > 0:
            raise self._error(f"amount must be > 0, got {amount}", call)
        if order_type == "limit" and (price is None or not price > 0):
            raise self._error(f"a limit order needs a price > 0, got {price}", call)
        self._require_keys(call)
        with self._lock:
            if client_order_id in self._client_ids:
                raise self._error(
                    f"client order id {client_order_id!r} was already sent; not sending it again "
                    f"(reconcile it on the venue by its client id)",
                    call,
                )
            self._client_ids.add(client_order_id)
        params: dict[str, Any] = {"clientOrderId": client_order_id}
        if reduce_only:
            params["reduceOnly"] = True
        limit_price = price if order_type == "limit" else None
        try:
            order = self._call(
                "create_order",
                symbol,
                order_type,
                side,
                amount,
                limit_price,
                params,
                what=client_order_id,
            )
        except VenueError as error:
            if not error.sent:
                with self._lock:
                    self._client_ids.discard(client_order_id)
            raise
        return dict(order)

    def fetch_order_by_client_id(self, client_order_id: str, symbol: str) -> dict[str, Any] | None:
        """The venue's record of the order sent under `client_order_id` (ccxt's unified order
        structure), or None when the venue has no such order. Raises VenueError otherwise."""
        return self._by_client_id("fetch_order", client_order_id, symbol)

    def fetch_open_orders(self, symbol: str | None = None) -> list[dict[str, Any]]:
        """Orders resting on the venue (of `symbol`, or all when the venue allows it)."""
        self._require_keys("fetch_open_orders")
        return [dict(o) for o in self._call("fetch_open_orders", symbol, what=symbol or "")]

    def cancel_order_by_client_id(self, client_order_id: str, symbol: str) -> dict[str, Any] | None:
        """Cancel the order sent under `client_order_id`; None when the venue has no such
        (open) order."""
        return self._by_client_id("cancel_order", client_order_id, symbol)

    def _by_client_id(
        self, method: str, client_order_id: str, symbol: str
    ) -> dict[str, Any] | None:
        """ccxt's `method(None, symbol, {clientOrderId})`: the order is named by the id aios
        sent, not the venue's id, which a crash may have kept aios from ever learning."""
        self._require_keys(f"{method}({client_order_id})")
        try:
            order = self._call(
                method, None, symbol, {"clientOrderId": client_order_id}, what=client_order_id
            )
        except VenueError as error:
            if error.not_found:
                return None
            raise
        return dict(order)

    def balances(self) -> dict[str, float]:
        """Total (free + used) balance per currency, as the venue reports it."""
        self._require_keys("fetch_balance")
        result = self._call("fetch_balance", what="all")
        totals = result.get("total") or {}
        return {
            str(currency): float(amount)
            for currency, amount in totals.items()
            if isinstance(amount, (int, float)) and not isinstance(amount, bool)
        }

    def balance(self, quote: str) -> float:
        """Free balance of the `quote` currency (0 when the venue reports none)."""
        self._require_keys(f"fetch_balance({quote})")
        result = self._call("fetch_balance", what=quote)
        free = result.get("free") or {}
        value = free.get(quote)
        if value is None:
            value = (result.get(quote) or {}).get("free")
        return float(value or 0.0)

    def health_metrics(self) -> dict[str, float]:
        """`circuit_breaker_open` and `exchange_error_rate`, for self-healing."""
        return self.breaker.metrics()

    def close(self) -> None:
        """Close the ccxt exchange (its HTTP session) and stop the loop. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        # ccxt's close() waits a little for its connections (timeout_on_exit, 250 ms by default).
        grace = max(self.timeout_s, 2.0)
        try:
            closer = getattr(self._exchange, "close", None)
            if closer is not None:
                self._run(self._await(closer), "close", grace)
        except VenueError as exc:
            logger.warning("%s", exc)
        finally:
            try:
                self._run(self._cancel_pending(), "close", grace)
            except VenueError as exc:
                logger.warning("%s", exc)
            self._stop_loop()

    def __enter__(self) -> CcxtVenue:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- plumbing ------------------------------------------------------------------------------

    async def _build(self, factory: ExchangeFactory, config: dict[str, Any], sandbox: bool) -> Any:
        exchange = factory(self.exchange_id, config)
        if sandbox:
            exchange.set_sandbox_mode(True)
        if self.api_url is not None:
            exchange.urls["api"] = _rebase(exchange.urls["api"], self.api_url)
        return exchange

    @staticmethod
    async def _cancel_pending() -> None:
        """Cancel calls still running (abandoned after a timeout), so none outlives the loop."""
        current = asyncio.current_task()
        pending = [task for task in asyncio.all_tasks() if task is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    @staticmethod
    async def _await(method: Callable[..., Any], *args: Any) -> Any:
        result = method(*args)
        return await result if inspect.isawaitable(result) else result

    def _run(self, coroutine: Any, call: str, timeout_s: float | None = None) -> Any:
        """Run on the venue's loop without the breaker (construction and close)."""
        timeout = self.timeout_s if timeout_s is None else timeout_s
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        failure = ""
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            failure = f"timed out after {timeout:g} s"
        except Exception as exc:
            failure = self._describe(exc)
        # Raised outside the except block: the original exception must not ride along as context.
        raise VenueError(
            f"{self.exchange_id}: {call} failed: {failure}", exchange=self.exchange_id, call=call
        )

    def _call(self, method: str, *args: Any, what: str = "") -> Any:
        """One venue call through the breaker and the timeout. Failures (timeout, network, an
        unexpected error) count against the breaker; refusals (ccxt ExchangeError) do not."""
        call = f"{method}({what})"
        if self._closed:
            raise VenueError(
                f"{self.exchange_id}: {call}: the venue is closed",
                exchange=self.exchange_id,
                call=call,
                sent=False,
            )
        try:
            self.breaker.allow()
        except CircuitOpen as exc:
            raise VenueUnavailable(
                f"{self.exchange_id}: {call} not sent: {exc}",
                exchange=self.exchange_id,
                call=call,
                sent=False,
            ) from None
        future = asyncio.run_coroutine_threadsafe(
            self._await(getattr(self._exchange, method), *args), self._loop
        )
        try:
            result = future.result(self.timeout_s)
        except TimeoutError:
            future.cancel()
            self.breaker.record_failure()
            failure: VenueError = VenueUnavailable(
                f"{self.exchange_id}: {call} timed out after {self.timeout_s:g} s",
                exchange=self.exchange_id,
                call=call,
            )
        except Exception as exc:
            refusal = _is_refusal(exc)
            if refusal:
                self.breaker.record_success()
            else:
                self.breaker.record_failure()
            kind = VenueError if refusal else VenueUnavailable
            failure = kind(
                f"{self.exchange_id}: {call} {'refused' if refusal else 'failed'}: "
                f"{self._describe(exc)}",
                exchange=self.exchange_id,
                call=call,
            )
            failure.not_found = any(cls.__name__ in _NOT_FOUND for cls in type(exc).__mro__)
        else:
            malformed = self._malformed_answer()
            if malformed is None:
                self.breaker.record_success()
                return result
            # ccxt builds its structures even from an answer it could not parse (a balance of
            # nothing, an order with no id): that is a failed call, never a zero balance.
            self.breaker.record_failure()
            failure = VenueUnavailable(
                f"{self.exchange_id}: {call} failed: the answer is not valid JSON ({malformed})",
                exchange=self.exchange_id,
                call=call,
            )
        logger.warning("%s", failure)
        # Raised outside the except block: ccxt's exception (maybe quoting a key) is not chained.
        raise failure

    def _malformed_answer(self) -> str | None:
        """The start of the last HTTP answer when ccxt could not parse it as JSON, else None
        (read from ccxt's public `last_http_response` / `last_json_response`; calls are made
        one at a time, so the last answer is this call's)."""
        raw = getattr(self._exchange, "last_http_response", None)
        parsed = getattr(self._exchange, "last_json_response", None)
        if isinstance(raw, str) and raw.strip() and parsed is None:
            return self.redact(raw.strip()[:60])
        return None

    def _describe(self, exc: BaseException) -> str:
        return self.redact(f"{type(exc).__name__}: {exc}")

    def _error(self, message: str, call: str) -> VenueError:
        return VenueError(
            self.redact(f"{self.exchange_id}: {call}: {message}"),
            exchange=self.exchange_id,
            call=call,
        )

    def _require_keys(self, call: str) -> None:
        if not self.authenticated:
            prefix = env_prefix(self.exchange_id)
            raise self._error(
                f"needs API keys; set {prefix}_API_KEY and {prefix}_SECRET in the environment",
                call,
            )

    def _stop_loop(self) -> None:
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(self.timeout_s)
        if not self._thread.is_alive():
            self._loop.close()
