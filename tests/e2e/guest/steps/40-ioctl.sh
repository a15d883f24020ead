# Steps through the user-space ioctl interface of /dev/vboxguest and /dev/vboxuser (linux-guest.md §5,
# §7 items 5-9). They drive the project's guest tool; each subcommand exits 0 exactly when the behaviour is
# the expected one and otherwise prints a one-line reason.

register_steps backdoor-log driver-version balloon vmmreq-hostver vmmreq-denied coredump wait-event-timeout \
    wait-interrupt caps

# The guest test tool (crate vmmdev-guest-tools). Steps that need it skip when the image has none.
VBOXCTL_TEST=vboxctl-test

# Checks that the tool and the driver are there; skips otherwise. Call it first in every step that uses
# `vboxctl`, outside command substitutions: skip and fail inside $(...) would only end the substitution.
require_tool() {
    require_vmmdev
    command -v "$VBOXCTL_TEST" >/dev/null || skip "$VBOXCTL_TEST is not in the image"
    load_module vboxguest
}

# Runs the tool; a non-zero exit fails the step with the tool's last output line. The tool's output (one
# line of facts) goes to the step's output and is noted for the host.
vboxctl() {
    out=$(must "$VBOXCTL_TEST" "$@") || exit $?
    printf '%s\n' "$out"
    note "$*: $out"
}

# Item 5: the LOG ioctl reaches the host's port-0x504 log (the host side checks the text).
step_backdoor_log() {
    require_tool
    vboxctl log hello-0x504
}

# Item 6: DRIVER_VERSION_INFO, answered by the driver itself.
step_driver_version() {
    require_tool
    vboxctl version
}

# Item 6: CHECK_BALLOON reports no chunks.
step_balloon() {
    require_tool
    vboxctl balloon
}

# Item 7: a GET_HOST_VERSION request passed through /dev/vboxuser succeeds and reports the version sysfs
# shows (the tool compares them).
step_vmmreq_hostver() {
    require_tool
    vboxctl vmmreq-hostver /dev/vboxuser
}

# Item 8: request types user space may not pass through are refused with EPERM by the driver.
step_vmmreq_denied() {
    require_tool
    vboxctl vmmreq-denied /dev/vboxuser 218
    vboxctl vmmreq-denied /dev/vboxuser 63
    vboxctl vmmreq-denied /dev/vboxguest 63
}

# Item 8: WRITE_CORE_DUMP returns the host's answer without stopping the VM.
step_coredump() {
    require_tool
    vboxctl coredump
}

# Item 9: WAIT_FOR_EVENTS on a filtered event times out.
step_wait_event_timeout() {
    require_tool
    vboxctl wait-event 0x4 200
}

# Item 9: INTERRUPT_ALL_WAIT_FOR_EVENTS from a second thread ends a waiter with EINTR.
step_wait_interrupt() {
    require_tool
    vboxctl wait-interrupt
}

# Item 9: CHANGE_GUEST_CAPABILITIES sets the session's and the global capabilities.
step_caps() {
    require_tool
    vboxctl caps 0x4
}
