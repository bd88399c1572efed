"""A small logistic-regression signal model in numpy, shared by the signal model and retraining.

No hooks live here: this is the model, its features and its training data.

* **Features** are computed from a trailing window of at most `FEATURE_WINDOW` candles ending at
  the candle they describe, never from a later candle. Training rows and live inference call
  the same function on the same window, so a feature means the same thing in both.
* **Label**: 1 when the close `horizon` candles ahead is above the current close, else 0. The
  row at index t uses candles <= t for its features and candle t + horizon only for its label.
* **Training** is batch gradient descent on the L2-regularised log loss of standardised
  features, from a seeded initialisation with a fixed iteration count: the same data and seed
  give the same model, bit for bit.
* **Serialisation** is a plain JSON-able dict (`to_params` / `from_params`), the form the model
  registry stores.

Modelling choices (constants, documented here rather than policy knobs, because changing them
changes what a trained model means):

* `FEATURE_WINDOW = 60` candles: enough for the longest feature (trend_50 needs 50) plus a
  warm-up for Wilder's RSI smoothing, and little enough to keep inference cheap.
* `DEFAULT_HORIZON = 6` candles (30 minutes of 5m candles): long enough to outlast
  candle-to-candle noise, short enough to matter to an entry decision.
* `LEARNING_RATE = 0.1`, `ITERATIONS = 500`, `L2_PENALTY = 0.01`, `INIT_SCALE = 0.01`: on
  standardised features the log loss is smooth enough that 500 full-batch steps of 0.1 converge
  to within rounding of the optimum on the data sizes used here; the small L2 penalty keeps the
  weights finite on separable data (a clean trend); the bias is not penalised.
* `ROUNDING_SPREAD = 1e-9`: a feature whose spread is below this fraction of its magnitude is
  constant up to float rounding and is not standardised (rounding noise is not a signal).
"""

from __future__ import annotations

import itertools
import math
import operator
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import NDArray

from aios.model import Candle, MarketView

Array = NDArray[np.float64]

MODEL_FAMILY = "logistic"
FEATURE_WINDOW = 60
DEFAULT_HORIZON = 6
LEARNING_RATE = 0.1
ITERATIONS = 500
L2_PENALTY = 0.01
INIT_SCALE = 0.01
ROUNDING_SPREAD = 1e-9
RSI_PERIOD = 14


# --- features ------------------------------------------------------------------------------------


Series = Sequence[float]


def _sample_stdev(values: Series) -> float:
    """Standard deviation with n - 1 in the denominator (plain floats: these windows are tiny,
    and numpy's per-call overhead would dominate)."""
    count = float(len(values))  # a float: see `_rsi_14`
    mean = sum(values) / count
    # a list, not a generator: the same terms summed in the same order, with less overhead
    return math.sqrt(sum([(v - mean) ** 2 for v in values]) / (count - 1.0))


def _returns(n: int) -> Callable[[Series, Series], float]:
    def feature(closes: Series, _volumes: Series) -> float:
        return (closes[-1] / closes[-1 - n] - 1.0) * 100.0

    return feature


def _volatility_20(closes: Series, _volumes: Series) -> float:
    """Sample standard deviation (n - 1) of the last 20 one-candle returns, in percent."""
    window = closes[-21:]
    return _sample_stdev([(b / a - 1.0) * 100.0 for a, b in itertools.pairwise(window)])


def _trend_50(closes: Series, _volumes: Series) -> float:
    """Close over its 50-candle simple moving average (current candle included), minus 1, in %."""
    window = closes[-50:]
    return (closes[-1] / (sum(window) / len(window)) - 1.0) * 100.0


