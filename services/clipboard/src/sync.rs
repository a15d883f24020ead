//! [`DesktopSync`]: keeps a clipboard backend that other programs also change (the host
//! desktop's, [`crate::desktop`]) and the guests in step, both ways, from a thread of the
//! embedder's.
//!
//! HGCM services run only when called, and a desktop clipboard tells nobody when an application
//! copies. So the sync polls, every interval:
//!
//! * **Host to guest.** [`HOST_FN_SYNC_HOST`](crate::host::HOST_FN_SYNC_HOST): if the desktop's
//!   content changed behind the service's back, the host owns the clipboard and the guests are told.
//! * **Guest to host.** [`HOST_FN_QUERY_STATE`](crate::host::HOST_FN_QUERY_STATE) with its
//!   announcement count: after each new guest announcement the sync reads every format the guest
//!   offers, which puts the data on the desktop. Desktop clipboards cannot offer data lazily, so it
//!   is fetched when the guest copies rather than when a host application pastes (VirtualBox's
//!   X11 backend waits for the paste). A refusal by the clipboard mode or a guest that does not
//!   answer costs that copy only; the sync goes on.
//!
//! Failures are logged when they start and when they stop, not on every tick.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use vmmdev_hgcm_sdk::Parm;

use crate::content::Format;
use crate::host::{ClipboardHost, HostError};

