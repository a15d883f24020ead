# Guest properties from a guest program (linux-guest.md §7 items 11-15; issue #5 items 6-7), with `vboxcontrol`, the
# project's VBoxControl, against the host's VBoxGuestPropSvc through /dev/vboxuser.
#
# The host must serve the guest properties service (built in unless --no-default-services) and set
# /Test/FromHost=hello-from-host before the guest boots (--guest-property). The steps from
# guestprop-host-wait on ask the host test for help while they run (host_do, verbs of
# vmmdev_e2e::host_side::guestprops); guestprop-user-policy needs the host's policy rules
# (POLICY_* below), and the guestprop-persist-* steps belong to the restart test
# (tests/e2e/tests/guestprop_restart.rs), which boots twice on one property store.

register_steps guestprop-set-get guestprop-from-host guestprop-enumerate guestprop-wait \
    guestprop-wait-signal guestprop-wait-timeout guestprop-wait-kill guestprop-wait-many \
    guestprop-host-wait guestprop-host-wait-cli guestprop-wait-host-set guestprop-rdonlyguest \
    guestprop-user-policy guestprop-get-rtt guestprop-get-calls guestprop-persist-set \
    guestprop-persist-kill guestprop-persist-check

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

# Waits up to 60 s until process PID sleeps (state S): blocked in the driver waiting for the host. Where
# the host emulates guest kernel code (KVM on PVM) starting a program takes a large part of a second, and
# the last of many waiters started at once gets there only after all the others.
wait_sleeping() {
    tries=0
    until [ "$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" = S ]; do
        tries=$((tries + 1))
        [ "$tries" -le 600 ] || return 1
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
        "$VBOXCONTROL" --nologo guestproperty wait /Test/Many --timestamp "$after" --timeout 300000 \
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

# Item 6, "guest sets, host wait returns it": the host starts a wait on its control endpoint, the guest
# sets a matching property, and the host's wait reports exactly that change.
step_guestprop_host_wait() {
    require_vboxcontrol
    answer=$(host_do gp-wait-begin '/Test/Guest*') || fail "gp-wait-begin: $answer"
    must_set /Test/GuestSet "from-guest-$$"
    answer=$(host_do gp-wait-end) || fail "the host's wait: $answer"
    [ "$answer" = "/Test/GuestSet=from-guest-$$" ] ||
        fail "the host's wait saw '$answer', expected '/Test/GuestSet=from-guest-$$'"
}

# The same through the host's command line: `vmmdev-ctl guestproperty wait` against the running VM
# prints the guest's change as `VBoxManage guestproperty wait` does.
step_guestprop_host_wait_cli() {
    require_vboxcontrol
    answer=$(host_do gp-ctl-wait-begin '/Test/Cli*') || fail "gp-ctl-wait-begin: $answer"
    must_set /Test/CliSet "cli-$$"
    answer=$(host_do gp-ctl-wait-end) || fail "vmmdev-ctl guestproperty wait: $answer"
    case "$answer" in
    "Name: /Test/CliSet, value: cli-$$, flags:"*) ;;
    *) fail "vmmdev-ctl guestproperty wait printed '$answer'" ;;
    esac
}

# Item 6, "guest waits on a pattern, host sets, guest wakes": a blocked `vboxcontrol guestproperty wait`
# returns the value the host set through its control endpoint.
step_guestprop_wait_host_set() {
    require_vboxcontrol
    after=$(baseline)
    [ -n "$after" ] || fail "no baseline timestamp"
    "$VBOXCONTROL" --nologo guestproperty wait '/Test/HostSet*' --timestamp "$after" --timeout 30000 \
        >/tmp/guestprop-host-set.out 2>&1 &
    waiter=$!
    wait_sleeping "$waiter" || fail "the waiter never blocked"
    kill -0 "$waiter" 2>/dev/null ||
        fail "the wait returned before the host set anything: $(one_line "$(cat /tmp/guestprop-host-set.out)")"
    answer=$(host_do gp-set /Test/HostSet/Value "host-$$") || fail "gp-set: $answer"
    wait "$waiter"
    status=$?
    out=$(cat /tmp/guestprop-host-set.out)
    [ "$status" -eq 0 ] || fail "wait exited $status: $(one_line "$out")"
    printf '%s\n' "$out" | grep -qx 'Name: /Test/HostSet/Value' || fail "wrong change: $(one_line "$out")"
    printf '%s\n' "$out" | grep -qx "Value: host-$$" || fail "wrong value: $(one_line "$out")"
}

