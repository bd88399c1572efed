"""What flows between the engine and the plugins: enums and frozen, typed records.

Everything here is immutable. A plugin receives these, and returns a proposal (also defined
here); it never mutates what it was given. That is what makes plugins pure, testable, and safe
to run from third parties: plugins propose, the engine disposes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum, StrEnum
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from aios.model_registry import ModelRegistry
    from aios.policy import Policy


# --- governance --------------------------------------------------------------------------------


class Mode(IntEnum):
    """How far a subsystem's proposals go; ordered, so the effective mode is a `min`."""

    OFF = 0
    OBSERVE = 1
    ADVISORY = 2
    ENFORCED = 3


class Stage(StrEnum):
    """The system's trust level, moved only by the stage machine."""

    OBSERVATION = "OBSERVATION"
    ADVISORY = "ADVISORY"
    AUTONOMY = "AUTONOMY"


#: The highest mode a stage lets any subsystem reach.
STAGE_CAP: Mapping[Stage, Mode] = {
    Stage.OBSERVATION: Mode.OBSERVE,
    Stage.ADVISORY: Mode.ADVISORY,
    Stage.AUTONOMY: Mode.ENFORCED,
}


def effective_mode(subsystem_mode: Mode, stage: Stage) -> Mode:
    """The lower of a subsystem's own mode and its stage's cap."""
    return min(subsystem_mode, STAGE_CAP[stage])


def own_mode(policy: Policy, subsystem: str) -> Mode:
    """A subsystem's mode from the policy: OFF when it is disabled, not configured or names no
    mode (installing a plugin never changes trading by itself). The one reading for the
    services, `aios plugins list` and anything else outside the engine."""
    section = policy.get("subsystems", subsystem, default=None)
    if not isinstance(section, Mapping) or section.get("enabled", True) is False:
        return Mode.OFF
    try:
        return Mode[str(section.get("mode"))]
    except KeyError:
        return Mode.OFF


class RiskMode(StrEnum):
    NORMAL = "NORMAL"
    OPTIMISTIC = "OPTIMISTIC"
    AGGRESSIVE = "AGGRESSIVE"
    CRITICAL = "CRITICAL"


class DirectiveKind(StrEnum):
    """Self-healing directives, from mildest to most severe."""

    NO_NEW_TRADES = "NO_NEW_TRADES"
    DEFENSIVE_EXIT = "DEFENSIVE_EXIT"
    EMERGENCY_SHUTDOWN = "EMERGENCY_SHUTDOWN"


class HealthStatus(IntEnum):
    """Ordered so that the worst of several reports is a `max`."""

    OK = 0
    DEGRADED = 1
    CRITICAL = 2


# --- market and portfolio ----------------------------------------------------------------------


class Side(StrEnum):
    LONG = "LONG"
    SHORT = "SHORT"

    @property
    def sign(self) -> int:
        return 1 if self is Side.LONG else -1


@dataclass(frozen=True, slots=True)
class Candle:
    """One OHLCV candle; `time` is the candle's open time (UTC)."""

    time: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float


class MarketView(Protocol):
    """Read-only access to the market as of the cycle's time (never the future)."""

    @property
    def symbols(self) -> Sequence[str]:
        """Symbols with data at this time."""
        ...

    def history(self, symbol: str, count: int) -> Sequence[Candle]:
        """Up to `count` most recent closed candles of `symbol`, oldest first."""
        ...

    def spread_bps(self, symbol: str) -> float | None:
        """Current bid/ask spread in basis points, when the venue reports one."""
        ...


@dataclass(frozen=True, slots=True)
class Position:
    """An open position. Prices are in the quote currency; stops are absolute prices."""

    id: str
    symbol: str
    side: Side
    entry_price: float
    quantity: float
    opened_at: datetime
    stop_loss: float | None
    take_profit: float | None
    initial_stop: float | None = None
    trailing_stop_pct: float | None = None
    best_price: float | None = None
    adds: int = 0
    hold_until: datetime | None = None
    confidence: float | None = None
    trace: str = ""

    def pnl_pct(self, price: float) -> float:
        """Unrealised PnL in percent of the entry price, signed for the side."""
        return (price - self.entry_price) / self.entry_price * 100.0 * self.side.sign

    def initial_risk_pct(self) -> float | None:
        stop = self.initial_stop if self.initial_stop is not None else self.stop_loss
        if stop is None:
            return None
        risk = abs(self.entry_price - stop) / self.entry_price * 100.0
        return risk if risk > 0 else None

    def r_multiple(self, price: float) -> float | None:
        """Current R: unrealised PnL over the initial risk (None when there was no stop)."""
        risk = self.initial_risk_pct()
        return None if risk is None else self.pnl_pct(price) / risk

    def notional(self, price: float) -> float:
        return abs(self.quantity) * price


