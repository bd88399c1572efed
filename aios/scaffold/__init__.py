"""`aios plugins new NAME`: a plugin package that installs and passes its own tests as generated.

The templates (aios/scaffold/templates, shipped in the wheel) are filled with `string.Template`:
the package has a pyproject with the `aios.plugins` entry point, a module with one hook
implementation and its policy section schema, a README and tests written with the harness.
"""

from __future__ import annotations

import keyword
import re
import string
from dataclasses import dataclass
from importlib import resources
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from aios.hookspecs import CONTRACT_VERSION

NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
MAX_NAME_LENGTH = 40
#: Names the engine journals under itself or the harness uses; the built-in subsystems' names
#: (the core schema's `subsystems`) are refused as well, see `reserved_names`.
ENGINE_NAMES = frozenset({"engine", "safety", "harness_signals"})
#: template file -> where it goes in the package (both with the names substituted)
LAYOUT = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "plugin.py.tmpl": "src/$package/__init__.py",
    "test_plugin.py.tmpl": "tests/test_$name.py",
}


class ScaffoldError(Exception):
    """A name or a directory that cannot be scaffolded; the message says why and what to do."""


@dataclass(frozen=True)
class Names:
    name: str  # the plugin's name and policy section: spread_guard
    class_name: str  # SpreadGuard
    package: str  # aios_spread_guard
    dist: str  # aios-spread-guard

    @classmethod
    def of(cls, name: str) -> Names:
        check_name(name)
        class_name = "".join(part.capitalize() for part in name.split("_") if part)
        return cls(name, class_name, f"aios_{name}", f"aios-{name.replace('_', '-')}")


def _suggestion(name: str) -> str:
    text = re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")
    text = text.removeprefix("aios_")
    return text if NAME_RE.match(text) else ""


def check_name(name: str) -> None:
    """Refuse a name that would not load or would collide (the plugin name is its policy key)."""
    if not NAME_RE.match(name):
        hint = _suggestion(name)
        raise ScaffoldError(
            f"invalid plugin name {name!r}: use lower_snake_case (a letter, then letters, digits or _)"
            + (f", like {hint!r}" if hint else "")
        )
    if len(name) > MAX_NAME_LENGTH:
        raise ScaffoldError(f"plugin name {name!r} is longer than {MAX_NAME_LENGTH} characters")
    if keyword.iskeyword(name):
        raise ScaffoldError(f"plugin name {name!r} is a Python keyword")
    if name in reserved_names():
        raise ScaffoldError(
            f"plugin name {name!r} is taken by aios itself (a built-in subsystem or the engine): pick another"
        )


def reserved_names() -> frozenset[str]:
    """The engine's own names and every built-in subsystem's: a plugin's name is its policy
    section, so one of these would collide with a section aios already defines."""
    from aios.policy.schema import core_schema

    return ENGINE_NAMES | frozenset(core_schema()["properties"]["subsystems"]["properties"])


def _aios_version() -> str:
    try:
        return version("aios")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0.1"


def render(names: Names) -> dict[str, str]:
    """Relative path -> file content, for every file of the package."""
    values = {
        "name": names.name,
        "class_name": names.class_name,
        "package": names.package,
        "dist": names.dist,
        "contract": CONTRACT_VERSION,
        "aios_version": _aios_version(),
    }
    templates = resources.files("aios.scaffold") / "templates"
    files: dict[str, str] = {}
    for template, target in LAYOUT.items():
        text = (templates / template).read_text(encoding="utf-8")
        files[string.Template(target).substitute(values)] = string.Template(text).substitute(values)
    files[f"src/{names.package}/py.typed"] = ""
    return files


def create(name: str, directory: Path | None = None) -> tuple[Names, Path, list[Path]]:
    """Write the package for `name` into `directory` (default `./aios-<name>`), which must not
    exist or be empty. Returns the names, the directory and the files written."""
    names = Names.of(name)
    target = directory if directory is not None else Path(names.dist)
    if target.exists():
        if not target.is_dir():
            raise ScaffoldError(f"{target} exists and is not a directory")
        if any(target.iterdir()):
            raise ScaffoldError(
                f"{target} exists and is not empty: choose another directory (--directory) or remove it"
            )
    files = render(names)
    written: list[Path] = []
    try:
        for relative, text in files.items():
            path = target / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            written.append(path)
    except OSError as exc:
        raise ScaffoldError(f"cannot write {exc.filename or target}: {exc.strerror}") from None
    return names, target, written
