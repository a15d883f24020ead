//! End-to-end tests: the guest image, the boot runner and the scripted checks in a real Linux guest.
