"""RL sizing agent: a contextual bandit that learns a position-size multiplier from closed trades.

Context: the cycle's risk mode and the signal's confidence bucket, [0, 0.6), [0.6, 0.7),
[0.7, 0.8) or [0.8, 1] (a confidence outside [0, 1] falls in the nearest end bucket). The
bucket edges are a modelling choice: they split the range where signals pass the default
threshold (0.65) finely and lump the rare, weak and very strong, signals together.

Arms: the policy's `actions`, each clamped into [min_multiplier, max_multiplier] (duplicates
after clamping are one arm). An arm is identified by the multiplier it applies, so a value
learned for 1.25 stays 1.25's whatever list it appears in.

Choice: epsilon-greedy. One draw u from `random.Random(seed)` per call; when u < exploration
a uniformly random arm (a second draw), otherwise the arm of highest value. An arm never
rewarded in this context is worth 0; ties go to the multiplier closest to 1.0, then the smaller
(prefer not to change the size, and then to risk less).

Learning: the chosen arm is remembered per signal id. When a trade whose `trace` is that id
closes, reward = multiplier x pnl_pct / 100 and value += learning_rate x (reward - value).
The reward is the system's `pnl_pct / 100` measured on the stake the base size would have had:
a trade's price move in percent does not depend on its size, so an unweighted reward would give
every arm the same expectation and the agent could not learn which size pays. Weighted by the
multiplier it played, a positive expectation favours larger sizes and a negative one smaller. A trace the agent
does not know (or has already learned from, such as the second book's copy of the same trade)
is ignored.

Persistence: every setting is read per call, so a policy reload keeps the learned values; when
the actions change, values of arms still offered are used again and those of removed arms are
kept, unused, in case they come back. `export_state`/`import_state` carry the values, the
pending choices and the random generator's state as JSON-able data, so a restarted agent
continues the very same sequence. Signals sized but never filled (blocked downstream) are
forgotten oldest first beyond `MAX_PENDING` (a memory bound, not a tuning knob); a position
reported opened is kept until it closes.
"""

from __future__ import annotations

import math
import random
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aios.hookspecs import hookimpl
from aios.model import ClosedTrade, CycleContext, EntryIntent, Position, SizeProposal
from aios.plugin import Subsystem

#: Upper edges of the confidence buckets below the last; the last is [0.8, 1].
BUCKET_EDGES: tuple[float, ...] = (0.6, 0.7, 0.8)
BUCKET_LABELS: tuple[str, ...] = ("[0, 0.6)", "[0.6, 0.7)", "[0.7, 0.8)", "[0.8, 1]")
#: Most signals remembered while waiting for a fill; the oldest are forgotten first.
MAX_PENDING = 10_000
#: Format of `export_state`; `import_state` refuses any other.
STATE_VERSION = 1

Context = tuple[str, str]  # (risk mode, confidence bucket)


def confidence_bucket(confidence: float) -> str:
    """The label of the bucket `confidence` falls in."""
    for edge, label in zip(BUCKET_EDGES, BUCKET_LABELS, strict=False):
        if confidence < edge:
            return label
    return BUCKET_LABELS[-1]


def clamped_arms(actions: Sequence[float], low: float, high: float) -> list[float]:
    """The policy's actions clamped into [low, high], first occurrence kept, order kept."""
    arms: list[float] = []
    for action in actions:
        arm = min(max(float(action), low), high)
        if arm not in arms:
            arms.append(arm)
    return arms


@dataclass
class ArmValue:
    """The running value estimate of one arm in one context."""

    value: float = 0.0
    updates: int = 0


@dataclass(frozen=True, slots=True)
class Choice:
    """The arm chosen for one signal, waiting for its trade's reward."""

    context: Context
    multiplier: float


