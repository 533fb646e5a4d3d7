"""How a config key is declared and checked: the vocabulary of the config model.

A table of the file is a dataclass whose fields are declared with :func:`text`,
:func:`number`, :func:`flag`, :func:`texts`, :func:`secret` (keys) and
:func:`table`/:func:`tables` (tables inside it). Each states a key's default,
its checks and its line in docs/config.md once. Each part declares its own
table with them, in a small module beside it (``led_table.py`` beside
``led.py``, a sensor family's ``[[sensors]]`` table beside its source), and
``appliance.config`` reads a file with them. This module imports nothing of
the appliance, so a table costs its owner no more than the standard library,
and the reader (which imports every table) never imports its owners back.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import BridgeError

MAX_PROBLEM_CHARS = 1000


def shown_safely(text: str) -> str:
    """``text`` with every control or format character written as its escape (``\\x1b``,
    ``\\n``, ``\\u202e``) and cut to MAX_PROBLEM_CHARS: one readable line, whatever a file held."""
    safe = "".join(
        ascii(c)[1:-1] if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c for c in text
    )
    return safe if len(safe) <= MAX_PROBLEM_CHARS else safe[: MAX_PROBLEM_CHARS - 1] + "…"


class ConfigError(BridgeError, ValueError):
    """The config is unusable; ``problems`` holds one line per wrong key."""

    def __init__(self, problems: list[str], path: str | Path | None = None) -> None:
        # A value echoed back (a bad URL, an unexpected string) must not print a password, nor
        # be a line or a terminal escape of its own (the card's error file, config check over SSH).
        self.problems = [shown_safely(mask_urls(p)) for p in problems]
        self.path = str(path) if path else None
        where = f"{self.path}: " if self.path else ""
        super().__init__(where + "; ".join(self.problems))

    def report(self) -> str:
        head = f"Config {self.path} is invalid:" if self.path else "Config is invalid:"
        return "\n".join([head, *(f"  - {p}" for p in self.problems)])


# ---------------------------------------------------------------- how a key is declared

Reader = Callable[
    [Any, str, Any], Any
]  # (the table being read, key name, default) -> the value read
Check = Callable[[Any], "str | None"]  # a value read -> what is wrong with it, or None
REQUIRED: Any = MISSING  # the default of a key that must be written


@dataclass(frozen=True)
class Key:
    """One key of a table: how it is read and checked, and its line in the reference."""

    doc: str
    read: Reader
    check: Check | None = None
    shown: str = ""  # the default as the reference shows it, when not the value itself
    inherit: str = ""  # "bridge.timezone": left out, the key takes that key's value
    rule: str = ""  # the bound the reference adds to ``doc`` ("an integer >= 1")
    secret: bool = False  # written inline or as KEY_file; never shown
    each: Check | None = None  # a list's check of each item; its problem names the item (key[2])


@dataclass(frozen=True)
class Section:
    """A table of the file: ``[name]``, or ``[[name]]`` (a list of tables) when ``limit`` is set."""

    model: type
    doc: str = ""  # a paragraph under its heading in the reference
    required: str = ""  # why it must be there
    optional: str = ""  # what it turns on; left out, the table is None
    unless: str = ""  # a required table may be left out when this table is there ([fleet])
    limit: int = 0
    unique: str = ""  # a key whose value must differ between the tables of a list...
    each: str = ""  # ...and what one of them is called ("sensor")
    # [[sensors]]: each table's ``type`` names its model (a subclass of ``model``), looked up when read
    by_type: Callable[[], Mapping[str, type]] | None = None


def key_field(key: Key, default: Any = MISSING, **options: Any) -> Any:
    """A dataclass field carrying ``key``; a function as ``default`` is called for each value."""
    metadata = {"key": key}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata, **options)
    if callable(default):
        if not key.shown:
            raise TypeError(f"a computed default needs shown=, for the reference: {key.doc!r}")
        return field(default_factory=default, metadata=metadata, **options)
    return field(default=default, metadata=metadata, **options)


def text(
    default: Any,
    doc: str,
    *,
    choices: tuple[str, ...] = (),
    check: Check | None = None,
    shown: str = "",
    inherit: str = "",
) -> Any:
    """A string key; ``REQUIRED``, a string, or a function giving the default when read."""
    return key_field(
        Key(doc, lambda t, name, d: t.string(name, d, choices), check, shown, inherit), default
    )


def flag(default: bool, doc: str) -> Any:
    """A ``true``/``false`` key."""
    return key_field(Key(doc, lambda t, name, d: t.boolean(name, d)), default)


def number(
    default: float,
    doc: str,
    *,
    minimum: float = 0,
    integer: bool = False,
    check: Check | None = None,
) -> Any:
    """A number >= ``minimum`` (durations, ``*_s``, also above zero)."""
    rule = "an integer" if integer else ""
    if minimum:
        rule = f"{rule} >= {minimum:g}".strip()
    return key_field(
        Key(doc, lambda t, name, d: t.number(name, d, minimum, integer), check, rule=rule), default
    )


def texts(
    default: list[str],
    doc: str,
    *,
    choices: tuple[str, ...] = (),
    check: Check | None = None,
    each: Check | None = None,
) -> Any:
    """A list of strings, each one of ``choices`` when given; ``each`` checks every item alone."""
    return key_field(
        Key(doc, lambda t, name, d: t.string_list(name, d, choices), check, each=each), default
    )


def secret(doc: str, *, required: bool = False, check: Check | None = None) -> Any:
    """A secret: inline or from ``KEY_file``, masked wherever the config is shown."""
    key = Key(doc, lambda t, name, d: t.secret(name, required), check, secret=True)
    if required:
        return key_field(key, REQUIRED, repr=False, kw_only=True)
    return key_field(key, "", repr=False)


def table(model: type, *, required: str = "", optional: str = "", unless: str = "") -> Any:
    """``[name]``: always there (defaults when left out), ``required`` or ``optional``;
    a required one may be left out when table ``unless`` is there (it is then None)."""
    section = Section(model, required=required, optional=optional, unless=unless)
    return field(metadata={"section": section})


def tables(
    model: type,
    doc: str,
    *,
    limit: int,
    unique: str = "",
    each: str = "",
    by_type: Callable[[], Mapping[str, type]] | None = None,
) -> Any:
    """``[[name]]``: zero or more tables of ``model``, at most ``limit``; ``unique`` differs in each.

    With ``by_type``, each table's ``type`` key picks its model from ``by_type()``."""
    section = Section(model, doc, limit=limit, unique=unique, each=each, by_type=by_type)
    return field(default_factory=list, metadata={"section": section})


