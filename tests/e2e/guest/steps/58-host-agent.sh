# The host agent (vmmdev_e2e::host_agent): a guest step can ask the host test to act while it runs. Later
# steps rely on it; this one checks the round trip once, so that a broken channel fails here, by name.

register_steps host-agent

step_host_agent() {
    require_vmmdev
    command -v vboxcontrol >/dev/null || skip "vboxcontrol is not in the image"
    load_module vboxguest
    answer=$(host_do ping) || fail "host_do ping: $answer"
    [ "$answer" = pong ] || fail "host_do ping answered '$answer', expected 'pong'"
    answer=$(host_do no-such-verb) && fail "an unknown verb was answered: '$answer'"
    case "$answer" in
    *"no verb 'no-such-verb'"*) ;;
    *) fail "an unknown verb gave '$answer'" ;;
    esac
}
