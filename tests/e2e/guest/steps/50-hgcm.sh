# Steps through HGCM from a guest program (linux-guest.md §7 items 10 and 13-15), against the project's
# example echo service: its blocking WAIT function stands in for the guest-property notification wait.

register_steps hgcm-connect hgcm-connect-unknown hgcm-echo hgcm-wait-alarm hgcm-wait-timeout hgcm-wait-kill \
    hgcm-null-calls

# The HGCM name of the example echo service (crate vmmdev-svc-echo).
ECHO_SERVICE=Echo

# How many null calls hgcm-null-calls makes for its round-trip figure.
NULL_CALLS=1000

# Item 10: connect to the echo service (client id != 0) and disconnect.
step_hgcm_connect() {
    require_tool
    vboxctl connect "$ECHO_SERVICE"
}

# Item 10: an unknown service name is refused by the host (ioctl 0, hdr.rc < 0).
step_hgcm_connect_unknown() {
    require_tool
    vboxctl connect-fail NoSuchSvc
}

# An ECHO call returns its input: buffers travel both ways.
step_hgcm_echo() {
    require_tool
    vboxctl echo "hello over HGCM"
}

# Item 13: SIGALRM interrupts a blocking call with EINTR (host sees CANCEL2); the tool then checks that
# the client still works with an ECHO call.
step_hgcm_wait_alarm() {
    require_tool
    vboxctl wait-alarm 1
}

# Item 14: a call with a 500 ms timeout ends with ETIMEDOUT, and the client still works after.
step_hgcm_wait_timeout() {
    require_tool
    vboxctl wait-timeout 500
}

# Item 15: a process killed while blocked in a call goes away promptly, and a new connect works.
step_hgcm_wait_kill() {
    require_tool
    "$VBOXCTL_TEST" wait-forever >/dev/null 2>&1 &
    waiter=$!
    sleep 1
    kill -0 "$waiter" 2>/dev/null || fail "wait-forever returned before it was killed"
    kill -9 "$waiter"
    tries=0
    while [ -d "/proc/$waiter" ] && [ "$(awk '{ print $3 }' "/proc/$waiter/stat" 2>/dev/null)" != Z ]; do
        tries=$((tries + 1))
        [ "$tries" -le 20 ] || fail "the killed waiter was still alive 2 s after SIGKILL"
        sleep 0.1
    done
    wait "$waiter" 2>/dev/null
    vboxctl connect "$ECHO_SERVICE"
}

# The cost of a null HGCM round trip from a guest program (reported as a note).
step_hgcm_null_calls() {
    require_tool
    vboxctl null-calls "$NULL_CALLS"
}
