"""A small fake of Binance's spot REST API on 127.0.0.1, for ccxt's real binance class.

It answers what aios uses (exchangeInfo, klines, account, order create / get / cancel,
openOrders) over the bundled candles, one more closed candle per symbol per klines request,
fills market orders at once at the last close (0.1 % commission in the quote asset), keeps
every order it ever accepted (to check that no client order id is used twice), and injects
faults on demand: a timeout (the order is *executed*, the answer comes too late), 5xx, 429 and
malformed JSON. Nothing of ccxt is patched: ccxt is pointed here with `AIOS_BINANCE_API_URL`.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qsl, urlparse

from aios.model import Candle

COMMISSION = 0.001


@dataclass
class Fault:
    """An injected fault for the next request(s) to `path` (method and path, e.g. 'POST /api/v3/order')."""

    kind: str  # timeout | 5xx | 429 | malformed
    times: int = 1
    delay_s: float = 2.0
    after: int = 0  # let this many matching requests through first


@dataclass
class FakeBinance:
    series: dict[str, list[Candle]]  # by ccxt symbol, e.g. ETH/BTC
    start: int  # candles visible at the first request of each symbol
    step: int = 1  # candles revealed by each later request of a symbol
    balances: dict[str, float] = field(default_factory=lambda: {"BTC": 1.0})
    orders: list[dict[str, Any]] = field(default_factory=list)
    client_ids: list[str] = field(default_factory=list)  # every newClientOrderId received
    requests: list[str] = field(default_factory=list)
    faults: dict[str, list[Fault]] = field(default_factory=dict)
    revealed: dict[str, int] = field(default_factory=dict)
    #: Set when a create-order request under a fault has executed (the test's kill point).
    executed_unanswered: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # --- helpers -------------------------------------------------------------------------------

    def market_id(self, symbol: str) -> str:
        return symbol.replace("/", "")

    def symbol_of(self, market_id: str) -> str:
        for symbol in self.series:
            if self.market_id(symbol) == market_id:
                return symbol
        raise KeyError(market_id)

    def inject(self, route: str, fault: Fault) -> None:
        with self.lock:
            self.faults.setdefault(route, []).append(fault)

    def take_fault(self, route: str) -> Fault | None:
        with self.lock:
            queue = self.faults.get(route) or []
            if not queue:
                return None
            fault = queue[0]
            if fault.after > 0:
                fault.after -= 1
                return None
            fault.times -= 1
            if fault.times <= 0:
                queue.pop(0)
            return fault

    def last_close(self, symbol: str) -> float:
        visible = self.revealed.get(symbol, self.start)
        return self.series[symbol][visible - 1].close

    # --- endpoints -----------------------------------------------------------------------------

    def exchange_info(self) -> dict[str, Any]:
        symbols = []
        for symbol in self.series:
            base, quote = symbol.split("/")
            symbols.append(
                {
                    "symbol": self.market_id(symbol),
                    "status": "TRADING",
                    "baseAsset": base,
                    "baseAssetPrecision": 8,
                    "quoteAsset": quote,
                    "quotePrecision": 8,
                    "quoteAssetPrecision": 8,
                    "orderTypes": ["LIMIT", "MARKET"],
                    "icebergAllowed": True,
                    "ocoAllowed": True,
                    "isSpotTradingAllowed": True,
                    "isMarginTradingAllowed": False,
                    "permissions": ["SPOT"],
                    "permissionSets": [["SPOT"]],
                    "filters": [
                        {
                            "filterType": "PRICE_FILTER",
                            "minPrice": "0.00000001",
                            "maxPrice": "1000.00000000",
                            "tickSize": "0.00000001",
                        },
                        {
                            "filterType": "LOT_SIZE",
                            "minQty": "0.00001000",
                            "maxQty": "900000.00000000",
                            "stepSize": "0.00001000",
                        },
                    ],
                }
            )
        return {"timezone": "UTC", "serverTime": int(time.time() * 1000), "symbols": symbols}

    def klines(self, params: dict[str, str]) -> list[list[Any]]:
        symbol = self.symbol_of(params["symbol"])
        with self.lock:
            previous = self.revealed.get(symbol)
            visible = self.start if previous is None else previous + self.step
            visible = min(visible, len(self.series[symbol]))
            self.revealed[symbol] = visible
        limit = int(params.get("limit", 500))
        rows = []
        for c in self.series[symbol][:visible][-limit:]:
            opened = int(c.time.timestamp() * 1000)
            rows.append(
                [
                    opened,
                    repr(c.open),
                    repr(c.high),
                    repr(c.low),
                    repr(c.close),
                    repr(c.volume),
                    opened + 299_999,
                    "0",
                    1,
                    "0",
                    "0",
                    "0",
                ]
            )
        return rows

    def account(self) -> dict[str, Any]:
        with self.lock:
            return {
                "canTrade": True,
                "accountType": "SPOT",
                "balances": [
                    {"asset": asset, "free": f"{amount:.8f}", "locked": "0.00000000"}
                    for asset, amount in sorted(self.balances.items())
                ],
                "permissions": ["SPOT"],
            }

    def create_order(self, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        symbol = self.symbol_of(params["symbol"])
        base, quote = symbol.split("/")
        client_id = params.get("newClientOrderId", "")
        with self.lock:
            self.client_ids.append(client_id)
            if any(o["clientOrderId"] == client_id for o in self.orders):
                return 400, {"code": -2010, "msg": "Duplicate order sent."}
            quantity = float(params["quantity"])
            price = self.last_close(symbol)
            side = params["side"]
            cost = quantity * price
            fee = cost * COMMISSION
            if side == "BUY":
                if self.balances.get(quote, 0.0) < cost + fee:
                    return 400, {
                        "code": -2010,
                        "msg": "Account has insufficient balance for requested action.",
                    }
                self.balances[quote] = self.balances.get(quote, 0.0) - cost - fee
                self.balances[base] = self.balances.get(base, 0.0) + quantity
            else:
                if self.balances.get(base, 0.0) + 1e-12 < quantity:
                    return 400, {
                        "code": -2010,
                        "msg": "Account has insufficient balance for requested action.",
                    }
                self.balances[base] = self.balances.get(base, 0.0) - quantity
                self.balances[quote] = self.balances.get(quote, 0.0) + cost - fee
            order = {
                "symbol": params["symbol"],
                "orderId": len(self.orders) + 1,
                "orderListId": -1,
                "clientOrderId": client_id,
                "transactTime": int(time.time() * 1000),
                "price": "0.00000000",
                "origQty": f"{quantity:.8f}",
                "executedQty": f"{quantity:.8f}",
                "cummulativeQuoteQty": f"{cost:.8f}",
                "status": "FILLED",
                "timeInForce": "GTC",
                "type": params.get("type", "MARKET"),
                "side": side,
                "workingTime": int(time.time() * 1000),
                "fills": [
                    {
                        "price": f"{price:.8f}",
                        "qty": f"{quantity:.8f}",
                        "commission": f"{fee:.8f}",
                        "commissionAsset": quote,
                        "tradeId": len(self.orders) + 1,
                    }
                ],
            }
            self.orders.append(order)
        return 200, order

    def find_order(self, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        client_id = params.get("origClientOrderId")
        with self.lock:
            for order in self.orders:
                if order["clientOrderId"] == client_id or str(order["orderId"]) == params.get(
                    "orderId"
                ):
                    found = {k: v for k, v in order.items() if k != "fills"}
                    found["time"] = found["updateTime"] = order["transactTime"]
                    return 200, found
        return 400, {"code": -2013, "msg": "Order does not exist."}

    def open_orders(self) -> list[dict[str, Any]]:
        with self.lock:
            return [o for o in self.orders if o["status"] == "NEW"]

    def cancel(self, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        client_id = params.get("origClientOrderId")
        with self.lock:
            for order in self.orders:
                if order["clientOrderId"] == client_id and order["status"] == "NEW":
                    order["status"] = "CANCELED"
                    return 200, order
        return 400, {"code": -2011, "msg": "Unknown order sent."}


def _handler(venue: FakeBinance) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

        def _params(self) -> dict[str, str]:
            parsed = urlparse(self.path)
            params = dict(parse_qsl(parsed.query))
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                params.update(parse_qsl(self.rfile.read(length).decode()))
            return params

        def _send(self, status: int, body: Any, raw: bytes | None = None) -> None:
            data = raw if raw is not None else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status == 429:
                self.send_header("Retry-After", "1")
            self.end_headers()
            self.wfile.write(data)

        def _route(self, method: str) -> None:
            path = urlparse(self.path).path
            route = f"{method} {path}"
            params = self._params()
            venue.requests.append(route)
            fault = venue.take_fault(route)
            if fault is not None and fault.kind == "5xx":
                return self._send(503, {"code": -1001, "msg": "Service unavailable"})
            if fault is not None and fault.kind == "429":
                return self._send(429, {"code": -1003, "msg": "Too many requests"})
            if fault is not None and fault.kind == "malformed":
                return self._send(200, None, raw=b'{"symbol": "ETHBTC", "orderId": ')
            signed = path in ("/api/v3/account", "/api/v3/order", "/api/v3/openOrders")
            if signed and ("signature" not in params or not self.headers.get("X-MBX-APIKEY")):
                return self._send(401, {"code": -2014, "msg": "API-key format invalid."})
            status, body = 404, {"code": -1, "msg": f"no route {route}"}
            if route == "GET /api/v3/exchangeInfo":
                status, body = 200, venue.exchange_info()
            elif route == "GET /api/v3/klines":
                status, body = 200, venue.klines(params)
            elif route == "GET /api/v3/account":
                status, body = 200, venue.account()
            elif route == "POST /api/v3/order":
                status, body = venue.create_order(params)
            elif route == "GET /api/v3/order":
                status, body = venue.find_order(params)
            elif route == "DELETE /api/v3/order":
                status, body = venue.cancel(params)
            elif route == "GET /api/v3/openOrders":
                status, body = 200, venue.open_orders()
            if fault is not None and fault.kind == "timeout":
                if route == "POST /api/v3/order":
                    venue.executed_unanswered.set()
                # executed, answered too late (or never: the server is closing)
                if cast(QuietServer, self.server).closing.wait(fault.delay_s):
                    return None
            return self._send(status, body)

        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

        def do_DELETE(self) -> None:
            self._route("DELETE")

    return Handler


def serve(venue: FakeBinance) -> AbstractContextManager[str]:
    """Serve `venue` on 127.0.0.1 (a free port); yields the origin, e.g. http://127.0.0.1:4711."""
    return serve_handler(_handler(venue))


@contextmanager
def serve_handler(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve `handler` on 127.0.0.1 (a free port) in a thread; yields the origin (every fake
    venue of the tests is served this way)."""
    server = QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.closing.set()
        server.shutdown()
        server.hang_up()
        server.server_close()  # joins every request thread: none outlives the test


class QuietServer(ThreadingHTTPServer):
    """A test venue's HTTP server whose request threads all end when it closes.

    A client that hangs up (ccxt's timeout, a killed run) is what the faults are for, not an
    error; a request thread left writing to it after the test would print a traceback into
    whatever a later test captures."""

    daemon_threads = False
    block_on_close = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self.closing = threading.Event()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def hang_up(self) -> None:
        """End every kept-alive connection, so that its request thread returns and is joined."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with suppress(OSError):  # already closed by the client
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # the client went away
        super().handle_error(request, client_address)
