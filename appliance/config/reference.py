"""The key reference in docs/config.md, written from the tables' declarations.

``sensor-bridge config reference`` prints it; tests/test_config_docs.py keeps
docs/config.md equal to it, so a key documented is a key read, and back.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, Field, fields
from typing import Any

from ..config_keys import Key, Section, sections
from ..relay_tables import MAX_MQTT_DEVICES
from .model import MAX_SENSORS, Config
from .reader import MAX_CONFIG_BYTES, MAX_SECRET_FILE_BYTES


def reference() -> str:
    """The key reference of docs/config.md, as markdown, from the tables' declarations."""
    lines = [
        "Limits, so that a slip (a copied log, generated sensors) never costs the Pi its memory",
        "or a secret:",
        "",
        f"- the file is at most {MAX_CONFIG_BYTES // 1024} KB, a `*_file` secret at most "
        f"{MAX_SECRET_FILE_BYTES // 1024} KB;",
        f"- at most {MAX_SENSORS} `[[sensors]]` and {MAX_MQTT_DEVICES} `[[mqtt.devices]]`: "
        "split more over several bridges;",
        "- every string (a value, a list item, a key's name, a `*_file` secret) is printable text:",
        "  no line breaks, tabs or other control characters (C0, DEL, C1, U+2028, U+2029);",
        "- a URL holds no credentials (`user:password@`): they go in the keys meant for them;",
        "- a URL names no link-local address (`169.254.x.x`, `fe80::`): 169.254.169.254 is a cloud",
        "  metadata service, and a camera there has no fixed address.",
    ]
    for name, section in sections(Config):
        lines += ["", *_section_reference(name, section, "##")]
    return "\n".join(lines)


def _section_reference(path: str, section: Section, level: str) -> list[str]:
    title = f"`[[{path}]]`" if section.limit else f"`[{path}]`"
    if section.limit:
        title += f" (zero or more, at most {section.limit})"
    elif section.required and section.unless:
        title += f" (required, unless `[{section.unless}]` is there)"
    elif section.required:
        title += " (required)"
    elif section.optional:
        title += f" (optional: {section.optional})"
    lines = [f"{level} {title}", ""]
    if section.doc:
        lines += [section.doc, ""]
    lines += _key_table(section.model)
    for name, inner in sections(section.model):
        lines += ["", *_section_reference(f"{path}.{name}", inner, level + "#")]
    shared = {f.name for f in fields(section.model)}
    for type_name, model in section.by_type().items() if section.by_type else ():
        about = (model.__doc__ or "").strip().split("\n\n")[0]
        lines += ["", f'{level}# `type = "{type_name}"`', "", about, "", *_key_table(model, shared)]
    return lines


def _key_table(model: type, shared: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """The markdown table of ``model``'s keys, leaving out the ``shared`` ones listed above it."""
    lines = ["| key | default | meaning |", "| --- | --- | --- |"]
    for f in fields(model):
        if "key" in f.metadata and f.name not in shared:
            key: Key = f.metadata["key"]
            name = f"`{f.name}` / `{f.name}_file`" if key.secret else f"`{f.name}`"
            meaning = "; ".join(part for part in (key.doc, key.rule) if part)
            lines.append(f"| {name} | {_shown_default(f, key)} | {meaning} |")
    return lines


def _shown_default(f: Field[Any], key: Key) -> str:
    if key.shown:
        return key.shown
    if key.inherit:
        return f"`{key.inherit}`"
    if f.default is MISSING and f.default_factory is MISSING:
        return "required"
    value = f.default if f.default is not MISSING else f.default_factory()
    if value is None:
        return "not set"
    if isinstance(value, str):
        return f"`{value}`" if value else '`""`'
    return f"`{json.dumps(value)}`"  # true, 60, ["milesight/#"]: as TOML writes them
