//! The reference KVM monitor: boots a Linux guest with the VMMDev device in-process.
