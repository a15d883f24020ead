# The guest service daemon `vboxservice` (crate vmmdev-guest-tools): guest information published as
# guest properties and checked by the host through its control endpoint, and shared-folder automounting
# that follows the host adding and removing shares while the guest runs.
#
# The host (tests/e2e/tests/boot_with_device.rs, verbs in tests/e2e/src/host_side/guestd.rs) offers the
# share e2e-auto with ",auto" before boot, holding auto.txt ("auto share"). The guest has no network card,
# so the daemon runs with --include-loopback and the host checks the lo entry (127.0.0.1, ::1). A utmp
# file with live USER_PROCESS records (pid 1) stands for logged-in users: e2euser, later also e2esecond.
#
# These steps run after the shared-folder steps: sf-reprobe unloads the drivers, which a running daemon
# (holding /dev/vboxguest open and shares mounted) would prevent. guestd-stop ends the daemon.

register_steps guestd-start guestd-guest-info guestd-info-update guestd-automount guestd-runtime-add \
    guestd-runtime-remove guestd-stop

GUESTD=vboxservice
GUESTD_PIDFILE=/run/vboxservice.pid
GUESTD_UTMP=/run/vboxservice-e2e.utmp
GUESTD_USER=e2euser
GUESTD_SECOND_USER=e2esecond
GUESTD_AUTO_SHARE=e2e-auto
GUESTD_LATE_SHARE=e2e-late

require_guestd() {
    require_vmmdev
    command -v "$GUESTD" >/dev/null || skip "$GUESTD is not in the image"
    command -v vboxcontrol >/dev/null || skip "vboxcontrol is not in the image"
}

# Succeeds once the shell command $2 succeeds, trying every half second for $1 seconds.
guestd_within() {
    tries=$(($1 * 2))
    while [ "$tries" -gt 0 ]; do
        eval "$2" && return 0
        sleep 0.5
        tries=$((tries - 1))
    done
    return 1
}

guestd_mounted() {
    grep -q " $1 vboxsf " /proc/mounts
}

# The guest's uptime in milliseconds.
guestd_now_ms() {
    awk '{ printf "%d", $1 * 1000 }' /proc/uptime
}

