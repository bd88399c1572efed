"""What the installed plugins declare (policy sections, metrics), cached between commands.

A valid policy depends on the installed plugins: their sections and metrics are part of the
schema. Learning them means importing every plugin (about 0.1 s of `aios validate`'s start-up),
so `aios validate` keeps what they declared in a small JSON file and imports none of them while
nothing they depend on has changed.

The cache is used only when all of this is unchanged since it was written, so that a stale cache
can never accept a policy the plugins would refuse (or refuse one they accept):

* the interpreter (version, prefix) and `sys.path`, entry by entry;
* the distributions installed on `sys.path` (each `*.dist-info` / `*.egg-info` by name, which
  carries the version, and by the modification stamps of its directory and of its
  `entry_points.txt`), and the `.pth` / `.egg-link` files that extend the path: installing,
  upgrading or removing any package changes this;
* every module file that importing the plugins loaded, and every `aios` module: by content
  (SHA-256) up to 256 KB, by size and modification time above. An editable install changes
  nothing in site-packages when its code is edited; this catches it.

It is written only after a discovery with no plugin filter (`plugins.allow` and `plugins.deny`
empty, as in the bundled policies) and no loading problem: a plugin that failed to import, a
declaration hook that raised, a policy section left out as unusable or two plugins with one name
keep every run on the full path, which reports them. A hit applies the policy's allow/deny lists to the cached declarations. Plugins'
declarations must depend on their code only (not on the environment or the time); that is the
hook contract. Set `AIOS_PLUGIN_CACHE=off` to never use it, `AIOS_CACHE_DIR` to move it (default
`$XDG_CACHE_HOME/aios`, else `~/.cache/aios`). An unreadable, corrupt or unwritable cache is
ignored: the plugins are imported, as without it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aios.metrics import CORE_METRICS, MetricSpec

FORMAT = 1
CACHE_DIR_ENV = "AIOS_CACHE_DIR"
SWITCH_ENV = "AIOS_PLUGIN_CACHE"
HASHED_FILE_LIMIT = 256 * 1024  # bigger module files (compiled extensions) go by size and mtime
_METADATA_SUFFIXES = (".dist-info", ".egg-info", ".pth", ".egg-link")


@dataclass(frozen=True)
class Declarations:
    """What the loaded plugins declare, in the order their hooks answered (which decides which
    of two metrics with one name wins: the first)."""

    sections: tuple[tuple[str, Mapping[str, Any]], ...] = ()  # (plugin = section name, schema)
    metrics: tuple[MetricSpec, ...] = ()  # `provider` is the declaring plugin

    def selected(self, allow: Sequence[str], deny: Sequence[str]) -> Declarations:
        """Only the plugins a policy's allow/deny lists load (as discovery filters them)."""

        def loads(name: str) -> bool:
            return not ((allow and name not in allow) or name in deny)

        return Declarations(
            tuple(item for item in self.sections if loads(item[0])),
            tuple(spec for spec in self.metrics if loads(spec.provider)),
        )

    def merged(self) -> tuple[dict[str, Mapping[str, Any]], dict[str, MetricSpec]]:
        """The sections by name, and the core metrics plus the plugins' (the first one wins)."""
        metrics: dict[str, MetricSpec] = dict(CORE_METRICS)
        for spec in self.metrics:
            if spec.name not in metrics:
                metrics[spec.name] = spec
        return dict(self.sections), metrics


def cache_file() -> Path | None:
    """Where this interpreter's cache lives; None when the cache is switched off."""
    if os.environ.get(SWITCH_ENV, "").strip().lower() in ("0", "off", "false", "no"):
        return None
    base = os.environ.get(CACHE_DIR_ENV)
    if base:
        base = os.path.abspath(base)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        base = os.path.join(xdg, "aios")
        if not os.path.isabs(base):
            return None  # no home directory: never a cache relative to wherever aios runs
    interpreter = hashlib.sha256(f"{sys.prefix}\0{sys.executable}".encode()).hexdigest()[:16]
    return Path(base) / f"plugin-declarations-{interpreter}.json"


