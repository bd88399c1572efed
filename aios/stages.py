"""The integration stage: a guarded, persisted state machine (OBSERVATION, ADVISORY, AUTONOMY).

Moving the stage is the most consequential thing an operator does, so:

* only this machine moves it (a policy edit, an environment variable or a hot reload never does;
  `stages.initial` is read once, when a fresh store is created);
* promotion goes one step at a time through guards read from the policy and measured on the
  evidence the runtime recorded (time in stage, decisions, shadow trades, shadow drawdown, shadow
  against actual PnL, directives, health, policy changes); skipping ADVISORY needs
  `stages.allow_skip`;
* demotion is always allowed, and automatic on EMERGENCY_SHUTDOWN and on a CRITICAL risk mode;
* the stage, its history and the evidence of every move are written in one SQLite transaction;
  two processes moving it at once: exactly one succeeds, the other is refused.

Built on `transitions` (guards are its `conditions`; `may_<trigger>` answers a dry run). The
machine is rebuilt from the stored stage for each operation, so a restart fires no side effect.
"""

from __future__ import annotations

import getpass
import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from transitions import Machine

from aios.journal import OPERATOR_RUN_ID
from aios.model import Stage
from aios.policy import Policy

ORDER = {Stage.OBSERVATION: 0, Stage.ADVISORY: 1, Stage.AUTONOMY: 2}

_DDL = """
CREATE TABLE IF NOT EXISTS stage_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    stage TEXT NOT NULL,
    since TEXT NOT NULL,
    version INTEGER NOT NULL,
    decisions_mark INTEGER NOT NULL,
    fills_mark INTEGER NOT NULL,
    equity_mark INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS stage_history (
    id INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    from_stage TEXT,
    to_stage TEXT NOT NULL,
    trigger TEXT NOT NULL,
    automatic INTEGER NOT NULL,
    who TEXT NOT NULL,
    reason TEXT NOT NULL,
    policy_hash TEXT NOT NULL,
    evidence TEXT NOT NULL
);
"""


class StageError(Exception):
    """No store, a locked or corrupt store, or a refused move; the message says which."""


@dataclass(frozen=True)
class Evidence:
    """What the guards read: counts and curves since the current stage began; directives and
    health as the latest engine run left them (`StageStore.evidence`)."""

    time_in_stage_s: float
    decisions: int
    shadow_trades: int
    shadow_drawdown_pct: float
    shadow_pnl_pct: float
    actual_pnl_pct: float
    active_directives: tuple[str, ...]
    critical_components: tuple[str, ...]
    time_since_policy_change_s: float


@dataclass(frozen=True)
class GuardCheck:
    name: str
    required: str
    actual: str
    passed: bool


@dataclass(frozen=True)
class StageRecord:
    stage: Stage
    since: datetime
    version: int


def check_guards(guards: Mapping[str, Any], evidence: Evidence) -> list[GuardCheck]:
    """Every guard the policy sets for a step, with the required and the actual value."""
    checks: list[GuardCheck] = []

    def at_least(name: str, actual: float, unit: str = "") -> None:
        if name in guards:
            required = float(guards[name])
            checks.append(
                GuardCheck(name, f">= {required:g}{unit}", f"{actual:g}{unit}", actual >= required)
            )

    def at_most(name: str, actual: float, unit: str = "") -> None:
        if name in guards:
            required = float(guards[name])
            checks.append(
                GuardCheck(
                    name, f"<= {required:g}{unit}", f"{actual:.4g}{unit}", actual <= required
                )
            )

    at_least("min_time_in_stage_s", evidence.time_in_stage_s, " s")
    at_least("min_decisions", evidence.decisions)
    at_least("min_shadow_trades", evidence.shadow_trades)
    at_most("max_shadow_drawdown_pct", evidence.shadow_drawdown_pct, " %")
    at_most(
        "max_shadow_underperformance_pct", evidence.actual_pnl_pct - evidence.shadow_pnl_pct, " pp"
    )
    if guards.get("require_no_active_directive"):
        active = ", ".join(evidence.active_directives) or "none"
        checks.append(
            GuardCheck(
                "require_no_active_directive", "none active", active, not evidence.active_directives
            )
        )
    if guards.get("require_no_critical_health"):
        critical = ", ".join(evidence.critical_components) or "none"
        checks.append(
            GuardCheck(
                "require_no_critical_health",
                "none critical",
                critical,
                not evidence.critical_components,
            )
        )
    at_least("min_time_since_policy_change_s", evidence.time_since_policy_change_s, " s")
    return checks


