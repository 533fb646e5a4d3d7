"""mosquitto's files for this bridge: what ``sensor-bridge mqtt`` writes, and the checks before it does.

:class:`Broker` rewrites, under the broker dir (``--broker-dir``,
``$SENSOR_BRIDGE_BROKER_DIR``, default ``/etc/mosquitto``, where Debian's
mosquitto.conf includes ``conf.d``):

* ``conf.d/sensor-bridge.conf``: listener, auth, ACL, persistence (0644)
* ``sensor-bridge/passwd``, ``sensor-bridge/acl``: read by mosquitto (0640 root:mosquitto)
* ``sensor-bridge/devices.json``: which devices exist, their topic and client id,
  and the listener; never a password (0600)
* ``sensor-bridge/relay.secret``: the relay's password when ``[mqtt]`` sets none;
  generated on the first setup that has a config, never in an image (0640
  root:sensor-bridge); the relay reads it by itself (:func:`relay_password`)

and reloads a running broker when anything changed. The files live under
/etc/mosquitto rather than /etc/sensor-bridge because mosquitto drops to its
own user, which cannot enter /etc/sensor-bridge (0750). Device passwords are
only stored hashed.

mosquitto reads its ACL and config a line at a time, so a value with a newline
would be a line of its own (issue 19: ``topics = ["milesight/#\npattern
readwrite #"]`` let every device read every topic). Every name, topic and
address is checked against a conservative grammar (:func:`username_problem`,
:func:`topic_problem`, :func:`bind_problem`) before any file is written, the
password file is changed on a copy that replaces it only when
``mosquitto_passwd`` has accepted everything, and each file is replaced whole:
a refused change leaves every old file as it was. The commands that drive this
are in appliance/broker.py.
"""

from __future__ import annotations

import fcntl
import grp
import hashlib
import hmac
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import string
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import MqttConfig
from .errors import BridgeError
from .files import sync_dir, write_atomic
from .relay_tables import check_mqtt_username, check_topic_filter

DEFAULT_DIR = "/etc/mosquitto"
DIR_ENV = "SENSOR_BRIDGE_BROKER_DIR"
SNIPPET = "conf.d/sensor-bridge.conf"
OWN = "sensor-bridge"
# An MQTT username (a device's name is its username) or topic level, conservatively: no
# whitespace, no control character, none of mosquitto's ACL substitutions (%u, %c), no `$SYS`.
# Always fullmatch: a `^...$` pattern lets a trailing newline through.
# A relay outage of a day with a few hundred devices fits; beyond, mosquitto drops the oldest.
QUEUE_MESSAGES = 200_000
QUEUE_BYTES = 256 * 1024 * 1024
MAX_PACKET = 1024 * 1024


class BrokerError(BridgeError):
    """A broker change could not be made; the text says what and how to fix it."""


def broker_dir(flag: str | None = None) -> Path:
    """Where mosquitto's config lives: the flag, else ``$SENSOR_BRIDGE_BROKER_DIR``, else /etc/mosquitto."""
    return Path(flag or os.environ.get(DIR_ENV) or DEFAULT_DIR)


def relay_password(mqtt: MqttConfig, root: Path | None = None) -> str:
    """The relay's broker password: ``[mqtt] password``, else the one ``mqtt setup`` generated."""
    if mqtt.password:
        return mqtt.password
    try:
        return (broker_dir(str(root) if root else None) / OWN / "relay.secret").read_text().strip()
    except OSError:
        return ""


def password_matches(stored: str, password: str) -> bool:
    """Does a mosquitto_passwd hash (``$6$`` sha512 or ``$7$`` PBKDF2-SHA512) belong to ``password``?"""
    import base64

    parts = stored.split("$")
    try:
        if len(parts) == 4 and parts[1] == "6":
            salt, digest = base64.b64decode(parts[2]), base64.b64decode(parts[3])
            return hmac.compare_digest(hashlib.sha512(password.encode() + salt).digest(), digest)
        if len(parts) == 5 and parts[1] == "7":
            salt, digest = base64.b64decode(parts[3]), base64.b64decode(parts[4])
            mine = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, int(parts[2]))
            return hmac.compare_digest(mine, digest)
    except ValueError:
        return False
    return False


def new_password() -> str:
    """20 letters and digits (~119 bits): types into any device's web form."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(20))


def topic_prefix(topics: list[str]) -> str:
    """Where devices publish: under the first relay subscription that ends in ``/#``."""
    for pattern in topics:
        if pattern.endswith("/#") and "+" not in pattern and "#" not in pattern[:-2]:
            return pattern[:-2]
    return "milesight"


