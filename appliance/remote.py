"""Remote access over WireGuard: the bridge's key, its tunnel files, and the hub's [Peer] block.

Choice: the distribution's kernel WireGuard driven by **systemd-networkd**
(``.netdev`` + ``.network``), not wg-quick: networkd brings the tunnel up at
boot, re-resolves the hub's name, and keeps it apart from the uplink: the
``.network`` routes only ``allowed_ips`` through ``wg-bridge`` (no default route,
no DNS) and is not ``RequiredForOnline``, so a dead hub never delays or
reroutes delivery. WireGuard admits a packet from the hub only when its source
is in ``allowed_ips``; the firewall (provision.sh) answers only SSH on the tunnel.

``sensor-bridge remote setup`` (run by sensor-bridge-config.service at every
boot it runs, after the config import):

* makes the bridge's private key once with wireguard-tools (``wg genkey``; the public
  key with ``wg pubkey``: no cryptography here) (``/etc/systemd/network/sensor-bridge-wg.key``,
  0640 root:systemd-network, as networkd needs; never printed, never sent
  anywhere, untouched by config imports) and its public key next to it (0644);
* publishes the public key as ``sensor-bridge-wireguard.pub`` on the boot
  partition, so a person reads it on a laptop before the bridge is ever online;
* writes ``90-sensor-bridge-wg.netdev`` / ``.network`` from ``[remote]``, or
  removes them when there is no ``[remote]`` (no tunnel, no interface). A value
  networkd would read as more than one setting (a newline, a control character,
  a scope id) is refused before anything is written; each file is replaced whole.

``sensor-bridge remote show`` prints the ``[Peer]`` block to paste into the hub's config.
"""

from __future__ import annotations

import argparse
import grp
import ipaddress
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from .boot_config import BOOT_FILES
from .config import Config, ConfigError, RemoteConfig, load_config
from .errors import BridgeError
from .files import write_atomic
from .fleet import NETWORK_DIR, PUB_NAME
from .fleet import network_dir as default_network_dir

INTERFACE = "wg-bridge"
KEY_NAME = "sensor-bridge-wg.key"
BOOT_PUB_NAME = "sensor-bridge-wireguard.pub"
NETDEV = "90-sensor-bridge-wg.netdev"
NETWORK = "90-sensor-bridge-wg.network"
MARK = "# Written by `sensor-bridge remote setup` from [remote] in the config; edit the config, not this."


# ---------------------------------------------------------------- keys, by wireguard-tools

WG_MISSING = "wireguard-tools not installed (apt-get install wireguard-tools): `wg` makes the key"


class TunnelError(BridgeError):
    """The key or a tunnel file could not be made; the text says what and why."""


