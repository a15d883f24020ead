# Guest properties from a guest program (linux-guest.md §7 items 11-15), with `vboxcontrol`, the
# project's VBoxControl, against the host's VBoxGuestPropSvc through /dev/vboxuser.
#
# The host must serve the guest properties service (built in unless --no-default-services) and set
# /Test/FromHost=hello-from-host before the guest boots (--guest-property).

register_steps guestprop-set-get guestprop-from-host guestprop-enumerate guestprop-wait \
    guestprop-wait-signal guestprop-wait-timeout guestprop-wait-kill guestprop-wait-many

VBOXCONTROL=vboxcontrol

# The property the host sets before boot, and its value.
HOST_PROPERTY=/Test/FromHost
HOST_VALUE=hello-from-host

# How many processes guestprop-wait-many parks in GET_NOTIFICATION at once.
MANY_WAITERS=100

# Checks that the tool and the driver are there; skips otherwise. Call it first, outside $(...).
require_vboxcontrol() {
    require_vmmdev
    command -v "$VBOXCONTROL" >/dev/null || skip "$VBOXCONTROL is not in the image"
    load_module vboxguest
}

# Runs `vboxcontrol --nologo guestproperty ARGS...` with stderr on stdout and returns its exit status.
# Start background waiters with "$VBOXCONTROL" itself, so that $! is the program's pid.
prop() {
    "$VBOXCONTROL" --nologo guestproperty "$@" 2>&1
}

# Fails the step unless `guestproperty get NAME` prints exactly `Value: VALUE`.
expect_value() {
    out=$(prop get "$1")
    status=$?
    [ "$status" -eq 0 ] || fail "get $1 exited $status: $(one_line "$out")"
    [ "$out" = "Value: $2" ] || fail "get $1 printed '$(one_line "$out")', expected 'Value: $2'"
}

# Fails the step unless `guestproperty get NAME` reports a missing property (exit 1, "No value set!").
expect_missing() {
    out=$(prop get "$1")
    status=$?
    [ "$status" -eq 1 ] && [ "$out" = "No value set!" ] ||
        fail "get $1 of a missing property exited $status: $(one_line "$out")"
}

# Sets NAME to VALUE, failing the step if vboxcontrol does.
must_set() {
    out=$(prop set "$@") || fail "set $*: $(one_line "$out")"
}

# The timestamp (ns) of an existing property.
timestamp_of() {
    prop get "$1" --verbose | sed -n 's/^Timestamp: \([0-9]*\) ns$/\1/p'
}

# Records a change and prints its timestamp. A wait started from it returns the next matching change
# whether that comes before or after the waiter reaches the host, so no step depends on timing.
baseline() {
    prop set /Test/Baseline "$$" >/dev/null || return 1
    timestamp_of /Test/Baseline
}

# The interrupt count of the vboxguest line, summed over the CPUs.
vboxguest_interrupts() {
    grep -E '[[:space:]]vboxguest$|[[:space:]]vboxguest[, ]' /proc/interrupts |
        awk '{ n = 0; for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) n += $i; print n }'
}

# Waits up to TENTHS tenths of a second for process PID to end; returns 1 if it is still running.
wait_gone() {
    tries=0
    while [ -d "/proc/$1" ] && [ "$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" != Z ]; do
        tries=$((tries + 1))
        [ "$tries" -le "$2" ] || return 1
        sleep 0.1
    done
    return 0
}

# Waits up to 10 s until process PID sleeps (state S): blocked in the driver waiting for the host.
wait_sleeping() {
    tries=0
    until [ "$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" = S ]; do
        tries=$((tries + 1))
        [ "$tries" -le 100 ] || return 1
        sleep 0.1
    done
}

# Seconds since boot, with hundredths.
uptime_now() {
    cut -d' ' -f1 /proc/uptime
}

