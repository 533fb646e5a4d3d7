"""Plumbing for the image tests: cached Debian root filesystems, pi-gen's step runner, a KVM guest.

Raspberry Pi OS's own archive is out of reach here, so pi-gen cannot run; instead the tests
debootstrap a Debian root filesystem (cached between runs under
/var/cache/sensor-bridge-tests, keyed by what went into it), play the parts of pi-gen's
stage0-2 that the sensor-bridge stage relies on (the first user, the hostname, the boot
partition), run the stage's own numbered steps exactly as pi-gen does, and then look at the
result in place, through chroot (qemu-user for arm64), or by booting it under QEMU (KVM
where the host's KVM can run a stock kernel, else QEMU's CPU emulation).

The guest's only network is QEMU's user-mode network with ``restrict=on``: it can reach
nothing but the forwards set up here (host loopback services behind 10.0.2.100-102, and
/health and SSH forwarded to 127.0.0.1 on the host).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
STAGE = REPO / "image" / "stage-sensor-bridge"
CACHE_DIR = Path(os.environ.get("SENSOR_BRIDGE_TEST_CACHE", "/var/cache/sensor-bridge-tests"))
MIRROR = os.environ.get("SENSOR_BRIDGE_TEST_MIRROR", "http://deb.debian.org/debian")
# arm64 is checked on bookworm, the booted x86_64 system on trixie: both releases the image
# is built from.
ARM64_SUITE, BOOT_SUITE = "bookworm", "trixie"
# Bump when the way a cached root filesystem is made changes.
ROOTFS_RECIPE = 1

# What Raspberry Pi OS Lite has and provision.sh relies on. The amd64 (booted) system leaves
# out nftables and logrotate so provision.sh's own apt step runs; the arm64 one has everything,
# because apt under emulation is slow.
COMMON_PACKAGES = [
    "systemd",
    "systemd-sysv",
    "dbus",
    "python3",
    "python3-venv",
    "python3-psutil",
    "ca-certificates",
    "openssh-server",
    "systemd-timesyncd",
    "sudo",
    "iproute2",
]
BOOT_PACKAGES = [*COMMON_PACKAGES, "linux-image-amd64", "udev", "kmod"]
ARM64_PACKAGES = [*COMMON_PACKAGES, "nftables", "logrotate"]

FIRST_USER = "admin"  # image/build.sh's FIRST_USER_NAME

TOOL_PACKAGES = {
    "debootstrap": "debootstrap",
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-aarch64-static": "qemu-user-static",
    "mkfs.vfat": "dosfstools",
    "mcopy": "mtools",
    "mkfs.ext4": "e2fsprogs",
    "debugfs": "e2fsprogs",
    "systemd-analyze": "systemd",
    "socat": "socat",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "shellcheck": "shellcheck",
}


def require(*tools: str, kvm: bool = False, arm64: bool = False) -> None:
    """Skip (with the reason and the fix) unless this machine can run the image tests."""
    if os.geteuid() != 0:
        pytest.skip("image tests need root (debootstrap, chroot, mounts)")
    missing = [t for t in tools if not shutil.which(t)]
    if missing:
        packages = sorted({TOOL_PACKAGES.get(t, t) for t in missing})
        pytest.skip(f"missing {', '.join(missing)}: apt-get install {' '.join(packages)}")
    if kvm and not os.access("/dev/kvm", os.R_OK | os.W_OK):
        pytest.skip("no usable /dev/kvm: the boot test needs hardware virtualisation")
    if arm64 and not arm64_binfmt():
        pytest.skip("arm64 programs cannot run here: binfmt_misc has no qemu-aarch64 entry")


def arm64_binfmt() -> bool:
    """True when arm64 binaries run through qemu-user (mounting binfmt_misc if needed)."""
    misc = Path("/proc/sys/fs/binfmt_misc")
    if not (misc / "register").exists():
        subprocess.run(
            ["mount", "-t", "binfmt_misc", "binfmt_misc", str(misc)], capture_output=True
        )
    if not (misc / "qemu-aarch64").exists() and shutil.which("update-binfmts"):
        subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], capture_output=True)
    return (misc / "qemu-aarch64").exists()


def run(
    cmd: list[str], timeout: float = 600, check: bool = True, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd``; on failure raise with its output so the test report shows what went wrong."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, cmd))} exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout[-6000:]}\n--- stderr\n{proc.stderr[-6000:]}"
        )
    return proc


# ---------------------------------------------------------------- cached root filesystems


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def base_rootfs(suite: str, arch: str, packages: list[str]) -> Path:
    """A debootstrapped Debian ``suite`` root filesystem for ``arch``, built once and then reused."""
    recipe = json.dumps([ROOTFS_RECIPE, suite, MIRROR, arch, sorted(packages)])
    key = hashlib.sha256(recipe.encode()).hexdigest()[:12]
    dest = CACHE_DIR / f"rootfs-{suite}-{arch}-{key}"
    if (dest / ".complete").exists():
        return dest
    with _locked(CACHE_DIR / f".{dest.name}.lock"):
        if (dest / ".complete").exists():
            return dest
        tmp = dest.with_name(dest.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--arch={arch}",
                f"--include={','.join(packages)}",
                suite,
                str(tmp),
                MIRROR,
            ],
            timeout=1200,
        )
        run(["chroot", str(tmp), "apt-get", "clean"])
        (tmp / "etc" / "hostname").write_text("debian\n")
        tmp.rename(dest)
        (dest / ".complete").write_text(recipe + "\n")
    for stale in CACHE_DIR.glob(f"rootfs-{suite}-{arch}-*"):  # older recipes: disk hygiene
        if stale != dest and not stale.name.endswith(".partial"):
            shutil.rmtree(stale, ignore_errors=True)
    return dest


def working_copy(base: Path, dest: Path) -> Path:
    """A private copy of a cached root filesystem that a test may change freely."""
    run(["cp", "-a", "--reflink=auto", str(base), str(dest)], timeout=300)
    (dest / ".complete").unlink(missing_ok=True)
    return dest


def chroot(
    root: Path, *cmd: str, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return run(["chroot", str(root), *cmd], check=check, timeout=timeout, env=clean_env())


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a person's root shell: none of this machine's pip or CI settings."""
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
    }
    env.update(extra)
    return env


