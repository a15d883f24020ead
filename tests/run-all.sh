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
# The host's control CLI, which the boot test runs against the server's --control socket.
cargo build -p vmmdev-control --bin vmmdev-ctl
export VMMDEV_CTL="$target_dir/debug/vmmdev-ctl"

# The KVM monitor's boot test: where /dev/kvm is usable. On hosts whose KVM emulates guest kernel code (no
# vmx/svm flag) it boots the lean kernel (built once, cached by configuration) with an uncompressed image
# (the in-kernel gunzip alone takes minutes there); VMMDEV_KVM_KERNEL_KIND=stock keeps the stock kernel.
section "KVM monitor artifacts"
if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
    cargo build -p vmmdev-monitor --bin vmmdev-monitor
    export VMMDEV_KVM_MONITOR="$target_dir/debug/vmmdev-monitor"
    kind="${VMMDEV_KVM_KERNEL_KIND:-auto}"
    if [ "$kind" = auto ]; then
        if grep -qwE 'vmx|svm' /proc/cpuinfo; then kind=stock; else kind=lean; fi
    fi
    case "$kind" in
    stock)
        export VMMDEV_KVM_KERNEL="$VMMDEV_KERNEL" VMMDEV_KVM_INITRD="$VMMDEV_INITRD_DIR/initrd.cpio.gz"
        ;;
    lean)
        lean_dir=$(tests/scripts/build-lean-kernel.sh "$guest_dir")
        lean_image="$target_dir/e2e/image-lean/initrd.cpio.gz"
        tests/scripts/build-initramfs.sh "$lean_dir" "$bin_dir" "$lean_image" >/dev/null
        gzip -dc "$lean_image" >"${lean_image%.gz}"
        export VMMDEV_KVM_KERNEL="$lean_dir/vmlinux" VMMDEV_KVM_INITRD="${lean_image%.gz}"
        ;;
    *)
        echo "run-all: VMMDEV_KVM_KERNEL_KIND must be auto, stock or lean, not $kind" >&2
        exit 2
        ;;
    esac
else
    echo "SKIPPED: the KVM monitor's boot test: /dev/kvm is missing or not accessible here" >&2
fi
env | grep '^VMMDEV_' | sort >&2

# Xvfb and xclip for the desktop clipboard tests (the guest bridge's in the workspace run, the host
# backend's below); those tests say SKIPPED when they cannot be installed.
tests/scripts/install-desktop-clipboard-deps.sh >&2 || echo "install-desktop-clipboard-deps failed" >&2

section "cargo test"
cargo test --workspace --all-targets

# The fuzz crates live outside the workspace (cargo-fuzz builds them with its own flags). On the
# stable toolchain: the services' targets replay their seeds and kept regressions, and the device's
# target still builds. Fuzzing itself is by hand (docs/FUZZING.md).
section "fuzz targets"
fuzz_target_dir="$target_dir/fuzz-stable"
cargo clippy --manifest-path services/fuzz/Cargo.toml --target-dir "$fuzz_target_dir" --all-targets \
    -- -D warnings
cargo test --manifest-path services/fuzz/Cargo.toml --target-dir "$fuzz_target_dir"
cargo build --manifest-path vmm/device/fuzz/Cargo.toml --target-dir "$fuzz_target_dir"

# The host's desktop clipboard: the service's backend (cargo feature `desktop`) and the binaries'
# `--clipboard-backend desktop` (feature `desktop-clipboard`), against Xvfb with xclip as the host
# application.
section "desktop clipboard"
cargo clippy -p vmmdev-svc-clipboard --features desktop --all-targets -- -D warnings
cargo clippy -p vmmdev-host-options -p vmmdev-vfio-user -p vmmdev-monitor --features desktop-clipboard \
    --all-targets -- -D warnings
cargo test -p vmmdev-svc-clipboard --features desktop --test desktop
cargo test -p vmmdev-host-options --features desktop-clipboard --test desktop_clipboard
