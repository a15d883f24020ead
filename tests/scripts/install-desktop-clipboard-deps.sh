#!/bin/sh
# Installs what the desktop-clipboard test of vmmdev-svc-clipboard (cargo feature `desktop`) needs:
# an X server without a screen (Xvfb) and xclip, to play the host application. The test skips,
# saying so, when they are missing; this script makes it run.
set -eu
if command -v Xvfb >/dev/null 2>&1 && command -v xclip >/dev/null 2>&1; then
    echo "Xvfb and xclip are installed"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-desktop-clipboard-deps: run as root (apt-get install xvfb xclip)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends xvfb xclip >/dev/null
echo "Xvfb and xclip installed"
