"""The hook reference in docs/plugins.md, generated from aios/hookspecs.py so it cannot rot.

`python -m aios.plugin_docs docs/plugins.md` rewrites the block between the markers (`make docs`
does it); `--check` exits 1 when the file is stale, and tests/test_plugin_docs.py fails then.
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
from pathlib import Path

from aios import hookspecs
from aios.hookspecs import CONTRACT_VERSION

BEGIN = "<!-- hook reference: generated from aios/hookspecs.py by `make docs`; do not edit -->"
END = "<!-- end of hook reference -->"
_GROUP_RE = re.compile(r"^# --- (?P<title>.+?) -+\s*$")
_HOOK_RE = re.compile(r"^def (?P<name>aios_\w+)\(")


def hook_groups() -> list[tuple[str, list[str]]]:
    """The hooks in contract order, under the section comments of hookspecs.py."""
    groups: list[tuple[str, list[str]]] = []
    for line in inspect.getsource(hookspecs).splitlines():
        group = _GROUP_RE.match(line)
        if group:
            groups.append((group["title"], []))
            continue
        hook = _HOOK_RE.match(line)
        if hook:
            if not groups:
                groups.append(("hooks", []))
            groups[-1][1].append(hook["name"])
    return groups


def hook_names() -> list[str]:
    """Every hook of the contract (the functions pluggy knows as specs)."""
    return [
        name
        for name, value in vars(hookspecs).items()
        if name.startswith("aios_")
        and callable(value)
        and getattr(value, f"{hookspecs.PROJECT}_spec", None) is not None
    ]


def signature(name: str) -> str:
    function = getattr(hookspecs, name)
    parameters = ", ".join(
        f"{p.name}: {p.annotation}" for p in inspect.signature(function).parameters.values()
    )
    returns = inspect.signature(function).return_annotation
    return f"{name}({parameters}) -> {returns}"


def render_hook_reference() -> str:
    """The generated block: one entry per hook, with its signature and docstring."""
    lines = [BEGIN, "", f"Hook contract version **{CONTRACT_VERSION}**.", ""]
    for title, names in hook_groups():
        lines += [f"### {title[0].upper()}{title[1:]}", ""]
        for name in names:
            doc = inspect.getdoc(getattr(hookspecs, name)) or ""
            lines += [f"#### `{name}`", "", "```python", signature(name), "```", "", doc, ""]
    lines.append(END)
    return "\n".join(lines) + "\n"


def updated(text: str) -> str:
    """`text` with its generated block replaced by the current one."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the markers {BEGIN!r} and {END!r} are missing")
    return text[:start] + render_hook_reference() + text[end + len(END) + 1 :]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("file", type=Path)
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    args = parser.parse_args(argv)
    try:
        text = args.file.read_text(encoding="utf-8")
        new = updated(text)
    except (OSError, ValueError) as exc:
        print(f"aios.plugin_docs: {args.file}: {exc}", file=sys.stderr)
        return 2
    if args.check:
        if new != text:
            print(f"{args.file}: the hook reference is stale: run `make docs`", file=sys.stderr)
            return 1
        return 0
    if new != text:
        args.file.write_text(new, encoding="utf-8")
        print(f"wrote {args.file}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