@dataclass(frozen=True, slots=True)
class ClosedTrade:
    """A finished trade; what rewards, accuracy and cooldowns are computed from."""

    position_id: str
    symbol: str
    side: Side
    entry_price: float
    exit_price: float
    quantity: float
    opened_at: datetime
    closed_at: datetime
    pnl_pct: float
    pnl_quote: float
    reason: str
    confidence: float | None = None
    size_multiplier: float | None = None
    trace: str = ""


@dataclass(frozen=True, slots=True)
class PortfolioView:
    """The book as the engine sees it at the start of a cycle."""

    equity: float
    cash: float
    positions: tuple[Position, ...] = ()
    prices: Mapping[str, float] = field(default_factory=dict)
    recent_trades: tuple[ClosedTrade, ...] = ()

    def price(self, symbol: str) -> float | None:
        return self.prices.get(symbol)

    def exposure_quote(self, symbol: str | None = None, side: Side | None = None) -> float:
        """Open notional, optionally for one symbol and/or one side."""
        total = 0.0
        for position in self.positions:
            if symbol is not None and position.symbol != symbol:
                continue
            if side is not None and position.side is not side:
                continue
            total += position.notional(self.prices.get(position.symbol, position.entry_price))
        return total


# --- the cycle context -------------------------------------------------------------------------

_UNKNOWN: Any = object()
#: `CycleContext.settings`' memo: one policy object and its subsystem sections (None: no
#: section, or one that is not a mapping). Replaced as a whole, so that a thread reading it
#: while another swaps it in for a new policy never files one policy's section under another.
_SECTIONS: tuple[object, dict[str, Mapping[str, Any] | None]] = (_UNKNOWN, {})


def _remember_sections_of(policy: object) -> tuple[object, dict[str, Mapping[str, Any] | None]]:
    global _SECTIONS
    memo: tuple[object, dict[str, Mapping[str, Any] | None]] = (policy, {})
    _SECTIONS = memo
    return memo


@dataclass(frozen=True, slots=True)
class Directive:
    kind: DirectiveKind
    since: datetime
    reason: str


@dataclass(frozen=True)
class CycleContext:
    """Everything a hook may read during one cycle. Immutable: the engine makes a new one when
    the cycle moves on (after coordination, the risk mode is known; and so on)."""

    now: datetime
    cycle: int
    policy: Policy
    stage: Stage
    market: MarketView
    portfolio: PortfolioView
    risk_mode: RiskMode = RiskMode.NORMAL
    directives: frozenset[DirectiveKind] = frozenset()
    metrics: Mapping[str, float] = field(default_factory=dict)
    models: ModelRegistry | None = None

    def settings(self, subsystem: str) -> Mapping[str, Any]:
        """The policy section of one subsystem (empty when it has none).

        Asked by every plugin on every hook call: the sections are remembered per policy
        object (policies are immutable; a reload swaps the object), the same objects
        `Policy.get` returns. A subsystem without a section gets a fresh `{}` each time."""
        policy = self.policy
        memo = _SECTIONS
        if memo[0] is not policy:
            memo = _remember_sections_of(policy)
        sections = memo[1]
        section = sections.get(subsystem, _UNKNOWN)
        if section is _UNKNOWN:
            found = policy.get("subsystems", subsystem, default=None)
            section = sections[subsystem] = found if isinstance(found, Mapping) else None
        return {} if section is None else section

    def risk_multipliers(self) -> Mapping[str, Any]:
        """The current risk mode's row of the policy's multiplier table."""
        row = self.policy.get("risk_modes", self.risk_mode.value, default={})
        return row if isinstance(row, Mapping) else {}


# --- proposals: what hooks return --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HealthReport:
    """A subsystem's (or the feed's, the exchange's, the store's) health at this cycle."""

    component: str
    status: HealthStatus
    detail: str = ""
    metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RecoveryAction:
    """A recovery self-healing proposes; the engine performs it when self-healing is ENFORCED."""

    action: str  # "restart_subsystem" | "reload_policy"
    target: str
    reason: str


@dataclass(frozen=True, slots=True)
class DirectiveProposal:
    """The set of directives that should be active now, with why each changed."""

    active: frozenset[DirectiveKind]
    raised: Mapping[DirectiveKind, str] = field(default_factory=dict)
    cleared: Mapping[DirectiveKind, str] = field(default_factory=dict)
    recovery: tuple[RecoveryAction, ...] = ()


@dataclass(frozen=True, slots=True)
class RiskAssessment:
    """The coordinator's verdict: the global risk mode and whether new trades are allowed."""

    mode: RiskMode
    allow_new_trades: bool
    reason: str


