"""Retraining Orchestrator: trains a challenger signal model and proposes registering/deploying it.

When: every `interval_s` seconds since the last run (by `ctx.now`; the first tick only starts
the clock), or at once when the model supervisor reports drift (`model_drift_detected` == 1 in
`ctx.metrics`) and `retrain_on_drift` is on. A drift episode triggers one run: the next
drift-triggered run waits until the flag has cleared and risen again (the schedule still runs).
Every attempt counts as a run, including one that finds too little data, so an empty market
costs one dataset build per interval, not one per tick.

What: the labelled rows (features and horizon as in `plugins._logistic`) of the last
`subsystems.signal_model.lookback_candles` candles of every `universe.symbols` symbol the market
has, pooled in time order. The signal model's section also gives the features and the seed, so
the challenger is the model the signal model would run. With fewer than `min_samples` rows,
nothing is proposed. Otherwise the newest `holdout_fraction` of the rows is held out (a time
split, no shuffling; training rows whose label reaches into the held-out period are dropped), the
challenger is trained on the rest, and the challenger and the champion (if the registry has a
usable one) are scored by accuracy on the same held-out rows.

Proposals: always `register` (evidence, with both accuracies); also `deploy` when there is no
usable champion or the challenger beats it by at least `promotion_margin`. The engine applies
register from ADVISORY and deploy only under ENFORCED. Versions are `m-<ctx.now>` (UTC,
second resolution), the same for the same inputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from types import ModuleType
from typing import TYPE_CHECKING, Any

from aios.hookspecs import hookimpl
from aios.model import CycleContext, HealthReport, HealthStatus, ModelProposal
from aios.plugin import Subsystem

if TYPE_CHECKING:
    from plugins._logistic import LogisticModel

#: Accuracies are ratios of counts; a gain equal to the margin in exact arithmetic can round a
#: bit below it (0.57 - 0.55 is 0.0199999...). This much is forgiven, so the boundary promotes.
FLOAT_TOLERANCE = 1e-9


def beats_champion(challenger_accuracy: float, champion_accuracy: float, margin: float) -> bool:
    """The promotion rule: the challenger's gain is at least the margin (at the margin: yes)."""
    return challenger_accuracy - champion_accuracy >= margin - FLOAT_TOLERANCE


def version_name(now: datetime) -> str:
    """A model version named after the time it was trained: deterministic, sortable."""
    return f"m-{now:%Y%m%dT%H%M%S}"


_LOGISTIC: ModuleType | None = None


def _logistic() -> ModuleType:
    """The model code, imported on first use: numpy costs about 0.1 s to import, and commands
    such as `aios validate` load every plugin without ever predicting. Kept once imported (an
    import statement per call costs a microsecond, several times per signal)."""
    global _LOGISTIC
    if _LOGISTIC is None:
        import plugins._logistic as module

        _LOGISTIC = module
    return _LOGISTIC


