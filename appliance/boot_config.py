"""``sensor-bridge config import``: take the config a person dropped on the boot partition.

A person writes ``sensor-bridge.toml`` onto the SD card's boot partition (FAT,
writable from any laptop). At every boot ``sensor-bridge-config.service`` runs
this command before the other services start:

* no file there: nothing happens, the installed config stays;
* a valid file: it becomes ``/etc/sensor-bridge/config.toml`` (mode 0640,
  root:sensor-bridge: the services read it, only root changes it), unless that already holds the same text; any old
  ``sensor-bridge-error.txt`` is removed;
* an invalid file: the installed config stays untouched and every problem,
  each naming its key, is written to ``sensor-bridge-error.txt`` next to the
  file, where the person reads it on the same laptop. The file itself stays
  so it can be fixed in place.

A FAT partition has no permissions, so secrets must not stay there: an imported
file is renamed to ``sensor-bridge.toml.imported`` with its ``api_key`` and
``password`` lines, and any line whose URL carries a query string, commented
out (the bridge keeps them in /etc). If that copy is saved back as
``sensor-bridge.toml`` without the secrets written in again, the import
refuses it rather than wiping them. A file whose secrets cannot be
blanked line by line (inline tables, multi-line strings) is deleted instead.

The file is opened without following links and read only up to the config size
limit: the service runs as root, and a link to /etc/shadow or a 100 MB file is
refused unread, with the reason in the error file.
"""

from __future__ import annotations

import argparse
import os
import pwd
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .clock import now_utc, utc_text
from .config import (
    DEFAULT_PATH,
    SECRET_KEYS,
    ConfigError,
    MqttConfig,
    load_config,
    mask_urls,
    parse_config,
    read_bounded,
)
from .files import sync_dir, write_atomic

# Raspberry Pi OS since bookworm mounts the boot partition at /boot/firmware; older ones at /boot.
BOOT_FILES = ("/boot/firmware/sensor-bridge.toml", "/boot/sensor-bridge.toml")
ERROR_NAME = "sensor-bridge-error.txt"
IMPORTED_SUFFIX = ".imported"
SERVICE_USER = "sensor-bridge"
CONFIG_MODE = 0o640  # root:sensor-bridge: the services read it, only root writes it
REMOVED_MARK = "(removed after import"

_KEY_LINE = re.compile(
    r"""^(?P<indent>\s*)(?:[\w.-]+\.)?["']?(?P<key>[\w-]+)["']?\s*=(?P<value>.*)$"""
)
_REMOVED_LINE = re.compile(r"#\s*(?P<key>[\w-]+)\s*=\s*\(removed after import")


@dataclass
class ImportResult:
    """What ``config import`` did: ``outcome`` is none, installed, unchanged or invalid."""

    outcome: str
    message: str
    problems: tuple[str, ...] = ()


def rejected_boot_config(candidates: tuple[str, ...] | None = None) -> Path | None:
    """The error file left by a rejected import, while it is there (the old config still runs)."""
    for candidate in candidates or BOOT_FILES:
        error = Path(candidate).with_name(ERROR_NAME)
        if error.exists():
            return error
    return None


def find_boot_config(candidates: tuple[str, ...] = BOOT_FILES) -> Path | None:
    """The first config file present on a boot partition, if any (a link too: it is refused)."""
    for name in candidates:
        if Path(name).is_file() or Path(name).is_symlink():
            return Path(name)
    return None


