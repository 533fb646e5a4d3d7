#!/usr/bin/env python3
"""image/release.py: build, sign and stage sensor-bridge releases for `sensor-bridge update`.

    image/release.py build --key ~/.ssh/release_ed25519 --out releases/ [--version 0.2.0]
                           [--notes TEXT] [--rollout 10] [--arch x86_64 ...] [--source DIR]
                           [--wheel-cache DIR]
    image/release.py rollout --key ~/.ssh/release_ed25519 releases/0.2.0 50
    image/release.py signers ~/.ssh/release_ed25519.pub >allowed_signers

`build` turns a checkout (--source, default this one) into releases/<version>/: the appliance
wheel, every wheel of image/requirements.lock (pure Python: one file serves every
architecture) and psutil's wheel for each architecture PyPI has one for (aarch64, x86_64;
armv7l takes Debian's python3-psutil, and the manifest says so). manifest.json lists each file
with its sha256, per architecture, with the notes, the rollout percentage and the outbox schema
version; manifest.json.sig is its `ssh-keygen -Y sign` signature (namespace
sensor-bridge-release). releases/index.json lists the versions. Upload the folder as is
(GitHub Releases, any static HTTPS host) and point `[update] url` at it.

Every wheel that goes into a release is taken by its sha256, never by its name: the one pinned
in image/requirements.lock (psutil's in PSUTIL_SHA256 below). A file in the wheel cache that
claims a pinned name and version but has another hash (planted or damaged) stops the build,
named, before anything is signed; the appliance wheel is built from the checked wheels only.
The wheel cache (--wheel-cache, default ~/.cache/sensor-bridge/release-wheels) lives outside
the folder you upload.

`rollout` raises (or lowers) a release's rollout_percent and signs the manifest again.
`signers` prints the allowed-signers line that image/build.sh --release-key puts on the image.
Needs: Python 3.11+, pip, ssh-keygen, and PyPI once (wheels are kept in --wheel-cache).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "sensor-bridge-release"
PRINCIPAL = "release@sensor-bridge"
FORMAT = "sensor-bridge/release/v1"
PYTHON = "3.11"  # the oldest on a bridge (bookworm); every wheel here also serves 3.13 (trixie)
PSUTIL = "7.2.2"
# psutil is not in the lock (a bridge takes Debian's python3-psutil when PyPI has no wheel for
# it), so its wheels' hashes are pinned here: PyPI's, from `pip download` + `pip hash`.
PSUTIL_SHA256 = {
    "aarch64": "b0726cecd84f9474419d67252add4ac0cd9811b04d61123054b9fb6f57df6e9e",
    "x86_64": "076a2d2f923fd4821644f5ba89f059523da90dc9014e85f8e45a5774ca5bc6f9",
}
# pip's --platform per architecture a bridge reports (platform.machine()).
PLATFORMS = {
    "aarch64": ["manylinux2014_aarch64", "linux_aarch64"],
    "armv7l": ["manylinux2014_armv7l", "linux_armv7l"],
    "x86_64": ["manylinux2014_x86_64", "linux_x86_64"],
}
SOURCE_FILES = ("pyproject.toml", "README.md", "LICENSE", "appliance")


def die(message: str) -> None:
    print(f"release: {message}", file=sys.stderr)
    raise SystemExit(2)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
        capture_output=True,
        text=True,
    )


# ---------------------------------------------------------------- the source


def stage_source(source: Path, into: Path, version: str | None) -> tuple[str, int]:
    """A copy of the checkout's package files, its version set; returns (version, outbox schema)."""
    for name in SOURCE_FILES:
        if (source / name).is_dir():
            shutil.copytree(
                source / name, into / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
            )
        elif (source / name).exists():
            shutil.copy2(source / name, into / name)
    init = into / "appliance" / "__init__.py"
    found = re.search(r'^__version__ = "([^"]+)"', init.read_text(), re.M)
    if not found:
        die(f"{source}/appliance/__init__.py has no __version__")
    version = version or found.group(1)
    if not re.fullmatch(r"\d+(\.\d+){1,3}([a-z]+\d+)?", version):
        die(f"--version {version!r}: expected a version like 0.2.0")
    init.write_text(init.read_text().replace(found.group(0), f'__version__ = "{version}"'))
    project = into / "pyproject.toml"
    project.write_text(
        re.sub(
            r'^version = "[^"]+"',
            f'version = "{version}"',
            project.read_text(),
            count=1,
            flags=re.M,
        )
    )
    schema = re.search(
        r"^SCHEMA_VERSION = (\d+)", (into / "appliance" / "outbox" / "schema.py").read_text(), re.M
    )
    return version, int(schema.group(1)) if schema else 1


# ---------------------------------------------------------------- the wheels