def _rsi_14(closes: Series, _volumes: Series) -> float:
    """Wilder's RSI over the whole window given: seeded with the plain mean of the first 14
    gains and losses, then smoothed as avg = (avg x 13 + value) / 14. No losses gives 100, a
    flat window gives 50."""
    changes: list[float] = list(map(operator.sub, closes[1:], closes[:-1]))  # b - a for each pair
    seed = changes[:RSI_PERIOD]
    # lists, not generators: the same terms summed in the same order, with less overhead
    avg_gain = sum([c for c in seed if c > 0.0]) / RSI_PERIOD
    avg_loss = -sum([c for c in seed if c < 0.0]) / RSI_PERIOD
    # floats, exactly the ints they stand for: float-by-float arithmetic takes the
    # interpreter's specialised path, float-by-int converts the int on every operation
    keep = float(RSI_PERIOD - 1)
    period = float(RSI_PERIOD)  # a local: read on every step of the smoothing
    for change in changes[RSI_PERIOD:]:
        if change > 0.0:
            avg_gain = (avg_gain * keep + change) / period
            avg_loss = avg_loss * keep / period
        else:
            avg_gain = avg_gain * keep / period
            avg_loss = (avg_loss * keep - change) / period
    if avg_loss == 0.0:
        return 100.0 if avg_gain > 0.0 else 50.0
    return 100.0 - 100.0 / (1.0 + avg_gain / avg_loss)


def _volume_z_20(_closes: Series, volumes: Series) -> float:
    """The current volume's z-score against the 20 volumes before it (sample stdev); 0 when
    those 20 are all equal."""
    reference = volumes[-21:-1]
    spread = _sample_stdev(reference)
    if spread == 0.0:
        return 0.0
    return (volumes[-1] - sum(reference) / len(reference)) / spread


#: Each feature: (candles it needs at least, how it is computed from closes and volumes).
FEATURES: Mapping[str, tuple[int, Callable[[Series, Series], float]]] = {
    "returns_1": (2, _returns(1)),
    "returns_5": (6, _returns(5)),
    "returns_20": (21, _returns(20)),
    "volatility_20": (21, _volatility_20),
    "trend_50": (50, _trend_50),
    "rsi_14": (RSI_PERIOD + 1, _rsi_14),
    "volume_z_20": (21, _volume_z_20),
}


_REQUIRED: dict[tuple[str, ...], int] = {}
_FUNCTIONS: dict[tuple[str, ...], tuple[Callable[[Series, Series], float], ...]] = {}


def _functions(features: tuple[str, ...]) -> tuple[Callable[[Series, Series], float], ...]:
    """The features' functions in order, looked up once per feature list (every row asks)."""
    found = _FUNCTIONS.get(features)
    if found is None:
        found = _FUNCTIONS[features] = tuple(FEATURES[name][1] for name in features)
    return found


def required_candles(features: Sequence[str]) -> int:
    """How many candles the features need before the first value exists (asked for every
    feature row: remembered per feature list)."""
    key = tuple(features)
    found = _REQUIRED.get(key)
    if found is None:
        unknown = [name for name in key if name not in FEATURES]
        if unknown:
            raise ValueError(f"unknown features: {', '.join(unknown)}")
        found = _REQUIRED[key] = max(FEATURES[name][0] for name in key)
    return found


#: Feature rows already computed, by (closes, volumes, features). A row is a pure function of
#: its window, and the same windows come back: the signal model computes the row of every new
#: candle, and each retraining (and the bootstrap model) rebuilds rows over hundreds of candles
#: that inference already saw. Bounded, oldest first out (a miss only costs the computation):
#: enough for the rows of a 600-candle lookback over 20 symbols. An OrderedDict, whose
#: `popitem(last=False)` drops the oldest at once: a plain dict's `next(iter(...))` walks over
#: the slots its deletions emptied, about 5 to 12 us per eviction once full (measured at 12,288
#: rows; a 2,000-candle-time replay evicts on about 24,000 rows).
_ROW_CACHE: OrderedDict[
    tuple[tuple[float, ...], tuple[float, ...], tuple[str, ...]], tuple[float, ...] | None
] = OrderedDict()
ROW_CACHE_SIZE = 12288


