"""Small numeric helpers for the hot path (the `statistics` module computes with exact
fractions: correct, but about a hundred times slower than float arithmetic)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def population_stdev(values: Sequence[float]) -> float:
    """Population standard deviation, two-pass with compensated sums (0.0 for < 2 values)."""
    count = len(values)
    if count < 2:
        return 0.0
    mean = math.fsum(values) / count
    return math.sqrt(math.fsum((value - mean) ** 2 for value in values) / count)
