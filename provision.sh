#!/usr/bin/env bash
# provision.sh: the one installer of sensor-bridge.
#
#   sudo ./provision.sh [--mqtt]              install or update on this Raspberry Pi OS / Debian machine
#   sudo ./provision.sh --root DIR [--mqtt]   install into the root filesystem at DIR (an image being
#                                             built: the pi-gen stage runs this; needs no running systemd)
#   add --check to either                     print what would change, change nothing
#   sudo ./provision.sh --uninstall [--root DIR]
#                                             remove the services, the venv and the system settings; keep
#                                             the config (/etc/sensor-bridge) and the outbox with any
#                                             undelivered readings (/var/lib/sensor-bridge)
#   ./provision.sh --dev [--test-tools]       set up ./.venv in this checkout (demo, tests, benchmarks);
#                                             --test-tools also installs the Debian packages the
#                                             tests drive for real (mosquitto, qemu, ...), as root
#
# It sets up: the system user sensor-bridge; /opt/sensor-bridge/venv with the appliance and the
# hash-pinned packages of image/requirements.lock; the units of appliance/units/, enabled; the
# boot-partition config import; journald size caps; an nftables firewall (SSH, /health, push and
# MQTT from local networks only, no routing); SSH with keys only and no root login; the hardware
# watchdog armed through systemd; time sync; the release signers of `sensor-bridge update` and its
# timer; WireGuard remote access through systemd-networkd ([remote]); unattended security
# upgrades that reboot only inside [update] window. --mqtt adds mosquitto, set up by `sensor-bridge mqtt
# setup`. A second run changes nothing. Needs network access to the Debian archive and PyPI.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
TEST_PACKAGES=(mosquitto mosquitto-clients
    # the bridge's WireGuard key is made and derived by `wg genkey` / `wg pubkey` (appliance/remote.py)
    wireguard-tools
    # the fleet page's browser tests (driven by playwright-core from cloud/nextjs)
    chromium
    # the cloud side's tests: a throwaway PostgreSQL cluster
    postgresql openssl
    # image tests: a Debian rootfs, the install step in it (arm64 through qemu), a QEMU boot,
    # image/build.sh's artifacts
    debootstrap qemu-user-static binfmt-support qemu-system-x86 dosfstools mtools e2fsprogs
    shellcheck systemd socat openssh-client bmap-tools xz-utils git)

SERVICE_USER=sensor-bridge
OPT=/opt/sensor-bridge
ETC=/etc/sensor-bridge
STATE=/var/lib/sensor-bridge
UNIT_DIR=/etc/systemd/system
MARK="# Written by sensor-bridge's provision.sh; provision.sh --uninstall removes it."
# Ports admitted from local networks: SSH, MQTT, /health ([health].listen), HTTP push ([push].listen).
LAN_PORTS="22, 1883, 8080, 8090"
WG_IF=wg-bridge   # the tunnel of [remote] (appliance/remote.py)

say() { printf 'provision: %s\n' "$*" >&2; }
die() { say "$*"; exit 2; }

apt_install() {
    if [ "$(id -u)" != 0 ]; then
        say "need root to install Debian packages: $*"
        say "run: sudo apt-get install -y $*"
        return 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    if [ -z "${_apt_updated:-}" ]; then apt-get update -qq; _apt_updated=1; fi
    apt-get -o Acquire::Retries=3 install -y -qq --no-install-recommends "$@" >/dev/null
}

missing_packages() {
    local pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || printf '%s ' "$pkg"
    done
}

