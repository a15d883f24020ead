//! An in-process guest that drives the VMMDev device the way the Linux driver does, without KVM.
