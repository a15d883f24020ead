#!/usr/bin/env bash
# Shared folders in the real guest next to QEMU's virtio-9p, on the same kernel under TCG (issue #6 item 7).
#
# For each transport (vboxsf against vmmdev-vfio-user's VBoxSharedFolders; virtio-9p-pci with QEMU's own
# `-fsdev local` server) and each operation of tests/e2e/guest/steps/71-sf-figures.sh (stat, read4k,
# copy1m, and base: mount and unmount only) it boots Debian 12's stock kernel once, runs the operation
# COUNT times and collects:
#   vboxsf  HGCM calls (the service's per-client counts, logged when vboxsf unloads) and vfio-user messages
#           (the server's counters at the client's disconnect);
#   9p      9P requests (QEMU trace events v9fs_*, requests only) and virtio notifications (guest kicks,
#           `virtio_queue_notify`; device interrupts, `virtio_notify`);
# both: the guest's wall time for the COUNT operations (TCG: the shape, not the speed).
# Per operation = (run - base run) / COUNT. Prints a Markdown table on stdout.
#
# Not part of CI (a dozen TCG boots). The guest image is the e2e image plus the 9p modules (9p, 9pnet,
# 9pnet_virtio, virtio_pci and their dependencies) taken from the same Debian kernel package, in a guest directory of
# its own under OUT_DIR; the e2e cache is not touched.
#
# Usage: tests/scripts/compare-9p.sh [--count N] [OUT_DIR]     (default N=200, OUT_DIR=<target>/compare-9p)
set -euo pipefail

count=200
out=""
while [ $# -gt 0 ]; do
    case "$1" in
    --count) count="${2:?--count needs a number}"; shift ;;
    -*) printf 'compare-9p: unknown option %s\n' "$1" >&2; exit 2 ;;
    *) out="$1" ;;
    esac
    shift
done

progress() { printf 'compare-9p: %s\n' "$*" >&2; }
die() { printf 'compare-9p: error: %s\n' "$*" >&2; exit 1; }

here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../.."
target_dir=$(cargo metadata --no-deps --format-version 1 | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
out="${out:-$target_dir/compare-9p}"
mkdir -p "$out"
out=$(realpath "$out")

qemu=$("$here/provision-qemu.sh")
guest=$("$here/fetch-guest.sh")
kver=$(basename "$(ls -d "$guest"/lib/modules/*/)")

# --- The guest directory with the 9p modules. ---------------------------------------------------------------
guest9p="$out/guest"
if [ ! -f "$guest9p/.complete" ]; then
    progress "adding the 9p modules of linux-image-$kver"
    rm -rf "$guest9p" "$out/deb"
    cp -a "$guest" "$guest9p"
    mkdir -p "$out/deb"
    chmod 0777 "$out/deb"
    (cd "$out/deb" && apt-get download "linux-image-$kver" >/dev/null) || die "cannot download linux-image-$kver"
    dpkg-deb -x "$out"/deb/linux-image-*.deb "$out/deb/root"
    src="$out/deb/root/lib/modules/$kver"
    dst="$guest9p/lib/modules/$kver"
    depends() { tr '\0' '\n' <"$1" | sed -n 's/^depends=//p' | head -n 1 | tr ',' '\n' | sed '/^$/d'; }
    declare -A file_of=()
    queue=(9p 9pnet 9pnet_virtio virtio_pci)
    while [ "${#queue[@]}" -gt 0 ]; do
        name="${queue[0]}"
        queue=("${queue[@]:1}")
        [ -z "${file_of[$name]:-}" ] || continue
        pattern=$(printf '%s' "$name" | sed 's/[-_]/[-_]/g')
        file=$(find "$src" -type f \( -name "$pattern.ko" -o -name "$pattern.ko.xz" \) | head -n 1)
        [ -n "$file" ] || { grep -q "/$pattern.ko" "$src/modules.builtin" && continue; die "no module $name"; }
        rel="${file#"$src"/}"
        mkdir -p "$dst/$(dirname "$rel")"
        case "$file" in
        *.xz) xz -dc "$file" >"$dst/${rel%.xz}"; rel="${rel%.xz}" ;;
        *) cp "$file" "$dst/$rel" ;;
        esac
        file_of[$name]="$rel"
        while read -r dep; do queue+=("$dep"); done < <(depends "$dst/$rel")
    done
    # Every dependency, dependencies of dependencies first (the order they load in), builtins left out.
    load_order() {
        local dep
        while read -r dep; do
            [ -n "${file_of[$dep]:-}" ] || continue
            load_order "$dep"
            printf '%s\n' "${file_of[$dep]}"
        done < <(depends "$dst/${file_of[$1]}")
    }
    # modules.dep lists a module's dependencies so that loading them from last to first works.
    for name in "${!file_of[@]}"; do
        printf '%s:%s\n' "${file_of[$name]}" "$(load_order "$name" | awk '!seen[$0]++' | tac | sed 's/^/ /' | tr -d '\n')"
    done >>"$dst/modules.dep"
    progress "9p modules: ${!file_of[*]}"
    rm -rf "$out/deb"
    touch "$guest9p/.complete"
fi

# --- Image and server. --------------------------------------------------------------------------------------
bins=$("$here/build-guest-bins.sh" "$out/bin")
initrd=$("$here/build-initramfs.sh" "$guest9p" "$bins" "$out/initrd.cpio.gz")
cargo build --quiet -p vmmdev-vfio-user --bin vmmdev-vfio-user
server="$target_dir/debug/vmmdev-vfio-user"

