#!/usr/bin/env bash
# image/build.sh: build the sensor-bridge SD card image (Raspberry Pi OS Lite + the appliance).
#
#   image/build.sh --ssh-key ~/.ssh/id_ed25519.pub [--arch arm64|armhf] [--release trixie|bookworm]
#                  [--mqtt] [--native] [--work DIR] [--out DIR] [--release-key RELEASE.pub]
#                  [--fleet-url URL --enroll-token-file FILE]
#
# Fetches pi-gen at a pinned commit, adds stage-sensor-bridge on top of the Lite stages
# (stage0-2) and runs pi-gen's Docker build (or, with --native or without Docker, its native
# build as root). Leaves <name>.img.xz, <name>.bmap and SHA256SUMS in one folder (--out,
# default image/out). The image has no password anywhere: the maintainer account "admin" logs
# in over SSH with the key given here, and may sudo. --mqtt adds the local mosquitto broker.
# --release-key: the public key that signs releases (image/release.py); the image's
# `sensor-bridge update` trusts only those. Without it the image refuses every release.
# --fleet-url and --enroll-token-file make one image for every store: it holds only a [fleet]
# config (the fleet's cloud app and its enroll token, `cloud/bin/bridges enroll-token new`);
# each bridge enrolls at first boot and is claimed on the fleet page (image/README.md).
# Needs: git, xz, bmaptool (bmap-tools), and Docker or pi-gen's own dependencies.
# PI_GEN_URL and PI_GEN_COMMIT override where pi-gen comes from and which commit is used.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
PI_GEN_URL=${PI_GEN_URL:-https://github.com/RPi-Distro/pi-gen.git}   # or a mirror of it

# pi-gen releases of 2026-06-18 (tags <date>-raspios-<release>-<arch>); the stage is tested
# against these. To move on: pick the new tag's commit and rebuild.
pi_gen_commit() {
    case "$1-$2" in
        trixie-arm64) echo ca8aeed0ae300c2a89f55ce9617d5f96a27e99e5 ;;
        trixie-armhf) echo 314262cb286b8f33327a6f0cbabe14c625021ca0 ;;
        bookworm-arm64) echo d7a31c6aa09f4b867902c51da2b45807c0a1709e ;;
        bookworm-armhf) echo 4be6bbd0933c900517cb309d4f4f44267d2c2cac ;;
        *) return 1 ;;
    esac
}

say() { printf 'build: %s\n' "$*" >&2; }
die() { say "$*"; exit 2; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

arch=arm64 release=trixie key="" mqtt=0 native=0 release_key="" fleet_url="" enroll_token_file=""
work=/var/tmp/sensor-bridge-image out="$here/out"
while [ $# -gt 0 ]; do
    case "$1" in
        --ssh-key) key=${2:?--ssh-key needs a file}; shift ;;
        --arch) arch=${2:?}; shift ;;
        --release) release=${2:?}; shift ;;
        --mqtt) mqtt=1 ;;
        --release-key) release_key=${2:?--release-key needs a file}; shift ;;
        --native) native=1 ;;
        --fleet-url) fleet_url=${2:?--fleet-url needs a URL}; shift ;;
        --enroll-token-file) enroll_token_file=${2:?--enroll-token-file needs a file}; shift ;;
        --work) work=${2:?}; shift ;;
        --out) out=${2:?}; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option: $1 (try --help)" ;;
    esac
    shift
done