def _feature_values(closes: Series, volumes: Series, features: Sequence[str]) -> list[float] | None:
    """Feature values at the last element of the series (already cut to the window); None when
    the window is too short or a value does not exist (a zero price, say)."""
    names = tuple(features)
    if len(closes) < required_candles(names):
        return None
    key = (tuple(closes), tuple(volumes), names)
    try:  # one hash of the 120 floats for a row seen before (`in` then `[]` made two)
        cached = _ROW_CACHE[key]
    except KeyError:
        pass
    else:
        return None if cached is None else list(cached)
    values: list[float] | None
    try:
        values = [feature(closes, volumes) for feature in _functions(names)]
    except (ZeroDivisionError, OverflowError):
        values = None
    if values is not None and not all(map(math.isfinite, values)):
        values = None
    if len(_ROW_CACHE) >= ROW_CACHE_SIZE:
        _ROW_CACHE.popitem(last=False)  # the oldest
    _ROW_CACHE[key] = None if values is None else tuple(values)
    return values


def extract_features(candles: Sequence[Candle], features: Sequence[str]) -> dict[str, float] | None:
    """Feature values at the last of `candles` (oldest first), from its trailing window only."""
    window = candles[-FEATURE_WINDOW:]
    closes = [float(c.close) for c in window]
    volumes = [float(c.volume) for c in window]
    return features_of(closes, volumes, features)


def features_of(
    closes: Series, volumes: Series, features: Sequence[str]
) -> dict[str, float] | None:
    """`extract_features` from a window's closes and volumes as floats (at most
    `FEATURE_WINDOW` of each, oldest first): for a caller that keeps them per candle."""
    values = _feature_values(closes, volumes, features)
    return None if values is None else dict(zip(features, values, strict=True))


# --- labelled data -------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Dataset:
    """Labelled rows, time-ordered. `times[i]` is the candle row i describes, `label_times[i]`
    the candle its label was read from. Compared by identity (it holds arrays)."""

    features: tuple[str, ...]
    horizon: int
    x: Array
    y: Array
    times: tuple[datetime, ...]
    label_times: tuple[datetime, ...]

    def __len__(self) -> int:
        return len(self.y)

    def take(self, indices: Sequence[int]) -> Dataset:
        index = np.asarray(indices, dtype=np.intp)
        return Dataset(
            self.features,
            self.horizon,
            self.x[index].reshape(len(index), len(self.features)),
            self.y[index],
            tuple(self.times[i] for i in indices),
            tuple(self.label_times[i] for i in indices),
        )

    def restrict(self, features: Sequence[str]) -> Dataset:
        """The same rows with only (and in the order of) `features`."""
        return Dataset(
            tuple(features),
            self.horizon,
            self.columns(features),
            self.y,
            self.times,
            self.label_times,
        )

    def columns(self, features: Sequence[str]) -> Array:
        """The feature matrix restricted to (and ordered as) `features`."""
        missing = [name for name in features if name not in self.features]
        if missing:
            raise ValueError(f"dataset has no column {', '.join(missing)}")
        return self.x[:, [self.features.index(name) for name in features]]


def build_dataset(
    candles: Sequence[Candle], features: Sequence[str], horizon: int = DEFAULT_HORIZON
) -> Dataset:
    """One labelled row per candle t that has enough history for the features and a candle
    t + horizon for its label. Features read candles (t - FEATURE_WINDOW, t] only."""
    features = tuple(features)
    # tuples: each row's window is then a tuple slice, which is also its memo key as it is
    closes = tuple([float(c.close) for c in candles])
    volumes = tuple([float(c.volume) for c in candles])
    rows: list[list[float]] = []
    labels: list[float] = []
    times: list[datetime] = []
    label_times: list[datetime] = []
    for t in range(required_candles(features) - 1, len(candles) - horizon):
        start = max(0, t + 1 - FEATURE_WINDOW)
        values = _feature_values(closes[start : t + 1], volumes[start : t + 1], features)
        if values is None:
            continue
        rows.append(values)
        labels.append(1.0 if closes[t + horizon] > closes[t] else 0.0)
        times.append(candles[t].time)
        label_times.append(candles[t + horizon].time)
    return Dataset(
        features,
        horizon,
        np.array(rows, dtype=np.float64).reshape(len(rows), len(features)),
        np.array(labels, dtype=np.float64),
        tuple(times),
        tuple(label_times),
    )


