"""Reading the file: parse, check every key, load within bounds, show with secrets masked.

``load_config(path)`` returns a :class:`~appliance.config.model.Config` or
raises :class:`ConfigError` listing every problem at once, each naming its key
path (``sensors[2].url``) and what was expected: a person fixing the file over
SSH, or reading ``sensor-bridge-error.txt`` on the boot partition, sees all of
it in one go. Unknown keys are errors, because a typo must never silently turn
a sensor off. Secrets may come inline or from a ``*_file``; :func:`masked`
shows a config with every secret hidden, and :func:`mask_urls` hides the ones a
URL carries (user:password@, query-string values) wherever a URL is printed.

The reader knows no table: it walks the fields of :class:`Config` (and of each
table it names) and does what each key's declaration says (config_keys.py).
"""

from __future__ import annotations

import errno
import os
import stat
import tomllib
from dataclasses import MISSING, Field, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from ..config_keys import (
    ConfigError,
    Key,
    Section,
    control_character,
    mask_urls,
    placeholder,
    sections,
    show,
)
from .model import Config

DEFAULT_PATH = "/etc/sensor-bridge/config.toml"
# A store's config is a few KB (about 300 bytes a sensor): the limits stop a runaway file
# (a copied log, 10,000 generated sensors) before it costs the Pi its memory. The collector
# holds about 20 KB a sensor and the watchdog restarts it above watchdog.max_rss_mb.
MAX_CONFIG_BYTES = 256 * 1024
MAX_SECRET_FILE_BYTES = 4096

T = TypeVar("T")


def _secret_names(model: type) -> set[str]:
    names = {f.name for f in fields(model) if "key" in f.metadata and f.metadata["key"].secret}
    for _, section in sections(model):
        for inner in _models(section):
            names |= _secret_names(inner)
    return names


def _models(section: Section) -> list[type]:
    """Every model a table of ``section`` may be read with (one per sensor type in [[sensors]])."""
    return list(section.by_type().values()) if section.by_type else [section.model]


SECRET_KEYS = tuple(sorted(_secret_names(Config)))


@dataclass
class _Reading:
    """One pass over a file: the problems found, the tables read so far, where ``*_file`` paths start."""

    base_dir: Path
    problems: list[str] = field(default_factory=list)
    tables: dict[str, Any] = field(default_factory=dict)

    def default(self, f: Field[Any], key: Key) -> Any:
        """``f``'s default: another key's value (``inherit``), its own, or None when required."""
        table_name, _, name = key.inherit.partition(".")
        if self.tables.get(table_name) is not None:
            return getattr(self.tables[table_name], name)
        if f.default is not MISSING:
            return f.default
        if f.default_factory is not MISSING:
            return f.default_factory()
        return None


class _Table:
    """One TOML table being checked: takes keys, records problems, then flags leftovers."""

    def __init__(self, raw: Any, path: str, reading: _Reading) -> None:
        self.path = path
        self.reading = reading
        self.problems = reading.problems
        self.base_dir = reading.base_dir
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            self.problems.append(f"{path}: expected a table, got {show(raw)}")
            raw = {}
        self.raw = dict(raw)

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def string(self, name: str, default: str | None = None, choices: tuple[str, ...] = ()) -> str:
        value = self.raw.pop(name, default)
        if value is None:
            self.problems.append(f"{self.key(name)}: required")
            return ""
        if not isinstance(value, str):
            self.problems.append(f"{self.key(name)}: expected a string, got {show(value)}")
            return default or ""
        if choices and value not in choices:
            self.problems.append(
                f"{self.key(name)}: expected one of {', '.join(choices)}, got {value!r}"
            )
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw.pop(name, default)
        if not isinstance(value, bool):
            self.problems.append(f"{self.key(name)}: expected true or false, got {show(value)}")
            return default
        return value

    def number(self, name: str, default: float, minimum: float = 0, integer: bool = False) -> Any:
        """A number >= ``minimum``; durations (``*_s``) must also be above zero."""
        value = self.raw.pop(name, default)
        kind = "an integer" if integer else "a number"
        ok = isinstance(value, int) if integer else isinstance(value, int | float)
        if isinstance(value, bool) or not ok:
            self.problems.append(f"{self.key(name)}: expected {kind}, got {show(value)}")
            return default
        if value < minimum or (name.endswith("_s") and value <= 0):
            bound = "> 0" if name.endswith("_s") and minimum <= 0 else f">= {minimum}"
            self.problems.append(f"{self.key(name)}: expected {kind} {bound}, got {value!r}")
            return default
        return value

    def string_list(
        self, name: str, default: list[str], choices: tuple[str, ...] = ()
    ) -> list[str]:
        value = self.raw.pop(name, default)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problems.append(f"{self.key(name)}: expected a list of strings, got {show(value)}")
            return list(default)
        for item in value:
            if choices and item not in choices:
                self.problems.append(
                    f"{self.key(name)}: {item!r} is not one of {', '.join(choices)}"
                )
        return list(value)

    def secret(self, name: str, required: bool) -> str:
        """``name`` inline or ``name_file`` (a path); never both."""
        inline = self.raw.pop(name, None)
        file_key = f"{name}_file"
        from_file = self.raw.pop(file_key, None)
        if inline is not None and from_file is not None:
            self.problems.append(f"{self.key(name)}: set {name} or {file_key}, not both")
            return ""
        if from_file is not None:
            if not isinstance(from_file, str):
                self.problems.append(
                    f"{self.key(file_key)}: expected a file path, got {show(from_file)}"
                )
                return ""
            path = Path(from_file)
            if not path.is_absolute():
                path = self.base_dir / path
            try:
                value = read_bounded(path, MAX_SECRET_FILE_BYTES).decode("utf-8").strip()
                if problem := control_character(value):
                    self.problems.append(f"{self.key(file_key)}: the text of {path} {problem}")
                    return ""
                if problem := placeholder(value):
                    self.problems.append(f"{self.key(file_key)}: {path} is {problem}")
                    return ""
                return value
            except ConfigError as exc:
                self.problems.append(f"{self.key(file_key)}: cannot read {path}: {exc.problems[0]}")
            except UnicodeDecodeError:
                self.problems.append(f"{self.key(file_key)}: {path} is not UTF-8 text")
            return ""
        if inline is None:
            if required:
                self.problems.append(f"{self.key(name)}: required (or {file_key})")
            return ""
        if not isinstance(inline, str):
            self.problems.append(
                f"{self.key(name)}: expected a string, got {type(inline).__name__}"
            )
            return ""
        return inline

    def table(self, name: str) -> Any:
        return self.raw.pop(name, None)

    def done(self) -> None:
        for leftover in sorted(self.raw):
            self.problems.append(f"{self.key(leftover)}: unknown key")


