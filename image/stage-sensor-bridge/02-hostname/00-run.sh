#!/bin/bash -e
# Hostname scheme: every card flashed from the image boots as "sensor-bridge" and, on its
# first boot, names itself sensor-bridge-XXXXXX after the board's serial number.
install -m 755 files/sensor-bridge-hostname "${ROOTFS_DIR}/usr/local/sbin/"
install -m 644 files/sensor-bridge-hostname.service "${ROOTFS_DIR}/etc/systemd/system/"
on_chroot <<EOF2
systemctl enable sensor-bridge-hostname.service
EOF2
