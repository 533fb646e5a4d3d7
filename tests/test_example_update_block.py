"""image/sensor-bridge.example.toml's commented [update] block holds only valid keys (issue 22).

A person removes the #s and fills in the URL; `config check` must then pass
and read the values the comments promise.
"""

from __future__ import annotations

import re
from pathlib import Path

from conftest import REPO, run_cli

from appliance.config import load_config

EXAMPLE = REPO / "image" / "sensor-bridge.example.toml"


def with_update_block_on(text: str) -> str:
    """The example with its [update] block uncommented and every CHANGE value filled in."""
    lines, on = [], False
    for line in text.splitlines():
        if line.strip() == "# [update]":
            on = True
        elif on and not line.startswith("# ") or on and line.strip() == "#":
            on = False
        if on and re.match(r"# (\[update\]|[a-z_]+ = )", line):
            line = line[2:]
        lines.append(line)
    filled = "\n".join(lines) + "\n"
    # the example's placeholders, as a person fills them in (config data, never contacted)
    filled = filled.replace("https://releases.example.com/", "https://updates.acme-retail.com/")
    filled = filled.replace('"CHANGE-ME"', '"sbk_not-a-real-key-but-shaped-like-one-0123456"')
    return filled.replace("example.vercel.app", "acme-retail.vercel.app")


def test_the_example_update_block_uncommented_is_a_valid_config(tmp_path: Path) -> None:
    text = with_update_block_on(EXAMPLE.read_text())
    assert "\n[update]\n" in text, "the example has no commented [update] block"
    config_file = tmp_path / "sensor-bridge.toml"
    config_file.write_text(text)
    check = run_cli("-c", str(config_file), "config", "check")
    assert check.returncode == 0, check.stdout + check.stderr
    update = load_config(config_file).update
    assert update.url == "https://updates.acme-retail.com/sensor-bridge/"
    assert (update.auto, update.window, update.gate_s) == (True, "Sun 03:00-05:00", 180)
    assert "docs/config.md, [update]" in EXAMPLE.read_text(), "the block points at its reference"