class Retraining(Subsystem):
    """Retrains the signal model on schedule or on drift and proposes the result."""

    name = "retraining"

    def __init__(self) -> None:
        self._last_run: datetime | None = None
        self._drift_handled = False
        self._last_outcome = "not run yet"

    def _trigger(self, ctx: CycleContext, settings: Mapping[str, Any]) -> str | None:
        """Why to run now, as a short sentence, or None; the first tick only starts the clock."""
        drift = (
            bool(settings["retrain_on_drift"]) and ctx.metrics.get("model_drift_detected") == 1.0
        )
        if not drift:
            self._drift_handled = False
        elif not self._drift_handled:
            self._drift_handled = True
            return "model drift detected"
        if self._last_run is None:
            self._last_run = ctx.now
            return None
        elapsed = (ctx.now - self._last_run).total_seconds()
        interval = float(settings["interval_s"])
        if elapsed >= interval:
            return f"scheduled ({elapsed:.0f}s since the last run, interval {interval:g}s)"
        return None

    @staticmethod
    def _champion(ctx: CycleContext) -> tuple[str, LogisticModel | None, str]:
        """(version, model, note): the model is None when there is no usable champion."""
        champion = ctx.models.champion() if ctx.models is not None else None
        if champion is None:
            return "", None, "no champion"
        try:
            return champion.version, _logistic().LogisticModel.from_params(champion.params), ""
        except ValueError as exc:
            return champion.version, None, f"champion {champion.version} unusable ({exc})"

    def _retrain(
        self, ctx: CycleContext, settings: Mapping[str, Any], trigger: str
    ) -> list[ModelProposal]:
        model_settings = ctx.settings("signal_model")
        features = tuple(str(name) for name in model_settings["features"])
        champion_version, champion, note = self._champion(ctx)
        columns = features
        if champion is not None:
            columns += tuple(name for name in champion.features if name not in features)
        universe = [str(s) for s in ctx.policy.get("universe", "symbols", default=[])]
        lookback = int(model_settings["lookback_candles"])
        min_samples = int(settings["min_samples"])
        # count first from history lengths: building the features is the expensive part
        rows = _logistic().possible_rows(ctx.market, universe, lookback, columns)
        dataset = None
        if rows >= min_samples:
            dataset = _logistic().market_dataset(ctx.market, universe, lookback, columns)
            rows = len(dataset)
        if dataset is None or rows < min_samples:
            self._last_outcome = (
                f"{trigger}: skipped, {rows} labelled rows < min_samples {min_samples}"
            )
            return []
        train_set, holdout = _logistic().time_split(dataset, float(settings["holdout_fraction"]))
        if len(train_set) == 0:
            self._last_outcome = f"{trigger}: skipped, no training rows left after the holdout"
            return []
        challenger = _logistic().train(train_set.restrict(features), int(model_settings["seed"]))
        challenger_accuracy = challenger.accuracy(holdout)
        version = version_name(ctx.now)
        metrics = {
            "challenger_accuracy": challenger_accuracy,
            "samples": float(len(dataset)),
            "train_samples": float(len(train_set)),
            "holdout_samples": float(len(holdout)),
        }
        scored = f"challenger accuracy {challenger_accuracy:.3f} on {len(holdout)} held-out rows"
        if champion is None:
            deploy = True
            comparison = f"{scored}; {note}"
            verdict = f"{note} to beat"
        else:
            champion_accuracy = champion.accuracy(holdout)
            metrics["champion_accuracy"] = champion_accuracy
            gain = challenger_accuracy - champion_accuracy
            margin = float(settings["promotion_margin"])
            deploy = beats_champion(challenger_accuracy, champion_accuracy, margin)
            comparison = f"{scored} vs champion {champion_version} {champion_accuracy:.3f}"
            verdict = (
                f"gain {gain:+.3f} over {champion_version} "
                f"{'meets' if deploy else 'misses'} the margin {margin:g}"
            )
        reason = f"{trigger}: {comparison} ({len(dataset)} rows, {len(train_set)} trained on)"
        proposals = [ModelProposal("register", version, reason, metrics, challenger.to_params())]
        if deploy:
            proposals.append(
                ModelProposal("deploy", version, verdict, metrics, challenger.to_params())
            )
        self._last_outcome = (
            f"{reason}; {verdict}; {'deploy proposed' if deploy else 'champion kept'}"
        )
        return proposals

    @hookimpl
    def aios_tick(self, ctx: CycleContext) -> Sequence[ModelProposal]:
        settings = self.settings(ctx)
        trigger = self._trigger(ctx, settings)
        if trigger is None:
            return []
        self._last_run = ctx.now
        return self._retrain(ctx, settings, trigger)

    @hookimpl
    def aios_health(self, ctx: CycleContext) -> HealthReport:
        """The last run's outcome, for `aios status`; skipping for lack of data is not a fault."""
        return HealthReport(self.name, HealthStatus.OK, self._last_outcome)
