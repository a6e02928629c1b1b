"""Render ``config/schema.yaml`` as the Markdown reference page ``docs/config.md``.

The schema is the single source of truth for every option and its default; this module
turns it into a page with one table per top-level key, listing every option at every depth
(dotted paths such as ``survey.mask.kind``, ``tasks[].name`` for the items of an array).
``make config-doc`` regenerates the page and ``--check`` (run by the tests) reports a stale one::

    python -m skysift.configdoc --out docs/config.md
    python -m skysift.configdoc --check docs/config.md
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from skysift import config

#: The command that regenerates the page, named in it and in the ``--check`` message.
MAKE_TARGET = "make config-doc"
COMMAND = "python -m skysift.configdoc --out docs/config.md"
NO_VALUE = "—"
_HEADER = ("| Option | Type | Default | Allowed | Description |",
           "| --- | --- | --- | --- | --- |")
#: JSON Schema bounds and the symbol each is shown with.
_BOUNDS = (("minimum", "≥"), ("exclusiveMinimum", ">"),
           ("maximum", "≤"), ("exclusiveMaximum", "<"))


def _json(value: Any) -> str:
    """``value`` as compact one-line JSON (valid YAML too), keys in schema order."""
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def _code(text: str) -> str:
    """``text`` as Markdown inline code that survives a table cell."""
    fence, pad = ("``", " ") if "`" in text else ("`", "")
    escaped = text.replace("|", "\\|")
    return f"{fence}{pad}{escaped}{pad}{fence}"


def _text(text: str) -> str:
    """Free text on one line, escaped for a Markdown table cell."""
    out = " ".join(str(text).split())
    for char in ("\\", "|", "*", "<", "`"):
        out = out.replace(char, "\\" + char)
    return out


def _alternatives(node: dict) -> list[dict]:
    """The alternatives of a ``oneOf`` / ``anyOf`` node, or ``[node]``."""
    return list(node.get("oneOf") or node.get("anyOf") or [node])


def _type_names(node: dict) -> list[str]:
    """Type names of one schema node (no ``oneOf``), e.g. ``["string", "null"]``."""
    if "const" in node:
        return [_json(node["const"])]
    types = node.get("type")
    if types is None:
        return ["any"] if "enum" not in node else sorted({type(v).__name__ for v in node["enum"]})
    names = []
    for name in [types] if isinstance(types, str) else list(types):
        if name == "array" and isinstance(node.get("items"), dict):
            inner = describe_type(node["items"])
            names.append(f"array of {f'({inner})' if ' | ' in inner else inner}")
        elif name == "object" and isinstance(node.get("additionalProperties"), dict):
            names.append(f"object of {describe_type(node['additionalProperties'])}")
        else:
            names.append(name)
    return names


def describe_type(node: dict) -> str:
    """The type of a schema node in words, e.g. ``string | null`` or ``array of number``.

    Parameters
    ----------
    node : dict
        A JSON Schema node; ``type`` lists, ``const``, ``oneOf`` and ``anyOf`` are joined
        with `` | ``.

    Returns
    -------
    str
        The type names, in schema order, without duplicates.
    """
    names: list[str] = []
    for alt in _alternatives(node):
        for name in _type_names(alt):
            if name not in names:
                names.append(name)
    return " | ".join(names)


def _constraints(node: dict) -> list[str]:
    """Allowed values and bounds of one schema node (no ``oneOf``), as Markdown."""
    parts = []
    if "enum" in node:
        parts.append(", ".join(_code(_json(v)) for v in node["enum"]))
    parts += [f"{sign} {_json(node[key])}" for key, sign in _BOUNDS if key in node]
    low, high = node.get("minItems"), node.get("maxItems")
    if low is not None and low == high:
        parts.append(f"exactly {low} items")
    else:
        parts += [f"{sign} {n} items" for n, sign in ((low, "≥"), (high, "≤")) if n is not None]
    if "pattern" in node:
        parts.append(f"pattern {_code(node['pattern'])}")
    items = node.get("items")
    if isinstance(items, dict) and "properties" not in items:
        inner = describe_allowed(items)
        if inner:
            parts.append(f"items: {inner}")
    values = node.get("additionalProperties")
    if isinstance(values, dict):
        inner = describe_allowed(values)
        if inner:
            parts.append(f"values: {inner}")
    return parts


def describe_allowed(node: dict) -> str:
    """Allowed values (``enum``) and bounds of a schema node as Markdown, or ``""``.

    Parameters
    ----------
    node : dict
        A JSON Schema node; the constraints of ``oneOf`` / ``anyOf`` alternatives are
        joined with ``; ``, those of array items and mapping values are prefixed.

    Returns
    -------
    str
        E.g. ``"mock", "files"``, ``≥ 0, ≤ 1`` or ``items: > 0; exactly 2 items``.
    """
    found = [", ".join(parts) for alt in _alternatives(node) if (parts := _constraints(alt))]
    return "; ".join(found)


def _children(node: dict, path: str) -> Iterator[tuple[str, dict, bool]]:
    """Sub-options of ``node``: (path, schema, required) for fixed keys of an object, or of
    the objects of an array (``path[].key``); ``oneOf`` alternatives are searched too."""
    for alt in _alternatives(node):
        if isinstance(alt.get("properties"), dict):
            required = set(alt.get("required", ()))
            for key, sub in alt["properties"].items():
                yield f"{path}.{key}", sub, key in required
        items = alt.get("items")
        if isinstance(items, dict) and isinstance(items.get("properties"), dict):
            required = set(items.get("required", ()))
            for key, sub in items["properties"].items():
                yield f"{path}[].{key}", sub, key in required


def _walk(path: str, node: dict, required: bool) -> Iterator[tuple[str, dict, bool]]:
    yield path, node, required
    for sub_path, sub, sub_required in _children(node, path):
        yield from _walk(sub_path, sub, sub_required)


def iter_options(schema: dict) -> Iterator[tuple[str, dict, bool]]:
    """Every option of ``schema`` at every depth, depth first in schema order.

    Parameters
    ----------
    schema : dict
        The configuration schema (an object schema with ``properties``).

    Yields
    ------
    tuple of (str, dict, bool)
        The dotted option path (``survey.mask.kind``, ``tasks[].name``), its schema node and
        whether its parent requires it.
    """
    required = set(schema.get("required", ()))
    for key, node in schema.get("properties", {}).items():
        yield from _walk(key, node, key in required)


def leaf_paths(schema: dict) -> list[str]:
    """Paths of the options of ``schema`` that have no sub-options, in schema order.

    Parameters
    ----------
    schema : dict
        The configuration schema.

    Returns
    -------
    list of str
        E.g. ``["seed", "survey.kind", ..., "tasks[].name", ...]``.
    """
    return [path for path, node, _ in iter_options(schema)
            if next(_children(node, path), None) is None]


def _row(path: str, node: dict, required: bool) -> str:
    if "default" in node:
        default = _code(_json(node["default"]))
    else:
        default = f"{NO_VALUE} (required)" if required else NO_VALUE
    cells = [_code(path), _text(describe_type(node)), default,
             describe_allowed(node) or NO_VALUE,
             _text(node["description"]) if node.get("description") else NO_VALUE]
    return "| " + " | ".join(cells) + " |"


def render_reference(schema: dict) -> str:
    """Render the configuration schema as the Markdown reference page.

    Parameters
    ----------
    schema : dict
        The configuration schema (``skysift.config.schema()``).

    Returns
    -------
    str
        The page: a title, a line saying it is generated, then one section per top-level key
        (in schema order) with a table of every option at every depth: its path, type,
        default (compact JSON; ``—`` when it has none), allowed values or bounds and
        description. The same schema always renders the same text.
    """
    lines = ["# Configuration reference", "",
             f"This page is generated from `config/schema.yaml` by `{MAKE_TARGET}` "
             f"(`{COMMAND}`); do not edit it by hand.", ""]
    if schema.get("description"):
        lines += [" ".join(str(schema["description"]).split()), ""]
    lines += ["Every option below can be set in a config file (`config/config.yaml` holds the "
              "ones a user usually edits), with `--config-json`, or with "
              "`--set key.sub=value`; a key left out takes its default. Paths with `[]` are "
              "keys of each entry of a list.", ""]
    required = set(schema.get("required", ()))
    for key, node in schema.get("properties", {}).items():
        lines += [f"## {key}", "", *_HEADER]
        lines += [_row(*option) for option in _walk(key, node, key in required)]
        lines.append("")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m skysift.configdoc",
        description="Render config/schema.yaml as the Markdown configuration reference.")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--out", type=Path, metavar="PATH",
                       help="write the page to PATH (atomically)")
    group.add_argument("--check", type=Path, metavar="PATH",
                       help="exit 1 when PATH differs from the rendering of the schema")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Write (``--out PATH``) or check (``--check PATH``) the configuration reference.

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments; ``sys.argv[1:]`` when None.

    Returns
    -------
    int
        0 on success; 1 when ``--check`` finds the page missing or out of date.
    """
    args = _parser().parse_args(argv)
    page = render_reference(config.schema())
    if args.out is not None:
        partial = args.out.with_name(args.out.name + ".partial")
        partial.write_text(page, encoding="utf-8", newline="\n")
        os.replace(partial, args.out)
        return 0
    try:
        current = args.check.read_text(encoding="utf-8")
    except FileNotFoundError:
        current = None
    if current != page:
        state = "is missing" if current is None else "is out of date with config/schema.yaml"
        print(f"{args.check} {state}; regenerate it with `{MAKE_TARGET}`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