# Item 6, "RDONLYGUEST denies the guest's write": the host sets a property RDONLYGUEST; the guest reads
# it, and its set and delete fail as VBoxControl's do (exit 1, "Failed to ... the property value, error
# VERR_PERMISSION_DENIED")
# while the value stays the host's.
step_guestprop_rdonlyguest() {
    require_vboxcontrol
    answer=$(host_do gp-set /Test/HostOnly host-value RDONLYGUEST) || fail "gp-set: $answer"
    out=$(prop get /Test/HostOnly --verbose) || fail "get /Test/HostOnly: $(one_line "$out")"
    printf '%s\n' "$out" | grep -qx 'Flags: RDONLYGUEST' || fail "flags not shown: $(one_line "$out")"
    out=$(prop set /Test/HostOnly guest-value)
    status=$?
    [ "$status" -eq 1 ] || fail "the guest's set of a RDONLYGUEST property exited $status: $(one_line "$out")"
    printf '%s\n' "$out" | grep -q 'Failed to store the property value, error VERR_PERMISSION_DENIED' ||
        fail "the refused set printed: $(one_line "$out")"
    out=$(prop delete /Test/HostOnly)
    status=$?
    [ "$status" -eq 1 ] || fail "the guest's delete of a RDONLYGUEST property exited $status: $(one_line "$out")"
    printf '%s\n' "$out" | grep -q 'Failed to delete the property value, error VERR_PERMISSION_DENIED' ||
        fail "the refused delete printed: $(one_line "$out")"
    expect_value /Test/HostOnly host-value
}

# The prefixes the host's policy (--guest-property-policy) closes to users (user:none:) and makes read-only
# for them (user:ro:), and the property the host sets in each before boot.
POLICY_HIDDEN=/Test/Policy/Hidden/
POLICY_READ_ONLY=/Test/Policy/UserRo/

# Runs vboxcontrol as the unprivileged user nobody (uid 65534); it can reach only /dev/vboxuser.
prop_as_nobody() {
    su -s /bin/sh nobody -c "$VBOXCONTROL --nologo guestproperty $*" 2>&1
}

