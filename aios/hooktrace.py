"""Seeing what plugins do: `AIOS_TRACE=1` logs every hook call, `aios run --profile-hooks` times them.

Both are observers of `aios.registry.call_each`, the one place every hook implementation is
called (the engine calls implementations one at a time for isolation, so pluggy's own
`add_hookcall_monitoring` and `wrapper=True` implementations never see these calls: they only
wrap `pm.hook.<name>(...)`, which aios does not use). With no observer installed, `call_each`
pays one truth test per hook call; bench/run.py measures it (`hooks.trace_off_overhead_pct`).
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass
from enum import Enum
from typing import Any

from aios.registry import HookCall

LOGGER_NAME = "aios.trace"
SUMMARY_LIMIT = 160


def _short(value: Any) -> str:
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if is_dataclass(value) and not isinstance(value, type):
        return type(value).__name__
    if isinstance(value, Mapping):
        return f"{{{len(value)} keys}}"
    if isinstance(value, (list, tuple, frozenset, set)):
        items = sorted(value, key=str) if isinstance(value, (frozenset, set)) else list(value)
        if len(items) <= 4 and all(isinstance(v, (str, Enum, int, float)) for v in items):
            return f"[{', '.join(_short(v) for v in items)}]"
        return f"[{len(items)} items]"
    return repr(value)


def summarize(value: Any) -> str:
    """A one-line summary of a hook's answer: its type and its scalar fields, bounded in length.

    Proposals are frozen records of numbers, enums and short texts (never credentials: plugins
    are not given any), so the summary shows what decided without dumping nested data."""
    if value is None:
        return "None"
    if is_dataclass(value) and not isinstance(value, type):
        parts = []
        for item in fields(value):
            field_value = getattr(value, item.name)
            if field_value is None or field_value == () or field_value == {}:
                continue
            parts.append(f"{item.name}={_short(field_value)}")
        text = f"{type(value).__name__}({', '.join(parts)})"
    elif isinstance(value, Mapping):
        items = ", ".join(f"{k}={_short(v)}" for k, v in list(value.items())[:8])
        more = ", ..." if len(value) > 8 else ""
        text = f"{{{items}{more}}}"
    elif isinstance(value, Sequence) and not isinstance(value, str):
        if not value:
            text = "[]"
        elif len(value) == 1:
            text = f"[{summarize(value[0])}]"
        else:
            kinds = sorted({type(v).__name__ for v in value})
            text = f"{len(value)} x {'/'.join(kinds)}"
    else:
        text = _short(value)
    return text if len(text) <= SUMMARY_LIMIT else text[: SUMMARY_LIMIT - 3] + "..."


def _where(kwargs: Mapping[str, Any]) -> str:
    """Cycle and market time of the call, when it has a cycle context."""
    ctx = kwargs.get("ctx")
    cycle = getattr(ctx, "cycle", None)
    now = getattr(ctx, "now", None)
    if cycle is None or now is None:
        return "load"
    subject = ""
    if "symbol" in kwargs:
        subject = f" {kwargs['symbol']}"
    elif "signal" in kwargs:
        subject = f" signal:{getattr(kwargs['signal'], 'id', '?')}"
    elif "intent" in kwargs:
        subject = f" signal:{getattr(getattr(kwargs['intent'], 'signal', None), 'id', '?')}"
    elif "position" in kwargs:
        subject = f" position:{getattr(kwargs['position'], 'id', '?')}"
    elif "trade" in kwargs:
        subject = f" position:{getattr(kwargs['trade'], 'position_id', '?')}"
    return f"cycle {cycle} {now.isoformat()}{subject}"


class TraceLogger:
    """Logs one line per implementation call on the `aios.trace` logger (INFO):

    `cycle 12 2018-01-10T06:00:00+00:00 spike_guard.aios_filter_entry 14.2us -> EntryVerdict(...)`
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger(LOGGER_NAME)

    @classmethod
    def to_stderr(cls) -> TraceLogger:
        """The tracer `AIOS_TRACE=1` installs: to stderr unless logging is configured for it."""
        logger = logging.getLogger(LOGGER_NAME)
        logger.setLevel(logging.INFO)
        if not logger.handlers:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("aios trace: %(message)s"))
            logger.addHandler(handler)
        return cls(logger)

    def __call__(self, call: HookCall) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        outcome = f"raised {call.error}" if call.error is not None else summarize(call.value)
        self.logger.info(
            "%s %s.%s %.1fus -> %s",
            _where(call.kwargs),
            call.plugin,
            call.hook,
            call.seconds * 1e6,
            outcome,
        )