def _wg(command: str, given: str = "") -> str:
    """``wg genkey`` / ``wg pubkey``: WireGuard's own tool, not cryptography written here."""
    tool = shutil.which("wg")
    if not tool:
        raise TunnelError(WG_MISSING)
    done = subprocess.run([tool, command], input=given, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise TunnelError(f"wg {command} failed: {done.stderr.strip() or done.returncode}")
    return done.stdout.strip()


def public_key_of(private_key: str) -> str:
    """The base64 public key of a base64 WireGuard private key (``wg pubkey``)."""
    return _wg("pubkey", private_key.strip() + "\n")


def new_private_key() -> str:
    """A new base64 WireGuard private key (``wg genkey``)."""
    return _wg("genkey")


# ---------------------------------------------------------------- the files


# networkd reads a file a line at a time and splits some settings at whitespace: a value with
# a newline, a control character or a space would be settings of its own (issue 19: a second
# [WireGuardPeer] with AllowedIPs=0.0.0.0/0 from a newline in an IPv6 scope id). The config
# model checks these keys; the writer checks again, so no caller can hand it such a value.
_DNS_NAME = re.compile(
    r"(?=.{1,253}\.?$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)
_BRIDGE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_WG_KEY = re.compile(r"[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=")


def _unsafe(value: str) -> bool:
    return not value or any(c.isspace() or not c.isprintable() for c in value) or "%" in value


def _address_problem(value: str, network: bool) -> str | None:
    if _unsafe(value):
        return f"{value!r}: a control character, whitespace or a scope id (%) has no place here"
    try:
        (ipaddress.ip_network(value, strict=False) if network else ipaddress.ip_interface(value))
    except ValueError:
        return f"{value!r}: expected an IP {'network' if network else 'address/prefix'}"
    return None


def _endpoint_problem(value: str) -> str | None:
    if _unsafe(value):
        return f"{value!r}: a control character, whitespace or a scope id (%) has no place here"
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
        return f"{value!r}: expected host:port"
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return f"{value!r}: expected [IPv6 address]:port"
        return None
    if _DNS_NAME.fullmatch(host):
        return None
    return f"{value!r}: expected a DNS name or an IP address before the port"


def refuse_unsafe(remote: RemoteConfig) -> None:
    """Raise TunnelError naming each [remote] value that networkd would not read as one value."""
    problems = []
    if problem := _address_problem(remote.address, network=False):
        problems.append(f"remote.address: {problem}")
    if problem := _endpoint_problem(remote.endpoint):
        problems.append(f"remote.endpoint: {problem}")
    if not _WG_KEY.fullmatch(remote.peer_public_key):
        problems.append(f"remote.peer_public_key: {remote.peer_public_key!r} is no WireGuard key")
    for i, net in enumerate(remote.allowed_ips):
        if problem := _address_problem(net, network=True):
            problems.append(f"remote.allowed_ips[{i}]: {problem}")
    keepalive = remote.keepalive_s
    if not isinstance(keepalive, int) or isinstance(keepalive, bool) or not 0 <= keepalive <= 65535:
        problems.append(f"remote.keepalive_s: {keepalive!r}: expected 0-65535")
    if problems:
        raise TunnelError("; ".join(problems) + "; tunnel files left as they are")


def netdev_text(remote: RemoteConfig, key_file: Path) -> str:
    refuse_unsafe(remote)
    return "\n".join(
        [
            MARK,
            "[NetDev]",
            f"Name={INTERFACE}",
            "Kind=wireguard",
            "Description=sensor-bridge remote access: SSH from the admin network only",
            "",
            "[WireGuard]",
            f"PrivateKeyFile={key_file}",
            "",
            "[WireGuardPeer]",
            f"PublicKey={remote.peer_public_key}",
            f"Endpoint={remote.endpoint}",
            # WireGuard drops whatever arrives from the hub with a source outside these.
            f"AllowedIPs={','.join(remote.allowed_ips)}",
            f"PersistentKeepalive={remote.keepalive_s}",
            "",
        ]
    )


def network_text(remote: RemoteConfig) -> str:
    refuse_unsafe(remote)
    routes = [line for net in remote.allowed_ips for line in ("", "[Route]", f"Destination={net}")]
    return "\n".join(
        [
            MARK,
            "[Match]",
            f"Name={INTERFACE}",
            "",
            # Not needed for network-online.target: the data path never waits for the tunnel.
            "[Link]",
            "RequiredForOnline=no",
            "",
            # Only the admin network goes through the tunnel: no default route, no DNS from it.
            "[Network]",
            f"Address={remote.address}",
            "DHCP=no",
            "IPv6AcceptRA=no",
            "LinkLocalAddressing=no",
            *routes,
            "",
        ]
    )


class Tunnel:
    """The bridge's WireGuard key and networkd files under ``network_dir``; the public key on the card."""

    def __init__(
        self, network_dir: str | Path | None = None, boot_files: tuple[str, ...] = BOOT_FILES
    ) -> None:
        self.dir = Path(network_dir or default_network_dir())
        self.boot_files = boot_files
        self.key_file = self.dir / KEY_NAME
        self.pub_file = self.dir / PUB_NAME

    def public_key(self) -> str | None:
        try:
            return self.pub_file.read_text().strip() or None
        except OSError:
            return None

    def ensure_key(self) -> tuple[str, bool]:
        """The bridge's public key, made (once) with its private key if there is none yet."""
        if self.key_file.exists():
            try:
                public = public_key_of(self.key_file.read_text().strip())
            except TunnelError as exc:
                raise TunnelError(f"{self.key_file}: {exc}") from None
            if self.public_key() != public:
                self._write(self.pub_file, public + "\n", 0o644)
            return public, False
        private = new_private_key()
        # Whole or not at all (0600 from the start): a power cut never leaves half a key behind.
        write_atomic(self.key_file, private + "\n", 0o600)
        self._let_networkd_read(self.key_file)
        public = public_key_of(private)
        self._write(self.pub_file, public + "\n", 0o644)
        return public, True

    def _let_networkd_read(self, path: Path) -> None:
        """0640 root:systemd-network where networkd runs; 0600 elsewhere (a test, a machine without it)."""
        if os.geteuid() != 0:
            return
        try:
            group = grp.getgrnam("systemd-network").gr_gid
        except KeyError:
            return
        os.chown(path, 0, group)
        os.chmod(path, 0o640)

    def _write(self, path: Path, text: str, mode: int) -> bool:
        if path.exists() and path.read_text() == text:
            return False
        write_atomic(path, text, mode)  # a failed write leaves the old file whole
        return True

    def publish(self, public: str) -> Path | None:
        """The public key on the boot partition, where the config is dropped; None without one."""
        for name in self.boot_files:
            folder = Path(name).parent
            if folder.is_dir():
                target = folder / BOOT_PUB_NAME
                try:
                    self._write(target, public + "\n", 0o644)
                except OSError:  # a read-only card: the key is still in status and the heartbeat
                    return None
                return target
        return None

    def apply(self, remote: RemoteConfig | None) -> list[str]:
        """Write (or, without [remote], remove) the networkd files; what changed, one line each."""
        changes = []
        wanted = (
            {NETDEV: netdev_text(remote, self.key_file), NETWORK: network_text(remote)}
            if remote
            else {}
        )
        for name in (NETDEV, NETWORK):
            path = self.dir / name
            if name in wanted:
                if self._write(path, wanted[name], 0o644):  # no secret: the key is in its own file
                    changes.append(f"wrote {path}")
            elif path.exists():
                path.unlink()
                changes.append(f"removed {path} (no [remote] in the config)")
        return changes


def peer_block(config: Config, public: str) -> str:
    """The [Peer] section for the hub's wg0.conf: this bridge, reachable at its tunnel address."""
    if config.remote is None:
        raise ConfigError(
            [
                "[remote]: not in the config; add it (address, peer_public_key, endpoint, allowed_ips)"
            ]
        )
    # A person pastes this into the hub's config as root: a newline in the bridge's id would be
    # a line of the hub's WireGuard config (AllowedIPs = 0.0.0.0/0 to this bridge).
    if not _BRIDGE_ID.fullmatch(config.bridge.id):
        raise ConfigError([f"bridge.id: {config.bridge.id!r} cannot name a [Peer] of the hub"])
    if not _WG_KEY.fullmatch(public):
        raise ConfigError([f"the bridge's public key file holds {public!r}, no WireGuard key"])
    problem = _address_problem(config.remote.address, network=False)
    if problem:
        raise ConfigError([f"remote.address: {problem}"])
    address = ipaddress.ip_interface(config.remote.address)
    host = ipaddress.ip_network(f"{address.ip}/{address.max_prefixlen}")
    return "\n".join(
        [
            "[Peer]",
            f"# sensor-bridge {config.bridge.id}",
            f"PublicKey = {public}",
            f"AllowedIPs = {host}",
            "",
        ]
    )


def handshake() -> str:
    """The tunnel's last handshake as ``wg`` tells it (root only), or why it cannot be told."""
    if not shutil.which("wg"):
        return "unknown (wireguard-tools not installed)"
    shown = subprocess.run(
        ["wg", "show", INTERFACE, "latest-handshakes"], capture_output=True, text=True
    )
    if shown.returncode != 0 and "not permitted" in shown.stderr:
        return "unknown (only root sees the tunnel: sudo sensor-bridge status)"
    if shown.returncode != 0:
        return f"no tunnel ({shown.stderr.strip() or 'wg show failed'})"
    stamps = [int(line.split()[1]) for line in shown.stdout.splitlines() if len(line.split()) == 2]
    if not stamps or not max(stamps):
        return (
            "no handshake with the hub yet: check the hub's [Peer] (sensor-bridge remote show), "
            "[remote] peer_public_key and endpoint"
        )
    import time

    return f"last handshake {int(time.time()) - max(stamps)} s ago"


# ---------------------------------------------------------------- commands


def _setup(args: argparse.Namespace) -> int:
    tunnel = Tunnel(args.network_dir)
    try:
        public, made = tunnel.ensure_key()
    except TunnelError as exc:
        print(f"wireguard: {exc}", file=sys.stderr)
        return 1
    print(f"wireguard: {'made the bridge key' if made else 'bridge key'} {public}")
    published = tunnel.publish(public)
    if published:
        print(f"wireguard: public key on the boot partition: {published}")
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(
            f"wireguard: no valid config ({exc.problems[0]}); tunnel files left as they are",
            file=sys.stderr,
        )
        return 0
    try:
        changes = tunnel.apply(config.remote)
    except TunnelError as exc:
        print(f"wireguard: {exc}", file=sys.stderr)
        return 2
    for line in changes:
        print(f"wireguard: {line}")
    return 0


def _show(args: argparse.Namespace) -> int:
    tunnel = Tunnel(args.network_dir)
    public = tunnel.public_key()
    if not public:
        print(
            "this bridge has no WireGuard key yet: `sudo sensor-bridge remote setup` makes one",
            file=sys.stderr,
        )
        return 1
    try:
        config = load_config(args.config)
        block = peer_block(config, public)
    except ConfigError as exc:
        print(f"public key {public}\n{exc.report()}", file=sys.stderr)
        return 2
    print(
        f"# bridge public key {public}; tunnel {INTERFACE} {config.remote.address} -> {config.remote.endpoint}"
    )
    print(f"# {handshake()}")
    print(
        "# paste into the hub's /etc/wireguard/wg0.conf, then: sudo systemctl reload wg-quick@wg0"
    )
    print(block, end="")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    remote = commands.add_parser(
        "remote", help="WireGuard remote access: the bridge's key and the hub's [Peer]"
    )
    actions = remote.add_subparsers(dest="remote_command", metavar="ACTION")
    remote.set_defaults(func=lambda a: (remote.print_help(), 2)[1])
    for name, func, text in (
        (
            "setup",
            _setup,
            "make the key once, publish it, write the tunnel's networkd files (at boot)",
        ),
        ("show", _show, "print the [Peer] block to paste into the hub's config"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument(
            "--network-dir", help=f"where networkd's files live (default {NETWORK_DIR})"
        )
        action.set_defaults(func=func)
