"""The store's MQTT broker: Debian's mosquitto, set up by ``sensor-bridge mqtt ...``.

``mqtt setup`` writes mosquitto's part for this bridge from ``[mqtt]``: a
listener on the configured port, no anonymous clients, a password file, an ACL
in which each device may only publish under its own topic subtree and only
the relay's user may subscribe, and persistence with room for a long relay
outage. ``mqtt add-device NAME`` creates a device's credentials and prints
exactly what to type into the device's web page (``add-gateway``: a Milesight
UG65/UG67's); ``remove-device`` and ``list`` do what they say. Every command is
idempotent: a second run changes nothing and says so. A change is applied to a
running broker at once (SIGHUP reloads passwords and ACL; a new listener needs
a restart, and the command says so).

This file is the commands and what they print; the files they write, where
they live and the checks that keep a hostile name out of them are in
appliance/broker_files.py. ``add-device`` shows a password once, and
``add-device NAME --new-password`` issues a new one.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .broker_files import (
    DEFAULT_DIR,
    DIR_ENV,
    SNIPPET,
    Broker,
    BrokerError,
    Device,
    broker_dir,
)
from .config import ConfigError, MqttConfig, load_config

# boot_config imports these from here (the names it had before the files moved).
__all__ = ["SNIPPET", "Broker", "BrokerError", "broker_dir", "register"]


# ---------------------------------------------------------------- printing


def lan_addresses() -> list[str]:
    """This bridge's IPv4 addresses a device on the store network could reach."""
    import psutil

    found = []
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            ip = address.address
            if address.family.name == "AF_INET" and not ip.startswith(("127.", "169.254.")):
                found.append(ip)
    return found


def describe_device(
    device: Device, password: str | None, listener: dict[str, Any], relay_topics: list[str]
) -> str:
    bind = listener.get("bind") or ""
    hosts = [bind] if bind and bind not in ("0.0.0.0", "::") else lan_addresses()
    host = hosts[0] if hosts else "<this bridge's IP address>"
    also = f"   (or {', '.join(hosts[1:])})" if len(hosts) > 1 else ""
    shown = password or (
        "(unchanged; shown only when issued. New one: sensor-bridge mqtt add-device "
        f"{device.name} --new-password)"
    )
    lines = [
        f"Device {device.name}: type this into its web page (Communication > MQTT):",
        f"  Broker address:    {host}{also}",
        f"  Broker port:       {listener['port']}",
        f"  Client ID:         {device.client_id}",
        "  User credentials:  on",
        f"  Username:          {device.name}",
        f"  Password:          {shown}",
        f"  Topic:             {device.topic}",
        "  QoS:               1",
        "  TLS:               off",
    ]
    from .push.sender import topic_matches

    if not any(topic_matches(pattern, device.topic) for pattern in relay_topics):
        lines.append(
            f"Warning: the relay does not subscribe to {device.topic}; add it to [mqtt] topics."
        )
    return "\n".join(lines)


def describe_gateway(
    device: Device, password: str | None, listener: dict[str, Any], relay_topics: list[str]
) -> str:
    """What to type into a Milesight UG65/UG67's web page so it forwards its uplinks to the relay."""
    device_text = describe_device(device, password, listener, relay_topics).splitlines()
    fields = {
        line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip() for line in device_text[1:7]
    }
    lines = [
        f"Gateway {device.name}: on the UG6x's web page, Network Server > Applications > (your application)",
        "> Data Transmission > Add, Type MQTT:",
        f"  Broker Address:    {fields['Broker address']}",
        f"  Broker Port:       {fields['Broker port']}",
        f"  Client ID:         {fields['Client ID']}",
        "  User Credentials:  enable",
        f"  Username:          {device.name}",
        f"  Password:          {fields['Password']}",
        "  TLS:               disable",
        f"  Uplink data topic: {device.topic}/uplink    QoS 1",
        "  Payload Codec:     either (the relay decodes raw frames of devices whose model it knows)",
        "Then tell the bridge which sensor each LoRaWAN device is, in its config:",
        '  [[mqtt.devices]]  sensor_id = "door-1"  dev_eui = "<DevEUI from the device label>"  model = "vs133"',
    ]
    lines += device_text[11:]  # the relay-subscription warning, if any
    return "\n".join(lines)


# ---------------------------------------------------------------- CLI


