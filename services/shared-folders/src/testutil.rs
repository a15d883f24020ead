//! Helpers for the unit tests: a self-removing temporary directory and deterministic random
//! byte strings for hostile-input loops.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A directory under the system temporary directory, removed with its contents on drop.
pub(crate) struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub(crate) fn new() -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let unique = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("vmmdev-sf-unit-{}-{unique}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create temporary directory");
        TempDir { path }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Deterministic pseudo-random byte strings (xorshift), for feeding parsers garbage.
pub(crate) fn random_inputs(count: usize, max_len: usize) -> impl Iterator<Item = Vec<u8>> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..count).map(move |_| {
        let len = (next() as usize) % (max_len + 1);
        (0..len).map(|_| next() as u8).collect()
    })
}
