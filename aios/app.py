"""Putting it together: plugins first (they declare policy sections and metrics), then the policy.

The policy's allow/deny list decides which plugins load, and the loaded plugins decide what a
valid policy may contain; so the `plugins` section is read first from the raw files, the plugins
are discovered, and only then is the whole policy validated against the composed schema.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from aios.metrics import CORE_METRICS, MetricSpec
from aios.model import PolicySection
from aios.policy import Issue, Location, Policy, PolicyInvalid
from aios.policy.loader import build_policy, read_files
from aios.policy.yaml_source import SourceDocument
from aios.registry import LoadProblem, PluginSet, call_each, discover


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


def declarations(plugins: PluginSet) -> tuple[dict[str, Mapping[str, Any]], dict[str, MetricSpec]]:
    """The policy sections and metrics the loaded plugins declare (a failing one is reported)."""
    sections: dict[str, Mapping[str, Any]] = {}
    metrics: dict[str, MetricSpec] = dict(CORE_METRICS)

    def report(name: str, exc: BaseException) -> None:
        plugins.problems.append(
            LoadProblem(name, f"declaration hook raised {type(exc).__name__}: {exc}")
        )

    for result in call_each(plugins.manager, "aios_policy_section", {}, lambda name: True, report):
        if isinstance(result.value, PolicySection):
            if result.value.name != result.plugin:
                plugins.problems.append(
                    LoadProblem(
                        result.plugin,
                        f"declares the section {result.value.name!r}; a plugin's section is its own name",
                    )
                )
                continue
            sections[result.value.name] = result.value.schema
    for result in call_each(plugins.manager, "aios_metrics", {}, lambda name: True, report):
        for spec in result.value or ():
            if isinstance(spec, MetricSpec) and spec.name not in metrics:
                metrics[spec.name] = MetricSpec(
                    spec.name, spec.unit, spec.description, result.plugin
                )
    return sections, metrics


def load(
    paths: Sequence[str | Path],
    *,
    env: Mapping[str, str] | None = None,
    extra_plugins: Iterable[Any] = (),
) -> tuple[Policy, PluginSet]:
    """Discover plugins and load the policy they make valid; raise PolicyInvalid otherwise."""
    documents = read_files(paths)
    allow, deny = _plugin_lists(documents)
    plugins = discover(allow, deny, extra_plugins)
    sections, metrics = declarations(plugins)
    try:
        policy = build_policy(documents, env=env, sections=sections, metrics=metrics)
    except ValueError as exc:  # a plugin section colliding with the core schema
        raise PolicyInvalid(
            [Issue(Location("<plugins>"), (), str(exc), "plugins.section")]
        ) from None
    return policy, plugins