@dataclass(frozen=True, slots=True)
class UniverseProposal:
    """Which candidate symbols may open new trades, and why the others may not."""

    allowed: tuple[str, ...]
    excluded: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Signal:
    """A trade idea from a signal source. `confidence` is calibrated in [0, 1]."""

    id: str
    symbol: str
    side: Side
    confidence: float
    source: str
    time: datetime
    price: float
    features: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TpSlProposal:
    """Take-profit and stop-loss distances for a signal, in percent of the entry price."""

    tp_pct: float
    sl_pct: float
    reason: str


@dataclass(frozen=True, slots=True)
class EntryIntent:
    """A signal on its way to becoming an order: the engine fills in what it has decided."""

    signal: Signal
    tp_pct: float
    sl_pct: float
    quote_amount: float
    confidence_threshold: float


@dataclass(frozen=True, slots=True)
class EntryVerdict:
    """A pre-trade filter's answer. `allow=False` blocks the entry with `reason`."""

    allow: bool
    reason: str


@dataclass(frozen=True, slots=True)
class SizeProposal:
    """Position sizing: an absolute quote amount and/or a multiplier on the engine's size."""

    reason: str
    quote_amount: float | None = None
    multiplier: float | None = None


class OrderType(StrEnum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"


@dataclass(frozen=True, slots=True)
class ExecutionPlan:
    """How to place an order; `veto` refuses it (expected slippage above the policy's cap)."""

    order_type: OrderType
    slices: int
    reason: str
    limit_offset_bps: float = 0.0
    veto: str | None = None


class Category(StrEnum):
    WINNER = "WINNER"
    POTENTIAL_WINNER = "POTENTIAL_WINNER"
    BREAKEVEN = "BREAKEVEN"
    STRUGGLING = "STRUGGLING"
    LOSER = "LOSER"
    UNKNOWN = "UNKNOWN"


class Recommendation(StrEnum):
    HOLD = "HOLD"
    SCALE_IN = "SCALE_IN"
    REDUCE = "REDUCE"
    EXIT = "EXIT"
    TIGHTEN_SL = "TIGHTEN_SL"
    EXTEND_HOLD = "EXTEND_HOLD"


@dataclass(frozen=True, slots=True)
class PositionAssessment:
    """Position Intelligence's classification of one open position."""

    position_id: str
    category: Category
    pnl_pct: float
    r_multiple: float | None
    recommendation: Recommendation
    reason: str
    momentum_pct: float = 0.0


class ActionKind(StrEnum):
    SCALE_IN = "SCALE_IN"
    REDUCE = "REDUCE"
    CLOSE = "CLOSE"
    SET_STOPS = "SET_STOPS"
    EXTEND_HOLD = "EXTEND_HOLD"


@dataclass(frozen=True, slots=True)
class PositionAction:
    """A change proposed for one open position.

    `fraction` is of the current quantity (REDUCE) or of the original stake (SCALE_IN); stops are
    absolute prices; `safety=True` marks the safety floor (emergency close), applied in every
    stage when the policy says so.
    """

    position_id: str
    kind: ActionKind
    reason: str
    fraction: float | None = None
    stop_loss: float | None = None
    take_profit: float | None = None
    trailing_stop_pct: float | None = None
    hold_until: datetime | None = None
    safety: bool = False


@dataclass(frozen=True, slots=True)
class ModelProposal:
    """A lifecycle proposal from the retraining orchestrator: register or deploy a model."""

    action: str  # "register" | "deploy" | "rollback"
    version: str
    reason: str
    metrics: Mapping[str, float] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PolicySection:
    """A plugin's own policy section: a JSON Schema object fragment under `subsystems.<name>`."""

    name: str
    schema: Mapping[str, Any]


# --- what the engine decides: orders for the book ----------------------------------------------


class OrderAction(StrEnum):
    OPEN = "OPEN"
    SCALE_IN = "SCALE_IN"
    REDUCE = "REDUCE"
    CLOSE = "CLOSE"
    SET_STOPS = "SET_STOPS"


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """An order the engine decided on; the runtime places it on an exchange.

    `id` is deterministic (run, cycle, sequence) and doubles as the idempotent client order id.
    Stops are absolute prices. `quote_amount` sizes OPEN and SCALE_IN; `fraction` (of the
    position's quantity) sizes REDUCE; CLOSE closes all.
    """

    id: str
    symbol: str
    side: Side
    action: OrderAction
    reason: str
    trace: str
    position_id: str | None = None
    quote_amount: float | None = None
    fraction: float | None = None
    order_type: OrderType = OrderType.MARKET
    slices: int = 1
    limit_offset_bps: float = 0.0
    take_profit: float | None = None
    stop_loss: float | None = None
    trailing_stop_pct: float | None = None
    hold_until: datetime | None = None
    confidence: float | None = None
    size_multiplier: float | None = None
    safety: bool = False
    entry_price: float | None = None
