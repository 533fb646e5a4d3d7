"""Keep a camera named by serial or MAC at its address: checked before each poll, found again if it moved.

A ``milesight-camera`` sensor with ``serial = "..."`` or ``mac = "..."``
beside ``url`` is asked who it is before every poll (the system information
call, with the sensor's own user and password). When the device at the
address is that camera, the poll goes on. When it does not answer, or is
another device (a DHCP lease moved), the LAN is scanned (at most once per
``RESCAN_S``) and the candidates are asked the same question; the camera
found is polled at its new address (same scheme and port) and the sensor's
status says "found at a new address X (was Y)". A different device is never
polled: without the camera the poll fails with "the device at URL is serial
X, expected Y".
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..sources.base import SensorError
from ..sources.milesight_table import normal_mac
from .fingerprint import INFO_QUERY, parse_information

log = logging.getLogger("sensor-bridge.discover")

RESCAN_S = 60.0
SCAN_S = 6.0
MAX_TRIES = 8  # candidates asked who they are per search: each may take the sensor's timeout_s


def with_host(url: str, host: str) -> str:
    """``url`` with its host replaced, scheme, port and path kept."""
    parts = urlsplit(url)
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class CameraFinder:
    """Where one camera named by serial or MAC is now; see the module's docstring."""

    def __init__(self, sensor: Any, make_client: Any) -> None:
        self.sensor = sensor
        self.serial = (sensor.serial or "").strip()
        self.mac = normal_mac(sensor.mac or "")
        self.make_client = (
            make_client  # CameraConfig -> a client with .get(path, what) and .close()
        )
        self.note: str | None = None
        self.last_scan = float("-inf")

    @classmethod
    def for_sensor(cls, sensor: Any, make_client: Any) -> CameraFinder | None:
        """A finder when the sensor names its camera by serial or MAC, else None."""
        if getattr(sensor, "serial", "") or getattr(sensor, "mac", ""):
            return cls(sensor, make_client)
        return None

    def expected(self) -> str:
        return f"serial {self.serial}" if self.serial else f"MAC {self.mac}"

    def identify(self, client: Any) -> tuple[str | None, str | None]:
        """(serial, mac) of the device ``client`` talks to; SensorError when it cannot tell."""
        info = parse_information(client.get(INFO_QUERY, "system information").text.encode())
        if not info:
            raise SensorError(
                "its system information is not the Milesight JSON; cannot check who it is"
            )
        mac = info.get("mac") or self._neighbour_mac(urlsplit(client.sensor.url).hostname or "")
        return info.get("serial"), normal_mac(mac or "") or None

    def _neighbour_mac(self, host: str) -> str | None:
        from .lan import store_lans
        from .neighbours import neighbour_table

        return neighbour_table(store_lans()[0]).get(host)

    def mismatch(self, serial: str | None, mac: str | None) -> str | None:
        """Why the device with ``serial``/``mac`` is not this sensor's camera, or None when it is."""
        if self.serial and serial != self.serial:
            return f"serial {serial or 'unknown'}, expected {self.serial}"
        if self.mac and mac != self.mac:
            return f"MAC {mac or 'unknown'}, expected {self.mac}"
        return None

    def place(self, client: Any) -> Any:
        """The client to poll with: ``client`` when its device is the camera, else one at the
        camera's new address; SensorError when the camera is not to be found."""
        url = client.sensor.url
        try:
            wrong = self.mismatch(*self.identify(client))
        except SensorError as exc:
            problem = f"the camera at {url} does not answer as expected ({exc})"
        else:
            if wrong is None:
                return client
            problem = f"the device at {url} is {wrong}"
        moved = self._search(url)
        if moved is None:
            raise SensorError(f"{problem}; not found elsewhere on the LAN by {self.expected()}")
        client.close()
        was = urlsplit(self.sensor.url).hostname
        now = urlsplit(moved.sensor.url).hostname
        self.note = None if now == was else f"found at a new address {now} (was {was})"
        log.warning("%s: %s; %s", self.sensor.id, problem, self.note or "back at its address")
        return moved

    def _search(self, current_url: str) -> Any:
        """A client at the address where the camera answers now, or None (one scan per RESCAN_S)."""
        if time.monotonic() - self.last_scan < RESCAN_S:
            return None
        self.last_scan = time.monotonic()
        from .scan import scan

        found = scan(SCAN_S)
        current = urlsplit(current_url).hostname
        candidates = [d for d in found.devices if d.http]
        # Likeliest first: the MAC or serial seen without a password, then Milesight devices.
        candidates.sort(
            key=lambda d: (
                not ((self.mac and d.mac == self.mac) or (self.serial and d.serial == self.serial)),
                not d.milesight,
            )
        )
        addresses = [
            a
            for d in candidates
            if not (self.mac and d.mac and d.mac != self.mac)
            and not (self.serial and d.serial and d.serial != self.serial)
            for a in d.addresses
            if a != current
        ]
        for address in addresses[:MAX_TRIES]:
            sensor = dataclasses.replace(self.sensor, url=with_host(self.sensor.url, address))
            client = self.make_client(sensor)
            try:
                if self.mismatch(*self.identify(client)) is None:
                    return client
            except SensorError:
                pass
            client.close()
        return None
