//! Decoding the parameter array of an HGCM call (types 62/63) into framework parameters.
//!
//! Everything is read from the request copy: the parameter array, the page-list descriptors
//! and the embedded buffers. Buffers in guest memory (page lists, contiguous page lists,
//! NoBounce page lists, translated LinAddr buffers) become scatter-gather [`Buffer::guest`]
//! views, so services read and write guest pages directly; embedded buffers are copied out of
//! the request into host buffers and copied back at completion. Each parameter also yields an
//! [`OutputSlot`] saying what the completion writes back, following hgcm.md §5 (sizes are
//! reported back only for embedded, contiguous and NoBounce buffers).
//!
//! Every offset, count and size is checked against the request size and the limits before it
//! is used (hgcm.md §4); violations come back as [`ParamError`] with the VirtualBox status the
//! guest will see.

use std::mem::size_of;
use std::sync::Arc;

use vm_memory::{GuestAddress, GuestMemoryMmap};
use vmmdev_hgcm::{Buffer, Direction, Parm};
use vmmdev_protocol::Status;
use vmmdev_protocol::hgcm::{
    HGCM_CALL_PARAMETERS_OFFSET, HGCM_PAGE_LIST_ENTRY_SIZE, HGCM_PAGE_LIST_MIN_SIZE,
    HgcmPageListHeader, HgcmParameter, PARAMETER_OFF_EMBEDDED_SIZE, PARAMETER_OFF_SIZE,
    PARAMETER_OFF_VALUE, ParameterDirection, ParameterType, Width,
};
use vmmdev_protocol::vmmdev::{VMMDEV_MAX_HGCM_DATA_SIZE, VMMDEV_MAX_HGCM_PARMS, VMMDEV_PAGE_SIZE};
use zerocopy::FromBytes;

use crate::translate::GuestVirtualTranslator;

/// Why a call's parameters were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// Too many parameters for the request size or the protocol limit.
    #[error("{count} parameters do not fit the request or exceed {VMMDEV_MAX_HGCM_PARMS}")]
    BadCount {
        /// Declared count.
        count: u32,
    },
    /// A parameter type the host does not accept on the wire.
    #[error("parameter {index} has unsupported type {ty}")]
    BadType {
        /// Parameter index.
        index: usize,
        /// Raw type.
        ty: u32,
    },
    /// A buffer larger than the per-buffer limit.
    #[error("parameter {index}: buffer of {size} bytes exceeds the limit")]
    BufferTooLarge {
        /// Parameter index.
        index: usize,
        /// Declared size.
        size: u32,
    },
    /// Descriptor or data outside the request, before the parameter array, or inconsistent.
    #[error("parameter {index}: {what}")]
    Malformed {
        /// Parameter index.
        index: usize,
        /// What is wrong.
        what: &'static str,
    },
    /// Direction flags zero or with unknown bits.
    #[error("parameter {index}: invalid direction flags {flags:#x}")]
    BadFlags {
        /// Parameter index.
        index: usize,
        /// Raw flags.
        flags: u32,
    },
    /// A NoBounce page address that is not page aligned.
    #[error("parameter {index}: misaligned page address {address:#x}")]
    MisalignedPage {
        /// Parameter index.
        index: usize,
        /// The address.
        address: u64,
    },
    /// Buffer pages outside guest RAM (or untranslatable virtual addresses).
    #[error("parameter {index}: buffer outside guest RAM")]
    OutsideGuestMemory {
        /// Parameter index.
        index: usize,
    },
    /// A non-empty LinAddr buffer and no translator installed.
    #[error("parameter {index}: guest-virtual buffers need a translator")]
    NoTranslator {
        /// Parameter index.
        index: usize,
    },
    /// The call's buffers together exceed the per-call limit.
    #[error("buffers of {bytes} bytes exceed the per-call limit")]
    TooMuchData {
        /// Sum of buffer sizes.
        bytes: u64,
    },
}

impl ParamError {
    /// The status the guest sees in `header.rc`.
    pub fn status(&self) -> Status {
        match self {
            Self::BadFlags { .. } => Status::VERR_INVALID_FLAGS,
            Self::MisalignedPage { .. } => Status::VERR_INVALID_POINTER,
            Self::NoTranslator { .. } => Status::VERR_NOT_SUPPORTED,
            Self::TooMuchData { .. } => Status::VERR_NO_MEMORY,
            _ => Status::VERR_INVALID_PARAMETER,
        }
    }
}

