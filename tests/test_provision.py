"""The installer's quick checks: shell scripts, the boot-partition config import, build.sh.

What a person sees when they drop a config on the card (installed, refused with reasons,
secrets taken off the card), what provision.sh and image/build.sh say when called wrongly,
and that build.sh turns a pi-gen run into one folder of .img.xz, .bmap and checksums. The
full install into a root filesystem and the boot are in test_image.py.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tomllib
from pathlib import Path

import pytest
from conftest import REPO, run_cli

from appliance.boot_config import ERROR_NAME, find_boot_config

GOOD = """\
[bridge]
id = "store-7"
timezone = "Europe/Lisbon"

[uplink]
url = "https://example.invalid/api/bridge/v1/ingest"
api_key = "uplink-secret-1"

[[sensors]]
id = "entrance-1"
url = "http://127.0.0.1:9"
password = 'camera-secret-2'
"""


def card(tmp_path: Path, text: str) -> tuple[Path, Path]:
    """A boot partition holding ``text`` as sensor-bridge.toml, and where it gets installed."""
    boot = tmp_path / "boot"
    boot.mkdir(exist_ok=True)
    source = boot / "sensor-bridge.toml"
    source.write_text(text)
    return source, tmp_path / "etc" / "config.toml"


def import_(source: Path, target: Path) -> subprocess.CompletedProcess[str]:
    return run_cli("config", "import", "--from", str(source), "--to", str(target))


# ---------------------------------------------------------------- shell scripts


def shell_scripts() -> list[Path]:
    """Every shell script in the repository, found by name or by its #! line."""
    skip = {".git", ".venv", "node_modules", "__pycache__", "out"}
    found = []
    for path in REPO.rglob("*"):
        if not path.is_file() or skip & set(path.relative_to(REPO).parts):
            continue
        if path.suffix == ".sh":
            found.append(path)
            continue
        try:
            first = path.open("rb").readline(100)
        except OSError:
            continue
        if first.startswith(b"#!") and any(s in first for s in (b"/sh", b"bash", b" sh")):
            found.append(path)
    return sorted(found)