def topic_problem(topic: str, wildcards: bool = True) -> str | None:
    """Why ``topic`` may not be written into mosquitto's ACL (None: it may): the config's own
    rule (appliance/relay_tables.py, so ``config check`` and ``mqtt setup`` agree), checked again
    here because a writer never trusts its caller; a device's own topic takes no wildcard."""
    problem = check_topic_filter(topic)
    if problem is None and not wildcards and ("+" in topic or "#" in topic):
        problem = f"{topic!r}: a device's topic names one device, no + or #"
    return f"topic {topic!r}: {problem}" if problem else None


def username_problem(name: str, what: str = "username") -> str | None:
    """Why ``name`` may not be a user of mosquitto's password file and ACL (None: it may)."""
    if check_mqtt_username(name) is None:
        return None
    return f"{what} {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"


def bind_problem(bind: str) -> str | None:
    """Why ``bind`` may not follow ``listener PORT`` in mosquitto's config (None: it may)."""
    if not bind:
        return None
    try:
        ipaddress.ip_address(bind)
    except ValueError:
        return f"--bind {bind!r}: expected an IP address of this bridge, or '' for all"
    return None


def _owner(group: str | None) -> tuple[int, int] | None:
    """root and ``group`` when we run as root and the group exists; else leave ownership alone."""
    if not group or os.geteuid() != 0:
        return None
    try:
        return 0, grp.getgrnam(group).gr_gid
    except KeyError:
        return None  # no such group on this machine (a dev box): mode alone protects it


@dataclass
class Device:
    name: str
    topic: str
    client_id: str
    added_at: str

    @property
    def subtree(self) -> str:
        return f"{self.topic}/#"  # also matches the topic itself


