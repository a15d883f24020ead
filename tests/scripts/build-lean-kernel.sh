#!/usr/bin/env bash
# Builds the lean guest kernel for slow KVM hosts: Debian's linux-source-6.1, configured with
# `make allnoconfig` plus tests/scripts/lean-kernel.config, with vboxguest and vboxsf as modules from the
# unmodified sources.
#
# Why: on a host whose /dev/kvm emulates guest kernel code (kvm-vmm.md §0) Debian's stock kernel needs
# minutes to reach /init; a kernel without the drivers and subsystems the guest image never uses needs a
# fraction of that. Real KVM and QEMU/TCG keep using the stock kernel.
#
# Usage: build-lean-kernel.sh STOCK_GUEST_DIR
#   STOCK_GUEST_DIR  the directory printed by fetch-guest.sh; its busybox goes into the lean guest directory
#
# Output: a guest directory with the layout fetch-guest.sh uses (so build-initramfs.sh takes it as it is):
#   $VMMDEV_CACHE/guest-lean/<key>/{vmlinux,vmlinuz,bin/busybox,lib/modules/<release>/...,packages}
# where <key> hashes the configuration fragment, the source package version and this script's layout: a
# changed configuration builds a new kernel, an unchanged one is reused. Progress on stderr (with the build's
# own output condensed to one line per 200 compiled files); the directory on stdout.
#
# Environment:
#   VMMDEV_CACHE        cache directory (default: $HOME/.cache/vmmdev-rs)
#   VMMDEV_KERNEL_JOBS  parallel compile jobs (default: the number of CPUs)
set -euo pipefail

readonly SOURCE_PACKAGE=linux-source-6.1
# Bump when the output layout or the build procedure changes.
readonly LAYOUT="lean layout 1"
readonly BUILD_DEPS=(bc bison flex libelf-dev make gcc)

here="$(cd "$(dirname "$0")" && pwd)"
fragment="$here/lean-kernel.config"
home="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
CACHE="${VMMDEV_CACHE:-$home/.cache/vmmdev-rs}"
jobs="${VMMDEV_KERNEL_JOBS:-$(nproc)}"