def check_text(text: str, target: Path) -> list[str]:
    """Problems with ``text`` as the config that will live at ``target`` (empty: valid)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return [f"not valid TOML: {exc}"]
    if REMOVED_MARK in text:
        # A retired copy saved back as is: importing it would wipe the secrets the bridge has.
        removed = [
            (n, _REMOVED_LINE.search(line))
            for n, line in enumerate(text.splitlines(), 1)
            if REMOVED_MARK in line
        ]
        return [
            f"line {n}: a secret removed after an earlier import; replace this line with the real "
            f'value ({found["key"] if found else "key"} = "...")'
            for n, found in removed
        ]
    try:
        # Relative *_file paths are resolved where the config will live, not on the card.
        parse_config(raw, base_dir=target.parent, path=str(target))
    except ConfigError as exc:
        return list(exc.problems)
    return []


def import_config(source: Path, target: Path, owner: str | None = SERVICE_USER) -> ImportResult:
    """Install ``source`` as ``target`` if valid; otherwise explain why next to ``source``."""
    error_file = source.parent / ERROR_NAME
    try:
        text = (
            read_bounded(source, follow_symlinks=False).decode("utf-8").removeprefix("\ufeff")
        )  # Notepad's BOM
    except UnicodeDecodeError:
        problems = ["the file is not UTF-8 text: save it as UTF-8 (plain text)"]
    except ConfigError as exc:
        problems = exc.problems
    else:
        problems = check_text(text, target)
    if problems:
        _write_error(error_file, source, target, problems)
        kept = "keeps its previous config" if target.exists() else "has no config yet"
        return ImportResult(
            "invalid",
            f"{source} is invalid ({len(problems)} problem(s)); the bridge {kept}; "
            f"details in {error_file}",
            tuple(problems),
        )

    changed = not target.exists() or target.read_text() != text
    if changed:
        _install(target, text, owner)
    _retire(source, target, text)
    error_file.unlink(missing_ok=True)
    if changed:
        return ImportResult("installed", f"installed {source} as {target}")
    return ImportResult("unchanged", f"{source} matches {target}; nothing to install")


# ---------------------------------------------------------------- writing


def _owner_ids(owner: str | None) -> tuple[int, int] | None:
    """root, and the group of ``owner`` (the service user): it may read the config, not change it.

    Root services act on the file (the watchdog, the update service), so the service user, whose
    processes face the network, must not be able to write what root reads."""
    if not owner:
        return None
    return 0, pwd.getpwnam(owner).pw_gid


def _service_owner(owner: str | None) -> str | None:
    """The service user when it exists and we may chown to it (root); else leave ownership."""
    if not owner or os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(owner)
    except KeyError:
        return None
    return owner


def _install(target: Path, text: str, owner: str | None) -> None:
    owner = _service_owner(owner)
    if not target.parent.exists():
        target.parent.mkdir(mode=0o750, parents=True)
    write_atomic(target, text, CONFIG_MODE, _owner_ids(owner))


def _blank_secrets(text: str) -> str | None:
    """``text`` with every secret line commented out; None when that cannot be done safely."""
    lines = []
    for line in text.splitlines():
        match = _KEY_LINE.match(line)
        if match and (match["key"] in SECRET_KEYS or mask_urls(match["value"]) != match["value"]):
            line = f"{match['indent']}# {match['key']} = {REMOVED_MARK}; the bridge keeps it)"
        lines.append(line)
    blanked = "\n".join(lines) + "\n"
    try:
        if _count_secrets(tomllib.loads(blanked)):
            return None
    except tomllib.TOMLDecodeError:
        return None
    return blanked


def _count_secrets(node: Any) -> int:
    """How many non-empty ``api_key``/``password`` values and URLs with secrets a TOML document holds."""
    if isinstance(node, dict):
        return sum(
            1 if key in SECRET_KEYS and value not in ("", None) else _count_secrets(value)
            for key, value in node.items()
        )
    if isinstance(node, list):
        return sum(_count_secrets(item) for item in node)
    return int(isinstance(node, str) and mask_urls(node) != node)


def _retire(source: Path, target: Path, text: str) -> None:
    """Move the imported file aside with its secrets removed, or delete it."""
    blanked = _blank_secrets(text)
    if blanked is not None:
        header = (
            f"# Imported by sensor-bridge at {utc_text(now_utc())} into {target}.\n"
            "# Its secrets (api_key, password, URLs with a query string) were removed from this copy;\n"
            "# the bridge keeps them.\n"
            "# To change the config: write the secrets back in, edit, and save this file as\n"
            f"# {source.name} on the boot partition; it is imported at the next boot.\n\n"
        )
        write_atomic(source.with_name(source.name + IMPORTED_SUFFIX), header + blanked, 0o600)
    source.unlink()
    sync_dir(source.parent)


def _write_error(error_file: Path, source: Path, target: Path, problems: list[str]) -> None:
    if target.exists():
        consequence = f"The bridge keeps running with its previous config ({target})."
    else:
        consequence = "The bridge has no config yet and waits for a valid file."
    lines = [
        f"sensor-bridge could not use {source.name} (checked {utc_text(now_utc())}).",
        consequence,
        f"Fix the lines below in {source.name}, save it, and restart the bridge:",
        "",
        *(f"  - {p}" for p in problems),
        "",
    ]
    try:
        write_atomic(error_file, "\n".join(lines), 0o644)
    except OSError as exc:  # a read-only card must not hide the problems from the journal
        print(f"cannot write {error_file}: {exc.strerror}", file=sys.stderr)


# ---------------------------------------------------------------- command


def _import(args: argparse.Namespace) -> int:
    source = Path(args.source) if args.source else find_boot_config()
    target = Path(args.target or args.config)
    if source is None:
        print(
            f"no {Path(BOOT_FILES[0]).name} on the boot partition "
            f"({' or '.join(BOOT_FILES)}); keeping {target}"
        )
        return 0
    if not source.exists() and not source.is_symlink():
        print(f"{source}: no such file", file=sys.stderr)
        return 2
    result = import_config(source, target)
    if result.outcome == "invalid":
        print(result.message, file=sys.stderr)
        for problem in result.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print(result.message)
    _sync_broker(target)
    if result.outcome == "installed" and not os.environ.get("INVOCATION_ID"):
        # By hand on a running bridge (at boot the services start after this).
        print("the services read it when they start: sudo systemctl restart 'sensor-bridge*'")
    return 0


def _sync_broker(target: Path) -> None:
    """On a bridge with the MQTT broker, bring mosquitto's users and ACL in line with ``[mqtt]``.

    An image is built before any config exists, so the relay's broker password is made here,
    on the first boot that brings one (before mosquitto and the relay start).
    """
    from .broker import SNIPPET, Broker, BrokerError, broker_dir

    root = broker_dir()
    if not (root / SNIPPET).exists():
        return
    try:
        config = load_config(target)
        broker = Broker(root, config.mqtt or MqttConfig(), have_config=True)
        broker.setup(None)
    except (ConfigError, BrokerError, OSError) as exc:
        print(
            f"mosquitto not updated for the new config: {exc}; run `sensor-bridge mqtt setup`",
            file=sys.stderr,
        )
        return
    for line in broker.changes:
        print(f"mqtt: {line}")


def add_import_command(config_actions: argparse._SubParsersAction) -> None:
    """``sensor-bridge config import``."""
    imp = config_actions.add_parser(
        "import",
        help="install the config from the boot partition (what sensor-bridge-config.service runs)",
        description=(
            "Validate a config file and install it (mode 0640, root:sensor-bridge). An invalid file "
            f"leaves the installed config alone and writes {ERROR_NAME} next to it. The imported "
            f"file is renamed to *.toml{IMPORTED_SUFFIX} with its secrets removed."
        ),
    )
    imp.add_argument(
        "--from",
        dest="source",
        metavar="PATH",
        help=f"file to import (default: the first of {', '.join(BOOT_FILES)} that exists)",
    )
    imp.add_argument(
        "--to",
        dest="target",
        metavar="PATH",
        help=f"where to install it (default: the -c config, {DEFAULT_PATH})",
    )
    imp.set_defaults(func=_import)
