//! A vCPU thread: run the guest, handle each exit, stop when the machine does.
//!
//! Port I/O goes to the [`Machine`]; a triple fault, a KVM system event or a failed entry ends the run;
//! `KVM_EXIT_INTERNAL_ERROR` is the host's instruction emulator giving up, which the thread either
//! completes with one of [`crate::emulation`]'s workarounds or reports with RIP and instruction bytes.
//! Where the machine has a [`crate::syscall_bridge`], the thread arms it once the guest is ready and
//! completes the page faults it turns into exits.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use kvm_bindings::{
    KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN, Msrs, kvm_msr_entry, kvm_regs,
};
use kvm_ioctls::{VcpuExit, VcpuFd};
use parking_lot::Mutex;
use vm_memory::{Bytes, GuestAddress};

use crate::emulation::{self, InternalError, MemoryOperand, Workaround};
use crate::exits::ExitKind;
use crate::machine::Machine;
use crate::page_walk::{self, Access, Paging, WalkError};
use crate::syscall_bridge::{
    self, Bridge, FAULT_FRAME_LEN, FaultFrame, Hook, INT3, MSR_LSTAR, MSR_STAR, PAGE_FAULT_VECTOR,
};
use crate::vm::VmExit;
use crate::xsave::{self, StateFault};

/// Emulation workarounds of one kind logged at info level before the rest go to debug.
const WORKAROUNDS_LOGGED: u64 = 3;
/// EFER.LMA: the vCPU is in long mode.
const EFER_LMA: u64 = 1 << 10;
/// CR4.OSXSAVE: the guest enabled XSAVE and XCR0.
const CR4_OSXSAVE: u64 = 1 << 18;
/// The guest's page size.
const PAGE: u64 = 4096;
/// Bytes of a 64-bit IDT gate, and its present bit (in byte 5).
const IDT_GATE_LEN: u64 = 16;
const IDT_GATE_PRESENT: u8 = 0x80;

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
        if let Some(bridge) = &machine.syscall_bridge {
            if !bridge.settled() {
                machine.try_arm_syscall_bridge(&vcpu, bridge);
            }
        }
    }
}

/// Injects exception `vector` (with `error_code` where it has one) at the vCPU's next entry.
fn inject_exception(vcpu: &VcpuFd, vector: u8, error_code: Option<u32>) -> Result<(), String> {
    let mut events = vcpu
        .get_vcpu_events()
        .map_err(|e| format!("get_vcpu_events: {e}"))?;
    events.exception.injected = 1;
    events.exception.nr = vector;
    events.exception.has_error_code = u8::from(error_code.is_some());
    events.exception.error_code = error_code.unwrap_or(0);
    vcpu.set_vcpu_events(&events)
        .map_err(|e| format!("set_vcpu_events: {e}"))
}

/// The vCPU's XCR0.
fn read_xcr0(vcpu: &VcpuFd) -> Result<u64, String> {
    let xcrs = vcpu.get_xcrs().map_err(|e| format!("get_xcrs: {e}"))?;
    xcrs.xcrs
        .iter()
        .take(xcrs.nr_xcrs as usize)
        .find(|xcr| xcr.xcr == 0)
        .map(|xcr| xcr.value)
        .ok_or_else(|| "KVM reports no XCR0".to_string())
}