@dataclass
class HookTiming:
    calls: int = 0
    errors: int = 0
    seconds: float = 0.0
    slowest: float = 0.0


class HookProfile:
    """Time spent per plugin and hook, accumulated over a run (`aios run --profile-hooks`)."""

    def __init__(self) -> None:
        self.timings: dict[tuple[str, str], HookTiming] = {}
        self._lock = threading.Lock()  # the reload watcher thread loads plugins' declarations

    def __call__(self, call: HookCall) -> None:
        with self._lock:
            timing = self.timings.get((call.plugin, call.hook))
            if timing is None:
                timing = self.timings[(call.plugin, call.hook)] = HookTiming()
            timing.calls += 1
            timing.seconds += call.seconds
            timing.slowest = max(timing.slowest, call.seconds)
            if call.error is not None:
                timing.errors += 1

    def per_plugin(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for (plugin, _), timing in self.timings.items():
            totals[plugin] = totals.get(plugin, 0.0) + timing.seconds
        return dict(sorted(totals.items(), key=lambda kv: -kv[1]))

    def to_dict(self) -> dict[str, Any]:
        return {
            "total_s": sum(t.seconds for t in self.timings.values()),
            "plugins": self.per_plugin(),
            "hooks": [
                {
                    "plugin": plugin,
                    "hook": hook,
                    "calls": t.calls,
                    "errors": t.errors,
                    "seconds": t.seconds,
                    "slowest_s": t.slowest,
                }
                for (plugin, hook), t in self._ranked()
            ],
        }

    def _ranked(self) -> list[tuple[tuple[str, str], HookTiming]]:
        return sorted(self.timings.items(), key=lambda kv: (-kv[1].seconds, kv[0]))

    def render(self) -> str:
        """A table, slowest first: plugin, hook, calls, total ms, mean and slowest us, share."""
        total = sum(t.seconds for t in self.timings.values())
        if not self.timings:
            return "hook profile: no hook implementation was called\n"
        header = ("plugin", "hook", "calls", "errors", "total ms", "mean us", "max us", "share")
        rows = [
            (
                plugin,
                hook,
                str(t.calls),
                str(t.errors),
                f"{t.seconds * 1e3:.2f}",
                f"{t.seconds / t.calls * 1e6:.1f}",
                f"{t.slowest * 1e6:.1f}",
                f"{t.seconds / total:.1%}" if total > 0 else "-",
            )
            for (plugin, hook), t in self._ranked()
        ]
        widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
        left = {0, 1}

        def line(cells: Sequence[str]) -> str:
            return "  ".join(
                cell.ljust(widths[i]) if i in left else cell.rjust(widths[i])
                for i, cell in enumerate(cells)
            ).rstrip()

        out = [f"hook profile: {total * 1e3:.2f} ms in plugin code", line(header)]
        out.append(line(["-" * w for w in widths]))
        out.extend(line(row) for row in rows)
        out.append(
            "per plugin: "
            + ", ".join(f"{p} {s * 1e3:.2f} ms" for p, s in self.per_plugin().items())
        )
        return "\n".join(out) + "\n"


def profile_until_close(ctx: Any, stream: Any = None) -> HookProfile:
    """Profile every hook call until the CLI command's context closes, then print the table.

    Used by `aios run --profile-hooks`; printed to stderr so `--json -` stays parseable."""
    from aios import registry

    profile = HookProfile()
    observation = registry.observing(profile)
    observation.__enter__()

    def report() -> None:
        observation.__exit__(None, None, None)
        (stream or sys.stderr).write(profile.render())

    ctx.call_on_close(report)
    return profile
