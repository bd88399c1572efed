"""Client order ids in each venue's format.

The engine names orders `run-3-412-7` and the venue broker names exits
`run-3-412-7:stop_loss:2`; venues accept much less. ccxt passes the unified `clientOrderId`
parameter through to each venue's own field, unchecked, so the format is ours to respect:

=========  ===============  ==========  ==================================================
venue      field            max length  characters
=========  ===============  ==========  ==================================================
binance    newClientOrderId 36          ``A-Z a-z 0-9 _ -`` (the API documents ``.`` ``:``
                                        ``/`` as well, but has answered ``-1100 Illegal
                                        characters`` for them: the safe intersection)
okx        clOrdId          32          ``A-Z a-z 0-9`` (case-sensitive alphanumerics)
bybit      orderLinkId      36          ``A-Z a-z 0-9 _ -``
=========  ===============  ==========  ==================================================

A venue id is ``<namespace><readable part><digest>``: the namespace is per state store (two
stores trading one account never collide, though both start at `run-1`), the readable part is
the engine id with the characters the venue refuses dropped (so an operator recognises the order
on the venue's screen), and the digest is 64 bits of SHA-256 over namespace and engine id in
base 36, which makes the mapping collision-safe whatever the readable part lost. It is
deterministic: the same store and engine id always give the same venue id, so a restarted
process looks an order up under the id it was sent with. The venue broker also keeps every
mapping it used and refuses to send an id that an other engine id already mapped to.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_DIGEST_LENGTH = 13  # 36**13 > 2**64: the whole 64-bit digest fits
_NAMESPACE = re.compile(r"^[a-z0-9]{4,8}$")


@dataclass(frozen=True, slots=True)
class ClientIdFormat:
    """What one venue accepts as a client order id."""

    venue: str
    field: str
    max_length: int
    allowed: str  # a regex character class body
    separator: str  # "" where the venue allows no separator

    def valid(self, client_id: str) -> bool:
        return re.fullmatch(f"[{self.allowed}]{{1,{self.max_length}}}", client_id) is not None


FORMATS: dict[str, ClientIdFormat] = {
    "binance": ClientIdFormat("binance", "newClientOrderId", 36, "A-Za-z0-9_-", "-"),
    "okx": ClientIdFormat("okx", "clOrdId", 32, "A-Za-z0-9", ""),
    "bybit": ClientIdFormat("bybit", "orderLinkId", 36, "A-Za-z0-9_-", "-"),
}


def format_for(exchange_id: str) -> ClientIdFormat:
    """The venue's format; a venue without a known one cannot take real orders from aios."""
    found = FORMATS.get(exchange_id)
    if found is None:
        known = ", ".join(sorted(FORMATS))
        raise ValueError(
            f"aios does not know {exchange_id}'s client order id format (known: {known}); "
            "live orders there are refused, use --dry-run"
        )
    return found


#: Venues whose client-id format aios knows but where live orders are refused, and why.
LIVE_REFUSED: dict[str, str] = {
    "bybit": (
        "bybit answers a placement with ids only, and ccxt's bybit fetchOrder cannot look an "
        "order up by client id (it needs params.acknowledged, sends clientOrderId instead of "
        "orderLinkId and sees open orders only), so every order would stay unknown and freeze "
        "its position until an operator resolved it by hand"
    ),
}


def live_format(exchange_id: str) -> ClientIdFormat:
    """The venue's format, for live orders: refused (ValueError, with the reason) where aios
    does not know the format or cannot settle an order's outcome there."""
    fmt = format_for(exchange_id)
    refused = LIVE_REFUSED.get(exchange_id)
    if refused is not None:
        raise ValueError(f"live orders on {exchange_id} are refused: {refused}; use --dry-run")
    return fmt


def _digest(namespace: str, engine_id: str) -> str:
    value = int.from_bytes(
        hashlib.sha256(f"{namespace}\x00{engine_id}".encode()).digest()[:8], "big"
    )
    digits = []
    for _ in range(_DIGEST_LENGTH):
        value, digit = divmod(value, 36)
        digits.append(_ALPHABET[digit])
    return "".join(reversed(digits))


def venue_client_id(fmt: ClientIdFormat, namespace: str, engine_id: str) -> str:
    """`engine_id` as `fmt`'s venue accepts it; see the module docstring."""
    if not _NAMESPACE.match(namespace):
        raise ValueError(f"a client id namespace is 4 to 8 of [a-z0-9], got {namespace!r}")
    if not engine_id:
        raise ValueError("an engine order id is required")
    digest = _digest(namespace, engine_id)
    sep = fmt.separator
    room = fmt.max_length - len(namespace) - len(digest) - 2 * len(sep)
    readable = re.sub(f"[^{fmt.allowed}]", "", engine_id.replace(":", sep or ""))
    readable = readable.replace(sep * 2, sep) if sep else readable
    readable = readable[: max(0, room)].strip(sep) if sep else readable[: max(0, room)]
    parts = [namespace, readable, digest] if readable else [namespace, digest]
    client_id = sep.join(parts)
    assert fmt.valid(client_id), client_id
    return client_id


__all__ = [
    "FORMATS",
    "LIVE_REFUSED",
    "ClientIdFormat",
    "format_for",
    "live_format",
    "venue_client_id",
]
