//! Ring-3 system calls on a host whose KVM leaves SYSCALL in ring 3 (PVM's native mode, [`crate::host`]).
//!
//! There, SYSCALL from guest user space loads RCX, R11, the SFMASK-masked RFLAGS and RIP = `MSR_LSTAR`
//! but keeps the user's CS, so the kernel's entry point (supervisor-only) faults with #PF at its first
//! byte. That fault is delivered correctly, through the IDT into ring 0. The monitor turns it into the
//! system call the guest asked for:
//!
//! * once the guest has set `MSR_LSTAR` and its #PF gate, and the handler begins with a NOP (Linux's entry
//!   begins with the padding of its CLAC alternative when SMAP is off), the monitor replaces the NOP's
//!   first byte with `int3`. The host's emulator cannot run `int3`, so every guest page fault stops the
//!   vCPU with an emulation failure at the handler;
//! * if the fault's frame says "ring 3, at `MSR_LSTAR`", the monitor drops the frame and enters
//!   `MSR_LSTAR` in ring 0 as SYSCALL would have: RSP and RFLAGS from the frame (the user's stack and the
//!   flags SYSCALL already masked), CS and SS from `MSR_STAR`, every other register untouched (RCX and
//!   R11 hold what SYSCALL put there). The kernel's `sysretq` back to ring 3 works on such a host;
//! * any other page fault continues in the handler after the NOP.
//!
//! That costs one exit per guest page fault, beside the thousands of emulated instructions of the
//! handler itself. Nothing is patched on hardware KVM.

use std::sync::atomic::{AtomicBool, Ordering};

use kvm_bindings::kvm_segment;
use parking_lot::{Mutex, MutexGuard};

/// `MSR_STAR` (SYSCALL's segments) and `MSR_LSTAR` (its 64-bit entry point).
pub const MSR_STAR: u32 = 0xc000_0081;
/// See [`MSR_STAR`].
pub const MSR_LSTAR: u32 = 0xc000_0082;
/// The exception vector of page faults.
pub const PAGE_FAULT_VECTOR: u64 = 14;
/// `int3`, written over the first byte of the #PF handler's NOP.
pub const INT3: u8 = 0xcc;
/// Bytes of the frame the CPU pushes for a fault with an error code: error code, RIP, CS, RFLAGS, RSP,
/// SS.
pub const FAULT_FRAME_LEN: usize = 48;

/// The patched #PF handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hook {
    /// The handler's guest-virtual address (where the vCPU stops).
    pub handler: u64,
    /// The length of the NOP whose first byte is now `int3` (skipped to continue the handler).
    pub nop_len: u64,
}

/// The bridge as the vCPUs share it: not yet armed, armed with a [`Hook`], or given up.
#[derive(Debug, Default)]
pub struct Bridge {
    settled: AtomicBool,
    hook: Mutex<Option<Hook>>,
}

impl Bridge {
    /// Whether arming is over (armed or given up): the vCPUs stop trying.
    pub fn settled(&self) -> bool {
        self.settled.load(Ordering::Acquire)
    }

    /// The hook, once armed.
    pub fn hook(&self) -> Option<Hook> {
        *self.hook.lock()
    }

    /// Serializes arming between vCPUs; `None` when it is already settled.
    pub fn begin_arming(&self) -> Option<MutexGuard<'_, Option<Hook>>> {
        let guard = self.hook.lock();
        (!self.settled()).then_some(guard)
    }

    /// Ends arming, with the hook or without one.
    pub fn settle(&self, mut guard: MutexGuard<'_, Option<Hook>>, hook: Option<Hook>) {
        *guard = hook;
        self.settled.store(true, Ordering::Release);
    }
}

/// The length of the NOP at the start of `bytes`, for the forms compilers and the kernel's alternatives
/// emit (one-byte NOP, `0f 1f /0` long NOPs with an optional `66` prefix, `endbr64`); `None` otherwise.
pub fn nop_length(bytes: &[u8]) -> Option<u64> {
    const FORMS: &[&[u8]] = &[
        &[0x90],
        &[0x66, 0x90],
        &[0x0f, 0x1f, 0x00],
        &[0x0f, 0x1f, 0x40, 0x00],
        &[0x0f, 0x1f, 0x44, 0x00, 0x00],
        &[0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00],
        &[0x0f, 0x1f, 0x80, 0x00, 0x00, 0x00, 0x00],
        &[0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00],
        &[0xf3, 0x0f, 0x1e, 0xfa],
    ];
    // The longest matching form: `66 90` must not be taken for a prefix of something longer.
    FORMS
        .iter()
        .filter(|form| bytes.starts_with(form))
        .map(|form| form.len() as u64)
        .max()
}

/// The parts of a fault frame the bridge reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultFrame {
    /// Where the fault happened.
    pub rip: u64,
    /// The code segment selector at the fault.
    pub cs: u64,
    /// RFLAGS at the fault.
    pub rflags: u64,
    /// The stack pointer at the fault.
    pub rsp: u64,
}

