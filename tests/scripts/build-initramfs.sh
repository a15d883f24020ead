#!/usr/bin/env bash
# Builds the end-to-end guest image (initrd.cpio.gz) with the e2e-initramfs tool of crate vmmdev-e2e.
#
# Usage: build-initramfs.sh GUEST_DIR BIN_DIR OUT_FILE
#   GUEST_DIR  the directory printed by fetch-guest.sh (kernel modules, busybox)
#   BIN_DIR    static guest programs (see build-guest-bins.sh), installed in /usr/local/bin
#   OUT_FILE   the image to write
# The /init and the step scripts come from tests/e2e/guest/. Progress on stderr; OUT_FILE on stdout.
set -euo pipefail

die() { printf 'build-initramfs: error: %s\n' "$*" >&2; exit 1; }

[ $# -eq 3 ] || die "usage: build-initramfs.sh GUEST_DIR BIN_DIR OUT_FILE"
guest=$(realpath "$1")
bins=$(realpath "$2")
out=$(realpath -m "$3")
mkdir -p "$(dirname "$out")"
cd "$(dirname "$0")/../.."
cargo run --quiet -p vmmdev-e2e --bin e2e-initramfs -- \
    --guest "$guest" --bin-dir "$bins" --scripts tests/e2e/guest --out "$out" >&2
printf '%s\n' "$out"
