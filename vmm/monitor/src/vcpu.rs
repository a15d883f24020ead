//! A vCPU thread: run the guest, handle each exit, stop when the machine does.
//!
//! Port I/O goes to the [`Machine`]; a triple fault, a KVM system event or a failed entry ends the run;
//! `KVM_EXIT_INTERNAL_ERROR` is the host's instruction emulator giving up, which the thread either
//! completes with one of [`crate::emulation`]'s workarounds or reports with RIP and instruction bytes.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use kvm_bindings::{KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN};
use kvm_ioctls::{VcpuExit, VcpuFd};
use parking_lot::Mutex;
use vm_memory::{Bytes, GuestAddress};

use crate::emulation::{self, InternalError, Workaround};
use crate::exits::ExitKind;
use crate::machine::Machine;
use crate::vm::VmExit;

/// Emulation workarounds of one kind logged at info level before the rest go to debug.
const WORKAROUNDS_LOGGED: u64 = 3;

/// One vCPU's loop: run, handle the exit, repeat until the machine stops.
pub(crate) fn run_vcpu(
    mut vcpu: VcpuFd,
    id: u8,
    machine: &Machine,
    first_entry: Option<Arc<Mutex<Option<Duration>>>>,
    started: Instant,
) {
    if let Some(first) = first_entry {
        *first.lock() = Some(started.elapsed());
    }
    while !machine.stopping.load(Ordering::Acquire) {
        let exit = match vcpu.run() {
            Ok(VcpuExit::IoIn(port, data)) => {
                if data.len() <= 4 {
                    machine.pio_read(port, data);
                } else {
                    for byte in data.chunks_mut(1) {
                        machine.pio_read(port, byte);
                    }
                }
                None
            }
            Ok(VcpuExit::IoOut(port, data)) => {
                if data.len() <= 4 {
                    machine.pio_write(port, data)
                } else {
                    data.chunks(1)
                        .find_map(|byte| machine.pio_write(port, byte))
                }
            }
            Ok(VcpuExit::MmioRead(_, data)) => {
                machine.counters.count(ExitKind::Mmio);
                data.fill(0xff);
                None
            }
            Ok(VcpuExit::MmioWrite(..)) => {
                machine.counters.count(ExitKind::Mmio);
                None
            }
            Ok(VcpuExit::Shutdown) => Some(VmExit::TripleFault),
            Ok(VcpuExit::SystemEvent(kind, _)) => Some(match kind {
                KVM_SYSTEM_EVENT_RESET => VmExit::Reset,
                KVM_SYSTEM_EVENT_SHUTDOWN => VmExit::Shutdown,
                other => VmExit::Crashed(format!("vCPU {id}: system event {other}")),
            }),
            Ok(VcpuExit::InternalError) => machine.handle_internal_error(&mut vcpu, id).err(),
            Ok(VcpuExit::FailEntry(reason, cpu)) => Some(VmExit::Crashed(format!(
                "vCPU {id}: entry failed, hardware reason {reason:#x} on CPU {cpu}"
            ))),
            Ok(VcpuExit::Hlt) => {
                machine.counters.count(ExitKind::Other);
                None
            }
            Ok(other) => {
                machine.counters.count(ExitKind::Other);
                log::warn!("vCPU {id}: unexpected exit {other:?}");
                None
            }
            Err(error) if error.errno() == libc::EINTR || error.errno() == libc::EAGAIN => {
                machine.counters.count(ExitKind::Other);
                None
            }
            Err(error) => Some(VmExit::Crashed(format!(
                "vCPU {id}: KVM_RUN failed: {error}"
            ))),
        };
        if let Some(exit) = exit {
            machine.finish(exit);
        }
    }
}

