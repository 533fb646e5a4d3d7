"""WireGuard remote access without a WireGuard kernel: the key, the networkd files, the hub's
[Peer] block, the firewall text, and the public key in status and the heartbeat.

The tunnel itself (a handshake with a hub, SSH through it) needs a booted system with a
WireGuard kernel: that is the VM test image/README.md describes ("reach a bridge"), not built yet.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from conftest import REPO, base_tables, run_cli, write_config

from appliance.config import RemoteConfig
from appliance.remote import (
    BOOT_PUB_NAME,
    KEY_NAME,
    NETDEV,
    NETWORK,
    Tunnel,
    TunnelError,
    new_private_key,
    public_key_of,
)

needs_wg = pytest.mark.skipif(
    not shutil.which("wg"),
    reason="needs wireguard-tools (apt-get install wireguard-tools; provision.sh --dev installs it)",
)
pytestmark = needs_wg

HUB = base64.b64encode(bytes(range(32))).decode()
# Tunnel addresses only written into generated files here; nothing is ever sent to them.
REMOTE = {
    "address": "10.66.0.42/32",
    "peer_public_key": HUB,
    "endpoint": "hub.example.com:51820",
    "allowed_ips": ["10.66.0.1/32"],
}


def setup(tmp_path: Path, config: Path) -> subprocess.CompletedProcess[str]:
    return run_cli(
        "-c",
        str(config),
        "remote",
        "setup",
        "--network-dir",
        str(tmp_path / "network"),
        env={"PATH": "/usr/bin:/bin", "SENSOR_BRIDGE_NETWORK_DIR": str(tmp_path / "network")},
    )


def config_with(tmp_path: Path, **tables: object) -> Path:
    body = base_tables(tmp_path, "http://127.0.0.1:9/ingest")
    body.update(tables)
    return write_config(tmp_path / "config.toml", body)


def test_the_public_key_matches_rfc_7748():
    alice = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    public = base64.b64decode(public_key_of(base64.b64encode(alice).decode()))
    assert public.hex() == "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"


def test_keys_come_from_wireguard_tools():
    # RFC 7748 section 6.1, Alice's keys in WireGuard's base64; `wg pubkey` derives it.
    alice = "dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo="
    wg = subprocess.run(["wg", "pubkey"], input=alice + "\n", capture_output=True, text=True)
    assert wg.stdout.strip() == "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo="
    assert public_key_of(alice) == wg.stdout.strip()
    import appliance.remote

    assert not hasattr(appliance.remote, "_x25519"), "no Curve25519 by hand"
    made = new_private_key()
    assert len(base64.b64decode(made)) == 32 and made != new_private_key()
    with pytest.raises(TunnelError, match="wg pubkey failed"):
        public_key_of("not-a-key")


def test_the_key_is_made_once_kept_private_and_survives_a_new_config(tmp_path):
    config = config_with(tmp_path, remote=REMOTE)
    first = setup(tmp_path, config)
    assert first.returncode == 0, first.stderr
    key = tmp_path / "network" / KEY_NAME
    assert stat.S_IMODE(key.stat().st_mode) in (0o600, 0o640)
    public = public_key_of(key.read_text().strip())
    assert f"made the bridge key {public}" in first.stdout
    assert key.read_text().strip() not in first.stdout + first.stderr
    before = key.read_text()
    config_with(
        tmp_path, remote={**REMOTE, "keepalive_s": 10}
    )  # a re-import with a changed [remote]
    second = setup(tmp_path, config)
    assert key.read_text() == before and f"bridge key {public}" in second.stdout
    assert "PersistentKeepalive=10" in (tmp_path / "network" / NETDEV).read_text()


def test_the_networkd_files_route_only_the_admin_network(tmp_path):
    setup(tmp_path, config_with(tmp_path, remote=REMOTE))
    netdev = (tmp_path / "network" / NETDEV).read_text()
    network = (tmp_path / "network" / NETWORK).read_text()
    assert "Kind=wireguard" in netdev and f"PublicKey={HUB}" in netdev
    assert "Endpoint=hub.example.com:51820" in netdev and "AllowedIPs=10.66.0.1/32" in netdev
    assert f"PrivateKeyFile={tmp_path / 'network' / KEY_NAME}" in netdev
    assert "Address=10.66.0.42/32" in network and "RequiredForOnline=no" in network
    assert re.findall(r"^Destination=(.*)$", network, re.M) == ["10.66.0.1/32"]
    assert "Gateway" not in network and "DNS" not in network


def test_no_remote_table_means_no_tunnel(tmp_path):
    setup(tmp_path, config_with(tmp_path, remote=REMOTE))
    removed = setup(tmp_path, config_with(tmp_path))
    assert removed.returncode == 0
    assert (
        not (tmp_path / "network" / NETDEV).exists()
        and not (tmp_path / "network" / NETWORK).exists()
    )
    assert (tmp_path / "network" / KEY_NAME).exists()  # the key stays: a later [remote] reuses it


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"allowed_ips": ["0.0.0.0/0"]}, "remote.allowed_ips: 0.0.0.0/0 would send all traffic"),
        (
            {"peer_public_key": "not-a-key"},
            "remote.peer_public_key: expected a WireGuard public key",
        ),
        ({"endpoint": "hub.example.com"}, "remote.endpoint: expected the hub's host:port"),
        ({"address": "10.66.0.300/32"}, "remote.address: expected the bridge's tunnel address"),
    ],
)
def test_a_wrong_remote_table_is_refused_by_key(tmp_path, change, problem):
    checked = run_cli(
        "-c", str(config_with(tmp_path, remote={**REMOTE, **change})), "config", "check"
    )
    assert checked.returncode == 2 and problem in checked.stderr


def test_remote_show_prints_the_hubs_peer_block(tmp_path):
    config = config_with(tmp_path, remote=REMOTE)
    setup(tmp_path, config)
    public = (tmp_path / "network" / "sensor-bridge-wg.pub").read_text().strip()
    shown = run_cli("-c", str(config), "remote", "show", "--network-dir", str(tmp_path / "network"))
    assert shown.returncode == 0, shown.stderr
    block = shown.stdout[shown.stdout.index("[Peer]") :]
    assert (
        block
        == f"[Peer]\n# sensor-bridge store-test\nPublicKey = {public}\nAllowedIPs = 10.66.0.42/32\n"
    )


def test_the_public_key_reaches_the_boot_partition_status_and_heartbeat(tmp_path, monkeypatch):
    from appliance import fleet, remote

    boot = tmp_path / "boot"
    boot.mkdir()
    tunnel = remote.Tunnel(tmp_path / "network", boot_files=(str(boot / "sensor-bridge.toml"),))
    public, made = tunnel.ensure_key()
    assert made and tunnel.publish(public) == boot / BOOT_PUB_NAME
    assert (boot / BOOT_PUB_NAME).read_text().strip() == public
    monkeypatch.setenv("SENSOR_BRIDGE_NETWORK_DIR", str(tmp_path / "network"))
    monkeypatch.setenv("SENSOR_BRIDGE_ROOT", str(tmp_path / "opt"))
    assert fleet.fleet_facts() == {"wireguard_public_key": public}
    from appliance.sim.receiver import heartbeat_problem

    body = {
        "schema": "sensor-bridge/heartbeat/v1",
        "bridge_id": "b",
        "version": "0.1.0",
        "sent_at": "2025-07-22T09:00:00Z",
        "uptime_s": 1,
        "state": "ok",
        "outbox": {"pending": 0, "oldest_pending_age_s": 0, "dead_letter": 0, "dropped": 0},
        "sensors": [],
        "host": {"disk_free_mb": 1, "mem_used_pct": 1, "cpu_temp_c": None, "load1": 0},
        **fleet.fleet_facts(),
    }
    assert heartbeat_problem(body) is None


def firewall_text() -> str:
    """The nftables rules provision.sh writes, with its variables filled in as it fills them."""
    script = (REPO / "provision.sh").read_text()
    body = re.search(
        r"^nftables_rules\(\) \{\n    cat <<EOF\n(.*?)\nEOF\n\}", script, re.S | re.M
    ).group(1)
    values = {
        "LAN_PORTS": re.search(r'^LAN_PORTS="([^"]*)"', script, re.M).group(1),
        "WG_IF": re.search(r"^WG_IF=(\S+)", script, re.M).group(1),
    }
    values["MARK"] = "# mark"
    body = body.replace("\\$", "\0")  # \$NAME stays for nft's own variables
    for name, value in values.items():
        body = body.replace(f"${name}", value)
    return body.replace("\0", "$")


def test_the_firewall_answers_only_ssh_on_the_tunnel(tmp_path):
    rules = firewall_text()
    chain = re.search(r"chain remote_access \{(.*?)\}", rules, re.S).group(1)
    assert 'iifname "wg-bridge" jump remote_access' in rules
    # The tunnel is looked at before the local-network rules: 10.66.x.x is "local" to them.
    assert rules.index("jump remote_access") < rules.index("tcp dport $LAN_PORTS accept")
    accepts = [line.strip() for line in chain.splitlines() if "accept" in line]
    assert [a.split(" accept")[0] for a in accepts] == [
        "tcp dport 22",
        "icmp type echo-request",
        "icmpv6 type echo-request",
    ]
    assert chain.strip().splitlines()[-1].strip() == "drop"
    if shutil.which("nft"):
        (tmp_path / "rules.nft").write_text(rules)
        checked = subprocess.run(
            ["nft", "-c", "-f", str(tmp_path / "rules.nft")], capture_output=True, text=True
        )
        assert checked.returncode == 0, checked.stderr


# ---------------------------------------------------------------- values are data (issue 19)

NEWLINE_PEER = (
    "\n[WireGuardPeer]\nPublicKey=" + HUB + "\nAllowedIPs=0.0.0.0/0\nEndpoint=198.51.100.7:51820"
)


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"address": "fd00::42%eth0" + NEWLINE_PEER + "/128"}, "remote.address"),
        ({"address": "10.66.0.42/32\n[Route]\nGateway=10.66.0.1"}, "remote.address"),
        ({"allowed_ips": ["fd00::%x\n[Network]\nDNS=198.51.100.53/128"]}, "remote.allowed_ips[0]"),
        ({"allowed_ips": ["10.66.0.1/32", "10.66.0.2/32\n[Route]"]}, "remote.allowed_ips[1]"),
        ({"endpoint": "hub.example.com" + NEWLINE_PEER}, "remote.endpoint"),
        ({"endpoint": "hub.example.com\nDNS=198.51.100.53:51820"}, "remote.endpoint"),
        ({"endpoint": "hub example.com:51820"}, "remote.endpoint"),
        ({"peer_public_key": HUB + "\nAllowedIPs=0.0.0.0/0"}, "remote.peer_public_key"),
    ],
)
def test_injected_networkd_lines_never_reach_the_files_even_past_the_config(tmp_path, change, key):
    # Handed straight to the writer, as no config check ever saw them: the writer refuses too.
    tunnel = Tunnel(tmp_path / "network")
    tunnel.ensure_key()
    good = tunnel.apply(RemoteConfig(**REMOTE))
    assert good, "the good [remote] was written"
    before = {p.name: p.read_text() for p in (tmp_path / "network").iterdir()}
    with pytest.raises(TunnelError, match=re.escape(key) + ": ") as refused:
        tunnel.apply(RemoteConfig(**{**REMOTE, **change}))
    assert "tunnel files left as they are" in str(refused.value)
    after = {p.name: p.read_text() for p in (tmp_path / "network").iterdir()}
    assert after == before
    for text in (after[NETDEV], after[NETWORK]):
        assert text.count("[WireGuardPeer]") <= 1 and "0.0.0.0/0" not in text
        assert "DNS" not in text and "Gateway" not in text and "%" not in text

    # Through the command, with the hostile value in the config file: nothing written either
    # (refused by the config check or, past it, by the writer).
    config = config_with(tmp_path)
    hostile = {**REMOTE, **change}
    with config.open("a") as out:  # TOML escapes (\n) by json.dumps: these values are ASCII
        out.write("[remote]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in hostile.items()))
    done = setup(tmp_path, config)
    assert {p.name: p.read_text() for p in (tmp_path / "network").iterdir()} == before
    assert "tunnel files left as they are" in done.stderr, done.stderr
    assert key.split("[")[0] in done.stderr, done.stderr


def test_remote_show_never_prints_a_line_the_bridge_id_smuggled_into_the_hubs_config(tmp_path):
    # The [Peer] block is pasted into the hub's wg0.conf as root: a newline in bridge.id was a
    # line of it (AllowedIPs = 0.0.0.0/0 sends all the hub's traffic to this bridge).
    config = config_with(tmp_path, remote=REMOTE)
    setup(tmp_path, config)
    text = config.read_text().replace(
        'id = "store-test"', 'id = "store-test\\nAllowedIPs = 0.0.0.0/0"'
    )
    config.write_text(text)
    shown = run_cli("-c", str(config), "remote", "show", "--network-dir", str(tmp_path / "network"))
    assert shown.returncode == 2, shown.stdout
    assert "bridge.id" in shown.stderr and "0.0.0.0/0" not in shown.stdout
