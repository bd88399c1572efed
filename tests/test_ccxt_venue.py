"""The ccxt venue over a fake async exchange (no network): conversion, timeouts, the breaker,
client order ids, and keys that never leak. One test builds the real ccxt class, offline."""

from __future__ import annotations

import asyncio
import inspect
import logging
import subprocess
import sys
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any
from urllib.parse import quote

import pytest

from aios.exchange.base import BrokerError
from aios.exchange.breaker import BreakerState, CircuitBreaker
from aios.exchange.ccxt_venue import (
    CcxtVenue,
    VenueError,
    VenueUnavailable,
    ccxt_exchange,
    timeframe_end,
)
from aios.model import Candle
from aios.policy import Policy
from aios.testing import default_policy

T0 = datetime(2024, 1, 1, tzinfo=UTC)
MS0 = int(T0.timestamp() * 1000)
FIVE_MIN_MS = 5 * 60 * 1000

API_KEY = "AK-live-4f9e2c71"
SECRET = "SK/se+cr=et-93b1"
PASSWORD = "pw-tr4ding"
KEYS_ENV = {
    "AIOS_BINANCE_API_KEY": API_KEY,
    "AIOS_BINANCE_SECRET": SECRET,
    "AIOS_BINANCE_PASSWORD": PASSWORD,
}


# --- ccxt-like exceptions: the venue classifies by ccxt's class names, not by import ---------


class ExchangeError(Exception):
    """Like ccxt.ExchangeError: the venue answered and refused."""


class AuthenticationError(ExchangeError):
    pass


class InsufficientFunds(ExchangeError):
    pass


class NetworkError(Exception):
    """Like ccxt.NetworkError: the venue could not be reached."""


