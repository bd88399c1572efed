"""Venues: one broker interface, a paper implementation (replay) and a ccxt one (real venues)."""

from aios.exchange.base import Broker, BrokerError, Fill, FillKind

__all__ = ["Broker", "BrokerError", "Fill", "FillKind"]