commit=$(pi_gen_commit "$release" "$arch") || die "no pinned pi-gen for $release/$arch (trixie|bookworm, arm64|armhf)"
commit=${PI_GEN_COMMIT:-$commit}   # to try a newer pi-gen before pinning it here
[ -n "$key" ] || die "--ssh-key FILE.pub is required: the image has no password, SSH keys are the way in"
[ -s "$key" ] || die "--ssh-key $key: no such file (or empty)"
grep -qE '^(ssh-|ecdsa-|sk-)' "$key" || die "--ssh-key $key does not look like an SSH public key (the .pub file)"
if [ -n "$fleet_url$enroll_token_file" ]; then
    if [ -z "$fleet_url" ] || [ -z "$enroll_token_file" ]; then
        die "--fleet-url and --enroll-token-file go together: the image enrolls at the URL with the token"
    fi
    [[ $fleet_url =~ ^https?://[^/@[:space:]]+/?$ ]] ||
        die "--fleet-url $fleet_url: expected the cloud app's origin, like https://fleet.example.net"
    [ -s "$enroll_token_file" ] || die "--enroll-token-file $enroll_token_file: no such file (or empty)"
    enroll_token=$(tr -d '[:space:]' <"$enroll_token_file")
    [[ $enroll_token =~ ^sbe_[A-Za-z0-9_-]{20,}$ ]] ||
        die "--enroll-token-file $enroll_token_file: not an enroll token (cloud/bin/bridges enroll-token new prints sbe_...)"
fi
[[ $work != *" "* ]] || die "--work $work: pi-gen cannot build under a path with spaces"
for tool in git xz bmaptool sha256sum; do
    command -v "$tool" >/dev/null || die "missing $tool (apt-get install git xz-utils bmap-tools coreutils)"
done
if [ "$native" = 0 ] && ! command -v docker >/dev/null; then
    say "no docker here: building natively"
    native=1
fi
if [ "$native" = 1 ] && [ "$(id -u)" != 0 ]; then
    die "a native pi-gen build runs as root (sudo image/build.sh ...)"
fi

# pi-gen at the pinned commit, clean (an old stage of ours is replaced below).
pigen="$work/pi-gen"
if [ ! -d "$pigen/.git" ]; then
    git clone --quiet "$PI_GEN_URL" "$pigen"
fi
git -C "$pigen" fetch --quiet origin "$commit" 2>/dev/null || git -C "$pigen" fetch --quiet origin
git -C "$pigen" checkout --quiet --force "$commit"
git -C "$pigen" clean -fdxq -e work -e deploy
[ "$(git -C "$pigen" rev-parse HEAD)" = "$commit" ] || die "pi-gen is not at $commit"
say "pi-gen $commit ($release, $arch)"

# Our stage, with the appliance's source inside it: pi-gen's Docker build sees only its own dir.
stage="$pigen/stage-sensor-bridge"
cp -a "$here/stage-sensor-bridge" "$stage"
mkdir -p "$stage/00-install/files/sensor-bridge"
payload=(provision.sh pyproject.toml appliance image/requirements.lock image/sensor-bridge.example.toml)
for extra in README.md LICENSE; do [ -e "$repo/$extra" ] && payload+=("$extra"); done
tar -C "$repo" --exclude=__pycache__ --exclude='*.pyc' -cf - "${payload[@]}" |
    tar -C "$stage/00-install/files/sensor-bridge" -xf -
if [ -n "$release_key" ]; then
    python3 "$here/release.py" signers "$release_key" >"$stage/00-install/files/sensor-bridge/image/release-signers" ||
        die "--release-key $release_key: not an SSH public key"
else
    say "no --release-key: the image will refuse every release (sensor-bridge update)"
fi
if [ -n "$fleet_url" ]; then
    # The [fleet]-only config and its token, installed by 00-run.sh as /etc/sensor-bridge/*.
    fleet="$stage/00-install/files/fleet"
    mkdir -p "$fleet"
    (umask 077 && printf '%s\n' "$enroll_token" >"$fleet/enroll-token")
    printf '%s\n' "# Made by image/build.sh --fleet-url: this bridge enrolls at the fleet's cloud app" \
        "# and is claimed on its fleet page; the cloud then sends the rest (docs/config.md)." \
        "[fleet]" "url = \"${fleet_url%/}\"" 'enroll_token_file = "/etc/sensor-bridge/enroll-token"' \
        >"$fleet/config.toml"
    say "fleet image: bridges enroll at ${fleet_url%/}"
fi
touch "$pigen/stage2/SKIP_IMAGES"   # export only our image, not plain Lite

date=$(date +%Y-%m-%d)
name="sensor-bridge"
# pi-gen insists on a first-user password when the first-boot rename wizard is off (a headless
# appliance cannot answer it). It gets a random one that nobody ever sees; 01-admin removes it.
throwaway=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
cat >"$pigen/config" <<EOF
IMG_NAME=$name
IMG_DATE=$date
PI_GEN_RELEASE="sensor-bridge"
RELEASE=$release
DEPLOY_COMPRESSION=xz
TARGET_HOSTNAME=sensor-bridge
FIRST_USER_NAME=admin
FIRST_USER_PASS=$throwaway
DISABLE_FIRST_BOOT_USER_RENAME=1
ENABLE_SSH=1
PUBKEY_ONLY_SSH=1
PUBKEY_SSH_FIRST_USER="$(cat "$key")"
TIMEZONE_DEFAULT=Etc/UTC
STAGE_LIST="stage0 stage1 stage2 stage-sensor-bridge"
CLEAN=1
export SENSOR_BRIDGE_MQTT=$mqtt
EOF

cd "$pigen"
rm -rf deploy   # only this build's files below
if [ "$native" = 1 ]; then
    ./build.sh
else
    PRESERVE_CONTAINER=0 ./build-docker.sh
fi

# One folder: the compressed image, its block map and the checksums.
base="image_${date}-${name}-sensor-bridge"
[ -f "deploy/$base.img.xz" ] || die "pi-gen left no deploy/$base.img.xz; see $pigen/work/*/build.log"
dest="$out/${date}-${name}-${release}-${arch}"
mkdir -p "$dest"
cp "deploy/$base.img.xz" "$dest/${date}-${name}-${release}-${arch}.img.xz"
if [ -f "deploy/${date}-${name}-sensor-bridge.bmap" ]; then   # pi-gen made one (bmaptool installed)
    cp "deploy/${date}-${name}-sensor-bridge.bmap" "$dest/${date}-${name}-${release}-${arch}.bmap"
else
    # bmap describes the uncompressed image; bmaptool copy reads the .img.xz with it.
    raw="$work/$base.img"
    xz -dc "deploy/$base.img.xz" >"$raw"
    bmaptool create -o "$dest/${date}-${name}-${release}-${arch}.bmap" "$raw"
    rm -f "$raw"
fi
(cd "$dest" && sha256sum -- *.img.xz *.bmap >SHA256SUMS)
say "done: $dest"
ls -l "$dest" >&2