def test_every_shell_script_passes_shellcheck():
    if not shutil.which("shellcheck"):
        pytest.skip("shellcheck is not installed: apt-get install shellcheck")
    scripts = shell_scripts()
    names = {p.relative_to(REPO).as_posix() for p in scripts}
    assert {
        "provision.sh",
        "image/build.sh",
        "image/stage-sensor-bridge/00-install/00-run.sh",
        "image/stage-sensor-bridge/02-hostname/files/sensor-bridge-hostname",
    } <= names
    proc = subprocess.run(
        ["shellcheck", "-x", *map(str, scripts)], capture_output=True, text=True, cwd=REPO
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_pi_gen_runs_the_stage_steps_it_finds():
    """pi-gen runs only executable NN-run.sh files; a lost +x would silently skip the install."""
    stage = REPO / "image" / "stage-sensor-bridge"
    steps = sorted(stage.glob("*/[0-9][0-9]-run.sh")) + [stage / "prerun.sh"]
    assert len(steps) >= 4
    for step in steps:
        assert os.access(step, os.X_OK), f"{step} is not executable"
    assert 'IMG_SUFFIX="-sensor-bridge"' in (stage / "EXPORT_IMAGE").read_text()


# ---------------------------------------------------------------- config import


def test_a_valid_config_is_installed_and_its_secrets_leave_the_card(tmp_path):
    source, target = card(tmp_path, GOOD)
    (source.parent / ERROR_NAME).write_text("an old complaint\n")

    proc = import_(source, target)

    assert proc.returncode == 0, proc.stderr
    assert "installed" in proc.stdout
    assert target.read_text() == GOOD
    assert stat.S_IMODE(target.stat().st_mode) == 0o640  # root:sensor-bridge on a bridge (issue 19)
    assert not source.exists()
    assert not (source.parent / ERROR_NAME).exists()
    retired = (source.parent / "sensor-bridge.toml.imported").read_text()
    assert "uplink-secret-1" not in retired and "camera-secret-2" not in retired
    assert 'url = "http://127.0.0.1:9"' in retired  # the rest stays readable for the person
    assert "removed after import" in retired


def test_the_same_file_again_changes_nothing_on_the_bridge(tmp_path):
    source, target = card(tmp_path, GOOD)
    assert import_(source, target).returncode == 0
    before = target.stat().st_mtime_ns
    source.write_text(GOOD)

    proc = import_(source, target)

    assert proc.returncode == 0
    assert "nothing to install" in proc.stdout
    assert target.stat().st_mtime_ns == before
    assert not source.exists()


def test_an_invalid_file_keeps_the_old_config_and_says_why_on_the_card(tmp_path):
    source, target = card(tmp_path, GOOD)
    assert import_(source, target).returncode == 0
    bad = GOOD.replace('timezone = "Europe/Lisbon"', 'timezone = "Europe/Atlantis"').replace(
        "[[sensors]]", "[[sensors]]\nintervl_s = 60"
    )
    source.write_text(bad)

    proc = import_(source, target)

    assert proc.returncode == 1
    assert target.read_text() == GOOD
    assert source.read_text() == bad  # left in place to be fixed
    error = (source.parent / ERROR_NAME).read_text()
    assert "bridge.timezone: unknown IANA timezone 'Europe/Atlantis'" in error
    assert "sensors[0].intervl_s: unknown key" in error
    assert "keeps running with its previous config" in error
    assert "uplink-secret-1" not in error
    assert "sensors[0].intervl_s" in proc.stderr


def test_an_invalid_first_file_says_the_bridge_has_no_config(tmp_path):
    source, target = card(tmp_path, "[uplink\nurl = 1\n")

    proc = import_(source, target)

    assert proc.returncode == 1
    assert not target.exists()
    error = (source.parent / ERROR_NAME).read_text()
    assert "not valid TOML" in error and "has no config yet" in error


def test_the_retired_copy_saved_back_unchanged_is_refused(tmp_path):
    source, target = card(tmp_path, GOOD)
    assert import_(source, target).returncode == 0
    retired = source.with_name("sensor-bridge.toml.imported")
    source.write_text(retired.read_text())

    proc = import_(source, target)

    assert proc.returncode == 1
    assert "uplink-secret-1" in target.read_text()  # the secrets the bridge has survive
    error = (source.parent / ERROR_NAME).read_text()
    assert "a secret removed after an earlier import" in error
    # ...and with the secrets written back in, it goes through.
    source.write_text(
        source.read_text()
        .replace(
            "# api_key = (removed after import; the bridge keeps it)", 'api_key = "uplink-secret-3"'
        )
        .replace(
            "# password = (removed after import; the bridge keeps it)",
            'password = "camera-secret-4"',
        )
    )
    assert import_(source, target).returncode == 0
    assert tomllib.loads(target.read_text())["uplink"]["api_key"] == "uplink-secret-3"


def test_secrets_it_cannot_blank_line_by_line_are_deleted_with_the_file(tmp_path):
    inline = (
        'uplink = { url = "https://example.invalid/ingest", api_key = "uplink-secret-1" }\n'
        + GOOD.replace(
            '[uplink]\nurl = "https://example.invalid/api/bridge/v1/ingest"\napi_key = "uplink-secret-1"\n',
            "",
        )
    )
    source, target = card(tmp_path, inline)

    assert import_(source, target).returncode == 0

    assert list(source.parent.iterdir()) == []
    assert "uplink-secret-1" in target.read_text()


def test_a_windows_notepad_file_with_bom_and_crlf_imports(tmp_path):
    source, target = card(tmp_path, "")
    source.write_bytes(b"\xef\xbb\xbf" + GOOD.replace("\n", "\r\n").encode())

    proc = import_(source, target)

    assert proc.returncode == 0, proc.stderr
    assert tomllib.loads(target.read_text())["bridge"]["id"] == "store-7"


def test_relative_secret_files_are_looked_up_where_the_config_is_installed(tmp_path):
    text = GOOD.replace('api_key = "uplink-secret-1"', 'api_key_file = "api_key"')
    source, target = card(tmp_path, text)

    proc = import_(source, target)
    assert proc.returncode == 1
    assert f"uplink.api_key_file: cannot read {target.parent / 'api_key'}" in proc.stderr

    target.parent.mkdir()
    (target.parent / "api_key").write_text("from-a-file\n")
    assert import_(source, target).returncode == 0


def test_no_file_on_the_card_is_not_an_error(tmp_path):
    proc = run_cli(
        "-c",
        str(tmp_path / "config.toml"),
        "config",
        "import",
        "--from",
        str(tmp_path / "missing.toml"),
    )
    assert proc.returncode == 2
    assert "no such file" in proc.stderr


def test_the_boot_partition_is_found_on_new_and_old_layouts(tmp_path):
    new, old = tmp_path / "firmware" / "sensor-bridge.toml", tmp_path / "sensor-bridge.toml"
    candidates = (str(new), str(old))
    assert find_boot_config(candidates) is None
    old.write_text(GOOD)
    assert find_boot_config(candidates) == old
    new.parent.mkdir()
    new.write_text(GOOD)
    assert find_boot_config(candidates) == new


# ---------------------------------------------------------------- command lines


def sh(*cmd: str, **kwargs) -> subprocess.CompletedProcess[str]:
    kwargs.setdefault("cwd", REPO)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kwargs)


