"""`sensor-bridge demo`, the README's first command: readings visibly arrive, and it stops cleanly."""

from __future__ import annotations

import re

from conftest import run_cli


def test_the_demo_shows_readings_arriving_and_stops_cleanly() -> None:
    done = run_cli("demo", "--seconds", "8", timeout=60)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert re.search(r"receiver: stored \d+ readings? \(\d+ new", out), out
    held = int(re.search(r"the receiver holds (\d+) readings", out).group(1))
    assert held > 24, "a day of backfill from two cameras, line and region counts"
    assert "stopped cleanly" in out
    assert "try:" in out and "status" in out, "the demo tells a person what to try next"
