//! The host's own check that nothing is written into an HGCM request after the device cancelled it.
//!
//! When the guest cancels a pending HGCM call (Cancel2 naming its address, or the in-place Cancel) and
//! the device answers `VINF_SUCCESS`, the request belongs to the guest again: the device must never
//! complete it. A completion always ends by setting DONE in the request's `fu32Flags` (after writing
//! `result`), so the audit keeps, for a while after each successful cancel, a copy of the request's
//! flags and result words and compares them on every later request and at the end of the run. DONE
//! appearing where it was clear is a violation: guest memory was written after the cancel.
//!
//! The guest may reuse the memory at once (Linux frees the request right after a successful cancel).
//! A watch therefore ends when a new request is submitted over its address, and after a time window;
//! only a newly set DONE bit with every other flag bit but CANCELLED unchanged counts, as the device
//! writes it. Reuse of the freed memory changes other bits too: in a KVM session the page became a page
//! table, and a page-table entry (0x8000000001bd8045) landed on the flags and result words.

use std::time::{Duration, Instant};

use parking_lot::Mutex;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmmdev_protocol::Status;
use vmmdev_protocol::hgcm::{
    HgcmCancel2Request32, HgcmCancel2Request64, HgcmRequestFlags, HgcmRequestHeader,
};
use vmmdev_protocol::vmmdev::{RequestHeader, RequestType};
use zerocopy::FromBytes;

/// How long a cancelled request is watched.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(5);
/// Offset of `fu32Flags` (followed by `result`) in every HGCM request.
const FLAGS_OFFSET: u64 = std::mem::offset_of!(HgcmRequestHeader, flags) as u64;
/// Offset of `rc` in every request.
const RC_OFFSET: u64 = std::mem::offset_of!(RequestHeader, rc) as u64;
/// Bytes of an HGCM request header: what a new request over a watched address must cover to retire it.
const HGCM_HEADER_LEN: u64 = std::mem::size_of::<HgcmRequestHeader>() as u64;
/// The largest request the device accepts; bounds the overlap test.
const MAX_REQUEST_LEN: u64 = 1 << 20;

/// One request the device cancelled, under watch.
#[derive(Clone, Copy, Debug)]
struct Watch {
    target: u64,
    before: [u8; 8],
    until: Instant,
}

/// A write into a cancelled request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The cancelled request's address.
    pub target: u64,
    /// Its flags and result words at the cancel.
    pub before: [u8; 8],
    /// The same words when the write was seen.
    pub after: [u8; 8],
}

/// What the audit saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditReport {
    /// Successful cancels watched.
    pub cancels: u64,
    /// Writes into cancelled requests.
    pub violations: Vec<Violation>,
}

impl std::fmt::Display for AuditReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cancel-audit cancels={} violations={}",
            self.cancels,
            self.violations.len()
        )
    }
}

#[derive(Debug, Default)]
struct State {
    watches: Vec<Watch>,
    report: AuditReport,
}

/// The audit, shared by the vCPU threads.
#[derive(Debug)]
pub struct CancelAudit {
    window: Duration,
    state: Mutex<State>,
}

impl Default for CancelAudit {
    fn default() -> Self {
        Self::new(DEFAULT_WINDOW)
    }
}

