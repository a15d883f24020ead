//! Delivering a signal to the process so that a blocking ioctl ends with `EINTR`.
//!
//! The handler is installed without `SA_RESTART`, so the kernel does not transparently restart the
//! interrupted ioctl: the driver has to cancel its pending work and return `EINTR` to the caller.

use std::io;

/// Does nothing: the signal only exists to interrupt the blocked system call.
extern "C" fn ignore_signal(_signal: libc::c_int) {}

/// Installs a do-nothing handler for `SIGALRM` without `SA_RESTART` and schedules the signal in
/// `seconds` (0 cancels a pending alarm).
pub fn interrupt_after(seconds: u32) -> io::Result<()> {
    // SAFETY: an all-zero `sigaction` is a valid value (empty mask, no flags) that is completed below.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = ignore_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    action.sa_flags = 0;
    // SAFETY: `action.sa_mask` is a valid, exclusively borrowed signal set.
    if unsafe { libc::sigemptyset(&mut action.sa_mask) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `action` is fully initialised and the handler is async-signal-safe (it does nothing).
    if unsafe { libc::sigaction(libc::SIGALRM, &action, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `alarm` has no memory-safety preconditions.
    unsafe { libc::alarm(seconds) };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handler_is_installed_without_sa_restart() {
        interrupt_after(0).unwrap();
        // SAFETY: an all-zero `sigaction` is a valid out-parameter.
        let mut installed: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: a null new action only queries; `installed` is a valid, exclusive out-parameter.
        let rc = unsafe { libc::sigaction(libc::SIGALRM, std::ptr::null(), &mut installed) };
        assert_eq!(rc, 0);
        assert_eq!(installed.sa_flags & libc::SA_RESTART, 0);
        assert_ne!(installed.sa_sigaction, libc::SIG_DFL);
        assert_ne!(installed.sa_sigaction, libc::SIG_IGN);
    }
}