# Item 11: set, get and delete through /dev/vboxuser (SET_PROP_VALUE, GET_PROP, DEL_PROP).
step_guestprop_set_get() {
    require_vboxcontrol
    must_set /Test/Foo bar
    expect_value /Test/Foo bar
    must_set /Test/Foo changed --flags TRANSIENT
    out=$(prop get /Test/Foo --verbose)
    printf '%s\n' "$out" | grep -qx 'Flags: TRANSIENT' || fail "flags not stored: $(one_line "$out")"
    out=$(prop delete /Test/Foo) || fail "delete /Test/Foo: $(one_line "$out")"
    expect_missing /Test/Foo
    # `set` without a value deletes, as in VBoxControl.
    must_set /Test/Foo again
    must_set /Test/Foo
    expect_missing /Test/Foo
}

# Item 11: a value the host set before boot is readable by the guest.
step_guestprop_from_host() {
    require_vboxcontrol
    out=$(prop get "$HOST_PROPERTY")
    status=$?
    [ "$status" -eq 0 ] ||
        fail "$HOST_PROPERTY is not set (the host must pass --guest-property $HOST_PROPERTY=$HOST_VALUE): $(one_line "$out")"
    [ "$out" = "Value: $HOST_VALUE" ] || fail "get $HOST_PROPERTY printed '$(one_line "$out")'"
}

# ENUM_PROPS: the guest's own properties and the host's version information are listed.
step_guestprop_enumerate() {
    require_vboxcontrol
    must_set /Test/Enum/A 1
    must_set /Test/Enum/B 2
    out=$(prop enumerate --patterns '/Test/Enum/*')
    status=$?
    [ "$status" -eq 0 ] || fail "enumerate exited $status: $(one_line "$out")"
    count=$(printf '%s\n' "$out" | grep -c '^Name: /Test/Enum/[AB], value: [12], timestamp: [0-9]*, flags: $')
    [ "$count" -eq 2 ] || fail "enumerate listed $count of 2 properties: $(one_line "$out")"
    all=$(prop enumerate) || fail "enumerate without patterns: $(one_line "$all")"
    printf '%s\n' "$all" | grep -q '^Name: /VirtualBox/HostInfo/VBoxVer, ' ||
        fail "the host version property is not listed: $(one_line "$all")"
    note "$(printf '%s\n' "$all" | grep -c '^Name: ') properties"
}

# Item 12: a wait (GET_NOTIFICATION, completed asynchronously) wakes when another process sets a
# matching property; the completion arrives by interrupt.
step_guestprop_wait() {
    require_vboxcontrol
    after=$(baseline)
    [ -n "$after" ] || fail "no baseline timestamp"
    irqs_before=$(vboxguest_interrupts)
    "$VBOXCONTROL" --nologo guestproperty wait '/Test/Bar|/Test/Other' --timestamp "$after" --timeout 20000 \
        >/tmp/guestprop-wait.out 2>&1 &
    waiter=$!
    wait_sleeping "$waiter" || fail "the waiter never blocked"
    sleep 0.5
    kill -0 "$waiter" 2>/dev/null || fail "the wait returned before the property was set: $(one_line "$(cat /tmp/guestprop-wait.out)")"
    must_set /Test/Bar 1
    wait "$waiter"
    status=$?
    out=$(cat /tmp/guestprop-wait.out)
    [ "$status" -eq 0 ] || fail "wait exited $status: $(one_line "$out")"
    printf '%s\n' "$out" | grep -qx 'Name: /Test/Bar' || fail "wrong change: $(one_line "$out")"
    printf '%s\n' "$out" | grep -qx 'Value: 1' || fail "wrong value: $(one_line "$out")"
    irqs_after=$(vboxguest_interrupts)
    [ "${irqs_after:-0}" -gt "${irqs_before:-0}" ] ||
        fail "no vboxguest interrupt during the wait ($irqs_before before, $irqs_after after)"
    note "interrupts during the wait: $((irqs_after - irqs_before))"
}

# Item 13: a signal interrupts a blocked wait (the driver cancels the call and returns EINTR;
# SIGSTOP/SIGCONT interrupts without killing). The program reports it, and the next calls work.
step_guestprop_wait_signal() {
    require_vboxcontrol
    "$VBOXCONTROL" --nologo guestproperty wait /Test/Never >/tmp/guestprop-signal.out 2>&1 &
    waiter=$!
    wait_sleeping "$waiter" || fail "the waiter never blocked"
    sleep 0.5
    kill -STOP "$waiter"
    kill -CONT "$waiter"
    wait_gone "$waiter" 50 || fail "the wait was still blocked 5 s after SIGSTOP/SIGCONT"
    wait "$waiter"
    status=$?
    out=$(cat /tmp/guestprop-signal.out)
    [ "$status" -eq 1 ] || fail "the interrupted wait exited $status: $(one_line "$out")"
    printf '%s\n' "$out" | grep -q 'timed out or was interrupted' || fail "unexpected report: $(one_line "$out")"
    must_set /Test/Baz 1
    expect_value /Test/Baz 1
}

