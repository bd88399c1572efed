"""Finding, checking and calling plugins.

Built-in subsystems and third-party plugins are found the same way: through the `aios.plugins`
entry-point group. Loading problems are reported, not fatal (a third-party plugin that fails to
import is skipped and the engine runs on); ambiguity is fatal (two plugins with one name).
"""

from __future__ import annotations

import difflib
import inspect
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import pluggy

from aios import hookspecs
from aios.hookspecs import CONTRACT_VERSION, PROJECT

ENTRY_POINT_GROUP = "aios.plugins"
NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
CONTRACT_RE = re.compile(r"^(?P<major>\d+)(?:\.(?P<minor>\d+))?$")


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
    """A plugin that was not loaded, or loaded without its section, and why (warned by `aios
    validate` and `aios run`, listed by `aios plugins check`; not journaled).

    `kind` names the check that failed, for tools: import, name, contract, hooks, declaration
    (a declaration hook raised, or declared another plugin's section), section (a policy section
    that is not a usable JSON Schema: left out of the policy schema, the plugin stays OFF).
    """

    source: str
    message: str
    kind: str = "load"


@dataclass
class PluginSet:
    manager: pluggy.PluginManager
    plugins: dict[str, LoadedPlugin] = field(default_factory=dict)
    problems: list[LoadProblem] = field(default_factory=list)

    def names(self) -> list[str]:
        return list(self.plugins)


def new_manager() -> pluggy.PluginManager:
    _trace_from_environment()
    manager = pluggy.PluginManager(PROJECT)
    manager.add_hookspecs(hookspecs)
    return manager


def _instantiate(loaded: Any) -> Any:
    """An entry point may name a plugin object or a class (instantiated, one per engine)."""
    return loaded() if isinstance(loaded, type) else loaded


def _contract_problem(plugin: Any) -> str | None:
    """Why a plugin's declared hook contract is incompatible with this aios (None: compatible).

    Same major and a minor no newer than ours: a plugin written for 1.0 runs on 1.3 (minor
    versions only add), but not on 2.0, and a plugin written for 1.3 may use what 1.0 lacks.
    Declaring nothing is accepted (`aios plugins check` warns).
    """
    declared = getattr(plugin, "aios_contract", None)
    if declared is None:
        return None
    wanted_major, wanted_minor = (int(part) for part in CONTRACT_VERSION.split("."))
    match = CONTRACT_RE.match(str(declared))
    if match is None:
        return f'declares hook contract {declared!r}, which is not a version like {CONTRACT_VERSION!r} (aios_contract = "MAJOR.MINOR")'
    major, minor = int(match["major"]), int(match["minor"] or 0)
    if major != wanted_major:
        return f"declares hook contract {declared}, this aios provides {CONTRACT_VERSION} (major {wanted_major} required)"
    if minor > wanted_minor:
        return f"declares hook contract {declared}, newer than the {CONTRACT_VERSION} this aios provides: upgrade aios"
    return None