impl CancelAudit {
    /// An audit that watches each cancelled request for `window`.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            state: Mutex::new(State::default()),
        }
    }

    /// Before the device processes the request at `gpa`: checks the watches, ends those the new request
    /// covers, and returns the address the request cancels, if it is a cancel.
    pub fn before_request(&self, mem: &GuestMemoryMmap, gpa: u64) -> Option<u64> {
        let mut bytes = [0u8; std::mem::size_of::<RequestHeader>()];
        mem.read_slice(&mut bytes, GuestAddress(gpa)).ok()?;
        let header = RequestHeader::read_from_bytes(&bytes).ok()?;
        let size = u64::from(header.size.get()).min(MAX_REQUEST_LEN);
        {
            let mut state = self.state.lock();
            check(&mut state, mem, Instant::now());
            state.watches.retain(|watch| {
                let covered = watch.target < gpa.saturating_add(size)
                    && gpa < watch.target.saturating_add(HGCM_HEADER_LEN);
                !covered
            });
        }
        match header.request_type() {
            RequestType::HGCM_CANCEL => Some(gpa),
            RequestType::HGCM_CANCEL2 => cancel2_target(mem, gpa, header.size.get()),
            _ => None,
        }
    }

    /// After the device processed the cancel at `gpa` for `target`: watches the target if the cancel
    /// succeeded.
    pub fn after_cancel(&self, mem: &GuestMemoryMmap, gpa: u64, target: u64) {
        let Ok(rc) = mem.read_obj::<i32>(GuestAddress(gpa + RC_OFFSET)) else {
            return;
        };
        if i32::from_le(rc) != Status::VINF_SUCCESS.raw() {
            return;
        }
        let mut before = [0u8; 8];
        if mem
            .read_slice(&mut before, GuestAddress(target.wrapping_add(FLAGS_OFFSET)))
            .is_err()
        {
            return;
        }
        let mut state = self.state.lock();
        state.report.cancels += 1;
        state.watches.push(Watch {
            target,
            before,
            until: Instant::now() + self.window,
        });
    }

    /// Checks every watch now (call at the end of the run) and returns what the audit saw.
    pub fn finish(&self, mem: &GuestMemoryMmap) -> AuditReport {
        let mut state = self.state.lock();
        check(&mut state, mem, Instant::now());
        state.report.clone()
    }
}

/// Compares the watched words with their copies; drops expired watches and records violations.
fn check(state: &mut State, mem: &GuestMemoryMmap, now: Instant) {
    let mut violations = Vec::new();
    state.watches.retain(|watch| {
        let mut after = [0u8; 8];
        if mem
            .read_slice(&mut after, GuestAddress(watch.target.wrapping_add(FLAGS_OFFSET)))
            .is_err()
        {
            return false;
        }
        if done_newly_set(&watch.before, &after) {
            log::error!(
                "guest memory written after a cancel: request at {:#x}, flags/result {:02x?} -> {:02x?}",
                watch.target,
                watch.before,
                after
            );
            violations.push(Violation {
                target: watch.target,
                before: watch.before,
                after,
            });
            return false;
        }
        now < watch.until
    });
    state.report.violations.extend(violations);
}

/// Whether `after` is what a completion makes of `before`: DONE newly set, and no flag bit changed but
/// DONE and CANCELLED (the only ones the device writes).
fn done_newly_set(before: &[u8; 8], after: &[u8; 8]) -> bool {
    let flags = |words: &[u8; 8]| u32::from_le_bytes([words[0], words[1], words[2], words[3]]);
    let done = HgcmRequestFlags::DONE.bits();
    let device_bits = done | HgcmRequestFlags::CANCELLED.bits();
    flags(before) & done == 0
        && flags(after) & done != 0
        && flags(before) & !device_bits == flags(after) & !device_bits
}