impl Machine {
    /// Completes or reports an instruction KVM could not emulate; `Err` ends the run.
    fn handle_internal_error(&self, vcpu: &mut VcpuFd, id: u8) -> Result<(), VmExit> {
        self.counters.count(ExitKind::EmulationFailure);
        let error = {
            let run = vcpu.get_kvm_run();
            // SAFETY: the exit reason was KVM_EXIT_INTERNAL_ERROR, for which the kernel fills the
            // `internal` member of the union; it is plain data.
            let internal = unsafe { run.__bindgen_anon_1.internal };
            InternalError::from_exit(internal.suberror, internal.ndata, &internal.data)
        };
        let crashed = |reason: String| {
            log::error!("vCPU {id}: {reason}");
            VmExit::Crashed(reason)
        };
        let mut regs = vcpu.get_regs().map_err(|e| {
            crashed(format!(
                "internal error {error:?}; registers unreadable: {e}"
            ))
        })?;
        if error.suberror != emulation::SUBERROR_EMULATION {
            return Err(crashed(format!(
                "KVM internal error, suberror {} at RIP {:#x}, data {:x?}",
                error.suberror, regs.rip, error.data
            )));
        }
        let bytes = match &error.instruction {
            Some(bytes) => bytes.clone(),
            None => self.read_instruction(vcpu, regs.rip),
        };
        let workaround = emulation::workaround(&bytes);
        let rip = regs.rip;
        let describe = |what: &str| format!("{what} at RIP {rip:#x} ({})", emulation::hex(&bytes));
        match workaround {
            Workaround::Breakpoint => {
                self.note_workaround(0, &describe("int3: injecting #BP"));
                regs.rip += 1;
                vcpu.set_regs(&regs)
                    .map_err(|e| crashed(format!("set_regs: {e}")))?;
                let mut events = vcpu
                    .get_vcpu_events()
                    .map_err(|e| crashed(format!("get_vcpu_events: {e}")))?;
                events.exception.injected = 1;
                events.exception.nr = emulation::BREAKPOINT_VECTOR;
                events.exception.has_error_code = 0;
                events.exception.error_code = 0;
                vcpu.set_vcpu_events(&events)
                    .map_err(|e| crashed(format!("set_vcpu_events: {e}")))?;
            }
            Workaround::Skip { len } => {
                self.note_workaround(1, &describe("fwait: skipped"));
                regs.rip += len;
                vcpu.set_regs(&regs)
                    .map_err(|e| crashed(format!("set_regs: {e}")))?;
            }
            Workaround::LoadMxcsr { len, operand } => {
                let sregs = vcpu
                    .get_sregs()
                    .map_err(|e| crashed(format!("get_sregs: {e}")))?;
                let address = operand.address(
                    &emulation::register_file(&regs),
                    regs.rip + len,
                    sregs.fs.base,
                    sregs.gs.base,
                );
                let value = self
                    .read_virtual(vcpu, address, 4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .ok_or_else(|| {
                        crashed(describe(&format!(
                            "ldmxcsr: operand {address:#x} unreadable"
                        )))
                    })?;
                let mut fpu = vcpu
                    .get_fpu()
                    .map_err(|e| crashed(format!("get_fpu: {e}")))?;
                fpu.mxcsr = value;
                vcpu.set_fpu(&fpu)
                    .map_err(|e| crashed(format!("set_fpu: {e}")))?;
                regs.rip += len;
                vcpu.set_regs(&regs)
                    .map_err(|e| crashed(format!("set_regs: {e}")))?;
                self.note_workaround(2, &describe(&format!("ldmxcsr: MXCSR = {value:#x}")));
            }
            Workaround::Unsupported { hint } => {
                let mut reason = describe("KVM cannot emulate the instruction");
                if let Some(hint) = hint {
                    reason.push_str("; ");
                    reason.push_str(hint);
                }
                return Err(crashed(reason));
            }
        }
        Ok(())
    }

    fn note_workaround(&self, kind: usize, message: &str) {
        let seen = self.workarounds[kind].fetch_add(1, Ordering::Relaxed);
        if seen < WORKAROUNDS_LOGGED {
            log::info!("{message}");
        } else {
            log::debug!("{message}");
        }
    }

    /// The instruction bytes at `rip`, read through the guest's page tables (at most 15).
    fn read_instruction(&self, vcpu: &VcpuFd, rip: u64) -> Vec<u8> {
        (0..emulation::MAX_INSTRUCTION_LEN as u64)
            .map_while(|i| {
                self.read_virtual(vcpu, rip.wrapping_add(i), 1)
                    .and_then(|b| b.first().copied())
            })
            .collect()
    }

    /// Reads `len` bytes at guest-virtual `address`, page by page.
    fn read_virtual(&self, vcpu: &VcpuFd, address: u64, len: usize) -> Option<Vec<u8>> {
        let mut bytes = Vec::with_capacity(len);
        for i in 0..len as u64 {
            let virt = address.wrapping_add(i);
            let translation = vcpu.translate_gva(virt).ok()?;
            if translation.valid == 0 {
                return None;
            }
            let byte: u8 = self
                .mem
                .read_obj(GuestAddress(translation.physical_address))
                .ok()?;
            bytes.push(byte);
        }
        Some(bytes)
    }
}
