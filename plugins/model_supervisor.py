"""Model Supervisor: watches the signals and the trades' outcomes for signs of a failing model.

Over the last `window_size` observed signals and the last `window_size` closed trades:

* directional bias = the majority side's share of the observed signals (accepted or not: it is
  the model's output that is judged, not the threshold's);
* calibration error = |mean stated confidence - realised win rate| over the closed trades that
  carry a confidence (a win is pnl_pct > 0). The confidence is the probability of the predicted
  direction over the model's horizon, while a trade ends at its TP/SL, so a small gap is normal;
* accuracy drift = win rate of the older half of the closed trades minus that of the newer half
  (positive: getting worse). With an odd count the middle trade belongs to neither half, so the
  halves are the same size.

Each statistic is judged only once it rests on at least `min_samples` samples (signals for the
bias, trades for the other two), and is flagged when strictly above its maximum: exactly at the
maximum is healthy. Any flag makes the health report DEGRADED. Below `min_samples` a statistic
is not published as a metric (a condition reading it sees "unknown", not a reassuring number).

`model_drift_detected` is 1.0 when calibration error or accuracy drift is flagged and
`request_retraining_on_drift` is on: those two say the model's link to outcomes has changed,
which retraining on recent data can repair. Directional bias alone does not request retraining:
a one-sided market produces one-sided signals, and retraining on that market would not change it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aios.hookspecs import hookimpl
from aios.metrics import MetricSpec
from aios.model import ClosedTrade, CycleContext, HealthReport, HealthStatus, Side, Signal
from aios.plugin import Subsystem

#: Statistics are ratios of counts; two that are equal in exact arithmetic can differ in the last
#: bit (0.7 - 0.55 is 0.15000000000000002). Comparisons allow this much, so that exactly at the
#: maximum is healthy however the float rounded.
FLOAT_TOLERANCE = 1e-9


@dataclass(frozen=True, slots=True)
class _Outcome:
    win: bool
    confidence: float | None


@dataclass(frozen=True, slots=True)
class Statistics:
    """The supervisor's view of one window; None where there are fewer than `min_samples`."""

    signals: int
    trades: int
    calibrated_trades: int
    directional_bias: float | None
    majority_side: Side | None
    calibration_error: float | None
    mean_confidence: float | None
    win_rate: float | None
    accuracy_drift: float | None
    older_accuracy: float | None
    newer_accuracy: float | None


def _share(wins: Sequence[bool]) -> float:
    return sum(wins) / len(wins)