class FakeExchange:
    """The subset of a ccxt async exchange the venue uses, scripted by the test."""

    def __init__(self, exchange_id: str, config: dict[str, Any]) -> None:
        self.id = exchange_id
        self.config = dict(config)
        self.sandbox = False
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.error: BaseException | None = None
        self.hang = False
        self.closed = 0
        self.ohlcv: list[list[Any]] = []
        self.book: dict[str, Any] = {"bids": [[99.0, 1.0]], "asks": [[101.0, 2.0]]}
        self.balance: dict[str, Any] = {"free": {"USDT": 12.5}, "USDT": {"free": 12.5}}

    def set_sandbox_mode(self, enabled: bool) -> None:
        self.sandbox = enabled

    async def _act(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))
        if self.hang:
            await asyncio.sleep(3600)
        if self.error is not None:
            raise self.error

    def called(self, name: str) -> list[tuple[Any, ...]]:
        return [args for call, args in self.calls if call == name]

    async def load_markets(self, reload: bool = False) -> dict[str, Any]:
        await self._act("load_markets")
        return {"ETH/USDT": {}, "BTC/USDT": {}}

    async def fetch_ohlcv(
        self, symbol: str, timeframe: str = "1m", since: int | None = None, limit: int | None = None
    ) -> list[list[Any]]:
        await self._act("fetch_ohlcv", symbol, timeframe, since, limit)
        return self.ohlcv

    async def fetch_order_book(self, symbol: str, limit: int | None = None) -> dict[str, Any]:
        await self._act("fetch_order_book", symbol)
        return self.book

    async def create_order(
        self,
        symbol: str,
        type: str,
        side: str,
        amount: float,
        price: float | None = None,
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        await self._act("create_order", symbol, type, side, amount, price, params)
        return {"id": "venue-1", "clientOrderId": (params or {}).get("clientOrderId")}

    async def fetch_balance(self) -> dict[str, Any]:
        await self._act("fetch_balance")
        return self.balance

    async def close(self) -> None:
        self.closed += 1


def state(breaker: CircuitBreaker) -> BreakerState:
    """Read through a call, so that mypy does not narrow the property between two reads."""
    return breaker.state


class FakeClock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


@cache
def policy(timeout_s: float = 0.2, threshold: int = 2, cooldown_s: float = 30.0) -> Policy:
    return default_policy(
        f"""
exchange:
  name: "ccxt:binance"
  timeout_s: {timeout_s}
  circuit_breaker:
    failure_threshold: {threshold}
    cooldown_s: {cooldown_s}
"""
    )


class Harness:
    """A venue over a fake exchange, with the fake and the breaker clock at hand."""

    def __init__(self, env: dict[str, str] | None = None, **kwargs: Any) -> None:
        self.fakes: list[FakeExchange] = []
        self.clock = FakeClock()

        def factory(exchange_id: str, config: dict[str, Any]) -> FakeExchange:
            fake = FakeExchange(exchange_id, config)
            self.fakes.append(fake)
            return fake

        self.venue = CcxtVenue.from_policy(
            policy(),
            env if env is not None else {},
            exchange_factory=factory,
            clock=self.clock,
            **kwargs,
        )

    @property
    def fake(self) -> FakeExchange:
        return self.fakes[0]


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = Harness(KEYS_ENV)
    yield harness
    harness.venue.close()


@pytest.fixture
def public() -> Iterator[Harness]:
    harness = Harness({})
    yield harness
    harness.venue.close()


# --- construction ------------------------------------------------------------------------------


def test_exchange_id_and_settings_come_from_the_policy(h: Harness) -> None:
    assert h.venue.exchange_id == "binance"
    assert h.fake.id == "binance"
    assert h.fake.config["enableRateLimit"] is True
    assert h.fake.config["timeout"] == 200  # ccxt's own timeout, ms
    assert h.venue.timeout_s == 0.2
    assert h.venue.breaker.failure_threshold == 2
    assert h.venue.breaker.cooldown_s == 30.0
    assert h.fake.sandbox is False


def test_sandbox_is_switched_on_the_exchange() -> None:
    harness = Harness({}, sandbox=True)
    try:
        assert harness.fake.sandbox is True
        assert "sandbox=True" in repr(harness.venue)
    finally:
        harness.venue.close()


def test_a_paper_policy_is_not_a_ccxt_venue() -> None:
    with pytest.raises(ValueError, match="not a ccxt venue"):
        CcxtVenue.from_policy(default_policy(), {}, exchange_factory=FakeExchange)


def test_a_failing_factory_is_a_venue_error() -> None:
    def broken(exchange_id: str, config: dict[str, Any]) -> Any:
        raise ValueError(f"no exchange {exchange_id}")

    with pytest.raises(VenueError, match="binance: connect failed: ValueError: no exchange"):
        CcxtVenue.from_policy(policy(), {}, exchange_factory=broken)


# --- market data -------------------------------------------------------------------------------


def test_markets_lists_the_symbols(public: Harness) -> None:
    assert public.venue.markets() == ["BTC/USDT", "ETH/USDT"]


def test_candles_are_converted_to_utc(public: Harness) -> None:
    public.fake.ohlcv = [
        [MS0, 100, 110, 95, 105, 12],
        [MS0 + FIVE_MIN_MS, 105.0, 106.0, 101.0, 102.0, None],  # some venues omit volume
    ]
    candles = public.venue.fetch_candles("ETH/USDT", "5m", T0, 2)
    assert candles == [
        Candle(T0, 100.0, 110.0, 95.0, 105.0, 12.0),
        Candle(T0 + timedelta(minutes=5), 105.0, 106.0, 101.0, 102.0, 0.0),
    ]
    assert all(candle.time.tzinfo is UTC for candle in candles)
    assert public.fake.called("fetch_ohlcv") == [("ETH/USDT", "5m", MS0, 2)]


def test_since_is_optional_and_must_be_aware(public: Harness) -> None:
    public.venue.fetch_candles("ETH/USDT", "1h", None, 10)
    assert public.fake.called("fetch_ohlcv") == [("ETH/USDT", "1h", None, 10)]
    with pytest.raises(ValueError, match="timezone-aware"):
        public.venue.fetch_candles("ETH/USDT", "1h", datetime(2024, 1, 1), 10)


def test_closed_only_drops_the_candle_still_open() -> None:
    now = [T0 + timedelta(minutes=14, seconds=59)]
    harness = Harness({}, utcnow=lambda: now[0])
    try:
        harness.fake.ohlcv = [[MS0 + i * FIVE_MIN_MS, 1, 2, 0.5, 1.5, 3] for i in range(3)]
        fetch = harness.venue.fetch_candles
        assert len(fetch("ETH/USDT", "5m", T0, 3)) == 3  # as the venue sent them
        closed = fetch("ETH/USDT", "5m", T0, 3, closed_only=True)
        assert [c.time for c in closed] == [T0, T0 + timedelta(minutes=5)]
        now[0] = T0 + timedelta(minutes=15)  # the last candle closes exactly now
        assert len(fetch("ETH/USDT", "5m", T0, 3, closed_only=True)) == 3
    finally:
        harness.venue.close()


def test_timeframe_end_uses_calendar_months() -> None:
    assert timeframe_end(T0, "1M") == datetime(2024, 2, 1, tzinfo=UTC)
    assert timeframe_end(datetime(2024, 1, 31, tzinfo=UTC), "1M") == datetime(
        2024, 2, 29, tzinfo=UTC
    )
    assert timeframe_end(T0, "1y") == datetime(2025, 1, 1, tzinfo=UTC)
    assert timeframe_end(T0, "4h") == T0 + timedelta(hours=4)
    with pytest.raises(ValueError, match="unsupported timeframe"):
        timeframe_end(T0, "5x")


def test_spread_from_the_best_bid_and_ask(public: Harness) -> None:
    # bid 99, ask 101, mid 100: 2 / 100 = 200 bps
    assert public.venue.spread_bps("ETH/USDT") == pytest.approx(200.0)
    public.fake.book = {
        "bids": [[99.95, 1.0], [99.0, 5.0]],
        "asks": [[100.05, 1.0], [101.0, 5.0]],
    }
    assert public.venue.spread_bps("ETH/USDT") == pytest.approx(10.0)


@pytest.mark.parametrize(
    "book",
    [
        {"bids": [], "asks": [[101.0, 1.0]]},
        {"bids": [[99.0, 1.0]], "asks": []},
        {"bids": [[None, 1.0]], "asks": [[101.0, 1.0]]},
        {"bids": [[102.0, 1.0]], "asks": [[101.0, 1.0]]},  # crossed
        {},
    ],
)
def test_no_spread_without_a_usable_book(public: Harness, book: dict[str, Any]) -> None:
    public.fake.book = book
    assert public.venue.spread_bps("ETH/USDT") is None


# --- orders and balance ------------------------------------------------------------------------


def test_create_order_passes_the_client_order_id(h: Harness) -> None:
    order = h.venue.create_order("run1-c3-0", "ETH/USDT", "buy", 0.5)
    assert order == {"id": "venue-1", "clientOrderId": "run1-c3-0"}
    h.venue.create_order("run1-c3-1", "ETH/USDT", "sell", 0.25, "limit", 2000.0, reduce_only=True)
    assert h.fake.called("create_order") == [
        ("ETH/USDT", "market", "buy", 0.5, None, {"clientOrderId": "run1-c3-0"}),
        (
            "ETH/USDT",
            "limit",
            "sell",
            0.25,
            2000.0,
            {"clientOrderId": "run1-c3-1", "reduceOnly": True},
        ),
    ]


def test_a_duplicate_client_order_id_is_refused_before_sending(h: Harness) -> None:
    h.venue.create_order("o1", "ETH/USDT", "buy", 1.0)
    with pytest.raises(VenueError, match="'o1' was already sent"):
        h.venue.create_order("o1", "ETH/USDT", "buy", 1.0)
    assert len(h.fake.called("create_order")) == 1


def test_an_order_with_an_unknown_outcome_keeps_its_id(h: Harness) -> None:
    h.fake.hang = True
    with pytest.raises(VenueUnavailable, match="timed out"):
        h.venue.create_order("o1", "ETH/USDT", "buy", 1.0)
    h.fake.hang = False
    with pytest.raises(VenueError, match="already sent"):
        h.venue.create_order("o1", "ETH/USDT", "buy", 1.0)
    assert len(h.fake.called("create_order")) == 1


def test_an_order_refused_by_the_breaker_releases_its_id(h: Harness) -> None:
    h.fake.error = NetworkError("connection reset")
    for _ in range(2):
        with pytest.raises(VenueUnavailable):
            h.venue.markets()
    h.fake.error = None
    with pytest.raises(VenueUnavailable, match="not sent") as refused:
        h.venue.create_order("o1", "ETH/USDT", "buy", 1.0)
    assert refused.value.sent is False
    h.clock.now += 30.0
    assert h.venue.create_order("o1", "ETH/USDT", "buy", 1.0)["clientOrderId"] == "o1"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("", "ETH/USDT", "buy", 1.0), "client order id is required"),
        (("o1", "ETH/USDT", "long", 1.0), "side must be"),
        (("o1", "ETH/USDT", "buy", 0.0), "amount must be > 0"),
        (("o1", "ETH/USDT", "buy", 1.0, "stop"), "order_type must be"),
        (("o1", "ETH/USDT", "buy", 1.0, "limit"), "limit order needs a price"),
    ],
)
def test_invalid_orders_are_refused_locally(
    h: Harness, args: tuple[Any, ...], message: str
) -> None:
    with pytest.raises(VenueError, match=message):
        h.venue.create_order(*args)
    assert h.fake.called("create_order") == []
    h.venue.create_order("o1", "ETH/USDT", "buy", 1.0)  # a refused id was never taken


