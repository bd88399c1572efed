"""Putting it together: plugins first (they declare policy sections and metrics), then the policy.

The policy's allow/deny list decides which plugins load, and the loaded plugins decide what a
valid policy may contain; so the `plugins` section is read first from the raw files, the plugins
are discovered, and only then is the whole policy validated against the composed schema.

`check` does the same for `aios validate`, from the plugin declaration cache when it is fresh
(aios/plugin_cache.py), so that validating a policy imports no plugin. The registry, pluggy and
the data model are imported only when plugins really are loaded.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aios import plugin_cache
from aios.metrics import MetricSpec
from aios.plugin_cache import Declarations
from aios.policy import Issue, Location, Policy, PolicyInvalid
from aios.policy.loader import build_policy, read_files
from aios.policy.yaml_source import SourceDocument

if TYPE_CHECKING:
    from aios.registry import LoadProblem, PluginSet


def _plugin_lists(documents: Sequence[SourceDocument]) -> tuple[list[str], list[str]]:
    allow: list[str] = []
    deny: list[str] = []
    for document in documents:
        section = document.data.get("plugins")
        if isinstance(section, Mapping):
            if isinstance(section.get("allow"), list):
                allow = [str(x) for x in section["allow"]]
            if isinstance(section.get("deny"), list):
                deny = [str(x) for x in section["deny"]]
    return allow, deny


def plugin_declarations(plugins: PluginSet) -> Declarations:
    """What the loaded plugins declare, in hook order. A declaration hook that raises, or a
    policy section that cannot be composed into the policy schema, is added to the problems
    (once, however often this is called) and that plugin's section left out: it then has no
    configurable section, so it stays OFF, and the policy validates as if it declared none."""
    from aios.model import PolicySection
    from aios.policy.schema import usable_sections
    from aios.registry import LoadProblem, call_each

    def record(problem: LoadProblem) -> None:
        if problem not in plugins.problems:  # the engine, reloads and `plugins check` ask again
            plugins.problems.append(problem)

    def report(name: str, exc: BaseException) -> None:
        record(
            LoadProblem(name, f"declaration hook raised {type(exc).__name__}: {exc}", "declaration")
        )

    declared: list[tuple[str, Any]] = []
    metrics: list[MetricSpec] = []
    for result in call_each(plugins.manager, "aios_policy_section", {}, lambda name: True, report):
        if result.value is None:
            continue
        if not isinstance(result.value, PolicySection):
            record(
                LoadProblem(
                    result.plugin,
                    f"aios_policy_section returned {type(result.value).__name__}, not a PolicySection",
                    "section",
                )
            )
        elif result.value.name != result.plugin:
            record(
                LoadProblem(
                    result.plugin,
                    f"declares the section {result.value.name!r}; a plugin's section is its own name",
                    "declaration",
                )
            )
        else:
            declared.append((result.value.name, result.value.schema))
    sections, refused = usable_sections(declared)
    for name, problem in refused:
        record(
            LoadProblem(
                name,
                f"{problem}; the section is left out, so subsystems.{name} cannot be configured and {name} stays OFF",
                "section",
            )
        )
    for result in call_each(plugins.manager, "aios_metrics", {}, lambda name: True, report):
        for spec in result.value or ():
            if isinstance(spec, MetricSpec):
                metrics.append(MetricSpec(spec.name, spec.unit, spec.description, result.plugin))
    return Declarations(tuple(sections), tuple(metrics))


def declarations(plugins: PluginSet) -> tuple[dict[str, Mapping[str, Any]], dict[str, MetricSpec]]:
    """The policy sections and metrics the loaded plugins declare (a failing one is reported)."""
    return plugin_declarations(plugins).merged()


def _build(
    documents: Sequence[SourceDocument],
    env: Mapping[str, str] | None,
    sections: Mapping[str, Mapping[str, Any]],
    metrics: Mapping[str, MetricSpec],
) -> Policy:
    try:
        return build_policy(documents, env=env, sections=sections, metrics=metrics)
    except ValueError as exc:  # a plugin section colliding with the core schema
        raise PolicyInvalid(
            [Issue(Location("<plugins>"), (), str(exc), "plugins.section")]
        ) from None


def load(
    paths: Sequence[str | Path],
    *,
    env: Mapping[str, str] | None = None,
    extra_plugins: Iterable[Any] = (),
) -> tuple[Policy, PluginSet]:
    """Discover plugins and load the policy they make valid; raise PolicyInvalid otherwise."""
    from aios.registry import discover

    documents = read_files(paths)
    allow, deny = _plugin_lists(documents)
    plugins = discover(allow, deny, extra_plugins)
    sections, metrics = declarations(plugins)
    return _build(documents, env, sections, metrics), plugins


def check(
    paths: Sequence[str | Path], *, env: Mapping[str, str] | None = None
) -> tuple[Policy, list[LoadProblem]]:
    """What `aios validate` needs: the policy the installed plugins make valid (PolicyInvalid
    otherwise, two plugins with one name included) and the plugins' loading problems. The same answer as `load`, without importing
    a plugin while the declaration cache is fresh; a miss loads them and refreshes the cache."""
    documents = read_files(paths)
    allow, deny = _plugin_lists(documents)
    location = plugin_cache.cache_file()
    cached = plugin_cache.lookup(location, allow, deny) if location is not None else None
    if cached is not None:
        sections, metrics = cached.merged()
        return _build(documents, env, sections, metrics), []

    from aios.registry import PluginConflict, discover

    cacheable = location is not None and not allow and not deny
    environment = plugin_cache.environment_fingerprint() if cacheable else ""
    before = set(sys.modules)
    try:
        plugins = discover(allow, deny)
    except PluginConflict as exc:
        raise PolicyInvalid(
            [Issue(Location("<plugins>"), (), str(exc), "plugins.conflict")]
        ) from None
    found = plugin_declarations(plugins)
    if location is not None and cacheable and not plugins.problems:
        # What importing the plugins loaded, and the plugins' own packages (imported earlier in
        # this process, perhaps): the code their declarations come from.
        modules = set(sys.modules) - before
        for loaded in plugins.plugins.values():
            module = getattr(loaded.plugin, "__module__", None) or getattr(
                loaded.plugin, "__name__", ""
            )
            package = str(module).split(".")[0]
            modules.update(m for m in sys.modules if m == package or m.startswith(package + "."))
        plugin_cache.store(location, environment, found, plugin_cache.module_files(modules))
    sections, metrics = found.merged()
    try:
        return _build(documents, env, sections, metrics), plugins.problems
    except PolicyInvalid as exc:  # a left-out plugin explains an "unknown key" under its name
        raise PolicyInvalid([*exc.issues, *load_problem_issues(plugins.problems)]) from None


def load_problem_issues(problems: Iterable[LoadProblem]) -> list[Issue]:
    """Plugin loading problems as policy warnings (`aios validate` prints them with the policy's
    own issues, valid or not)."""
    from aios.policy import Severity

    return [
        Issue(Location(f"plugin {p.source}"), (), p.message, "plugins.load", Severity.WARNING)
        for p in problems
    ]