class ModelSupervisor(Subsystem):
    """Flags directional bias, miscalibrated confidence and accuracy drift of the signal model."""

    name = "model_supervisor"

    def __init__(self) -> None:
        self._sides: deque[Side] = deque()
        self._outcomes: deque[_Outcome] = deque()
        #: Bumped whenever a window changes; the statistics are asked for twice per cycle
        #: (metrics, health) with no change in between, and are remembered per version.
        self._version = 0
        self._computed: tuple[tuple[int, int, int], Statistics] | None = None
        #: LONG signals in `_sides`, kept as sides come and go (a count over the whole window
        #: per cycle was most of this plugin's time: the window changes every cycle).
        self._longs = 0
        #: The outcome figures change only when a trade closes: remembered per outcome version.
        self._outcome_version = 0
        self._outcome_figures: tuple[tuple[int, int, int], tuple[Any, ...]] | None = None

    @staticmethod
    def _trim(window: deque[Side] | deque[_Outcome], size: int) -> None:
        while len(window) > size:
            window.popleft()

    def statistics(self, ctx: CycleContext) -> Statistics:
        """The window's statistics under the current policy (window_size, min_samples)."""
        settings = self.settings(ctx)
        size, min_samples = int(settings["window_size"]), int(settings["min_samples"])
        key = (self._version, size, min_samples)
        if self._computed is not None and self._computed[0] == key:
            return self._computed[1]
        self._trim_sides(size)
        self._trim(self._outcomes, size)

        bias: float | None = None
        majority: Side | None = None
        if self._sides and len(self._sides) >= min_samples:
            longs = self._longs
            shorts = len(self._sides) - longs
            majority = Side.LONG if longs >= shorts else Side.SHORT
            bias = max(longs, shorts) / len(self._sides)

        calibrated, *figures = self._outcome_statistics(size, min_samples)
        stats = Statistics(
            len(self._sides), len(self._outcomes), int(calibrated), bias, majority, *figures
        )
        # trimming changed nothing that a second call with the same key would see differently
        self._computed = ((self._version, size, min_samples), stats)
        return stats

    def _outcome_statistics(self, size: int, min_samples: int) -> tuple[Any, ...]:
        """`calibrated_trades`, then Statistics' fields from `calibration_error` on: the ones
        that read only the closed trades."""
        key = (self._outcome_version, size, min_samples)
        if self._outcome_figures is not None and self._outcome_figures[0] == key:
            return self._outcome_figures[1]
        calibrated = [o for o in self._outcomes if o.confidence is not None]
        calibration = mean_confidence = win_rate = None
        if calibrated and len(calibrated) >= min_samples:
            mean_confidence = sum(o.confidence or 0.0 for o in calibrated) / len(calibrated)
            win_rate = _share([o.win for o in calibrated])
            calibration = abs(mean_confidence - win_rate)

        drift = older = newer = None
        if len(self._outcomes) >= max(min_samples, 2):
            wins = [o.win for o in self._outcomes]
            half = len(wins) // 2
            older, newer = _share(wins[:half]), _share(wins[-half:])
            drift = older - newer
        figures = (
            len(calibrated),
            calibration,
            mean_confidence,
            win_rate,
            drift,
            older,
            newer,
        )
        self._outcome_figures = (key, figures)
        return figures

    def _trim_sides(self, size: int) -> None:
        sides = self._sides
        while len(sides) > size:
            if sides.popleft() is Side.LONG:
                self._longs -= 1

    def _flags(self, ctx: CycleContext, stats: Statistics) -> dict[str, str]:
        """Which statistics exceed their maximum, with the numbers that decided."""
        settings = self.settings(ctx)
        flags: dict[str, str] = {}
        max_bias = float(settings["max_directional_bias"])
        if (
            stats.directional_bias is not None
            and stats.directional_bias > max_bias + FLOAT_TOLERANCE
        ):
            side = stats.majority_side.value if stats.majority_side else "?"
            flags["directional_bias"] = (
                f"directional bias {stats.directional_bias:.3f} ({side} in {stats.signals} signals)"
                f" above {max_bias:g}"
            )
        max_error = float(settings["max_calibration_error"])
        if (
            stats.calibration_error is not None
            and stats.calibration_error > max_error + FLOAT_TOLERANCE
        ):
            flags["calibration_error"] = (
                f"calibration error {stats.calibration_error:.3f} (mean confidence"
                f" {stats.mean_confidence:.3f} vs win rate {stats.win_rate:.3f} over"
                f" {stats.calibrated_trades} trades) above {max_error:g}"
            )
        max_drift = float(settings["max_accuracy_drift"])
        if stats.accuracy_drift is not None and stats.accuracy_drift > max_drift + FLOAT_TOLERANCE:
            flags["accuracy_drift"] = (
                f"accuracy drift {stats.accuracy_drift:.3f} (older half {stats.older_accuracy:.3f},"
                f" newer half {stats.newer_accuracy:.3f} over {stats.trades} trades)"
                f" above {max_drift:g}"
            )
        return flags

    def _drift_detected(self, ctx: CycleContext, flags: Mapping[str, str]) -> bool:
        return bool(self.settings(ctx)["request_retraining_on_drift"]) and (
            "calibration_error" in flags or "accuracy_drift" in flags
        )

    # --- hooks ------------------------------------------------------------------------------

    @hookimpl
    def aios_metrics(self) -> Sequence[MetricSpec]:
        return [
            MetricSpec(
                "model_directional_bias",
                "fraction",
                "Majority side's share of the recent signals (0.5..1), once min_samples exist.",
                self.name,
            ),
            MetricSpec(
                "model_calibration_error",
                "fraction",
                "|mean confidence - win rate| over the recent closed trades, once min_samples exist.",
                self.name,
            ),
            MetricSpec(
                "model_accuracy_drift",
                "fraction",
                "Win rate of the older half of recent trades minus the newer half (positive: worse).",
                self.name,
            ),
            MetricSpec(
                "model_drift_detected",
                "0/1",
                "1 when calibration or accuracy drift is flagged and retraining on drift is requested.",
                self.name,
            ),
        ]

    @hookimpl
    def aios_observe_signal(self, ctx: CycleContext, signal: Signal) -> None:
        """Every observed signal counts, accepted or not (the threshold is not the model)."""
        self._sides.append(signal.side)
        self._longs += signal.side is Side.LONG
        self._trim_sides(int(self.settings(ctx)["window_size"]))
        self._version += 1

    @hookimpl
    def aios_trade_closed(self, ctx: CycleContext, trade: ClosedTrade) -> None:
        self._outcomes.append(_Outcome(trade.pnl_pct > 0.0, trade.confidence))
        self._trim(self._outcomes, int(self.settings(ctx)["window_size"]))
        self._version += 1
        self._outcome_version += 1

    @hookimpl
    def aios_collect_metrics(self, ctx: CycleContext) -> Mapping[str, float]:
        stats = self.statistics(ctx)
        metrics: dict[str, float] = {
            "model_drift_detected": 1.0
            if self._drift_detected(ctx, self._flags(ctx, stats))
            else 0.0
        }
        for name, value in (
            ("model_directional_bias", stats.directional_bias),
            ("model_calibration_error", stats.calibration_error),
            ("model_accuracy_drift", stats.accuracy_drift),
        ):
            if value is not None:
                metrics[name] = value
        return metrics

    @hookimpl
    def aios_health(self, ctx: CycleContext) -> HealthReport:
        stats = self.statistics(ctx)
        flags = self._flags(ctx, stats)
        metrics = {
            "signals": float(stats.signals),
            "trades": float(stats.trades),
            **{
                name: value
                for name, value in (
                    ("directional_bias", stats.directional_bias),
                    ("calibration_error", stats.calibration_error),
                    ("accuracy_drift", stats.accuracy_drift),
                )
                if value is not None
            },
        }
        if flags:
            detail = "; ".join(flags.values())
            if self._drift_detected(ctx, flags):
                detail += "; retraining requested"
            return HealthReport(self.name, HealthStatus.DEGRADED, detail, metrics)
        min_samples = int(self.settings(ctx)["min_samples"])
        judged = [
            label
            for label, value in (
                ("bias", stats.directional_bias),
                ("calibration", stats.calibration_error),
                ("drift", stats.accuracy_drift),
            )
            if value is not None
        ]
        detail = (
            f"within limits ({', '.join(judged)} judged)"
            if judged
            else f"collecting: {stats.signals} signals and {stats.trades} trades of {min_samples} needed"
        )
        return HealthReport(self.name, HealthStatus.OK, detail, metrics)