def _at_most(items: list[Any], limit: int, key: str, problems: list[str]) -> list[Any]:
    """``items`` when a bridge can serve that many; else nothing, and the limit named."""
    if len(items) <= limit:
        return items
    problems.append(
        f"{key}: {len(items)} configured, a bridge serves at most {limit}; "
        "split them over more bridges"
    )
    return []


def _read_table(model: type[T], raw: Any, path: str, reading: _Reading) -> T:
    """One table's keys, each read and checked as its field declares; then unknown keys."""
    t = _Table(raw, path, reading)
    made = model(**{f.name: _read_field(t, f) for f in fields(model)})
    t.done()
    problem = getattr(made, "problem", None)
    if problem and (text := problem()):
        reading.problems.append(f"{path}: {text}")
    return made


def _read_field(t: _Table, f: Field[Any]) -> Any:
    if "section" in f.metadata:
        return _read_section(t, f.name, f.metadata["section"])
    key: Key = f.metadata["key"]
    value = key.read(t, f.name, t.reading.default(f, key))
    if _said(value):  # its control character or placeholder is its problem, said once
        return value
    problem = key.check(value) if key.check else None
    if problem:
        t.problems.append(f"{t.key(f.name)}: {problem}")
    if key.each:
        for i, item in enumerate(value):
            if not _said(item) and (problem := key.each(item)):
                t.problems.append(f"{t.key(f.name)}[{i}]: {problem}")
    return value


def _said(value: Any) -> bool:
    """Whether _every_string has already refused ``value`` (a key's own check would repeat it)."""
    return isinstance(value, str) and _string_problem(value) is not None


def _string_problem(value: str) -> str | None:
    return control_character(value) or placeholder(value)


def _read_section(parent: _Table, name: str, section: Section) -> Any:
    raw = parent.table(name)
    path = parent.key(name)
    if section.limit:
        return _read_list(parent, raw or [], path, section)
    if raw is None and section.optional:
        return None
    if raw is None and section.required and parent.reading.tables.get(section.unless) is not None:
        return None  # [fleet] alone: the cloud sends the rest once the bridge is claimed
    if raw is None and section.required:
        parent.problems.append(f"{path}: required table ({section.required})")
        return None
    return _read_table(section.model, raw, path, parent.reading)


def _read_list(parent: _Table, raw: Any, path: str, section: Section) -> list[Any]:
    """``[[path]]`` tables, at most ``section.limit``; values of ``section.unique`` told apart."""
    if not isinstance(raw, list):
        parent.problems.append(f"{path}: expected [[{path}]] tables")
        return []
    items: dict[int, Any] = {}
    for i, item in enumerate(_at_most(raw, section.limit, path, parent.problems)):
        model = _model_of(section, item, f"{path}[{i}]", parent.problems)
        if model is not None:
            items[i] = _read_table(model, item, f"{path}[{i}]", parent.reading)
    seen: set[Any] = set()
    for i, item in items.items() if section.unique else ():
        value = getattr(item, section.unique)
        if value in seen:
            parent.problems.append(
                f"{path}[{i}].{section.unique}: {value!r} is used by another {section.each}"
            )
        seen.add(value)
    return list(items.values())


