# Shared functions of the end-to-end guest: the report format, the step runner and helpers for steps.
# Sourced by /init, by /usr/local/bin/vmmdev-step and by every step process.
#
# Report format (one line each, on the serial console; parsed by vmmdev-e2e's `console` module):
#   @@INIT mode=<mode> kernel=<release> uptime=<seconds>    /init is running
#   @@NOTE <step> <text>                                    a fact a step wants the host to see (timings...)
#   @@STEP <step> PASS
#   @@STEP <step> FAIL <reason>
#   @@STEP <step> SKIP <reason>
#   @@BEGIN <kind> <step> ... @@END <kind> <step>           a block after a FAIL: kind is output or dmesg
#   @@DONE <passed> <failed> <skipped>                      all requested steps ran
#   @@READY <hint>                                          demo mode: the shell is starting
#
# A step is a shell function `step_<name with '-' as '_'>` in a file of steps/, registered with
# `register_steps`. It runs in its own shell process under a time limit and ends by returning normally
# (PASS), or by calling `fail REASON` or `skip REASON`; any other non-zero exit is a FAIL too.

VMMDEV_E2E_LIB=/usr/lib/vmmdev-e2e/lib.sh
VMMDEV_E2E_STEPS=/usr/lib/vmmdev-e2e/steps
STEP_STATE=/run/vmmdev-step
: "${STEP_TIMEOUT:=60}"

# Exit statuses of a step process (77 follows the automake convention for a skipped test).
STEP_EXIT_FAIL=1
STEP_EXIT_SKIP=77

REGISTERED_STEPS=""

# Prints one report line. A write interrupted by a signal fails in busybox ash instead of being restarted,
# so the line is printed again; should the lost attempt have left a prefix, the host's parser reads the
# line from its last marker.
report_line() {
    printf '%s\n' "$*" || printf '%s\n' "$*" || printf '%s\n' "$*"
}

# Reduces free text to one line without report markers, at most 300 bytes.
one_line() {
    printf '%s' "$*" | tr '\n\r\t' '   ' | sed 's/@@/@ @/g; s/  */ /g; s/^ //; s/ $//' | cut -c1-300
}

register_steps() {
    REGISTERED_STEPS="$REGISTERED_STEPS $*"
}

