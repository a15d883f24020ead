#!/usr/bin/env bash
# Fetches the guest's unmodified parts: Debian 12's stock kernel, its in-tree vboxguest/vboxsf modules (and
# whatever they depend on), and a static busybox.
#
# The kernel is the concrete linux-image-6.1.0-*-amd64 package that bookworm's linux-image-amd64 depends on,
# taken with `apt-get download` from the host's own apt sources. Nothing is installed on the host.
#
# Cache layout ($VMMDEV_CACHE/guest/<kernel version>/):
#   vmlinuz                                   the kernel image as Debian ships it (bzImage)
#   vmlinux                                   the same kernel decompressed (ELF): QEMU boots it through
#                                             its PVH entry point, skipping seconds of decompression
#                                             under TCG; monitors on slow KVM need it too
#   lib/modules/<kver>/kernel/...             vboxguest.ko, vboxsf.ko and their dependencies, uncompressed
#   lib/modules/<kver>/modules.dep            dependency list for modprobe, covering those modules only
#   bin/busybox                               busybox-static's binary
#   packages                                  the Debian packages (name and version) the files came from
#   .complete                                 written last, holds the layout version; a directory
#                                             without it (or with another version) is rebuilt
#
# Output: progress lines on stderr; the last line on stdout is the guest directory.
#
# Environment:
#   VMMDEV_CACHE  cache directory (default: $HOME/.cache/vmmdev-rs)
set -euo pipefail

readonly META_PACKAGE=linux-image-amd64
readonly BUSYBOX_PACKAGE=busybox-static
# Bump when the cache layout changes: older caches are rebuilt.
readonly LAYOUT="layout 2"
# The modules the guest image needs, by module name; their dependencies are added automatically.
readonly WANTED_MODULES=(vboxguest vboxsf)

home="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
CACHE="${VMMDEV_CACHE:-$home/.cache/vmmdev-rs}"
GUEST_CACHE="$CACHE/guest"

progress() { printf 'fetch-guest: %s\n' "$*" >&2; }
die() { printf 'fetch-guest: error: %s\n' "$*" >&2; exit 1; }

