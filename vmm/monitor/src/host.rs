//! What the host's `/dev/kvm` is, where that changes what the monitor must do.
//!
//! On hardware virtualization (VMX/SVM) nothing here applies. On PVM in its "native" mode (kvm-vmm.md §0:
//! the `kvm_pvm` module, guest ring 3 native and guest ring 0 emulated) these were measured on this
//! project's host, with bare guests and the Linux kernel:
//!
//! * a KVM hypercall (`vmcall`/`vmmcall`) from the guest kernel never completes: the vCPU re-executes it
//!   forever, with no exit to the monitor. Linux makes hypercalls only for the paravirtual features
//!   that need one (PV IPIs, PV sched-yield, PV unhalt for its spinlocks), all of them only with more
//!   than one CPU; the first PV IPI hung a 2-vCPU boot at "Booting SMP configuration". The monitor hides
//!   those features ([`crate::cpu::KVM_FEATURES_BY_HYPERCALL`]) on such a host;
//! * `syscall` from guest ring 3 loads RCX, R11, the masked RFLAGS and RIP = `MSR_LSTAR` but stays in
//!   ring 3 (CS 0x33), so the kernel's system-call entry faults in user mode; `int 0x80` from ring 3 is
//!   skipped without a delivery. Exceptions from ring 3 (#GP, #PF, #UD) are delivered through the IDT
//!   correctly, `sysretq` and `iretq` to ring 3 work, and `KVM_SET_GUEST_DEBUG` single-steps only the
//!   emulated ring-0 code (a hardware breakpoint is accepted but never fires). The monitor completes such
//!   system calls from the fault they cause ([`crate::syscall_bridge`]);
//! * the emulator cannot run XSAVE or XRSTOR, and guest ring 3 runs with the host's XCR0 and CPUID
//!   whatever the guest kernel set: the monitor completes the kernel's XSAVE/XRSTOR for every component
//!   of its XCR0 ([`crate::xsave`]), so user space keeps its AVX and AVX-512 registers across task
//!   switches. The monitor's CPUID leaf 0xD does not reach the guest kernel there; its command line
//!   clears the compacted format (`clearcpuid=xsavec,xsaves`).

use std::path::Path;

/// Where the kernel lists loaded modules' parameters; `kvm_pvm` present means PVM serves `/dev/kvm`.
const PVM_MODULE: &str = "/sys/module/kvm_pvm";

/// The kind of KVM the host has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostKvm {
    /// Hardware-assisted KVM (or anything not known to need workarounds).
    Hardware,
    /// PVM (`kvm_pvm`): guest kernel code emulated, hypercalls and ring-3 SYSCALL broken.
    Pvm,
}

impl HostKvm {
    /// Detects the host's KVM from the loaded modules.
    pub fn detect() -> Self {
        Self::from_module_dir(Path::new(PVM_MODULE))
    }

    fn from_module_dir(pvm_module: &Path) -> Self {
        if pvm_module.is_dir() {
            HostKvm::Pvm
        } else {
            HostKvm::Hardware
        }
    }

    /// Whether the guest's KVM hypercalls complete.
    pub fn hypercalls_work(self) -> bool {
        self == HostKvm::Hardware
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_with_the_pvm_module_is_pvm() {
        let dir = std::env::temp_dir().join(format!("vmmdev-monitor-pvm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(HostKvm::from_module_dir(&dir), HostKvm::Pvm);
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn host_without_the_pvm_module_is_hardware() {
        let missing = std::env::temp_dir().join("vmmdev-monitor-no-such-module");
        assert_eq!(HostKvm::from_module_dir(&missing), HostKvm::Hardware);
    }

    #[test]
    fn hypercalls_work_only_on_hardware_kvm() {
        assert!(HostKvm::Hardware.hypercalls_work());
        assert!(!HostKvm::Pvm.hypercalls_work());
    }
}