/// How long the sync waits for a guest to hand over one format of a copy.
pub const GUEST_READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs the two-way sync on its own thread until dropped.
#[derive(Debug)]
pub struct DesktopSync {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl DesktopSync {
    /// Starts syncing through `client` every `interval`.
    pub fn start<F, E>(client: ClipboardHost<F>, interval: Duration) -> std::io::Result<Self>
    where
        F: FnMut(u32, &mut [Parm]) -> Result<i32, E> + Send + 'static,
        E: std::error::Error + 'static,
    {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("clipboard-sync".into())
            .spawn(move || {
                let mut state = SyncState::new(client);
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    state.tick();
                }
            })?;
        Ok(DesktopSync {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for DesktopSync {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What the sync remembers between ticks.
struct SyncState<F> {
    client: ClipboardHost<F>,
    /// The guest announcement whose data was last fetched.
    fetched: Option<u32>,
    /// Whether the last tick failed (so the next failure is not logged again).
    failing: bool,
}

impl<F, E> SyncState<F>
where
    F: FnMut(u32, &mut [Parm]) -> Result<i32, E>,
    E: std::error::Error + 'static,
{
    fn new(client: ClipboardHost<F>) -> Self {
        SyncState {
            client,
            fetched: None,
            failing: false,
        }
    }

    fn tick(&mut self) {
        let outcome = self.exchange();
        match (&outcome, self.failing) {
            (Err(error), false) => log::warn!("shared clipboard: desktop sync failed: {error}"),
            (Ok(()), true) => log::info!("shared clipboard: desktop sync works again"),
            _ => {}
        }
        self.failing = outcome.is_err();
    }

    fn exchange(&mut self) -> Result<(), HostError<E>> {
        self.client.sync_host()?;
        let state = self.client.state()?;
        if !state.guest_owns() || self.fetched == Some(state.announcements) {
            return Ok(());
        }
        self.fetched = Some(state.announcements);
        for format in Format::ALL {
            if !state.guest_formats.contains(format.bit()) {
                continue;
            }
            if let Err(error) = self.client.read_guest(format, GUEST_READ_TIMEOUT) {
                log::info!(
                    "shared clipboard: the guest's {} did not reach the desktop: {error}",
                    format.name()
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{
        HOST_FN_FETCH_GUEST_DATA, HOST_FN_QUERY_STATE, HOST_FN_REQUEST_GUEST_DATA,
        HOST_FN_SYNC_HOST,
    };
    use crate::state::OWNER_GUEST;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use vmmdev_protocol::services::clipboard::Formats;
    use vmmdev_protocol::status::Status;

    #[derive(Debug, thiserror::Error)]
    #[error("unreachable")]
    struct Unreachable;

    /// A stand-in service: the guest owns the clipboard with `formats` after `announcements`
    /// announcements; every call is recorded.
    fn service(
        formats: Formats,
        announcements: Arc<AtomicU32>,
        calls: mpsc::Sender<(u32, u32)>,
    ) -> impl FnMut(u32, &mut [Parm]) -> Result<i32, Unreachable> + Send + 'static {
        move |function, params: &mut [Parm]| {
            let first = params.first().and_then(Parm::as_u32).unwrap_or(0);
            let _ = calls.send((function, first));
            match function {
                HOST_FN_QUERY_STATE => {
                    params[0] = Parm::U32(formats.bits());
                    params[2] = Parm::U32(OWNER_GUEST);
                    let count = announcements.load(Ordering::SeqCst);
                    params[3] = Parm::U32(count);
                }
                HOST_FN_REQUEST_GUEST_DATA => params[2] = Parm::U32(first),
                HOST_FN_FETCH_GUEST_DATA => return Ok(Status::VERR_TIMEOUT.raw()),
                _ => {}
            }
            Ok(0)
        }
    }

    #[test]
    fn each_guest_announcement_is_fetched_once_in_every_offered_format() {
        let announcements = Arc::new(AtomicU32::new(7));
        let (calls, seen) = mpsc::channel();
        let client = ClipboardHost::new(service(
            Formats::UNICODETEXT | Formats::HTML,
            announcements.clone(),
            calls,
        ));
        let mut state = SyncState::new(client);
        let requests = |seen: &mpsc::Receiver<(u32, u32)>| {
            std::iter::from_fn(|| seen.try_recv().ok())
                .filter(|(function, _)| *function == HOST_FN_REQUEST_GUEST_DATA)
                .map(|(_, format)| format)
                .collect::<Vec<_>>()
        };

        state.tick();
        assert_eq!(
            requests(&seen),
            [Formats::UNICODETEXT.bits(), Formats::HTML.bits()]
        );
        // A guest that does not answer is not a failure of the sync.
        assert!(!state.failing);
        state.tick();
        assert_eq!(
            requests(&seen),
            [0u32; 0],
            "the same copy is not fetched again"
        );
        announcements.store(8, Ordering::SeqCst);
        state.tick();
        assert_eq!(
            requests(&seen),
            [Formats::UNICODETEXT.bits(), Formats::HTML.bits()]
        );
    }

    #[test]
    fn every_tick_syncs_the_host_side_first() {
        let (calls, seen) = mpsc::channel();
        let client = ClipboardHost::new(service(Formats::NONE, Arc::default(), calls));
        let mut state = SyncState::new(client);
        state.tick();
        let functions: Vec<u32> = std::iter::from_fn(|| seen.try_recv().ok())
            .map(|(function, _)| function)
            .collect();
        assert_eq!(functions, [HOST_FN_SYNC_HOST, HOST_FN_QUERY_STATE]);
    }

    #[test]
    fn a_failing_service_is_a_failing_sync_until_it_answers_again() {
        let broken = Arc::new(AtomicBool::new(true));
        let flag = broken.clone();
        let client = ClipboardHost::new(move |_, _: &mut [Parm]| {
            if flag.load(Ordering::SeqCst) {
                Ok::<i32, Unreachable>(Status::VERR_NOT_SUPPORTED.raw())
            } else {
                Ok(0)
            }
        });
        let mut state = SyncState::new(client);
        state.tick();
        assert!(state.failing);
        broken.store(false, Ordering::SeqCst);
        state.tick();
        assert!(!state.failing);
    }

    #[test]
    fn the_thread_syncs_until_dropped() {
        let (calls, seen) = mpsc::channel();
        let client = ClipboardHost::new(service(Formats::NONE, Arc::default(), calls));
        let sync = DesktopSync::start(client, Duration::from_millis(5)).expect("thread");
        assert_eq!(
            seen.recv_timeout(Duration::from_secs(5)).map(|(f, _)| f),
            Ok(HOST_FN_SYNC_HOST)
        );
        drop(sync);
        // The thread has ended: the client it owned, with the sender in it, is gone.
        let leftover = std::iter::from_fn(|| seen.try_recv().ok()).count();
        assert!(leftover < 10_000);
        assert_eq!(seen.try_recv(), Err(mpsc::TryRecvError::Disconnected));
    }
}
