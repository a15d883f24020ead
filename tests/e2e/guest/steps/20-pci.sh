# Steps about the VMMDev PCI function as the guest's PCI core sees it (linux-guest.md §1.1, §7 item 1).

register_steps pci-identity pci-resources

VMMDEV_VENDOR=0x80ee
VMMDEV_DEVICE=0xcafe
VMMDEV_CLASS=0x088000
# struct resource flags as shown in sysfs "resource": IORESOURCE_IO and IORESOURCE_MEM.
IORESOURCE_IO=0x100
IORESOURCE_MEM=0x200

# Prints the sysfs directories of all PCI functions with the VMMDev vendor and device id.
vmmdev_functions() {
    for dev in /sys/bus/pci/devices/*; do
        [ -f "$dev/vendor" ] || continue
        if [ "$(cat "$dev/vendor")" = "$VMMDEV_VENDOR" ] && [ "$(cat "$dev/device")" = "$VMMDEV_DEVICE" ]; then
            printf '%s\n' "$dev"
        fi
    done
}

# The sysfs directory of the VMMDev function; steps that need the device skip when there is none.
require_vmmdev() {
    VMMDEV_PCI=$(vmmdev_functions | head -n 1)
    [ -n "$VMMDEV_PCI" ] || skip "no PCI function 80ee:cafe"
}

step_pci_identity() {
    functions=$(vmmdev_functions)
    count=$(printf '%s' "$functions" | grep -c .)
    if [ "$count" -eq 0 ]; then
        present=""
        for dev in /sys/bus/pci/devices/*; do
            [ -f "$dev/vendor" ] && present="$present $(cat "$dev/vendor"):$(cat "$dev/device")"
        done
        fail "no PCI function 80ee:cafe (present:$present)"
    fi
    [ "$count" -eq 1 ] || fail "$count functions 80ee:cafe, expected one: $(echo $functions)"
    dev=$functions
    subsystem="$(cat "$dev/subsystem_vendor"):$(cat "$dev/subsystem_device")"
    [ "$subsystem" = "0x0000:0x0000" ] || fail "subsystem ids are $subsystem, vboxguest needs 0x0000:0x0000"
    class=$(cat "$dev/class")
    [ "$class" = "$VMMDEV_CLASS" ] || fail "class is $class, expected $VMMDEV_CLASS"
}

# BAR0 is an I/O window, BAR1 a memory window of at least 32 bytes, and INTx is routed to an IRQ.
step_pci_resources() {
    require_vmmdev
    bar0=$(sed -n 1p "$VMMDEV_PCI/resource")
    bar1=$(sed -n 2p "$VMMDEV_PCI/resource")
    set -- $bar0
    [ "$(($1))" -ne 0 ] && [ "$(($2))" -gt "$(($1))" ] || fail "BAR0 is not assigned: $bar0"
    [ "$(($3 & IORESOURCE_IO))" -ne 0 ] || fail "BAR0 is not an I/O BAR: $bar0"
    set -- $bar1
    [ "$(($1))" -ne 0 ] && [ "$(($2 - $1 + 1))" -ge 32 ] || fail "BAR1 is not assigned or too small: $bar1"
    [ "$(($3 & IORESOURCE_MEM))" -ne 0 ] || fail "BAR1 is not a memory BAR: $bar1"
    irq=$(cat "$VMMDEV_PCI/irq")
    [ "$irq" -ne 0 ] || fail "INTx is not routed (irq 0)"
    note "bar0=$bar0 bar1=$bar1 irq=$irq"
}