# Item 6, "/dev/vboxuser obeys the policy": the driver marks calls from an unprivileged process as a
# user's, and the host's rules hide one prefix from users and make another read-only for them; root
# through /dev/vboxguest keeps full access to both, and users keep it elsewhere.
step_guestprop_user_policy() {
    require_vboxcontrol
    command -v su >/dev/null || skip "su is not in the image"
    grep -q '^nobody:' /etc/passwd || echo 'nobody:x:65534:65534:nobody:/:/bin/sh' >>/etc/passwd
    grep -q '^nogroup:' /etc/group 2>/dev/null || echo 'nogroup:x:65534:' >>/etc/group
    uid=$(su -s /bin/sh nobody -c 'id -u' 2>&1)
    [ "$uid" = 65534 ] || fail "su nobody runs as '$uid'"
    # The driver sets no mode (devtmpfs makes the node 0600); a distribution's udev rule, like the one
    # VirtualBox installs, opens /dev/vboxuser to everyone. This image has no udev, so do what the rule does.
    chmod 0666 /dev/vboxuser || fail "cannot open /dev/vboxuser to users"

    # A hidden property looks missing to a user, and a user cannot create one there.
    out=$(prop_as_nobody get "${POLICY_HIDDEN}Key")
    status=$?
    [ "$status" -eq 1 ] && [ "$out" = "No value set!" ] ||
        fail "a user's get of a hidden property exited $status: $(one_line "$out")"
    out=$(prop_as_nobody set "${POLICY_HIDDEN}New" x)
    status=$?
    [ "$status" -eq 1 ] && printf '%s\n' "$out" | grep -q 'Failed to store the property value, error VERR_PERMISSION_DENIED' ||
        fail "a user's set of a hidden property exited $status: $(one_line "$out")"
    out=$(prop_as_nobody enumerate --patterns "'${POLICY_HIDDEN}*'")
    printf '%s\n' "$out" | grep -q "^Name: ${POLICY_HIDDEN}" && fail "a user's enumerate lists hidden properties: $(one_line "$out")"

    # A read-only prefix reads but refuses writes.
    out=$(prop_as_nobody get "${POLICY_READ_ONLY}Key")
    [ "$out" = "Value: user-ro" ] || fail "a user's get of a read-only property printed '$(one_line "$out")'"
    out=$(prop_as_nobody set "${POLICY_READ_ONLY}Key" changed)
    status=$?
    [ "$status" -eq 1 ] && printf '%s\n' "$out" | grep -q 'Failed to store the property value, error VERR_PERMISSION_DENIED' ||
        fail "a user's set of a read-only property exited $status: $(one_line "$out")"

    # Elsewhere a user reads and writes as VirtualBox allows.
    out=$(prop_as_nobody set /Test/Policy/Open/Key "user-$$") || fail "a user's set elsewhere: $(one_line "$out")"
    out=$(prop_as_nobody get /Test/Policy/Open/Key)
    [ "$out" = "Value: user-$$" ] || fail "a user's get elsewhere printed '$(one_line "$out")'"

    # Root through /dev/vboxguest: everything, and the values the user could not touch are unchanged.
    out=$("$VBOXCONTROL" --nologo --device /dev/vboxguest guestproperty get "${POLICY_HIDDEN}Key" 2>&1)
    [ "$out" = "Value: hidden" ] || fail "root's get of the hidden property printed '$(one_line "$out")'"
    out=$("$VBOXCONTROL" --nologo --device /dev/vboxguest guestproperty get "${POLICY_READ_ONLY}Key" 2>&1)
    [ "$out" = "Value: user-ro" ] || fail "the read-only property changed: '$(one_line "$out")'"
    out=$("$VBOXCONTROL" --nologo --device /dev/vboxguest guestproperty set "${POLICY_HIDDEN}Root" "root-$$" 2>&1) ||
        fail "root's set of a hidden property: $(one_line "$out")"
    out=$("$VBOXCONTROL" --nologo --device /dev/vboxguest guestproperty get "${POLICY_HIDDEN}Root" 2>&1)
    [ "$out" = "Value: root-$$" ] || fail "root's get after its set printed '$(one_line "$out")'"
}

# How many round trips guestprop-get-rtt times for each call.
RTT_CALLS=1000

# Item 7: the round trip of a guest-property GET from a guest user program next to the echo service's null
# call, measured the same way (one connection, calls in sequence), with the interrupts each one took.
step_guestprop_get_rtt() {
    require_vboxcontrol
    command -v vboxctl-test >/dev/null || skip "vboxctl-test is not in the image"
    irqs=$(vboxguest_interrupts)
    null=$(vboxctl-test null-calls "$RTT_CALLS" 2>&1) || fail "null-calls: $(one_line "$null")"
    irqs_null=$(($(vboxguest_interrupts) - irqs))
    irqs=$(vboxguest_interrupts)
    gets=$(vboxctl-test prop-gets "$RTT_CALLS" "$HOST_PROPERTY" 2>&1) || fail "prop-gets: $(one_line "$gets")"
    irqs_get=$(($(vboxguest_interrupts) - irqs))
    null_us=$(printf '%s\n' "$null" | sed -n 's/.*, \([0-9.]*\) us per call$/\1/p')
    get_us=$(printf '%s\n' "$gets" | sed -n 's/.*, \([0-9.]*\) us per call$/\1/p')
    [ -n "$null_us" ] && [ -n "$get_us" ] || fail "unexpected output: $(one_line "$null $gets")"
    note "$RTT_CALLS GETs of $HOST_PROPERTY: $get_us us per call, $(awk -v n="$irqs_get" -v c="$RTT_CALLS" 'BEGIN { printf "%.2f", n / c }') interrupts per call"
    note "$RTT_CALLS echo null calls: $null_us us per call, $(awk -v n="$irqs_null" -v c="$RTT_CALLS" 'BEGIN { printf "%.2f", n / c }') interrupts per call"
    note "GET / null call: $(awk -v a="$get_us" -v b="$null_us" 'BEGIN { printf "%.2f", a / b }')"
}