class Broker:
    """mosquitto's files for this bridge, rewritten from ``[mqtt]`` and the device list."""

    def __init__(self, root: Path, mqtt: MqttConfig, have_config: bool) -> None:
        self.root = root
        self.mqtt = mqtt
        self.have_config = have_config
        self.own = root / OWN
        self.conf = root / SNIPPET
        self.passwd = self.own / "passwd"
        self.acl = self.own / "acl"
        self.registry_path = self.own / "devices.json"
        self.secret = self.own / "relay.secret"
        self.changes: list[str] = []
        self.notes: list[str] = []

    # ------------------------------------------------------------ state

    @contextmanager
    def locked(self) -> Iterator[dict[str, Any]]:
        """The device list, with every other ``mqtt`` command waiting its turn."""
        self.own.mkdir(parents=True, exist_ok=True)
        os.chmod(self.own, 0o755)  # mosquitto's user must reach passwd and acl
        with open(self.own / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            registry = self._load()
            yield registry

    def _load(self) -> dict[str, Any]:
        try:
            registry = json.loads(self.registry_path.read_text())
        except FileNotFoundError:
            registry = {}
        except (OSError, ValueError) as exc:
            raise BrokerError(
                f"{self.registry_path} is unreadable ({exc}); fix or remove it"
            ) from None
        registry.setdefault("listener", {"port": self.mqtt.port, "bind": ""})
        registry.setdefault("devices", {})
        if self.have_config:
            registry["listener"]["port"] = self.mqtt.port
        return registry

    def devices(self, registry: dict[str, Any]) -> list[Device]:
        return [Device(name, **fields) for name, fields in sorted(registry["devices"].items())]

    # ------------------------------------------------------------ files

    def _write(self, path: Path, text: str, mode: int, group: str | None) -> None:
        """Replace ``path`` when its text differs; always (re)apply mode and group."""
        try:
            same = path.read_text() == text
        except OSError:
            same = False
        if same:
            self._secure(path, mode, group)
            return
        # Mode and group are set before the rename: relay.secret is never readable by others.
        write_atomic(path, text, mode, _owner(group))
        self.changes.append(f"wrote {path}")

    @staticmethod
    def _secure(path: Path, mode: int, group: str | None) -> None:
        os.chmod(path, mode)
        owner = _owner(group)
        if owner:
            os.chown(path, *owner)

    def snippet(self, registry: dict[str, Any]) -> str:
        listener = registry["listener"]
        bind = f" {listener['bind']}" if listener.get("bind") else ""
        return f"""\
# sensor-bridge: the MQTT listener for the store's devices. Written by `sensor-bridge mqtt
# setup` from [mqtt]; run that again instead of editing (it rewrites this file).
listener {listener["port"]}{bind}
allow_anonymous false
password_file {self.passwd}
acl_file {self.acl}
# Queued QoS 1 messages for the relay survive a broker restart: saved on exit and every minute.
persistence true
autosave_interval 60
# Room for a long relay outage (mosquitto's default keeps only 1000 messages per client).
max_queued_messages {QUEUE_MESSAGES}
max_queued_bytes {QUEUE_BYTES}
# A report is a few KB; refuse anything absurd. Forget sessions of devices gone for a month.
max_packet_size {MAX_PACKET}
persistent_client_expiration 30d
"""

    def acl_text(self, registry: dict[str, Any]) -> str:
        lines = [
            "# sensor-bridge: who may do what on the store's broker. Written by `sensor-bridge mqtt`;",
            "# change devices with `sensor-bridge mqtt add-device|remove-device`, not here.",
            "",
            "# The relay reads what devices publish, and nothing else.",
            f"user {self.mqtt.username}",
            *(f"topic read {pattern}" for pattern in self.mqtt.topics),
        ]
        for device in self.devices(registry):
            lines += [
                "",
                f"# device {device.name}: publishes only under its own topic",
                f"user {device.name}",
                f"topic write {device.subtree}",
            ]
        return "\n".join(lines) + "\n"

    def _relay_secret(self) -> str | None:
        """The relay user's password, generating one on a configured bridge when none exists."""
        if self.mqtt.password:
            return self.mqtt.password
        try:
            return self.secret.read_text().strip()
        except FileNotFoundError:
            pass
        if not self.have_config:
            # Building an image: a password made now would be the same on every SD card.
            self.notes.append(
                "no config yet: the relay's password is made when `mqtt setup` runs with one"
            )
            return None
        self._write(self.secret, new_password() + "\n", 0o640, "sensor-bridge")
        return self.secret.read_text().strip()

    def _passwd_users(self) -> dict[str, str]:
        try:
            text = self.passwd.read_text()
        except FileNotFoundError:
            return {}
        users = {}
        for line in text.splitlines():
            user, sep, hashed = line.partition(":")
            if sep and user.strip():
                users[user.strip()] = hashed.strip()
        return users

    def _passwd(self, *args: str) -> None:
        """Run mosquitto_passwd (only ever on the copy :meth:`_new_passwords` makes)."""
        tool = shutil.which("mosquitto_passwd")
        if not tool:
            raise BrokerError(
                "mosquitto_passwd not found: install mosquitto (apt-get install mosquitto)"
            )
        done = subprocess.run([tool, *args], capture_output=True, text=True)
        if done.returncode != 0:
            raise BrokerError(
                f"mosquitto_passwd {args[0]} failed: {(done.stderr or done.stdout).strip()}"
            )

    def _new_passwords(self, registry: dict[str, Any], fresh: dict[str, str]) -> Path | None:
        """The password file as it must be, made on a copy: the relay, every device; ``fresh``
        passwords replace old ones. None when nothing changes. The copy takes the old file's
        place only after every file is checked, so a refused name leaves the old one whole."""
        users = self._passwd_users()
        relay = self._relay_secret()
        wanted = set(registry["devices"]) | ({self.mqtt.username} if relay else set())
        stale = sorted(set(users) - wanted - set(fresh))
        relay_due = bool(relay) and not password_matches(users.get(self.mqtt.username, ""), relay)
        if not (relay_due or fresh or stale):
            return None
        fd, name = tempfile.mkstemp(prefix=".passwd.", dir=self.own)  # 0600 until it is whole
        copy = Path(name)
        try:
            with os.fdopen(fd, "w") as out:
                out.write(self.passwd.read_text() if self.passwd.exists() else "")
            if relay_due:
                self._passwd("-b", str(copy), self.mqtt.username, relay)
                self.changes.append(f"set the relay's password (user {self.mqtt.username})")
            for name_, password in fresh.items():
                self._passwd("-b", str(copy), name_, password)
                self.changes.append(f"set the password of device {name_}")
            for user in stale:
                self._passwd("-D", str(copy), user)
                self.changes.append(f"removed user {user} from {self.passwd}")
            self._secure(copy, 0o640, "mosquitto")
            with copy.open("rb") as written:  # on disk before it takes the old file's name
                os.fsync(written.fileno())
        except BaseException:
            copy.unlink(missing_ok=True)
            raise
        return copy

    def _refuse_unsafe(self, registry: dict[str, Any]) -> None:
        """Every value bound for mosquitto's files, checked before any is written."""
        problems = [
            username_problem(self.mqtt.username, "[mqtt] username"),
            *(topic_problem(t) for t in self.mqtt.topics),
            bind_problem(registry["listener"].get("bind") or ""),
        ]
        port = registry["listener"].get("port")
        if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
            problems.append(f"listener port {port!r}: expected 1-65535")
        for name, device in registry["devices"].items():
            problems.append(username_problem(name, "device name"))
            problems.append(topic_problem(str(device.get("topic", "")), wildcards=False))
            problems.append(username_problem(str(device.get("client_id", "")), "client id"))
        found = [p for p in problems if p]
        if found:
            raise BrokerError(
                "; ".join(found) + "; nothing was written (mosquitto reads each line as a rule)"
            )

    def apply(self, registry: dict[str, Any], fresh: dict[str, str] | None = None) -> None:
        """Make every file match ``registry`` and ``[mqtt]``; reload a running broker if anything changed."""
        self._refuse_unsafe(registry)
        before = len(self.changes)
        passwords = self._new_passwords(registry, fresh or {})  # mosquitto_passwd may refuse
        listener_changed = not self.conf.exists() or self.conf.read_text() != self.snippet(registry)
        self._write(self.conf, self.snippet(registry), 0o644, None)
        self._write(self.acl, self.acl_text(registry), 0o640, "mosquitto")
        if passwords:
            os.replace(passwords, self.passwd)
            sync_dir(self.own)
        elif not self.passwd.exists():  # born private: mosquitto_passwd fills it later
            self._write(self.passwd, "", 0o640, "mosquitto")
        self._secure(self.passwd, 0o640, "mosquitto")
        self._write(
            self.registry_path, json.dumps(registry, indent=1, sort_keys=True) + "\n", 0o600, None
        )
        if len(self.changes) > before:
            self._reload(listener_changed)

    # ------------------------------------------------------------ the running broker

    def running_pid(self) -> int | None:
        """mosquitto's pid, from the pid_file its main config names (Debian: /run/mosquitto/...)."""
        try:
            main = (self.root / "mosquitto.conf").read_text()
        except OSError:
            return None
        match = re.search(r"^\s*pid_file\s+(\S+)", main, re.MULTILINE)
        try:
            if match:
                pid = int(Path(match.group(1)).read_text().strip())
            elif self.root == Path(DEFAULT_DIR) and Path("/run/systemd/system").exists():
                # trixie's mosquitto.conf names no pid_file; systemd knows the broker's pid.
                pid = int(
                    subprocess.run(
                        ["systemctl", "show", "-p", "MainPID", "--value", "mosquitto.service"],
                        capture_output=True,
                        text=True,
                        timeout=10,
                    ).stdout.strip()
                    or 0
                )
            else:
                return None
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except (OSError, ValueError, subprocess.TimeoutExpired):
            return None
        return pid if pid and comm == "mosquitto" else None

    def _reload(self, listener_changed: bool) -> None:
        pid = self.running_pid()
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGHUP)
        except OSError as exc:
            self.changes.append(f"could not reload mosquitto (pid {pid}): {exc.strerror}")
            return
        self.changes.append(f"reloaded mosquitto (pid {pid}): passwords and ACL apply now")
        if not listener_changed:
            return
        # A reload does not move a listener. Under systemd, restart it; queued messages are on disk.
        if self.root == Path(DEFAULT_DIR) and Path("/run/systemd/system").exists():
            done = subprocess.run(
                ["systemctl", "try-restart", "--no-block", "mosquitto.service"],
                capture_output=True,
                text=True,
            )
            if done.returncode == 0:
                self.changes.append("restarting mosquitto for the new listener")
                return
        self.changes.append("the listener changed: restart mosquitto (systemctl restart mosquitto)")

    # ------------------------------------------------------------ commands

    def setup(self, bind: str | None) -> None:
        with self.locked() as registry:
            if bind is not None:
                registry["listener"]["bind"] = bind
            self.apply(registry)

    def add_device(self, name: str, rotate: bool) -> tuple[Device, str | None, dict[str, Any]]:
        """The device (created if new) and its password when one was issued now."""
        if problem := username_problem(name, "device name"):
            raise BrokerError(problem)
        if name == self.mqtt.username:
            raise BrokerError(f"device name {name!r} is the relay's own user ([mqtt] username)")
        with self.locked() as registry:
            password = None
            if name not in registry["devices"]:
                topic = f"{topic_prefix(self.mqtt.topics)}/{name}".lstrip("/")
                registry["devices"][name] = {
                    "topic": topic,
                    "client_id": name,
                    "added_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                }
                self.changes.append(f"added device {name}")
                password = new_password()
            elif rotate:
                password = new_password()
            self.apply(registry, {name: password} if password else {})
            return Device(name, **registry["devices"][name]), password, registry["listener"]

    def remove_device(self, name: str) -> bool:
        with self.locked() as registry:
            known = registry["devices"].pop(name, None) is not None
            if known:
                self.changes.append(f"removed device {name}")
            self.apply(registry)
            return known