/// What the completion writes back for one parameter (offsets relative to the request).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputSlot {
    /// A 32-bit value at `offset`.
    Value32 {
        /// Offset of the value.
        offset: u32,
    },
    /// A 64-bit value at `offset`.
    Value64 {
        /// Offset of the value.
        offset: u32,
    },
    /// An embedded buffer: `cbData` at `size_offset` gets the reported size; if `from_host`,
    /// up to `capacity` bytes are copied to `data_offset`.
    Embedded {
        /// Offset of `cbData`.
        size_offset: u32,
        /// Offset of the data inside the request.
        data_offset: u32,
        /// Original size.
        capacity: u32,
        /// Whether data flows back to the guest.
        from_host: bool,
    },
    /// A guest-memory buffer whose reported size goes to `size_offset` (types 12, 13).
    ReportedSize {
        /// Offset of the size field.
        size_offset: u32,
        /// Original size (the written value never exceeds it).
        capacity: u32,
    },
    /// Nothing is written back (PageList, LinAddr: data went to guest memory directly).
    None,
}

/// A decoded call.
#[derive(Debug)]
pub struct ParsedParams {
    /// Parameters for the framework.
    pub params: Vec<Parm>,
    /// Write-back plan, one per parameter.
    pub outputs: Vec<OutputSlot>,
    /// Host bytes this call holds while pending (embedded copies, scatter lists).
    pub host_bytes: u64,
    /// Sum of all buffer sizes.
    pub buffer_bytes: u64,
}

/// Inputs of the decoder.
pub struct CallLayout<'a> {
    /// The request copy.
    pub request: &'a [u8],
    /// 16-byte (Call64) or 12-byte (Call32) parameters.
    pub wide: bool,
    /// Declared parameter count.
    pub count: u32,
    /// Guest memory snapshot the buffers keep alive.
    pub mem: &'a Arc<GuestMemoryMmap>,
    /// Translator for LinAddr buffers, if the embedder installed one.
    pub translator: Option<&'a dyn GuestVirtualTranslator>,
    /// Limit of the sum of buffer sizes.
    pub max_call_bytes: u64,
}

const PAGE_SIZE: u64 = VMMDEV_PAGE_SIZE as u64;

