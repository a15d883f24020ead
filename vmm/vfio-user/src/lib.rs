//! The VMMDev device served over vfio-user, for QEMU and Cloud Hypervisor.
