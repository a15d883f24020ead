//! XSAVE, XSAVEOPT and XRSTOR in the standard (non-compacted) format, completed by the monitor where the
//! host's instruction emulator cannot run them (PVM, kvm-vmm.md §0).
//!
//! Without them a guest kernel must boot with `noxsave` and switches tasks with FXSAVE, which keeps only
//! x87 and the low 128 bits of XMM0–15. On PVM, guest user space runs natively with the host's XCR0 and
//! CPUID, so it uses AVX, AVX2 and AVX-512 (glibc's string functions do), and every such register was
//! overwritten by whichever guest process ran before: measured with a test program, six of six
//! processes saw `ymm8` change under them. With the monitor completing the kernel's XSAVE and XRSTOR for
//! every component of the guest's XCR0, none did.
//!
//! The vCPU's state comes from `KVM_GET_XSAVE`, whose 4096-byte image is the standard format with the
//! host CPU's component offsets ([`Layout::host`]); the guest's XSAVE area has the same format, since
//! the guest kernel reads the same CPUID leaf 0xD. This module works on byte images only; the vCPU thread
//! reads and writes guest memory and the vCPU.

use std::ops::Range;

/// Bytes of `KVM_GET_XSAVE`'s image; components ending past it cannot be completed here (AMX tiles).
pub const STATE_LEN: usize = 4096;
/// The alignment XSAVE and XRSTOR require of their operand.
pub const AREA_ALIGN: u64 = 64;
/// Where the first extended component may start: after the legacy region and the header.
const EXTENDED_START: usize = 576;
/// What a guest kernel that chose the compacted format must be booted with; PVM does not apply the
/// monitor's CPUID to the guest kernel's leaf 0xD (kvm-vmm.md §0).
pub const KERNEL_PARAMETER_HINT: &str = "boot the guest with clearcpuid=xsavec,xsaves";

const X87: u64 = 1 << 0;
const SSE: u64 = 1 << 1;
const AVX: u64 = 1 << 2;

/// Legacy region: FCW, FSW, FTW, FOP, FIP, FDP (bytes 0–23) and ST0–7 (32–159) are x87 state.
const X87_CONTROL: Range<usize> = 0..24;
const X87_REGISTERS: Range<usize> = 32..160;
/// MXCSR and MXCSR_MASK: saved with SSE or AVX.
const MXCSR: Range<usize> = 24..28;
const MXCSR_MASK: Range<usize> = 28..32;
/// XMM0–15.
const XMM: Range<usize> = 160..416;
/// The XSAVE header: XSTATE_BV, then XCOMP_BV and a reserved word that must be zero.
const XSTATE_BV: Range<usize> = 512..520;
const XCOMP_BV_AND_RESERVED: Range<usize> = 520..536;
/// The x87 control word after initialisation (all exceptions masked, extended precision, round nearest).
const FCW_INIT: u16 = 0x037f;
/// The mask a zero MXCSR_MASK field stands for (processors without DAZ).
const MXCSR_MASK_DEFAULT: u32 = 0xffbf;

/// One extended state component (AVX and later) in the standard format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Component {
    /// Its XCR0 bit.
    pub bit: u8,
    /// Its offset in the area (CPUID 0xD sub-leaf `bit`, EBX).
    pub offset: usize,
    /// Its length (EAX).
    pub len: usize,
}

impl Component {
    fn range(self) -> Range<usize> {
        self.offset..self.offset + self.len
    }
}

/// The standard-format layout: which user components exist and where they live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    supported: u64,
    components: Vec<Component>,
}

/// Why a layout cannot serve a guest's XCR0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// The guest enabled a component the layout does not know.
    #[error("XCR0 {xcr0:#x} has components the host does not report")]
    Unknown {
        /// The guest's XCR0.
        xcr0: u64,
    },
    /// The components end past `KVM_GET_XSAVE`'s image.
    #[error("XCR0 {xcr0:#x} needs {len} bytes of state, more than KVM_GET_XSAVE's {STATE_LEN}")]
    TooLarge {
        /// The guest's XCR0.
        xcr0: u64,
        /// The standard-format length it needs.
        len: usize,
    },
}

