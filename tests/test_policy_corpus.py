"""The invalid-policy corpus: every file in tests/policy_corpus/invalid breaks a policy on purpose.

Each corpus file is an overlay merged over policies/default.yaml (so it holds only the keys that
break something), or, with a `# standalone` header line, a file loaded alone (an empty file, a
list at the top, a YAML syntax error...). Its header says, written by hand from reading the file,
which errors the loader must report:

    # expect: LINE:COL PATH: MESSAGE-SUBSTRING      (one line per error; `:COL` may be left out)
    # warning: LINE:COL PATH: MESSAGE-SUBSTRING     (expected warnings, the same way)
    # xfail: REASON                                 (a known loader bug this case shows)

Other comment lines (a description, `# regression: ...` notes on fixed bugs) are ignored.

The runner checks that the policy is refused; that no issue points outside the corpus file; that
the file's errors (and warnings) are exactly as many as expected; and that each expectation
matches a distinct issue with that line (and column), that exact key path and a message
containing the substring.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from aios.policy import Issue, PolicyInvalid, Severity, format_path, load_policy

REPO = Path(__file__).resolve().parent.parent
DEFAULT = REPO / "policies" / "default.yaml"
CORPUS = Path(__file__).resolve().parent / "policy_corpus" / "invalid"
MIN_CASES = 45

CASE_NAME = re.compile(r"^(\d{2})-[a-z0-9]+(?:-[a-z0-9]+)*\.yaml$")
EXPECTATION = re.compile(r"^# (expect|warning): (\d+)(?::(\d+))? (\S+): (.+?)\s*$")


@dataclass(frozen=True)
class Expected:
    """One issue a corpus file's header announces."""

    severity: Severity
    line: int
    column: int | None
    path: str
    message: str

    def matches(self, issue: Issue) -> bool:
        return (
            issue.severity is self.severity
            and issue.location.line == self.line
            and (self.column is None or issue.location.column == self.column)
            and format_path(issue.path) == self.path
            and self.message in issue.message
        )

    def __str__(self) -> str:
        where = f"{self.line}" if self.column is None else f"{self.line}:{self.column}"
        return f"{self.severity.value} at {where} {self.path}: ...{self.message}..."


@dataclass(frozen=True)
class Case:
    """A corpus file and what its header says about it."""

    path: Path
    standalone: bool
    xfail: str | None
    expected: tuple[Expected, ...]

    @property
    def files(self) -> list[str]:
        own = str(self.path)
        return [own] if self.standalone else [str(DEFAULT), own]


def read_case(path: Path) -> Case:
    """Parse the leading comment lines of a corpus file."""
    standalone = False
    xfail: str | None = None
    expected: list[Expected] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        if line.strip() == "# standalone":
            standalone = True
            continue
        if line.startswith("# xfail:"):
            xfail = line.removeprefix("# xfail:").strip()
            continue
        match = EXPECTATION.match(line)
        if match is None:
            if line.startswith(("# expect", "# warning")):
                raise ValueError(f"{path.name}: malformed header line {line!r}")
            continue
        kind, line_number, column, key_path, message = match.groups()
        expected.append(
            Expected(
                Severity.ERROR if kind == "expect" else Severity.WARNING,
                int(line_number),
                int(column) if column is not None else None,
                key_path,
                message,
            )
        )
    return Case(path, standalone, xfail, tuple(expected))


CASE_FILES = sorted(CORPUS.glob("*.yaml"))
CASES = [read_case(path) for path in CASE_FILES]


def _param(case: Case) -> object:
    marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail is not None else []
    return pytest.param(case, id=case.path.stem, marks=marks)


def refusal(case: Case) -> PolicyInvalid:
    """Load the case; it must be refused with PolicyInvalid (anything else fails the test)."""
    try:
        load_policy(case.files, env={})
    except PolicyInvalid as exc:
        return exc
    pytest.fail(f"{case.path.name} was accepted as a valid policy")


@pytest.mark.parametrize("case", [_param(case) for case in CASES])
def test_invalid_policy_is_refused_with_located_errors(case: Case) -> None:
    caught = refusal(case)
    source = str(case.path)
    report = "\n".join(str(issue) for issue in caught.issues) or "(no issues)"
    assert caught.errors, f"refused without any error:\n{report}"
    elsewhere = [issue for issue in caught.issues if issue.location.source != source]
    assert not elsewhere, f"issues located outside {case.path.name}:\n{report}"
    for severity in Severity:
        found = [issue for issue in caught.issues if issue.severity is severity]
        wanted = [expected for expected in case.expected if expected.severity is severity]
        assert len(found) == len(wanted), (
            f"{len(found)} {severity.value}(s) reported, {len(wanted)} expected:\n{report}"
        )
        unmatched = list(found)
        for expected in wanted:
            match = next((issue for issue in unmatched if expected.matches(issue)), None)
            assert match is not None, f"nothing matches {expected}; the loader said:\n{report}"
            unmatched.remove(match)


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= MIN_CASES


def test_corpus_files_are_numbered_once_and_named_in_kebab_case() -> None:
    numbers: list[str] = []
    for path in CASE_FILES:
        match = CASE_NAME.match(path.name)
        assert match is not None, f"{path.name} is not NN-short-name.yaml"
        numbers.append(match.group(1))
    assert len(numbers) == len(set(numbers)), "two corpus files share a number"


@pytest.mark.parametrize("case", CASES, ids=[case.path.stem for case in CASES])
def test_every_case_expects_at_least_one_error(case: Case) -> None:
    assert any(expected.severity is Severity.ERROR for expected in case.expected)


def test_the_header_parser_reads_every_field(tmp_path: Path) -> None:
    path = tmp_path / "01-sample.yaml"
    path.write_text(
        "# standalone\n"
        "# xfail: a reason\n"
        "# expect: 3:5 a.b[0]: some: message with colons\n"
        "# warning: 7 (root): a warning\n"
        "# free text\n"
        "a: 1\n"
        "# expect: 9:9 ignored: after the header\n",
        encoding="utf-8",
    )
    case = read_case(path)
    assert case.standalone and case.xfail == "a reason"
    assert case.expected == (
        Expected(Severity.ERROR, 3, 5, "a.b[0]", "some: message with colons"),
        Expected(Severity.WARNING, 7, None, "(root)", "a warning"),
    )


def test_a_malformed_header_line_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "01-bad.yaml"
    path.write_text("# expect: line 3 a.b: message\na: 1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="malformed header line"):
        read_case(path)


def test_an_overlay_replaces_a_structured_condition(
    overlay: Callable[[str], list[Path]],
) -> None:
    # Regression: a structured condition used to be deep-merged into the base file's condition,
    # so switching `any` to `all` gave {any, all} and an error located in default.yaml.
    paths = overlay(
        "directives:\n"
        "  DEFENSIVE_EXIT:\n"
        "    trigger:\n"
        "      all:\n"
        '        - {metric: drawdown_pct, op: ">=", value: 20}\n'
    )
    policy = load_policy(paths, env={})
    trigger = policy.condition("directives", "DEFENSIVE_EXIT", "trigger")
    assert trigger.evaluate({"drawdown_pct": 15.0, "critical_subsystems": 1.0}) is False
