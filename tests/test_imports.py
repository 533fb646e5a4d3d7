"""The shape of appliance/: no import circle, no file over 700 lines, each service loads only its part.

The graph is read from the source with ``ast``: every import counts, inside a
function or an ``if TYPE_CHECKING:`` block too (a circle hidden there is still
a circle for the next person), and importing ``a.b.c`` from outside ``a.b``
also counts as importing the packages ``a.b`` (their ``__init__`` runs).
The pins run each service's entry in a fresh interpreter and read
``sys.modules``: what a service holds in memory on a 512 MB Pi, and what a
change would quietly add to it.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from appliance.cli import PARTS

PACKAGE = REPO / "appliance"
MAX_LINES = 700


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The appliance modules ``name`` imports, and the packages those imports run."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets.add(base)
            # ``from . import x`` names a module when x is one
            targets |= {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules}
    edges = set()
    for target in targets:
        parts = target.split(".")
        for n in range(1, len(parts) + 1):
            step = ".".join(parts[:n])
            # a package that holds ``name`` already runs before ``name`` does: no edge to it
            if step in modules and step != name and not name.startswith(step + "."):
                edges.add(step)
    return edges


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imported(name, path, modules) for name, path in modules.items()}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each strongly connected group of more than one module (Tarjan), as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_the_graph_reader_sees_a_circle_through_a_function_and_a_package() -> None:
    """The reader itself: a circle closed by a lazy import and a package's __init__ is found."""
    graph = {"a.x": {"a.y"}, "a.y": {"b"}, "b": {"a.x"}, "c": {"a.x"}}
    assert _circles(graph) == [["a.x", "a.y", "b"]]
    assert _circles({"a": {"b"}, "b": set()}) == []


def test_appliance_has_no_import_circle() -> None:
    circles = _circles(import_graph())
    assert not circles, "import circles in appliance/: " + "; ".join(
        " <-> ".join(c) for c in circles
    )