def source_snapshot(dest: Path) -> Path:
    """The checkout as image/build.sh hands it to the stage (files/sensor-bridge).

    A snapshot, so the install and a later re-run see the same source even while someone
    edits the working tree.
    """
    dest.mkdir(parents=True)
    items = [
        "provision.sh",
        "pyproject.toml",
        "appliance",
        "image/requirements.lock",
        "image/sensor-bridge.example.toml",
        "README.md",
        "LICENSE",
    ]
    present = [item for item in items if (REPO / item).exists()]
    tar = subprocess.Popen(
        ["tar", "-C", str(REPO), "--exclude=__pycache__", "--exclude=*.pyc", "-cf", "-", *present],
        stdout=subprocess.PIPE,
    )
    run(["tar", "-C", str(dest), "-xf", "-"], stdin=tar.stdout)
    assert tar.wait() == 0
    return dest


# ---------------------------------------------------------------- pi-gen, played


def pigen_prepare(root: Path, pubkey: str, hostname: str = "sensor-bridge") -> None:
    """What pi-gen's stage0-2 leave that the sensor-bridge stage relies on.

    The first user as image/build.sh configures it (a throwaway password, the builder's key
    in authorized_keys), TARGET_HOSTNAME, and the boot partition's mount point.
    """
    chroot(
        root,
        "useradd",
        "--create-home",
        "--shell",
        "/bin/bash",
        "--uid",
        "1000",
        "--groups",
        "sudo",
        FIRST_USER,
    )
    throwaway = hashlib.sha256(os.urandom(16)).hexdigest()
    chroot(root, "sh", "-c", f"echo '{FIRST_USER}:{throwaway}' | chpasswd")
    ssh_dir = root / "home" / FIRST_USER / ".ssh"
    ssh_dir.mkdir(mode=0o700)
    (ssh_dir / "authorized_keys").write_text(pubkey)
    os.chmod(ssh_dir / "authorized_keys", 0o600)
    os.chown(ssh_dir, 1000, 1000)
    os.chown(ssh_dir / "authorized_keys", 1000, 1000)
    (root / "etc" / "hostname").write_text(hostname + "\n")
    hosts = (root / "etc" / "hosts").read_text() if (root / "etc" / "hosts").exists() else ""
    (root / "etc" / "hosts").write_text(hosts + f"127.0.1.1\t{hostname}\n")
    (root / "boot" / "firmware").mkdir(parents=True, exist_ok=True)