def _model_of(section: Section, raw: Any, path: str, problems: list[str]) -> type | None:
    """The model one table of ``section`` is read with: its ``type``'s, when the section has types.

    A table of an unknown type is not read further: which keys it may hold is not known."""
    if section.by_type is None:
        return section.model
    models = section.by_type()
    default = next(f.default for f in fields(section.model) if f.name == "type")
    name = raw.get("type", default) if isinstance(raw, dict) else default
    if isinstance(name, str) and name in models:
        return models[name]
    wrong = (
        f"expected one of {', '.join(models)}, got {name!r}"
        if isinstance(name, str)
        else f"expected a string, got {show(name)}"
    )
    problems.append(f"{path}.type: {wrong}")
    return None


def _every_string(node: Any, path: str, problems: list[str]) -> None:
    """The rules for every string of the file, wherever it is: a value, a list item, a key's name.

    Checked before any key is read, so no table can forget them: no control character, no
    placeholder left from the example (config_keys.control_character, placeholder)."""
    if isinstance(node, str):
        if problem := _string_problem(node):
            problems.append(f"{path}: {problem}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            _every_string(item, f"{path}[{i}]", problems)
    elif isinstance(node, dict):
        for key, value in node.items():
            if problem := control_character(key):
                problems.append(f"{path or 'the top level'}: a key's name {problem}")
                continue
            _every_string(value, f"{path}.{key}" if path else key, problems)


def parse_config(
    raw: dict[str, Any], base_dir: Path | None = None, path: str | None = None
) -> Config:
    """Check an already-parsed TOML document; raise ConfigError naming every bad key."""
    reading = _Reading(base_dir or Path.cwd())
    _every_string(raw, "", reading.problems)
    top = _Table(raw, "", reading)
    for name, section in sections(Config):  # in order: a sensor's timezone defaults to the bridge's
        reading.tables[name] = _read_section(top, name, section)
    top.done()
    tables = reading.tables
    if tables.get("uplink") is None and (tables["sensors"] or tables["mqtt"] or tables["push"]):
        reading.problems.append(
            "uplink: required table (where readings are delivered): [fleet] alone waits to be "
            "claimed and holds no sensors, [mqtt] or [push]; the cloud sends them once claimed"
        )
    if reading.problems:
        raise ConfigError(reading.problems, path)
    return Config(**reading.tables, source_path=path)


def parse_table(model: type[T], raw: Any, base_dir: Path | None = None) -> T:
    """Table ``model`` of a file read alone (what it inherits takes defaults); ConfigError if it is wrong."""
    name = next(name for name, section in sections(Config) if section.model is model)
    reading = _Reading(base_dir or Path.cwd())
    _every_string(raw, name, reading.problems)
    made = _read_table(model, raw, name, reading)
    if reading.problems:
        raise ConfigError(reading.problems)
    return made


def parse_listen(listen: str) -> tuple[str, int]:
    """``"0.0.0.0:8080"`` -> ``("0.0.0.0", 8080)``; ``[::1]:8080`` works too."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


def read_bounded(
    path: str | Path, limit: int = MAX_CONFIG_BYTES, follow_symlinks: bool = True
) -> bytes:
    """The file's bytes, never more than ``limit`` read; ConfigError saying why it cannot be used.

    The size is checked before reading, and the read stops one byte past ``limit`` anyway
    (a FIFO or /proc file has no size). Without ``follow_symlinks`` a symbolic link or anything
    but a regular file is refused unread: a root service must not read what a link points at.
    """
    flags = os.O_RDONLY | (0 if follow_symlinks else os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise ConfigError(["file not found"], path) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigError(
                ["the file is a symbolic link; put the file itself there, not a link"], path
            ) from None
        raise ConfigError([f"cannot read: {exc.strerror}"], path) from None
    try:
        info = os.fstat(fd)
        if not follow_symlinks and not stat.S_ISREG(info.st_mode):
            raise ConfigError(
                ["not a regular file (a folder, device or pipe); put a plain text file there"], path
            )
        size = info.st_size
        data = b"" if size > limit else _read_at_most(fd, limit + 1)
    except OSError as exc:
        raise ConfigError([f"cannot read: {exc.strerror}"], path) from None
    finally:
        os.close(fd)
    if size > limit or len(data) > limit:
        shown = f"{size} bytes" if size > limit else f"over {limit} bytes"
        raise ConfigError([f"the file is {shown}; at most {limit // 1024} KB is read"], path)
    return data


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    left = limit
    while left > 0:
        chunk = os.read(fd, min(left, 65536))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def load_config(path: str | Path = DEFAULT_PATH) -> Config:
    """Read and check the TOML file at ``path`` (at most MAX_CONFIG_BYTES)."""
    path = Path(path)
    try:
        text = read_bounded(path).decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(["the file is not UTF-8 text: save it as UTF-8"], path) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"not valid TOML: {exc}"], path) from None
    return parse_config(raw, base_dir=path.resolve().parent, path=str(path))


def masked(config: Config) -> dict[str, Any]:
    """The config as plain data with every secret replaced by ``***``, URLs' ones too."""

    def hide(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: ("***" if k in SECRET_KEYS and v else hide(v)) for k, v in node.items()}
        if isinstance(node, list):
            return [hide(v) for v in node]
        if isinstance(node, str):
            return mask_urls(node)
        return node

    return hide(asdict(config))
