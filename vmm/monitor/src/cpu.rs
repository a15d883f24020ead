//! The state a vCPU starts in: CPUID, MSRs, 64-bit long mode with identity paging, the FPU and the local
//! APIC's LINT pins (kvm-vmm.md §2 step 12; Linux boot protocol, 64-bit entry).
//!
//! The boot CPU enters the kernel at its 64-bit entry point with paging on (the first GiB identity
//! mapped), flat segments from a four-entry GDT, interrupts off and `rsi` pointing at the zero page. The
//! other vCPUs start the same way but are held by the in-kernel LAPIC until the kernel sends them
//! INIT/SIPI.

use kvm_bindings::{
    CpuId, KVM_MAX_CPUID_ENTRIES, Msrs, kvm_cpuid_entry2, kvm_fpu, kvm_lapic_state, kvm_msr_entry,
    kvm_regs, kvm_segment, kvm_sregs,
};
use kvm_ioctls::{Kvm, VcpuFd};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::host::HostKvm;
use crate::layout;

const MSR_IA32_TSC: u32 = 0x10;
const MSR_IA32_SYSENTER_CS: u32 = 0x174;
const MSR_IA32_SYSENTER_ESP: u32 = 0x175;
const MSR_IA32_SYSENTER_EIP: u32 = 0x176;
const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;
const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_CSTAR: u32 = 0xc000_0083;
const MSR_SYSCALL_MASK: u32 = 0xc000_0084;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
/// IA32_MISC_ENABLE: fast string operations.
const MISC_ENABLE_FAST_STRING: u64 = 1;
/// MTRRs enabled, default type write-back.
const MTRR_DEF_TYPE_WB_ENABLED: u64 = (1 << 11) | 6;

const CR0_PE: u64 = 1;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
/// Present, writable.
const PTE_PRESENT_WRITABLE: u64 = 0x3;
/// Present, writable, 2 MiB page.
const PDE_LARGE_PAGE: u64 = 0x83;

const GDT_NULL: u64 = 0;
/// 64-bit code, present, DPL 0, readable.
const GDT_CODE: u64 = descriptor(0xa09b, 0, 0xfffff);
/// Data, present, DPL 0, writable.
const GDT_DATA: u64 = descriptor(0xc093, 0, 0xfffff);
/// 64-bit TSS (busy).
const GDT_TSS: u64 = descriptor(0x808b, 0, 0xfffff);
const CODE_SELECTOR: u16 = 0x08;
const DATA_SELECTOR: u16 = 0x10;
const TSS_SELECTOR: u16 = 0x18;

/// CPUID leaf 1 ECX: TSC deadline timer, hypervisor present.
const CPUID_1_ECX_TSC_DEADLINE: u32 = 1 << 24;
const CPUID_1_ECX_HYPERVISOR: u32 = 1 << 31;
/// CPUID leaf 1 EDX: hyper-threading (more than one logical CPU per package).
const CPUID_1_EDX_HTT: u32 = 1 << 28;
/// CPUID leaf 6 ECX: performance/energy bias (not virtualised).
const CPUID_6_ECX_EPB: u32 = 1 << 3;

/// KVM's paravirtual feature leaf (EAX: `KVM_FEATURE_*` bits).
const KVM_CPUID_FEATURES: u32 = 0x4000_0001;
/// The KVM paravirtual features Linux uses through a hypercall: PV_UNHALT (bit 7, kicking a vCPU halted
/// in a PV spinlock), PV_SEND_IPI (bit 11) and PV_SCHED_YIELD (bit 13). Hidden where hypercalls do not
/// complete ([`HostKvm::hypercalls_work`]); Linux then uses the LAPIC's ICR and plain spinning.
pub const KVM_FEATURES_BY_HYPERCALL: u32 = (1 << 7) | (1 << 11) | (1 << 13);

/// LAPIC register offsets and delivery modes for LINT0/LINT1.
const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 0x4;
const APIC_MODE_EXTINT: u32 = 0x7;