def _broker(args: argparse.Namespace) -> Broker:
    path = Path(args.config)
    if not path.exists():
        # An image being built (provision.sh in the chroot): the config arrives at first boot.
        broker = Broker(broker_dir(args.broker_dir), MqttConfig(), have_config=False)
        broker.notes.append(
            f"no config at {path}: used the [mqtt] defaults (port {MqttConfig.port})"
        )
        return broker
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(exc.report(), file=sys.stderr)
        raise SystemExit(2) from None
    return Broker(broker_dir(args.broker_dir), config.mqtt or MqttConfig(), have_config=True)


def _report(broker: Broker) -> None:
    for line in broker.changes + broker.notes:
        print(line)
    if not broker.changes:
        print(f"mosquitto config in {broker.root} is up to date")


def _run(args: argparse.Namespace, action: Any) -> int:
    broker = _broker(args)
    try:
        code = action(broker)
    except BrokerError as exc:
        _report(broker)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except PermissionError as exc:
        print(f"error: {exc.filename}: permission denied (run as root)", file=sys.stderr)
        return 1
    return int(code or 0)


def _setup(args: argparse.Namespace) -> int:
    def act(broker: Broker) -> None:
        broker.setup(args.bind)
        _report(broker)

    return _run(args, act)


def _adder(describe: Callable[..., str]) -> Callable[[argparse.Namespace], int]:
    """The command that adds a login and prints what to type into the device (or gateway)."""

    def command(args: argparse.Namespace) -> int:
        def act(broker: Broker) -> None:
            device, password, listener = broker.add_device(args.name, args.new_password)
            _report(broker)
            print()
            print(describe(device, password, listener, broker.mqtt.topics))

        return _run(args, act)

    return command


_add = _adder(describe_device)
_add_gateway = _adder(describe_gateway)


def _remove(args: argparse.Namespace) -> int:
    def act(broker: Broker) -> None:
        known = broker.remove_device(args.name)
        if not known:
            print(f"no device {args.name}: nothing to remove")
        _report(broker)

    return _run(args, act)


def _list(args: argparse.Namespace) -> int:
    def act(broker: Broker) -> None:
        registry = broker._load()
        listener = registry["listener"]
        where = f"{listener.get('bind') or 'all addresses'} port {listener['port']}"
        print(f"broker: {broker.root} (listener on {where}); relay user {broker.mqtt.username}")
        devices = broker.devices(registry)
        if not devices:
            print("no devices: add one with `sensor-bridge mqtt add-device NAME`")
            return
        print(f"{'device':<24} {'topic':<40} {'client id':<24} added")
        for d in devices:
            print(f"{d.name:<24} {d.topic:<40} {d.client_id:<24} {d.added_at}")

    return _run(args, act)


def register(commands: argparse._SubParsersAction) -> None:
    mqtt = commands.add_parser("mqtt", help="the store's MQTT broker: setup, devices")
    mqtt.add_argument(
        "--broker-dir",
        default=None,
        help=f"mosquitto's config dir (default ${DIR_ENV} or {DEFAULT_DIR})",
    )
    actions = mqtt.add_subparsers(dest="mqtt_command", metavar="ACTION")
    setup = actions.add_parser(
        "setup", help="write mosquitto's listener, ACL and relay user from [mqtt]"
    )
    setup.add_argument(
        "--bind", default=None, help="listen on this address only (kept for later runs; '' = all)"
    )
    setup.set_defaults(func=_setup)
    add = actions.add_parser(
        "add-device", help="create a device's credentials; print what to type into it"
    )
    add.add_argument("name", help="the device's name: its username, client id and topic")
    add.add_argument(
        "--new-password", action="store_true", help="issue a new password for an existing device"
    )
    add.set_defaults(func=_add)
    gateway = actions.add_parser(
        "add-gateway",
        help="credentials for a Milesight UG65/UG67 LoRaWAN gateway; "
        "print what to type into its web page",
    )
    gateway.add_argument("name", help="the gateway's name: its username, client id and topic")
    gateway.add_argument(
        "--new-password", action="store_true", help="issue a new password for an existing gateway"
    )
    gateway.set_defaults(func=_add_gateway)
    remove = actions.add_parser("remove-device", help="delete a device's credentials")
    remove.add_argument("name")
    remove.set_defaults(func=_remove)
    listing = actions.add_parser("list", help="the devices allowed to publish")
    listing.set_defaults(func=_list)
    mqtt.set_defaults(func=lambda a: (mqtt.print_help(), 2)[1])
