# Steps of the demo guest (tests/demo.sh): mount the shares the host offers, show the properties it set and
# the text on its clipboard, so the shell that follows starts with the guest additions visibly working.
#
# Kernel command line: vmmdev.mount=name[,name...]  the shares to mount at /media/sf_<name>

register_steps demo-mount demo-properties demo-clipboard

# The guest control CLI (crate vmmdev-guest-tools).
VBOXCONTROL=vboxcontrol

# Mounts every share named in vmmdev.mount= with the kernel's own vboxsf at /media/sf_<name>.
step_demo_mount() {
    require_vmmdev
    load_module vboxsf
    shares=$(tr ' ' '\n' </proc/cmdline | sed -n 's/^vmmdev\.mount=//p' | tr ',' ' ')
    [ -n "$shares" ] || skip "no vmmdev.mount= on the kernel command line"
    for share in $shares; do
        mkdir -p "/media/sf_$share"
        out=$(mount -t vboxsf "$share" "/media/sf_$share" 2>&1) || fail "mount of share '$share' failed: $(one_line "$out")"
        note "share '$share' mounted at /media/sf_$share: $(ls "/media/sf_$share" | head -n 5 | tr '\n' ' ')"
    done
}

# Prints the properties under /Demo/ and the host's version property.
step_demo_properties() {
    require_vmmdev
    command -v "$VBOXCONTROL" >/dev/null || skip "$VBOXCONTROL is not in the image"
    load_module vboxguest
    out=$("$VBOXCONTROL" guestproperty enumerate --patterns '/Demo/*|/VirtualBox/HostInfo/VBoxVer' 2>&1) ||
        fail "vboxcontrol guestproperty enumerate failed: $(one_line "$out")"
    [ -n "$out" ] || fail "the host published no /Demo/* property"
    printf '%s\n' "$out" | while IFS= read -r line; do note "$line"; done
}

# Prints the text on the host's clipboard (tests/demo.sh puts some there through the control endpoint).
step_demo_clipboard() {
    require_vmmdev
    command -v "$VBOXCONTROL" >/dev/null || skip "$VBOXCONTROL is not in the image"
    load_module vboxguest
    tries=0
    until out=$("$VBOXCONTROL" --nologo clipboard get 2>&1) && [ -n "$out" ]; do
        tries=$((tries + 1))
        [ "$tries" -lt 10 ] || fail "vboxcontrol clipboard get: $(one_line "$out")"
        sleep 1
    done
    note "host clipboard: $(one_line "$out")"
    note "try: vboxcontrol clipboard get | set (stdin) | watch; on the host: vmmdev-ctl clipboard get | set"
}