def test_balance_is_the_free_quote(h: Harness) -> None:
    assert h.venue.balance("USDT") == 12.5
    assert h.venue.balance("BTC") == 0.0
    h.fake.balance = {"USDT": {"free": 3.0}}
    assert h.venue.balance("USDT") == 3.0


def test_private_calls_need_keys_public_ones_do_not(public: Harness) -> None:
    assert public.venue.authenticated is False
    assert "apiKey" not in public.fake.config
    assert public.venue.spread_bps("ETH/USDT") is not None
    with pytest.raises(VenueError, match="set AIOS_BINANCE_API_KEY and AIOS_BINANCE_SECRET"):
        public.venue.create_order("o1", "ETH/USDT", "buy", 1.0)
    with pytest.raises(VenueError, match="needs API keys"):
        public.venue.balance("USDT")
    assert public.fake.called("create_order") == []
    assert public.fake.called("fetch_balance") == []


# --- failures, timeouts and the breaker --------------------------------------------------------


def test_errors_are_broker_errors_naming_exchange_and_call(h: Harness) -> None:
    h.fake.error = InsufficientFunds("binance Account has insufficient balance")
    with pytest.raises(BrokerError) as raised:
        h.venue.create_order("o1", "ETH/USDT", "buy", 1.0)
    assert isinstance(raised.value, VenueError)
    assert not isinstance(raised.value, VenueUnavailable)
    assert str(raised.value).startswith("binance: create_order(o1) refused: InsufficientFunds")
    assert (raised.value.exchange, raised.value.call) == ("binance", "create_order(o1)")


