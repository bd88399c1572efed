"""Finding, checking and calling plugins.

Built-in subsystems and third-party plugins are found the same way: through the `aios.plugins`
entry-point group. Loading problems are reported, not fatal (a third-party plugin that fails to
import is skipped and the engine runs on); ambiguity is fatal (two plugins with one name).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import pluggy

from aios import hookspecs
from aios.hookspecs import CONTRACT_VERSION, PROJECT

ENTRY_POINT_GROUP = "aios.plugins"
NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


class PluginConflict(Exception):
    """Two plugins claim one name: which one governs the subsystem would be ambiguous."""


@dataclass(frozen=True)
class LoadedPlugin:
    name: str
    plugin: Any
    source: str
    version: str = ""
    builtin: bool = False


@dataclass(frozen=True)
class LoadProblem:
    """A plugin that was not loaded, and why (shown by `aios plugins check` and the journal)."""

    source: str
    message: str


@dataclass
class PluginSet:
    manager: pluggy.PluginManager
    plugins: dict[str, LoadedPlugin] = field(default_factory=dict)
    problems: list[LoadProblem] = field(default_factory=list)

    def names(self) -> list[str]:
        return list(self.plugins)


def new_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager(PROJECT)
    manager.add_hookspecs(hookspecs)
    return manager


def _instantiate(loaded: Any) -> Any:
    """An entry point may name a plugin object or a class (instantiated, one per engine)."""
    return loaded() if isinstance(loaded, type) else loaded


def _contract_problem(plugin: Any) -> str | None:
    declared = getattr(plugin, "aios_contract", None)
    if declared is None:
        return None
    wanted = CONTRACT_VERSION.split(".")[0]
    if str(declared).split(".")[0] != wanted:
        return f"declares hook contract {declared}, this aios provides {CONTRACT_VERSION} (major {wanted} required)"
    return None


def add_plugin(
    plugins: PluginSet, plugin: Any, source: str, version: str = "", builtin: bool = False
) -> LoadedPlugin | None:
    """Register one plugin object, checking its name, contract version and hook names."""
    name = getattr(plugin, "name", None)
    if not isinstance(name, str) or not NAME_RE.match(name):
        plugins.problems.append(
            LoadProblem(source, f"has no valid `name` attribute (lower_snake_case), found {name!r}")
        )
        return None
    if name in plugins.plugins:
        other = plugins.plugins[name]
        raise PluginConflict(
            f"two plugins are named {name!r}: {other.source} and {source}; uninstall or deny one"
        )
    problem = _contract_problem(plugin)
    if problem:
        plugins.problems.append(LoadProblem(source, problem))
        return None
    try:
        plugins.manager.register(plugin, name=name)
    except (pluggy.PluginValidationError, ValueError) as exc:
        plugins.problems.append(LoadProblem(source, f"refused: {exc}"))
        return None
    try:
        plugins.manager.check_pending()
    except pluggy.PluginValidationError as exc:
        plugins.manager.unregister(plugin)
        plugins.problems.append(LoadProblem(source, f"refused: {exc} (a misspelt hook name?)"))
        return None
    loaded = LoadedPlugin(name, plugin, source, version, builtin)
    plugins.plugins[name] = loaded
    return loaded


def discover(
    allow: Sequence[str] = (), deny: Sequence[str] = (), extra: Iterable[Any] = ()
) -> PluginSet:
    """Load every plugin of the `aios.plugins` entry-point group, then `extra` objects.

    `allow` (when non-empty) and `deny` filter by entry-point name, before anything is imported,
    so a denied plugin's import errors cannot matter.
    """
    plugins = PluginSet(new_manager())
    for entry_point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name):
        if (allow and entry_point.name not in allow) or entry_point.name in deny:
            continue
        dist = entry_point.dist
        dist_name = dist.metadata["Name"] if dist is not None else "?"
        source = f"{dist_name} ({entry_point.value})"
        try:
            plugin = _instantiate(entry_point.load())
        except Exception as exc:  # a broken third-party plugin must not stop the engine
            plugins.problems.append(
                LoadProblem(source, f"failed to import: {type(exc).__name__}: {exc}")
            )
            continue
        if getattr(plugin, "name", None) != entry_point.name:
            plugins.problems.append(
                LoadProblem(
                    source,
                    f"entry point name {entry_point.name!r} differs from the plugin's name {getattr(plugin, 'name', None)!r}",
                )
            )
            continue
        add_plugin(
            plugins,
            plugin,
            source,
            dist.version if dist is not None else "",
            builtin=dist_name == "aios",
        )
    for plugin in extra:
        add_plugin(plugins, _instantiate(plugin), f"registered in code ({type(plugin).__name__})")
    return plugins


# --- calling hooks one implementation at a time ------------------------------------------------


@dataclass(frozen=True)
class HookResult:
    """One implementation's answer: a value, or the exception it raised (as text)."""

    plugin: str
    value: Any
    error: str | None = None
    seconds: float = 0.0


def call_each(
    manager: pluggy.PluginManager,
    hook_name: str,
    kwargs: Mapping[str, Any],
    should_call: Callable[[str], bool],
    on_error: Callable[[str, BaseException], None] | None = None,
) -> list[HookResult]:
    """Call every implementation of a hook separately, so that one raising stops no other.

    Implementations run in registration order (`get_hookimpls()` lists them so; a plain pluggy
    call would run them last-registered first). Only the arguments an implementation declares
    are passed.
    """
    hook = getattr(manager.hook, hook_name)
    results: list[HookResult] = []
    for impl in hook.get_hookimpls():
        name = manager.get_name(impl.plugin) or "?"
        if not should_call(name):
            continue
        started = time.perf_counter()
        try:
            value = impl.function(*[kwargs[arg] for arg in impl.argnames])
        except Exception as exc:  # isolation: the engine decides what a failure means
            if on_error is not None:
                on_error(name, exc)
            results.append(
                HookResult(
                    name, None, f"{type(exc).__name__}: {exc}", time.perf_counter() - started
                )
            )
            continue
        results.append(HookResult(name, value, None, time.perf_counter() - started))
    return results


def plugin_set(objects: Iterable[Any]) -> PluginSet:
    """A plugin set of exactly these objects (tests, the harness); no entry points are read."""
    plugins = PluginSet(new_manager())
    for plugin in objects:
        add_plugin(plugins, _instantiate(plugin), f"registered in code ({type(plugin).__name__})")
    return plugins
