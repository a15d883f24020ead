# The shared clipboard from a guest program (issue #7 item 5): `vboxcontrol clipboard` against the host's
# VBoxSharedClipboard through /dev/vboxuser, with the host test's agent (host_do, verbs of
# vmmdev_e2e::host_side::clipboard) setting and reading the host clipboard and switching the mode.
#
# The samples are the bytes vmmdev_e2e::host_side::clipboard::Sample holds: each side checks the other's
# data byte for byte. `clipboard set --background` returns once the host can read the offer and prints the
# PID of the process that serves it; steps kill their servers when they are done.
#
# clip-rtt runs the figure loops (1 KiB and 1 MiB of text both ways) and records their times as notes.

register_steps clip-host-text clip-guest-text clip-html clip-bitmap clip-watch clip-modes \
    clip-silent-guest clip-bridge-none clip-rtt

# The text sample: non-ASCII from several scripts, two lines, a trailing newline.
CLIP_TEXT='Grüße aus dem Gast und vom Host: ✓ 日本語 🦀
zweite Zeile'
# The HTML sample.
CLIP_HTML='<p>Grüße <b>fett</b> &amp; ✓</p>'
# The line of the size samples (63 characters; `yes` adds the newline).
CLIP_LINE=0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-

CLIP_DIR=/tmp/clipboard

require_clipboard() {
    require_vmmdev
    command -v vboxcontrol >/dev/null || skip "vboxcontrol is not in the image"
    load_module vboxguest
    mkdir -p "$CLIP_DIR"
    answer=$(host_do clip-mode bidirectional) || fail "clip-mode bidirectional: $answer"
}

# Runs `vboxcontrol --nologo clipboard ARGS...` with stderr on stdout.
clip() {
    vboxcontrol --nologo clipboard "$@" 2>&1
}

# Writes sample NAME (text, html, text-1k, text-1m) to stdout, as the host has it.
sample() {
    case "$1" in
    text) printf '%s\n' "$CLIP_TEXT" ;;
    html) printf '%s' "$CLIP_HTML" ;;
    text-1k) yes "$CLIP_LINE" | head -c 1024 ;;
    text-1m) yes "$CLIP_LINE" | head -c 1048576 ;;
    esac
}

# Offers FILE in FORMAT from a background server and prints its PID.
offer() {
    vboxcontrol --nologo clipboard set --format "$1" --background <"$2"
}

# Offers FILE in FORMAT, has the host read the offer and compare it with its sample of the same name, then
# stops the offer's server.
offer_to_host() {
    pid=$(offer "$1" "$2") || fail "clipboard set --format $1: $pid"
    answer=$(host_do clip-check "$1" "$1")
    status=$?
    kill "$pid" 2>/dev/null
    [ "$status" -eq 0 ] || fail "the host's read of the guest's $1: $answer"
}

# `clipboard get --format FORMAT` must print exactly the bytes of FILE.
expect_get() {
    clip get --format "$1" >"$CLIP_DIR/got" || fail "clipboard get --format $1: $(one_line "$(cat "$CLIP_DIR/got")")"
    cmp -s "$CLIP_DIR/got" "$2" ||
        fail "clipboard get --format $1 printed $(wc -c <"$CLIP_DIR/got") bytes '$(one_line "$(head -c 80 "$CLIP_DIR/got")")', expected $(wc -c <"$2")"
}

# Host sets non-ASCII text; the guest prints it byte for byte.
step_clip_host_text() {
    require_clipboard
    answer=$(host_do clip-set text) || fail "clip-set text: $answer"
    sample text >"$CLIP_DIR/text"
    expect_get text "$CLIP_DIR/text"
}

# The guest offers non-ASCII text; the host reads it from the guest, byte for byte.
step_clip_guest_text() {
    require_clipboard
    sample text >"$CLIP_DIR/text"
    offer_to_host text "$CLIP_DIR/text"
}

# HTML both ways.
step_clip_html() {
    require_clipboard
    sample html >"$CLIP_DIR/html"
    answer=$(host_do clip-set html) || fail "clip-set html: $answer"
    expect_get html "$CLIP_DIR/html"
    offer_to_host html "$CLIP_DIR/html"
}

