//! Instructions KVM could not emulate: what the exit reports, and the few the monitor completes itself.
//!
//! On a host whose `/dev/kvm` runs guest kernel code through KVM's instruction emulator (PVM's native
//! mode, kvm-vmm.md §0), some instructions the Linux kernel uses stop the vCPU with
//! `KVM_EXIT_INTERNAL_ERROR` / `KVM_INTERNAL_ERROR_EMULATION`. The exit carries the instruction bytes.
//! These have side effects simple enough to complete here, and only when an exit names them:
//!
//! * `int3`: the kernel's own breakpoints (its self-test, code patching). The monitor steps over the byte
//!   and injects #BP, so the kernel's handler runs exactly as after a real trap.
//! * `fwait`: with no x87 exception pending it does nothing; the monitor steps over it.
//! * `ldmxcsr m32`: the monitor decodes the memory operand, reads the four bytes through the guest's page
//!   tables and loads them into the vCPU's MXCSR.
//! * `xsave`, `xsaveopt` and `xrstor`: the guest's extended state between the vCPU and the operand, in
//!   [`crate::xsave`]'s format, with the faults the instruction would raise.
//!
//! Every other failure stops the VM with the RIP and the instruction bytes in the log, and, for the
//! instructions known to fail there, the kernel parameter that keeps the kernel from using them.

/// Vector of the breakpoint exception.
pub const BREAKPOINT_VECTOR: u8 = 3;
/// Vector of the invalid-opcode exception.
pub const INVALID_OPCODE_VECTOR: u8 = 6;
/// Vector of the general-protection exception.
pub const GENERAL_PROTECTION_VECTOR: u8 = 13;
/// `KVM_INTERNAL_ERROR_EMULATION`.
pub const SUBERROR_EMULATION: u32 = 1;
/// `KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES`.
const FLAG_INSTRUCTION_BYTES: u64 = 1;
/// Longest x86 instruction.
pub const MAX_INSTRUCTION_LEN: usize = 15;

/// An emulation failure as the exit reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InternalError {
    /// `kvm_run.internal.suberror`.
    pub suberror: u32,
    /// The instruction bytes, when the exit carries them.
    pub instruction: Option<Vec<u8>>,
    /// The raw data words.
    pub data: Vec<u64>,
}

impl InternalError {
    /// Decodes `kvm_run.internal` (suberror, ndata, data).
    pub fn from_exit(suberror: u32, ndata: u32, data: &[u64; 16]) -> Self {
        let count = (ndata as usize).min(data.len());
        let words = data.get(..count).unwrap_or_default().to_vec();
        let mut instruction = None;
        if suberror == SUBERROR_EMULATION && count >= 3 && words[0] & FLAG_INSTRUCTION_BYTES != 0 {
            let mut bytes = [0u8; 16];
            bytes[..8].copy_from_slice(&words[1].to_le_bytes());
            bytes[8..].copy_from_slice(&words[2].to_le_bytes());
            let len = usize::from(bytes[0]).min(MAX_INSTRUCTION_LEN);
            instruction = Some(bytes[1..=len].to_vec());
        }
        Self {
            suberror,
            instruction,
            data: words,
        }
    }
}

/// A register-relative memory operand, decoded from ModRM/SIB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryOperand {
    /// Base register index (kvm_regs order: rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8..r15).
    pub base: Option<u8>,
    /// Index register and scale factor.
    pub index: Option<(u8, u8)>,
    /// Displacement.
    pub displacement: i64,
    /// Whether the address is relative to the next instruction.
    pub rip_relative: bool,
    /// FS (0x64) or GS (0x65) override.
    pub segment: Option<SegmentOverride>,
    /// 32-bit addressing (0x67 prefix).
    pub address_32: bool,
}

/// A segment override that has a base in 64-bit mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentOverride {
    /// FS.
    Fs,
    /// GS.
    Gs,
}

