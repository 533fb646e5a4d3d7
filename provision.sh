#!/usr/bin/env bash
# provision.sh: the one installer of sensor-bridge.
#
#   ./provision.sh --dev [--test-tools]   set up ./.venv in this checkout (demo, tests, benchmarks);
#                                         --test-tools also installs the Debian packages the
#                                         tests drive for real (mosquitto, postgresql, ...), as root
#
# (System installs, image installs with --root, --check and --uninstall are added with the
# image work; see README.)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
TEST_PACKAGES=(mosquitto mosquitto-clients)

say() { printf 'provision: %s\n' "$*" >&2; }

apt_install() {
    if [ "$(id -u)" != 0 ]; then
        say "need root to install Debian packages: $*"
        say "run: sudo apt-get install -y $*"
        return 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    if [ -z "${_apt_updated:-}" ]; then apt-get update -qq; _apt_updated=1; fi
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
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
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -e "$here[test]"
    say "ready: $venv (sensor-bridge $("$venv/bin/sensor-bridge" --version | cut -d' ' -f2))"
}

main() {
    local mode="" with_tools=0
    while [ $# -gt 0 ]; do
        case "$1" in
            --dev) mode=dev ;;
            --test-tools) with_tools=1 ;;
            -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
            *) say "unknown option: $1 (try --help)"; exit 2 ;;
        esac
        shift
    done
    case "$mode" in
        dev) dev_setup "$with_tools" ;;
        *) say "nothing to do (try --help)"; exit 2 ;;
    esac
}

main "$@"