/// Decodes every parameter of a call.
pub fn parse_params(layout: &CallLayout<'_>) -> Result<ParsedParams, ParamError> {
    let request = layout.request;
    let width = if layout.wide { Width::W64 } else { Width::W32 };
    let parm_size = width.parameter_size();
    let count = layout.count as usize;
    let room = request.len().saturating_sub(HGCM_CALL_PARAMETERS_OFFSET) / parm_size;
    if layout.count > VMMDEV_MAX_HGCM_PARMS || count > room {
        return Err(ParamError::BadCount {
            count: layout.count,
        });
    }
    let extra_start = HGCM_CALL_PARAMETERS_OFFSET + count * parm_size;
    let mut parsed = ParsedParams {
        params: Vec::with_capacity(count),
        outputs: Vec::with_capacity(count),
        host_bytes: 0,
        buffer_bytes: 0,
    };
    for index in 0..count {
        let at = HGCM_CALL_PARAMETERS_OFFSET + index * parm_size;
        let raw = request
            .get(at..at + parm_size)
            .ok_or(ParamError::Malformed {
                index,
                what: "parameter beyond the request",
            })?;
        let decoded = HgcmParameter::decode(raw, width).map_err(|_| ParamError::Malformed {
            index,
            what: "parameter beyond the request",
        })?;
        let field = |offset: usize| (at + offset) as u32;
        let (parm, slot) = match decoded {
            HgcmParameter::U32(value) => (
                Parm::U32(value),
                OutputSlot::Value32 {
                    offset: field(PARAMETER_OFF_VALUE),
                },
            ),
            HgcmParameter::U64(value) => (
                Parm::U64(value),
                OutputSlot::Value64 {
                    offset: field(PARAMETER_OFF_VALUE),
                },
            ),
            HgcmParameter::LinAddr { kind, size, addr } => {
                let direction = kind
                    .lin_addr_direction()
                    .map_or(Direction::Both, to_direction);
                if size == 0 {
                    // Linux sends every empty buffer with its original LinAddr type (H-4.2).
                    (
                        Parm::Buffer(Buffer::host(Vec::new(), direction)),
                        OutputSlot::None,
                    )
                } else if kind.service_type().is_none() {
                    // Types 7-9 (kernel buffers) never travel non-empty on the wire.
                    return Err(ParamError::BadType {
                        index,
                        ty: kind.raw(),
                    });
                } else {
                    check_size(index, size)?;
                    let segments = translate(layout, index, addr, size)?;
                    parsed.host_bytes += segment_cost(segments.len());
                    (
                        Parm::Buffer(guest_buffer(layout.mem, index, segments, direction)?),
                        OutputSlot::None,
                    )
                }
            }
            HgcmParameter::PageList { kind, size, offset } => {
                check_size(index, size)?;
                let list = PageList::parse(request, index, offset as usize, extra_start)?;
                let segments = list.segments(index, kind, size)?;
                parsed.host_bytes += segment_cost(segments.len());
                let slot = if kind == ParameterType::PAGE_LIST {
                    OutputSlot::None
                } else {
                    OutputSlot::ReportedSize {
                        size_offset: field(PARAMETER_OFF_SIZE),
                        capacity: size,
                    }
                };
                (
                    Parm::Buffer(guest_buffer(layout.mem, index, segments, list.direction)?),
                    slot,
                )
            }
            HgcmParameter::Embedded {
                flags,
                offset,
                size,
            } => {
                check_size(index, size)?;
                let direction = direction_from_flags(index, u32::from(flags))?;
                let data_offset = offset as usize;
                if data_offset < extra_start
                    || data_offset > request.len()
                    || size as usize > request.len() - data_offset
                {
                    return Err(ParamError::Malformed {
                        index,
                        what: "embedded data outside the extra area",
                    });
                }
                let data = if direction == Direction::FromHost {
                    vec![0u8; size as usize]
                } else {
                    request[data_offset..data_offset + size as usize].to_vec()
                };
                parsed.host_bytes += u64::from(size);
                (
                    Parm::Buffer(Buffer::host(data, direction)),
                    OutputSlot::Embedded {
                        size_offset: field(PARAMETER_OFF_EMBEDDED_SIZE),
                        data_offset: offset,
                        capacity: size,
                        from_host: direction != Direction::ToHost,
                    },
                )
            }
            HgcmParameter::Other(ty) => {
                return Err(ParamError::BadType {
                    index,
                    ty: ty.raw(),
                });
            }
        };
        if let Parm::Buffer(buffer) = &parm {
            parsed.buffer_bytes += buffer.len() as u64;
            if parsed.buffer_bytes > layout.max_call_bytes {
                return Err(ParamError::TooMuchData {
                    bytes: parsed.buffer_bytes,
                });
            }
        }
        parsed.params.push(parm);
        parsed.outputs.push(slot);
    }
    Ok(parsed)
}

/// A page-list descriptor read from the request copy.
struct PageList {
    direction: Direction,
    first_page_offset: u64,
    pages: Vec<u64>,
}

impl PageList {
    fn parse(
        request: &[u8],
        index: usize,
        offset: usize,
        extra_start: usize,
    ) -> Result<Self, ParamError> {
        let malformed = |what| ParamError::Malformed { index, what };
        if offset < extra_start || offset > request.len().saturating_sub(HGCM_PAGE_LIST_MIN_SIZE) {
            return Err(malformed("page list outside the extra area"));
        }
        let (header, entries) = request
            .get(offset..)
            .and_then(|tail| HgcmPageListHeader::read_from_prefix(tail).ok())
            .ok_or(malformed("page list outside the extra area"))?;
        let direction = direction_from_flags(index, header.flags.get())?;
        let page_count = usize::from(header.page_count.get());
        let room = entries.len() / HGCM_PAGE_LIST_ENTRY_SIZE;
        if page_count == 0 || page_count > room {
            return Err(malformed("page count does not fit the request"));
        }
        let first_page_offset = u64::from(header.offset_first_page.get());
        if first_page_offset >= PAGE_SIZE {
            return Err(malformed("first page offset beyond the page"));
        }
        let pages = entries[..page_count * HGCM_PAGE_LIST_ENTRY_SIZE]
            .chunks_exact(HGCM_PAGE_LIST_ENTRY_SIZE)
            .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect();
        Ok(PageList {
            direction,
            first_page_offset,
            pages,
        })
    }

