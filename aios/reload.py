"""Hot reload: a changed policy file is parsed, validated and compiled off the hot path, then
handed to the runtime, which swaps it in between cycles.

An invalid file never replaces the running policy: the last good one stays, and the error (with
file, line and key path) is kept for the journal and `aios status`. The stage is not part of
what a reload can change: only the stage machine moves it.

What is loaded is a *settled snapshot*: the bytes of every policy file, read again after a short
quiet period until two reads agree. An editor's save (truncate, write, rename, several events
within a few milliseconds) therefore gives one reload, of the final content, and the policy is
built from exactly the bytes that were compared, never from a file caught half-written.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from aios.app import declarations
from aios.policy import Issue, Policy, PolicyInvalid
from aios.policy.loader import build_policy
from aios.policy.yaml_source import SourceDocument, parse_bytes, read_bytes
from aios.registry import PluginSet

# watchfiles (the OS's notifications: inotify, FSEvents; polling only where it decides they do
# not work, as on WSL) groups events for up to DEBOUNCE_MS and yields once no new change arrived
# for STEP_MS; the snapshot then has to hold still for SETTLE_S. Every STAMP_CHECK_MS without an
# event the snapshot is compared anyway, which catches a change made before the OS watch was
# armed (or one a watch misses: network file systems, a Kubernetes ConfigMap's symlink swap).
DEBOUNCE_MS = 20
STEP_MS = 5
SETTLE_S = 0.010
STAMP_CHECK_MS = 500

# One entry per policy file: its bytes, or why it could not be read.
Snapshot = tuple[bytes | PolicyInvalid, ...]


@dataclass(frozen=True)
class ReloadResult:
    """One reload attempt: the new policy's hash, or every error that kept the old one."""

    time: datetime
    ok: bool
    policy_hash: str | None
    errors: tuple[str, ...] = ()

    def summary(self) -> str:
        if self.ok:
            return f"reloaded, policy {self.policy_hash[:12] if self.policy_hash else '?'}"
        return f"invalid, the last good policy stays: {'; '.join(self.errors)}"


class PolicySource:
    """The policy files and how to load them with the running plugins' sections and metrics."""

    def __init__(self, paths: Sequence[Path], env: Mapping[str, str], plugins: PluginSet) -> None:
        self.paths = [Path(p) for p in paths]
        self.env = dict(env)
        self.sections, self.metrics = declarations(plugins)
        # The last parse of each file, with the bytes it came from: a reload usually changes one
        # overlay, and the files it leaves alone are copied instead of parsed again.
        self._parsed: dict[Path, tuple[bytes, SourceDocument]] = {}

    def snapshot(self) -> Snapshot:
        """Every file's bytes as they are now (an unreadable or oversized file as its error)."""
        contents: list[bytes | PolicyInvalid] = []
        for path in self.paths:
            try:
                contents.append(read_bytes(path, str(path)))
            except PolicyInvalid as exc:
                contents.append(exc)
        return tuple(contents)

    def load_snapshot(self, snapshot: Snapshot) -> Policy:
        """The policy those bytes make; PolicyInvalid with the problems of every file."""
        documents: list[SourceDocument] = []
        issues: list[Issue] = []
        for path, content in zip(self.paths, snapshot, strict=True):
            if isinstance(content, PolicyInvalid):
                issues.extend(content.issues)
                continue
            parsed = self._parsed.get(path)
            if parsed is not None and parsed[0] == content:
                documents.append(parsed[1].copy())
                continue
            try:
                document = parse_bytes(content, str(path))
            except PolicyInvalid as exc:
                issues.extend(exc.issues)
                continue
            self._parsed[path] = (content, document.copy())
            documents.append(document)
        if issues:
            raise PolicyInvalid(issues)
        return build_policy(documents, env=self.env, sections=self.sections, metrics=self.metrics)

    def load(self) -> Policy:
        return self.load_snapshot(self.snapshot())


