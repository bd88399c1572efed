"""A small base class for subsystem plugins (optional: any object with a `name` will do)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from aios.hookspecs import CONTRACT_VERSION
from aios.model import CycleContext


class Subsystem:
    """Base for the built-in subsystems; third parties may use it too.

    `name` is the plugin's name and its policy section (`subsystems.<name>`).
    """

    name: ClassVar[str] = ""
    aios_contract: ClassVar[str] = CONTRACT_VERSION

    def settings(self, ctx: CycleContext) -> Mapping[str, Any]:
        """This subsystem's policy section (schema defaults already filled in)."""
        return ctx.settings(self.name)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