# Appends one utmp record (glibc's x86-64 struct utmpx, 384 bytes): USER_PROCESS, pid 1, line ttyS0, user $1.
guestd_add_utmp_user() {
    before=$(wc -c <"$GUESTD_UTMP")
    {
        printf '\007\000\000\000\001\000\000\000'
        printf 'ttyS0'
        head -c 27 /dev/zero
        printf 'S0\000\000'
        printf '%s' "$1"
        head -c $((32 - ${#1})) /dev/zero
        head -c $((384 - 76)) /dev/zero
    } >>"$GUESTD_UTMP"
    added=$(($(wc -c <"$GUESTD_UTMP") - before))
    [ "$added" -eq 384 ] || fail "the utmp record for $1 is $added bytes, not 384"
}

# A bad flag is one line and status 2; then the daemon starts, detaches and writes its pid file.
step_guestd_start() {
    require_guestd
    load_module vboxguest
    load_module vboxsf
    out=$("$GUESTD" --bogus 2>&1)
    status=$?
    [ "$status" -eq 2 ] || fail "a bad flag exited $status, expected 2: $(one_line "$out")"
    [ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ] || fail "a bad flag printed more than one line: $(one_line "$out")"
    ip link set lo up || fail "ip link set lo up failed"
    : >"$GUESTD_UTMP"
    guestd_add_utmp_user "$GUESTD_USER"
    rm -f "$GUESTD_PIDFILE"
    out=$("$GUESTD" --interval-ms 500 --include-loopback --utmp "$GUESTD_UTMP" --pidfile "$GUESTD_PIDFILE" 2>&1) ||
        fail "$GUESTD exited $?: $(one_line "$out")"
    guestd_within 10 '[ -s "$GUESTD_PIDFILE" ]' || fail "no pid file $GUESTD_PIDFILE after 10 s"
    pid=$(cat "$GUESTD_PIDFILE")
    [ -d "/proc/$pid" ] || fail "the daemon (pid $pid) is not running: $(dmesg | grep vboxservice | tail -n 2)"
    note "vboxservice runs as pid $pid"
}

# The host sees the version, the OS, lo with both localhost addresses and the utmp user.
step_guestd_guest_info() {
    require_guestd
    [ -s "$GUESTD_PIDFILE" ] || fail "vboxservice is not running (guestd-start)"
    release=$(uname -r)
    guestd_within 10 'answer=$(host_do guestd-info "$release" "$GUESTD_USER")' ||
        fail "the host's check: $answer"
    note "host: $answer"
    out=$(vboxcontrol --nologo guestproperty get /VirtualBox/GuestInfo/OS/Release 2>&1)
    [ "$out" = "Value: $release" ] || fail "the guest reads OS/Release as '$(one_line "$out")'"
}

# A second user logs in: the host sees both within a few rounds, and an unchanged property keeps its
# timestamp (the daemon writes only what changed).
step_guestd_info_update() {
    require_guestd
    [ -s "$GUESTD_PIDFILE" ] || fail "vboxservice is not running (guestd-start)"
    stamp=$(host_do guestd-stamp /VirtualBox/GuestInfo/Net/Count) || fail "host: $stamp"
    guestd_add_utmp_user "$GUESTD_SECOND_USER"
    release=$(uname -r)
    guestd_within 10 'answer=$(host_do guestd-info "$release" "$GUESTD_USER,$GUESTD_SECOND_USER")' ||
        fail "the host's check: $answer"
    note "host: $answer"
    later=$(host_do guestd-stamp /VirtualBox/GuestInfo/Net/Count) || fail "host: $later"
    [ "$later" = "$stamp" ] || fail "Net/Count was rewritten without a change (timestamp $stamp, then $later)"
}

# The share offered with ,auto before boot is mounted at /media/sf_<name>.
step_guestd_automount() {
    require_guestd
    point=/media/sf_$GUESTD_AUTO_SHARE
    guestd_within 15 "guestd_mounted $point" || fail "$GUESTD_AUTO_SHARE is not mounted at $point after 15 s"
    content=$(cat "$point/auto.txt" 2>&1) || fail "reading $point/auto.txt: $(one_line "$content")"
    [ "$content" = "auto share" ] || fail "$point/auto.txt holds '$(one_line "$content")'"
}

# A share the host adds with automount while the guest runs appears mounted.
step_guestd_runtime_add() {
    require_guestd
    answer=$(host_do guestd-share-add "$GUESTD_LATE_SHARE") || fail "host: $answer"
    added=$(guestd_now_ms)
    point=/media/sf_$GUESTD_LATE_SHARE
    guestd_within 15 "guestd_mounted $point" || fail "the added share is not mounted at $point after 15 s"
    note "mounted at most $(($(guestd_now_ms) - added)) ms after the host's answer reached the guest"
    content=$(cat "$point/hello.txt" 2>&1) || fail "reading $point/hello.txt: $(one_line "$content")"
    [ "$content" = "hello from $GUESTD_LATE_SHARE" ] || fail "$point/hello.txt holds '$(one_line "$content")'"
}

# A share the host removes is unmounted, its mount point removed, and the host's table lets it go.
step_guestd_runtime_remove() {
    require_guestd
    point=/media/sf_$GUESTD_LATE_SHARE
    guestd_mounted "$point" || fail "$point is not mounted (guestd-runtime-add)"
    answer=$(host_do guestd-share-remove "$GUESTD_LATE_SHARE") || fail "host: $answer"
    removed=$(guestd_now_ms)
    guestd_within 15 "! guestd_mounted $point" || fail "$point is still mounted 15 s after the removal"
    note "host: $answer; unmounted at most $(($(guestd_now_ms) - removed)) ms after the host's answer reached the guest"
    [ ! -e "$point" ] || fail "the mount point $point was left behind"
    tries=0
    until answer=$(host_do guestd-share-gone "$GUESTD_LATE_SHARE"); do
        tries=$((tries + 1))
        [ "$tries" -lt 10 ] || fail "host: $answer"
        sleep 0.5
    done
}

# SIGTERM: the daemon exits cleanly, withdraws the network and user entries, leaves the shares mounted.
step_guestd_stop() {
    require_guestd
    [ -s "$GUESTD_PIDFILE" ] || fail "vboxservice is not running (guestd-start)"
    pid=$(cat "$GUESTD_PIDFILE")
    kill -TERM "$pid" || fail "kill -TERM $pid failed"
    guestd_within 10 "[ ! -d /proc/$pid ]" || fail "the daemon still runs 10 s after SIGTERM"
    [ ! -e "$GUESTD_PIDFILE" ] || fail "the pid file was left behind"
    dmesg | grep -q "vboxservice: info: vboxservice stopped" ||
        fail "no clean stop in the kernel log: $(dmesg | grep vboxservice | tail -n 2)"
    answer=$(host_do guestd-after-stop) || fail "host: $answer"
    point=/media/sf_$GUESTD_AUTO_SHARE
    guestd_mounted "$point" || fail "$point was unmounted at the stop"
    umount "$point" || fail "umount $point failed"
}
