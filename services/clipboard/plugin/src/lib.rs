//! The shared clipboard service as a loadable plugin (libvmmdev_clipboard.so).
//!
//! This crate only exports the plugin entry point of `vmmdev_svc_clipboard`, whose library holds the
//! service: keeping the `#[no_mangle]` symbol out of the service library lets several services be
//! linked into one binary as built-ins.

vmmdev_hgcm_sdk::export_service!(entry = vmmdev_svc_clipboard::clipboard_entry);
