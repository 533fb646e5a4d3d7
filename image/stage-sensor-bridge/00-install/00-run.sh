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