/// Errors of preparing a vCPU.
#[derive(Debug, thiserror::Error)]
pub enum CpuError {
    /// A KVM ioctl failed.
    #[error("KVM refused the vCPU's {what}")]
    Kvm {
        /// Which state.
        what: &'static str,
        /// Why.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// KVM took fewer MSRs than given.
    #[error("KVM accepted {set} of {wanted} boot MSRs")]
    Msrs {
        /// Accepted.
        set: usize,
        /// Given.
        wanted: usize,
    },
    /// A fixed-size KVM list could not be built.
    #[error("cannot build the {0} list")]
    List(&'static str),
    /// The boot page tables or GDT could not be written.
    #[error("cannot write the boot page tables and GDT")]
    Memory(#[source] vm_memory::GuestMemoryError),
}

/// A GDT descriptor from flags, base and limit.
const fn descriptor(flags: u16, base: u32, limit: u32) -> u64 {
    let base = base as u64;
    let limit = limit as u64;
    let flags = flags as u64;
    ((base & 0xff00_0000) << 32)
        | ((flags & 0xf0ff) << 40)
        | ((limit & 0x000f_0000) << 32)
        | ((base & 0x00ff_ffff) << 16)
        | (limit & 0x0000_ffff)
}

/// The KVM segment a GDT descriptor describes.
fn segment(descriptor: u64, selector: u16) -> kvm_segment {
    let flags = (descriptor >> 40) & 0xf0ff;
    kvm_segment {
        base: ((descriptor >> 16) & 0x00ff_ffff) | ((descriptor >> 32) & 0xff00_0000),
        limit: (((descriptor >> 32) & 0x000f_0000) | (descriptor & 0xffff)) as u32,
        selector,
        type_: (flags & 0xf) as u8,
        present: ((flags >> 7) & 1) as u8,
        dpl: ((flags >> 5) & 3) as u8,
        db: ((flags >> 14) & 1) as u8,
        s: ((flags >> 4) & 1) as u8,
        l: ((flags >> 13) & 1) as u8,
        g: ((flags >> 15) & 1) as u8,
        avl: ((flags >> 12) & 1) as u8,
        unusable: u8::from((flags >> 7) & 1 == 0),
        padding: 0,
    }
}

/// Writes the boot GDT, the empty IDT and the identity page tables for the first GiB.
pub fn write_boot_tables(mem: &GuestMemoryMmap) -> Result<(), CpuError> {
    let gdt = [GDT_NULL, GDT_CODE, GDT_DATA, GDT_TSS];
    for (index, entry) in gdt.iter().enumerate() {
        mem.write_obj(*entry, GuestAddress(layout::BOOT_GDT + 8 * index as u64))
            .map_err(CpuError::Memory)?;
    }
    mem.write_obj(0u64, GuestAddress(layout::BOOT_IDT))
        .map_err(CpuError::Memory)?;
    mem.write_obj(
        layout::BOOT_PDPT | PTE_PRESENT_WRITABLE,
        GuestAddress(layout::BOOT_PML4),
    )
    .map_err(CpuError::Memory)?;
    mem.write_obj(
        layout::BOOT_PD | PTE_PRESENT_WRITABLE,
        GuestAddress(layout::BOOT_PDPT),
    )
    .map_err(CpuError::Memory)?;
    for index in 0..512u64 {
        mem.write_obj(
            (index << 21) | PDE_LARGE_PAGE,
            GuestAddress(layout::BOOT_PD + index * 8),
        )
        .map_err(CpuError::Memory)?;
    }
    Ok(())
}

/// The CPUID table for vCPU `id` of `count`: what KVM supports, with the topology and hypervisor bits
/// a VMM must set itself, and without the paravirtual features `host` cannot serve.
pub fn cpuid(kvm: &Kvm, id: u8, count: u8, host: HostKvm) -> Result<CpuId, CpuError> {
    let mut cpuid = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(|source| CpuError::Kvm {
            what: "supported CPUID",
            source,
        })?;
    let tsc_deadline = kvm.check_extension(kvm_ioctls::Cap::TscDeadlineTimer);
    for entry in cpuid.as_mut_slice() {
        adjust_entry(entry, id, count, tsc_deadline, host);
    }
    Ok(cpuid)
}

/// One entry of [`cpuid`]'s table.
fn adjust_entry(
    entry: &mut kvm_cpuid_entry2,
    id: u8,
    count: u8,
    tsc_deadline: bool,
    host: HostKvm,
) {
    match entry.function {
        1 => {
            entry.ebx = (u32::from(id) << 24) | (u32::from(count) << 16) | (8 << 8);
            entry.ecx |= CPUID_1_ECX_HYPERVISOR;
            if tsc_deadline {
                entry.ecx |= CPUID_1_ECX_TSC_DEADLINE;
            }
            if count > 1 {
                entry.edx |= CPUID_1_EDX_HTT;
            } else {
                entry.edx &= !CPUID_1_EDX_HTT;
            }
        }
        6 => entry.ecx &= !CPUID_6_ECX_EPB,
        0xb => entry.edx = u32::from(id),
        KVM_CPUID_FEATURES if !host.hypercalls_work() => {
            entry.eax &= !KVM_FEATURES_BY_HYPERCALL;
        }
        _ => {}
    }
}

/// Where a vCPU starts and on which host.
#[derive(Clone, Copy, Debug)]
pub struct BootCpu {
    /// The 64-bit entry point.
    pub rip: u64,
    /// The zero page (`rsi` at entry).
    pub zero_page: u64,
    /// The host's KVM.
    pub host: HostKvm,
}

/// Sets CPUID, MSRs, registers, FPU and LAPIC of vCPU `id` of `count` for `boot`.
pub fn configure(
    kvm: &Kvm,
    vcpu: &VcpuFd,
    id: u8,
    count: u8,
    boot: BootCpu,
) -> Result<(), CpuError> {
    let BootCpu {
        rip,
        zero_page,
        host,
    } = boot;
    let kvm_error = |what| move |source| CpuError::Kvm { what, source };
    vcpu.set_cpuid2(&cpuid(kvm, id, count, host)?)
        .map_err(kvm_error("CPUID"))?;
    set_boot_msrs(vcpu)?;

    let mut sregs: kvm_sregs = vcpu.get_sregs().map_err(kvm_error("special registers"))?;
    let code = segment(GDT_CODE, CODE_SELECTOR);
    let data = segment(GDT_DATA, DATA_SELECTOR);
    sregs.gdt.base = layout::BOOT_GDT;
    sregs.gdt.limit = 4 * 8 - 1;
    sregs.idt.base = layout::BOOT_IDT;
    sregs.idt.limit = 7;
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = segment(GDT_TSS, TSS_SELECTOR);
    sregs.cr3 = layout::BOOT_PML4;
    sregs.cr4 |= CR4_PAE;
    sregs.cr0 |= CR0_PE | CR0_PG;
    sregs.efer |= EFER_LME | EFER_LMA;
    vcpu.set_sregs(&sregs)
        .map_err(kvm_error("special registers"))?;

    let regs = kvm_regs {
        rflags: 0x2,
        rip,
        rsp: layout::BOOT_STACK,
        rbp: layout::BOOT_STACK,
        rsi: zero_page,
        ..kvm_regs::default()
    };
    vcpu.set_regs(&regs).map_err(kvm_error("registers"))?;

    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..kvm_fpu::default()
    };
    vcpu.set_fpu(&fpu).map_err(kvm_error("FPU"))?;

    let mut lapic = vcpu.get_lapic().map_err(kvm_error("local APIC"))?;
    set_lint_mode(&mut lapic, APIC_LVT0, APIC_MODE_EXTINT);
    set_lint_mode(&mut lapic, APIC_LVT1, APIC_MODE_NMI);
    vcpu.set_lapic(&lapic).map_err(kvm_error("local APIC"))?;
    Ok(())
}

fn set_boot_msrs(vcpu: &VcpuFd) -> Result<(), CpuError> {
    let entry = |index, data| kvm_msr_entry {
        index,
        data,
        ..kvm_msr_entry::default()
    };
    let entries = [
        entry(MSR_IA32_SYSENTER_CS, 0),
        entry(MSR_IA32_SYSENTER_ESP, 0),
        entry(MSR_IA32_SYSENTER_EIP, 0),
        entry(MSR_STAR, 0),
        entry(MSR_CSTAR, 0),
        entry(MSR_KERNEL_GS_BASE, 0),
        entry(MSR_SYSCALL_MASK, 0),
        entry(MSR_LSTAR, 0),
        entry(MSR_IA32_TSC, 0),
        entry(MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING),
        entry(MSR_MTRR_DEF_TYPE, MTRR_DEF_TYPE_WB_ENABLED),
    ];
    let msrs = Msrs::from_entries(&entries).map_err(|_| CpuError::List("MSR"))?;
    let set = vcpu.set_msrs(&msrs).map_err(|source| CpuError::Kvm {
        what: "MSRs",
        source,
    })?;
    if set != entries.len() {
        return Err(CpuError::Msrs {
            set,
            wanted: entries.len(),
        });
    }
    Ok(())
}

/// Sets the delivery mode (bits 10:8) of a LAPIC LVT register.
fn set_lint_mode(lapic: &mut kvm_lapic_state, offset: usize, mode: u32) {
    let Some(bytes) = lapic.regs.get_mut(offset..offset + 4) else {
        return;
    };
    let mut raw = [0u8; 4];
    for (dst, src) in raw.iter_mut().zip(bytes.iter()) {
        *dst = *src as u8;
    }
    let value = (u32::from_le_bytes(raw) & !0x700) | (mode << 8);
    for (dst, src) in bytes.iter_mut().zip(value.to_le_bytes()) {
        *dst = src as std::os::raw::c_char;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_descriptor_is_a_present_64_bit_ring0_segment() {
        let code = segment(GDT_CODE, CODE_SELECTOR);
        assert_eq!(
            (code.present, code.l, code.dpl, code.s, code.type_),
            (1, 1, 0, 1, 0xb)
        );
        assert_eq!(code.limit, 0xfffff);
        assert_eq!(code.unusable, 0);
    }

    #[test]
    fn data_descriptor_is_a_flat_writable_segment() {
        let data = segment(GDT_DATA, DATA_SELECTOR);
        assert_eq!((data.present, data.db, data.g, data.type_), (1, 1, 1, 3));
        assert_eq!(data.base, 0);
    }

    #[test]
    fn boot_page_tables_identity_map_the_first_gib_with_large_pages() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        write_boot_tables(&mem).unwrap();
        let pml4: u64 = mem.read_obj(GuestAddress(layout::BOOT_PML4)).unwrap();
        assert_eq!(pml4, layout::BOOT_PDPT | 3);
        let last: u64 = mem
            .read_obj(GuestAddress(layout::BOOT_PD + 511 * 8))
            .unwrap();
        assert_eq!(last, (511 << 21) | 0x83);
    }

    fn kvm_features_entry() -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function: KVM_CPUID_FEATURES,
            eax: 0x0100_7efb,
            ..kvm_cpuid_entry2::default()
        }
    }

