//! Fuzz targets for the guest-facing parsers of the host services: guest properties, shared
//! folders and the shared clipboard, driven through the real HGCM framework exactly as the
//! device hands them guest calls, plus the clipboard's format conversions.
//!
//! Each target is a function of the fuzz input here, so the same code runs under libFuzzer
//! (`fuzz_targets/`) and in `tests/replay.rs`, which replays the seed scripts of
//! [`seeds`] (and any saved corpus) on the stable toolchain in every test run. A target
//! reports a finding by panicking; under libFuzzer a panic anywhere, the service's thread
//! included, aborts the process.

pub mod clipboard;
pub mod guest_props;
pub mod script;
pub mod seeds;
pub mod session;
pub mod shared_folders;

/// A target's body: runs one fuzz input, panicking on a finding.
pub type Run = fn(&[u8]);

/// Every target: its name (as in `fuzz_targets/` and the corpus) and the function it runs.
pub const TARGETS: &[(&str, Run)] = &[
    ("guest_props", guest_props::run),
    ("shared_folders", shared_folders::run),
    ("clipboard", clipboard::run),
    ("clipboard_convert", clipboard::convert),
];