/// What the monitor does about a failed instruction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Workaround {
    /// Step over the `int3` and inject #BP.
    Breakpoint,
    /// Step over an instruction without effect here (`fwait`).
    Skip {
        /// Its length.
        len: u64,
    },
    /// Load MXCSR from memory and step over the instruction.
    LoadMxcsr {
        /// The instruction's length.
        len: u64,
        /// Where the value is.
        operand: MemoryOperand,
    },
    /// XSAVE or XSAVEOPT (`save`), or XRSTOR, of the extended state at the operand.
    ExtendedState {
        /// The instruction's length.
        len: u64,
        /// The XSAVE area.
        operand: MemoryOperand,
        /// XSAVE or XSAVEOPT rather than XRSTOR.
        save: bool,
    },
    /// Nothing to do here: the VM stops.
    Unsupported {
        /// What the instruction is, when known, and how to keep the kernel from using it.
        hint: Option<&'static str>,
    },
}

/// Chooses the workaround for `bytes`, the instruction that failed.
pub fn workaround(bytes: &[u8]) -> Workaround {
    let mut position = 0;
    let mut segment = None;
    let mut address_32 = false;
    let mut rex = 0u8;
    let mut mandatory_prefix = false;
    while let Some(&byte) = bytes.get(position) {
        match byte {
            0x64 => segment = Some(SegmentOverride::Fs),
            0x65 => segment = Some(SegmentOverride::Gs),
            0x67 => address_32 = true,
            0x66 | 0xf2 | 0xf3 => mandatory_prefix = true,
            0x26 | 0x2e | 0x36 | 0x3e | 0xf0 => {}
            _ => break,
        }
        position += 1;
    }
    if let Some(&byte) = bytes.get(position) {
        if (0x40..=0x4f).contains(&byte) {
            rex = byte;
            position += 1;
        }
    }
    let opcode = &bytes[position.min(bytes.len())..];
    match opcode {
        [0xcc, ..] if position == 0 => Workaround::Breakpoint,
        [0x9b, ..] if position == 0 => Workaround::Skip { len: 1 },
        // ldmxcsr (/2), and without a mandatory prefix (which makes /4–/6 other instructions such as
        // ptwrite or clwb) xsave (/4), xrstor (/5) and xsaveopt (/6); all with a memory operand.
        [0x0f, 0xae, modrm, ..]
            if modrm >> 6 != 3
                && ((modrm >> 3) & 7 == 2
                    || (!mandatory_prefix && matches!((modrm >> 3) & 7, 4..=6))) =>
        {
            match decode_memory_operand(&opcode[2..], rex, segment, address_32) {
                Some((operand, operand_len)) => {
                    let len = (position + 2 + operand_len) as u64;
                    match (modrm >> 3) & 7 {
                        2 => Workaround::LoadMxcsr { len, operand },
                        reg => Workaround::ExtendedState {
                            len,
                            operand,
                            save: reg != 5,
                        },
                    }
                }
                None => Workaround::Unsupported { hint: None },
            }
        }
        _ => Workaround::Unsupported {
            hint: known_hint(opcode),
        },
    }
}

/// Decodes ModRM (+SIB, +displacement) at the start of `bytes`; returns the operand and its length.
fn decode_memory_operand(
    bytes: &[u8],
    rex: u8,
    segment: Option<SegmentOverride>,
    address_32: bool,
) -> Option<(MemoryOperand, usize)> {
    let modrm = *bytes.first()?;
    let mode = modrm >> 6;
    let rm = modrm & 7;
    let rex_b = (rex & 1) << 3;
    let rex_x = ((rex >> 1) & 1) << 3;
    let mut len = 1;
    let mut operand = MemoryOperand {
        base: None,
        index: None,
        displacement: 0,
        rip_relative: false,
        segment,
        address_32,
    };
    let mut forced_disp32 = false;
    if rm == 4 {
        let sib = *bytes.get(len)?;
        len += 1;
        let index = ((sib >> 3) & 7) | rex_x;
        if index != 4 {
            operand.index = Some((index, 1 << (sib >> 6)));
        }
        if sib & 7 == 5 && mode == 0 {
            forced_disp32 = true;
        } else {
            operand.base = Some((sib & 7) | rex_b);
        }
    } else if rm == 5 && mode == 0 {
        operand.rip_relative = true;
        forced_disp32 = true;
    } else {
        operand.base = Some(rm | rex_b);
    }
    if mode == 1 {
        operand.displacement = i64::from(*bytes.get(len)? as i8);
        len += 1;
    } else if mode == 2 || forced_disp32 {
        let raw: [u8; 4] = bytes.get(len..len + 4)?.try_into().ok()?;
        operand.displacement = i64::from(i32::from_le_bytes(raw));
        len += 4;
    }
    Some((operand, len))
}