def test_provision_explains_itself_and_refuses_nonsense(tmp_path):
    help_text = sh("./provision.sh", "--help").stdout
    for mode in ("--root DIR", "--check", "--uninstall", "--dev [--test-tools]", "--mqtt"):
        assert mode in help_text

    wrong = sh("./provision.sh", "--frobnicate")
    assert wrong.returncode == 2 and "unknown option: --frobnicate" in wrong.stderr

    if os.geteuid() != 0:
        pytest.skip("the --root checks below run as root")
    missing = sh("./provision.sh", "--root", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "no such directory" in missing.stderr
    not_a_root = sh("./provision.sh", "--root", str(tmp_path))
    assert (
        not_a_root.returncode == 2 and "does not look like a root filesystem" in not_a_root.stderr
    )
    assert list(tmp_path.iterdir()) == []  # nothing staged into it


def test_build_refuses_to_make_an_image_nobody_can_log_into(tmp_path):
    no_key = sh("image/build.sh")
    assert no_key.returncode == 2 and "--ssh-key FILE.pub is required" in no_key.stderr
    private = tmp_path / "id_ed25519"
    private.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    wrong_key = sh("image/build.sh", "--ssh-key", str(private))
    assert wrong_key.returncode == 2 and "does not look like an SSH public key" in wrong_key.stderr
    arch = sh("image/build.sh", "--ssh-key", str(private), "--arch", "x86_64")
    assert arch.returncode == 2 and "no pinned pi-gen for trixie/x86_64" in arch.stderr


FAKE_PI_GEN = r"""#!/bin/bash -e
# Stands in for pi-gen's build.sh: checks what image/build.sh prepared, "builds" an image.
source ./config
test -x stage-sensor-bridge/00-install/00-run.sh
test -x stage-sensor-bridge/00-install/files/sensor-bridge/provision.sh
test -f stage-sensor-bridge/00-install/files/sensor-bridge/image/requirements.lock
test -f stage2/SKIP_IMAGES
mkdir -p deploy
truncate -s 16M disk.img
printf 'boot sector' | dd of=disk.img conv=notrunc status=none
printf 'rootfs data' | dd of=disk.img bs=1M seek=9 conv=notrunc status=none
xz -c disk.img > "deploy/image_${IMG_DATE}-${IMG_NAME}-sensor-bridge.img.xz"
cp config deploy/config.seen
"""


def test_build_leaves_image_bmap_and_checksums_in_one_folder(tmp_path):
    """image/build.sh around a stand-in pi-gen: pinning, the stage, the config, the artifacts."""
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
    sh(*git, "init", "-q")
    sh(*git, "add", ".")
    sh(*git, "commit", "-qm", "fake pi-gen")
    commit = sh(*git, "rev-parse", "HEAD").stdout.strip()
    key = tmp_path / "key.pub"
    key.write_text(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJ1aWxkZXIta2V5LWZvci10ZXN0cw builder@laptop\n"
    )
    out = tmp_path / "out"

    proc = sh(
        "image/build.sh",
        "--ssh-key",
        str(key),
        "--native",
        "--work",
        str(tmp_path / "work"),
        "--out",
        str(out),
        env={**os.environ, "PI_GEN_URL": str(fake), "PI_GEN_COMMIT": commit},
    )

    assert proc.returncode == 0, proc.stderr
    [folder] = list(out.iterdir())
    names = sorted(p.name for p in folder.iterdir())
    stem = folder.name  # <date>-sensor-bridge-<release>-<arch>
    assert names == sorted(["SHA256SUMS", f"{stem}.bmap", f"{stem}.img.xz"])
    assert sh("sha256sum", "-c", "SHA256SUMS", cwd=folder).returncode == 0
    image = next(folder.glob("*.img.xz"))
    flashed = tmp_path / "sdcard.img"
    copy = sh(
        "bmaptool", "copy", "--bmap", str(next(folder.glob("*.bmap"))), str(image), str(flashed)
    )
    assert copy.returncode == 0, copy.stderr
    assert flashed.read_bytes()[:11] == b"boot sector"
    seen = (tmp_path / "work" / "pi-gen" / "deploy" / "config.seen").read_text()
    for line in (
        "FIRST_USER_NAME=admin",
        "DISABLE_FIRST_BOOT_USER_RENAME=1",
        "ENABLE_SSH=1",
        "PUBKEY_ONLY_SSH=1",
        'STAGE_LIST="stage0 stage1 stage2 stage-sensor-bridge"',
        "TARGET_HOSTNAME=sensor-bridge",
        "export SENSOR_BRIDGE_MQTT=0",
    ):
        assert line in seen
    assert "builder@laptop" in seen
    assert "FIRST_USER_PASS=" in seen and "FIRST_USER_PASS=\n" not in seen