class _StageModel:
    """The object `transitions` drives: it holds only `state` (no method can clash with a trigger)."""

    state: str


def build_machine(
    stage: Stage, allow_skip: bool, guards_pass: Callable[[Stage], bool]
) -> tuple[_StageModel, Machine]:
    """The stage machine, starting (without entering: no side effects) at the stored stage."""
    model = _StageModel()
    machine = Machine(
        model=model,
        states=[s.value for s in Stage],
        initial=stage.value,
        auto_transitions=False,
        send_event=False,
    )
    machine.add_transition(
        "promote",
        Stage.OBSERVATION.value,
        Stage.ADVISORY.value,
        conditions=[lambda: guards_pass(Stage.ADVISORY)],
    )
    machine.add_transition(
        "promote",
        Stage.ADVISORY.value,
        Stage.AUTONOMY.value,
        conditions=[lambda: guards_pass(Stage.AUTONOMY)],
    )
    machine.add_transition(
        "skip_to_autonomy",
        Stage.OBSERVATION.value,
        Stage.AUTONOMY.value,
        conditions=[
            lambda: allow_skip,
            lambda: guards_pass(Stage.ADVISORY),
            lambda: guards_pass(Stage.AUTONOMY),
        ],
    )
    machine.add_transition(
        "demote_to_observation",
        [Stage.ADVISORY.value, Stage.AUTONOMY.value],
        Stage.OBSERVATION.value,
    )
    machine.add_transition("demote_to_advisory", Stage.AUTONOMY.value, Stage.ADVISORY.value)
    return model, machine


def guards_for(policy: Policy, target: Stage) -> Mapping[str, Any]:
    key = "to_advisory" if target is Stage.ADVISORY else "to_autonomy"
    guards = policy.get("stages", "promotion", key, default={})
    return guards if isinstance(guards, Mapping) else {}


_SQLITE_HEADER = b"SQLite format 3\x00"


def _refuse_foreign_file(path: Path) -> None:
    """SQLite takes a short non-database file for an empty database and writes its tables over
    it: a file that is neither empty nor SQLite is refused, and left as it is."""
    try:
        with path.open("rb") as file:
            head = file.read(len(_SQLITE_HEADER))
    except OSError as exc:
        raise StageError(f"cannot read the state store {path}: {exc.strerror or exc}") from None
    if head and head != _SQLITE_HEADER:
        raise StageError(
            f"cannot use {path} as a state store: not an SQLite database (the file is left untouched)"
        )


