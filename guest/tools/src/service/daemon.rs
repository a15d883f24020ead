//! Running the subservices together: becoming a daemon, the pid file, and stopping cleanly on
//! SIGTERM or SIGINT.
//!
//! The signals are blocked in every thread and taken synchronously by the main thread
//! (`sigtimedwait`), so no code runs in a signal handler. On a signal the main thread requests
//! the [`Shutdown`], which wakes the guest-information subservice, and cancels the automounter's
//! pending WAIT_FOR_MAPPINGS_CHANGES (CANCEL_MAPPINGS_CHANGES_WAITS, from this thread, on the
//! automounter's own connection); then it joins both. What each subservice leaves behind is
//! described in [`super::guest_info`] and [`super::automount`].

use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

use vmmdev_guest_ioctl::guest_props::GuestPropClient;
use vmmdev_guest_ioctl::{Device, GuestTransport};

use super::automount::Automounter;
use super::guest_info::{self, GuestInfoError};
use super::mappings::{MappingsClient, MappingsError};
use super::mounts::Mounter;
use super::options::{Options, Subservice};
use super::shutdown::Shutdown;

/// How often the main thread checks whether every subservice has ended by itself.
const SIGNAL_POLL: Duration = Duration::from_millis(500);

/// Why the daemon did not run, or a subservice failed.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Setting up signal handling, forking or the pid file failed.
    #[error("{what}: {source}")]
    System {
        /// What failed.
        what: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The guest-information subservice could not start.
    #[error("guest info: {0}")]
    GuestInfo(#[from] GuestInfoError),
    /// The automount subservice could not start.
    #[error("automount: {0}")]
    Automount(#[from] MappingsError),
    /// No subservice is selected or could start.
    #[error("no subservice is running")]
    NothingToRun,
}

fn system(what: &'static str) -> impl FnOnce(io::Error) -> DaemonError {
    move |source| DaemonError::System { what, source }
}

/// The signals that stop the daemon.
fn stop_signals() -> io::Result<libc::sigset_t> {
    // SAFETY: an all-zero `sigset_t` is a valid value that `sigemptyset` initialises.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, exclusively borrowed signal set.
    if unsafe { libc::sigemptyset(&mut set) } != 0 {
        return Err(io::Error::last_os_error());
    }
    for signal in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: as above; the signal numbers are valid.
        if unsafe { libc::sigaddset(&mut set, signal) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(set)
}

/// Blocks the stop signals in this thread and every thread it starts afterwards.
pub fn block_stop_signals() -> io::Result<()> {
    let set = stop_signals()?;
    // SAFETY: `set` is initialised; a null old set is allowed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// Waits up to `timeout` for a stop signal; returns it, or `None` on timeout.
fn wait_for_stop_signal(timeout: Duration) -> io::Result<Option<i32>> {
    let set = stop_signals()?;
    let timeout = libc::timespec {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(timeout.subsec_nanos()),
    };
    // SAFETY: `set` and `timeout` are valid; a null info pointer is allowed.
    let signal = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &timeout) };
    if signal >= 0 {
        return Ok(Some(signal));
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(None),
        _ => Err(error),
    }
}

/// Detaches from the terminal: forks (the parent exits 0 at once), starts a new session, moves
/// to `/` and points stdin at `/dev/null` and stdout/stderr at `/dev/kmsg` (or `/dev/null`).
/// Must run before any thread is started.
pub fn daemonize() -> Result<(), DaemonError> {
    // SAFETY: the process is still single-threaded, so the child may run arbitrary code.
    match unsafe { libc::fork() } {
        -1 => return Err(system("fork")(io::Error::last_os_error())),
        0 => {}
        // SAFETY: `_exit` ends the parent without running the child's destructors twice.
        _ => unsafe { libc::_exit(0) },
    }
    // SAFETY: no preconditions; fails only if already a group leader, which a child is not.
    if unsafe { libc::setsid() } == -1 {
        return Err(system("setsid")(io::Error::last_os_error()));
    }
    std::env::set_current_dir("/").map_err(system("chdir /"))?;
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(system("opening /dev/null"))?;
    let log = match OpenOptions::new().write(true).open("/dev/kmsg") {
        Ok(file) => {
            super::logger::to_kernel_log();
            file
        }
        Err(_) => null.try_clone().map_err(system("opening /dev/null"))?,
    };
    for (from, to) in [(&null, 0), (&log, 1), (&log, 2)] {
        // SAFETY: both descriptors are open; dup2 replaces `to` atomically.
        if unsafe { libc::dup2(from.as_raw_fd(), to) } == -1 {
            return Err(system("redirecting stdio")(io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// The pid file, removed when dropped.
#[derive(Debug)]
pub struct PidFile {
    path: std::path::PathBuf,
}

impl PidFile {
    /// Writes this process's id to `path`.
    pub fn create(path: &Path) -> Result<Self, DaemonError> {
        std::fs::write(path, format!("{}\n", std::process::id()))
            .map_err(system("writing the pid file"))?;
        Ok(Self {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_file(&self.path) {
            log::warn!("removing {}: {error}", self.path.display());
        }
    }
}

/// Runs the selected subservices on `device` until a stop signal, or until every subservice
/// has ended. The caller has blocked the stop signals ([`block_stop_signals`]) before starting
/// any thread. Returns the first start-up failure of a subservice, if any.
pub fn run<T: GuestTransport, M: Mounter + Send>(
    device: &Device<T>,
    options: &Options,
    mounter: M,
) -> Result<(), DaemonError> {
    let shutdown = Shutdown::new();
    let mut failures: Vec<DaemonError> = Vec::new();
    let mappings = if options.runs(Subservice::Automount) {
        match MappingsClient::connect(device) {
            Ok(client) => Some(client),
            Err(error) => {
                log::error!("automount: cannot start: {error}");
                failures.push(error.into());
                None
            }
        }
    } else {
        None
    };
    // The automounter reads the host's mount directory settings on its own connection.
    let props = mappings
        .as_ref()
        .and_then(|_| GuestPropClient::connect(device).ok());
    let guest_info_config = options.guest_info();
    let started_guest_info = options.runs(Subservice::GuestInfo);
    if !started_guest_info && mappings.is_none() {
        return Err(failures.pop().unwrap_or(DaemonError::NothingToRun));
    }

    std::thread::scope(|scope| {
        let guest_info = started_guest_info
            .then(|| scope.spawn(|| guest_info::run(device, &guest_info_config, &shutdown)));
        let automount = mappings.as_ref().map(|client| {
            let mut automounter = Automounter::new(options.automount(), mounter);
            let props = props.as_ref();
            let shutdown = &shutdown;
            scope.spawn(move || automounter.run(client, props, shutdown))
        });
        loop {
            match wait_for_stop_signal(SIGNAL_POLL) {
                Ok(Some(signal)) => {
                    log::info!("signal {signal}: stopping");
                    break;
                }
                Ok(None) => {}
                Err(error) => {
                    log::error!("waiting for signals failed: {error}; stopping");
                    break;
                }
            }
            let ended = guest_info.as_ref().is_none_or(|t| t.is_finished())
                && automount.as_ref().is_none_or(|t| t.is_finished());
            if ended {
                break;
            }
        }
        shutdown.request();
        if let Some(client) = &mappings {
            if let Err(error) = client.cancel_waits() {
                log::warn!("automount: cancelling the wait failed: {error}");
            }
        }
        if let Some(thread) = guest_info {
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    log::error!("guest info: {error}");
                    failures.push(error.into());
                }
                Err(_) => log::error!("guest info: the subservice panicked"),
            }
        }
        if let Some(thread) = automount {
            if thread.join().is_err() {
                log::error!("automount: the subservice panicked");
            }
        }
    });
    match failures.into_iter().next() {
        Some(failure) => Err(failure),
        None => Ok(()),
    }
}