# GETs alone, for the vfio-user messages per GET: docs/PERFORMANCE.md subtracts the server's counts of a
# boot with only vboxguest-probe from those of a boot with this step (as hgcm-null-calls for the null call).
step_guestprop_get_calls() {
    require_vboxcontrol
    command -v vboxctl-test >/dev/null || skip "vboxctl-test is not in the image"
    irqs=$(vboxguest_interrupts)
    gets=$(vboxctl-test prop-gets "$RTT_CALLS" "$HOST_PROPERTY" 2>&1) || fail "prop-gets: $(one_line "$gets")"
    irqs=$(($(vboxguest_interrupts) - irqs))
    note "$(one_line "$gets"), $irqs interrupts"
}

# The restart check's properties: one kept across a restart of the VMM, one TRANSIENT that is not.
PERSIST_KEPT=/Test/Persist/Kept
PERSIST_TRANSIENT=/Test/Persist/Transient

# The value the restart test chose for this run (kernel parameter vmmdev.gp_token).
persist_token() {
    sed -n 's/.*vmmdev\.gp_token=\([^ ]*\).*/\1/p' /proc/cmdline
}

# Item 6, "a property survives a monitor restart", first boot: the guest writes a persistent and a
# TRANSIENT property and sees both succeed.
step_guestprop_persist_set() {
    require_vboxcontrol
    token=$(persist_token)
    [ -n "$token" ] || skip "no vmmdev.gp_token on the kernel command line (the restart test sets it)"
    must_set "$PERSIST_KEPT" "$token"
    must_set "$PERSIST_TRANSIENT" "$token" --flags TRANSIENT
    expect_value "$PERSIST_KEPT" "$token"
    note "wrote $PERSIST_KEPT=$token"
}

# First boot, after guestprop-persist-set: asks the host to kill the VMM with SIGKILL, then waits until the
# device stops answering, so the kill happens while the VM runs. The host's answer can never come back
# (the control endpoint dies with the process), so the request is made without host_do's wait. The probe
# is GET_HOST_VERSION, which the driver performs synchronously: against a dead device it fails at once,
# where an HGCM call would wait for a completion that never comes.
step_guestprop_persist_kill() {
    require_vboxcontrol
    command -v vboxctl-test >/dev/null || skip "vboxctl-test is not in the image"
    # TRANSIENT: the request must not be in the store the next VMM loads, or its agent would obey it again.
    out=$(prop set /E2E/Request "$(head -c 8 /proc/sys/kernel/random/uuid) gp-kill-vmm" --flags TRANSIENT) ||
        fail "cannot ask the host: $(one_line "$out")"
    tries=0
    while out=$(timeout -s KILL 10 vboxctl-test vmmreq-hostver user 2>&1); do
        tries=$((tries + 1))
        [ "$tries" -le 150 ] || fail "the device still answers 30 s after the kill request: $(one_line "$out")"
        sleep 0.2
    done
    note "the device stopped answering: $(one_line "$out")"
}

# Second boot, on the same property store with a fresh VMM: the persistent property is back with the
# first boot's value, the TRANSIENT one is gone.
step_guestprop_persist_check() {
    require_vboxcontrol
    token=$(persist_token)
    [ -n "$token" ] || skip "no vmmdev.gp_token on the kernel command line (the restart test sets it)"
    expect_value "$PERSIST_KEPT" "$token"
    expect_missing "$PERSIST_TRANSIENT"
    note "read $PERSIST_KEPT=$token after the restart"
}