def pool(
    datasets: Sequence[Dataset], features: Sequence[str], horizon: int = DEFAULT_HORIZON
) -> Dataset:
    """Several symbols' rows in one time-ordered dataset (stable: equal times keep the order
    of `datasets`)."""
    features = tuple(features)
    if any(d.features != features or d.horizon != horizon for d in datasets):
        raise ValueError("pooled datasets must share features and horizon")
    x = np.concatenate([d.x for d in datasets]) if datasets else np.empty((0, len(features)))
    y = np.concatenate([d.y for d in datasets]) if datasets else np.empty(0)
    times = tuple(t for d in datasets for t in d.times)
    label_times = tuple(t for d in datasets for t in d.label_times)
    merged = Dataset(features, horizon, x.reshape(len(y), len(features)), y, times, label_times)
    return merged.take(sorted(range(len(times)), key=times.__getitem__))


def possible_rows(
    market: MarketView,
    symbols: Sequence[str],
    lookback_candles: int,
    features: Sequence[str],
    horizon: int = DEFAULT_HORIZON,
) -> int:
    """How many rows `market_dataset` yields at most, from history lengths alone: a cheap check
    before paying for the features (it is exact unless some feature value does not exist)."""
    available, warm_up = set(market.symbols), required_candles(features) - 1
    return sum(
        max(0, len(market.history(symbol, lookback_candles)) - warm_up - horizon)
        for symbol in symbols
        if symbol in available
    )


def market_dataset(
    market: MarketView,
    symbols: Sequence[str],
    lookback_candles: int,
    features: Sequence[str],
    horizon: int = DEFAULT_HORIZON,
) -> Dataset:
    """Rows pooled over the `symbols` the market has, from their last `lookback_candles`."""
    available = set(market.symbols)
    return pool(
        [
            build_dataset(market.history(symbol, lookback_candles), features, horizon)
            for symbol in symbols
            if symbol in available
        ],
        features,
        horizon,
    )


def time_split(dataset: Dataset, holdout_fraction: float) -> tuple[Dataset, Dataset]:
    """Train on the older rows, hold out the newest `holdout_fraction` (rounded up, at least
    one row). Training rows whose label was read at or after the first held-out candle are
    dropped (purged): their labels overlap the held-out period, and keeping them would let the
    evaluation see its own future."""
    count = len(dataset)
    held = min(count, max(1, math.ceil(count * holdout_fraction)))
    cut = count - held
    if cut == 0:
        return dataset.take([]), dataset
    first_held = dataset.times[cut]
    train = [i for i in range(cut) if dataset.label_times[i] < first_held]
    return dataset.take(train), dataset.take(list(range(cut, count)))


# --- the model -----------------------------------------------------------------------------------


def _sigmoid(z: Array) -> Array:
    out: Array = 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free form of 1 / (1 + e^-z)
    return out