def sections(model: type) -> list[tuple[str, Section]]:
    """The tables ``model`` holds: (name, section), in the order they are declared."""
    return [(f.name, f.metadata["section"]) for f in fields(model) if "section" in f.metadata]


def show(value: Any) -> str:
    """``value`` as a problem quotes it: strings quoted, tables and long lists not spelled out."""
    if value is None:
        return "nothing"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return f"a list {value!r}" if len(repr(value)) < 60 else "a list"
    return repr(value)


# ---------------------------------------------------------------- what a value may be

# C0 (tab and line breaks included), DEL, C1, and Unicode's line and paragraph separators: every
# string of the file may end up in a file another program parses line by line (mosquitto's ACL,
# networkd units, nft rules), and no key of the bridge needs one.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def control_character(value: str) -> str | None:
    """Why ``value`` cannot be a config string (it holds a control character), or None.

    The problem names the character's code point, never the value: it may be a secret."""
    found = _CONTROL.search(value)
    if not found:
        return None
    return (
        f"holds a control character (U+{ord(found[0]):04X} at character {found.start() + 1}); "
        "a value is printable text without line breaks, tabs or other control characters"
    )


def check_zone(zone: str) -> str | None:
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown IANA timezone {zone!r}"
    return None


def check_url(schemes: tuple[str, ...], credentials_fix: str, hidden: bool = False) -> Check:
    """A URL the bridge may call; ``credentials_fix`` says where a user:password@ belongs instead.

    A ``hidden`` URL (a secret: its path is the token) is never quoted back in a problem.
    """

    def check(url: str) -> str | None:
        if not url:
            return None
        shown = "***" if hidden else mask_url(url)
        if "@" in url:
            # Refused whole rather than split off: the URL is printed in logs and on the card.
            return f"holds credentials ({shown}); {credentials_fix}, and write the URL without them"
        parts = urlsplit(url)
        if parts.scheme not in schemes or not parts.hostname:
            return f"expected a URL like {schemes[0]}://host[:port], got {shown!r}"
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            return f"bad port in {shown!r}"
        return _link_local(parts.hostname) or _example_host(parts.hostname, shown)

    return check


# Hosts only documentation uses (RFC 2606), and the cloud the example config and docs name:
# a URL left pointing there was copied, not configured.
EXAMPLE_HOSTS = ("example.com", "example.net", "example.org", "example.vercel.app")


def _example_host(host: str, shown: str) -> str | None:
    if not any(host == h or host.endswith("." + h) for h in EXAMPLE_HOSTS):
        return None
    return f"{shown!r} still points at the example's host {host}; put your own address here"


# The example config's placeholder (image/sensor-bridge.example.toml), however it is spelled.
_PLACEHOLDER = re.compile(r"change[-_ ]?me", re.IGNORECASE)


def placeholder(value: str) -> str | None:
    """Why ``value`` is a placeholder left from the example rather than a value, or None."""
    if not _PLACEHOLDER.search(value):
        return None
    return "still the example's placeholder CHANGE-ME; put the real value here"


def check_listen(listen: str) -> str | None:
    if not listen:
        return None
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        return f"expected host:port such as 0.0.0.0:8080, got {listen!r}"
    return None


def _link_local(host: str) -> str | None:
    """Why a literal link-local address is refused (names are not resolved here)."""
    try:
        address = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return None
    if not address.is_link_local:
        return None
    # The bridge sends a sensor's password to its URL: on a cloud VM this address is the
    # metadata service, and on a store network a camera here has no fixed address (it picked
    # 169.254.x.x itself for lack of DHCP) and would vanish from the config when it re-picks.
    return (
        f"{host} is a link-local address (169.254.169.254 is a cloud metadata service), never a "
        "camera or the cloud API; give the device a fixed address on the store network"
    )


def mask_url(url: str) -> str:
    """``url`` with its user:password@ and every query-string value shown as ``***``."""
    head, sep, rest = url.partition("://")
    head, rest = (head + sep, rest) if sep else ("", url)
    if "@" in rest:
        # Everything up to the last @: a password may itself hold @, / or ?.
        rest = "***@" + rest.rpartition("@")[2]
    base, question, query = rest.partition("?")
    if question:
        query = "&".join(
            f"{p.partition('=')[0]}=***" if "=" in p else "***" for p in query.split("&")
        )
    return head + base + question + query


# A URL, or a path with its query as HTTP libraries quote it ("url: /ingest?code=...").
_URL_IN_TEXT = re.compile(r"""(?:[A-Za-z][A-Za-z0-9+.-]*://|(?<![\w/.~-])/)[^\s'"<>]+""")


def mask_urls(text: str) -> str:
    """``text`` with :func:`mask_url` applied to every URL in it (log lines, error messages)."""
    return _URL_IN_TEXT.sub(lambda m: mask_url(m[0]), text)