impl MemoryOperand {
    /// The linear address for the register file `regs` (kvm_regs order), the instruction's end `next_rip`
    /// and the FS/GS bases.
    pub fn address(&self, regs: &[u64; 16], next_rip: u64, fs_base: u64, gs_base: u64) -> u64 {
        let mut address = self.displacement as u64;
        if self.rip_relative {
            address = address.wrapping_add(next_rip);
        }
        if let Some(base) = self.base {
            address = address.wrapping_add(regs[usize::from(base & 15)]);
        }
        if let Some((index, scale)) = self.index {
            address =
                address.wrapping_add(regs[usize::from(index & 15)].wrapping_mul(u64::from(scale)));
        }
        if self.address_32 {
            address &= 0xffff_ffff;
        }
        match self.segment {
            Some(SegmentOverride::Fs) => address.wrapping_add(fs_base),
            Some(SegmentOverride::Gs) => address.wrapping_add(gs_base),
            None => address,
        }
    }
}

/// Kernel parameters that avoid the instructions known to fail under emulation (kvm-vmm.md §0).
fn known_hint(opcode: &[u8]) -> Option<&'static str> {
    match opcode {
        [0x0f, 0xc7, modrm, ..] if (modrm >> 3) & 7 == 1 => {
            Some("cmpxchg16b: boot the guest with clearcpuid=cx16")
        }
        [0x0f, 0xb8, ..] => Some("popcnt: boot the guest with clearcpuid=popcnt"),
        [0x0f, 0x01, 0xca] | [0x0f, 0x01, 0xcb] => {
            Some("clac/stac: boot the guest with clearcpuid=smap")
        }
        [0x0f, 0x6e, ..] | [0x0f, 0x38, ..] => Some("SSE: boot the guest with clearcpuid=ssse3"),
        _ => None,
    }
}

/// The register file of `kvm_regs` in encoding order.
pub fn register_file(regs: &kvm_bindings::kvm_regs) -> [u64; 16] {
    [
        regs.rax, regs.rcx, regs.rdx, regs.rbx, regs.rsp, regs.rbp, regs.rsi, regs.rdi, regs.r8,
        regs.r9, regs.r10, regs.r11, regs.r12, regs.r13, regs.r14, regs.r15,
    ]
}

