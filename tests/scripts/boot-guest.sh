#!/usr/bin/env bash
# Boots the end-to-end guest by hand, with the serial console on this terminal.
#
# Usage: boot-guest.sh [--demo] [--steps a,b,c] [--server PATH] [--server-arg ARG]... [--append PARAMS]
#                      [-- QEMU ARGS...]
#   --demo           run the steps, then open a shell in the guest ('exit' powers off; Ctrl-A x quits QEMU);
#                    the default runs the steps and powers off, like the tests
#   --steps LIST     the steps to run (default: all)
#   --server PATH    serve the VMMDev device with this vfio-user server (vmmdev-vfio-user)
#   --server-arg ARG one more argument for the server (repeatable), e.g. --share or --guest-property
#   --append PARAMS  more kernel command-line parameters
# Uses VMMDEV_QEMU, VMMDEV_KERNEL and VMMDEV_INITRD_DIR when set (as tests/run-all.sh exports them), and
# otherwise the cached QEMU and kernel and the image that run-all.sh built last.
set -euo pipefail

die() { printf 'boot-guest: error: %s\n' "$*" >&2; exit 1; }

mode=test
steps=all
server=""
server_args=()
append=""
while [ $# -gt 0 ]; do
    case "$1" in
    --demo) mode=demo ;;
    --steps) steps="${2:?--steps needs a list}"; shift ;;
    --server) server="${2:?--server needs a path}"; shift ;;
    --server-arg) server_args+=("${2?--server-arg needs a value}"); shift ;;
    --append) append="${2?--append needs parameters}"; shift ;;
    --) shift; break ;;
    *) die "unknown argument $1" ;;
    esac
    shift
done

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
qemu="${VMMDEV_QEMU:-$("$here/provision-qemu.sh")}"
kernel="${VMMDEV_KERNEL:-$("$here/fetch-guest.sh")/vmlinux}"
if [ -z "${VMMDEV_INITRD_DIR:-}" ]; then
    target_dir=$(cd "$repo" && cargo metadata --no-deps --format-version 1 | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
    VMMDEV_INITRD_DIR="$target_dir/e2e/image"
fi
initrd="$VMMDEV_INITRD_DIR/initrd.cpio.gz"
[ -f "$initrd" ] || die "no image at $initrd: run tests/run-all.sh (or build-initramfs.sh) first"

device=()
if [ -n "$server" ]; then
    run=$(mktemp -d /tmp/vmmdev-boot.XXXXXX)
    socket="$run/vmmdev.sock"
    "$server" --socket "$socket" ${server_args[@]+"${server_args[@]}"} >"$run/server.log" 2>&1 &
    server_pid=$!
    trap 'kill "$server_pid" 2>/dev/null; rm -rf "$run"' EXIT
    for _ in $(seq 100); do
        [ -S "$socket" ] && break
        kill -0 "$server_pid" 2>/dev/null || die "the server exited; log: $(cat "$run/server.log")"
        sleep 0.1
    done
    [ -S "$socket" ] || die "the server did not create $socket within 10 s"
    device=(-device "{\"driver\":\"vfio-user-pci\",\"socket\":{\"path\":\"$socket\",\"type\":\"unix\"}}")
fi

"$qemu" -nodefaults -no-user-config -display none -serial mon:stdio -no-reboot -accel tcg -smp 1 -m 512M \
    -object memory-backend-memfd,id=mem,size=512M,share=on -machine pc,memory-backend=mem \
    "${device[@]}" -kernel "$kernel" -initrd "$initrd" \
    -append "console=ttyS0 quiet panic=-1 vmmdev.mode=$mode vmmdev.steps=$steps${append:+ $append}" "$@"
