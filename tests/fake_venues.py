"""Tiny fakes of OKX's and Bybit's REST APIs on 127.0.0.1: just what ccxt's real `okx` and
`bybit` classes ask before and while placing a spot order (markets, the account questions
ccxt asks first, order creation). Each request is recorded as it arrived (method, path, query,
headers, body) and each signed one is checked the way the venue checks it, so a test sees the
request ccxt built and sent, with nothing of ccxt patched (ccxt is pointed here with
`AIOS_<ID>_API_URL`). Orders are answered as the venues answer a placement: with ids, no fills;
the okx fake also answers a lookup by `clOrdId` (a market order filled at once at 0.05) and the
balance (1 BTC), enough for the venue broker to place and book an order there.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, urlparse

from fake_binance import serve_handler


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: str

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FakeVenue:
    """Routes `(method, path)` to answers; `verify` checks a private request's signature."""

    routes: dict[tuple[str, str], Callable[[Request], Any]]
    verify: Callable[[Request], str | None]
    private: Callable[[str], bool]
    requests: list[Request] = field(default_factory=list)
    bad_signatures: list[str] = field(default_factory=list)

    def answer(self, request: Request) -> tuple[int, Any]:
        self.requests.append(request)
        if self.private(request.path):
            problem = self.verify(request)
            if problem is not None:
                self.bad_signatures.append(f"{request.method} {request.path}: {problem}")
                return 401, {"code": "50113", "msg": problem}
        route = self.routes.get((request.method, request.path))
        if route is None:
            return 404, {"code": "404", "msg": f"not faked: {request.method} {request.path}"}
        return 200, route(request)

    def sent(self, method: str, path: str) -> list[Request]:
        return [r for r in self.requests if (r.method, r.path) == (method, path)]


def _hmac(secret: str, message: str) -> bytes:
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).digest()


def fake_okx(key: str, secret: str, password: str) -> FakeVenue:
    """OKX v5: sign = base64(HMAC-SHA256(secret, timestamp + method + path?query + body))."""

    def verify(r: Request) -> str | None:
        if (
            r.headers.get("ok-access-key") != key
            or r.headers.get("ok-access-passphrase") != password
        ):
            return "wrong key or passphrase"
        query = "&".join(f"{k}={v}" for k, v in r.query.items())
        target = r.path + (f"?{query}" if query else "")
        message = r.headers.get("ok-access-timestamp", "") + r.method + target + r.body
        expected = base64.b64encode(_hmac(secret, message)).decode()
        return (
            None
            if hmac.compare_digest(expected, r.headers.get("ok-access-sign", ""))
            else "bad sign"
        )

    instrument = {
        "instType": "SPOT",
        "instId": "ETH-BTC",
        "baseCcy": "ETH",
        "quoteCcy": "BTC",
        "settleCcy": "",
        "ctVal": "",
        "ctMult": "",
        "ctValCcy": "",
        "lotSz": "0.000001",
        "minSz": "0.0001",
        "tickSz": "0.00001",
        "maxMktSz": "10000",
        "state": "live",
        "listTime": "1548133413000",
        "lever": "",
    }

    placed: dict[str, dict[str, Any]] = {}

    def place(r: Request) -> dict[str, Any]:
        orders = r.json()  # ccxt places through batch-orders: a list
        for i, o in enumerate(orders):
            placed[o.get("clOrdId", "")] = {**o, "ordId": str(900 + i)}
        return {
            "code": "0",
            "msg": "",
            "data": [
                {"clOrdId": o.get("clOrdId", ""), "ordId": str(900 + i), "sCode": "0", "sMsg": ""}
                for i, o in enumerate(orders)
            ],
        }

    routes: dict[tuple[str, str], Callable[[Request], Any]] = {
        ("GET", "/api/v5/public/instruments"): lambda r: {
            "code": "0",
            "msg": "",
            "data": [instrument] if r.query.get("instType") == "SPOT" else [],
        },
        ("GET", "/api/v5/asset/currencies"): lambda r: {"code": "0", "msg": "", "data": []},
        ("POST", "/api/v5/trade/batch-orders"): place,
        ("GET", "/api/v5/trade/order"): lambda r: lookup(r.query.get("clOrdId", "")),
        ("GET", "/api/v5/account/balance"): lambda r: {
            "code": "0",
            "msg": "",
            "data": [
                {
                    "uTime": "1764590400000",
                    "details": [
                        {"ccy": "BTC", "eq": "1", "availBal": "1", "frozenBal": "0"},
                        {"ccy": "ETH", "eq": "0", "availBal": "0", "frozenBal": "0"},
                    ],
                }
            ],
        },
    }

    def lookup(client_id: str) -> dict[str, Any]:
        """A placed market order, filled at once at 0.05 with a 0.1 % fee in what it bought."""
        o = placed.get(client_id)
        if o is None:
            return {"code": "51603", "msg": "Order does not exist", "data": []}
        size = o["sz"]
        fee_ccy = "ETH" if o["side"] == "buy" else "BTC"
        fee = float(size) * (0.001 if o["side"] == "buy" else 0.00005)
        return {
            "code": "0",
            "msg": "",
            "data": [
                {
                    "instType": "SPOT",
                    "instId": o["instId"],
                    "ordId": o["ordId"],
                    "clOrdId": client_id,
                    "side": o["side"],
                    "ordType": o["ordType"],
                    "sz": size,
                    "tgtCcy": o.get("tgtCcy", ""),
                    "px": "",
                    "accFillSz": size,
                    "fillSz": size,
                    "avgPx": "0.05",
                    "state": "filled",
                    "fee": f"-{fee:.8f}",
                    "feeCcy": fee_ccy,
                    "cTime": "1764590400000",
                    "uTime": "1764590400100",
                    "tdMode": "cash",
                }
            ],
        }

    return FakeVenue(routes, verify, lambda path: "/public/" not in path)