# pi-gen's helpers as its build.sh exports them to every step (scripts/common), minus capsh.
PIGEN_FUNCTIONS = r"""
log() { date +"[%T] $*"; }
on_chroot() {
    mountpoint -q "${ROOTFS_DIR}/proc" || mount -t proc proc "${ROOTFS_DIR}/proc"
    mountpoint -q "${ROOTFS_DIR}/dev" || mount --bind /dev "${ROOTFS_DIR}/dev"
    mountpoint -q "${ROOTFS_DIR}/dev/pts" || mount --bind /dev/pts "${ROOTFS_DIR}/dev/pts"
    mountpoint -q "${ROOTFS_DIR}/sys" || mount --bind /sys "${ROOTFS_DIR}/sys"
    chroot "${ROOTFS_DIR}/" /bin/bash -e "$@"
}
copy_previous() { echo "copy_previous: ${ROOTFS_DIR} must exist already" >&2; return 1; }
export -f log on_chroot copy_previous
"""


def run_stage(stage: Path, root: Path, env: dict[str, str]) -> str:
    """Run a pi-gen stage directory's prerun.sh and numbered steps, in pi-gen's order.

    Returns the steps' combined output. Mounts that on_chroot made are undone at the end,
    as pi-gen does between stages.
    """
    env = {**clean_env(), "ROOTFS_DIR": str(root), **env}
    log: list[str] = []

    def bash(script: str, cwd: Path, stdin: str | None = None) -> None:
        proc = run(
            ["bash", "-c", PIGEN_FUNCTIONS + script],
            cwd=cwd,
            env=env,
            input=stdin,
            timeout=900,
            check=False,
        )
        log.append(f"== {cwd.name}: {script.strip()}\n{proc.stdout}{proc.stderr}")
        if proc.returncode != 0:
            raise AssertionError(f"pi-gen step failed in {cwd}:\n" + "\n".join(log)[-8000:])

    try:
        if os.access(stage / "prerun.sh", os.X_OK):
            bash("./prerun.sh", stage)
        for step in sorted(p for p in stage.iterdir() if p.is_dir()):
            if (step / "SKIP").exists():
                continue
            for i in (f"{n:02d}" for n in range(100)):
                packages = step / f"{i}-packages"
                if packages.exists():
                    names = " ".join(
                        line.split("#")[0].strip() for line in packages.read_text().splitlines()
                    )
                    bash(f"on_chroot <<< 'apt-get install -y {names}'", step)
                if os.access(step / f"{i}-run.sh", os.X_OK):
                    bash(f"./{i}-run.sh", step)
                if (step / f"{i}-run-chroot.sh").exists():
                    bash("on_chroot", step, stdin=(step / f"{i}-run-chroot.sh").read_text())
    finally:
        for mount in ("sys", "dev/pts", "dev", "proc"):
            target = root / mount
            if subprocess.run(["mountpoint", "-q", str(target)]).returncode == 0:
                subprocess.run(["umount", str(target)], check=False)
    return "\n".join(log)


