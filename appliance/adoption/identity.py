"""Who this bridge is to the fleet: its own credential, its claim code, and its hardware facts.

The credential (``sbk_`` + 43 characters, 256 random bits) is made on first boot
and kept in ``<state_dir>/fleet/credential`` (0600); it never leaves the bridge
except as the ``Authorization`` of its own requests, and the cloud keeps only
its sha256. The claim code (8 characters without look-alikes, shown
``K7QM-3XPD``) is what a person types on the fleet page; the bridge writes it to
``sensor-bridge-claim.txt`` on the boot partition. A re-flashed card has neither
file, so it makes new ones and the cloud sees a new enrollment.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..files import write_atomic

CLAIM_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"  # no 0/O, 1/I/L, U
CLAIM_FILE = "sensor-bridge-claim.txt"
CREDENTIAL = "credential"
CLAIM_CODE = "claim-code"
# Raspberry Pi OS since bookworm mounts the boot partition at /boot/firmware (boot_config.py).
BOOT_DIRS = ("/boot/firmware", "/boot")


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def normalised_code(code: str) -> str:
    """A claim code as it is hashed: uppercase, its dash and spaces removed."""
    return code.upper().replace("-", "").replace(" ", "")


def new_credential() -> str:
    return "sbk_" + secrets.token_urlsafe(32)


def new_claim_code() -> str:
    code = "".join(secrets.choice(CLAIM_ALPHABET) for _ in range(8))
    return f"{code[:4]}-{code[4:]}"


@dataclass(frozen=True)
class Identity:
    """The bridge's credential and claim code, as kept in its fleet folder."""

    credential: str
    claim_code: str
    credential_path: Path
    made_now: bool = False

    @classmethod
    def load_or_make(cls, fleet_dir: Path) -> Identity:
        """The identity in ``fleet_dir``; a new one when there is none (first boot, a re-flash)."""
        path = fleet_dir / CREDENTIAL
        try:
            credential = path.read_text().strip()
            code = (fleet_dir / CLAIM_CODE).read_text().strip()
            if credential and code:
                return cls(credential, code, path)
        except OSError:
            pass
        credential, code = new_credential(), new_claim_code()
        fleet_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
        write_atomic(fleet_dir / CLAIM_CODE, code + "\n", 0o600)
        write_atomic(path, credential + "\n", 0o600)
        _give_to_service_user(fleet_dir, path, fleet_dir / CLAIM_CODE)
        return cls(credential, code, path, made_now=True)


def _give_to_service_user(*paths: Path) -> None:
    """The collector (the service user) reads the credential as its uplink key."""
    if os.geteuid() != 0:
        return
    import pwd

    try:
        user = pwd.getpwnam("sensor-bridge")
    except KeyError:
        return
    for path in paths:
        os.chown(path, user.pw_uid, user.pw_gid)


# ---------------------------------------------------------------- hardware facts


def _first_line(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace").strip("\x00 \n")
    except OSError:
        return ""


def machine_id() -> str:
    return _first_line("/etc/machine-id")[:64] or socket.gethostname()[:64]


def hardware_serial() -> str:
    """The board's serial number (a Pi's), else the machine-id."""
    serial = _first_line("/proc/device-tree/serial-number")
    if not serial:
        for line in _first_line("/proc/cpuinfo").splitlines():
            if line.lower().startswith("serial"):
                serial = line.partition(":")[2].strip()
    return (serial or machine_id())[:64]


def macs(sys_net: str = "/sys/class/net") -> list[str]:
    """The MAC addresses of the bridge's own interfaces (not loopback), at most 8."""
    found = []
    for iface in sorted(Path(sys_net).glob("*")):
        mac = _first_line(str(iface / "address")).lower()
        if iface.name != "lo" and len(mac) == 17 and mac != "00:00:00:00:00:00":
            found.append(mac)
    return sorted(set(found))[:8]


def lan_address(toward: str) -> str:
    """The bridge's own address on the way to ``toward`` (a URL): a UDP connect sends nothing."""
    host = urlsplit(toward).hostname or "127.0.0.1"
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((host, 9))
            return str(s.getsockname()[0])[:64]
    except OSError:
        return ""


# ---------------------------------------------------------------- the boot partition


def boot_dir() -> Path | None:
    """The boot partition's folder, where a person with the card in a laptop looks."""
    return next((Path(d) for d in BOOT_DIRS if Path(d).is_dir()), None)


def write_claim_file(folder: Path | None, code: str, fleet_url: str) -> None:
    """Say the claim code on the boot partition, with what to do with it."""
    if folder is None:
        return
    text = (
        f"This sensor-bridge waits to be claimed. Its claim code:\n\n    {code}\n\n"
        f"Enter it on the fleet page ({fleet_url}/bridges, 'Claim a bridge') with the store's\n"
        "name and time zone. The bridge then gets its config from the cloud.\n"
    )
    try:
        if (folder / CLAIM_FILE).read_text() == text:
            return  # written already: a card is not rewritten at every enroll
    except (OSError, UnicodeDecodeError):
        pass
    try:
        write_atomic(folder / CLAIM_FILE, text, 0o644)
    except OSError:
        pass  # a read-only card: the code is still in `sensor-bridge status` and /health


def remove_claim_file(folder: Path | None) -> None:
    if folder is not None:
        try:
            (folder / CLAIM_FILE).unlink(missing_ok=True)
        except OSError:
            pass