dev_setup() {
    local with_tools=$1 venv="$here/.venv"
    if [ "$with_tools" = 1 ]; then
        local need
        need=$(missing_packages "${TEST_PACKAGES[@]}")
        # The cloud routes run on Node.js; a machine that has one (from any source) keeps it.
        command -v npm >/dev/null || need="$need nodejs npm"
        if [ -n "$need" ]; then
            say "installing test tools: $need"
            # shellcheck disable=SC2086
            apt_install $need
        fi
    fi
    if [ ! -x "$venv/bin/python" ]; then
        if ! python3 -m venv "$venv" 2>/dev/null; then
            rm -rf "$venv"
            say "python3 cannot make a venv here; installing python3-venv"
            apt_install python3-venv
            python3 -m venv "$venv"
        fi
    fi
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -e "${here}[test]"
    say "ready: $venv (sensor-bridge $("$venv/bin/sensor-bridge" --version | cut -d' ' -f2))"
}

# ------------------------------------------------------------------ staging (outside the target)
#
# The install itself always runs as a copy of this script inside the target: directly on a
# running machine, or through chroot for --root. The copy carries what pip builds the appliance
# from, so a checkout never gets root-owned build files.

PAYLOAD=(provision.sh pyproject.toml README.md LICENSE appliance image/requirements.lock image/release-signers)

stage_and_run() {
    local root=$1; shift
    local staging mounted=()
    if [ "$(id -u)" != 0 ] && ! { [ "$root" = / ] && [[ " $* " == *" --check "* ]]; }; then
        die "run as root (sudo ./provision.sh ...)"
    fi
    if [ "$root" != / ]; then
        [ -d "$root" ] || die "--root $root: no such directory"
        root=$(cd "$root" && pwd)
        if [ ! -e "$root/etc/os-release" ] || [ ! -x "$root/bin/sh" ]; then
            die "--root $root does not look like a root filesystem (no etc/os-release or bin/sh)"
        fi
        chroot "$root" /bin/true 2>/dev/null ||
            die "cannot run programs of $root here: for another architecture install qemu-user-static and binfmt-support"
    fi
    mkdir -p "$root/var/tmp"
    staging=$(mktemp -d "$root/var/tmp/sensor-bridge-provision.XXXXXX")
    # shellcheck disable=SC2064  # expand now: these are this run's paths
    trap "cleanup_staging '$root' '$staging'" EXIT
    local item present=()
    for item in "${PAYLOAD[@]}"; do
        [ -e "$here/$item" ] && present+=("$item")
    done
    tar -C "$here" --exclude=__pycache__ --exclude='*.pyc' -cf - "${present[@]}" | tar -C "$staging" -xf -
    if [ "$root" = / ]; then
        bash "$staging/provision.sh" --inside "$@"
        return
    fi
    # What pi-gen's on_chroot has mounted stays; what we mount we unmount (in cleanup_staging).
    if ! mountpoint -q "$root/proc"; then mount -t proc proc "$root/proc"; mounted+=("$root/proc"); fi
    if ! mountpoint -q "$root/dev"; then mount --bind /dev "$root/dev"; mounted+=("$root/dev"); fi
    if ! mountpoint -q "$root/dev/pts"; then mount --bind /dev/pts "$root/dev/pts"; mounted+=("$root/dev/pts"); fi
    _mounted=("${mounted[@]}")
    [ -s "$root/etc/resolv.conf" ] || say "warning: $root/etc/resolv.conf is empty: apt and pip need DNS"
    chroot "$root" /bin/bash "${staging#"$root"}/provision.sh" --inside "$@"
}