    /// The guest ranges covering `size` bytes, adjacent pages merged.
    fn segments(
        &self,
        index: usize,
        ty: ParameterType,
        size: u32,
    ) -> Result<Vec<(GuestAddress, usize)>, ParamError> {
        let size = u64::from(size);
        let needed = (self.first_page_offset + size).div_ceil(PAGE_SIZE) as usize;
        let malformed = |what| ParamError::Malformed { index, what };
        let page_mask = !(PAGE_SIZE - 1);
        match ty {
            ParameterType::CONTIGUOUS_PAGE_LIST => {
                if self.pages.len() != 1 {
                    return Err(malformed("contiguous page list with more than one entry"));
                }
                let start = (self.pages[0] & page_mask) + self.first_page_offset;
                return Ok(if size == 0 {
                    Vec::new()
                } else {
                    vec![(GuestAddress(start), size as usize)]
                });
            }
            ParameterType::NO_BOUNCE_PAGE_LIST => {
                if self.pages.len() != needed.max(1) {
                    return Err(malformed("NoBounce page count does not match the size"));
                }
                for (i, &page) in self.pages.iter().enumerate() {
                    let low = page & !page_mask;
                    let aligned = low == 0 || (i == 0 && low == self.first_page_offset);
                    if !aligned {
                        return Err(ParamError::MisalignedPage {
                            index,
                            address: page,
                        });
                    }
                }
            }
            _ => {
                if self.pages.len() < needed {
                    return Err(malformed("page list shorter than the buffer"));
                }
            }
        }
        let mut segments: Vec<(GuestAddress, usize)> = Vec::new();
        let mut remaining = size;
        let mut in_page = self.first_page_offset;
        for &page in self.pages.iter().take(needed) {
            if remaining == 0 {
                break;
            }
            let start = (page & page_mask) + in_page;
            let len = (PAGE_SIZE - in_page).min(remaining);
            push_merged(&mut segments, start, len);
            remaining -= len;
            in_page = 0;
        }
        Ok(segments)
    }
}

fn push_merged(segments: &mut Vec<(GuestAddress, usize)>, start: u64, len: u64) {
    if let Some(last) = segments.last_mut() {
        if last.0.0.checked_add(last.1 as u64) == Some(start) {
            last.1 += len as usize;
            return;
        }
    }
    segments.push((GuestAddress(start), len as usize));
}

fn translate(
    layout: &CallLayout<'_>,
    index: usize,
    address: u64,
    size: u32,
) -> Result<Vec<(GuestAddress, usize)>, ParamError> {
    let translator = layout
        .translator
        .ok_or(ParamError::NoTranslator { index })?;
    let mut segments = Vec::new();
    let mut virt = address;
    let mut remaining = u64::from(size);
    while remaining > 0 {
        let in_page = virt % PAGE_SIZE;
        let len = (PAGE_SIZE - in_page).min(remaining);
        let phys = translator
            .translate(virt)
            .ok_or(ParamError::OutsideGuestMemory { index })?;
        push_merged(&mut segments, phys.0, len);
        remaining -= len;
        virt = virt
            .checked_add(len)
            .ok_or(ParamError::OutsideGuestMemory { index })?;
    }
    Ok(segments)
}

fn guest_buffer(
    mem: &Arc<GuestMemoryMmap>,
    index: usize,
    segments: Vec<(GuestAddress, usize)>,
    direction: Direction,
) -> Result<Buffer, ParamError> {
    Buffer::guest(Arc::clone(mem), segments, direction)
        .map_err(|_| ParamError::OutsideGuestMemory { index })
}

fn check_size(index: usize, size: u32) -> Result<(), ParamError> {
    if size > VMMDEV_MAX_HGCM_DATA_SIZE {
        return Err(ParamError::BufferTooLarge { index, size });
    }
    Ok(())
}

fn direction_from_flags(index: usize, flags: u32) -> Result<Direction, ParamError> {
    if !ParameterDirection::are_valid(flags) {
        return Err(ParamError::BadFlags { index, flags });
    }
    Ok(to_direction(ParameterDirection::from_bits_retain(flags)))
}

fn to_direction(direction: ParameterDirection) -> Direction {
    if direction == ParameterDirection::TO_HOST {
        Direction::ToHost
    } else if direction == ParameterDirection::FROM_HOST {
        Direction::FromHost
    } else {
        Direction::Both
    }
}