# --- The exported tree. -------------------------------------------------------------------------------------
make_tree() {
    rm -rf "$1"
    mkdir -p "$1/stat"
    for i in $(seq 0 $((count - 1))); do : >"$1/stat/f$i"; done
    head -c $((count * 4096)) /dev/urandom >"$1/pages.bin"
    head -c $((1024 * 1024)) /dev/urandom >"$1/one-mib.bin"
}

# How many times OP runs: COUNT, but a twentieth of it for the 1 MiB copies (TCG copies about 5 MiB/s).
times_of() {
    case "$1" in
    base) echo 1 ;;
    copy1m) echo $(((count + 19) / 20)) ;;
    *) echo "$count" ;;
    esac
}

# boot TRANSPORT OP: one boot; leaves serial.log, server.log (vboxsf) and qemu.log (with the 9p trace) in
# $out/TRANSPORT-OP/.
boot() {
    local transport="$1" op="$2" run="$out/$1-$2" n device=() server_pid=""
    n=$(times_of "$op")
    rm -rf "$run"
    mkdir -p "$run"
    make_tree "$run/share"
    local append="console=ttyS0 quiet panic=-1 vmmdev.mode=test vmmdev.steps=sf-figures vmmdev.step_timeout=1200"
    append="$append vmmdev.sf_figures=$transport vmmdev.sf_op=$op vmmdev.sf_count=$n"
    if [ "$transport" = vboxsf ]; then
        RUST_LOG=info "$server" --socket "$run/vmmdev.sock" --once --share "fig=$run/share" >"$run/server.log" 2>&1 &
        server_pid=$!
        for _ in $(seq 100); do [ -S "$run/vmmdev.sock" ] && break; sleep 0.1; done
        [ -S "$run/vmmdev.sock" ] || die "the server did not start: $(tail -n 3 "$run/server.log")"
        device=(-device "{\"driver\":\"vfio-user-pci\",\"socket\":{\"path\":\"$run/vmmdev.sock\",\"type\":\"unix\"}}")
    else
        device=(-fsdev "local,id=fig,path=$run/share,security_model=none"
            -device "virtio-9p-pci,fsdev=fig,mount_tag=fig"
            -trace "enable=v9fs_*" -trace "enable=virtio_queue_notify" -trace "enable=virtio_notify")
    fi
    progress "$transport $op x$n"
    timeout 1800 "$qemu" -nodefaults -no-user-config -display none -serial stdio -no-reboot -accel tcg \
        -smp 1 -m 512M -object memory-backend-memfd,id=mem,size=512M,share=on -machine pc,memory-backend=mem \
        "${device[@]}" -kernel "$guest9p/vmlinux" -initrd "$initrd" -append "$append" \
        </dev/null >"$run/serial.log" 2>"$run/qemu.log" || true  # QEMU's trace lines go to its stderr
    if [ -n "$server_pid" ]; then
        wait "$server_pid" || true
    fi
    grep -a -q '^@@STEP sf-figures PASS' "$run/serial.log" ||
        die "$transport $op: $(grep -a '^@@STEP' "$run/serial.log" | tail -n 1) (see $run)"
}

# The numbers of a run: "seconds calls messages" (vboxsf) or "seconds requests kicks interrupts" (9p).
figures() {
    local run="$out/$1-$2" seconds
    seconds=$(grep -a '^@@NOTE sf-figures' "$run/serial.log" | sed -n 's/.*seconds=\([0-9.]*\).*/\1/p')
    if [ "$1" = vboxsf ]; then
        printf '%s %s %s\n' "$seconds" \
            "$(sed -n 's/.*disconnected after calls: total=\([0-9]*\).*/\1/p' "$run/server.log" | tail -n 1)" \
            "$(sed -n 's/.*client disconnected: .* messages=\([0-9]*\).*/\1/p' "$run/server.log" | tail -n 1)"
    else
        printf '%s %s %s %s\n' "$seconds" \
            "$(grep -E '^v9fs_[a-z]+ ' "$run/qemu.log" | grep -c -v -E '^v9fs_r(error|cancel) ')" \
            "$(grep -c '^virtio_queue_notify ' "$run/qemu.log")" \
            "$(grep -c '^virtio_notify ' "$run/qemu.log")"
    fi
}

ops=(base stat read4k copy1m)
for transport in vboxsf 9p; do
    for op in "${ops[@]}"; do
        boot "$transport" "$op"
    done
done

per() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN { printf "%.2f", (a - b) / n }'; }
rate() { awk -v s="$1" -v n="$2" 'BEGIN { if (s > 0) printf "%.1f", n / s; else print "-" }'; }
printf '| operation (times) | vboxsf ops/s | HGCM calls per op | vfio-user messages per op | 9p ops/s | 9P requests per op | virtio kicks per op | virtio interrupts per op |\n'
printf '|---|---|---|---|---|---|---|---|\n'
read -r _ vb_calls vb_msgs < <(figures vboxsf base)
read -r _ p9_reqs p9_kicks p9_irqs < <(figures 9p base)
for op in stat read4k copy1m; do
    n=$(times_of "$op")
    read -r vs vc vm < <(figures vboxsf "$op")
    read -r ps pr pk pi < <(figures 9p "$op")
    printf '| %s (%s) | %s | %s | %s | %s | %s | %s | %s |\n' "$op" "$n" "$(rate "$vs" "$n")" \
        "$(per "$vc" "$vb_calls" "$n")" "$(per "$vm" "$vb_msgs" "$n")" "$(rate "$ps" "$n")" \
        "$(per "$pr" "$p9_reqs" "$n")" "$(per "$pk" "$p9_kicks" "$n")" "$(per "$pi" "$p9_irqs" "$n")"
done
progress "runs in $out (serial.log, server.log, qemu.log per run)"
