//! The plugin's connection to the host: a copy of the host API table that stops being used once
//! the service is unloaded, so a `Call` or `Host` that outlives the service is harmless.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use vmmdev_hgcm_abi::ffi::HostApi;

pub(crate) struct HostLink {
    api: HostApi,
    closed: AtomicBool,
    in_flight: AtomicUsize,
}

// SAFETY: the host API is specified to be callable from any thread; the struct holds only the
// copied function pointers and the opaque host context.
unsafe impl Send for HostLink {}
// SAFETY: as above; all mutable state is atomic.
unsafe impl Sync for HostLink {}

impl HostLink {
    pub(crate) fn new(api: HostApi) -> Self {
        HostLink {
            api,
            closed: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// Runs `f` with the host API unless the service was unloaded (then returns `fallback`).
    pub(crate) fn with<T>(&self, fallback: T, f: impl FnOnce(&HostApi) -> T) -> T {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let result = if self.closed.load(Ordering::SeqCst) {
            fallback
        } else {
            f(&self.api)
        };
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        result
    }

    /// Stops all further use of the host API and waits for calls already in progress.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        while self.in_flight.load(Ordering::SeqCst) != 0 {
            std::thread::yield_now();
        }
    }
}
