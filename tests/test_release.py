"""image/release.py takes every wheel by the sha256 pinned for it, never by its file name.

A release is signed and installed as root on every bridge, so a file planted in the wheel
cache under a pinned name must never reach a manifest. The builds here use the real script
against a cache in the test's temp folder (filled from PyPI, or pip's configured index).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import REPO

RELEASE = [sys.executable, str(REPO / "image" / "release.py")]
PLANTED = "requests-2.34.2-0-py3-none-any.whl"  # a build tag: pip and a name sort both prefer it

pytestmark = pytest.mark.skipif(not shutil.which("ssh-keygen"), reason="needs ssh-keygen")


def keypair(folder: Path) -> Path:
    key = folder / "release"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


def build(tmp: Path, key: Path, cache: Path, version: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *RELEASE,
            "build",
            "--key",
            str(key),
            "--out",
            str(tmp / "releases"),
            "--version",
            version,
            "--arch",
            "x86_64",
            "--wheel-cache",
            str(cache),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )


def plant(cache: Path) -> Path:
    """A wheel that says it is requests 2.34.2 and is something else."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / PLANTED
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr("requests/__init__.py", "import os; os.system('id > /tmp/owned')\n")
    return path


def test_a_planted_wheel_in_the_cache_is_never_picked_or_signed(tmp_path: Path) -> None:
    key, cache = keypair(tmp_path), tmp_path / "wheels"
    planted = plant(cache)

    refused = build(tmp_path, key, cache, "0.9.1")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"wheel cache: {planted} claims to be requests 2.34.2" in refused.stderr
    assert "not the one pinned (image/requirements.lock)" in refused.stderr
    releases = tmp_path / "releases"
    assert not list(releases.rglob("manifest.json")), "nothing may be signed"
    assert not list(releases.rglob(PLANTED))

    planted.unlink()  # the person removes it, as the message says: the build goes through
    built = build(tmp_path, key, cache, "0.9.1")
    assert built.returncode == 0, built.stderr
    manifest = json.loads((releases / "0.9.1" / "manifest.json").read_text())
    lock = (REPO / "image" / "requirements.lock").read_text()
    pinned = re.search(r"^requests==2\.34\.2 \\\n\s+--hash=sha256:(\w+)", lock, re.M).group(1)
    assert manifest["files"]["requests-2.34.2-py3-none-any.whl"]["sha256"] == pinned
    assert PLANTED not in manifest["files"]
    for name, body in manifest["files"].items():  # every file signed is a file on disk, as signed
        assert (releases / "0.9.1" / name).stat().st_size == body["size"]


def test_the_wheel_cache_stays_out_of_the_upload_folder(tmp_path: Path) -> None:
    key = keypair(tmp_path)
    inside = build(tmp_path, key, tmp_path / "releases" / ".wheels", "0.9.2")
    assert inside.returncode == 2 and "inside --out" in inside.stderr, inside.stderr
    help_text = subprocess.run(
        [*RELEASE, "build", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "~/.cache/sensor-bridge/release-wheels" in " ".join(help_text.split())
    mode = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-s", "image/release.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[0]
    assert mode == "100755", "image/release.py is run as image/release.py: executable in git"
    assert os.stat(REPO / "image" / "release.py").st_mode & stat.S_IXUSR