def test_a_timeout_counts_as_a_failure_and_opens_the_breaker(h: Harness) -> None:
    h.fake.hang = True
    with pytest.raises(VenueUnavailable, match=r"binance: fetch_order_book\(ETH/USDT\) timed out"):
        h.venue.spread_bps("ETH/USDT")
    assert state(h.venue.breaker) is BreakerState.CLOSED  # threshold 2: one to go
    with pytest.raises(VenueUnavailable, match=r"timed out after 0\.2 s"):
        h.venue.markets()
    assert state(h.venue.breaker) is BreakerState.OPEN
    assert h.venue.health_metrics() == {"circuit_breaker_open": 1.0, "exchange_error_rate": 1.0}
    calls = len(h.fake.calls)
    with pytest.raises(VenueUnavailable, match="not sent: circuit open"):
        h.venue.markets()
    assert len(h.fake.calls) == calls  # refused without touching the venue


def test_network_errors_count_refusals_do_not(h: Harness) -> None:
    h.fake.error = InsufficientFunds("no money")
    for i in range(5):
        with pytest.raises(VenueError):
            h.venue.create_order(f"o{i}", "ETH/USDT", "buy", 1.0)
    assert state(h.venue.breaker) is BreakerState.CLOSED
    h.fake.error = NetworkError("ECONNRESET")
    for _ in range(2):
        with pytest.raises(VenueUnavailable, match="failed: NetworkError: ECONNRESET"):
            h.venue.markets()
    assert state(h.venue.breaker) is BreakerState.OPEN