/// Host bytes charged for a scatter list of `n` segments.
fn segment_cost(n: usize) -> u64 {
    (n * size_of::<(GuestAddress, usize)>()) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAM: usize = 1 << 20;

    fn memory() -> Arc<GuestMemoryMmap> {
        Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), RAM)]).unwrap())
    }

    fn encode(p: HgcmParameter) -> [u8; 16] {
        let mut out = [0u8; 16];
        p.encode(Width::W64, &mut out).unwrap();
        out
    }

    fn descriptor(flags: u32, first: u16, pages: &[u64]) -> Vec<u8> {
        let mut out = flags.to_le_bytes().to_vec();
        out.extend_from_slice(&first.to_le_bytes());
        out.extend_from_slice(&(pages.len() as u16).to_le_bytes());
        pages
            .iter()
            .for_each(|p| out.extend_from_slice(&p.to_le_bytes()));
        out
    }

    /// A Call64 image: 44-byte header (only its size matters here), parameters, extra area.
    fn call(params: &[[u8; 16]], extra: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0u8; 44];
        params.iter().for_each(|p| bytes.extend_from_slice(p));
        bytes.extend_from_slice(extra);
        bytes
    }

    fn parse(request: &[u8], count: u32) -> Result<ParsedParams, ParamError> {
        let mem = memory();
        parse_params(&CallLayout {
            request,
            wide: true,
            count,
            mem: &mem,
            translator: None,
            max_call_bytes: 128 << 20,
        })
    }

    #[test]
    fn values_record_where_outputs_go() {
        let request = call(
            &[
                encode(HgcmParameter::U32(7)),
                encode(HgcmParameter::U64(1 << 40)),
            ],
            &[],
        );
        let parsed = parse(&request, 2).unwrap();
        assert_eq!(parsed.params[0].as_u32(), Some(7));
        assert_eq!(parsed.params[1].as_u64(), Some(1 << 40));
        assert_eq!(
            parsed.outputs,
            [
                OutputSlot::Value32 { offset: 48 },
                OutputSlot::Value64 { offset: 64 }
            ]
        );
    }

    #[test]
    fn page_list_starts_at_the_first_page_offset_and_merges_adjacent_pages() {
        let extra = descriptor(3, 0x800, &[0x4000, 0x5000, 0x9000]);
        let request = call(
            &[encode(HgcmParameter::PageList {
                kind: ParameterType::PAGE_LIST,
                size: 0x1C00,
                offset: 60,
            })],
            &extra,
        );
        let parsed = parse(&request, 1).unwrap();
        let buffer = parsed.params[0].as_buffer().unwrap();
        assert_eq!(buffer.len(), 0x1C00);
        assert_eq!(buffer.direction(), Direction::Both);
        let list = PageList::parse(&request, 0, 60, 60).unwrap();
        let segments = list.segments(0, ParameterType::PAGE_LIST, 0x1C00).unwrap();
        assert_eq!(
            segments,
            [
                (GuestAddress(0x4800), 0x1800),
                (GuestAddress(0x9000), 0x400)
            ]
        );
        assert_eq!(
            parsed.outputs,
            [OutputSlot::None],
            "page list sizes are not reported"
        );
    }

    #[test]
    fn contiguous_page_list_reports_its_size() {
        let request = call(
            &[encode(HgcmParameter::PageList {
                kind: ParameterType::CONTIGUOUS_PAGE_LIST,
                size: 0x3000,
                offset: 60,
            })],
            &descriptor(2, 0x10, &[0x8000]),
        );
        let parsed = parse(&request, 1).unwrap();
        assert_eq!(parsed.params[0].as_buffer().map(Buffer::len), Some(0x3000));
        assert_eq!(
            parsed.outputs,
            [OutputSlot::ReportedSize {
                size_offset: 48,
                capacity: 0x3000
            }]
        );
    }

    #[test]
    fn no_bounce_first_page_may_carry_the_offset() {
        let request = call(
            &[encode(HgcmParameter::PageList {
                kind: ParameterType::NO_BOUNCE_PAGE_LIST,
                size: 0x1000,
                offset: 60,
            })],
            &descriptor(1, 0x20, &[0x8020, 0x9000]),
        );
        assert!(parse(&request, 1).is_ok());
    }

    #[test]
    fn embedded_to_host_data_is_copied_from_the_request() {
        let request = call(
            &[encode(HgcmParameter::Embedded {
                flags: 3,
                offset: 60,
                size: 4,
            })],
            b"abcd",
        );
        let parsed = parse(&request, 1).unwrap();
        let buffer = parsed.params[0].as_buffer().unwrap();
        assert_eq!(buffer.copy_in(16).unwrap(), b"abcd");
        assert_eq!(parsed.host_bytes, 4);
        assert_eq!(
            parsed.outputs,
            [OutputSlot::Embedded {
                size_offset: 52,
                data_offset: 60,
                capacity: 4,
                from_host: true
            }]
        );
    }

    #[test]
    fn embedded_from_host_only_starts_zeroed() {
        let request = call(
            &[encode(HgcmParameter::Embedded {
                flags: 2,
                offset: 60,
                size: 4,
            })],
            b"abcd",
        );
        let parsed = parse(&request, 1).unwrap();
        let buffer = parsed.params[0].as_buffer().unwrap();
        let mut data = [0xEE; 4];
        buffer.read_at(0, &mut data).unwrap();
        assert_eq!(data, [0; 4]);
    }

    #[test]
    fn buffers_over_the_call_limit_are_too_much_data() {
        let mem = memory();
        let request = call(
            &[
                encode(HgcmParameter::Embedded {
                    flags: 1,
                    offset: 76,
                    size: 8,
                }),
                encode(HgcmParameter::Embedded {
                    flags: 1,
                    offset: 76,
                    size: 8,
                }),
            ],
            &[0; 8],
        );
        let result = parse_params(&CallLayout {
            request: &request,
            wide: true,
            count: 2,
            mem: &mem,
            translator: None,
            max_call_bytes: 12,
        });
        assert_eq!(
            result.map(|_| ()),
            Err(ParamError::TooMuchData { bytes: 16 })
        );
    }

    struct Offset(u64);

    impl GuestVirtualTranslator for Offset {
        fn translate(&self, gva: u64) -> Option<GuestAddress> {
            gva.checked_sub(self.0).map(GuestAddress)
        }
    }

    #[test]
    fn lin_addr_buffers_go_through_the_translator() {
        let mem = memory();
        let request = call(
            &[encode(HgcmParameter::LinAddr {
                kind: ParameterType::LIN_ADDR_OUT,
                size: 0x2000,
                addr: 0x7000_1800,
            })],
            &[],
        );
        let translator = Offset(0x7000_0000);
        let parsed = parse_params(&CallLayout {
            request: &request,
            wide: true,
            count: 1,
            mem: &mem,
            translator: Some(&translator),
            max_call_bytes: 128 << 20,
        })
        .unwrap();
        let buffer = parsed.params[0].as_buffer().unwrap();
        assert_eq!(buffer.len(), 0x2000);
        assert_eq!(buffer.direction(), Direction::FromHost);
    }

    #[test]
    fn call32_parameters_are_twelve_bytes_wide() {
        let mem = memory();
        let mut request = vec![0u8; 44];
        for value in [5u32, 6] {
            let mut p = [0u8; 12];
            HgcmParameter::U32(value)
                .encode(Width::W32, &mut p)
                .unwrap();
            request.extend_from_slice(&p);
        }
        let parsed = parse_params(&CallLayout {
            request: &request,
            wide: false,
            count: 2,
            mem: &mem,
            translator: None,
            max_call_bytes: 128 << 20,
        })
        .unwrap();
        assert_eq!(parsed.params[1].as_u32(), Some(6));
        assert_eq!(parsed.outputs[1], OutputSlot::Value32 { offset: 60 });
    }

    #[test]
    fn error_statuses_match_virtualbox() {
        assert_eq!(
            ParamError::BadFlags { index: 0, flags: 0 }.status(),
            Status::VERR_INVALID_FLAGS
        );
        assert_eq!(
            ParamError::MisalignedPage {
                index: 0,
                address: 1
            }
            .status(),
            Status::VERR_INVALID_POINTER
        );
        assert_eq!(
            ParamError::NoTranslator { index: 0 }.status(),
            Status::VERR_NOT_SUPPORTED
        );
        assert_eq!(
            ParamError::BadCount { count: 33 }.status(),
            Status::VERR_INVALID_PARAMETER
        );
    }
}