def fake_bybit(key: str, secret: str) -> FakeVenue:
    """Bybit v5: X-BAPI-SIGN = hex(HMAC-SHA256(secret, timestamp + key + recvWindow + body or
    query)); a unified trading account (what aios supports there)."""

    def verify(r: Request) -> str | None:
        if r.headers.get("x-bapi-api-key") != key:
            return "wrong key"
        payload = r.body if r.method == "POST" else "&".join(f"{k}={v}" for k, v in r.query.items())
        message = (
            r.headers.get("x-bapi-timestamp", "")
            + key
            + r.headers.get("x-bapi-recv-window", "")
            + payload
        )
        expected = _hmac(secret, message).hex()
        return (
            None if hmac.compare_digest(expected, r.headers.get("x-bapi-sign", "")) else "bad sign"
        )

    def ok(result: Any) -> dict[str, Any]:
        return {
            "retCode": 0,
            "retMsg": "OK",
            "result": result,
            "retExtInfo": {},
            "time": int(time.time() * 1000),
        }

    spot = {
        "symbol": "ETHBTC",
        "baseCoin": "ETH",
        "quoteCoin": "BTC",
        "innovation": "0",
        "status": "Trading",
        "marginTrading": "none",
        "lotSizeFilter": {
            "basePrecision": "0.0001",
            "quotePrecision": "0.0000001",
            "minOrderQty": "0.0001",
            "maxOrderQty": "10000",
            "minOrderAmt": "0.0001",
            "maxOrderAmt": "100",
        },
        "priceFilter": {"tickSize": "0.000001"},
    }
    routes: dict[tuple[str, str], Callable[[Request], Any]] = {
        ("GET", "/v5/market/instruments-info"): lambda r: ok(
            {
                "category": r.query.get("category"),
                "list": [spot] if r.query.get("category") == "spot" else [],
                "nextPageCursor": "",
            }
        ),
        ("GET", "/v5/asset/coin/query-info"): lambda r: ok({"rows": []}),
        ("GET", "/v5/user/query-api"): lambda r: ok({"unified": 0, "uta": 1, "readOnly": 0}),
        ("GET", "/v5/account/info"): lambda r: ok({"unifiedMarginStatus": 5}),
        ("POST", "/v5/order/create"): lambda r: ok(
            {"orderId": "1321003749386327552", "orderLinkId": r.json().get("orderLinkId", "")}
        ),
    }
    return FakeVenue(routes, verify, lambda path: "/market/" not in path)


def _handler(venue: FakeVenue) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

        def _serve(self) -> None:
            url = urlparse(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            request = Request(
                self.command,
                url.path,
                dict(parse_qsl(url.query, keep_blank_values=True)),
                {k.lower(): v for k, v in self.headers.items()},
                body,
            )
            status, answer = venue.answer(request)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _serve

    return Handler


def serve(venue: FakeVenue) -> AbstractContextManager[str]:
    """Serve `venue` on 127.0.0.1 (a free port); yields the origin."""
    return serve_handler(_handler(venue))
