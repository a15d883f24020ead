//! Guest-side library for the Linux /dev/vboxguest ioctl ABI.