def host_ca_bundle(root: Path) -> dict[str, str]:
    """Let pip inside ``root`` trust what this host trusts (a TLS proxy's CA, say).

    Returns the environment for provision.sh; the bundle sits in /var/tmp of ``root``.
    """
    bundle = Path(os.environ.get("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"))
    if not bundle.exists():
        return {}
    shutil.copy(bundle, root / "var" / "tmp" / "host-ca.pem")
    return {"PIP_CERT": "/var/tmp/host-ca.pem"}


def tree_state(root: Path, paths: list[str]) -> dict[str, tuple[int, int, int, int, str]]:
    """mode, uid, gid, mtime and link target (or size) of everything under ``paths``."""
    state = {}
    for top in paths:
        base = root / top.lstrip("/")
        if not base.exists() and not base.is_symlink():
            continue
        for path in [base, *base.rglob("*")] if base.is_dir() and not base.is_symlink() else [base]:
            st = path.lstat()
            extra = os.readlink(path) if path.is_symlink() else str(st.st_size)
            state[str(path.relative_to(root))] = (
                st.st_mode,
                st.st_uid,
                st.st_gid,
                st.st_mtime_ns,
                extra,
            )
    return state


# ---------------------------------------------------------------- disks


def fat_image(path: Path, files: dict[str, str], size_mb: int = 64) -> Path:
    """A FAT boot partition image holding ``files`` (name -> text), like a Pi's."""
    with open(path, "wb") as image:
        image.truncate(size_mb * 1024 * 1024)
    run(["mkfs.vfat", "-n", "BOOTFS", str(path)])
    for name, text in files.items():
        fat_put(path, name, text)
    return path


def fat_put(image: Path, name: str, text: str) -> None:
    source = image.with_name(f".{name}.upload")
    source.write_text(text)
    run(["mcopy", "-o", "-i", str(image), str(source), f"::{name}"])
    source.unlink()


def fat_files(image: Path) -> dict[str, str]:
    """Every file on the FAT image, name -> text (read by mtools, no mount needed)."""
    listing = run(["mdir", "-b", "-i", str(image), "::"]).stdout.split()
    files = {}
    for entry in listing:
        name = entry.removeprefix("::/")
        files[name] = run(["mtype", "-i", str(image), f"::{name}"]).stdout
    return files


def ext4_image(root: Path, path: Path, size_mb: int = 3072) -> Path:
    """The root filesystem as an ext4 disk image (mkfs.ext4 -d copies the tree in)."""
    with open(path, "wb") as image:
        image.truncate(size_mb * 1024 * 1024)
    run(["mkfs.ext4", "-q", "-F", "-L", "rootfs", "-d", str(root), str(path)], timeout=300)
    return path


# ---------------------------------------------------------------- the guest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(
    what: str,
    probe: Callable[[], Any],
    timeout: float,
    every: float = 0.25,
    alive: Callable[[], str | None] | None = None,
) -> Any:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if alive and (dead := alive()):
            raise AssertionError(f"gave up waiting for {what}: {dead}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout:.0f} s")
        time.sleep(every)


def accelerator() -> list[str]:
    """KVM when it can run a stock Debian kernel, else QEMU's own CPU emulation (TCG).

    Some hosts are themselves virtual machines whose /dev/kvm is PVM ("pagetable virtual
    machine"): it runs only guest kernels built for PVM, and a stock kernel hangs in its
    decompressor. SENSOR_BRIDGE_TEST_ACCEL=kvm|tcg overrides the choice.
    """
    choice = os.environ.get("SENSOR_BRIDGE_TEST_ACCEL")
    if choice is None:
        usable = (
            os.access("/dev/kvm", os.R_OK | os.W_OK) and not Path("/sys/module/kvm_pvm").exists()
        )
        choice = "kvm" if usable else "tcg"
    return ["-enable-kvm"] if choice == "kvm" else ["-accel", "tcg,thread=multi"]


# ssh and scp into a throwaway guest: no prompts, no host-key memory, no chatter.
QUIET_SSH = (
    "-o",
    "BatchMode=yes",
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "LogLevel=ERROR",
)


