"""Hot reload: a changed policy file is parsed, validated and compiled off the hot path, then
handed to the runtime, which swaps it in between cycles.

An invalid file never replaces the running policy: the last good one stays, and the error (with
file, line and key path) is kept for the journal and `aios status`. The stage is not part of
what a reload can change: only the stage machine moves it.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from aios.app import declarations
from aios.policy import Policy, PolicyInvalid
from aios.policy.loader import build_policy, read_files
from aios.registry import PluginSet


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

    def load(self) -> Policy:
        documents = read_files(self.paths)
        return build_policy(documents, env=self.env, sections=self.sections, metrics=self.metrics)


class PolicyWatcher:
    """Watches the policy files and keeps the newest valid policy ready to be taken."""

    def __init__(self, source: PolicySource, current_hash: str) -> None:
        self.source = source
        self._current_hash = current_hash
        self._lock = threading.Lock()
        self._pending: Policy | None = None
        self._results: list[ReloadResult] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.changed = threading.Event()

    def check_now(self) -> ReloadResult:
        """Load and validate the files now (the watcher thread calls this on each change)."""
        now = datetime.now(UTC)
        try:
            policy = self.source.load()
        except PolicyInvalid as exc:
            result = ReloadResult(now, False, None, tuple(str(issue) for issue in exc.errors))
        else:
            if policy.hash == self._current_hash:
                result = ReloadResult(
                    now, True, policy.hash, ("no change in the effective policy",)
                )
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
        editors that replace files are seen); every half second the files' stamps are also
        compared, which catches a change made before the OS watch was armed."""
        if self._thread is not None:
            return
        self._stamps = self._read_stamps()
        self._thread = threading.Thread(target=self._watch, name="aios-policy-watch", daemon=True)
        self._thread.start()

    def _read_stamps(self) -> dict[Path, tuple[int, int] | None]:
        stamps: dict[Path, tuple[int, int] | None] = {}
        for path in self.source.paths:
            try:
                info = path.stat()
                stamps[path] = (info.st_mtime_ns, info.st_size)
            except OSError:
                stamps[path] = None
        return stamps

    def _watch(self) -> None:
        from watchfiles import watch

        directories = sorted({str(p.resolve().parent) for p in self.source.paths})
        for _changes in watch(
            *directories,
            stop_event=self._stop,
            debounce=50,  # an editor's save is several events within a few milliseconds
            step=10,
            rust_timeout=500,
            yield_on_timeout=True,
        ):
            stamps = self._read_stamps()
            if stamps != self._stamps:
                self._stamps = stamps
                self.check_now()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