# A bitmap from the host arrives as a BMP file of the host's size; offered back, the host gets its own
# bitmap (DIB on the wire both ways).
step_clip_bitmap() {
    require_clipboard
    size=$(host_do clip-set bitmap) || fail "clip-set bitmap: $size"
    clip get --format bitmap >"$CLIP_DIR/host.bmp" || fail "clipboard get --format bitmap: $(one_line "$(cat "$CLIP_DIR/host.bmp")")"
    [ "$(head -c 2 "$CLIP_DIR/host.bmp")" = BM ] || fail "the bitmap is not a BMP file"
    [ "$(wc -c <"$CLIP_DIR/host.bmp")" -eq "$size" ] ||
        fail "the BMP file has $(wc -c <"$CLIP_DIR/host.bmp") bytes, the host's $size"
    offer_to_host bitmap "$CLIP_DIR/host.bmp"
}

# `clipboard watch` prints the formats now, then the host's change.
step_clip_watch() {
    require_clipboard
    answer=$(host_do clip-set text) || fail "clip-set text: $answer"
    vboxcontrol --nologo clipboard watch --count 2 --timeout 30000 >"$CLIP_DIR/watch" 2>&1 &
    pid=$!
    tries=0
    until [ -s "$CLIP_DIR/watch" ]; do
        tries=$((tries + 1))
        [ "$tries" -le 100 ] || fail "watch printed nothing in 10 s"
        sleep 0.1
    done
    answer=$(host_do clip-set html) || fail "clip-set html: $answer"
    wait "$pid" || fail "watch exited $?: $(one_line "$(cat "$CLIP_DIR/watch")")"
    expected='Host clipboard: text
Host clipboard: html'
    [ "$(cat "$CLIP_DIR/watch")" = "$expected" ] || fail "watch printed '$(one_line "$(cat "$CLIP_DIR/watch")")'"
}

# Every mode blocks the direction it forbids, with the mode named in the error, and lets the other through.
step_clip_modes() {
    require_clipboard
    sample text >"$CLIP_DIR/text"

    host_do clip-set text >/dev/null || fail "clip-set text"
    answer=$(host_do clip-mode host-to-guest) || fail "clip-mode host-to-guest: $answer"
    expect_get text "$CLIP_DIR/text"
    out=$(clip set <"$CLIP_DIR/text") && fail "host-to-guest: the guest's offer was accepted"
    case "$out" in *"mode forbids"*) ;; *) fail "host-to-guest: set failed with '$(one_line "$out")'" ;; esac

    answer=$(host_do clip-mode guest-to-host) || fail "clip-mode guest-to-host: $answer"
    out=$(clip get) && fail "guest-to-host: the guest read the host clipboard: $(one_line "$out")"
    case "$out" in *"mode forbids"*) ;; *) fail "guest-to-host: get failed with '$(one_line "$out")'" ;; esac
    pid=$(offer text "$CLIP_DIR/text") || fail "guest-to-host: clipboard set: $pid"
    answer=$(host_do clip-check text text) || { kill "$pid"; fail "guest-to-host: host read: $answer"; }

    # The guest owns the clipboard now: a mode without guest-to-host keeps its data from the host.
    answer=$(host_do clip-mode host-to-guest) || { kill "$pid"; fail "clip-mode host-to-guest: $answer"; }
    answer=$(host_do clip-refused text) || { kill "$pid"; fail "host-to-guest: host read of guest data: $answer"; }

    answer=$(host_do clip-mode off) || { kill "$pid"; fail "clip-mode off: $answer"; }
    answer=$(host_do clip-refused text) || { kill "$pid"; fail "off: host read of guest data: $answer"; }
    kill "$pid" 2>/dev/null
    out=$(clip get) && fail "off: the guest read the host clipboard"
    case "$out" in *"mode forbids"*) ;; *) fail "off: get failed with '$(one_line "$out")'" ;; esac
    out=$(clip set <"$CLIP_DIR/text") && fail "off: the guest's offer was accepted"
    case "$out" in *"mode forbids"*) ;; *) fail "off: set failed with '$(one_line "$out")'" ;; esac

    answer=$(host_do clip-mode bidirectional) || fail "clip-mode bidirectional: $answer"
}