class RlSizing(Subsystem):
    """Proposes a size multiplier per signal and learns from each closed trade's PnL."""

    name = "rl_sizing"

    def __init__(self) -> None:
        self._values: dict[Context, dict[float, ArmValue]] = {}
        self._pending: OrderedDict[str, Choice] = OrderedDict()
        self._open: dict[str, Choice] = {}
        self._rng: random.Random | None = None
        self._rng_seed: int | None = None

    # --- hooks --------------------------------------------------------------------------------

    @hookimpl
    def aios_size(self, ctx: CycleContext, intent: EntryIntent) -> SizeProposal:
        settings = self.settings(ctx)
        arms = clamped_arms(
            settings["actions"],
            float(settings["min_multiplier"]),
            float(settings["max_multiplier"]),
        )
        exploration = float(settings["exploration"])
        signal = intent.signal
        context: Context = (ctx.risk_mode.value, confidence_bucket(signal.confidence))
        values = self._values.get(context, {})

        rng = self._generator(int(settings["seed"]))
        draw = rng.random()
        where = f"{context[0]}, confidence {signal.confidence:.3f} in {context[1]}"
        if draw < exploration:
            arm = arms[rng.randrange(len(arms))]
            reason = (
                f"x{arm:g} explored (draw {draw:.4f} < exploration {exploration:g}, "
                f"uniform over {len(arms)} arms) in {where}"
            )
        else:
            arm = min(arms, key=lambda a: (-_value(values, a), abs(a - 1.0), a))
            stats = values.get(arm, ArmValue())
            reason = (
                f"x{arm:g} greedy: best value {stats.value:.6f} after {stats.updates} "
                f"trade(s) among {len(arms)} arms in {where}"
            )

        self._pending.pop(signal.id, None)
        self._pending[signal.id] = Choice(context, arm)
        while len(self._pending) > MAX_PENDING:
            self._pending.popitem(last=False)
        return SizeProposal(reason, multiplier=arm)

    @hookimpl
    def aios_trade_opened(self, ctx: CycleContext, position: Position) -> None:
        """A filled entry: keep its choice until the trade closes, beyond the pending bound."""
        choice = self._pending.pop(position.trace, None)
        if choice is not None:
            self._open[position.trace] = choice

    @hookimpl
    def aios_trade_closed(self, ctx: CycleContext, trade: ClosedTrade) -> None:
        choice = self._open.pop(trade.trace, None)
        pending = self._pending.pop(trade.trace, None)
        choice = choice or pending
        if choice is None or not math.isfinite(trade.pnl_pct):
            return
        learning_rate = float(self.settings(ctx)["learning_rate"])
        reward = choice.multiplier * trade.pnl_pct / 100.0
        stats = self._values.setdefault(choice.context, {}).setdefault(
            choice.multiplier, ArmValue()
        )
        stats.value += learning_rate * (reward - stats.value)
        stats.updates += 1

    # --- learned state ------------------------------------------------------------------------

    def value(self, risk_mode: str, bucket: str, multiplier: float) -> float:
        """The learned value of one arm in one context (0 when never rewarded)."""
        return _value(self._values.get((risk_mode, bucket), {}), multiplier)

    def export_state(self) -> dict[str, Any]:
        """Everything learned, as JSON-able data (see `import_state`)."""
        rng_state: list[Any] | None = None
        if self._rng is not None:
            version, internal, gauss = self._rng.getstate()
            rng_state = [version, list(internal), gauss]
        return {
            "version": STATE_VERSION,
            "values": [
                {
                    "risk_mode": context[0],
                    "bucket": context[1],
                    "multiplier": multiplier,
                    "value": stats.value,
                    "updates": stats.updates,
                }
                for context, arms in self._values.items()
                for multiplier, stats in arms.items()
            ],
            "pending": [_choice_record(sid, c) for sid, c in self._pending.items()],
            "open": [_choice_record(sid, c) for sid, c in self._open.items()],
            "rng": None if rng_state is None else {"seed": self._rng_seed, "state": rng_state},
        }

    def import_state(self, state: Mapping[str, Any]) -> None:
        """Replace the learned state with one produced by `export_state`."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(
                f"rl_sizing state version {state.get('version')!r} is not {STATE_VERSION}"
            )
        values: dict[Context, dict[float, ArmValue]] = {}
        for record in state["values"]:
            context = (str(record["risk_mode"]), str(record["bucket"]))
            values.setdefault(context, {})[float(record["multiplier"])] = ArmValue(
                float(record["value"]), int(record["updates"])
            )
        pending = OrderedDict(_choice_from(record) for record in state["pending"])
        opened = dict(_choice_from(record) for record in state["open"])
        rng: random.Random | None = None
        seed: int | None = None
        if state["rng"] is not None:
            seed = int(state["rng"]["seed"])
            version, internal, gauss = state["rng"]["state"]
            rng = random.Random()
            rng.setstate((int(version), tuple(int(word) for word in internal), gauss))
        self._values, self._pending, self._open = values, pending, opened
        self._rng, self._rng_seed = rng, seed

    # --- helpers ------------------------------------------------------------------------------

    def _generator(self, seed: int) -> random.Random:
        """The exploration generator; a policy that changes the seed starts a new sequence."""
        if self._rng is None or self._rng_seed != seed:
            self._rng, self._rng_seed = random.Random(seed), seed
        return self._rng


def _value(values: Mapping[float, ArmValue], multiplier: float) -> float:
    stats = values.get(multiplier)
    return 0.0 if stats is None else stats.value


def _choice_record(signal_id: str, choice: Choice) -> dict[str, Any]:
    return {
        "signal": signal_id,
        "risk_mode": choice.context[0],
        "bucket": choice.context[1],
        "multiplier": choice.multiplier,
    }


def _choice_from(record: Mapping[str, Any]) -> tuple[str, Choice]:
    context = (str(record["risk_mode"]), str(record["bucket"]))
    return str(record["signal"]), Choice(context, float(record["multiplier"]))