class PolicyWatcher:
    """Watches the policy files and keeps the newest valid policy ready to be taken."""

    def __init__(self, source: PolicySource, current_hash: str, settle_s: float = SETTLE_S) -> None:
        self.source = source
        self.settle_s = settle_s
        self._current_hash = current_hash
        self._lock = threading.Lock()
        self._pending: Policy | None = None
        self._results: list[ReloadResult] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loaded: Snapshot | None = None  # the last snapshot loaded (valid or not)
        self.changed = threading.Event()

    def check_now(self) -> ReloadResult:
        """Load and validate the files now, as they are (tests, and a caller that knows)."""
        snapshot = self.source.snapshot()
        self._loaded = snapshot
        return self._load(snapshot)

    def poll(self, wait: Callable[[float], bool]) -> ReloadResult | None:
        """Reload if the files differ from what was last loaded, once they have settled.

        `wait(seconds)` pauses and returns True when the watcher is stopping (the thread passes
        its stop event's `wait`; tests pass a function that edits the files instead of
        sleeping). The files are read, then read again after each pause until two reads agree;
        that content is loaded, unless it is what was loaded last (a save that restored it).
        """
        snapshot = self.source.snapshot()
        if snapshot == self._loaded:
            return None
        while True:
            if wait(self.settle_s):
                return None
            again = self.source.snapshot()
            if again == snapshot:
                break
            snapshot = again
        if snapshot == self._loaded:
            return None
        quiet = self._loaded is None  # the first look: a no-op unless the files changed
        self._loaded = snapshot
        return self._load(snapshot, quiet_if_unchanged=quiet)

    def _load(self, snapshot: Snapshot, quiet_if_unchanged: bool = False) -> ReloadResult:
        now = datetime.now(UTC)
        try:
            policy = self.source.load_snapshot(snapshot)
        except PolicyInvalid as exc:
            result = ReloadResult(now, False, None, tuple(str(issue) for issue in exc.errors))
        except Exception as exc:  # a bug must not end the watcher thread, and keeps the policy
            message = f"the policy could not be loaded: {type(exc).__name__}: {exc}"
            result = ReloadResult(now, False, None, (message,))
        else:
            if policy.hash == self._current_hash:
                result = ReloadResult(
                    now, True, policy.hash, ("no change in the effective policy",)
                )
                if quiet_if_unchanged:
                    return result
            else:
                with self._lock:
                    self._pending = policy
                    self._current_hash = policy.hash
                result = ReloadResult(now, True, policy.hash)
        with self._lock:
            self._results.append(result)
        self.changed.set()
        return result

    def take(self) -> tuple[Policy | None, list[ReloadResult]]:
        """The policy to swap in (None when there is none) and the attempts since the last take."""
        with self._lock:
            policy, self._pending = self._pending, None
            results, self._results = self._results, []
        return policy, results

    def start(self) -> None:
        """Watch in a daemon thread. watchfiles reports changes (the directories are watched, so
        editors that replace files are seen); the first look, and one every STAMP_CHECK_MS,
        compares the files with what was loaded even without an event."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="aios-policy-watch", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        from watchfiles import watch

        directories = sorted({str(p.resolve().parent) for p in self.source.paths})
        self.poll(self._stop.wait)
        try:
            for _changes in watch(
                *directories,
                stop_event=self._stop,
                debounce=DEBOUNCE_MS,
                step=STEP_MS,
                rust_timeout=STAMP_CHECK_MS,
                yield_on_timeout=True,
                recursive=False,  # the files' own directories: not a state database below them
            ):
                self.poll(self._stop.wait)
        except Exception as exc:  # a directory removed, the OS out of watches: say so, once
            message = (
                f"the policy watch stopped ({type(exc).__name__}: {exc}): edits are not "
                "reloaded until aios restarts; the running policy stays"
            )
            with self._lock:
                self._results.append(ReloadResult(datetime.now(UTC), False, None, (message,)))
            self.changed.set()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
