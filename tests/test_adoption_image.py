"""image/build.sh --fleet-url URL --enroll-token-file FILE: one image for every store.

Its argument checks, and what it hands pi-gen's stage (around a stand-in pi-gen, as
tests/test_provision.py does): a [fleet]-only config that `sensor-bridge config check`
accepts as waiting to be claimed, and the token beside it, never in the config.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPO, run_cli

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJ1aWxkZXIta2V5LWZvci10ZXN0cw builder@laptop\n"
TOKEN = "sbe_" + "A1b2" * 10 + "xyz"


def build(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["image/build.sh", *args], cwd=REPO, capture_output=True, text=True, timeout=300, **kwargs
    )


def test_fleet_options_are_checked_before_anything_is_fetched(tmp_path: Path) -> None:
    key = tmp_path / "key.pub"
    key.write_text(KEY)
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    alone = build("--ssh-key", str(key), "--fleet-url", "https://fleet.test")
    assert alone.returncode == 2 and "go together" in alone.stderr
    path = build(
        "--ssh-key",
        str(key),
        "--fleet-url",
        "https://fleet.test/x",
        "--enroll-token-file",
        str(token),
    )
    assert path.returncode == 2 and "origin" in path.stderr
    creds = build(
        "--ssh-key",
        str(key),
        "--fleet-url",
        "https://u:p@fleet.test",
        "--enroll-token-file",
        str(token),
    )
    assert creds.returncode == 2 and "origin" in creds.stderr
    missing = build(
        "--ssh-key",
        str(key),
        "--fleet-url",
        "https://fleet.test",
        "--enroll-token-file",
        str(tmp_path / "none"),
    )
    assert missing.returncode == 2 and "no such file" in missing.stderr
    (tmp_path / "bad").write_text("hello\n")
    bad = build(
        "--ssh-key",
        str(key),
        "--fleet-url",
        "https://fleet.test",
        "--enroll-token-file",
        str(tmp_path / "bad"),
    )
    assert bad.returncode == 2 and "not an enroll token" in bad.stderr
    assert "--fleet-url" in build("--help").stdout


FAKE_PI_GEN = r"""#!/bin/bash -e
# Stands in for pi-gen: keeps what image/build.sh gave the stage, "builds" an image.
source ./config
cp -a stage-sensor-bridge/00-install/files/fleet deploy-fleet
mkdir -p deploy
truncate -s 16M disk.img
xz -c disk.img > "deploy/image_${IMG_DATE}-${IMG_NAME}-sensor-bridge.img.xz"
mv deploy-fleet deploy/fleet
"""


def test_the_stage_gets_a_fleet_only_config_that_waits_to_be_claimed(tmp_path: Path) -> None:
    for tool in ("git", "xz", "bmaptool"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed (apt-get install git xz-utils bmap-tools)")
    if os.geteuid() != 0:
        pytest.skip("a native image build runs as root")
    fake = tmp_path / "pi-gen"
    (fake / "stage2").mkdir(parents=True)
    (fake / "stage2" / "EXPORT_IMAGE").write_text('IMG_SUFFIX="-lite"\n')
    (fake / "build.sh").write_text(FAKE_PI_GEN)
    (fake / "build.sh").chmod(0o755)
    git = ["git", "-C", str(fake), "-c", "user.name=t", "-c", "user.email=t@t"]
    for step in (["init", "-q"], ["add", "."], ["commit", "-qm", "fake pi-gen"]):
        subprocess.run([*git, *step], check=True, capture_output=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    key = tmp_path / "key.pub"
    key.write_text(KEY)
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    env = {**os.environ, "PI_GEN_URL": str(fake), "PI_GEN_COMMIT": commit.strip()}
    work = tmp_path / "work"
    proc = build(
        "--ssh-key",
        str(key),
        "--native",
        "--work",
        str(work),
        "--out",
        str(tmp_path / "out"),
        "--fleet-url",
        "https://fleet.test/",
        "--enroll-token-file",
        str(token),
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    fleet = work / "pi-gen" / "deploy" / "fleet"
    text = (fleet / "config.toml").read_text()
    assert 'url = "https://fleet.test"' in text and TOKEN not in text
    assert (fleet / "enroll-token").read_text().strip() == TOKEN
    assert (fleet / "enroll-token").stat().st_mode & 0o077 == 0
    # As installed: the token file where the config says it is.
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "enroll-token").write_text(TOKEN)
    (etc / "config.toml").write_text(
        text.replace("/etc/sensor-bridge/enroll-token", str(etc / "enroll-token"))
    )
    checked = run_cli("-c", str(etc / "config.toml"), "config", "check")
    assert checked.returncode == 0 and "waits to be claimed" in checked.stderr, checked.stderr
