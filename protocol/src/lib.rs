//! Wire formats of the VMMDev device, HGCM, the Linux vboxguest ioctl ABI and the HGCM services (plain data, no I/O).