@dataclass(frozen=True)
class LogisticModel:
    """P(close `horizon` candles ahead > close now) = sigmoid(w . (x - mean) / std + b)."""

    features: tuple[str, ...]
    weights: tuple[float, ...]
    bias: float
    means: tuple[float, ...]
    stds: tuple[float, ...]
    horizon: int = DEFAULT_HORIZON

    @cached_property
    def _arrays(self) -> tuple[Array, Array, Array]:
        """means, stds and weights as arrays, made once per model (it predicts every candle)."""
        return (
            np.asarray(self.means, dtype=np.float64),
            np.asarray(self.stds, dtype=np.float64),
            np.asarray(self.weights, dtype=np.float64),
        )

    def _standardise(self, x: Array) -> Array:
        means, stds, _ = self._arrays
        standardised: Array = (x - means) / stds
        return standardised

    def predict_proba(self, x: Array) -> Array:
        """Probability of "up" for each row of `x` (columns in `self.features` order)."""
        rows = np.asarray(x, dtype=np.float64).reshape(-1, len(self.features))
        return _sigmoid(self._standardise(rows) @ self._arrays[2] + self.bias)

    def probability_up(self, values: Mapping[str, float]) -> float:
        """Probability of "up" for one row of named feature values."""
        row = np.array([[values[name] for name in self.features]], dtype=np.float64)
        return float(self.predict_proba(row)[0])

    def probabilities_up(self, rows: Sequence[Mapping[str, float]]) -> list[float]:
        """`probability_up` of each row, bit for bit, in fewer numpy calls (the signal model
        asks for every symbol of a candle time at once). Standardising and the sigmoid work
        element by element, so a batch changes nothing there; the dot product is taken row by
        row, because one matrix product over the batch rounds differently (measured: about
        one row in thirty differs in its last bit)."""
        if not rows:
            return []
        features = self.features
        # one flat list, then the shape: numpy converts nested lists more slowly (the same
        # doubles either way)
        x = np.array(
            [values[name] for values in rows for name in features], dtype=np.float64
        ).reshape(len(rows), len(features))
        weights = self._arrays[2]
        # `row.dot(weights)` is `row @ weights`: both call numpy's float64 dot function
        # (BLAS ddot) with the same two vectors in the same order, with less dispatch
        dots = np.array([row.dot(weights) for row in self._standardise(x)], dtype=np.float64)
        probabilities: list[float] = _sigmoid(dots + self.bias).tolist()
        return probabilities

    def accuracy(self, dataset: Dataset) -> float:
        """Share of rows whose label the model gets right (up when p >= 0.5)."""
        if len(dataset) == 0:
            raise ValueError("accuracy of an empty dataset")
        predicted = self.predict_proba(dataset.columns(self.features)) >= 0.5
        return float(np.mean(predicted == (dataset.y > 0.5)))

    def to_params(self) -> dict[str, Any]:
        """A plain JSON-able dict, the form stored in the model registry."""
        return {
            "model": MODEL_FAMILY,
            "features": list(self.features),
            "weights": list(self.weights),
            "bias": self.bias,
            "means": list(self.means),
            "stds": list(self.stds),
            "horizon": self.horizon,
        }

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> LogisticModel:
        """Rebuild a model from `to_params`' dict; ValueError when it is not one."""
        try:
            if params.get("model", MODEL_FAMILY) != MODEL_FAMILY:
                raise ValueError(f"not a {MODEL_FAMILY} model: {params.get('model')!r}")
            features = tuple(str(name) for name in params["features"])
            required_candles(features)
            model = cls(
                features,
                tuple(float(w) for w in params["weights"]),
                float(params["bias"]),
                tuple(float(m) for m in params["means"]),
                tuple(float(s) for s in params["stds"]),
                int(params["horizon"]),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed model parameters: {exc!r}") from exc
        sizes = {len(model.weights), len(model.means), len(model.stds)}
        if sizes != {len(features)} or not features:
            raise ValueError("weights, means and stds must have one entry per feature")
        if any(s <= 0.0 for s in model.stds) or model.horizon < 1:
            raise ValueError("stds must be positive and horizon at least 1")
        return model


def train(
    dataset: Dataset,
    seed: int,
    *,
    iterations: int = ITERATIONS,
    learning_rate: float = LEARNING_RATE,
    l2_penalty: float = L2_PENALTY,
) -> LogisticModel:
    """Fit by full-batch gradient descent on the mean log loss + l2_penalty/2 x |w|^2.

    Means and stds come from the training rows only. A feature whose spread is below
    `ROUNDING_SPREAD` of its magnitude does not vary (what is left is float rounding): it gets
    std 1, is then a constant 0 and contributes nothing.
    """
    if len(dataset) == 0:
        raise ValueError("cannot train on an empty dataset")
    x, y = dataset.x, dataset.y
    means: Array = np.asarray(x.mean(axis=0), dtype=np.float64)
    stds: Array = np.asarray(x.std(axis=0), dtype=np.float64)
    stds[stds <= ROUNDING_SPREAD * np.maximum(1.0, np.abs(means))] = 1.0
    z = (x - means) / stds
    rng = np.random.default_rng(seed)
    weights = np.asarray(rng.normal(0.0, INIT_SCALE, size=x.shape[1]), dtype=np.float64)
    bias = 0.0
    for _ in range(iterations):
        error = _sigmoid(z @ weights + bias) - y
        weights = weights - learning_rate * (z.T @ error / len(y) + l2_penalty * weights)
        bias -= learning_rate * float(np.mean(error))
    return LogisticModel(
        dataset.features,
        tuple(float(w) for w in weights),
        float(bias),
        tuple(float(m) for m in means),
        tuple(float(s) for s in stds),
        dataset.horizon,
    )