impl FaultFrame {
    /// Decodes the frame of a fault with an error code (the bytes at RSP when the handler starts).
    pub fn from_bytes(bytes: &[u8; FAULT_FRAME_LEN]) -> Self {
        let word = |index: usize| {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(&bytes[index * 8..index * 8 + 8]);
            u64::from_le_bytes(raw)
        };
        FaultFrame {
            rip: word(1),
            cs: word(2),
            rflags: word(3),
            rsp: word(4),
        }
    }

    /// Whether this is the fault of a SYSCALL left in ring 3: user mode, at the system-call entry.
    pub fn is_stranded_syscall(&self, lstar: u64) -> bool {
        self.cs & 3 == 3 && self.rip == lstar
    }
}

/// The ring-0 code and stack segments SYSCALL loads from `MSR_STAR` (bits 47:32: kernel CS; SS follows).
pub fn syscall_segments(star: u64) -> (kvm_segment, kvm_segment) {
    let selector = ((star >> 32) & 0xfffc) as u16;
    let flat = kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        present: 1,
        dpl: 0,
        s: 1,
        g: 1,
        ..kvm_segment::default()
    };
    let code = kvm_segment {
        selector,
        type_: 0xb,
        l: 1,
        ..flat
    };
    let stack = kvm_segment {
        selector: selector + 8,
        type_: 0x3,
        db: 1,
        ..flat
    };
    (code, stack)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_settles_once_and_keeps_its_hook() {
        let bridge = Bridge::default();
        let hook = Hook {
            handler: 0xffff_ffff_8140_0b00,
            nop_len: 3,
        };
        let guard = bridge.begin_arming().unwrap();
        bridge.settle(guard, Some(hook));
        assert!(bridge.settled());
        assert_eq!(bridge.hook(), Some(hook));
        assert!(bridge.begin_arming().is_none());
    }

    #[test]
    fn linux_entry_padding_is_recognised_before_and_after_nop_optimisation() {
        assert_eq!(nop_length(&[0x90, 0x90, 0x90, 0xfc]), Some(1));
        assert_eq!(nop_length(&[0x0f, 0x1f, 0x00, 0xfc]), Some(3));
    }

    #[test]
    fn longest_nop_form_wins() {
        assert_eq!(
            nop_length(&[0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00, 0xfc]),
            Some(6)
        );
        assert_eq!(nop_length(&[0x66, 0x90]), Some(2));
    }

    #[test]
    fn handler_that_begins_with_real_work_is_not_patched() {
        assert_eq!(nop_length(&[0x6a, 0x0e]), None);
        assert_eq!(nop_length(&[0xfc, 0x90]), None);
        assert_eq!(nop_length(&[]), None);
    }

    fn frame(rip: u64, cs: u64) -> [u8; FAULT_FRAME_LEN] {
        let mut bytes = [0u8; FAULT_FRAME_LEN];
        for (index, word) in [0x15, rip, cs, 0x10002, 0x7fff_0000, 0x2b]
            .iter()
            .enumerate()
        {
            bytes[index * 8..index * 8 + 8].copy_from_slice(&word.to_le_bytes());
        }
        bytes
    }

    #[test]
    fn frame_words_follow_the_error_code() {
        let decoded = FaultFrame::from_bytes(&frame(0xffff_ffff_8140_0040, 0x33));
        assert_eq!(
            decoded,
            FaultFrame {
                rip: 0xffff_ffff_8140_0040,
                cs: 0x33,
                rflags: 0x10002,
                rsp: 0x7fff_0000,
            }
        );
    }

    #[test]
    fn user_mode_fault_at_lstar_is_a_stranded_syscall() {
        let lstar = 0xffff_ffff_8140_0040;
        assert!(FaultFrame::from_bytes(&frame(lstar, 0x33)).is_stranded_syscall(lstar));
    }

    #[test]
    fn kernel_mode_fault_at_lstar_is_an_ordinary_fault() {
        let lstar = 0xffff_ffff_8140_0040;
        assert!(!FaultFrame::from_bytes(&frame(lstar, 0x10)).is_stranded_syscall(lstar));
    }

    #[test]
    fn user_mode_fault_elsewhere_is_an_ordinary_fault() {
        let lstar = 0xffff_ffff_8140_0040;
        assert!(!FaultFrame::from_bytes(&frame(0x40_1000, 0x33)).is_stranded_syscall(lstar));
    }

    #[test]
    fn syscall_segments_come_from_star() {
        let (code, stack) = syscall_segments(0x0023_0010_0000_0000);
        assert_eq!(
            (code.selector, code.l, code.dpl, code.type_),
            (0x10, 1, 0, 0xb)
        );
        assert_eq!(
            (stack.selector, stack.db, stack.dpl, stack.type_),
            (0x18, 1, 0, 0x3)
        );
    }
}