class StageStore:
    """The stage and its history in the state database."""

    def __init__(
        self,
        path: Path,
        *,
        create: bool,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        timeout_s: float = 5.0,
    ) -> None:
        self.path = path
        self.clock = clock
        if not create and not path.exists():
            raise StageError(f"no state store at {path}: run `aios run` first, or pass --state-dir")
        if path.exists():
            _refuse_foreign_file(path)
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.connection = sqlite3.connect(str(path), isolation_level=None, timeout=timeout_s)
            self.connection.execute("PRAGMA journal_mode=WAL")
            self.connection.executescript(_DDL)
        except sqlite3.OperationalError as exc:
            raise StageError(
                f"the state store {path} is locked by another process ({exc}); try again"
            ) from None
        except sqlite3.DatabaseError as exc:
            raise StageError(
                f"cannot use {path} as a state store: {exc} (the file is left untouched)"
            ) from None

    def close(self) -> None:
        self.connection.close()

    # --- reading -------------------------------------------------------------------------------

    def current(self) -> StageRecord | None:
        row = self.connection.execute(
            "SELECT stage, since, version FROM stage_state WHERE id = 1"
        ).fetchone()
        return (
            None
            if row is None
            else StageRecord(Stage(row[0]), datetime.fromisoformat(row[1]), int(row[2]))
        )

    def ensure(self, policy: Policy) -> Stage:
        """The stored stage; a fresh store starts at `stages.initial` (the only time it is read)."""
        record = self.current()
        if record is not None:
            return record.stage
        initial = Stage(str(policy.get("stages", "initial", default="OBSERVATION")))
        now = self.clock()
        try:
            self.connection.execute("BEGIN IMMEDIATE")
            if self.current() is None:
                marks = self._marks()
                self.connection.execute(
                    "INSERT INTO stage_state VALUES (1, ?, ?, 1, ?, ?, ?)",
                    (initial.value, now.isoformat(), *marks),
                )
                self.connection.execute(
                    "INSERT INTO stage_history (time, from_stage, to_stage, trigger, automatic, who, reason, policy_hash, evidence) VALUES (?, NULL, ?, 'create', 0, ?, ?, ?, '{}')",
                    (
                        now.isoformat(),
                        initial.value,
                        _who(),
                        "fresh state store: stages.initial",
                        policy.hash,
                    ),
                )
            self.connection.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            self._rollback()
            raise StageError(
                f"the state store {self.path} is locked by another process ({exc}); try again"
            ) from None
        record = self.current()
        assert record is not None
        return record.stage

    def history(self) -> list[dict[str, Any]]:
        rows = self.connection.execute(
            "SELECT time, from_stage, to_stage, trigger, automatic, who, reason, policy_hash, evidence FROM stage_history ORDER BY id"
        ).fetchall()
        keys = (
            "time",
            "from",
            "to",
            "trigger",
            "automatic",
            "who",
            "reason",
            "policy_hash",
            "evidence",
        )
        return [
            {
                **dict(zip(keys, row, strict=True)),
                "automatic": bool(row[4]),
                "evidence": json.loads(row[8]),
            }
            for row in rows
        ]

    def _table_exists(self, name: str) -> bool:
        return table_exists(self.connection, name)

    def _marks(self) -> tuple[int, int, int]:
        """Where the evidence of a new stage starts: the newest row ids of the runtime's tables."""
        marks = []
        for table in ("decisions", "fills", "equity"):
            if self._table_exists(table):
                marks.append(
                    int(
                        self.connection.execute(
                            f"SELECT COALESCE(MAX(rowid), 0) FROM {table}"
                        ).fetchone()[0]
                    )
                )
            else:
                marks.append(0)
        return marks[0], marks[1], marks[2]

    def evidence(self, policy: Policy) -> Evidence:
        """What the guards read. Counts and curves (decisions, shadow trades, drawdown, PnL)
        are measured since the current stage began: rows after the stage's marks.

        Directives and health are the state *now*, not a history: as the most recent engine
        run (`latest_engine_run`; never the operator's rows) left them, whatever earlier runs
        did. A component CRITICAL in an old run that the latest one does not have (a removed
        plugin, a past live run's exchange, a symbol no longer traded) blocks nothing; one
        CRITICAL in the latest run is not hidden by an older run's recovery. Health rows are
        edge-triggered (a component's status is journaled when it changes, and each run
        journals every component's first status), so the fold covers the whole latest run,
        rows before the stage's mark included: a component that turned CRITICAL before a
        promotion mid-run, and never recovered, is CRITICAL still. Between runs the state is
        the one the last run ended in. Read over that run's row ids only (`runs.decisions_from`),
        not the whole journal."""
        row = self.connection.execute(
            "SELECT since, decisions_mark, fills_mark, equity_mark FROM stage_state WHERE id = 1"
        ).fetchone()
        if row is None:
            raise StageError(f"the state store {self.path} has no stage yet: run `aios run` first")
        since, decisions_mark, fills_mark, equity_mark = row
        now = self.clock()
        decisions = trades = 0
        active: tuple[str, ...] = ()
        critical: list[str] = []
        if self._table_exists("decisions"):
            decisions = int(
                self.connection.execute(
                    "SELECT COUNT(*) FROM decisions WHERE rowid > ? AND run_id != ?",
                    (decisions_mark, OPERATOR_RUN_ID),
                ).fetchone()[0]
            )
            run = latest_engine_run(self.connection)
            if run is not None:
                active = tuple(directives_in_force(self.connection, *run, proposed=True))
                critical = sorted(
                    name
                    for name, status in health_states(self.connection, *run).items()
                    if isinstance(status, int) and status >= 2
                )
        if self._table_exists("fills"):
            trades = int(
                self.connection.execute(
                    "SELECT COUNT(DISTINCT run_id || position_id) FROM fills WHERE rowid > ? AND book = 'shadow' AND kind IN ('CLOSE', 'STOP_LOSS', 'TAKE_PROFIT', 'TRAILING_STOP')",
                    (fills_mark,),
                ).fetchone()[0]
            )
        drawdown, shadow_pnl, actual_pnl = self._equity_figures(equity_mark)
        return Evidence(
            time_in_stage_s=(now - datetime.fromisoformat(since)).total_seconds(),
            decisions=decisions,
            shadow_trades=trades,
            shadow_drawdown_pct=drawdown,
            shadow_pnl_pct=shadow_pnl,
            actual_pnl_pct=actual_pnl,
            active_directives=active,
            critical_components=tuple(critical),
            time_since_policy_change_s=(now - self._policy_changed_at(policy)).total_seconds(),
        )

    def _equity_figures(self, mark: int) -> tuple[float, float, float]:
        """Worst shadow drawdown of any run, and summed per-run PnL % of each book."""
        if not self._table_exists("equity"):
            return 0.0, 0.0, 0.0
        curves: dict[tuple[str, str], list[float]] = {}
        for run_id, book, equity in self.connection.execute(
            "SELECT run_id, book, equity FROM equity WHERE rowid > ? ORDER BY rowid", (mark,)
        ):
            curves.setdefault((run_id, book), []).append(float(equity))
        drawdown = 0.0
        pnl = {"actual": 0.0, "shadow": 0.0}
        for (_, book), curve in curves.items():
            if book not in pnl or not curve or curve[0] <= 0:
                continue
            pnl[book] += (curve[-1] - curve[0]) / curve[0] * 100.0
            if book == "shadow":
                peak = curve[0]
                for value in curve:
                    peak = max(peak, value)
                    drawdown = max(drawdown, (peak - value) / peak * 100.0 if peak > 0 else 0.0)
        return drawdown, pnl["shadow"], pnl["actual"]

    def _policy_changed_at(self, policy: Policy) -> datetime:
        """When the policy now in force (by hash) took over: the first run or reload with it
        after a run or reload with another one; the store's creation when it never changed."""
        events: list[tuple[str, str]] = []
        if self._table_exists("runs"):
            events.extend(
                (str(t), str(h))
                for t, h in self.connection.execute(
                    "SELECT started_at, policy_hash FROM runs ORDER BY rowid"
                )
            )
        created = self.connection.execute(
            "SELECT time FROM stage_history ORDER BY id LIMIT 1"
        ).fetchone()
        changed = datetime.fromisoformat(created[0]) if created else self.clock()
        previous: str | None = None
        for time, policy_hash in events:
            if previous is not None and policy_hash != previous and policy_hash == policy.hash:
                changed = max(changed, _wall(time, changed))
            previous = policy_hash
        if previous is not None and previous != policy.hash:
            changed = self.clock()  # the policy in force now has not run yet
        return changed

    # --- moving --------------------------------------------------------------------------------

    def status(self, policy: Policy) -> dict[str, Any]:
        """The stage, since when, and every guard of the next step with its values."""
        record = self.current()
        if record is None:
            raise StageError(f"the state store {self.path} has no stage yet: run `aios run` first")
        evidence = self.evidence(policy)
        following = {Stage.OBSERVATION: Stage.ADVISORY, Stage.ADVISORY: Stage.AUTONOMY}.get(
            record.stage
        )
        checks = [] if following is None else check_guards(guards_for(policy, following), evidence)
        return {
            "stage": record.stage.value,
            "since": record.since.isoformat(),
            "next": None if following is None else following.value,
            "guards": [asdict(c) for c in checks],
            "promotable": following is not None and all(c.passed for c in checks),
            "evidence": asdict(evidence),
        }

    def promote(
        self,
        policy: Policy,
        reason: str,
        *,
        expected: Stage | None = None,
        dry_run: bool = False,
        to: Stage | None = None,
    ) -> dict[str, Any]:
        """One step up (or to AUTONOMY from OBSERVATION when `to` says so and the policy allows
        skipping). Refused, with every failing guard, unless they all pass."""
        return self._move(
            policy,
            reason,
            expected=expected,
            dry_run=dry_run,
            target=to,
            demotion=False,
            automatic=False,
        )

    def demote(
        self,
        policy: Policy,
        to: Stage,
        reason: str,
        *,
        automatic: bool = False,
        expected: Stage | None = None,
    ) -> dict[str, Any]:
        """Down to `to`: always allowed (a no-op refusal when already there or below)."""
        return self._move(
            policy,
            reason,
            expected=expected,
            dry_run=False,
            target=to,
            demotion=True,
            automatic=automatic,
        )

    def _move(
        self,
        policy: Policy,
        reason: str,
        *,
        expected: Stage | None,
        dry_run: bool,
        target: Stage | None,
        demotion: bool,
        automatic: bool,
    ) -> dict[str, Any]:
        if not reason.strip():
            raise StageError("a reason is required")
        try:
            self.connection.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise StageError(
                f"the state store {self.path} is locked by another process ({exc}); try again"
            ) from None
        try:
            record = self.current()
            if record is None:
                raise StageError(
                    f"the state store {self.path} has no stage yet: run `aios run` first"
                )
            if expected is not None and record.stage is not expected:
                last = self.history()[-1]
                raise StageError(
                    f"the stage changed to {record.stage.value} while this command ran ({last['trigger']} by {last['who']} at {last['time']}); "
                    "check `aios stage status` and try again"
                )
            evidence = self.evidence(policy)
            failing: dict[Stage, list[GuardCheck]] = {}

            def guards_pass(step: Stage) -> bool:
                checks = check_guards(guards_for(policy, step), evidence)
                failing[step] = [c for c in checks if not c.passed]
                return not failing[step]

            model, _ = build_machine(
                record.stage, bool(policy.get("stages", "allow_skip", default=False)), guards_pass
            )
            if demotion:
                assert target is not None
                if ORDER[target] >= ORDER[record.stage]:
                    raise StageError(
                        f"the stage is {record.stage.value}; {target.value} is not below it"
                    )
                trigger = f"demote_to_{target.value.lower()}"
            elif target is Stage.AUTONOMY and record.stage is Stage.OBSERVATION:
                if not policy.get("stages", "allow_skip", default=False):
                    raise StageError(
                        "skipping ADVISORY (OBSERVATION -> AUTONOMY) is refused: the policy's stages.allow_skip is false"
                    )
                trigger = "skip_to_autonomy"
            else:
                if record.stage is Stage.AUTONOMY:
                    raise StageError("the stage is already AUTONOMY, the highest")
                trigger = "promote"
            if dry_run:
                allowed = bool(getattr(model, f"may_{trigger}")())
                self._rollback()
                return self._result(
                    record.stage, record.stage, allowed, failing, evidence, dry_run=True
                )
            moved = bool(getattr(model, trigger)())
            if not moved:
                self._rollback()
                return self._result(record.stage, record.stage, False, failing, evidence)
            new_stage = Stage(model.state)
            now = self.clock()
            marks = self._marks()
            updated = self.connection.execute(
                "UPDATE stage_state SET stage = ?, since = ?, version = version + 1, decisions_mark = ?, fills_mark = ?, equity_mark = ? WHERE id = 1 AND version = ?",
                (new_stage.value, now.isoformat(), *marks, record.version),
            ).rowcount
            if updated != 1:
                raise StageError(
                    "the stage was moved by another process; check `aios stage status` and try again"
                )
            self.connection.execute(
                "INSERT INTO stage_history (time, from_stage, to_stage, trigger, automatic, who, reason, policy_hash, evidence) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    now.isoformat(),
                    record.stage.value,
                    new_stage.value,
                    trigger,
                    int(automatic),
                    "aios (automatic)" if automatic else _who(),
                    reason,
                    policy.hash,
                    json.dumps(asdict(evidence)),
                ),
            )
            self.connection.execute("COMMIT")
            return self._result(record.stage, new_stage, True, failing, evidence)
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        if self.connection.in_transaction:
            self.connection.execute("ROLLBACK")

    @staticmethod
    def _result(
        before: Stage,
        after: Stage,
        ok: bool,
        failing: Mapping[Stage, Sequence[GuardCheck]],
        evidence: Evidence,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        return {
            "from": before.value,
            "to": after.value,
            "moved": ok and not dry_run and before is not after,
            "allowed": ok,
            "dry_run": dry_run,
            "failing": [asdict(c) for checks in failing.values() for c in checks],
            "evidence": asdict(evidence),
        }


def table_exists(connection: sqlite3.Connection, name: str) -> bool:
    """Whether the store has this table yet (a store gains tables as runs and stages use it)."""
    return (
        connection.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ).fetchone()
        is not None
    )