def wheel_name(name: str) -> str:
    """A project name as wheel file names spell it (``paho-mqtt`` -> ``paho_mqtt``)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def pins(lock: Path) -> dict[str, tuple[str, set[str]]]:
    """``{wheel name: (version, {sha256, ...})}`` of every ``NAME==VERSION --hash=sha256:...`` entry."""
    found: dict[str, tuple[str, set[str]]] = {}
    for entry in lock.read_text().replace("\\\n", " ").splitlines():
        words = entry.split("#", 1)[0].split()
        if not words:
            continue
        name, _, version = words[0].partition("==")
        hashes = {w.split(":", 1)[1] for w in words[1:] if w.startswith("--hash=sha256:")}
        if not version or not hashes:
            die(f"{lock}: {words[0]!r} is not pinned as NAME==VERSION --hash=sha256:...")
        found[wheel_name(name)] = (version, hashes)
    return found


def download(cache: Path, arch: str, lock: Path, checked: Path) -> tuple[list[Path], list[str]]:
    """The lock's wheels and psutil's for ``arch``, copied into ``checked`` and each checked there
    against its pinned sha256; and notes.

    pip fills ``cache`` (offline first); what is taken from it is decided by hash alone."""
    platforms = [flag for p in PLATFORMS[arch] for flag in ("--platform", p)]
    common = [
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        PYTHON,
        *platforms,
        "-d",
        str(cache),
    ]
    done = _pip_download(common, cache, lock)
    if done.returncode != 0:
        die(f"cannot download image/requirements.lock for {arch}:\n{done.stderr}")
    wanted = pins(lock)
    notes = []
    psutil_hash = PSUTIL_SHA256.get(arch)
    with tempfile.TemporaryDirectory() as tmp:
        psutil_lock = Path(tmp) / "psutil.lock"
        psutil_lock.write_text(f"psutil=={PSUTIL} --hash=sha256:{psutil_hash}\n")
        if psutil_hash and _pip_download(common, cache, psutil_lock).returncode == 0:
            wanted["psutil"] = (PSUTIL, {psutil_hash})
        else:
            notes.append(
                f"psutil: no wheel on PyPI for {arch}; the bridge uses Debian's python3-psutil "
                "(provision.sh installs it)"
            )
    files = [
        _wheel_for(cache, name, version, arch, hashes, checked)
        for name, (version, hashes) in wanted.items()
    ]
    return files, notes


def _pip_download(common: list[str], cache: Path, lock: Path) -> subprocess.CompletedProcess[str]:
    """pip download of ``lock``'s pins into the cache: offline from it first, else from PyPI."""
    for index in (["--no-index", "--find-links", str(cache)], []):
        done = pip(*common, *index, "--require-hashes", "-r", str(lock))
        if done.returncode == 0:
            break
    return done


def _wheel_for(
    cache: Path, name: str, version: str, arch: str, hashes: set[str], checked: Path
) -> Path:
    """The wheel of ``name`` ``version`` for ``arch`` whose sha256 is pinned, as copied from
    ``cache`` into ``checked`` (hashed there: the cache may change under us, the copy does not).

    Any other file there calling itself that wheel stops the build, named: it was planted or
    damaged, and a release must never carry it."""
    chosen = None
    for wheel in sorted(cache.glob("*.whl")):
        parts = wheel.name[: -len(".whl")].split("-")
        if len(parts) not in (5, 6) or parts[0].lower() != name or parts[1] != version:
            continue
        if not (parts[-2:] == ["none", "any"] or arch in parts[-1]):
            continue
        copy = checked / wheel.name
        shutil.copyfile(wheel, copy)
        digest = sha256(copy)
        if digest not in hashes:
            die(
                f"wheel cache: {wheel} claims to be {name} {version} but its sha256 {digest} is "
                "not the one pinned (image/requirements.lock); planted or damaged: remove it. "
                "Nothing was signed"
            )
        chosen = chosen or copy
    if chosen is None:
        die(f"no wheel of {name} {version} for {arch} with its pinned sha256 in {cache}")
    return chosen


def build_appliance(staged: Path, checked: Path, out: Path) -> Path:
    """The appliance's wheel, built with the lock's setuptools from the checked wheels (no index)."""
    done = pip(
        "wheel",
        "--no-deps",
        "--no-index",
        "--find-links",
        str(checked),
        "-w",
        str(out),
        str(staged),
    )
    if done.returncode != 0:
        die(f"building the appliance wheel failed:\n{done.stderr}")
    return next(out.glob("sensor_bridge-*.whl"))


# ---------------------------------------------------------------- manifest and signature