class Guest:
    """An x86_64 KVM guest booting ``root.img`` with ``boot.img`` as its boot partition.

    ``services`` maps guest addresses (10.0.2.100...) to host loopback ports; socat relays
    each connection. /health (guest port 8080), SSH and MQTT are forwarded to host loopback ports.
    """

    def __init__(
        self,
        workdir: Path,
        root_img: Path,
        boot_img: Path,
        kernel: Path,
        initrd: Path,
        key: Path,
        services: dict[str, int],
    ) -> None:
        self.workdir = workdir
        self.root_img, self.boot_img = root_img, boot_img
        self.kernel, self.initrd = kernel, initrd
        self.key = key
        self.services = services
        self.health_port = free_port()
        self.ssh_port = free_port()
        self.mqtt_port = free_port()
        self.console = workdir / "console.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self) -> None:
        forwards = [
            f"hostfwd=tcp:127.0.0.1:{self.health_port}-:8080",
            f"hostfwd=tcp:127.0.0.1:{self.ssh_port}-:22",
            f"hostfwd=tcp:127.0.0.1:{self.mqtt_port}-:1883",
        ]
        for address, port in self.services.items():
            forwards.append(f"guestfwd=tcp:{address}:80-cmd:socat - TCP:127.0.0.1:{port}")
        cmd = [
            "qemu-system-x86_64",
            *accelerator(),
            "-m",
            "1024",
            "-smp",
            "2",
            "-display",
            "none",
            "-monitor",
            "none",
            "-serial",
            f"file:{self.console}",
            "-no-reboot",
            "-kernel",
            str(self.kernel),
            "-initrd",
            str(self.initrd),
            "-append",
            "root=/dev/vda rw console=ttyS0 net.ifnames=0 systemd.show_status=1",
            "-drive",
            f"file={self.root_img},if=virtio,format=raw",
            "-drive",
            f"file={self.boot_img},if=virtio,format=raw",
            "-netdev",
            "user,id=net0,restrict=on," + ",".join(forwards),
            "-device",
            "virtio-net-pci,netdev=net0",
            # A watchdog device, so systemd's RuntimeWatchdogSec has something to arm.
            "-device",
            "i6300esb",
        ]
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=open(self.workdir / "qemu.err", "wb")
        )

    def dead(self) -> str | None:
        """Why the guest is gone, or None while it runs."""
        if self.proc is None or self.proc.poll() is None:
            return None
        return (
            f"qemu exited {self.proc.returncode}: {(self.workdir / 'qemu.err').read_text()[-2000:]}"
            + (f"\n--- console\n{self.console_tail()}")
        )

    def console_tail(self, chars: int = 6000) -> str:
        try:
            return self.console.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def ssh(
        self,
        command: str,
        user: str = FIRST_USER,
        check: bool = True,
        timeout: float = 60,
        extra: tuple[str, ...] = (),
    ) -> subprocess.CompletedProcess[str]:
        cmd = [
            "ssh",
            "-p",
            str(self.ssh_port),
            "-i",
            str(self.key),
            *QUIET_SSH,
            "-o",
            "ConnectTimeout=5",
            *extra,
            f"{user}@127.0.0.1",
            command,
        ]
        return run(cmd, check=check, timeout=timeout)

    def copy_in(self, local: Path, remote: str) -> None:
        """Copy a file into the guest (as the first user) with scp."""
        run(
            [
                "scp",
                "-q",
                "-P",
                str(self.ssh_port),
                "-i",
                str(self.key),
                *QUIET_SSH,
                str(local),
                f"{FIRST_USER}@127.0.0.1:{remote}",
            ],
            timeout=60,
        )

    def wait_ssh(self, timeout: float = 120) -> None:
        wait_for(
            "SSH login into the guest",
            lambda: self.ssh("true", check=False, timeout=20).returncode == 0,
            timeout,
            every=1,
            alive=self.dead,
        )

    def stop(self, timeout: float = 90) -> None:
        """Power off cleanly (so the FAT and ext4 images are consistent), or kill."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.ssh("sudo systemctl poweroff", check=False, timeout=20)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