    #[test]
    fn hypercall_features_are_hidden_where_hypercalls_do_not_complete() {
        let mut entry = kvm_features_entry();
        adjust_entry(&mut entry, 0, 2, true, HostKvm::Pvm);
        assert_eq!(entry.eax & KVM_FEATURES_BY_HYPERCALL, 0);
        assert_eq!(entry.eax, 0x0100_567b, "the other features stay");
    }

    #[test]
    fn hypercall_features_stay_on_hardware_kvm() {
        let mut entry = kvm_features_entry();
        adjust_entry(&mut entry, 0, 2, true, HostKvm::Hardware);
        assert_eq!(entry.eax, 0x0100_7efb);
    }

    #[test]
    fn lint_mode_replaces_only_the_delivery_mode_bits() {
        let mut lapic = kvm_lapic_state::default();
        lapic.regs[APIC_LVT0] = 0x10u8 as std::os::raw::c_char;
        lapic.regs[APIC_LVT0 + 1] = 0x01;
        lapic.regs[APIC_LVT0 + 2] = 0x01;
        set_lint_mode(&mut lapic, APIC_LVT0, APIC_MODE_EXTINT);
        let raw: Vec<u8> = lapic.regs[APIC_LVT0..APIC_LVT0 + 4]
            .iter()
            .map(|&b| b as u8)
            .collect();
        assert_eq!(u32::from_le_bytes(raw.try_into().unwrap()), 0x0001_0710);
    }
}
