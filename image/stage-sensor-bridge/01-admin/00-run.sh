#!/bin/bash -e
# The first user is the maintainer's SSH account: the builder's public key and no password at
# all (build.sh hands pi-gen a random one only to get past its checks; it is removed here).
# With no password, sudo cannot ask for one, so this account may sudo without.
keys="${ROOTFS_DIR}/home/${FIRST_USER_NAME}/.ssh/authorized_keys"
if [ ! -s "${keys}" ]; then
	echo "no SSH public key for ${FIRST_USER_NAME}: run image/build.sh --ssh-key FILE.pub" >&2
	exit 1
fi

on_chroot <<EOF2
usermod --shell /bin/bash --password '*' "${FIRST_USER_NAME}"
usermod --password '*' root
systemctl enable ssh
EOF2

printf '%s\n' "# ${FIRST_USER_NAME} logs in with SSH keys only and has no password to type." \
	"${FIRST_USER_NAME} ALL=(ALL) NOPASSWD: ALL" >"${ROOTFS_DIR}/etc/sudoers.d/010_sensor-bridge-admin"
chmod 440 "${ROOTFS_DIR}/etc/sudoers.d/010_sensor-bridge-admin"
