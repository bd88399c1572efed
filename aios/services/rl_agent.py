"""`aios service rl-agent`: learns size multipliers from closed trades, as a service.

Consumes `trade.closed` (consumer group `rl-agent`, one book, default the shadow book whose
trades the proposals shaped). Per trade: reward = pnl_pct / 100, published on `rl_rewards`; the
value of the arm that was played (the trade's confidence bucket and its size multiplier) moves
towards multiplier x reward by the policy's `subsystems.rl_sizing.learning_rate` (the RL sizing
plugin's rule: the reward measured on the stake actually played).

Exactly one effect per trade, also across crashes: the value update and the event id are
committed in one SQLite transaction (the model persists with its idempotency memory); then the
reward is published and the entry acknowledged atomically under the event id. A redelivered
trade finds its id in SQLite (no second update) and its key on the bus (no second reward).

Every `bus.stats_interval_s` (on the service's clock) the hash `<prefix>:stats:rl_agent` is
replaced: trades, mean and last reward, the arm values.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from aios.bus import CLOSED, REWARDS, Bus, Clock, Delivery
from aios.bus.events import RewardComputed, TradeClosedReported, event
from aios.policy import Policy
from aios.state import database_path

GROUP = "rl-agent"

_DDL = """
CREATE TABLE IF NOT EXISTS rl_agent_values (
    bucket TEXT NOT NULL,
    multiplier REAL NOT NULL,
    value REAL NOT NULL,
    updates INTEGER NOT NULL,
    PRIMARY KEY (bucket, multiplier)
);
CREATE TABLE IF NOT EXISTS rl_agent_done (event_id TEXT PRIMARY KEY, reward REAL NOT NULL);
"""


def reward_of(pnl_pct: float) -> float:
    """The system's reward for a closed trade."""
    return pnl_pct / 100.0


@dataclass(frozen=True)
class Arm:
    """One (confidence bucket, size multiplier) arm's learned value; replaced, never changed,
    so the memory copy changes only after its SQLite transaction committed."""

    value: float = 0.0
    updates: int = 0


class RlAgentService:
    """The RL agent's loop: consume, learn (durably), publish, acknowledge, report."""

    def __init__(
        self, bus: Bus, policy: Policy, state_dir: Path, *, clock: Clock, book: str = "shadow"
    ) -> None:
        from plugins.rl_sizing import confidence_bucket

        self._bucket = confidence_bucket
        self.bus = bus
        self.policy = policy
        self.book = book
        self.clock = clock
        self.stop = threading.Event()
        path = database_path(state_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), isolation_level=None, timeout=10.0)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(_DDL)
        self.values: dict[tuple[str, float], Arm] = {
            (bucket, multiplier): Arm(value, updates)
            for bucket, multiplier, value, updates in self.db.execute(
                "SELECT bucket, multiplier, value, updates FROM rl_agent_values"
            )
        }
        row = self.db.execute("SELECT COUNT(*), SUM(reward) FROM rl_agent_done").fetchone()
        self.trades, self.reward_sum = int(row[0]), float(row[1] or 0.0)
        self.last_reward: float | None = None
        self._last_stats: float | None = None
        self.name = f"rl-agent-{socket.gethostname()}-{os.getpid()}"
        bus.ensure_group(CLOSED, GROUP)

    def learning_rate(self) -> float:
        return float(self.policy.get("subsystems", "rl_sizing", "learning_rate", default=0.1))

    def poll(self, block_ms: int | None = None) -> int:
        wait = self.bus.settings.block_ms if block_ms is None else block_ms
        deliveries = self.bus.reclaim(CLOSED, GROUP, self.name)
        deliveries += self.bus.consume([CLOSED], GROUP, self.name, block_ms=wait or None)
        for delivery in deliveries:
            if self.stop.is_set():
                break
            self.process(delivery)
        self.publish_stats()
        return len(deliveries)

    def process(self, delivery: Delivery) -> bool:
        """Learn from one closed trade; False when it had no (new) effect."""
        payload = delivery.event.payload
        if not isinstance(payload, TradeClosedReported) or payload.book != self.book:
            self.bus.ack(delivery, GROUP)
            return False
        trade = payload.trade
        reward = reward_of(trade.pnl_pct)
        learned = self._learn(delivery.event.id, trade.confidence, trade.size_multiplier, reward)
        item = RewardComputed(
            trade.position_id,
            trade.trace,
            trade.symbol,
            payload.book,
            trade.pnl_pct,
            reward,
            trade.closed_at,
        )
        self.bus.commit(delivery, GROUP, [(REWARDS, event(f"reward/{delivery.event.id}", item))])
        return learned

    def _learn(
        self, event_id: str, confidence: float | None, multiplier: float | None, reward: float
    ) -> bool:
        """The value update and the event id, in one transaction; False if seen before."""
        if not math.isfinite(reward):
            return False
        played = 1.0 if multiplier is None else multiplier
        bucket = self._bucket(0.0 if confidence is None else confidence)
        arm = self.values.get((bucket, played), Arm())
        updated = Arm(
            arm.value + self.learning_rate() * (played * reward - arm.value), arm.updates + 1
        )
        try:
            with self.db:
                self.db.execute("BEGIN IMMEDIATE")
                self.db.execute(
                    "INSERT INTO rl_agent_done (event_id, reward) VALUES (?, ?)", (event_id, reward)
                )
                self.db.execute(
                    "INSERT OR REPLACE INTO rl_agent_values VALUES (?, ?, ?, ?)",
                    (bucket, played, updated.value, updated.updates),
                )
        except sqlite3.IntegrityError:  # a redelivery: learned from before
            return False
        self.values[(bucket, played)] = updated
        self.trades += 1
        self.reward_sum += reward
        self.last_reward = reward
        return True

    def statistics(self) -> dict[str, str]:
        mean = self.reward_sum / self.trades if self.trades else 0.0
        values = [
            {"bucket": b, "multiplier": m, "value": a.value, "updates": a.updates}
            for (b, m), a in sorted(self.values.items())
        ]
        return {
            "trades": str(self.trades),
            "mean_reward": repr(mean),
            "last_reward": "" if self.last_reward is None else repr(self.last_reward),
            "values": json.dumps(values),
            "updated_at": repr(self.clock()),
        }

    def publish_stats(self, *, force: bool = False) -> bool:
        """Replace the statistics hash when `stats_interval_s` has passed (or forced)."""
        now = self.clock()
        interval = self.bus.settings.stats_interval_s
        if not force and self._last_stats is not None and now - self._last_stats < interval:
            return False
        self.bus.write_hash("rl_agent", self.statistics())
        self._last_stats = now
        return True

    def close(self) -> None:
        self.publish_stats(force=True)
        self.db.close()
