#!/usr/bin/env bash
# The main job: boot the demo guest (Debian's stock kernel with its own vboxguest/vboxsf) to an interactive
# shell, with the guest additions working: the driver probed, a host directory shared and mounted, guest
# properties readable, the host's clipboard text readable in the guest. While it runs, the VM's control
# socket takes `vmmdev-ctl` commands from another terminal (the demo prints the path).
#
# Usage: tests/demo.sh [--backend auto|kvm|qemu] [--share DIR] [--desktop-clipboard]
#   --backend  auto (default): the reference KVM monitor where KVM has hardware virtualization (vmx/svm in
#              /proc/cpuinfo), QEMU/TCG with the vfio-user server otherwise. kvm or qemu forces one.
#   --share    the host directory shared as "demo" (default: a demo directory in the cache)
#   --desktop-clipboard  share this desktop's clipboard (DISPLAY or WAYLAND_DISPLAY) instead of an
#              in-memory one; the demo's greeting replaces what the clipboard held.
# In the guest: 'exit' powers off. Under QEMU, Ctrl-A x quits at once.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { printf 'demo: error: %s\n' "$*" >&2; exit 2; }
say() { printf 'demo: %s\n' "$*" >&2; }

backend=auto
share_dir=""
desktop_clipboard=false
while [ $# -gt 0 ]; do
    case "$1" in
    --backend) backend="${2:?--backend needs auto, kvm or qemu}"; shift ;;
    --share) share_dir="${2:?--share needs a directory}"; shift ;;
    --desktop-clipboard) desktop_clipboard=true ;;
    -h | --help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done
if "$desktop_clipboard" && [ -z "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
    die "--desktop-clipboard: neither DISPLAY nor WAYLAND_DISPLAY is set"
fi

case "$backend" in
auto)
    if grep -q -w -E 'vmx|svm' /proc/cpuinfo && [ -c /dev/kvm ]; then
        backend=kvm
        say "backend: the reference KVM monitor (KVM with hardware virtualization: vmx/svm in /proc/cpuinfo)"
    else
        backend=qemu
        if [ ! -c /dev/kvm ]; then
            why="there is no /dev/kvm"
        else
            why="/dev/kvm has no hardware virtualization here (no vmx/svm in /proc/cpuinfo; e.g. PVM)"
        fi
        say "backend: QEMU/TCG with the vfio-user server, because $why"
    fi
    ;;
kvm | qemu) say "backend: $backend (forced)" ;;
*) die "--backend must be auto, kvm or qemu, not '$backend'" ;;
esac

cache="${VMMDEV_CACHE:-${HOME:-/root}/.cache/vmmdev-rs}"
if [ -z "$share_dir" ]; then
    share_dir="$cache/demo-share"
    mkdir -p "$share_dir"
    [ -e "$share_dir/hello.txt" ] || echo "Hello from the host, through the guest's own vboxsf." >"$share_dir/hello.txt"
fi
[ -d "$share_dir" ] || die "--share $share_dir is not a directory"
share_dir="$(cd "$share_dir" && pwd)"

target_dir=$(cargo metadata --no-deps --format-version 1 | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
say "preparing the guest kernel and image (cached after the first run)"
guest_dir=$(tests/scripts/fetch-guest.sh)
bin_dir=$(tests/scripts/build-guest-bins.sh "$target_dir/e2e/guest-bin")
image_dir="$target_dir/e2e/image"
tests/scripts/build-initramfs.sh "$guest_dir" "$bin_dir" "$image_dir/initrd.cpio.gz" >/dev/null

# The VM's control endpoint, for vmmdev-ctl from another terminal; the demo puts text on the host clipboard
# through it as soon as it is up, and the guest's demo-clipboard step reads it back.
control_socket="${XDG_RUNTIME_DIR:-/tmp}/vmmdev-demo-$$.sock"
clipboard_text="Hello from the host clipboard, through VBoxSharedClipboard: héllo wörld"
host_args=(
    --control "$control_socket"
    --share "demo=$share_dir"
    --guest-property "/Demo/Greeting=Hello from the host, through VBoxGuestPropSvc."
    --guest-property "/Demo/StartedAt=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
)
# The host side of the clipboard: in memory, or this desktop's (binaries built with its cargo feature).
vmm_features=()
if "$desktop_clipboard"; then
    vmm_features=(--features desktop-clipboard)
    host_args+=(--clipboard-backend desktop)
fi
# What the guest does before its shell: load the additions, mount the share, show the properties.
guest_steps="vboxguest-load,vboxguest-probe,vboxsf-load,demo-mount,demo-properties,demo-clipboard"
guest_params="vmmdev.mount=demo"

say "building vmmdev-ctl, the host control CLI"
cargo build -q -p vmmdev-control --bin vmmdev-ctl
ctl="$target_dir/debug/vmmdev-ctl"
# Sets the host clipboard once the VM's control socket is up (the VMM creates it before the guest boots).
(
    for _ in $(seq 600); do
        [ -S "$control_socket" ] && break
        sleep 0.2
    done
    "$ctl" --control "$control_socket" clipboard set "$clipboard_text" >/dev/null ||
        say "could not set the host clipboard through $control_socket"
) &
say "control socket: $control_socket (e.g. $ctl --control $control_socket clipboard get)"

case "$backend" in
qemu)
    qemu=$(tests/scripts/provision-qemu.sh)
    say "building the vfio-user server"
    cargo build -q -p vmmdev-vfio-user --bin vmmdev-vfio-user "${vmm_features[@]}"
    server_args=()
    for arg in "${host_args[@]}"; do server_args+=(--server-arg "$arg"); done
    say "booting; the guest prints @@READY when its shell is up"
    VMMDEV_QEMU="$qemu" VMMDEV_KERNEL="$guest_dir/vmlinux" VMMDEV_INITRD_DIR="$image_dir" \
        exec tests/scripts/boot-guest.sh --demo --steps "$guest_steps" --append "$guest_params" \
        --server "$target_dir/debug/vmmdev-vfio-user" "${server_args[@]}"
    ;;
kvm)
    say "building the reference KVM monitor"
    cargo build -q --release -p vmmdev-monitor --bin vmmdev-monitor "${vmm_features[@]}"
    say "booting; the guest prints @@READY when its shell is up"
    exec "$target_dir/release/vmmdev-monitor" --kernel "$guest_dir/vmlinux" --initrd "$image_dir/initrd.cpio.gz" \
        --append "quiet panic=-1 vmmdev.mode=demo vmmdev.steps=$guest_steps $guest_params vmmdev.exit=reboot" \
        --memory 512 "${host_args[@]}"
    ;;
esac
