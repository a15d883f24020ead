# Shared-folder figures in the real guest (issue #6 item 7), run by tests/scripts/compare-9p.sh only: one
# guest operation repeated COUNT times on a share mounted with the kernel's own vboxsf, or on a QEMU
# virtio-9p export, so the host side can count what each operation cost (HGCM calls and vfio-user messages
# for vboxsf, 9p requests and virtio notifications for 9p) by subtracting a run that only mounts.
#
# Kernel command line: vmmdev.sf_figures=vboxsf|9p (without it the step skips), vmmdev.sf_op=OP and
# vmmdev.sf_count=COUNT. The share (vboxsf share or 9p mount tag "fig") holds stat/f0 .. stat/f<COUNT-1>
# (empty files), pages.bin (COUNT pages of 4 KiB) and one-mib.bin (1 MiB). OP is one of
#   base     mount and unmount only
#   stat     stat each of stat/f0 .. stat/f<COUNT-1> once (first lookups, nothing cached in the guest)
#   read4k   read pages.bin 4 KiB at a time from a cold page cache (one dd, COUNT reads of 4 KiB)
#   copy1m   copy one-mib.bin to COUNT new files in the share from a cold page cache
# The step unmounts at the end and unloads vboxsf, so the host service sees the client disconnect and
# logs its call counts. It reports `@@NOTE sf-figures transport=T op=OP count=N seconds=S`.

register_steps sf-figures

# Seconds since boot, with hundredths.
sf_fig_now() {
    cut -d' ' -f1 /proc/uptime
}

# The value of kernel parameter $1, empty if absent.
sf_fig_param() {
    tr ' ' '\n' </proc/cmdline | sed -n "s/^$1=//p" | tail -n 1
}

step_sf_figures() {
    transport=$(sf_fig_param vmmdev.sf_figures)
    [ -n "$transport" ] || skip "only for tests/scripts/compare-9p.sh (vmmdev.sf_figures=vboxsf|9p)"
    op=$(sf_fig_param vmmdev.sf_op)
    count=$(sf_fig_param vmmdev.sf_count)
    [ -n "$op" ] && [ -n "$count" ] || fail "vmmdev.sf_op and vmmdev.sf_count are required"
    root=/mnt/fig
    mkdir -p "$root"
    case "$transport" in
    vboxsf)
        require_vmmdev
        load_module vboxguest
        load_module vboxsf
        out=$(mount -t vboxsf fig "$root" 2>&1) || fail "mount -t vboxsf fig: $(one_line "$out")"
        ;;
    9p)
        for module in virtio_pci 9pnet_virtio 9p; do
            out=$(modprobe "$module" 2>&1) || fail "modprobe $module: $(one_line "$out")"
        done
        out=$(mount -t 9p -o trans=virtio,version=9p2000.L fig "$root" 2>&1) ||
            fail "mount -t 9p fig: $(one_line "$out")"
        ;;
    *) fail "unknown transport $transport" ;;
    esac
    sync
    echo 3 >/proc/sys/vm/drop_caches
    started=$(sf_fig_now)
    case "$op" in
    base) ;;
    stat)
        i=0
        while [ "$i" -lt "$count" ]; do
            stat -c %s "$root/stat/f$i" >/dev/null || fail "stat of stat/f$i failed"
            i=$((i + 1))
        done
        ;;
    read4k)
        out=$(dd if="$root/pages.bin" of=/dev/null bs=4096 count="$count" 2>&1) || fail "dd: $(one_line "$out")"
        ;;
    copy1m)
        i=0
        while [ "$i" -lt "$count" ]; do
            cp "$root/one-mib.bin" "$root/copy-$i.bin" || fail "copy $i failed"
            i=$((i + 1))
        done
        sync
        ;;
    *) fail "unknown operation $op" ;;
    esac
    ended=$(sf_fig_now)
    seconds=$(awk -v a="$started" -v b="$ended" 'BEGIN { printf "%.2f", b - a }')
    out=$(umount "$root" 2>&1) || fail "umount: $(one_line "$out")"
    if [ "$transport" = vboxsf ]; then
        out=$(rmmod vboxsf 2>&1) || fail "rmmod vboxsf: $(one_line "$out")"
    fi
    note "transport=$transport op=$op count=$count seconds=$seconds"
}
