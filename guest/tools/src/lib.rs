//! Guest tools: building blocks of the guest-side programs, such as the `vboxctl-test` checker.
//!
//! - [`clipboard`]: `vboxcontrol clipboard`, the shared clipboard from the command line, and its
//!   bridge to a guest desktop clipboard.
//! - [`control`]: the `vboxcontrol` command line (VBoxControl's guest-property commands).
//! - [`echo`]: a client for the project's example HGCM service, which the end-to-end checks use
//!   as their host-side counterpart (echo, blocking wait, null call).
//! - [`service`]: the `vboxservice` daemon (guest information, shared-folder automounting).
//! - [`signal`]: interrupting a blocking ioctl with a signal, as a user would.

pub mod clipboard;
pub mod control;
pub mod echo;
pub mod service;
pub mod signal;