load_step_files() {
    for file in "$VMMDEV_E2E_STEPS"/*.sh; do
        [ -f "$file" ] && . "$file"
    done
}

step_function() {
    printf 'step_%s' "$1" | tr '-' '_'
}

# --- For steps ----------------------------------------------------------------------------------------------

fail() {
    one_line "$*" >"$STEP_STATE/reason"
    exit "$STEP_EXIT_FAIL"
}

skip() {
    one_line "$*" >"$STEP_STATE/reason"
    exit "$STEP_EXIT_SKIP"
}

# Records a fact for the host (printed as @@NOTE after the step has ended).
note() {
    one_line "$*" >>"$STEP_STATE/notes"
}

# Asks the host test's agent (vmmdev_e2e::host_agent) to do VERB with ARGS (words without spaces) and prints
# its one-line answer. Returns 1, printing the reason, if the host refused or did not answer within
# HOST_DO_TIMEOUT seconds (default 60). The request travels as the guest property /E2E/Request, the answer
# as /E2E/Reply, through vboxcontrol: the vboxguest module must be loaded.
host_do() {
    token=$(head -c 8 /proc/sys/kernel/random/uuid)
    # TRANSIENT: a request must not outlive the VMM in a --property-store, where the next agent would obey it.
    if ! out=$(vboxcontrol --nologo guestproperty set /E2E/Request "$token $*" --flags TRANSIENT 2>&1); then
        echo "cannot ask the host: $(one_line "$out")"
        return 1
    fi
    deadline=$(($(cut -d. -f1 /proc/uptime) + ${HOST_DO_TIMEOUT:-60}))
    while [ "$(cut -d. -f1 /proc/uptime)" -lt "$deadline" ]; do
        reply=$(vboxcontrol --nologo guestproperty get /E2E/Reply 2>/dev/null)
        case "$reply" in
        "Value: $token OK"*)
            reply=${reply#"Value: $token OK"}
            printf '%s\n' "${reply# }"
            return 0
            ;;
        "Value: $token ERR"*)
            reply=${reply#"Value: $token ERR"}
            printf 'host: %s\n' "${reply# }"
            return 1
            ;;
        esac
        vboxcontrol --nologo guestproperty wait /E2E/Reply --timeout 1000 >/dev/null 2>&1
    done
    echo "the host did not answer '$*' within ${HOST_DO_TIMEOUT:-60} s"
    return 1
}

# Runs a command, failing the step with its last output line if it exits non-zero.
must() {
    out=$("$@" 2>&1)
    status=$?
    printf '%s\n' "$out"
    [ "$status" -eq 0 ] || fail "$* exited $status: $(printf '%s\n' "$out" | tail -n 1)"
}

# The number of lines the kernel log has now; pass it to dmesg_since to see only what came later.
dmesg_mark() {
    dmesg | wc -l
}

dmesg_since() {
    dmesg | tail -n +"$(($1 + 1))"
}

# --- The runner ---------------------------------------------------------------------------------------------

# Runs one step in its own process under the time limit and prints its report line(s).
# Returns 0 for PASS, 1 for FAIL, 2 for SKIP.
run_step() {
    name="$1"
    fn=$(step_function "$name")
    rm -rf "$STEP_STATE"
    mkdir -p "$STEP_STATE"
    case " $REGISTERED_STEPS " in
    *" $name "*) ;;
    *)
        report_line "@@STEP $name FAIL unknown step (known:$REGISTERED_STEPS)"
        return 1
        ;;
    esac

    started=$(cut -d' ' -f1 /proc/uptime)
    timeout -s KILL "$STEP_TIMEOUT" sh -c ". '$VMMDEV_E2E_LIB'; load_step_files; $fn" \
        >"$STEP_STATE/output" 2>&1 </dev/null
    status=$?
    ended=$(cut -d' ' -f1 /proc/uptime)

    if [ -f "$STEP_STATE/notes" ]; then
        while IFS= read -r line; do
            report_line "@@NOTE $name $line"
        done <"$STEP_STATE/notes"
    fi
    reason=""
    [ -f "$STEP_STATE/reason" ] && reason=$(cat "$STEP_STATE/reason")
    case "$status" in
    0)
        report_line "@@STEP $name PASS"
        return 0
        ;;
    "$STEP_EXIT_SKIP")
        report_line "@@STEP $name SKIP ${reason:-no reason given}"
        return 2
        ;;
    "$STEP_EXIT_FAIL")
        [ -n "$reason" ] || reason="exit status 1"
        ;;
    *)
        if [ "$status" -ge 128 ] && awk -v a="$started" -v b="$ended" -v t="$STEP_TIMEOUT" 'BEGIN { exit !(b - a >= t) }'; then
            reason="timed out after $STEP_TIMEOUT s"
        elif [ "$status" -ge 128 ]; then
            reason="killed by signal $((status - 128))"
        else
            reason="exit status $status${reason:+: $reason}"
        fi
        ;;
    esac
    report_line "@@STEP $name FAIL $reason"
    report_line "@@BEGIN output $name"
    tail -n 40 "$STEP_STATE/output"
    report_line "@@END output $name"
    report_line "@@BEGIN dmesg $name"
    dmesg | tail -n 60
    report_line "@@END dmesg $name"
    return 1
}

run_steps() {
    passed=0
    failed=0
    skipped=0
    for step in "$@"; do
        run_step "$step"
        case $? in
        0) passed=$((passed + 1)) ;;
        2) skipped=$((skipped + 1)) ;;
        *) failed=$((failed + 1)) ;;
        esac
    done
    report_line "@@DONE $passed $failed $skipped"
}
