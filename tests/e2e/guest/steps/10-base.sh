# Steps that need no device: the image itself and the kernel it runs on.

register_steps init proc-mounted sys-mounted devtmpfs static-hello modules-match-kernel

# The static Rust program built by vmmdev-e2e (bin e2e-guest-hello) and what it prints.
HELLO_BINARY=e2e-guest-hello
HELLO_GREETING="hello from a static Rust binary"

# /init is PID 1, the step runner is its child (so orphans are not adopted by the runner, whose console
# writes their SIGCHLD would cut short), and the root file system is the initramfs.
step_init() {
    comm=$(cat /proc/1/comm) || fail "cannot read /proc/1/comm"
    [ "$comm" = init ] || fail "PID 1 is '$comm', not init"
    runner=$(awk '/^PPid:/ { print $2 }' /proc/$$/status)
    [ "$runner" -ne 1 ] || fail "the step runner is PID 1"
    runner_parent=$(awk '/^PPid:/ { print $2 }' "/proc/$runner/status")
    [ "$runner_parent" -eq 1 ] || fail "the step runner's parent is $runner_parent, not PID 1"
    grep -q '^rootfs / rootfs ' /proc/mounts || grep -q '^none / rootfs ' /proc/mounts ||
        fail "/ is not the initramfs: $(grep ' / ' /proc/mounts)"
}

step_proc_mounted() {
    grep -q '^proc /proc proc ' /proc/mounts || fail "no proc file system on /proc"
    [ -r /proc/self/status ] || fail "/proc/self/status is not readable"
}

step_sys_mounted() {
    grep -q '^sysfs /sys sysfs ' /proc/mounts || fail "no sysfs on /sys"
    [ -d /sys/bus/pci/devices ] || fail "/sys/bus/pci/devices is missing (no PCI bus?)"
}

step_devtmpfs() {
    grep -q '^devtmpfs /dev devtmpfs ' /proc/mounts || fail "no devtmpfs on /dev"
    [ -c /dev/null ] || fail "/dev/null is not a character device"
    [ -c /dev/console ] || fail "/dev/console is not a character device"
}

# A binary built with `-C target-feature=+crt-static` for x86_64-unknown-linux-gnu runs here: the proof that
# the project's guest tools can be put into the image the same way.
step_static_hello() {
    path=$(command -v "$HELLO_BINARY") || fail "$HELLO_BINARY is not in the image"
    out=$("$path" 2>&1) || fail "$HELLO_BINARY exited $?: $out"
    case "$out" in
    "$HELLO_GREETING"*) ;;
    *) fail "$HELLO_BINARY printed '$out'" ;;
    esac
}

# The modules in the image were built for the running kernel (same Debian package as the kernel).
step_modules_match_kernel() {
    release=$(uname -r)
    dir="/lib/modules/$release"
    [ -f "$dir/modules.dep" ] || fail "no $dir/modules.dep: the image has modules of another kernel"
    for module in vboxguest vboxsf; do
        file=$(find "$dir" -name "$module.ko")
        [ -n "$file" ] || fail "$module.ko is not in $dir"
        vermagic=$(modinfo -F vermagic "$file") || fail "modinfo $file failed"
        case "$vermagic" in
        "$release "*) ;;
        *) fail "$module.ko has vermagic '$vermagic', the kernel is $release" ;;
        esac
    done
}
