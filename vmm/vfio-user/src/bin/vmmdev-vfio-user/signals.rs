//! SIGTERM/SIGINT handling: a dedicated thread waits for them synchronously.
//!
//! [`block_termination_signals`] must run before any other thread exists, so that every thread
//! inherits the blocked mask and the signals are only ever consumed by [`spawn_waiter`]'s
//! `sigwait`. No asynchronous handler runs, so shutdown code may lock and allocate freely.

use std::io;
use std::thread;

/// Termination signals handled by the waiter.
const SIGNALS: [libc::c_int; 2] = [libc::SIGTERM, libc::SIGINT];

fn termination_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set it is given; an all-zero sigset_t is a valid
    // place for it to do so.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t; the signal numbers are valid.
    unsafe {
        libc::sigemptyset(&mut set);
        for signal in SIGNALS {
            libc::sigaddset(&mut set, signal);
        }
    }
    set
}

/// Blocks SIGTERM and SIGINT in the calling thread (and in every thread it creates later).
pub fn block_termination_signals() -> io::Result<()> {
    let set = termination_set();
    // SAFETY: `set` is initialised; a null old-set pointer is allowed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// Starts a thread that calls `on_first` at the first termination signal and exits the process
/// with status 130 at the second (a stuck shutdown can still be interrupted).
pub fn spawn_waiter(on_first: impl FnOnce(libc::c_int) + Send + 'static) -> io::Result<()> {
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let set = termination_set();
            let mut on_first = Some(on_first);
            loop {
                let mut signal: libc::c_int = 0;
                // SAFETY: `set` is initialised and `signal` is a valid place for the result.
                let rc = unsafe { libc::sigwait(&set, &mut signal) };
                if rc != 0 {
                    continue;
                }
                match on_first.take() {
                    Some(handler) => handler(signal),
                    None => {
                        log::warn!("second termination signal; exiting at once");
                        std::process::exit(130);
                    }
                }
            }
        })
        .map(drop)
}