def _argument_problem(manager: pluggy.PluginManager, plugin: Any) -> str | None:
    """An implementation declaring an argument its hook does not pass (pluggy's message, made
    readable, with a did-you-mean)."""
    for attribute in dir(plugin):
        if not attribute.startswith(f"{PROJECT}_"):
            continue
        caller = getattr(manager.hook, attribute, None)
        spec = getattr(caller, "spec", None)
        function = getattr(plugin, attribute, None)
        if (
            spec is None
            or not callable(function)
            or manager.parse_hookimpl_opts(plugin, attribute) is None
        ):
            continue
        try:
            parameters = list(inspect.signature(function).parameters)
        except (TypeError, ValueError):
            continue
        passed = list(spec.argnames)
        for argument in parameters:
            if argument not in passed:
                close = difflib.get_close_matches(argument, passed, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                return f"{attribute} declares the argument {argument!r}, which this hook does not pass (it passes {', '.join(passed) or 'nothing'}){hint}"
    return None


def _unknown_hooks(manager: pluggy.PluginManager, plugin: Any) -> str | None:
    """Implementations whose name matches no hook (what `check_pending` catches), with a hint."""
    known = [n for n, c in vars(manager.hook).items() if getattr(c, "spec", None) is not None]
    problems = []
    for caller in manager.get_hookcallers(plugin) or ():
        if caller.spec is not None:
            continue
        if all(impl.optionalhook for impl in caller.get_hookimpls() if impl.plugin is plugin):
            continue
        close = difflib.get_close_matches(caller.name, known, n=1)
        hint = f"did you mean {close[0]}?" if close else "a misspelt hook name?"
        problems.append(f"{caller.name} matches no hook of the contract ({hint})")
    return "; ".join(problems) or None


def _implementation_problem(manager: pluggy.PluginManager, plugin: Any) -> str | None:
    """Implementations the engine cannot call: wrappers (it dispatches itself) and coroutines."""
    for hook_caller in manager.get_hookcallers(plugin) or ():
        for impl in hook_caller.get_hookimpls():
            if impl.plugin is not plugin:
                continue
            if impl.wrapper or impl.hookwrapper:
                return f"{hook_caller.name} is a wrapper implementation; aios hooks take plain implementations (timing and tracing are built in: AIOS_TRACE=1)"
            if inspect.iscoroutinefunction(impl.function) or inspect.isasyncgenfunction(
                impl.function
            ):
                return f"{hook_caller.name} is an async function; aios hooks are synchronous (return a value, do the I/O elsewhere)"
    return None


def add_plugin(
    plugins: PluginSet, plugin: Any, source: str, version: str = "", builtin: bool = False
) -> LoadedPlugin | None:
    """Register one plugin object, checking its name, contract version and hook names."""
    name = getattr(plugin, "name", None)
    if not isinstance(name, str) or not NAME_RE.match(name):
        plugins.problems.append(
            LoadProblem(
                source, f"has no valid `name` attribute (lower_snake_case), found {name!r}", "name"
            )
        )
        return None
    if name in plugins.plugins:
        other = plugins.plugins[name]
        raise PluginConflict(
            f"two plugins are named {name!r}: {other.source} and {source}; uninstall or deny one"
        )
    problem = _contract_problem(plugin)
    if problem:
        plugins.problems.append(LoadProblem(source, problem, "contract"))
        return None
    problem = _argument_problem(plugins.manager, plugin)
    if problem:
        plugins.problems.append(LoadProblem(source, f"refused: {problem}", "hooks"))
        return None
    try:
        plugins.manager.register(plugin, name=name)
    except (pluggy.PluginValidationError, ValueError) as exc:
        plugins.problems.append(LoadProblem(source, f"refused: {exc}", "hooks"))
        return None
    unknown = _unknown_hooks(plugins.manager, plugin)
    if unknown:
        plugins.manager.unregister(plugin)
        plugins.problems.append(LoadProblem(source, f"refused: {unknown}", "hooks"))
        return None
    problem = _implementation_problem(plugins.manager, plugin)
    if problem:
        plugins.manager.unregister(plugin)
        plugins.problems.append(LoadProblem(source, f"refused: {problem}", "hooks"))
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
                LoadProblem(source, f"failed to import: {type(exc).__name__}: {exc}", "import")
            )
            continue
        if getattr(plugin, "name", None) != entry_point.name:
            plugins.problems.append(
                LoadProblem(
                    source,
                    f"entry point name {entry_point.name!r} differs from the plugin's name {getattr(plugin, 'name', None)!r}",
                    "name",
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


@dataclass(frozen=True, slots=True)
class HookCall:
    """What a hook observer sees of one implementation call (tracing, profiling)."""

    hook: str
    plugin: str
    seconds: float
    value: Any
    error: str | None
    kwargs: Mapping[str, Any]


HookObserver = Callable[[HookCall], None]

#: Observers of every implementation call. Empty (the default) costs one truth test per hook
#: call; a HookCall record is only built when someone observes.
_observers: tuple[HookObserver, ...] = ()


@contextmanager
def observing(observer: HookObserver) -> Iterator[HookObserver]:
    """Let `observer` see every implementation call made by `call_each` while the block runs."""
    global _observers
    _observers = (*_observers, observer)
    try:
        yield observer
    finally:
        _observers = tuple(o for o in _observers if o is not observer)


_env_tracer: HookObserver | None = None


def _trace_from_environment() -> None:
    """`AIOS_TRACE=1` (read whenever plugins are loaded) logs every hook call: see aios.hooktrace."""
    global _observers, _env_tracer
    wanted = os.environ.get("AIOS_TRACE", "") not in ("", "0")
    if wanted and _env_tracer is None:
        from aios.hooktrace import TraceLogger

        _env_tracer = TraceLogger.to_stderr()
        _observers = (*_observers, _env_tracer)
    elif not wanted and _env_tracer is not None:
        _observers = tuple(o for o in _observers if o is not _env_tracer)
        _env_tracer = None


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
    are passed. Observers (`observing`, `AIOS_TRACE=1`) see each implementation's call once the hook's
    implementations have run.
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
    notify_observers(hook_name, kwargs, results)
    return results


def notify_observers(
    hook_name: str, kwargs: Mapping[str, Any], results: Sequence[HookResult]
) -> None:
    """Show observers (tracing, profiling) the implementation calls of one hook call. Whoever
    calls implementations (`call_each`, the engine's inlined loop) calls this once per hook call;
    with nothing observing it costs one truth test."""
    if not _observers:
        return
    for result in results:
        call = HookCall(
            hook_name, result.plugin, result.seconds, result.value, result.error, kwargs
        )
        for observer in _observers:
            observer(call)


def plugin_set(objects: Iterable[Any]) -> PluginSet:
    """A plugin set of exactly these objects (tests, the harness); no entry points are read."""
    plugins = PluginSet(new_manager())
    for plugin in objects:
        add_plugin(plugins, _instantiate(plugin), f"registered in code ({type(plugin).__name__})")
    return plugins