def sign(manifest: Path, key: Path) -> None:
    manifest.with_name(manifest.name + ".sig").unlink(missing_ok=True)
    done = subprocess.run(
        ["ssh-keygen", "-q", "-Y", "sign", "-f", str(key), "-n", NAMESPACE, str(manifest)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        die(f"ssh-keygen could not sign with {key}: {done.stderr.strip()}")


def write_index(out: Path) -> None:
    versions = sorted((p.parent.name for p in out.glob("*/manifest.json")), key=_version_key)
    (out / "index.json").write_text(json.dumps({"versions": versions}, indent=1) + "\n")


def _version_key(version: str) -> tuple[tuple[int, str], ...]:
    return tuple(
        (int(p), "") if p.isdigit() else (-1, p) for p in re.findall(r"\d+|[a-z]+", version)
    )


def default_cache() -> Path:
    """~/.cache/sensor-bridge/release-wheels (or under $XDG_CACHE_HOME): never in the upload folder."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "sensor-bridge" / "release-wheels"


def build(args: argparse.Namespace) -> int:
    started = time.monotonic()
    out = Path(args.out)
    cache = Path(args.wheel_cache or default_cache())
    if cache.resolve().is_relative_to(out.resolve()):
        die(f"--wheel-cache {cache} is inside --out {out}, the folder you upload: keep it apart")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "src"
        staged.mkdir()
        version, schema = stage_source(Path(args.source), staged, args.version)
        dest = out / version
        if dest.exists():
            die(f"{dest} exists: a version is released once; pick a new --version")
        per_arch, notes, files = {}, {}, {}
        checked = Path(tmp) / "checked"  # only the wheels whose hashes were checked
        checked.mkdir()
        for arch in args.arch:
            wheels, notes[arch] = download(
                cache, arch, Path(args.source) / "image" / "requirements.lock", checked
            )
            per_arch[arch] = [w.name for w in wheels]
            files.update({w.name: w for w in wheels})
        appliance = build_appliance(staged, checked, Path(tmp) / "wheel")
        files[appliance.name] = appliance
        partial = out / f".{version}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        for name, path in files.items():
            shutil.copy2(path, partial / name)
    manifest = {
        "format": FORMAT,
        "version": version,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "notes": args.notes,
        "rollout_percent": args.rollout,
        "outbox_schema": schema,
        "python": f">={PYTHON}",
        "appliance": appliance.name,
        "files": {
            name: {"sha256": sha256(partial / name), "size": (partial / name).stat().st_size}
            for name in sorted(files)
        },
        "architectures": {
            arch: {"files": sorted([appliance.name, *per_arch[arch]]), "notes": notes[arch]}
            for arch in args.arch
        },
    }
    (partial / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    sign(partial / "manifest.json", Path(args.key))
    partial.rename(dest)
    write_index(out)
    for arch, body in manifest["architectures"].items():
        size = sum(manifest["files"][name]["size"] for name in body["files"])
        print(
            f"{version} {arch}: {len(body['files'])} files, {size / 1024:.0f} KB"
            + "".join(f"\n  note: {n}" for n in body["notes"])
        )
    print(f"release {version} in {dest} ({time.monotonic() - started:.1f} s)")
    return 0


def rollout(args: argparse.Namespace) -> int:
    manifest_path = Path(args.release) / "manifest.json"
    if not manifest_path.is_file():
        die(f"{manifest_path}: no such file (give the release's folder, e.g. releases/0.2.0)")
    if not 0 <= args.percent <= 100:
        die(f"rollout {args.percent}: expected 0..100")
    manifest = json.loads(manifest_path.read_text())
    manifest["rollout_percent"] = args.percent
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    sign(manifest_path, Path(args.key))
    print(
        f"{manifest['version']}: rollout {args.percent}% (signed again); upload {manifest_path} and its .sig"
    )
    return 0


def signers(args: argparse.Namespace) -> int:
    key = Path(args.public_key).read_text().split()
    if len(key) < 2 or not key[0].startswith(("ssh-", "ecdsa-", "sk-")):
        die(f"{args.public_key}: not an SSH public key (the .pub file)")
    print(f'{PRINCIPAL} namespaces="{NAMESPACE}" {key[0]} {key[1]}')
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="release.py", description=__doc__.split("\n\n")[0])
    actions = parser.add_subparsers(dest="action", required=True)
    b = actions.add_parser("build", help="build and sign a release from a checkout")
    b.add_argument(
        "--key", required=True, help="the release signing key (private; ssh-keygen -t ed25519)"
    )
    b.add_argument(
        "--out", required=True, help="the releases folder; <version>/ and index.json go there"
    )
    b.add_argument("--version", help="the release's version (default: the checkout's)")
    b.add_argument("--notes", default="", help="what changed, for the people rolling it out")
    b.add_argument(
        "--rollout", type=int, default=100, help="percent of bridges that install it by themselves"
    )
    b.add_argument("--arch", action="append", choices=sorted(PLATFORMS), help="default: all three")
    b.add_argument("--source", default=str(REPO), help="the checkout to build (default: this one)")
    b.add_argument(
        "--wheel-cache",
        help="keep downloaded wheels here, outside OUT (default: ~/.cache/sensor-bridge/release-wheels)",
    )
    b.set_defaults(func=build)
    r = actions.add_parser(
        "rollout", help="change a release's rollout percentage and sign it again"
    )
    r.add_argument("--key", required=True)
    r.add_argument("release", help="the release's folder, e.g. releases/0.2.0")
    r.add_argument("percent", type=int)
    r.set_defaults(func=rollout)
    s = actions.add_parser("signers", help="print the allowed-signers line for a public key")
    s.add_argument("public_key")
    s.set_defaults(func=signers)
    args = parser.parse_args(argv)
    if args.action == "build":
        args.arch = args.arch or sorted(PLATFORMS)
        if not 0 <= args.rollout <= 100:
            die(f"--rollout {args.rollout}: expected 0..100")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
