"""A folder of signed releases, and this bridge's files of one, fetched and checked before use.

A release (``image/release.py`` makes them) is a folder at ``[update] url``:
``index.json`` lists versions; ``<version>/manifest.json`` lists every wheel
with its sha256 and size per architecture and is signed
(``manifest.json.sig``, ``ssh-keygen -Y sign``, namespace
``sensor-bridge-release``) by a key of the allowed signers file that
provision.sh put on the bridge. :class:`Releases` believes nothing it has not
checked: the manifest's signature, format and version, then each file,
streamed to ``downloads/`` and stopped at the size the signed manifest gives
it (a server sending more, or a 400 MB "wheel", costs a chunk of memory, not
the bridge), its sha256 compared. Installing what it fetched is
appliance/update.py's job.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from .update_layout import Layout, UpdateError

NAMESPACE = "sensor-bridge-release"
FORMAT = "sensor-bridge/release/v1"
SIGNERS = (
    "release-signers"  # in ROOT, root-owned: provision.sh installs it from the image build's input
)

FETCH_TIMEOUT_S = 60
MAX_MANIFEST_BYTES = 1 << 20
CHUNK = 64 * 1024  # a download is read this much at a time: its memory never depends on its size
ARCH_NAMES = {
    "arm64": "aarch64",
    "aarch64": "aarch64",
    "armv7l": "armv7l",
    "armv6l": "armv7l",
    "armhf": "armv7l",
    "x86_64": "x86_64",
    "amd64": "x86_64",
}


def version_key(version: str) -> tuple[tuple[int, str], ...]:
    """Orders 0.10.0 after 0.9.1; letters (rc1) before the numbers they precede."""
    return tuple(
        (int(p), "") if p.isdigit() else (-1, p) for p in re.findall(r"\d+|[a-z]+", version)
    )


def this_arch() -> str:
    machine = os.environ.get("SENSOR_BRIDGE_ARCH") or platform.machine()
    return ARCH_NAMES.get(machine.lower(), machine.lower())


class Releases:
    """A folder of signed releases at ``url``; every answer checked before it is believed."""

    def __init__(self, url: str, layout: Layout) -> None:
        if not url:
            raise UpdateError("no [update] url in the config: this bridge does not update itself")
        self.url = url.rstrip("/")
        self.layout = layout
        self.signers = layout.root / SIGNERS

    def fetch(self, path: str, limit: int = MAX_MANIFEST_BYTES) -> bytes:
        """A small file (index, manifest, signature), refused when larger than ``limit``."""
        url = f"{self.url}/{path}"
        try:
            with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_S) as answer:  # noqa: S310 - https/http from config
                data = answer.read(limit + 1)
        except OSError as exc:
            raise UpdateError(f"cannot fetch {url}: {exc}") from None
        if len(data) > limit:
            raise UpdateError(f"{url} is larger than {limit} bytes; refused, nothing changed")
        return data

    def versions(self) -> list[str]:
        try:
            versions = json.loads(self.fetch("index.json", MAX_MANIFEST_BYTES))["versions"]
        except (ValueError, KeyError, TypeError):
            raise UpdateError(f"{self.url}/index.json is not a release index") from None
        return sorted((str(v) for v in versions), key=version_key)

    def manifest(self, version: str) -> dict[str, Any]:
        """The release's manifest, its signature verified; UpdateError otherwise."""
        if not re.fullmatch(r"[0-9][0-9A-Za-z.+-]*", version):
            raise UpdateError(f"{version!r} is not a version")
        text = self.fetch(f"{version}/manifest.json", MAX_MANIFEST_BYTES)
        signature = self.fetch(f"{version}/manifest.json.sig", MAX_MANIFEST_BYTES)
        self.verify(text, signature, version)
        manifest = json.loads(text)
        if manifest.get("format") != FORMAT or manifest.get("version") != version:
            raise UpdateError(
                f"release {version}: its manifest is not a {FORMAT} of version {version}"
            )
        return manifest

    def verify(self, text: bytes, signature: bytes, version: str) -> None:
        if not self.signers.is_file():
            raise UpdateError(
                f"no allowed signers file {self.signers}: provision.sh installs it "
                "(image/build.sh --release-key); without it no release is trusted"
            )
        with tempfile.TemporaryDirectory() as tmp:
            sig = Path(tmp) / "manifest.json.sig"
            sig.write_bytes(signature)
            found = subprocess.run(
                ["ssh-keygen", "-Y", "find-principals", "-s", str(sig), "-f", str(self.signers)],
                capture_output=True,
                text=True,
                timeout=30,
            )
            principal = found.stdout.split("\n")[0].strip()
            checked = subprocess.run(
                [
                    "ssh-keygen",
                    "-Y",
                    "verify",
                    "-f",
                    str(self.signers),
                    "-I",
                    principal or "nobody",
                    "-n",
                    NAMESPACE,
                    "-s",
                    str(sig),
                ],
                input=text,
                capture_output=True,
                timeout=30,
            )
        if found.returncode != 0 or checked.returncode != 0:
            raise UpdateError(
                f"release {version}: bad signature (not signed by a key in {self.signers}); "
                "refused, nothing changed"
            )

    def download(self, manifest: dict[str, Any], arch: str) -> Path:
        """This architecture's files of a verified release, each hash checked; the folder holding them."""
        version = manifest["version"]
        wanted = manifest.get("architectures", {}).get(arch)
        if not wanted:
            have = ", ".join(sorted(manifest.get("architectures", {}))) or "none"
            raise UpdateError(
                f"release {version} has no files for this bridge's architecture {arch} "
                f"(it has {have}); refused, nothing changed"
            )
        folder = self.layout.downloads / version
        shutil.rmtree(self.layout.downloads, ignore_errors=True)
        folder.mkdir(parents=True)
        try:
            for name in wanted["files"]:
                self.fetch_file(manifest, name, folder)
        except BaseException:
            shutil.rmtree(self.layout.downloads, ignore_errors=True)
            raise
        return folder

    def fetch_file(self, manifest: dict[str, Any], name: str, folder: Path) -> None:
        """One file of the release, streamed to disk and hashed on the way; never past its signed size."""
        version = manifest["version"]
        if "/" in name or name.startswith(".") or name not in manifest.get("files", {}):
            raise UpdateError(
                f"release {version}: file {name!r} is not allowed; refused, nothing changed"
            )
        signed = manifest["files"][name]
        size = signed.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise UpdateError(
                f"release {version}: {name} has no size in the signed manifest; refused, nothing changed"
            )
        url = f"{self.url}/{version}/{name}"
        digest, got = hashlib.sha256(), 0
        part = folder / f".{name}.part"
        try:
            with (
                urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_S) as answer,  # noqa: S310 - https/http from config
                part.open("wb") as out,
            ):
                while chunk := answer.read(min(CHUNK, size + 1 - got)):
                    got += len(chunk)
                    if got > size:
                        raise UpdateError(
                            f"release {version}: {name} does not match its sha256 in the signed "
                            f"manifest: it is larger than the {size} bytes the manifest gives it; "
                            "download stopped, refused, nothing changed"
                        )
                    digest.update(chunk)
                    out.write(chunk)
        except OSError as exc:
            raise UpdateError(f"cannot fetch {url}: {exc}") from None
        if got != size or digest.hexdigest() != signed["sha256"]:
            raise UpdateError(
                f"release {version}: {name} does not match its sha256 in the signed "
                f"manifest ({got} of {size} bytes; tampered or damaged); refused, nothing changed"
            )
        part.rename(folder / name)