def test_half_open_recovery(h: Harness) -> None:
    h.fake.error = NetworkError("down")
    for _ in range(2):
        with pytest.raises(VenueUnavailable):
            h.venue.markets()
    h.fake.error = None
    h.clock.now += 29.9
    with pytest.raises(VenueUnavailable, match="circuit open"):
        h.venue.markets()
    h.clock.now += 0.1  # the cool-off is over: one trial goes through
    assert state(h.venue.breaker) is BreakerState.HALF_OPEN
    assert h.venue.markets() == ["BTC/USDT", "ETH/USDT"]
    assert state(h.venue.breaker) is BreakerState.CLOSED
    assert h.venue.health_metrics()["circuit_breaker_open"] == 0.0
    assert h.venue.health_metrics()["exchange_error_rate"] == pytest.approx(2 / 3)


def test_a_failed_trial_reopens(h: Harness) -> None:
    h.fake.error = NetworkError("down")
    for _ in range(2):
        with pytest.raises(VenueUnavailable):
            h.venue.markets()
    h.clock.now += 30.0
    with pytest.raises(VenueUnavailable, match="failed: NetworkError"):
        h.venue.markets()
    assert state(h.venue.breaker) is BreakerState.OPEN
    with pytest.raises(VenueUnavailable, match="circuit open"):
        h.venue.markets()


def test_real_ccxt_errors_are_classified() -> None:
    import ccxt

    harness = Harness(KEYS_ENV)
    try:
        harness.fake.error = ccxt.InvalidOrder("binance bad order")
        with pytest.raises(VenueError) as refused:
            harness.venue.create_order("o1", "ETH/USDT", "buy", 1.0)
        assert not isinstance(refused.value, VenueUnavailable)
        harness.fake.error = ccxt.RequestTimeout("binance GET timed out")
        with pytest.raises(VenueUnavailable):
            harness.venue.markets()
        harness.fake.error = ccxt.ExchangeNotAvailable("binance 503")
        with pytest.raises(VenueUnavailable):
            harness.venue.markets()
        assert state(harness.venue.breaker) is BreakerState.OPEN
    finally:
        harness.venue.close()


# --- keys: from the environment only, never shown ----------------------------------------------


def test_keys_come_from_the_env_mapping_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIOS_BINANCE_API_KEY", "from-os-environ")
    monkeypatch.setenv("AIOS_BINANCE_SECRET", "from-os-environ")
    harness = Harness({})  # the caller's env mapping is the only source
    try:
        assert harness.venue.authenticated is False
        assert "apiKey" not in harness.fake.config
    finally:
        harness.venue.close()
    harness = Harness(KEYS_ENV)
    try:
        config = harness.fake.config
        assert (config["apiKey"], config["secret"], config["password"]) == (
            API_KEY,
            SECRET,
            PASSWORD,
        )
    finally:
        harness.venue.close()
    # No argument can carry a key.
    names = set(inspect.signature(CcxtVenue.from_policy).parameters) | set(
        inspect.signature(CcxtVenue).parameters
    )
    assert not {name for name in names if "key" in name or "secret" in name or "pass" in name}


def test_half_a_key_pair_is_refused_without_showing_it() -> None:
    with pytest.raises(VenueError, match="AIOS_BINANCE_SECRET is not set") as raised:
        Harness({"AIOS_BINANCE_API_KEY": API_KEY})
    assert API_KEY not in str(raised.value)


