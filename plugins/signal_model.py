"""The built-in signal source: a logistic model's probability that price rises, as a signal.

Which model: the registry's champion (`ctx.models.champion()`) when there is one that fits the
policy (a `logistic` model with exactly the policy's `features`); otherwise a bootstrap model
this plugin trains for itself, once, as soon as the market holds enough labelled rows. The
bootstrap pools the last `lookback_candles` of every universe symbol the market has (and the
symbol asked about), is seeded by `seed`, and needs as many labelled rows as the policy asks of
any training (`subsystems.retraining.min_samples`: the signal model's section has no such knob).
It is kept privately and retrained only when the features or the seed change.

Per call: at most one signal for the symbol, at its latest closed candle. With p the model's
probability of "up" over its horizon, the side is LONG when p >= 0.5 and SHORT otherwise, and
the confidence is max(p, 1 - p), the probability of the predicted direction. The confidence
threshold (`min_confidence` times the risk mode's multiplier) is the engine's to apply.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from types import ModuleType
from typing import TYPE_CHECKING

from aios.hookspecs import hookimpl
from aios.model import Candle, CycleContext, HealthReport, HealthStatus, Side, Signal
from aios.plugin import Subsystem

if TYPE_CHECKING:
    from aios.model_registry import ModelVersion
    from plugins._logistic import LogisticModel


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


def _candidates(ctx: CycleContext) -> list[str]:
    """The symbols the engine asks about in a cycle: the configured universe the market has
    (in the policy's order), else every market symbol, sorted (`Engine._candidates`)."""
    available = list(ctx.market.symbols)
    configured = ctx.policy.get("universe", "symbols", default=None)
    if isinstance(configured, list):
        return [str(s) for s in configured if s in available]
    return sorted(available)


def _probability_or_error(model: LogisticModel, values: dict[str, float]) -> float | Exception:
    try:
        return model.probability_up(values)
    except Exception as exc:
        return exc


class SignalModel(Subsystem):
    """Turns candle features into LONG/SHORT signals with a calibrated confidence."""

    name = "signal_model"

    def __init__(self) -> None:
        self._bootstrap: LogisticModel | None = None
        self._bootstrap_seed: int | None = None
        self._bootstrap_rows = 0
        self._bootstrap_attempt: tuple[datetime, tuple[str, ...], int] | None = None
        self._champion: tuple[str, LogisticModel | str] | None = None
        self._champion_read: tuple[CycleContext, ModelVersion | None] | None = None
        self._model_read: tuple[CycleContext, LogisticModel] | None = None
        self._batch: tuple[CycleContext, dict[str, list[Signal] | Exception]] | None = None

    # --- which model ------------------------------------------------------------------------

    def _features(self, ctx: CycleContext) -> tuple[str, ...]:
        return tuple(str(name) for name in self.settings(ctx)["features"])

    def _read_champion(self, ctx: CycleContext, *, per_context: bool) -> ModelVersion | None:
        """The registry's champion. With `per_context`, read once per cycle context: the engine
        asks for the signals of every symbol with one context, after the tick that may deploy
        a model, so within one context the answer cannot change (one query, not one per symbol)."""
        assert ctx.models is not None
        if per_context and self._champion_read is not None and self._champion_read[0] is ctx:
            return self._champion_read[1]
        champion = ctx.models.champion()
        self._champion_read = (ctx, champion) if per_context else None
        return champion

    def _champion_model(
        self, ctx: CycleContext, *, per_context: bool = False
    ) -> tuple[str, LogisticModel | str] | None:
        """(version, model) for a usable champion, (version, why not) for an unusable one,
        None without a registry or a champion. Parsed once per version."""
        if ctx.models is None:
            return None
        champion = self._read_champion(ctx, per_context=per_context)
        if champion is None:
            return None
        if self._champion is None or self._champion[0] != champion.version:
            parsed: LogisticModel | str
            try:
                parsed = _logistic().LogisticModel.from_params(champion.params)
            except ValueError as exc:
                parsed = str(exc)
            self._champion = (champion.version, parsed)
        version, model = self._champion
        features = self._features(ctx)
        if isinstance(model, _logistic().LogisticModel) and model.features != features:
            return version, (
                f"trained on features {list(model.features)}, the policy asks for {list(features)}"
            )
        return version, model

    def _bootstrap_model(self, ctx: CycleContext, symbol: str) -> LogisticModel | None:
        """The private model, trained once when enough labelled rows exist (at most one attempt
        per cycle time and settings, so a short market does not cost a training pass per symbol)."""
        settings = self.settings(ctx)
        features, seed = self._features(ctx), int(settings["seed"])
        model = self._bootstrap
        if model is not None and model.features == features and self._bootstrap_seed == seed:
            return model
        attempt = (ctx.now, features, seed)
        if self._bootstrap_attempt == attempt:
            return None
        self._bootstrap_attempt = attempt
        universe = [str(s) for s in ctx.policy.get("universe", "symbols", default=[])]
        symbols = [*universe, symbol] if symbol not in universe else universe
        lookback = int(settings["lookback_candles"])
        self._bootstrap_rows = _logistic().possible_rows(ctx.market, symbols, lookback, features)
        if self._bootstrap_rows < self._min_rows(ctx):
            return None
        dataset = _logistic().market_dataset(
            ctx.market, symbols, lookback, features, _logistic().DEFAULT_HORIZON
        )
        self._bootstrap_rows = len(dataset)
        if len(dataset) < self._min_rows(ctx):
            return None
        self._bootstrap, self._bootstrap_seed = _logistic().train(dataset, seed), seed
        return self._bootstrap

    @staticmethod
    def _min_rows(ctx: CycleContext) -> int:
        return int(ctx.policy.get("subsystems", "retraining", "min_samples", default=1))

    def _model(self, ctx: CycleContext, symbol: str) -> LogisticModel | None:
        """The model for this context's signals; once found, the same for every symbol asked
        with this context (the champion is read once per context, and a trained bootstrap
        model does not depend on the symbol)."""
        if self._model_read is not None and self._model_read[0] is ctx:
            return self._model_read[1]
        champion = self._champion_model(ctx, per_context=True)
        model: LogisticModel | None
        if champion is not None and not isinstance(champion[1], str):
            model = champion[1]
        else:
            model = self._bootstrap_model(ctx, symbol)
        self._model_read = None if model is None else (ctx, model)
        return model

    # --- hooks ------------------------------------------------------------------------------

    @hookimpl
    def aios_signals(self, ctx: CycleContext, symbol: str) -> Sequence[Signal]:
        """The engine asks symbol by symbol, with one context per cycle: the first question of a
        context is answered on its own; the second computes the signals of every universe
        candidate not answered yet, in the order the engine asks, with one batch of
        predictions (`LogisticModel.probabilities_up`), and the others are read from that. A
        caller asking once per context (a bus worker) pays for its symbol only. A symbol whose
        computation raised raises when it is asked about, as it would on its own."""
        batch = self._batch
        if batch is None or batch[0] is not ctx:
            batch = self._batch = (ctx, self._signals_of(ctx, [symbol]))
        answers = batch[1]
        found = answers.get(symbol)
        if found is None:
            pending = [s for s in _candidates(ctx) if s not in answers]
            answers.update(self._signals_of(ctx, pending if symbol in pending else [symbol]))
            found = answers[symbol]
        if isinstance(found, Exception):
            raise found
        return found

    def _signals_of(
        self, ctx: CycleContext, symbols: Sequence[str]
    ) -> dict[str, list[Signal] | Exception]:
        """Each symbol's signals (at most one, at its latest closed candle), or what its
        computation raised. The symbols are taken in order and each step is what a question
        about that symbol alone does (the model is looked for at the first symbol with
        candles); only the predictions are batched."""
        answers: dict[str, list[Signal] | Exception] = {}
        pending: list[tuple[str, Candle, dict[str, float], LogisticModel]] = []
        for symbol in symbols:
            answers[symbol] = []
            try:
                candles = ctx.market.history(symbol, _logistic().FEATURE_WINDOW)
                if not candles:
                    continue
                model = self._model(ctx, symbol)
                if model is None:
                    continue
                values = _logistic().extract_features(candles, model.features)
            except Exception as exc:  # the engine journals it for this symbol only
                answers[symbol] = exc
                continue
            if values is not None:
                pending.append((symbol, candles[-1], values, model))
        for model in {id(item[3]): item[3] for item in pending}.values():
            rows = [item for item in pending if item[3] is model]
            try:
                predicted: list[float | Exception] = list(
                    model.probabilities_up([item[2] for item in rows])
                )
            except Exception:  # find the row that raised: each on its own
                predicted = [_probability_or_error(model, item[2]) for item in rows]
            for (symbol, last, values, _), p_up in zip(rows, predicted, strict=True):
                answers[symbol] = (
                    p_up
                    if isinstance(p_up, Exception)
                    else [
                        Signal(
                            id=f"{symbol}@{last.time.isoformat()}",
                            symbol=symbol,
                            side=Side.LONG if p_up >= 0.5 else Side.SHORT,
                            confidence=max(p_up, 1.0 - p_up),
                            source=self.name,
                            time=last.time,
                            price=last.close,
                            features=values,
                        )
                    ]
                )
        return answers

    @hookimpl
    def aios_health(self, ctx: CycleContext) -> HealthReport:
        """Which model is in use. An unusable champion is DEGRADED (signals fall back to the
        bootstrap model); having no model yet is a warm-up, not a fault."""
        champion = self._champion_model(ctx)
        if champion is not None and isinstance(champion[1], _logistic().LogisticModel):
            return HealthReport(self.name, HealthStatus.OK, f"champion {champion[0]} in use")
        bootstrap = self._bootstrap
        features = self._features(ctx)
        if bootstrap is not None and bootstrap.features == features:
            using = f"bootstrap model trained on {self._bootstrap_rows} rows in use"
        else:
            using = (
                f"no model yet: {self._bootstrap_rows} labelled rows seen, "
                f"{self._min_rows(ctx)} needed to train the bootstrap model"
            )
        metrics = {"bootstrap_rows": float(self._bootstrap_rows)}
        if champion is not None:
            return HealthReport(
                self.name,
                HealthStatus.DEGRADED,
                f"champion {champion[0]} unusable ({champion[1]}); {using}",
                metrics,
            )
        return HealthReport(self.name, HealthStatus.OK, using, metrics)
