//! `vboxservice`, the guest service daemon: what VirtualBox's VBoxService does for a Linux guest
//! that matters to a KVM host, built on the guest ioctl library.
//!
//! - [`guest_info`]: publishes the Guest Additions version, the OS identity, the network
//!   interfaces ([`net`]) and the logged-in users ([`users`]) as guest properties, rewriting
//!   only what changed ([`published`]).
//! - [`automount`]: mounts the shares the host marks for auto-mounting with the kernel's vboxsf
//!   ([`mounts`]) and follows runtime changes through the shared-folders service's mapping
//!   functions ([`mappings`]).
//! - [`daemon`]: runs both, becomes a daemon, stops cleanly on SIGTERM ([`shutdown`]);
//!   [`options`] is the command line and [`logger`] the log.

pub mod automount;
pub mod daemon;
pub mod guest_info;
pub mod logger;
pub mod mappings;
pub mod mounts;
pub mod net;
pub mod options;
pub mod published;
pub mod shutdown;
pub mod users;
