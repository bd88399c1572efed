"""pytest fixtures for plugin authors, registered with aios through the `pytest11` entry point.

Installing aios makes them available in any test suite, with no conftest:

* `aios_clock`: a `aios.testing.Clock` at `aios.testing.T0`, moved only by the test;
* `aios_harness`: a factory, `aios_harness(plugins, policy=None, *, modes=None, stage=...)`,
  returning a `aios.testing.Harness` on that clock, closed at the end of the test;
* `aios_policy`: a factory, `aios_policy(plugins, overlay=None)`, the bundled default policy
  validated with these plugins' sections and metrics.

aios itself is imported only when a fixture is used, so pytest starts as fast without them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from aios.policy import Policy
    from aios.testing import Clock, Harness


@pytest.fixture
def aios_clock() -> Clock:
    """A controllable clock starting at aios.testing.T0."""
    from aios.testing import Clock

    return Clock()


@pytest.fixture
def aios_harness(aios_clock: Clock) -> Iterator[Callable[..., Harness]]:
    """Build a Harness over plugins (objects or classes); every one built is closed afterwards."""
    from aios.testing import Harness

    built: list[Harness] = []

    def make(plugins: Any, policy: Any = None, **options: Any) -> Harness:
        options.setdefault("clock", aios_clock)
        harness = Harness(plugins, policy, **options)
        built.append(harness)
        return harness

    yield make
    for harness in built:
        harness.close()


@pytest.fixture
def aios_policy() -> Callable[..., Policy]:
    """The default policy with these plugins' sections and metrics, plus an overlay (YAML)."""
    from aios.testing import policy_with_plugins

    return policy_with_plugins