# Item 14: a wait with a 500 ms timeout ends after about that long (the driver cancels the call);
# --fail-on-timeout makes that exit status 2. The next calls work.
step_guestprop_wait_timeout() {
    require_vboxcontrol
    started=$(uptime_now)
    out=$(prop wait /Test/Never --timeout 500 --fail-on-timeout)
    status=$?
    ended=$(uptime_now)
    [ "$status" -eq 2 ] || fail "the timed-out wait exited $status: $(one_line "$out")"
    printf '%s\n' "$out" | grep -q 'timed out or was interrupted' || fail "unexpected report: $(one_line "$out")"
    awk -v a="$started" -v b="$ended" 'BEGIN { exit !(b - a >= 0.4 && b - a < 10) }' ||
        fail "the 500 ms wait took from $started to $ended"
    note "500 ms wait took $(awk -v a="$started" -v b="$ended" 'BEGIN { printf "%.2f", b - a }') s"
    out=$(prop wait /Test/Never --timeout 300)
    [ $? -eq 1 ] || fail "a timed-out wait without --fail-on-timeout must exit 1: $(one_line "$out")"
    must_set /Test/AfterTimeout 1
    expect_value /Test/AfterTimeout 1
}

# Item 15: a process killed while waiting goes away promptly (the driver cancels its call and the
# session close disconnects its client), and a new connection works.
step_guestprop_wait_kill() {
    require_vboxcontrol
    "$VBOXCONTROL" --nologo guestproperty wait /Test/Never >/dev/null 2>&1 &
    waiter=$!
    wait_sleeping "$waiter" || fail "the waiter never blocked"
    kill -9 "$waiter"
    wait_gone "$waiter" 20 || fail "the killed waiter was still alive 2 s after SIGKILL"
    wait "$waiter" 2>/dev/null
    must_set /Test/AfterKill 1
    expect_value /Test/AfterKill 1
}

# 100 processes wait at once, each with its own client; one set wakes them all.
step_guestprop_wait_many() {
    require_vboxcontrol
    after=$(baseline)
    [ -n "$after" ] || fail "no baseline timestamp"
    rm -rf /tmp/guestprop-many
    mkdir -p /tmp/guestprop-many
    pids=""
    i=0
    while [ "$i" -lt "$MANY_WAITERS" ]; do
        "$VBOXCONTROL" --nologo guestproperty wait /Test/Many --timestamp "$after" --timeout 40000 \
            >"/tmp/guestprop-many/$i" 2>&1 &
        pids="$pids $!"
        i=$((i + 1))
    done
    for pid in $pids; do
        wait_sleeping "$pid" || fail "waiter $pid never blocked"
    done
    sleep 1
    running=0
    for pid in $pids; do
        kill -0 "$pid" 2>/dev/null && running=$((running + 1))
    done
    note "$running of $MANY_WAITERS waits pending at the set"
    started=$(uptime_now)
    must_set /Test/Many go
    failed=0
    for pid in $pids; do
        wait "$pid" || failed=$((failed + 1))
    done
    ended=$(uptime_now)
    woken=$(grep -lx 'Value: go' /tmp/guestprop-many/* | wc -l)
    [ "$failed" -eq 0 ] && [ "$woken" -eq "$MANY_WAITERS" ] ||
        fail "$woken of $MANY_WAITERS waiters saw the change, $failed failed: $(one_line "$(cat /tmp/guestprop-many/* | grep -v -x -e 'Name: /Test/Many' -e 'Value: go' -e 'Flags: ' -e 'Timestamp: .*' | head -n 3)")"
    note "all $MANY_WAITERS waiters woke within $(awk -v a="$started" -v b="$ended" 'BEGIN { printf "%.2f", b - a }') s"
}