impl Layout {
    /// The host CPU's layout, from CPUID leaf 0xD.
    pub fn host() -> Self {
        let leaf = |index: u32| std::arch::x86_64::__cpuid_count(0xd, index);
        let root = leaf(0);
        let supported = u64::from(root.eax) | u64::from(root.edx) << 32;
        let components = (2..64u8)
            .filter(|bit| supported & (1 << bit) != 0)
            .map(|bit| {
                let sub = leaf(u32::from(bit));
                Component {
                    bit,
                    offset: sub.ebx as usize,
                    len: sub.eax as usize,
                }
            })
            .collect();
        Self::new(supported, components)
    }

    /// A layout of the components given (x87 and SSE are always part of it).
    pub fn new(supported: u64, components: Vec<Component>) -> Self {
        Self {
            supported: supported | X87 | SSE,
            components,
        }
    }

    /// The bytes of an area holding `xcr0`'s components, or why this layout cannot complete them.
    pub fn area_len(&self, xcr0: u64) -> Result<usize, LayoutError> {
        if xcr0 & !self.supported != 0 {
            return Err(LayoutError::Unknown { xcr0 });
        }
        let len = self
            .enabled(xcr0)
            .map(|component| component.offset + component.len)
            .fold(EXTENDED_START, usize::max);
        if len > STATE_LEN {
            return Err(LayoutError::TooLarge { xcr0, len });
        }
        Ok(len)
    }

    fn enabled(&self, features: u64) -> impl Iterator<Item = Component> + '_ {
        self.components
            .iter()
            .copied()
            .filter(move |component| features & (1 << component.bit) != 0)
    }
}

/// A fault the instruction raises instead of completing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateFault {
    /// #GP(0): a reserved header bit, a component the guest has not enabled, or a reserved MXCSR bit.
    GeneralProtection,
}

fn read_u64(bytes: &[u8], range: Range<usize>) -> u64 {
    let mut word = [0u8; 8];
    if let Some(source) = bytes.get(range) {
        word.copy_from_slice(source);
    }
    u64::from_le_bytes(word)
}

fn read_u32(bytes: &[u8], range: Range<usize>) -> u32 {
    let mut word = [0u8; 4];
    if let Some(source) = bytes.get(range) {
        word.copy_from_slice(source);
    }
    u32::from_le_bytes(word)
}

fn write_u64(bytes: &mut [u8], range: Range<usize>, value: u64) {
    if let Some(target) = bytes.get_mut(range) {
        target.copy_from_slice(&value.to_le_bytes());
    }
}

/// Copies `range` from `from` to `to`, where both have it.
fn copy(to: &mut [u8], from: &[u8], range: Range<usize>) {
    if let (Some(target), Some(source)) = (to.get_mut(range.clone()), from.get(range)) {
        target.copy_from_slice(source);
    }
}

fn fill(to: &mut [u8], range: Range<usize>, value: u8) {
    if let Some(target) = to.get_mut(range) {
        target.fill(value);
    }
}

/// Whether an area's header says compacted format (XCOMP_BV bit 63), which only XSAVEC/XSAVES write.
pub fn compacted(area: &[u8]) -> bool {
    read_u64(
        area,
        XCOMP_BV_AND_RESERVED.start..XCOMP_BV_AND_RESERVED.start + 8,
    ) >> 63
        != 0
}

/// XSAVE: stores the components of `rfbm` (XCR0 & EDX:EAX) from `state`, the vCPU's image, into `area`,
/// the guest's operand (at least [`Layout::area_len`] of `rfbm`), and sets their XSTATE_BV bits to the
/// vCPU's. Bytes of `area` that XSAVE does not write keep their value.
pub fn save(layout: &Layout, state: &[u8], rfbm: u64, area: &mut [u8]) {
    if rfbm & X87 != 0 {
        copy(area, state, X87_CONTROL);
        copy(area, state, X87_REGISTERS);
    }
    if rfbm & (SSE | AVX) != 0 {
        copy(area, state, MXCSR);
        copy(area, state, MXCSR_MASK);
    }
    if rfbm & SSE != 0 {
        copy(area, state, XMM);
    }
    for component in layout.enabled(rfbm) {
        copy(area, state, component.range());
    }
    let in_use = read_u64(state, XSTATE_BV);
    let header = (read_u64(area, XSTATE_BV) & !rfbm) | (in_use & rfbm);
    write_u64(area, XSTATE_BV, header);
}

