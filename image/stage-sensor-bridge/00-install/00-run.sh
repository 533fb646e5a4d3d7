#!/bin/bash -e
# Install sensor-bridge into the image with the same installer a person runs on a live Pi,
# and leave the commented example config on the boot partition for the person to copy.
# image/build.sh copies the checkout to files/sensor-bridge; SENSOR_BRIDGE_SRC overrides that.
src="${SENSOR_BRIDGE_SRC:-files/sensor-bridge}"
args=(--root "${ROOTFS_DIR}")
if [ "${SENSOR_BRIDGE_MQTT:-0}" = 1 ]; then
	args+=(--mqtt)
fi
"${src}/provision.sh" "${args[@]}"

install -m 644 "${src}/image/sensor-bridge.example.toml" "${ROOTFS_DIR}/boot/firmware/"

# image/build.sh --fleet-url: a [fleet]-only config, so every bridge of the image adopts itself.
if [ -f files/fleet/config.toml ]; then
	install -d -m 750 "${ROOTFS_DIR}/etc/sensor-bridge"
	install -m 640 files/fleet/config.toml "${ROOTFS_DIR}/etc/sensor-bridge/config.toml"
	install -m 600 files/fleet/enroll-token "${ROOTFS_DIR}/etc/sensor-bridge/enroll-token"
	on_chroot <<-EOF
		chgrp sensor-bridge /etc/sensor-bridge /etc/sensor-bridge/config.toml
	EOF
fi