# A guest program that never answers the host's read (stopped with SIGSTOP while it owns the clipboard):
# the host's read times out within its bound, and the service, the device and the guest-property service
# keep working (host_do itself travels over guest properties).
step_clip_silent_guest() {
    require_clipboard
    sample text >"$CLIP_DIR/text"
    pid=$(offer text "$CLIP_DIR/text") || fail "clipboard set: $pid"
    kill -STOP "$pid"
    answer=$(host_do clip-timeout text 2000)
    status=$?
    kill -CONT "$pid"
    kill "$pid" 2>/dev/null
    [ "$status" -eq 0 ] || fail "the host's read of a silent guest: $answer"
    note "host read of a stopped guest: $answer"
    vboxcontrol --nologo guestproperty set /Test/Clip/After alive >/dev/null || fail "guestproperty set after the timeout"
    out=$(vboxcontrol --nologo guestproperty get /Test/Clip/After)
    [ "$out" = "Value: alive" ] || fail "guestproperty get after the timeout: $(one_line "$out")"
    answer=$(host_do clip-set text) || fail "clip-set text after the timeout: $answer"
    expect_get text "$CLIP_DIR/text"
}

# Without an X11 or Wayland session the bridge says why and fails.
step_clip_bridge_none() {
    require_clipboard
    out=$(env -u DISPLAY -u WAYLAND_DISPLAY vboxcontrol --nologo clipboard bridge 2>&1) &&
        fail "the bridge started without a desktop"
    case "$out" in
    *"no guest desktop clipboard: neither WAYLAND_DISPLAY nor DISPLAY is set"*) ;;
    *) fail "the bridge said '$(one_line "$out")'" ;;
    esac
}

# Figure loops (docs/PERFORMANCE.md, shared clipboard, real guest). Each loop is DIRECTION-SIZE: h2g
# (ROUNDS `clipboard get` of host text by the guest) or g2h (ROUNDS reads of the guest's offer by the host,
# `clipboard.get` through the control endpoint), SIZE 1k or 1m. The kernel command line picks them:
# vmmdev.clip_rtt=h2g-1k,g2h-1m (default: all four) and vmmdev.clip_rounds=N (default 3), so that the
# figure run can boot twice with different N and divide the difference of the server's message counts by
# the difference of N. The times go to the notes.
step_clip_rtt() {
    require_clipboard
    rounds=$(sed -n 's/.*vmmdev\.clip_rounds=\([0-9]*\).*/\1/p' /proc/cmdline)
    rounds=${rounds:-3}
    loops=$(sed -n 's/.*vmmdev\.clip_rtt=\([a-z0-9,-]*\).*/\1/p' /proc/cmdline | tr , ' ')
    loops=${loops:-h2g-1k g2h-1k h2g-1m g2h-1m}
    for loop in $loops; do
        size=${loop#*-}
        case "$size" in 1k | 1m) ;; *) fail "unknown loop '$loop'" ;; esac
        sample "text-$size" >"$CLIP_DIR/text-$size"
        case "$loop" in
        h2g-*)
            answer=$(host_do clip-set "text-$size") || fail "clip-set text-$size: $answer"
            started=$(uptime_hundredths)
            round=0
            while [ "$round" -lt "$rounds" ]; do
                expect_get text "$CLIP_DIR/text-$size"
                round=$((round + 1))
            done
            ended=$(uptime_hundredths)
            note "$loop: $rounds guest reads in $(((ended - started) * 10)) ms"
            ;;
        g2h-*)
            pid=$(offer text "$CLIP_DIR/text-$size") || fail "clipboard set text-$size: $pid"
            answer=$(host_do clip-read-loop text "text-$size" "$rounds")
            status=$?
            kill "$pid" 2>/dev/null
            [ "$status" -eq 0 ] || fail "$loop: $answer"
            note "$loop: $answer"
            ;;
        *) fail "unknown loop '$loop'" ;;
        esac
    done
}

# Hundredths of a second since boot.
uptime_hundredths() {
    cut -d' ' -f1 /proc/uptime | tr -d .
}