progress() { printf 'build-lean-kernel: %s\n' "$*" >&2; }
die() { printf 'build-lean-kernel: error: %s\n' "$*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: build-lean-kernel.sh STOCK_GUEST_DIR"
stock="$1"
[ -x "$stock/bin/busybox" ] || die "$stock/bin/busybox missing: pass the directory fetch-guest.sh printed"
[ -f "$fragment" ] || die "missing $fragment"

version=$(apt-cache policy "$SOURCE_PACKAGE" 2>/dev/null | sed -n 's/^ *Candidate: //p')
if [ -z "$version" ] || [ "$version" = "(none)" ]; then
    progress "apt-get update (no candidate for $SOURCE_PACKAGE)"
    apt-get update >/dev/null || die "apt-get update failed"
    version=$(apt-cache policy "$SOURCE_PACKAGE" 2>/dev/null | sed -n 's/^ *Candidate: //p')
fi
[ -n "$version" ] && [ "$version" != "(none)" ] || die "$SOURCE_PACKAGE is not available from apt here"

key=$({ printf '%s\n%s\n' "$LAYOUT" "$version"; cat "$fragment"; } | sha256sum | cut -c1-16)
dest="$CACHE/guest-lean/$key"
if [ "$(cat "$dest/.complete" 2>/dev/null)" = "$LAYOUT" ]; then
    progress "using cached lean kernel $(cat "$dest/release") in $dest"
    # The busybox may have been refreshed with the stock guest.
    cmp -s "$stock/bin/busybox" "$dest/bin/busybox" || cp "$stock/bin/busybox" "$dest/bin/busybox"
    printf '%s\n' "$dest"
    exit 0
fi

missing=()
for tool in bc bison flex make gcc; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
[ -f /usr/include/libelf.h ] || [ -f /usr/include/gelf.h ] || missing+=(libelf-dev)
if [ "${#missing[@]}" -gt 0 ]; then
    progress "installing build dependencies: ${BUILD_DEPS[*]}"
    apt-get install -y -qq "${BUILD_DEPS[@]}" >/dev/null 2>&1 || {
        apt-get update >/dev/null && apt-get install -y -qq "${BUILD_DEPS[@]}" >/dev/null
    } || die "cannot install ${BUILD_DEPS[*]}"
fi

mkdir -p "$CACHE/guest-lean"
work=$(mktemp -d "$CACHE/guest-lean/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
chmod 0777 "$work"
started=$(date +%s)

progress "downloading $SOURCE_PACKAGE $version"
(cd "$work" && apt-get download "$SOURCE_PACKAGE" >/dev/null 2>&1) || die "cannot download $SOURCE_PACKAGE"
progress "unpacking the source"
dpkg-deb --fsys-tarfile "$work"/"$SOURCE_PACKAGE"_*.deb |
    tar -xO --wildcards './usr/src/linux-source-6.1.tar.xz' | tar -xJ -C "$work"
rm -f "$work"/"$SOURCE_PACKAGE"_*.deb
src="$work/linux-source-6.1"
[ -f "$src/Makefile" ] || die "the source package holds no linux-source-6.1 tree"

progress "configuring: allnoconfig + $(grep -c '^CONFIG_' "$fragment") options of $(basename "$fragment")"
make -C "$src" -s ARCH=x86_64 KCONFIG_ALLCONFIG="$fragment" allnoconfig >&2
# allnoconfig silently drops an option whose dependencies are off: every option of the fragment must stand.
while IFS= read -r line; do
    case "$line" in
    CONFIG_*=*) grep -qxF "$line" "$src/.config" || die "option not in the resulting .config: $line" ;;
    esac
done <"$fragment"

progress "compiling with $jobs jobs (nice 10); one line per 200 files"
build_log="$work/build.log"
if ! nice -n 10 make -C "$src" ARCH=x86_64 -j"$jobs" vmlinux bzImage modules 2>&1 | tee "$build_log" |
    awk '/^  (CC|AS|LD|AR)/ { n++; if (n % 200 == 0) { printf "build-lean-kernel: %d files compiled\n", n > "/dev/stderr" } }'; then
    tail -n 30 "$build_log" >&2
    die "the kernel build failed (log above)"
fi

release=$(cat "$src/include/config/kernel.release")
out="$work/out"
mods="$out/lib/modules/$release"
mkdir -p "$out/bin" "$mods/kernel/drivers/virt/vboxguest" "$mods/kernel/fs/vboxsf"
cp "$src/vmlinux" "$out/vmlinux"
cp "$src/arch/x86/boot/bzImage" "$out/vmlinuz"
cp "$src/drivers/virt/vboxguest/vboxguest.ko" "$mods/kernel/drivers/virt/vboxguest/"
cp "$src/fs/vboxsf/vboxsf.ko" "$mods/kernel/fs/vboxsf/"
strip --strip-debug "$out/vmlinux" "$mods"/kernel/*/*/*.ko "$mods"/kernel/*/*/*/*.ko 2>/dev/null || true
printf '%s\n' \
    "kernel/drivers/virt/vboxguest/vboxguest.ko:" \
    "kernel/fs/vboxsf/vboxsf.ko: kernel/drivers/virt/vboxguest/vboxguest.ko" >"$mods/modules.dep"
cp "$stock/bin/busybox" "$out/bin/busybox"
cp "$src/.config" "$out/config"
printf '%s\n' "$release" >"$out/release"
printf 'Package: %s\nVersion: %s\nConfiguration: allnoconfig + %s (key %s)\n' \
    "$SOURCE_PACKAGE" "$version" "$(basename "$fragment")" "$key" >"$out/packages"

rm -rf "$dest"
mv "$out" "$dest"
printf '%s\n' "$LAYOUT" >"$dest/.complete"
progress "lean kernel $release ready in $dest after $(($(date +%s) - started)) s"
printf '%s\n' "$dest"
