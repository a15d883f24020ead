#!/usr/bin/env bash
# Provides a QEMU >= 10.1 with the vfio-user-pci device without changing the host's packages.
#
# Debian 12 ships QEMU 7.2, which has no vfio-user client. Installing a newer QEMU on the host would upgrade
# libc and hundreds of other packages, so instead this script bootstraps a minimal Debian trixie root into a
# cache directory outside the repository, installs trixie-backports' qemu-system-x86 inside it, and writes a
# wrapper that runs that QEMU through the root's own dynamic loader. Paths on QEMU's command line (kernel,
# initrd, sockets) stay host paths because nothing runs under chroot.
#
# A host qemu-system-x86_64 that is new enough and lists vfio-user-pci is used as it is.
#
# Output: progress lines on stderr; the last line on stdout is the path of the QEMU binary to run
# (normally the wrapper "$VMMDEV_CACHE/bin/qemu-system-x86_64"), so `QEMU=$(provision-qemu.sh)` works.
#
# Environment:
#   VMMDEV_CACHE          cache directory (default: $HOME/.cache/vmmdev-rs)
#   VMMDEV_DEBIAN_MIRROR  Debian mirror URL (default: the machine's own apt mirror)
#   VMMDEV_USE_HOST_QEMU  0 to ignore a suitable host QEMU and always use the cached root
set -euo pipefail

readonly MIN_MAJOR=10
readonly MIN_MINOR=1
# Bump when the recipe changes: a cache built by an older recipe is rebuilt.
readonly RECIPE="trixie-minbase+backports-qemu-system-x86 v1"

home="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
CACHE="${VMMDEV_CACHE:-$home/.cache/vmmdev-rs}"
ROOT="$CACHE/qemu-trixie"
STAGING="$CACHE/qemu-trixie.partial"
MARKER="$ROOT/.vmmdev-provisioned"
WRAPPER="$CACHE/bin/qemu-system-x86_64"

progress() { printf 'provision-qemu: %s\n' "$*" >&2; }
die() { printf 'provision-qemu: error: %s\n' "$*" >&2; exit 1; }

# True when the QEMU binary (run through "$@") reports a version >= MIN and lists vfio-user-pci.
qemu_is_suitable() {
    local version major minor
    version=$("$@" --version 2>/dev/null | sed -n 's/^QEMU emulator version \([0-9]*\)\.\([0-9]*\).*/\1 \2/p')
    [ -n "$version" ] || return 1
    read -r major minor <<<"$version"
    if [ "$major" -lt "$MIN_MAJOR" ] || { [ "$major" -eq "$MIN_MAJOR" ] && [ "$minor" -lt "$MIN_MINOR" ]; }; then
        return 1
    fi
    "$@" -machine none -device help 2>/dev/null | grep -q '"vfio-user-pci"'
}

