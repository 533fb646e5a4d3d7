"""``sensor-bridge discover`` on a store LAN built in network namespaces (tests/discover_helpers.py).

On the LAN: an activated camera (WS-Discovery and mDNS), one not activated
yet, one answering every Probe twice, one with ONVIF and Bonjour off (found
through the neighbour table), a router with no web page, and behind the
router a camera on a second subnet, found only when that subnet is given by
hand. A neighbour on ``wg0`` must never be listed. The command runs for real,
in the bridge's namespace.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest
from conftest import REPO
from discover_helpers import LAN, ROUTED, StoreLan

from appliance.sim.camera import SimCamera
from appliance.sim.lan import DiscoveryResponder

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("ip"),
    reason="needs root and iproute2 to build network namespaces (CI runs as root)",
)

ROUTED_ENDPOINT = "urn:uuid:5f0c2d4e-0000-4000-8000-00000000c005"


def start_camera(store: StoreLan, ns: str, address: str, responder: dict | None, **camera: object):
    """A SimCamera on port 80 (and a DiscoveryResponder) inside ``ns``; returns a stop function."""
    worker = store.worker(ns)
    mac = store.mac(ns)

    def start() -> tuple[SimCamera, DiscoveryResponder | None]:
        cam = SimCamera(host="0.0.0.0", port=80, mac=mac, password="pw", **camera).start()  # type: ignore[arg-type]
        wsd = DiscoveryResponder(address, **responder).start() if responder is not None else None
        return cam, wsd

    cam, wsd = worker.call(start)

    def stop() -> None:
        def halt() -> None:
            if wsd:
                wsd.stop()
            cam.stop()

        worker.call(halt)

    return cam, wsd, stop


@pytest.fixture(scope="module")
def store():
    lan = StoreLan()
    stops = []
    try:
        cams = {}
        for short, last, responder, extra in (
            ("c1", 11, {}, {"serial": "MSC1000001"}),
            ("c2", 12, {}, {"serial": "MSC1000002", "activated": False, "firmware": "46.1.0.1"}),
            ("c3", 13, {"repeat": 2}, {"serial": "MSC1000003"}),
            ("c4", 14, None, {"serial": "MSC1000004"}),
        ):
            ns = lan.add_host(short, f"{LAN}.{last}")
            cam, wsd, stop = start_camera(lan, ns, f"{LAN}.{last}", responder, **extra)
            stops.append(stop)
            cams[short] = {
                "ns": ns,
                "ip": f"{LAN}.{last}",
                "mac": lan.mac(ns),
                "camera": cam,
                "wsd": wsd,
            }
        cam, wsd, stop = start_camera(
            lan, lan.routed, f"{ROUTED}.5", {"endpoint": ROUTED_ENDPOINT}, serial="MSC1000005"
        )
        stops.append(stop)
        cams["c5"] = {"ns": lan.routed, "ip": f"{ROUTED}.5", "camera": cam, "wsd": wsd}
        yield lan, cams
    finally:
        for stop in stops:
            try:
                stop()
            except Exception:  # noqa: BLE001 - the namespaces go anyway
                pass
        lan.close()


def discover(lan: StoreLan, *args: str) -> dict:
    done = lan.run(lan.pi, sys.executable, "-m", "appliance", "discover", "--json", *args, cwd=REPO)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def by_address(result: dict) -> dict[str, dict]:
    return {d["address"]: d for d in result["devices"]}


def test_discover_lists_exactly_the_lan_cameras_with_their_identities(store):
    lan, cams = store
    result = discover(lan)  # the default 10 s: generous on a loaded machine
    devices = by_address(result)
    assert sorted(devices) == [cams[c]["ip"] for c in ("c1", "c2", "c3", "c4")], result
    assert result["interfaces"] == ["eth0"]
    assert "wg0" in result["skipped_interfaces"] and "lo" in result["skipped_interfaces"]

    c1 = devices[cams["c1"]["ip"]]
    assert c1["found_by"] == ["mdns", "neighbours", "ws-discovery"]
    assert c1["identity"] == f"mac:{cams['c1']['mac']}"  # activated: its serial needs its password
    assert c1["needs_credentials"] and c1["activated"] is True and c1["milesight"]
    assert c1["onvif_endpoint"] == cams["c1"]["wsd"].endpoint
    assert c1["model"] == "MS-C2964-RFLPC"  # from the ONVIF hardware scope

    c2 = devices[cams["c2"]["ip"]]
    assert c2["identity"] == "serial:MSC1000002"
    assert c2["activated"] is False and not c2["needs_credentials"]
    assert c2["firmware"] == "46.1.0.1" and c2["mac"] == cams["c2"]["mac"]
    assert "not activated" in c2["note"]

    c3 = devices[cams["c3"]["ip"]]  # answered every Probe twice: still one device
    assert c3["addresses"] == [cams["c3"]["ip"]]
    assert c3["found_by"] == ["mdns", "neighbours", "ws-discovery"]

    c4 = devices[cams["c4"]["ip"]]  # ONVIF and Bonjour off
    assert c4["found_by"] == ["neighbours"]
    assert c4["identity"] == f"mac:{cams['c4']['mac']}" and c4["milesight"]
    assert c4["onvif_endpoint"] is None


def test_a_routed_subnet_is_scanned_only_when_given(store):
    lan, cams = store
    result = discover(lan, "--subnet", f"{ROUTED}.0/24")
    devices = by_address(result)
    assert f"{ROUTED}.0/24" in result["subnets"]
    routed = devices[cams["c5"]["ip"]]
    assert routed["found_by"] == ["subnet", "ws-discovery"]
    assert routed["identity"] == f"onvif:{ROUTED_ENDPOINT}"  # no MAC across a router
    assert routed["mac"] is None and routed["needs_credentials"]
    assert sorted(devices) == sorted([cams[c]["ip"] for c in ("c1", "c2", "c3", "c4", "c5")])


def test_the_table_names_each_camera_once_and_what_to_do(store):
    lan, cams = store
    done = lan.run(lan.pi, sys.executable, "-m", "appliance", "discover", cwd=REPO)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "skipped wg0" in out
    for c in ("c1", "c2", "c3", "c4"):
        assert out.count(cams[c]["ip"]) == 1, out
    assert "serial:MSC1000002" in out and "not activated" in out and "needs credentials" in out
    assert "198.18.0.9" not in out


def test_a_subnet_too_large_is_refused_with_the_reason():
    done = __import__("subprocess").run(
        [sys.executable, "-m", "appliance", "discover", "--subnet", "203.0.0.0/16"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode == 2
    assert "at most a /22" in done.stderr
