# Steps about the stock vboxguest and vboxsf modules (linux-guest.md §1.2, §7 items 2, 3, 4 and 17).

register_steps vboxguest-load vboxguest-probe vboxguest-nodes vboxguest-irq heartbeat-quiet vboxsf-load

# Kernel log lines that mean the driver or its probe went wrong.
VBOX_ERROR_PATTERN='vbox.*(error|bogus|fail|missing|unable)|vboxguest: probe of'

# Loads a module (and what it depends on) unless it is loaded already; fails the step with the reason.
load_module() {
    grep -q "^$1 " /proc/modules && return 0
    out=$(modprobe "$1" 2>&1) || fail "modprobe $1 failed: $(one_line "$out")"
    grep -q "^$1 " /proc/modules || fail "modprobe $1 succeeded but $1 is not in /proc/modules"
}

fail_on_vbox_errors() {
    errors=$(printf '%s\n' "$1" | grep -i -E "$VBOX_ERROR_PATTERN")
    [ -z "$errors" ] || fail "kernel log: $(printf '%s\n' "$errors" | head -n 2)"
}

# The module loads into the running kernel, with or without a device to bind to.
step_vboxguest_load() {
    mark=$(dmesg_mark)
    load_module vboxguest
    fail_on_vbox_errors "$(dmesg_since "$mark")"
}

# The driver bound to the device: GET_HOST_VERSION answered, with the page-list feature (bit 0).
step_vboxguest_probe() {
    require_vmmdev
    load_module vboxguest
    bound="/sys/bus/pci/drivers/vboxguest/$(basename "$VMMDEV_PCI")"
    [ -e "$bound" ] || fail "vboxguest did not bind to $(basename "$VMMDEV_PCI")"
    version=$(cat "$bound/host_version") || fail "no host_version attribute"
    printf '%s\n' "$version" | grep -q -E '^[0-9]+\.[0-9]+\.[0-9]+r[0-9]+$' ||
        fail "host_version '$version' is not <major>.<minor>.<build>r<revision>"
    features=$(cat "$bound/host_features") || fail "no host_features attribute"
    [ "$((0x${features#0x} & 1))" -eq 1 ] || fail "host_features $features lacks bit 0 (page lists)"
    log=$(dmesg)
    printf '%s\n' "$log" | grep -q "vboxguest: host-version: " || fail "no 'host-version:' line in the kernel log"
    fail_on_vbox_errors "$log"
    note "host_version=$version host_features=$features"
}

# The two misc devices exist: /dev/vboxguest (root only) and /dev/vboxuser.
step_vboxguest_nodes() {
    require_vmmdev
    load_module vboxguest
    for node in /dev/vboxguest /dev/vboxuser; do
        [ -c "$node" ] || fail "$node is not a character device"
        major=$(stat -c %t "$node")
        [ "$((0x$major))" -eq 10 ] || fail "$node has major $((0x$major)), expected 10 (misc)"
    done
}

# Exactly one interrupt line named vboxguest, delivered level-triggered through the IO-APIC.
step_vboxguest_irq() {
    require_vmmdev
    load_module vboxguest
    lines=$(grep -E '[[:space:]]vboxguest$|[[:space:]]vboxguest[, ]' /proc/interrupts)
    count=$(printf '%s' "$lines" | grep -c .)
    [ "$count" -eq 1 ] || fail "$count lines for vboxguest in /proc/interrupts"
    printf '%s\n' "$lines" | grep -q fasteoi || fail "not a level-triggered IO-APIC line: $(one_line "$lines")"
    note "irq: $(one_line "$lines")"
}

# The host refused HEARTBEAT_CONFIGURE, so the guest runs no heartbeat timer (H-2.7).
step_heartbeat_quiet() {
    require_vmmdev
    load_module vboxguest
    # The kernel command line names this step, so its echo in the log is not a heartbeat message.
    lines=$(dmesg | grep -i heartbeat | grep -v -i 'command line')
    [ -z "$lines" ] || fail "the kernel log mentions the heartbeat: $(printf '%s\n' "$lines" | head -n 1)"
}

# vboxsf loads on top of vboxguest; with a device it must not talk to the host yet (checked host-side).
step_vboxsf_load() {
    mark=$(dmesg_mark)
    load_module vboxsf
    grep -q '^vboxguest ' /proc/modules || fail "vboxsf loaded without vboxguest"
    fail_on_vbox_errors "$(dmesg_since "$mark")"
}