/// The bytes as hex, for the log.
pub fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instruction_bytes_are_taken_from_the_exit_data() {
        let mut data = [0u64; 16];
        data[0] = 1;
        data[1] = u64::from_le_bytes([3, 0x0f, 0xae, 0x15, 0, 0, 0, 0]);
        let error = InternalError::from_exit(1, 3, &data);
        assert_eq!(error.instruction, Some(vec![0x0f, 0xae, 0x15]));
    }

    #[test]
    fn exit_without_the_bytes_flag_has_no_instruction() {
        let data = [0u64; 16];
        assert_eq!(InternalError::from_exit(1, 3, &data).instruction, None);
        assert_eq!(InternalError::from_exit(3, 40, &data).data.len(), 16);
    }

    #[test]
    fn int3_is_stepped_over_with_a_breakpoint() {
        assert_eq!(workaround(&[0xcc, 0x90]), Workaround::Breakpoint);
    }

    #[test]
    fn fwait_is_skipped() {
        assert_eq!(workaround(&[0x9b]), Workaround::Skip { len: 1 });
    }

    #[test]
    fn rip_relative_ldmxcsr_is_decoded() {
        let bytes = [0x0f, 0xae, 0x15, 0x10, 0x00, 0x00, 0x00];
        let Workaround::LoadMxcsr { len, operand } = workaround(&bytes) else {
            panic!("not ldmxcsr");
        };
        assert_eq!(len, 7);
        assert!(operand.rip_relative);
        assert_eq!(operand.address(&[0; 16], 0x1000, 0, 0), 0x1010);
    }

    #[test]
    fn ldmxcsr_with_base_and_disp8_uses_the_register() {
        // ldmxcsr -0x4(%rbp)
        let Workaround::LoadMxcsr { len, operand } = workaround(&[0x0f, 0xae, 0x55, 0xfc]) else {
            panic!("not ldmxcsr");
        };
        let mut regs = [0u64; 16];
        regs[5] = 0x2000;
        assert_eq!(len, 4);
        assert_eq!(operand.address(&regs, 0, 0, 0), 0x1ffc);
    }

    #[test]
    fn ldmxcsr_with_sib_rex_and_gs_override() {
        // ldmxcsr %gs:0x8(%r12,%r9,4): 65 43 0f ae 54 8c 08
        let bytes = [0x65, 0x43, 0x0f, 0xae, 0x54, 0x8c, 0x08];
        let Workaround::LoadMxcsr { len, operand } = workaround(&bytes) else {
            panic!("not ldmxcsr");
        };
        let mut regs = [0u64; 16];
        regs[12] = 0x100;
        regs[9] = 2;
        assert_eq!(len, 7);
        assert_eq!(operand.address(&regs, 0, 0, 0x10_0000), 0x10_0110);
    }

    #[test]
    fn truncated_operand_is_not_emulated() {
        assert_eq!(
            workaround(&[0x0f, 0xae, 0x15, 0x10]),
            Workaround::Unsupported { hint: None }
        );
    }

    #[test]
    fn known_failures_come_with_a_kernel_parameter() {
        let Workaround::Unsupported { hint: Some(hint) } =
            workaround(&[0xf0, 0x48, 0x0f, 0xc7, 0x0f])
        else {
            panic!("no hint");
        };
        assert!(hint.contains("clearcpuid=cx16"), "{hint}");
    }

    #[test]
    fn xsave_and_xrstor_are_decoded_with_their_operand() {
        // xsave64 (%rdi); xrstor64 0x40(%rbx)
        let Workaround::ExtendedState { len, operand, save } =
            workaround(&[0x48, 0x0f, 0xae, 0x27])
        else {
            panic!("not xsave");
        };
        assert!(save);
        assert_eq!(len, 4);
        let mut regs = [0u64; 16];
        regs[7] = 0x5000;
        assert_eq!(operand.address(&regs, 0, 0, 0), 0x5000);
        let Workaround::ExtendedState { len, operand, save } =
            workaround(&[0x48, 0x0f, 0xae, 0x6b, 0x40])
        else {
            panic!("not xrstor");
        };
        assert!(!save);
        assert_eq!(len, 5);
        regs[3] = 0x6000;
        assert_eq!(operand.address(&regs, 0, 0, 0), 0x6040);
        // xsaveopt64 (%rdi) saves like xsave.
        assert!(matches!(
            workaround(&[0x48, 0x0f, 0xae, 0x37]),
            Workaround::ExtendedState { save: true, .. }
        ));
    }

    #[test]
    fn mandatory_prefixes_make_other_instructions_than_xsave() {
        // clwb (%rdi) and ptwrite (%rdi) share 0f ae /6 and /4.
        for bytes in [[0x66, 0x0f, 0xae, 0x37], [0xf3, 0x0f, 0xae, 0x27]] {
            assert!(
                matches!(workaround(&bytes), Workaround::Unsupported { .. }),
                "{bytes:x?}"
            );
        }
    }

    #[test]
    fn register_to_register_form_is_not_ldmxcsr() {
        assert!(matches!(
            workaround(&[0x0f, 0xae, 0xd0]),
            Workaround::Unsupported { .. }
        ));
    }
}