/// The request a Cancel2 at `gpa` names (28-byte 32-bit form or ≥ 32-byte 64-bit form).
fn cancel2_target(mem: &GuestMemoryMmap, gpa: u64, size: u32) -> Option<u64> {
    let size = size as usize;
    if size == std::mem::size_of::<HgcmCancel2Request32>() {
        let mut bytes = [0u8; std::mem::size_of::<HgcmCancel2Request32>()];
        mem.read_slice(&mut bytes, GuestAddress(gpa)).ok()?;
        let request = HgcmCancel2Request32::read_from_bytes(&bytes).ok()?;
        return Some(u64::from(request.phys_req_to_cancel.get()));
    }
    if size >= std::mem::size_of::<HgcmCancel2Request64>() {
        let mut bytes = [0u8; std::mem::size_of::<HgcmCancel2Request64>()];
        mem.read_slice(&mut bytes, GuestAddress(gpa)).ok()?;
        let request = HgcmCancel2Request64::read_from_bytes(&bytes).ok()?;
        return Some(request.phys_req_to_cancel.get());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmmdev_protocol::vmmdev::Requestor;
    use zerocopy::IntoBytes;

    const CALL: u64 = 0x1000;
    const CANCEL: u64 = 0x2000;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
    }

    fn write_cancel2(mem: &GuestMemoryMmap, rc: i32) {
        let header = RequestHeader::new(28, RequestType::HGCM_CANCEL2, Requestor(0));
        mem.write_slice(header.as_bytes(), GuestAddress(CANCEL))
            .unwrap();
        mem.write_obj((CALL as u32).to_le(), GuestAddress(CANCEL + 24))
            .unwrap();
        mem.write_obj(rc.to_le(), GuestAddress(CANCEL + RC_OFFSET))
            .unwrap();
    }

    fn cancel(audit: &CancelAudit, mem: &GuestMemoryMmap) {
        let target = audit.before_request(mem, CANCEL).unwrap();
        assert_eq!(target, CALL);
        audit.after_cancel(mem, CANCEL, target);
    }

    fn set_done(mem: &GuestMemoryMmap) {
        mem.write_obj(1u32.to_le(), GuestAddress(CALL + FLAGS_OFFSET))
            .unwrap();
    }

    #[test]
    fn completion_written_after_a_successful_cancel_is_a_violation() {
        let (mem, audit) = (mem(), CancelAudit::default());
        write_cancel2(&mem, 0);
        cancel(&audit, &mem);
        set_done(&mem);
        let report = audit.finish(&mem);
        assert_eq!(report.cancels, 1);
        assert_eq!(report.violations.len(), 1);
        assert_eq!(report.violations[0].target, CALL);
    }

    #[test]
    fn reuse_of_the_freed_request_that_changes_other_flag_bits_is_not_a_completion() {
        let (mem, audit) = (mem(), CancelAudit::default());
        write_cancel2(&mem, 0);
        cancel(&audit, &mem);
        // A page-table entry written over the freed request, as seen in a KVM session.
        mem.write_obj(
            0x8000_0000_01bd_8045u64.to_le(),
            GuestAddress(CALL + FLAGS_OFFSET),
        )
        .unwrap();
        let report = audit.finish(&mem);
        assert_eq!(report.cancels, 1);
        assert!(report.violations.is_empty(), "{report:?}");
    }

    #[test]
    fn untouched_cancelled_request_passes() {
        let (mem, audit) = (mem(), CancelAudit::default());
        write_cancel2(&mem, 0);
        cancel(&audit, &mem);
        assert_eq!(
            audit.finish(&mem).to_string(),
            "cancel-audit cancels=1 violations=0"
        );
    }

    #[test]
    fn failed_cancel_is_not_watched() {
        let (mem, audit) = (mem(), CancelAudit::default());
        write_cancel2(&mem, Status::VERR_NOT_FOUND.raw());
        cancel(&audit, &mem);
        set_done(&mem);
        assert_eq!(audit.finish(&mem), AuditReport::default());
    }

    #[test]
    fn new_request_over_the_address_ends_the_watch() {
        let (mem, audit) = (mem(), CancelAudit::default());
        write_cancel2(&mem, 0);
        cancel(&audit, &mem);
        let reuse = RequestHeader::new(40, RequestType::HGCM_CALL64, Requestor(0));
        mem.write_slice(reuse.as_bytes(), GuestAddress(CALL))
            .unwrap();
        assert_eq!(audit.before_request(&mem, CALL), None);
        set_done(&mem);
        assert!(audit.finish(&mem).violations.is_empty());
    }

    #[test]
    fn watch_ends_after_its_window() {
        let (mem, audit) = (mem(), CancelAudit::new(Duration::ZERO));
        write_cancel2(&mem, 0);
        cancel(&audit, &mem);
        audit.finish(&mem);
        set_done(&mem);
        assert!(audit.finish(&mem).violations.is_empty());
    }

    #[test]
    fn in_place_cancel_targets_its_own_address() {
        let mem = mem();
        let header = RequestHeader::new(52, RequestType::HGCM_CANCEL, Requestor(0));
        mem.write_slice(header.as_bytes(), GuestAddress(CALL))
            .unwrap();
        assert_eq!(
            CancelAudit::default().before_request(&mem, CALL),
            Some(CALL)
        );
    }

    #[test]
    fn cancel2_of_the_64_bit_form_is_read() {
        let mem = mem();
        let header = RequestHeader::new(32, RequestType::HGCM_CANCEL2, Requestor(0));
        mem.write_slice(header.as_bytes(), GuestAddress(CANCEL))
            .unwrap();
        mem.write_obj(0x1_2345_6000u64.to_le(), GuestAddress(CANCEL + 24))
            .unwrap();
        assert_eq!(cancel2_target(&mem, CANCEL, 32), Some(0x1_2345_6000));
        assert_eq!(cancel2_target(&mem, CANCEL, 24), None);
    }
}
