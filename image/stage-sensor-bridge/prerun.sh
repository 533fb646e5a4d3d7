#!/bin/bash -e
# pi-gen stage prerun: start from the Lite system that stage2 built.
if [ ! -d "${ROOTFS_DIR}" ]; then
	copy_previous
fi