def test_no_file_in_appliance_is_over_700_lines() -> None:
    long = {
        str(path.relative_to(REPO)): n
        for path in PACKAGE.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"files over {MAX_LINES} lines (split them by idea): {long}"


def test_the_config_reads_every_table_without_loading_a_service() -> None:
    """The config package imports tables (and the vocabulary), never a service, poller or the outbox."""
    graph = import_graph()
    seen: set[str] = set()
    todo = ["appliance.config"]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += graph[name]
    services = {
        "appliance.outbox",
        "appliance.collector",
        "appliance.relay",
        "appliance.watchdog",
        "appliance.led",
        "appliance.remote",
        "appliance.update",
        "appliance.update_release",
        "appliance.broker",
        "appliance.broker_files",
        "appliance.uplink",
        "appliance.sources.base",
        "appliance.sources.milesight_http",
        "appliance.push",  # what devices push (it was sources/milesight_push.py and mqtt_in.py)
    }
    assert not seen & services, sorted(seen & services)


# ---------------------------------------------------------------- what each service loads

# A store's config with every table a service reads: a camera, MQTT with a LoRaWAN device, HTTP push
# and the tunnel. Config data only: no address here is ever contacted.
# The [remote] addresses below are config data read at import; nothing is ever sent to them.
STORE_CONFIG = """
[bridge]
id = "store-1"
timezone = "Europe/Lisbon"
[paths]
state_dir = "{state}"
run_dir = "{run}"
[uplink]
url = "http://127.0.0.1:9/api/bridge/v1/ingest"
api_key = "sb_4f9a2c7e1d3b8a6f0e5c9d2b7a1f4e8c"
[[sensors]]
id = "entrance-1"
url = "http://127.0.0.1:9"
[mqtt]
password = "relay-secret"
[[mqtt.devices]]
sensor_id = "door-lora"
dev_eui = "24E124136B502217"
model = "vs133"
[push]
password = "push-secret"
[remote]
address = "10.66.0.42/32"
peer_public_key = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
endpoint = "hub.example.com:51820"
allowed_ips = ["10.66.0.1/32"]
"""

# What a service's process holds once its command is parsed and its config read: the entry of
# `sensor-bridge WORD`, as cli.main runs it, up to the service's first look at the file.
PROBE = """
import json, sys
from appliance import cli
word, config = sys.argv[1], sys.argv[2]
cli._keep_out(word)
cli.build_parser([word], every_part=False)
from appliance.config import ConfigWatch
watch = ConfigWatch(config)
watch.poll()
assert not watch.problems, watch.problems
print(json.dumps(sorted(name for name, module in sys.modules.items() if module is not None)))
"""

# Modules no service but the one that needs them may hold (heavy, or another service's code).
SOURCES_AT_WORK = {
    "appliance.sources.base",  # Source and source_for: the outbox comes with them
    "appliance.sources.milesight_http",
    "appliance.push",  # the relay's doors and formats, any module of them
    "appliance.sources.lorawan.route",
    "appliance.sources.lorawan.envelope",
    "appliance.sources.lorawan.readings",
}
PINS: dict[str, tuple[set[str], set[str]]] = {
    # word: (must hold, must not hold)
    "watchdog": (
        {"appliance.watchdog", "appliance.led", "psutil"},
        {"sqlite3", "_sqlite3", "csv", "appliance.outbox", "requests", "urllib3", "paho"}
        | {"appliance.collector", "appliance.relay", "appliance.uplink", "appliance.committer"}
        | SOURCES_AT_WORK,
    ),
    "run": (
        {"appliance.collector", "appliance.outbox"},
        {"paho", "gpiozero", "appliance.relay", "appliance.watchdog", "appliance.led"}
        | {"appliance.broker", "appliance.broker_files", "appliance.push"}
        | {"charset_normalizer", "chardet"},
    ),
    "relay": (
        {"appliance.relay", "appliance.outbox"},
        {"gpiozero", "psutil", "appliance.collector", "appliance.watchdog", "appliance.led"}
        | {"appliance.sources.milesight_http", "csv", "ssl", "_ssl", "_hashlib"}
        | {"appliance.broker"},  # the `mqtt` commands; its door needs only broker_files' secret
    ),
    "status": (
        {"appliance.console"},
        {"paho", "gpiozero", "appliance.collector", "appliance.relay", "appliance.watchdog"}
        | {"appliance.led", "appliance.sources.milesight_http", "appliance.push"},
    ),
}


def loaded_by(word: str, tmp_path: Path) -> set[str]:
    config = tmp_path / "config.toml"
    config.write_text(STORE_CONFIG.format(state=tmp_path / "state", run=tmp_path / "run"))
    done = subprocess.run(
        [sys.executable, "-c", PROBE, word, str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout))


def _top(names: set[str]) -> set[str]:
    """``names`` with each module's packages too: ``paho`` is held when ``paho.mqtt`` is."""
    return {".".join(n.split(".")[:i]) for n in names for i in range(1, n.count(".") + 2)}


@pytest.mark.parametrize("word", sorted(PINS))
def test_each_service_loads_what_it_needs_and_nothing_of_the_others(
    word: str, tmp_path: Path
) -> None:
    held = loaded_by(word, tmp_path)
    must, never = PINS[word]
    assert must <= held, f"{word} no longer loads {sorted(must - held)}"
    assert not never & _top(held), f"{word} loads {sorted(never & _top(held))}"


def test_the_watchdog_reads_every_table_and_loads_no_source_at_work(tmp_path: Path) -> None:
    """The watchdog checks the whole file (a bad sensor key stops it acting) with the tables alone.

    A family's ``[[sensors]]`` table and the LoRaWAN model list come from appliance/sources/; what
    polls, parses or routes readings does not."""
    held = loaded_by("watchdog", tmp_path)
    sources = {n for n in held if n == "appliance.sources" or n.startswith("appliance.sources.")}
    assert sources <= {
        "appliance.sources",  # the registry: names to "module:Class"
        "appliance.sources.table",
        "appliance.sources.milesight_table",
        "appliance.sources.lorawan",  # MODELS, the one list a [[mqtt.devices]] model is checked with
        "appliance.sources.lorawan.frame",
        "appliance.sources.lorawan.am300",
        "appliance.sources.lorawan.vs13x",
        "appliance.sources.lorawan.vs121",
        "appliance.sources.lorawan.vs330",
        "appliance.sources.lorawan.vs350",
    }, sorted(sources)


# ---------------------------------------------------------------- each CLI word loads its own part

WORD_PROBE = """
import json, sys
from appliance import cli
try:
    cli.build_parser(sys.argv[1:2], every_part=False)
except SystemExit as exc:
    print(json.dumps({"exit": exc.code, "parts": sorted(set(cli.PARTS) & set(sys.modules))}))
else:
    print(json.dumps({"exit": None, "parts": sorted(set(cli.PARTS) & set(sys.modules))}))
"""


def _parts_loaded(word: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", WORD_PROBE, word],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    answer: dict[str, object] = json.loads(done.stdout)
    answer["stderr"] = done.stderr
    return answer


def _needs(part: str, graph: dict[str, set[str]]) -> set[str]:
    """``part`` and every module its own imports reach (the watchdog's code imports the LED's)."""
    seen: set[str] = set()
    todo = [part]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += graph.get(name, set())
    return seen


@pytest.mark.parametrize("part", sorted(PARTS))
def test_each_cli_word_loads_its_own_part_only(part: str) -> None:
    graph = import_graph()
    for word in PARTS[part]:
        answer = _parts_loaded(word)
        assert answer["exit"] is None, answer["stderr"]
        loaded = set(answer["parts"])  # type: ignore[arg-type]
        assert part in loaded, word
        assert loaded <= _needs(part, graph), f"{word} loads {sorted(loaded - _needs(part, graph))}"


def test_each_part_adds_exactly_the_words_parts_lists() -> None:
    """A part adding a command PARTS does not name would make that command unknown: caught here."""
    for part, words in PARTS.items():
        commands = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(part).register(commands)
        assert tuple(commands.choices) == words, part


def test_a_word_no_part_claims_is_refused_without_loading_any_part() -> None:
    answer = _parts_loaded("frobnicate")
    assert answer["exit"] == 2 and answer["parts"] == [], answer
    assert "unknown command 'frobnicate'" in str(answer["stderr"])
    assert "status" in str(answer["stderr"])  # the known words are named