/// Reads one MSR of `vcpu`.
fn read_msr(vcpu: &VcpuFd, index: u32) -> Option<u64> {
    let mut msrs = Msrs::from_entries(&[kvm_msr_entry {
        index,
        ..kvm_msr_entry::default()
    }])
    .ok()?;
    match vcpu.get_msrs(&mut msrs) {
        Ok(1) => msrs.as_slice().first().map(|entry| entry.data),
        _ => None,
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
        if let Some(hook) = self.syscall_bridge.as_ref().and_then(Bridge::hook) {
            if regs.rip == hook.handler {
                return self.complete_page_fault(vcpu, regs, hook).map_err(crashed);
            }
        }
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
                regs.rip = regs.rip.wrapping_add(1);
                vcpu.set_regs(&regs)
                    .map_err(|e| crashed(format!("set_regs: {e}")))?;
                inject_exception(vcpu, emulation::BREAKPOINT_VECTOR, None).map_err(crashed)?;
            }
            Workaround::ExtendedState { len, operand, save } => {
                let outcome = self
                    .complete_extended_state(vcpu, regs, len, operand, save)
                    .map_err(|e| crashed(describe(&e)))?;
                let what = if save { "xsave" } else { "xrstor" };
                self.note_workaround(4, &describe(&format!("{what}: {outcome}")));
            }
            Workaround::Skip { len } => {
                self.note_workaround(1, &describe("fwait: skipped"));
                regs.rip = regs.rip.wrapping_add(len);
                vcpu.set_regs(&regs)
                    .map_err(|e| crashed(format!("set_regs: {e}")))?;
            }
            Workaround::LoadMxcsr { len, operand } => {
                let sregs = vcpu
                    .get_sregs()
                    .map_err(|e| crashed(format!("get_sregs: {e}")))?;
                let address = operand.address(
                    &emulation::register_file(&regs),
                    regs.rip.wrapping_add(len),
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
                regs.rip = regs.rip.wrapping_add(len);
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

    /// Arms the system-call bridge once the guest has its system-call entry and #PF gate: patches the
    /// NOP the #PF handler begins with, or gives up (logged) if it begins with anything else.
    fn try_arm_syscall_bridge(&self, vcpu: &VcpuFd, bridge: &Bridge) {
        let Ok(sregs) = vcpu.get_sregs() else {
            return;
        };
        let lstar = read_msr(vcpu, MSR_LSTAR).unwrap_or(0);
        let gate_end = (PAGE_FAULT_VECTOR + 1) * IDT_GATE_LEN - 1;
        if sregs.efer & EFER_LMA == 0 || lstar == 0 || u64::from(sregs.idt.limit) < gate_end {
            return;
        }
        let Some(guard) = bridge.begin_arming() else {
            return;
        };
        let gate_address = sregs.idt.base + PAGE_FAULT_VECTOR * IDT_GATE_LEN;
        let Some(gate) = self.read_virtual(vcpu, gate_address, IDT_GATE_LEN as usize) else {
            return;
        };
        if gate[5] & IDT_GATE_PRESENT == 0 {
            return;
        }
        let handler = u64::from(u16::from_le_bytes([gate[0], gate[1]]))
            | u64::from(u16::from_le_bytes([gate[6], gate[7]])) << 16
            | u64::from(u32::from_le_bytes([gate[8], gate[9], gate[10], gate[11]])) << 32;
        let code = self.read_virtual(vcpu, handler, 8).unwrap_or_default();
        let physical = vcpu
            .translate_gva(handler)
            .ok()
            .filter(|translation| translation.valid != 0)
            .map(|translation| translation.physical_address);
        let armed = match (syscall_bridge::nop_length(&code), physical) {
            (Some(nop_len), Some(physical)) => self
                .mem
                .write_obj(INT3, GuestAddress(physical))
                .ok()
                .map(|()| Hook { handler, nop_len }),
            _ => None,
        };
        match armed {
            Some(hook) => log::info!(
                "system-call bridge armed: the guest's #PF handler at {handler:#x} stops the vCPU ({} NOP patched); SYSCALL entry {lstar:#x}",
                hook.nop_len
            ),
            None => log::warn!(
                "system-call bridge not armed: the guest's #PF handler at {handler:#x} does not begin with a NOP ({}); ring-3 system calls will fault",
                emulation::hex(&code)
            ),
        }
        bridge.settle(guard, armed);
    }

    /// A guest page fault stopped at the bridge's `int3`: enters the system call SYSCALL left in ring 3,
    /// or continues the handler after its NOP.
    fn complete_page_fault(
        &self,
        vcpu: &VcpuFd,
        mut regs: kvm_regs,
        hook: Hook,
    ) -> Result<(), String> {
        let bytes = self
            .read_virtual(vcpu, regs.rsp, FAULT_FRAME_LEN)
            .and_then(|bytes| <[u8; FAULT_FRAME_LEN]>::try_from(bytes).ok())
            .ok_or_else(|| format!("page fault frame at {:#x} unreadable", regs.rsp))?;
        let frame = FaultFrame::from_bytes(&bytes);
        let lstar = read_msr(vcpu, MSR_LSTAR).ok_or("MSR_LSTAR unreadable")?;
        if frame.is_stranded_syscall(lstar) {
            let star = read_msr(vcpu, MSR_STAR).ok_or("MSR_STAR unreadable")?;
            let mut sregs = vcpu.get_sregs().map_err(|e| format!("get_sregs: {e}"))?;
            (sregs.cs, sregs.ss) = syscall_bridge::syscall_segments(star);
            vcpu.set_sregs(&sregs)
                .map_err(|e| format!("set_sregs: {e}"))?;
            regs.rip = lstar;
            regs.rsp = frame.rsp;
            regs.rflags = frame.rflags;
            self.note_workaround(3, "SYSCALL left in ring 3: entered MSR_LSTAR in ring 0");
        } else {
            regs.rip = regs.rip.wrapping_add(hook.nop_len);
        }
        vcpu.set_regs(&regs).map_err(|e| format!("set_regs: {e}"))
    }

    /// Completes XSAVE or XRSTOR at `operand` between the vCPU's extended state and guest memory, or
    /// raises the fault the instruction would (#UD, #GP, #PF); returns what happened, for the log.
    fn complete_extended_state(
        &self,
        vcpu: &VcpuFd,
        mut regs: kvm_regs,
        len: u64,
        operand: MemoryOperand,
        save: bool,
    ) -> Result<String, String> {
        let mut sregs = vcpu.get_sregs().map_err(|e| format!("get_sregs: {e}"))?;
        if sregs.cr4 & CR4_OSXSAVE == 0 {
            inject_exception(vcpu, emulation::INVALID_OPCODE_VECTOR, None)?;
            return Ok("#UD (CR4.OSXSAVE clear)".into());
        }
        let address = operand.address(
            &emulation::register_file(&regs),
            regs.rip.wrapping_add(len),
            sregs.fs.base,
            sregs.gs.base,
        );
        if address % xsave::AREA_ALIGN != 0 {
            inject_exception(vcpu, emulation::GENERAL_PROTECTION_VECTOR, Some(0))?;
            return Ok(format!("#GP (area {address:#x} not 64-byte aligned)"));
        }
        let xcr0 = read_xcr0(vcpu)?;
        let area_len = self
            .xsave_layout
            .area_len(xcr0)
            .map_err(|e| format!("the guest's extended state cannot be completed: {e}"))?;
        let rfbm = xcr0 & ((regs.rdx << 32) | (regs.rax & 0xffff_ffff));
        let paging = Paging {
            cr3: sregs.cr3,
            cr0: sregs.cr0,
            cr4: sregs.cr4,
        };
        let access = Access {
            write: save,
            user: sregs.cs.selector & 3 == 3,
        };
        let mut pieces = Vec::with_capacity(2);
        let mut done = 0;
        while done < area_len {
            let virt = address.wrapping_add(done as u64);
            let chunk = (PAGE - virt % PAGE).min((area_len - done) as u64) as usize;
            match page_walk::translate(&self.mem, paging, virt, access) {
                Ok(physical) => pieces.push((physical, done, chunk)),
                Err(WalkError::PageFault { error_code }) => {
                    sregs.cr2 = virt;
                    vcpu.set_sregs(&sregs)
                        .map_err(|e| format!("set_sregs: {e}"))?;
                    inject_exception(vcpu, PAGE_FAULT_VECTOR as u8, Some(error_code))?;
                    return Ok(format!("#PF at {virt:#x}, error code {error_code:#x}"));
                }
                Err(WalkError::NonCanonical) => {
                    inject_exception(vcpu, emulation::GENERAL_PROTECTION_VECTOR, Some(0))?;
                    return Ok(format!("#GP (area {address:#x} not canonical)"));
                }
                Err(error @ WalkError::Unwalkable) => {
                    return Err(format!("area {virt:#x}: {error}"));
                }
            }
            done += chunk;
        }
        let mut area = vec![0u8; area_len];
        for &(physical, offset, chunk) in &pieces {
            self.mem
                .read_slice(&mut area[offset..offset + chunk], GuestAddress(physical))
                .map_err(|e| format!("area at {physical:#x}: {e}"))?;
        }
        let mut state = vcpu.get_xsave().map_err(|e| format!("get_xsave: {e}"))?;
        let mut image: Vec<u8> = state.region.iter().flat_map(|w| w.to_le_bytes()).collect();
        if save {
            xsave::save(&self.xsave_layout, &image, rfbm, &mut area);
            for &(physical, offset, chunk) in &pieces {
                self.mem
                    .write_slice(&area[offset..offset + chunk], GuestAddress(physical))
                    .map_err(|e| format!("area at {physical:#x}: {e}"))?;
            }
        } else {
            if xsave::compacted(&area) {
                return Err(format!(
                    "the guest restores the compacted format; {}",
                    xsave::KERNEL_PARAMETER_HINT
                ));
            }
            if let Err(StateFault::GeneralProtection) =
                xsave::restore(&self.xsave_layout, &mut image, rfbm, xcr0, &area)
            {
                inject_exception(vcpu, emulation::GENERAL_PROTECTION_VECTOR, Some(0))?;
                return Ok(format!("#GP (invalid area at {address:#x})"));
            }
            for (word, bytes) in state.region.iter_mut().zip(image.chunks_exact(4)) {
                *word = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
            }
            // SAFETY: `state` is a whole `kvm_xsave` read from this vCPU, changed only in components of
            // the guest's XCR0, whose standard-format image `area_len` checked to end inside the
            // 4096-byte region; XSTATE_BV names no other component, so the kernel reads nothing past the
            // struct.
            unsafe { vcpu.set_xsave(&state) }.map_err(|e| format!("set_xsave: {e}"))?;
        }
        regs.rip = regs.rip.wrapping_add(len);
        vcpu.set_regs(&regs).map_err(|e| format!("set_regs: {e}"))?;
        Ok(format!(
            "completed, area {address:#x}, components {rfbm:#x}"
        ))
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

    /// Reads `len` bytes at guest-virtual `address`, translating once per page.
    fn read_virtual(&self, vcpu: &VcpuFd, address: u64, len: usize) -> Option<Vec<u8>> {
        let mut bytes = vec![0u8; len];
        let mut done = 0;
        while done < len {
            let virt = address.wrapping_add(done as u64);
            let chunk = usize::try_from(PAGE - virt % PAGE)
                .unwrap_or(usize::MAX)
                .min(len - done);
            let translation = vcpu.translate_gva(virt).ok()?;
            if translation.valid == 0 {
                return None;
            }
            let target = bytes.get_mut(done..done + chunk)?;
            self.mem
                .read_slice(target, GuestAddress(translation.physical_address))
                .ok()?;
            done += chunk;
        }
        Some(bytes)
    }
}