def test_keys_appear_nowhere(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    harness = Harness(KEYS_ENV)
    venue, fake = harness.venue, harness.fake
    shown: list[str] = [repr(venue), str(venue)]
    try:
        # ccxt quotes the request in its messages: keys plain and URL-encoded.
        fake.error = AuthenticationError(
            f'binance {{"code":-2015,"msg":"Invalid API-key {API_KEY}, secret {SECRET}, '
            f'passphrase {PASSWORD}"}} GET https://api.binance.com/?apiKey={quote(API_KEY)}'
            f"&sig={quote(SECRET, safe='')}"
        )
        with pytest.raises(VenueError) as refused:
            venue.balance("USDT")
        fake.error = NetworkError(f"connection to api.binance.com reset, X-MBX-APIKEY: {API_KEY}")
        for _ in range(2):
            with pytest.raises(VenueUnavailable) as failed:
                venue.markets()
        with pytest.raises(VenueUnavailable) as breaker_open:
            venue.markets()
        for error in (refused.value, failed.value, breaker_open.value):
            shown += [str(error), repr(error), "".join(traceback.format_exception(error))]
            assert error.__cause__ is None
        assert "***" in str(refused.value)
        assert "Invalid API-key ***" in str(refused.value)
        shown += [repr(venue), repr(venue.breaker), str(venue.health_metrics())]
    finally:
        venue.close()
    shown += [repr(venue), caplog.text]
    assert caplog.text  # the failures were logged...
    for text in shown:  # ...and nothing shows a key, a secret or a password
        for value in (API_KEY, SECRET, PASSWORD, quote(API_KEY), quote(SECRET, safe="")):
            assert value not in text, text


# --- lifecycle ---------------------------------------------------------------------------------


def test_close_is_idempotent_and_stops_the_loop() -> None:
    harness = Harness({})
    venue = harness.venue
    venue.close()
    venue.close()
    assert harness.fake.closed == 1
    assert not venue._thread.is_alive()
    assert "breaker=closed" in repr(venue)
    with pytest.raises(VenueError, match="the venue is closed"):
        venue.markets()


def test_close_cancels_a_call_abandoned_after_a_timeout() -> None:
    harness = Harness({})
    harness.fake.hang = True
    with pytest.raises(VenueUnavailable):
        harness.venue.markets()
    harness.venue.close()
    assert not harness.venue._thread.is_alive()


def test_context_manager_closes() -> None:
    harness = Harness({})
    with harness.venue as venue:
        venue.markets()
    assert harness.fake.closed == 1


def test_importing_the_module_does_not_import_ccxt() -> None:
    code = (
        "import sys\n"
        "import aios.exchange.ccxt_venue\n"
        "loaded = sorted(m for m in sys.modules if m == 'ccxt' or m.startswith('ccxt.'))\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_real_ccxt_class_is_wired_without_network() -> None:
    """ccxt constructors do no I/O: build a real binance (sandbox) through the venue, check the
    config it received, and close it; no call is made."""
    import ccxt.async_support as ccxt_async

    built: list[Any] = []

    def real(exchange_id: str, config: dict[str, Any]) -> Any:
        exchange = ccxt_exchange(exchange_id, config)
        built.append(exchange)
        return exchange

    venue = CcxtVenue.from_policy(
        policy(timeout_s=7.5), KEYS_ENV, sandbox=True, exchange_factory=real
    )
    try:
        (exchange,) = built
        assert isinstance(exchange, ccxt_async.binance)
        assert exchange.id == "binance"
        assert exchange.enableRateLimit is True
        assert exchange.timeout == 7500
        assert (exchange.apiKey, exchange.secret, exchange.password) == (API_KEY, SECRET, PASSWORD)
        assert exchange.isSandboxModeEnabled is True
        assert API_KEY not in repr(venue)
    finally:
        venue.close()


def test_an_unknown_ccxt_exchange_is_refused() -> None:
    import ccxt.async_support  # noqa: F401  (a declared dependency: its absence fails)

    with pytest.raises(VenueError, match="ccxt has no exchange 'nosuchvenue'"):
        CcxtVenue("nosuchvenue", {})


def test_the_api_url_override_must_be_an_origin() -> None:
    with pytest.raises(ValueError, match="AIOS_BINANCE_API_URL must be an origin"):
        Harness({"AIOS_BINANCE_API_URL": "ftp://127.0.0.1/api"})


def test_the_api_url_override_rebases_every_ccxt_url() -> None:
    from aios.exchange.ccxt_venue import _rebase

    urls = {
        "public": "https://api.binance.com/api/v3",
        "sapi": {"v1": "https://api.binance.com/sapi/v1"},
    }
    assert _rebase(urls, "http://127.0.0.1:9") == {
        "public": "http://127.0.0.1:9/api/v3",
        "sapi": {"v1": "http://127.0.0.1:9/sapi/v1"},
    }


def test_a_malformed_answer_is_a_failure_not_an_empty_result(h: Harness) -> None:
    h.fake.last_http_response = '{"balances": ['  # type: ignore[attr-defined]
    h.fake.last_json_response = None  # type: ignore[attr-defined]
    with pytest.raises(VenueUnavailable, match="not valid JSON"):
        h.venue.balance("USDT")
    assert h.venue.breaker.metrics()["exchange_error_rate"] > 0
