#!/usr/bin/env bash
# The whole test suite: unit and integration tests of every crate, then the real-guest boots.
#
# The boot tests need QEMU >= 10.1, Debian's stock kernel and the guest image. They are provided here,
# before `cargo test`, by the scripts in tests/scripts/ (cached outside the repository, so only the first
# run downloads anything), and handed to the tests through VMMDEV_* environment variables.
set -euo pipefail
cd "$(dirname "$0")/.."

section() { printf '\n=== %s ===\n' "$*" >&2; }

section "real-guest artifacts"
target_dir=$(cargo metadata --no-deps --format-version 1 | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
VMMDEV_QEMU=$(tests/scripts/provision-qemu.sh)
guest_dir=$(tests/scripts/fetch-guest.sh)
bin_dir=$(tests/scripts/build-guest-bins.sh "$target_dir/e2e/guest-bin")
VMMDEV_INITRD_DIR="$target_dir/e2e/image"
tests/scripts/build-initramfs.sh "$guest_dir" "$bin_dir" "$VMMDEV_INITRD_DIR/initrd.cpio.gz" >/dev/null
VMMDEV_KERNEL="$guest_dir/vmlinux"
VMMDEV_BZIMAGE="$guest_dir/vmlinuz"
export VMMDEV_QEMU VMMDEV_KERNEL VMMDEV_BZIMAGE VMMDEV_INITRD_DIR

# The vfio-user device server the boot tests serve the device with.
cargo build -p vmmdev-vfio-user --bin vmmdev-vfio-user
export VMMDEV_VFIO_USER_SERVER="$target_dir/debug/vmmdev-vfio-user"
env | grep '^VMMDEV_' | sort >&2

section "cargo test"
cargo test --workspace --all-targets
