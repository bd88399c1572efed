"""The fake venues' HTTP server ends every request thread when it closes.

A request thread that outlived its test once wrote a BrokenPipe traceback into the output a
later test had captured (`aios plugins check --format json`), failing it: these tests hold the
server to leaving nothing behind."""

from __future__ import annotations

import socket
import threading
from datetime import UTC, datetime
from urllib.parse import urlparse

from fake_binance import FakeBinance, Fault, serve

from aios.model import Candle

ONE_CANDLE = {"ETH/BTC": [Candle(datetime(2026, 1, 1, tzinfo=UTC), 0.05, 0.05, 0.05, 0.05, 1.0)]}
ORDER = (
    b"POST /api/v3/order?symbol=ETHBTC&side=BUY&type=MARKET&quantity=1&newClientOrderId=t1"
    b"&signature=s HTTP/1.1\r\nHost: x\r\nX-MBX-APIKEY: k\r\nContent-Length: 0\r\n\r\n"
)


def connect(origin: str) -> socket.socket:
    url = urlparse(origin)
    assert url.hostname is not None and url.port is not None
    return socket.create_connection((url.hostname, url.port))


def test_closing_ends_a_request_held_by_an_answered_too_late_fault() -> None:
    venue = FakeBinance(series=ONE_CANDLE, start=1)
    venue.inject("POST /api/v3/order", Fault("timeout", delay_s=600.0))
    before = set(threading.enumerate())
    with serve(venue) as origin:
        client = connect(origin)
        client.sendall(ORDER)
        assert venue.executed_unanswered.wait(10.0)  # the request thread now holds the answer
        client.close()  # the client gives up, as ccxt does at its timeout
    assert set(threading.enumerate()) <= before


def test_closing_ends_a_kept_alive_connection() -> None:
    venue = FakeBinance(series=ONE_CANDLE, start=1)
    before = set(threading.enumerate())
    with serve(venue) as origin:
        client = connect(origin)
        client.sendall(b"GET /api/v3/exchangeInfo HTTP/1.1\r\nHost: x\r\n\r\n")
        assert client.recv(4096).startswith(b"HTTP/1.1 ")
        # the connection stays open: its request thread waits for a next request
    assert set(threading.enumerate()) <= before
    client.close()