def _stat_stamp(path: str) -> str:
    try:
        info = os.stat(path)
    except OSError:
        return "-"
    return f"{info.st_mtime_ns}:{info.st_size}:{info.st_ino}"


def environment_fingerprint() -> str:
    """The interpreter, `sys.path` and the distributions installed on it, as one digest."""
    digest = hashlib.sha256(f"{FORMAT}\0{sys.version}\0{sys.prefix}\0".encode())
    for entry in sys.path:
        directory = entry or "."
        digest.update(f"\0path {entry} {os.path.abspath(directory)}\0".encode(errors="replace"))
        try:
            with os.scandir(directory) as scan:
                names = sorted(e.name for e in scan if e.name.endswith(_METADATA_SUFFIXES))
        except NotADirectoryError:  # a zip file on the path
            digest.update(_stat_stamp(directory).encode())
            continue
        except OSError:
            continue
        for name in names:
            full = os.path.join(directory, name)
            entry_points = _stat_stamp(os.path.join(full, "entry_points.txt"))
            digest.update(f"{name} {_stat_stamp(full)} {entry_points}\n".encode(errors="replace"))
    return digest.hexdigest()


def file_stamp(path: str) -> str:
    """A module file's identity: its content's digest (its size and mtime when it is big)."""
    try:
        info = os.stat(path)
        if info.st_size > HASHED_FILE_LIMIT:
            return f"stat:{info.st_size}:{info.st_mtime_ns}"
        with open(path, "rb") as handle:
            return "sha256:" + hashlib.sha256(handle.read()).hexdigest()
    except OSError:
        return "missing"


def module_files(names: Iterable[str]) -> list[str]:
    """The files of these imported modules (built-in ones have none), and of every aios module."""
    files: set[str] = set()
    for name, module in list(sys.modules.items()):
        if name in names or name == "aios" or name.startswith("aios."):
            file = getattr(module, "__file__", None)
            if isinstance(file, str):
                files.add(os.path.abspath(file))
    return sorted(files)


def lookup(path: Path, allow: Sequence[str], deny: Sequence[str]) -> Declarations | None:
    """The cached declarations the policy's lists select, or None unless the cache is fresh."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        if document.get("format") != FORMAT:
            return None
        if document["environment"] != environment_fingerprint():
            return None
        for file, stamp in document["files"]:
            if file_stamp(file) != stamp:
                return None
        cached = Declarations(
            tuple((str(name), schema) for name, schema in document["sections"]),
            tuple(
                MetricSpec(str(name), str(unit), str(description), str(provider))
                for provider, name, unit, description in document["metrics"]
            ),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # no cache, or not one this version wrote: the plugins are imported
    return cached.selected(allow, deny)


def _as_json(declarations: Declarations) -> tuple[list[Any], list[Any]] | None:
    """The declarations as JSON data, or None when JSON would not give them back exactly."""
    sections = [[name, schema] for name, schema in declarations.sections]
    metrics = [[s.provider, s.name, s.unit, s.description] for s in declarations.metrics]
    try:
        if json.loads(json.dumps([sections, metrics])) != [sections, metrics]:
            return None  # tuples, non-text keys...: cache nothing rather than something else
    except (TypeError, ValueError):
        return None
    if not all(isinstance(x, str) for row in metrics for x in row):
        return None
    return sections, metrics


def store(path: Path, environment: str, declarations: Declarations, files: Sequence[str]) -> bool:
    """Write the cache atomically (a concurrent reader sees the old file or the new one).

    `environment` is the fingerprint taken *before* the plugins were imported, so that an
    installation during the import leaves a cache that no longer matches. False when nothing
    was written (the declarations are not plain JSON, or the directory is not writable).
    """
    data = _as_json(declarations)
    if data is None:
        return False
    document = {
        "format": FORMAT,
        "environment": environment,
        "files": [[file, file_stamp(file)] for file in files],
        "sections": data[0],
        "metrics": data[1],
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".plugin-declarations-")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(document, out)
            os.replace(temporary, path)
        except BaseException:
            os.unlink(temporary)
            raise
    except OSError:
        return False
    return True