/// XRSTOR: loads the components of `rfbm` into `state` from `area` where the area's XSTATE_BV has them,
/// and their initial values where it does not; components outside `rfbm` keep their value. `xcr0` is the
/// guest's XCR0: an area naming a component outside it faults, as do a non-zero XCOMP_BV or reserved
/// header word and a reserved MXCSR bit; then nothing changes.
pub fn restore(
    layout: &Layout,
    state: &mut [u8],
    rfbm: u64,
    xcr0: u64,
    area: &[u8],
) -> Result<(), StateFault> {
    let present = read_u64(area, XSTATE_BV);
    let reserved = area
        .get(XCOMP_BV_AND_RESERVED)
        .is_none_or(|bytes| bytes.iter().any(|&b| b != 0));
    if present & !xcr0 != 0 || reserved {
        return Err(StateFault::GeneralProtection);
    }
    if rfbm & (SSE | AVX) != 0 {
        let mask = match read_u32(state, MXCSR_MASK) {
            0 => MXCSR_MASK_DEFAULT,
            mask => mask,
        };
        if read_u32(area, MXCSR) & !mask != 0 {
            return Err(StateFault::GeneralProtection);
        }
        copy(state, area, MXCSR);
    }
    let loaded = rfbm & present;
    if rfbm & X87 != 0 {
        if loaded & X87 != 0 {
            copy(state, area, X87_CONTROL);
            copy(state, area, X87_REGISTERS);
        } else {
            fill(state, X87_CONTROL, 0);
            if let Some(fcw) = state.get_mut(0..2) {
                fcw.copy_from_slice(&FCW_INIT.to_le_bytes());
            }
            fill(state, X87_REGISTERS, 0);
        }
    }
    if rfbm & SSE != 0 {
        if loaded & SSE != 0 {
            copy(state, area, XMM);
        } else {
            fill(state, XMM, 0);
        }
    }
    for component in layout.enabled(rfbm) {
        if loaded & (1 << component.bit) != 0 {
            copy(state, area, component.range());
        } else {
            fill(state, component.range(), 0);
        }
    }
    let header = (read_u64(state, XSTATE_BV) & !rfbm) | (present & rfbm);
    write_u64(state, XSTATE_BV, header);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// x87, SSE, AVX and the three AVX-512 components, at the offsets Intel CPUs use.
    fn layout() -> Layout {
        let component = |bit, offset, len| Component { bit, offset, len };
        Layout::new(
            0xe7,
            vec![
                component(2, 576, 256),
                component(5, 1088, 64),
                component(6, 1152, 512),
                component(7, 1664, 1024),
            ],
        )
    }

    /// A vCPU image with distinct bytes in every component and XSTATE_BV = `in_use`.
    fn state(in_use: u64) -> Vec<u8> {
        let mut state: Vec<u8> = (0..STATE_LEN).map(|i| (i % 251) as u8).collect();
        state[MXCSR].copy_from_slice(&0x1f80u32.to_le_bytes());
        state[MXCSR_MASK].copy_from_slice(&0xffffu32.to_le_bytes());
        state[512..576].fill(0);
        state[XSTATE_BV].copy_from_slice(&in_use.to_le_bytes());
        state
    }

    /// An area of `len` bytes filled with `byte`, with a clean header saying `present`.
    fn area(len: usize, byte: u8, present: u64) -> Vec<u8> {
        let mut area = vec![byte; len];
        area[512..576].fill(0);
        area[MXCSR].copy_from_slice(&0x1f80u32.to_le_bytes());
        area[XSTATE_BV].copy_from_slice(&present.to_le_bytes());
        area
    }

    #[test]
    fn the_area_covers_the_enabled_components_and_no_more_than_kvm_gives() {
        let layout = layout();
        assert_eq!(layout.area_len(0b11), Ok(576));
        assert_eq!(layout.area_len(0b111), Ok(832));
        assert_eq!(layout.area_len(0xe7), Ok(2688));
        assert_eq!(
            layout.area_len(0x207),
            Err(LayoutError::Unknown { xcr0: 0x207 })
        );
        let tiles = Layout::new(
            1 << 18 | 0b111,
            vec![Component {
                bit: 18,
                offset: 2752,
                len: 8192,
            }],
        );
        assert!(matches!(
            tiles.area_len(1 << 18 | 0b11),
            Err(LayoutError::TooLarge { .. })
        ));
    }

    #[test]
    fn save_then_restore_gives_back_every_register() {
        let layout = layout();
        let saved_from = state(0xe7);
        let mut saved = area(2688, 0xaa, 0);
        save(&layout, &saved_from, 0xe7, &mut saved);
        assert_eq!(saved[1664..2688], saved_from[1664..2688]);
        assert_eq!(read_u64(&saved, XSTATE_BV), 0xe7);

        let mut restored = vec![0u8; STATE_LEN];
        restored[MXCSR_MASK].copy_from_slice(&0xffffu32.to_le_bytes());
        restore(&layout, &mut restored, 0xe7, 0xe7, &saved).unwrap();
        for range in [
            X87_CONTROL,
            MXCSR,
            X87_REGISTERS,
            XMM,
            XSTATE_BV,
            576..832,
            1088..2688,
        ] {
            assert_eq!(
                restored[range.clone()],
                saved_from[range.clone()],
                "{range:?}"
            );
        }
    }

    #[test]
    fn save_leaves_components_outside_the_mask_and_the_reserved_bytes_alone() {
        let from = state(0xe7);
        let mut target = area(2688, 0x55, 0b100);
        save(&layout(), &from, 0b011, &mut target);
        assert_eq!(target[576..2688], [0x55; 2112]);
        assert_eq!(target[416..512], [0x55; 96]);
        assert_eq!(target[XMM], from[XMM]);
        assert_eq!(read_u64(&target, XSTATE_BV), 0b111);
    }

    #[test]
    fn save_records_an_unused_component_as_initial() {
        let mut target = area(2688, 0, 0);
        save(&layout(), &state(0b011), 0xe7, &mut target);
        assert_eq!(read_u64(&target, XSTATE_BV), 0b011);
    }

    #[test]
    fn restore_initialises_components_the_area_does_not_hold() {
        let source = area(2688, 0x77, 0b010);
        let mut target = state(0xe7);
        restore(&layout(), &mut target, 0xe7, 0xe7, &source).unwrap();
        assert_eq!(target[576..832], [0; 256]);
        assert_eq!(target[1664..2688], [0; 1024]);
        assert_eq!(target[XMM], source[XMM]);
        assert_eq!(&target[0..2], &FCW_INIT.to_le_bytes());
        assert_eq!(target[X87_REGISTERS], [0; 128]);
        assert_eq!(read_u64(&target, XSTATE_BV), 0b010);
    }

    #[test]
    fn restore_keeps_components_outside_the_mask() {
        let source = area(2688, 0x11, 0xe7);
        let before = state(0xe7);
        let mut target = before.clone();
        restore(&layout(), &mut target, 0b011, 0xe7, &source).unwrap();
        assert_eq!(target[576..2688], before[576..2688]);
        assert_eq!(target[XMM], source[XMM]);
        assert_eq!(read_u64(&target, XSTATE_BV), 0xe7);
    }

    #[test]
    fn restore_faults_on_a_bad_header_or_mxcsr_and_changes_nothing() {
        let layout = layout();
        let before = state(0xe7);
        let mut target = before.clone();
        let mut source = area(2688, 0, 1 << 9);
        assert_eq!(
            restore(&layout, &mut target, 0xe7, 0xe7, &source),
            Err(StateFault::GeneralProtection),
            "a component outside XCR0"
        );
        source[XSTATE_BV].copy_from_slice(&0xe7u64.to_le_bytes());
        assert_eq!(
            restore(&layout, &mut target, 0xe7, 0b111, &source),
            Err(StateFault::GeneralProtection),
            "AVX-512 data while XCR0 lacks it"
        );
        source[527] = 0x80;
        assert!(compacted(&source));
        assert_eq!(
            restore(&layout, &mut target, 0xe7, 0xe7, &source),
            Err(StateFault::GeneralProtection),
            "compacted-format bit in XCOMP_BV"
        );
        source[527] = 0;
        assert!(!compacted(&source));
        source[MXCSR].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        assert_eq!(
            restore(&layout, &mut target, 0xe7, 0xe7, &source),
            Err(StateFault::GeneralProtection),
            "reserved MXCSR bit"
        );
        assert_eq!(target, before);
    }

    #[test]
    fn short_buffers_are_never_indexed_past_their_end() {
        let mut short = vec![0u8; 100];
        save(&layout(), &state(0xe7), 0xe7, &mut short);
        assert_eq!(
            restore(&layout(), &mut [0u8; 10], 0xe7, 0xe7, &short),
            Err(StateFault::GeneralProtection)
        );
    }

    #[test]
    fn the_host_layout_has_avx_after_the_header_where_the_cpu_has_it() {
        let layout = Layout::host();
        if let Some(avx) = layout.components.iter().find(|c| c.bit == 2) {
            assert_eq!((avx.offset, avx.len), (576, 256));
        }
        assert_eq!(layout.area_len(0b11), Ok(576));
    }
}
