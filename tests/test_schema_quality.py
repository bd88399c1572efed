"""The schema itself: typos cannot hide, every knob is documented, defaults are valid values."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from aios.policy.schema import compose_schema, core_schema, resolve, validator


def object_schemas(node: Any, path: str = "#") -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every schema object in the document, with a JSON-pointer-ish path."""
    if isinstance(node, Mapping):
        yield path, node
        for key, value in node.items():
            if key in ("enum", "const", "default", "required", "examples"):
                continue
            yield from object_schemas(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from object_schemas(value, f"{path}/{index}")


def test_schema_is_valid_draft_2020_12() -> None:
    schema = core_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def test_every_property_has_a_description() -> None:
    missing = [
        f"{path}/properties/{name}"
        for path, node in object_schemas(core_schema())
        if isinstance(node.get("properties"), Mapping)
        for name, sub in node["properties"].items()
        if not sub.get("description")
    ]
    assert missing == []


def test_every_object_with_properties_refuses_unknown_keys() -> None:
    open_objects = [
        path
        for path, node in object_schemas(core_schema())
        if isinstance(node.get("properties"), Mapping)
        and node.get("additionalProperties") is not False
    ]
    assert open_objects == []


def test_every_default_is_valid_for_its_own_schema() -> None:
    schema = core_schema()
    bad = []
    for path, node in object_schemas(schema):
        if "default" in node:
            local = {**resolve(node, schema), "$defs": schema["$defs"]}
            local.pop("default", None)
            if list(Draft202012Validator(local).iter_errors(node["default"])):
                bad.append(path)
    assert bad == []


def test_all_thirteen_subsystems_share_the_governance_keys() -> None:
    subsystems = core_schema()["properties"]["subsystems"]["properties"]
    assert set(subsystems) == {
        "coordinator",
        "self_healing",
        "universe_os",
        "signal_model",
        "dynamic_tpsl",
        "model_supervisor",
        "portfolio_balancer",
        "position_intelligence",
        "profit_amplification",
        "execution",
        "exit_proposals",
        "rl_sizing",
        "retraining",
    }
    for name, section in subsystems.items():
        assert {"enabled", "mode", "on_error"} <= set(section["properties"]), name
        assert "mode" in section["required"], name


def test_plugin_sections_compose_with_the_common_keys() -> None:
    fragment = {
        "properties": {"lookback": {"type": "integer", "minimum": 1, "description": "Candles."}}
    }
    composed = compose_schema({"funding_guard": fragment})
    section = composed["properties"]["subsystems"]["properties"]["funding_guard"]
    assert set(section["properties"]) == {"enabled", "mode", "on_error", "lookback"}
    assert section["additionalProperties"] is False
    assert section["required"] == ["mode"]
    assert "funding_guard" not in core_schema()["properties"]["subsystems"]["properties"]


def test_a_section_redefining_the_common_keys_cannot_widen_them() -> None:
    fragment = {
        "properties": {
            "mode": {"type": "string"},
            "on_error": {"type": "string"},
            "enabled": {"type": ["boolean", "string"]},
        }
    }
    composed = compose_schema({"loose_guard": fragment})
    check = validator(composed)
    section = composed["properties"]["subsystems"]["properties"]["loose_guard"]
    assert section["properties"]["mode"]["$ref"] == "#/$defs/mode"

    def accepted(settings: dict[str, object]) -> bool:
        errors = check.iter_errors({"subsystems": {"loose_guard": settings}})
        return not [e for e in errors if list(e.absolute_path)[:2] == ["subsystems", "loose_guard"]]

    assert accepted({"mode": "ENFORCED"})
    assert not accepted({"mode": "AUTOPILOT"})
    assert not accepted({"mode": "ENFORCED", "on_error": "ignore"})
    assert not accepted({"mode": "ENFORCED", "enabled": "yes"})


def test_a_plugin_cannot_redeclare_a_builtin_section() -> None:
    with pytest.raises(ValueError, match=r"subsystems\.coordinator is declared twice"):
        compose_schema({"coordinator": {"properties": {}}})


def test_validator_is_built_once_per_schema() -> None:
    assert validator(compose_schema()) is validator(compose_schema())
