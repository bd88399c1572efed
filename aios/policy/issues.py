"""Located policy problems: every error says which file, line, column and key path.

A policy is only as safe as its error messages: an operator must be able to find and fix the
offending line without reading a traceback. Everything the loader rejects becomes an `Issue`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

PathElement = str | int
KeyPath = tuple[PathElement, ...]


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


class Location(NamedTuple):
    """Where a value came from: a file position, an environment variable or a schema default.

    A NamedTuple rather than a dataclass: one is made for every key and value of every policy
    file, and tuples are several times cheaper to create.
    """

    source: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        if self.line is None:
            return self.source
        if self.column is None:
            return f"{self.source}:{self.line}"
        return f"{self.source}:{self.line}:{self.column}"


def format_path(path: KeyPath) -> str:
    """Render a key path as `subsystems.position_intelligence.bands[2].min_pnl_pct`."""
    if not path:
        return "(root)"
    text = ""
    for element in path:
        if isinstance(element, int):
            text += f"[{element}]"
        elif text:
            text += f".{element}"
        else:
            text = str(element)
    return text


@dataclass(frozen=True)
class Issue:
    """One problem found in a policy, with the place it points at."""

    location: Location
    path: KeyPath
    message: str
    code: str
    severity: Severity = Severity.ERROR

    def __str__(self) -> str:
        marker = "" if self.severity is Severity.ERROR else "warning: "
        return f"{self.location}: {marker}{format_path(self.path)}: {self.message}"

    def to_dict(self) -> dict[str, object]:
        return {
            "source": self.location.source,
            "line": self.location.line,
            "column": self.location.column,
            "path": format_path(self.path),
            "message": self.message,
            "code": self.code,
            "severity": self.severity.value,
        }

    def sort_key(self) -> tuple[str, int, int, str]:
        return (
            self.location.source,
            self.location.line or 0,
            self.location.column or 0,
            format_path(self.path),
        )


@dataclass
class PolicyInvalid(Exception):
    """Raised when a policy cannot be used; carries every error found, not only the first."""

    issues: list[Issue] = field(default_factory=list)

    @property
    def errors(self) -> list[Issue]:
        return [issue for issue in self.issues if issue.severity is Severity.ERROR]

    def __str__(self) -> str:
        return "\n".join(str(issue) for issue in self.errors)


def did_you_mean(word: str, candidates: list[str] | tuple[str, ...] | set[str]) -> str:
    """A short suggestion for a misspelt key, enum value or metric name ('' when none is close)."""
    import difflib

    pool = sorted(candidates)
    matches = difflib.get_close_matches(word, pool, n=1, cutoff=0.6)
    if not matches:
        lowered = {c.lower(): c for c in pool}
        match = lowered.get(word.lower())
        matches = [match] if match else []
    return f"; did you mean '{matches[0]}'?" if matches else ""
