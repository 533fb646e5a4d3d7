"""The reading kinds of the ingest contract and the keys their values carry, as data.

One table, read by the door (``records.contract_problem``), the reference
receiver (``appliance/sim/receiver.py``) and a test that holds the cloud's
newest migration to it (tests/test_kinds.py). Adding a reading kind starts
with one row here (then docs/ingest-contract.md, a migration, and the checks
of each value's shape in records.py and the receiver).

A row says which keys a kind's ``values`` must carry and which it may; a kind
of measurements (``ambience``) instead names every measurement it may carry
with its unit: at least one, each a finite number, the unit in the key's name.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Kind:
    """One reading kind: the keys of its ``values``."""

    name: str
    required: frozenset[str] = frozenset()
    optional: frozenset[str] = frozenset()
    # key -> unit, for a kind whose values are a flat object of measurements
    measurements: dict[str, str] = field(default_factory=dict)

    @property
    def allowed(self) -> frozenset[str]:
        """Every key its values may carry."""
        return self.required | self.optional | frozenset(self.measurements)


def _kind(name: str, required: str = "", optional: str = "", **measurements: str) -> Kind:
    return Kind(name, frozenset(required.split()), frozenset(optional.split()), measurements)


# In the contract's order: the door's "kind: must be one of ..." lists them so, as the cloud does.
TABLE: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        _kind("line_counts", "total lines"),
        _kind("region_counts", "regions"),
        _kind("live_counts", "in out sum capacity"),
        _kind("occupancy", "current_total max regions", "occupied region_names"),
        _kind("event", "event payload"),
        _kind("line_totals", "total lines"),
        _kind("dwell", "regions"),
        _kind(
            "ambience",
            temperature_c="°C",
            humidity_pct="% relative humidity",
            co2_ppm="ppm",
            tvoc_iaq="IAQ index",
            tvoc_ugm3="µg/m³",
            pressure_hpa="hPa",
            light_level="level 0..5",
            pir="1 motion, 0 none",
            hcho_mgm3="mg/m³",
            pm2_5_ugm3="µg/m³",
            pm10_ugm3="µg/m³",
            o3_ppm="ppm",
            battery_pct="%",
            distance_mm="mm",
        ),
    )
}
KINDS: tuple[str, ...] = tuple(TABLE)