def run_rows_from(connection: sqlite3.Connection, run_id: str) -> int:
    """The row id every journal row of `run_id` lies above: the run's `decisions_from`, or
    0 (the whole journal) for a run recorded before that column, or none recorded at all."""
    try:
        row = connection.execute(
            "SELECT decisions_from FROM runs WHERE run_id = ?", (run_id,)
        ).fetchone()
    except sqlite3.OperationalError:  # no runs table, or one from before the column
        return 0
    return 0 if row is None or row[0] is None else int(row[0])


def latest_engine_run(connection: sqlite3.Connection) -> tuple[str, int] | None:
    """The engine run that journaled last, and where its rows start (`run_rows_from`).

    By the journal, not by the `runs` table: a resumed run journals after runs started later.
    The operator's rows (`OPERATOR_RUN_ID`) are a person's decisions between runs, not a run:
    they never stand for the engine's state. Read from the newest row back, so cheap."""
    row = connection.execute(
        "SELECT run_id FROM decisions WHERE run_id != ? ORDER BY rowid DESC LIMIT 1",
        (OPERATOR_RUN_ID,),
    ).fetchone()
    if row is None:
        return None
    run_id = str(row[0])
    return run_id, run_rows_from(connection, run_id)


def directives_in_force(
    connection: sqlite3.Connection, run_id: str, start: int, *, proposed: bool
) -> list[str]:
    """The directives as the run's latest directive decision left them (none: it never set
    any, and a run starts with none). A row of a self-healing that raised (`error`) decides
    nothing and does not clear them.

    `proposed`: every directive self-healing asks for, in whatever mode it runs (the guards'
    reading: the shadow book's directives, like the shadow figures the guards judge; in
    OBSERVATION self-healing is never applied, and a guard reading only applied rows would
    never see one). Otherwise what is in force on the actual book (`aios status`): an applied
    decision's directives, or of an advisory or observed one only its EMERGENCY_SHUTDOWN,
    which is enforced whatever the mode by default."""
    latest = connection.execute(
        "SELECT proposal, outcome FROM decisions WHERE rowid > ? AND run_id = ?"
        " AND hook = 'aios_directives' AND outcome != 'error' ORDER BY rowid DESC LIMIT 1",
        (start, run_id),
    ).fetchone()
    if latest is None:
        return []
    active = [str(d) for d in json.loads(latest[0]).get("active", [])]
    if proposed or latest[1] == "applied":
        return sorted(active)
    return sorted(d for d in active if d == "EMERGENCY_SHUTDOWN")


def health_states(connection: sqlite3.Connection, run_id: str, start: int) -> dict[str, Any]:
    """Each component's latest journaled status in the run (rows are edge-triggered: a
    status is journaled when it changes, so the fold is over the whole run); None for a row
    without one."""
    states: dict[str, Any] = {}
    for subject, proposal in connection.execute(
        "SELECT subject, proposal FROM decisions WHERE rowid > ? AND run_id = ?"
        " AND hook = 'aios_health' ORDER BY rowid",
        (start, run_id),
    ):
        states[str(subject).removeprefix("component:")] = json.loads(proposal).get("status")
    return states


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _wall(text: str, fallback: datetime) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return fallback
    return value if value.tzinfo else value.replace(tzinfo=UTC)