# The concrete kernel package the meta package depends on, from the local package lists (empty if unknown).
# apt-cache needs most of a second here, so the answer is remembered together with the lists' identity.
kernel_package() {
    local lists_id memo="$GUEST_CACHE/.resolved" answer
    lists_id=$(stat -c '%n %Y %s' /var/lib/apt/lists/*Packages* 2>/dev/null | md5sum | cut -d' ' -f1)
    if [ -f "$memo" ] && [ "$(head -n 1 "$memo")" = "$lists_id" ]; then
        sed -n 2p "$memo"
        return
    fi
    answer=$(apt-cache show --no-all-versions "$META_PACKAGE" 2>/dev/null |
        sed -n 's/^Depends: .*\(linux-image-6\.1\.0-[0-9]*-amd64\).*/\1/p' | head -n 1)
    if [ -n "$answer" ]; then
        mkdir -p "$GUEST_CACHE"
        printf '%s\n%s\n' "$lists_id" "$answer" >"$memo"
    fi
    printf '%s\n' "$answer"
}

candidate_version() {
    apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: //p'
}

newest_complete_cache() {
    local dir
    for dir in $(ls -1d "$GUEST_CACHE"/*/ 2>/dev/null | sort -V -r); do
        if [ "$(cat "$dir/.complete" 2>/dev/null)" = "$LAYOUT" ]; then
            printf '%s\n' "${dir%/}"
            return 0
        fi
    done
    return 1
}

refresh_lists() {
    progress "apt-get update"
    apt-get update >/dev/null || die "apt-get update failed"
}

# Prints a module's direct dependencies (the depends= entry of its .modinfo section), one per line.
module_depends() {
    tr '\0' '\n' <"$1" | sed -n 's/^depends=//p' | head -n 1 | tr ',' '\n' | sed '/^$/d'
}

# Finds the file of a module by name under a module tree; '-' and '_' are interchangeable in names.
module_file() {
    local tree="$1" name="$2" pattern
    pattern=$(printf '%s' "$name" | sed 's/[-_]/[-_]/g')
    find "$tree" -type f \( -name "$pattern.ko" -o -name "$pattern.ko.xz" -o -name "$pattern.ko.zst" \
        -o -name "$pattern.ko.gz" \) | head -n 1
}

# Copies a module (decompressing it) from the extracted package to the cache, keeping its relative path.
install_module() {
    local src="$1" src_tree="$2" dst_tree="$3" rel
    rel="${src#"$src_tree"/}"
    mkdir -p "$dst_tree/$(dirname "$rel")"
    case "$src" in
    *.ko) cp "$src" "$dst_tree/$rel" ;;
    *.ko.xz) xz -dc "$src" >"$dst_tree/${rel%.xz}" ;;
    *.ko.zst) zstd -qdc "$src" >"$dst_tree/${rel%.zst}" ;;
    *.ko.gz) gzip -dc "$src" >"$dst_tree/${rel%.gz}" ;;
    *) die "unexpected module file $src" ;;
    esac
}

# Decompresses the ELF kernel out of a bzImage: the XZ stream whose content starts with the ELF magic.
extract_vmlinux() {
    local bzimage="$1" out="$2" offset
    for offset in $(LC_ALL=C grep -obUaP '\xFD7zXZ\x00' "$bzimage" | cut -d: -f1); do
        # xz stops after the stream; a process substitution keeps tail's SIGPIPE out of pipefail.
        if xz -dc --single-stream < <(tail -c +"$((offset + 1))" "$bzimage") >"$out" 2>/dev/null &&
            [ "$(head -c 4 "$out" | od -An -c | tr -d ' ')" = '177ELF' ]; then
            return 0
        fi
    done
    rm -f "$out"
    die "no XZ-compressed ELF kernel in $bzimage (Debian's 6.1 kernels use XZ)"
}

# --- 1. Which kernel? ---------------------------------------------------------------------------------------
# Sets package, kver and dest from the local package lists.
resolve_kernel() {
    package=$(kernel_package)
    [ -n "$package" ] || return 1
    kver="${package#linux-image-}"
    dest="$GUEST_CACHE/$kver"
}

if ! resolve_kernel; then
    if cached=$(newest_complete_cache); then
        progress "no package lists for $META_PACKAGE; using the cached guest in $cached"
        printf '%s\n' "$cached"
        exit 0
    fi
    refresh_lists
    resolve_kernel || die "$META_PACKAGE does not depend on a linux-image-6.1.0-*-amd64 package here (not Debian 12?)"
fi

if [ "$(cat "$dest/.complete" 2>/dev/null)" = "$LAYOUT" ]; then
    progress "using cached guest kernel $kver in $dest"
    printf '%s\n' "$dest"
    exit 0
fi

# --- 2. Download and extract. -------------------------------------------------------------------------------
mkdir -p "$CACHE"
work=$(mktemp -d "$CACHE/fetch-guest.XXXXXX")
trap 'rm -rf "$work"' EXIT
# apt drops privileges to _apt for downloads; let it write here.
chmod 0777 "$work"
cd "$work"
progress "downloading $package $(candidate_version "$package")"
if ! apt-get download "$package" >/dev/null 2>&1; then
    # Old lists name a kernel the mirror no longer has: refresh them, which may name a newer kernel.
    progress "apt-get download $package failed; the package lists are probably stale"
    refresh_lists
    resolve_kernel || die "$META_PACKAGE does not depend on a linux-image-6.1.0-*-amd64 package any more"
    if [ "$(cat "$dest/.complete" 2>/dev/null)" = "$LAYOUT" ]; then
        progress "using cached guest kernel $kver in $dest"
        printf '%s\n' "$dest"
        exit 0
    fi
    progress "downloading $package $(candidate_version "$package")"
    apt-get download "$package" >/dev/null || die "cannot download $package"
fi
progress "downloading $BUSYBOX_PACKAGE $(candidate_version "$BUSYBOX_PACKAGE")"
apt-get download "$BUSYBOX_PACKAGE" >/dev/null 2>&1 || apt-get download "$BUSYBOX_PACKAGE" >/dev/null ||
    die "cannot download $BUSYBOX_PACKAGE"
rm -rf "$dest"
kernel_deb=$(ls "$work"/linux-image-*.deb)
busybox_deb=$(ls "$work"/busybox-static_*.deb)

progress "extracting $(basename "$kernel_deb")"
mkdir -p "$work/kernel" "$work/busybox" "$work/out"
dpkg-deb -x "$kernel_deb" "$work/kernel"
dpkg-deb -x "$busybox_deb" "$work/busybox"

[ -f "$work/kernel/boot/vmlinuz-$kver" ] || die "no boot/vmlinuz-$kver in $package"
src_tree="$work/kernel/lib/modules/$kver"
[ -d "$src_tree" ] || die "no lib/modules/$kver in $package"
dst_tree="$work/out/lib/modules/$kver"

cp "$work/kernel/boot/vmlinuz-$kver" "$work/out/vmlinuz"
extract_vmlinux "$work/out/vmlinuz" "$work/out/vmlinux"
mkdir -p "$work/out/bin"
cp "$work/busybox/bin/busybox" "$work/out/bin/busybox"
chmod 0755 "$work/out/bin/busybox"

# --- 3. The modules and their dependencies. -----------------------------------------------------------------
# Breadth-first over depends=; `deps_of[name]` keeps each module's transitive dependencies for modules.dep.
declare -A file_of=() seen=()
queue=("${WANTED_MODULES[@]}")
while [ "${#queue[@]}" -gt 0 ]; do
    name="${queue[0]}"
    queue=("${queue[@]:1}")
    [ -z "${seen[$name]:-}" ] || continue
    seen[$name]=1
    src=$(module_file "$src_tree" "$name")
    [ -n "$src" ] || die "module $name is not in $package"
    install_module "$src" "$src_tree" "$dst_tree"
    rel="${src#"$src_tree"/}"
    rel="${rel%.xz}"; rel="${rel%.zst}"; rel="${rel%.gz}"
    file_of[$name]="$rel"
    while read -r dep; do
        queue+=("$dep")
    done < <(module_depends "$dst_tree/$rel")
done

# modules.dep: "<module>: <deps>", dependencies listed so that loading them from last to first works.
transitive_deps() {
    local name="$1" dep
    while read -r dep; do
        printf '%s\n' "$dep"
        transitive_deps "$dep"
    done < <(module_depends "$dst_tree/${file_of[$1]}")
}
for name in "${!file_of[@]}"; do
    line="${file_of[$name]}:"
    declare -A listed=()
    while read -r dep; do
        [ -z "${listed[$dep]:-}" ] || continue
        listed[$dep]=1
        line="$line ${file_of[$dep]}"
    done < <(transitive_deps "$name")
    unset listed
    printf '%s\n' "$line"
done | sort >"$dst_tree/modules.dep"

{
    dpkg-deb -f "$kernel_deb" Package Version
    dpkg-deb -f "$busybox_deb" Package Version
} >"$work/out/packages"
progress "modules: $(cut -d: -f1 "$dst_tree/modules.dep" | xargs -n1 basename | xargs)"

# --- 4. Publish. --------------------------------------------------------------------------------------------
mkdir -p "$GUEST_CACHE"
mv "$work/out" "$dest"
printf '%s\n' "$LAYOUT" >"$dest/.complete"
progress "guest kernel $kver ready in $dest"
printf '%s\n' "$dest"