_mounted=()
cleanup_staging() {
    local root=$1 staging=$2 mnt i
    for ((i = ${#_mounted[@]} - 1; i >= 0; i--)); do
        mnt=${_mounted[i]}
        umount "$mnt" || say "warning: could not unmount $mnt"
    done
    rm -rf "$staging"
}

# ------------------------------------------------------------------ inside the target

changes=0
check=0
live=0          # 1 when systemd runs this machine: then services are (re)started, not just enabled
declare -A touched=()   # what changed, for the live apply at the end: venv, units, journald, ...

# Count a change; in --check mode only print it and tell the caller not to act.
change() {
    changes=$((changes + 1))
    if [ "$check" = 1 ]; then
        say "would $*"
        return 1
    fi
    say "$*"
}

# write_file DEST MODE OWNER:GROUP TOUCH < content
write_file() {
    local dest=$1 mode=$2 owner=$3 what=$4 tmp
    tmp=$(mktemp)
    cat >"$tmp"
    if [ -f "$dest" ] && cmp -s "$tmp" "$dest"; then
        rm -f "$tmp"
        ensure_mode "$dest" "$mode" "$owner"
        return
    fi
    if change "write $dest"; then
        mkdir -p "$(dirname "$dest")"
        install -m "$mode" -o "${owner%:*}" -g "${owner#*:}" "$tmp" "$dest"
        touched[$what]=1
    fi
    rm -f "$tmp"
}

ensure_mode() {
    local path=$1 mode=$2 owner=$3
    if [ "$(stat -c '%a %U:%G' "$path")" != "$mode $owner" ]; then
        if change "set $path to mode $mode, owner $owner"; then
            chmod "$mode" "$path"
            chown "$owner" "$path"
        fi
    fi
}

ensure_dir() {
    local path=$1 mode=$2 owner=$3
    if [ ! -d "$path" ]; then
        if change "create $path"; then
            install -d -m "$mode" -o "${owner%:*}" -g "${owner#*:}" "$path"
        fi
        return
    fi
    ensure_mode "$path" "$mode" "$owner"
}

remove_path() {
    local path=$1
    if [ -e "$path" ] || [ -L "$path" ]; then
        if change "remove $path"; then rm -rf "$path"; fi
    fi
}

enable_unit() {
    local unit=$1
    if ! systemctl is-enabled --quiet "$unit" 2>/dev/null; then
        if change "enable $unit"; then systemctl enable --quiet "$unit"; fi
    fi
}

ntp_client_missing() {
    ! dpkg-query -W -f='${Status} ${Package}\n' systemd-timesyncd chrony ntpsec ntp openntpd 2>/dev/null |
        grep -q '^install ok installed'
}

ensure_packages() {
    local wanted=(python3 python3-venv python3-psutil ca-certificates nftables openssh-server logrotate
        wireguard-tools unattended-upgrades)
    ntp_client_missing && wanted+=(systemd-timesyncd)
    [ "$with_mqtt" = 1 ] && wanted+=(mosquitto)
    local need
    need=$(missing_packages "${wanted[@]}")
    # Raspberry Pi OS: gpiozero's preferred pin library, seen through the venv's system site packages.
    if [ -z "$(missing_packages python3-venv)" ] && apt-cache show python3-lgpio >/dev/null 2>&1; then
        need+=$(missing_packages python3-lgpio)
    fi
    if [ -n "$need" ] && change "install Debian packages: $need"; then
        # shellcheck disable=SC2086
        apt_install $need
    fi
}

ensure_user() {
    if ! getent passwd "$SERVICE_USER" >/dev/null; then
        if change "create system user $SERVICE_USER"; then
            useradd --system --user-group --home-dir "$STATE" --no-create-home \
                --shell /usr/sbin/nologin --comment "sensor-bridge appliance" "$SERVICE_USER"
        fi
    fi
    # gpio: the LED service drives a pin (the group exists on Raspberry Pi OS only).
    if getent group gpio >/dev/null && ! id -nG "$SERVICE_USER" 2>/dev/null | grep -qw gpio; then
        if change "add $SERVICE_USER to group gpio"; then usermod -aG gpio "$SERVICE_USER"; fi
    fi
}

# A fingerprint of everything the venv is built from: same inputs, same venv, nothing to do.
venv_stamp() {
    {
        python3 --version 2>&1
        (cd "$src" && find appliance pyproject.toml image/requirements.lock -type f \
            ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 | sort -z | xargs -0 sha256sum)
    } | sha256sum | cut -c1-16
}

# The venv lives in venv-<stamp>; /opt/sensor-bridge/venv is a symlink switched in one rename,
# so a running service never sees a half-built venv and an update that fails changes nothing.
ensure_venv() {
    local stamp dir current=""
    if [ -z "$(missing_packages python3 python3-venv)" ]; then
        stamp=$(venv_stamp)
    else
        stamp=pending   # --check before the packages are there
    fi
    dir="$OPT/venv-$stamp"
    [ -L "$OPT/venv" ] && current=$(readlink "$OPT/venv")
    if [ "$current" != "venv-$stamp" ] || ! "$OPT/venv/bin/sensor-bridge" --version >/dev/null 2>&1; then
        if change "build $OPT/venv (sensor-bridge and image/requirements.lock)"; then
            build_venv "$dir"
            ln -sfn "venv-$stamp" "$OPT/venv.new"
            mv -T "$OPT/venv.new" "$OPT/venv"
            touched[venv]=1
        fi
    fi
    if [ "$(readlink /usr/local/bin/sensor-bridge 2>/dev/null)" != "$OPT/venv/bin/sensor-bridge" ]; then
        if change "link /usr/local/bin/sensor-bridge"; then
            mkdir -p /usr/local/bin
            ln -sfn "$OPT/venv/bin/sensor-bridge" /usr/local/bin/sensor-bridge
        fi
    fi
}

# After the services moved to the new venv: a running one may still import from the old.
remove_old_venvs() {
    local current old
    current=$(readlink "$OPT/venv" 2>/dev/null) || return 0
    for old in "$OPT"/venv-*; do
        [ -d "$old" ] && [ "$old" != "$OPT/$current" ] && remove_path "$old"
    done
    return 0
}

build_venv() {
    local dir=$1
    rm -rf "$dir"
    # System site packages: psutil from Debian, lgpio from Raspberry Pi OS.
    python3 -m venv --system-site-packages "$dir"
    # PIP_CONFIG_FILE: the hashes are PyPI's; a mirror configured for the machine (piwheels on
    # Raspberry Pi OS) serves other builds of the same version.
    local pip=(env PIP_CONFIG_FILE=/dev/null "$dir/bin/python" -m pip --disable-pip-version-check -q)
    "${pip[@]}" install --no-cache-dir --require-hashes --no-deps --only-binary=:all: \
        --ignore-installed -r "$src/image/requirements.lock"
    "${pip[@]}" install --no-cache-dir --no-deps --no-index --no-build-isolation "$src"
    "${pip[@]}" check >/dev/null || { "${pip[@]}" check >&2; die "venv $dir is missing a package"; }
    "$dir/bin/sensor-bridge" --version >/dev/null
    rm -rf "$src/build" "$src"/*.egg-info
}

# Units: every file of appliance/units/ (and drop-in directories like mosquitto.service.d/).
ensure_units() {
    local path name manifest="$OPT/units.list" listed=()
    for path in "$src"/appliance/units/*; do
        name=$(basename "$path")
        if [ -d "$path" ]; then
            local conf
            for conf in "$path"/*.conf; do
                [ -e "$conf" ] || continue
                # shellcheck disable=SC2094  # reads the source, writes under $UNIT_DIR
                write_file "$UNIT_DIR/$name/$(basename "$conf")" 644 root:root units <"$conf"
                listed+=("$name/$(basename "$conf")")
            done
        else
            write_file "$UNIT_DIR/$name" 644 root:root units <"$path"
            listed+=("$name")
        fi
    done
    # Units an older version installed and this one no longer has.
    if [ -f "$manifest" ]; then
        local old
        while read -r old; do
            [ -n "$old" ] || continue
            if ! printf '%s\n' "${listed[@]}" | grep -qxF "$old"; then
                if [ -e "$UNIT_DIR/$old" ] && [[ $old != */* ]] && systemctl is-enabled --quiet "$old" 2>/dev/null; then
                    if change "disable $old"; then systemctl disable --quiet "$old" || true; fi
                fi
                remove_path "$UNIT_DIR/$old"
            fi
        done <"$manifest"
    fi
    write_file "$manifest" 644 root:root manifest < <(printf '%s\n' "${listed[@]}")
    for name in "${listed[@]}"; do
        [[ $name == */* ]] && continue
        if grep -q '^\[Install\]' "$src/appliance/units/$name"; then
            # mosquitto's own unit belongs to the mqtt setup
            enable_unit "$name"
        fi
    done
}

ensure_journald() {
    write_file /etc/systemd/journald.conf.d/50-sensor-bridge.conf 644 root:root journald <<EOF
$MARK
# Capped persistent, not volatile: the journal keeps the bridge's logs across reboots, because
# a watchdog reboot or a power cut must leave its reason for the person who comes to look.
# Kind to the SD card: the services log changes, never a line per poll; journald writes to the
# card every SyncIntervalSec (and at once only for critical lines), compressed, within these caps.
# The services write no log files of their own; mosquitto's /var/log/mosquitto is rotated by
# Debian's /etc/logrotate.d/mosquitto (logrotate is installed above).
[Journal]
Storage=persistent
SyncIntervalSec=5m
Compress=yes
SystemMaxUse=100M
SystemKeepFree=500M
SystemMaxFileSize=10M
RuntimeMaxUse=20M
MaxRetentionSec=2month
EOF
}

ensure_watchdog() {
    write_file /etc/systemd/system.conf.d/50-sensor-bridge-watchdog.conf 644 root:root watchdog <<EOF
$MARK
# Arm the board's hardware watchdog: if the kernel or systemd hangs, the board resets itself.
# 15 s is the longest the Raspberry Pi's watchdog (bcm2835-wdt) allows.
[Manager]
RuntimeWatchdogSec=15s
RebootWatchdogSec=2min
EOF
}

ensure_ssh() {
    # 00-: sshd takes the first value it reads, so this beats later files (cloud-init's 50-...).
    write_file /etc/ssh/sshd_config.d/00-sensor-bridge.conf 644 root:root ssh <<EOF
$MARK
# Keys only, never root: there is no password anywhere on this appliance.
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitEmptyPasswords no
PermitRootLogin no
EOF
}

nftables_rules() {
    cat <<EOF
#!/usr/sbin/nft -f
$MARK
# sensor-bridge firewall: SSH, MQTT, /health and the push receiver only from local networks;
# never routes between interfaces (the sensor network never reaches the internet through us).
# If you move [health] or [push] to other ports, change LAN_PORTS below.
flush ruleset

define LAN4 = { 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 169.254.0.0/16 }
define LAN6 = { fc00::/7, fe80::/10 }
define LAN_PORTS = { $LAN_PORTS }

table inet sensor_bridge {
    chain input {
        type filter hook input priority filter; policy drop;
        ct state established,related accept
        ct state invalid drop
        iif lo accept
        iifname "$WG_IF" jump remote_access
        meta l4proto { icmp, icmpv6 } accept comment "ping; IPv6 needs ICMPv6 to work at all"
        udp dport 68 accept comment "DHCPv4 replies"
        ip6 saddr fe80::/10 udp dport 546 accept comment "DHCPv6 replies"
        ip saddr \$LAN4 udp dport 5353 accept comment "mDNS: <hostname>.local"
        ip6 saddr \$LAN6 udp dport 5353 accept comment "mDNS: <hostname>.local"
        ip saddr \$LAN4 tcp dport \$LAN_PORTS accept
        ip6 saddr \$LAN6 tcp dport \$LAN_PORTS accept
    }
    # The WireGuard tunnel ([remote]): SSH and ping, nothing else. WireGuard itself drops any
    # packet from the hub whose source is outside [remote] allowed_ips.
    chain remote_access {
        tcp dport 22 accept comment "SSH (keys only) from the admin network over the tunnel"
        icmp type echo-request accept
        icmpv6 type echo-request accept
        drop
    }
    chain forward {
        type filter hook forward priority filter; policy drop;
    }
    chain output {
        type filter hook output priority filter; policy accept;
    }
}
EOF
}

# Debian's /etc/nftables.conf as shipped (accept everything) is replaced, and restored by
# --uninstall; a firewall someone wrote by hand is left alone, with ours next to it to merge.
ensure_firewall() {
    local conf=/etc/nftables.conf backup=/etc/nftables.conf.before-sensor-bridge stock
    stock=$(dpkg-query -W -f='${Conffiles}\n' nftables 2>/dev/null | awk '$1 == "/etc/nftables.conf" {print $2}')
    if [ -f "$conf" ] && ! grep -qF "$MARK" "$conf"; then
        if [ -n "$stock" ] && [ "$(md5sum <"$conf" | cut -d' ' -f1)" = "$stock" ]; then
            if change "keep Debian's $conf as $backup"; then cp -p "$conf" "$backup"; fi
        else
            say "keeping your own $conf; sensor-bridge's rules are in $ETC/nftables.conf to merge"
            write_file "$ETC/nftables.conf" 644 root:root none < <(nftables_rules)
            return
        fi
    fi
    write_file "$conf" 755 root:root firewall < <(nftables_rules)
    enable_unit nftables.service
}

ensure_time_sync() {
    # The services wait for time-sync.target ordering; the collector itself holds stamping until
    # the clock is synchronised, so a store without NTP still gets its LED and /health.
    if dpkg-query -W -f='${Status}' systemd-timesyncd 2>/dev/null | grep -q "install ok installed"; then
        enable_unit systemd-timesyncd.service
    fi
}

ensure_mqtt() {
    [ "$with_mqtt" = 1 ] || return 0
    local out
    if [ "$check" = 1 ]; then
        # `mqtt setup` has no dry run; what it would do is only worth telling on a first setup.
        [ -f /etc/mosquitto/conf.d/sensor-bridge.conf ] || change "set up mosquitto: sensor-bridge mqtt setup" || true
    elif ! out=$("$OPT/venv/bin/sensor-bridge" mqtt setup 2>&1); then
        printf '%s\n' "$out" >&2
        die "sensor-bridge mqtt setup failed"
    elif ! grep -q "is up to date" <<<"$out"; then
        change "set up mosquitto: sensor-bridge mqtt setup"
        printf '%s\n' "$out" | sed 's/^/  /' >&2
        touched[mqtt]=1
    fi
    enable_unit mosquitto.service
}

# Releases: `sensor-bridge update` trusts only manifests signed by a key of this file (the image
# build's --release-key, or image/release-signers in a checkout: `image/release.py signers KEY.pub`).
ensure_release_signers() {
    if [ -s "$src/image/release-signers" ]; then
        write_file "$OPT/release-signers" 644 root:root none <"$src/image/release-signers"
    elif [ ! -f "$OPT/release-signers" ]; then
        say "no image/release-signers: this bridge refuses every release until one is installed"
    fi
}

# Remote access ([remote]): systemd-networkd brings up the WireGuard tunnel from the files
# `sensor-bridge remote setup` writes at boot; it manages only that interface. NetworkManager
# (Raspberry Pi OS) keeps the uplink and is told to leave the tunnel alone.
ensure_remote_access() {
    if [ -d /etc/NetworkManager ]; then
        write_file /etc/NetworkManager/conf.d/90-sensor-bridge-wg.conf 644 root:root none <<EOF
$MARK
# The WireGuard tunnel of [remote] belongs to systemd-networkd.
[keyfile]
unmanaged-devices=interface-name:$WG_IF
EOF
    fi
    if [ -e /lib/systemd/system/systemd-networkd.service ] || [ -e /usr/lib/systemd/system/systemd-networkd.service ]; then
        enable_unit systemd-networkd.service
    fi
}

# OS security updates: unattended-upgrades installs the distribution's security updates daily and
# never reboots by itself; `sensor-bridge update --auto` reboots for one that asks, inside
# [update] window and within the watchdog's reboot budget (appliance/update.py).
ensure_os_updates() {
    write_file /etc/apt/apt.conf.d/52sensor-bridge-unattended-upgrades 644 root:root none <<EOF
// ${MARK#\# }
Unattended-Upgrade::Origins-Pattern {
    "origin=Debian,codename=\${distro_codename}-security,label=Debian-Security";
    "origin=Debian,codename=\${distro_codename},label=Debian-Security";
};
Unattended-Upgrade::Automatic-Reboot "false";
Unattended-Upgrade::Remove-Unused-Kernel-Packages "true";
EOF
    write_file /etc/apt/apt.conf.d/20auto-upgrades 644 root:root none <<EOF
// ${MARK#\# }
APT::Periodic::Update-Package-Lists "1";
APT::Periodic::Unattended-Upgrade "1";
EOF
}

# On a running machine, make the changes take effect now.
apply_live() {
    [ "$live" = 1 ] && [ "$check" = 0 ] || return 0
    systemctl daemon-reload
    [ -n "${touched[watchdog]:-}" ] && systemctl daemon-reexec
    [ -n "${touched[journald]:-}" ] && systemctl restart systemd-journald
    [ -n "${touched[ssh]:-}" ] && { systemctl reload ssh 2>/dev/null || true; }
    [ -n "${touched[mqtt]:-}" ] && systemctl restart mosquitto
    if [ -n "${touched[firewall]:-}" ]; then
        say "loading the firewall: SSH stays open from local networks only"
        systemctl restart nftables
    fi
    systemctl start sensor-bridge-config.service || say "config import failed: see sensor-bridge-error.txt on the boot partition"
    local unit verb=start
    [ -n "${touched[venv]:-}${touched[units]:-}" ] && verb=restart
    while read -r unit; do
        [ "$unit" = sensor-bridge-config.service ] && continue
        systemctl is-enabled --quiet "$unit" 2>/dev/null || continue
        systemctl "$verb" "$unit" || say "warning: $unit did not start: journalctl -u $unit"
    done < <(grep -v / "$OPT/units.list")
}

install_inside() {
    ensure_packages
    ensure_user
    ensure_dir "$OPT" 755 root:root
    ensure_dir "$ETC" 750 "root:$SERVICE_USER"
    ensure_dir "$STATE" 750 "$SERVICE_USER:$SERVICE_USER"
    # A config a person copied in by hand holds secrets too.
    [ -f "$ETC/config.toml" ] && ensure_mode "$ETC/config.toml" 640 "root:$SERVICE_USER"
    ensure_venv
    ensure_units
    ensure_journald
    ensure_watchdog
    if [ -d /etc/ssh ]; then ensure_ssh; fi
    ensure_firewall
    ensure_release_signers
    ensure_remote_access
    ensure_os_updates
    ensure_time_sync
    ensure_mqtt
    apply_live
    remove_old_venvs
    if [ "$changes" = 0 ]; then
        say "nothing to change: sensor-bridge is installed and up to date"
    elif [ "$check" = 1 ]; then
        say "$changes change(s) would be made"
    else
        say "done: $changes change(s)"
        [ -f "$ETC/config.toml" ] ||
            say "next: put sensor-bridge.toml on the boot partition (see image/README.md) and reboot"
    fi
}

uninstall_inside() {
    local unit
    if [ -f "$OPT/units.list" ]; then
        # The watchdog first: it would restart (or reboot for) the services stopped after it.
        while read -r unit; do
            if systemctl is-enabled --quiet "$unit" 2>/dev/null; then
                if change "disable $unit"; then
                    if [ "$live" = 1 ]; then systemctl disable --now --quiet "$unit" || true
                    else systemctl disable --quiet "$unit" || true; fi
                fi
            fi
        done < <(grep -x sensor-bridge-watchdog.service "$OPT/units.list"
                 grep -v -e / -e '^sensor-bridge-watchdog.service$' "$OPT/units.list")
        while read -r unit; do
            [ -n "$unit" ] && remove_path "$UNIT_DIR/$unit"
        done <"$OPT/units.list"
    fi
    remove_path "$OPT"
    [ "$(readlink /usr/local/bin/sensor-bridge 2>/dev/null)" = "$OPT/venv/bin/sensor-bridge" ] &&
        remove_path /usr/local/bin/sensor-bridge
    local file
    for file in /etc/systemd/journald.conf.d/50-sensor-bridge.conf \
        /etc/systemd/system.conf.d/50-sensor-bridge-watchdog.conf \
        /etc/ssh/sshd_config.d/00-sensor-bridge.conf \
        /etc/NetworkManager/conf.d/90-sensor-bridge-wg.conf \
        /etc/apt/apt.conf.d/52sensor-bridge-unattended-upgrades /etc/apt/apt.conf.d/20auto-upgrades; do
        [ -f "$file" ] && grep -qF "${MARK#\# }" "$file" && remove_path "$file"
    done
    if [ -f /etc/nftables.conf ] && grep -qF "$MARK" /etc/nftables.conf; then
        if [ -f /etc/nftables.conf.before-sensor-bridge ]; then
            if change "restore /etc/nftables.conf from /etc/nftables.conf.before-sensor-bridge"; then
                mv /etc/nftables.conf.before-sensor-bridge /etc/nftables.conf
            fi
        else
            remove_path /etc/nftables.conf
        fi
    fi
    if [ "$live" = 1 ] && [ "$check" = 0 ]; then
        systemctl daemon-reload
        systemctl daemon-reexec
        systemctl restart systemd-journald || true
        systemctl reload ssh 2>/dev/null || true
        if [ -f /etc/nftables.conf ]; then systemctl restart nftables || true; else nft flush ruleset || true; fi
    fi
    [ "$check" = 1 ] && { say "$changes change(s) would be made"; return; }
    say "removed sensor-bridge ($changes change(s)). Kept: the config in $ETC, the outbox (any"
    say "undelivered readings) in $STATE, the user $SERVICE_USER and the Debian packages."
    say "Remove those too with: userdel $SERVICE_USER && rm -r $ETC $STATE"
    if [ -f /etc/mosquitto/conf.d/sensor-bridge.conf ]; then
        say "mosquitto keeps the devices' listener; to drop it: rm -r /etc/mosquitto/conf.d/sensor-bridge.conf" \
            "/etc/mosquitto/sensor-bridge"
    fi
}

# ------------------------------------------------------------------ command line

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

main() {
    local mode=install with_tools=0 root="" inside=0
    with_mqtt=0
    local passthrough=()
    while [ $# -gt 0 ]; do
        case "$1" in
            --dev) mode=dev ;;
            --test-tools) with_tools=1 ;;
            --root)
                [ $# -ge 2 ] || die "--root needs a directory"
                root=$2; shift ;;
            --check) check=1; passthrough+=(--check) ;;
            --uninstall) mode=uninstall; passthrough+=(--uninstall) ;;
            --mqtt) with_mqtt=1; passthrough+=(--mqtt) ;;
            --inside) inside=1 ;;   # internal: this is the staged copy running in the target
            -h|--help) usage; exit 0 ;;
            *) die "unknown option: $1 (try --help)" ;;
        esac
        shift
    done
    if [ "$mode" = dev ]; then
        dev_setup "$with_tools"
        return
    fi
    if [ "$inside" = 0 ]; then
        stage_and_run "${root:-/}" "${passthrough[@]}"
        return
    fi
    src=$here
    # No running systemd (a chroot, a container): enable units by their files, start nothing.
    [ -d /run/systemd/system ] && live=1
    if [ "$mode" = uninstall ]; then uninstall_inside; else install_inside; fi
}

main "$@"
