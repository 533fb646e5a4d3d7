"""docs/config.md's key reference is the config model's: generated, never hand-kept."""

from __future__ import annotations

import re
from dataclasses import fields

from conftest import REPO, run_cli

from appliance.config import Config, Key, reference

MARKERS = re.compile(r"<!-- config-reference:[^>]*-->\n(.*?)<!-- config-reference: end -->", re.S)


def test_docs_config_md_is_the_generated_reference():
    printed = run_cli("config", "reference")
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.strip() == reference()
    block = MARKERS.search((REPO / "docs" / "config.md").read_text())
    assert block, "docs/config.md has lost its config-reference markers"
    assert block.group(1).strip() == reference(), (
        "docs/config.md's reference differs from the model: paste `sensor-bridge config reference` between the markers"
    )


def test_every_key_of_every_table_is_documented_with_its_limits():
    text = reference()

    def walk(model: type, path: str) -> None:
        for f in fields(model):
            if "section" in f.metadata:
                section = f.metadata["section"]
                title = f"[[{path}{f.name}]]" if section.limit else f"[{path}{f.name}]"
                assert f"`{title}`" in text, title
                walk(section.model, f"{path}{f.name}.")
                for type_name, typed in (section.by_type() if section.by_type else {}).items():
                    assert f'`type = "{type_name}"`' in text, (
                        type_name
                    )  # [[sensors]]: each type's own keys
                    walk(typed, f"{path}{f.name}.")
                continue
            if model is Config:
                continue  # source_path: where the file was read, not a key
            key = f.metadata.get("key")
            assert isinstance(key, Key) and key.doc, f"{path}{f.name} has no documentation"
            assert f"| `{f.name}`" in text

    walk(Config, "")
    for limit in (
        "256 KB",
        "4 KB",
        "200 `[[sensors]]`",
        "500 `[[mqtt.devices]]`",
        "user:password@",
        "link-local",
    ):
        assert limit in text, limit