# The Debian mirror this machine already uses (deb822 sources first, then the one-line format).
debian_mirror() {
    if [ -n "${VMMDEV_DEBIAN_MIRROR:-}" ]; then
        printf '%s\n' "$VMMDEV_DEBIAN_MIRROR"
        return
    fi
    local file uri
    for file in /etc/apt/sources.list.d/*.sources; do
        [ -f "$file" ] || continue
        # The first stanza whose suites are not the security archive.
        uri=$(awk '
            /^[[:space:]]*$/ { if (uri != "" && suites !~ /-security/) { print uri; exit } uri = ""; suites = ""; next }
            /^URIs:/ { uri = $2 }
            /^Suites:/ { suites = $0 }
            END { if (uri != "" && suites !~ /-security/) print uri }
        ' "$file" | head -n 1)
        if [ -n "$uri" ] && [[ "$uri" == *debian* ]] && [[ "$uri" != *security* ]]; then
            printf '%s\n' "$uri"
            return
        fi
    done
    for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$file" ] || continue
        uri=$(awk '$1 == "deb" && $0 !~ /security/ && $0 ~ /debian/ {
                   for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' "$file")
        if [ -n "$uri" ]; then
            printf '%s\n' "$uri"
            return
        fi
    done
    printf '%s\n' "http://deb.debian.org/debian"
}

# Unmounts anything left mounted below a directory by an interrupted debootstrap, deepest first.
unmount_below() {
    local dir="$1" mnt
    while read -r mnt; do
        progress "unmounting leftover $mnt"
        umount -l "$mnt" || die "cannot unmount $mnt"
    done < <(awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r)
}

remove_tree() {
    local dir="$1"
    [ -e "$dir" ] || return 0
    unmount_below "$dir"
    rm -rf --one-file-system "$dir"
}

write_wrapper() {
    local root="$1" tmp="$WRAPPER.tmp"
    mkdir -p "$(dirname "$WRAPPER")"
    cat >"$tmp" <<EOF
#!/bin/sh
# Runs the QEMU installed in $root through that root's own loader and libraries.
# Written by tests/scripts/provision-qemu.sh; do not edit.
ROOT='$root'
QEMU_MODULE_DIR="\$ROOT/usr/lib/x86_64-linux-gnu/qemu"
export QEMU_MODULE_DIR
exec "\$ROOT/usr/lib64/ld-linux-x86-64.so.2" \\
    --library-path "\$ROOT/usr/lib/x86_64-linux-gnu" \\
    "\$ROOT/usr/bin/qemu-system-x86_64" \\
    -L "\$ROOT/usr/share/qemu" -L "\$ROOT/usr/share/seabios" "\$@"
EOF
    chmod 0755 "$tmp"
    mv -f "$tmp" "$WRAPPER"
}

# --- 1. A finished cache: answer at once. -------------------------------------------------------------------
if [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$RECIPE" ] && [ -x "$WRAPPER" ]; then
    progress "using cached QEMU in $ROOT"
    printf '%s\n' "$WRAPPER"
    exit 0
fi

# --- 2. A suitable host QEMU. -------------------------------------------------------------------------------
if [ "${VMMDEV_USE_HOST_QEMU:-1}" != 0 ] && host_qemu=$(command -v qemu-system-x86_64); then
    if qemu_is_suitable "$host_qemu"; then
        progress "host QEMU $host_qemu has vfio-user-pci; using it"
        printf '%s\n' "$host_qemu"
        exit 0
    fi
    progress "host QEMU $host_qemu is older than $MIN_MAJOR.$MIN_MINOR or lacks vfio-user-pci; ignoring it"
fi

# --- 3. Build the trixie root. ------------------------------------------------------------------------------
[ "$(id -u)" -eq 0 ] || die "bootstrapping the QEMU root needs root (debootstrap, chroot); run as root"
[ "$(uname -m)" = x86_64 ] || die "only x86_64 hosts are supported"

if ! command -v debootstrap >/dev/null; then
    progress "installing debootstrap on the host"
    if ! apt-get install -y --no-install-recommends debootstrap >/dev/null 2>&1; then
        progress "apt-get update (package lists are missing or stale)"
        apt-get update >/dev/null || die "apt-get update failed"
        apt-get install -y --no-install-recommends debootstrap >/dev/null || die "cannot install debootstrap"
    fi
fi

MIRROR=$(debian_mirror)
progress "Debian mirror: $MIRROR"

# Whatever an earlier, unfinished run left behind is discarded: the marker is written last, so a root
# without a marker (or with another recipe's marker) is incomplete or stale.
if [ -e "$ROOT" ]; then
    progress "removing incomplete or outdated $ROOT"
    remove_tree "$ROOT"
fi
if [ -e "$STAGING" ]; then
    progress "removing leftovers of an interrupted run in $STAGING"
    remove_tree "$STAGING"
fi
mkdir -p "$CACHE"

started=$(date +%s)
progress "debootstrap --variant=minbase trixie (about half a minute)"
if ! debootstrap --variant=minbase trixie "$STAGING" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1; then
    tail -n 20 "$CACHE/debootstrap.log" >&2
    unmount_below "$STAGING"
    die "debootstrap failed (log: $CACHE/debootstrap.log)"
fi
unmount_below "$STAGING"

progress "installing qemu-system-x86 from trixie-backports inside the root"
printf 'deb %s trixie-backports main\n' "$MIRROR" >"$STAGING/etc/apt/sources.list.d/backports.list"
# Nothing may start services inside the root.
printf '#!/bin/sh\nexit 101\n' >"$STAGING/usr/sbin/policy-rc.d"
chmod 0755 "$STAGING/usr/sbin/policy-rc.d"
if ! {
    chroot "$STAGING" apt-get update &&
        DEBIAN_FRONTEND=noninteractive chroot "$STAGING" apt-get install -y --no-install-recommends \
            -t trixie-backports qemu-system-x86 &&
        chroot "$STAGING" apt-get clean
} >"$CACHE/apt.log" 2>&1; then
    tail -n 20 "$CACHE/apt.log" >&2
    die "installing qemu-system-x86 in the root failed (log: $CACHE/apt.log)"
fi

loader=(
    "$STAGING/usr/lib64/ld-linux-x86-64.so.2" --library-path "$STAGING/usr/lib/x86_64-linux-gnu"
    "$STAGING/usr/bin/qemu-system-x86_64"
)
if ! qemu_is_suitable "${loader[@]}"; then
    "${loader[@]}" --version >&2 || true
    die "the installed QEMU is older than $MIN_MAJOR.$MIN_MINOR or lacks vfio-user-pci"
fi

mv "$STAGING" "$ROOT"
write_wrapper "$ROOT"
qemu_is_suitable "$WRAPPER" || die "the wrapper $WRAPPER does not run QEMU"
printf '%s\n' "$RECIPE" >"$MARKER"
progress "$("$WRAPPER" --version | head -n 1) ready after $(($(date +%s) - started)) s"
printf '%s\n' "$WRAPPER"
