#!/usr/bin/env bash
# Builds the project's guest programs as static x86-64 binaries and collects them in one directory for
# the guest image.
#
# Only the gnu target is installed, so the binaries link glibc statically (`+crt-static`); with an explicit
# --target, RUSTFLAGS apply to the guest programs only, not to build scripts, and the artifacts live apart
# from the host build (target/x86_64-unknown-linux-gnu/release).
#
# Usage: build-guest-bins.sh OUT_DIR
#   Builds e2e-guest-hello (crate vmmdev-e2e), vboxctl-test, vboxcontrol and vboxservice (crate
#   vmmdev-guest-tools).
#   The directory is emptied first. Progress on stderr; OUT_DIR on stdout.
set -euo pipefail

readonly TARGET=x86_64-unknown-linux-gnu
# package:binary pairs for the guest image.
readonly PROGRAMS=(vmmdev-e2e:e2e-guest-hello vmmdev-guest-tools:vboxctl-test vmmdev-guest-tools:vboxcontrol
    vmmdev-guest-tools:vboxservice)

progress() { printf 'build-guest-bins: %s\n' "$*" >&2; }
die() { printf 'build-guest-bins: error: %s\n' "$*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: build-guest-bins.sh OUT_DIR"
out="$1"
cd "$(dirname "$0")/../.."

metadata=$(cargo metadata --no-deps --format-version 1 --offline 2>/dev/null || cargo metadata --no-deps --format-version 1)
target_dir=$(printf '%s' "$metadata" | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
[ -n "$target_dir" ] || die "cannot find cargo's target directory"

build_args=()
wanted=()
for program in "${PROGRAMS[@]}"; do
    build_args+=(-p "${program%%:*}" --bin "${program#*:}")
    wanted+=("${program#*:}")
done

progress "cargo build --release --target $TARGET ${build_args[*]} (static)"
# Debug info would triple the image; symbols stay for backtraces.
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=debuginfo \
    cargo build --release --target "$TARGET" "${build_args[@]}" >&2

mkdir -p "$out"
find "$out" -mindepth 1 -delete
for binary in "${wanted[@]}"; do
    cp "$target_dir/$TARGET/release/$binary" "$out/$binary"
    if ldd "$out/$binary" 2>&1 | grep -q '=>'; then
        die "$binary is dynamically linked"
    fi
done
progress "static guest programs in $out: ${wanted[*]}"
printf '%s\n' "$out"
