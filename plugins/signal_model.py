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

import operator
from collections.abc import Sequence
from datetime import UTC, datetime
from types import ModuleType
from typing import TYPE_CHECKING, Any

from aios.hookspecs import hookimpl
from aios.model import Candle, CycleContext, HealthReport, HealthStatus, Side, Signal
from aios.plugin import Subsystem

if TYPE_CHECKING:
    from aios.model_registry import ModelVersion
    from aios.policy import Policy
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


class _Window:
    """One symbol's latest candles with their closes and volumes as floats, so that each
    cycle converts only its new candle (the float of the same candle object is the same
    float). A window is served only when its candles are the cached ones, object for object;
    anything else (another market, a gap, a replaced candle) rebuilds it from the window."""

    __slots__ = ("candles", "closes", "volumes")

    #: how many candles are kept beyond a window before the oldest are dropped
    SLACK = 64

    def __init__(self) -> None:
        self.candles: list[Candle] = []
        self.closes: list[float] = []
        self.volumes: list[float] = []

    def floats(self, window: Sequence[Candle]) -> tuple[list[float], list[float]]:
        """(closes, volumes) of `window`, each `float(candle.close)` / `float(candle.volume)`."""
        count, cached = len(window), self.candles
        kept = len(cached)
        if (
            count
            and kept >= count - 1
            and all(map(operator.is_, window, cached[kept - count + 1 :]))
        ):
            last = window[-1]  # one new candle after the cached ones (checked first: each cycle)
            cached.append(last)
            self.closes.append(float(last.close))
            self.volumes.append(float(last.volume))
            if len(cached) > count + self.SLACK:
                drop = len(cached) - count
                del cached[:drop], self.closes[:drop], self.volumes[:drop]
        elif kept >= count and all(map(operator.is_, window, cached[kept - count :])):
            pass  # the same window again
        else:
            self.candles = list(window)
            self.closes = [float(c.close) for c in window]
            self.volumes = [float(c.volume) for c in window]
        kept = len(self.candles)
        return self.closes[kept - count :], self.volumes[kept - count :]


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
        self._champion_read: tuple[CycleContext, ModelVersion | None, int | None] | None = None
        self._model_read: tuple[CycleContext, LogisticModel] | None = None
        self._batch: tuple[CycleContext, dict[str, list[Signal] | Exception]] | None = None
        #: what this plugin reads of a policy, per policy object (a reload makes a new one)
        self._policy: Policy | None = None
        self._knobs: dict[str, Any] = {}
        self._windows: dict[str, _Window] = {}
        #: the latest signal time and its text (a UTC time's text is fixed by its value)
        self._time_text: tuple[datetime, str] | None = None

    # --- which model ------------------------------------------------------------------------

    def _knob(self, ctx: CycleContext, name: str) -> Any:
        """A setting this plugin reads every cycle, read once per policy object (a policy is
        immutable; a reload or an override makes a new one). Raises as the read would."""
        if ctx.policy is not self._policy:
            self._policy, self._knobs = ctx.policy, {}
        try:
            return self._knobs[name]
        except KeyError:
            pass
        settings = self.settings(ctx)
        value: Any
        if name == "features":
            value = tuple(str(feature) for feature in settings["features"])
        else:
            value = int(settings[name])
        self._knobs[name] = value
        return value

    def _features(self, ctx: CycleContext) -> tuple[str, ...]:
        features: tuple[str, ...] = self._knob(ctx, "features")
        return features

    def _read_champion(self, ctx: CycleContext) -> ModelVersion | None:
        """The registry's champion, read once per engine cycle. Within one cycle (the same
        registry, market, time and cycle number: the health context and the signals context
        the engine derives from one) only the engine's tick, through this registry, can change
        it, and every write through it counts in `writes`: so a read is reused while that
        count is unchanged (a deploy between the health checks and the signals is seen). A
        registry without the count is read once per context."""
        models = ctx.models
        assert models is not None
        writes = getattr(models, "writes", None)
        read = self._champion_read
        if read is not None:
            seen, champion, seen_writes = read
            if seen is ctx or (
                writes is not None
                and seen_writes == writes
                and seen.models is models
                and seen.market is ctx.market
                and seen.cycle == ctx.cycle
                and seen.now == ctx.now
            ):
                return champion
        champion = models.champion()
        self._champion_read = (ctx, champion, writes)
        return champion

    def _champion_model(self, ctx: CycleContext) -> tuple[str, LogisticModel | str] | None:
        """(version, model) for a usable champion, (version, why not) for an unusable one,
        None without a registry or a champion. Parsed once per version."""
        if ctx.models is None:
            return None
        champion = self._read_champion(ctx)
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
        features, seed = self._features(ctx), int(self._knob(ctx, "seed"))
        model = self._bootstrap
        if model is not None and model.features == features and self._bootstrap_seed == seed:
            return model
        attempt = (ctx.now, features, seed)
        if self._bootstrap_attempt == attempt:
            return None
        self._bootstrap_attempt = attempt
        universe = [str(s) for s in ctx.policy.get("universe", "symbols", default=[])]
        symbols = [*universe, symbol] if symbol not in universe else universe
        lookback = int(self.settings(ctx)["lookback_candles"])
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
        champion = self._champion_model(ctx)
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
        logistic = _logistic()
        size, windows = logistic.FEATURE_WINDOW, self._windows
        for symbol in symbols:
            answers[symbol] = []
            try:
                candles = ctx.market.history(symbol, size)
                if not candles:
                    continue
                model = self._model(ctx, symbol)
                if model is None:
                    continue
                window = windows.get(symbol)
                if window is None:
                    window = windows[symbol] = _Window()
                closes, volumes = window.floats(candles[-size:])
                values = logistic.features_of(closes, volumes, model.features)
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
                            id=f"{symbol}@{self._text(last.time)}",
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

    def _text(self, time: datetime) -> str:
        """`time.isoformat()`, once per candle time rather than once per symbol: the symbols of
        a cycle share it. Remembered for UTC times only, where equal times have equal fields
        and so the same text (times of other zones compare equal across offsets)."""
        remembered = self._time_text
        utc = type(time) is datetime and time.tzinfo is UTC
        if utc and remembered is not None and remembered[0] == time:
            return remembered[1]
        text = time.isoformat()
        if utc:
            self._time_text = (time, text)
        return text

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
