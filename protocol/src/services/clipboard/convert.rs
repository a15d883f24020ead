//! Conversions between the shared clipboard's wire encodings and the forms programs on either
//! side exchange, used by the host service and by the guest library alike.
//!
//! | Format | Wire | Program side |
//! |---|---|---|
//! | Unicode text | UTF-16LE, CRLF line ends, one terminating NUL unit counted in the size | UTF-8, LF line ends |
//! | HTML | UTF-8 followed by one NUL | the HTML bytes |
//! | Bitmap | the DIB alone (`BITMAPINFOHEADER` or later, masks, colour table, pixels) | a BMP file (`BITMAPFILEHEADER` + DIB) |
//!
//! Everything read here may come from the other side of the VM boundary: the decoders never
//! panic, size what they allocate by their input, and tolerate what real peers send (a leading
//! little-endian BOM, a missing terminator, text after the first NUL, which is dropped, an odd
//! trailing byte, which is ignored as VirtualBox's readers ignore it).
//!
//! Needs the `alloc` feature.

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;

/// Clipboard data that cannot be converted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvertError {
    /// UTF-16 text that starts with a big-endian byte-order mark; the wire is little-endian.
    BigEndianText,
    /// Program-side data that is not a usable BMP file.
    NotBmp(&'static str),
    /// A DIB whose header is malformed or contradicts its size.
    Dib(&'static str),
}

impl core::fmt::Display for ConvertError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BigEndianText => f.write_str("text starts with a big-endian byte-order mark"),
            Self::NotBmp(why) => write!(f, "not a BMP file: {why}"),
            Self::Dib(why) => write!(f, "malformed bitmap: {why}"),
        }
    }
}

impl core::error::Error for ConvertError {}

/// The size of a BMP file's `BITMAPFILEHEADER`.
pub const BMP_FILE_HEADER_SIZE: usize = 14;
/// The size of a `BITMAPINFOHEADER`, the smallest DIB header the clipboard carries.
pub const DIB_INFO_HEADER_SIZE: usize = 40;
/// The DIB header sizes Windows defines from `BITMAPINFOHEADER` on (`BITMAPCOREHEADER`s are
/// refused).
const DIB_HEADER_SIZES: [usize; 5] = [40, 52, 56, 108, 124];

const UTF16_BOM_LE: [u8; 2] = [0xFF, 0xFE];
const UTF16_BOM_BE: [u8; 2] = [0xFE, 0xFF];

/// `BI_BITFIELDS`: three colour masks follow a 40-byte header.
const BI_BITFIELDS: u32 = 3;
/// `BI_ALPHABITFIELDS`: four colour masks follow a 40-byte header.
const BI_ALPHABITFIELDS: u32 = 6;

/// UTF-8 text to the wire: LF becomes CRLF (an existing CRLF stays one), UTF-16LE, a NUL unit.
pub fn text_to_wire(text: &str) -> Vec<u8> {
    let mut wire = alloc::vec![0u8; text_wire_len(text)];
    // The vector is zeroed, so an ASCII character only needs its low byte written; the sizes
    // come from `text_wire_len`, so the slots always exist (`get_mut` keeps that unchecked).
    let mut at = 0;
    let mut put = |unit: u16| {
        if let Some(slot) = wire.get_mut(at..at + 2) {
            slot.copy_from_slice(&unit.to_le_bytes());
        }
        at += 2;
    };
    let mut after_cr = false;
    let mut rest = text;
    // ASCII runs (most text) take a byte loop; other runs go through the UTF-16 encoder. Both
    // split points are character boundaries: ASCII bytes never occur inside a multi-byte one.
    while !rest.is_empty() {
        let ascii = rest
            .bytes()
            .position(|b| !b.is_ascii())
            .unwrap_or(rest.len());
        let Some((run, tail)) = rest.split_at_checked(ascii) else {
            break;
        };
        for &byte in run.as_bytes() {
            if byte == b'\n' && !after_cr {
                put(u16::from(b'\r'));
            }
            put(u16::from(byte));
            after_cr = byte == b'\r';
        }
        let other = tail
            .bytes()
            .position(|b| b.is_ascii())
            .unwrap_or(tail.len());
        let Some((run, tail)) = tail.split_at_checked(other) else {
            break;
        };
        for unit in run.encode_utf16() {
            put(unit);
            after_cr = false;
        }
        rest = tail;
    }
    wire
}

/// The length of [`text_to_wire`]'s result, computed without converting (what a reader that
/// offered too small a buffer is told to retry with).
pub fn text_wire_len(text: &str) -> usize {
    // One UTF-16 unit per character, two for the four-byte ones, one more per bare LF.
    let mut units = 1;
    let mut previous = 0u8;
    for &byte in text.as_bytes() {
        units += usize::from(byte & 0xC0 != 0x80)
            + usize::from(byte >= 0xF0)
            + usize::from(byte == b'\n' && previous != b'\r');
        previous = byte;
    }
    units * 2
}

/// Wire text to UTF-8: skips a little-endian BOM, stops at the first NUL unit (an odd trailing
/// byte is ignored), CRLF becomes LF, unpaired surrogates become U+FFFD (Windows clipboards can
/// hold them).
pub fn text_from_wire(wire: &[u8]) -> Result<String, ConvertError> {
    let body = match wire.get(..2) {
        Some(bom) if bom == UTF16_BOM_BE => return Err(ConvertError::BigEndianText),
        Some(bom) if bom == UTF16_BOM_LE => wire.get(2..).unwrap_or_default(),
        _ => wire,
    };
    let units: Vec<u16> = body
        .chunks_exact(2)
        .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
        .take_while(|&unit| unit != 0)
        .collect();
    let (cr, lf) = (u16::from(b'\r'), u16::from(b'\n'));
    let mut utf8 = Vec::with_capacity(units.len());
    let mut at = 0;
    // ASCII units (most text) are copied as bytes; other runs go through the UTF-16 decoder.
    while let Some(&unit) = units.get(at) {
        if unit < 0x80 {
            let crlf = unit == cr && units.get(at + 1) == Some(&lf);
            if !crlf {
                utf8.push(unit as u8);
            }
            at += 1;
            continue;
        }
        let rest = units.get(at..).unwrap_or_default();
        let run = rest.iter().position(|&u| u < 0x80).unwrap_or(rest.len());
        let mut encoded = [0; 4];
        for c in char::decode_utf16(rest.iter().take(run).copied()) {
            let c = c.unwrap_or(char::REPLACEMENT_CHARACTER);
            utf8.extend_from_slice(c.encode_utf8(&mut encoded).as_bytes());
        }
        at += run;
    }
    // Valid by construction; the fallback only guards the construction.
    Ok(String::from_utf8(utf8)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

/// HTML to the wire: its bytes and exactly one terminating NUL (a NUL it already ends with is
/// not doubled).
pub fn html_to_wire(html: &[u8]) -> Vec<u8> {
    let content = html.strip_suffix(&[0]).unwrap_or(html);
    let mut wire = Vec::with_capacity(content.len().saturating_add(1));
    wire.extend_from_slice(content);
    wire.push(0);
    wire
}

/// Wire HTML to its bytes: up to the first NUL. HTML that a peer sent as UTF-16 with a
/// little-endian BOM (as some Windows peers do) is converted to UTF-8; a big-endian BOM is
/// refused. Other bytes are passed on as they are, valid UTF-8 or not.
pub fn html_from_wire(wire: &[u8]) -> Result<Vec<u8>, ConvertError> {
    if wire.starts_with(&UTF16_BOM_LE) {
        return text_from_wire(wire).map(String::into_bytes);
    }
    if wire.starts_with(&UTF16_BOM_BE) {
        return Err(ConvertError::BigEndianText);
    }
    let end = wire.iter().position(|&b| b == 0).unwrap_or(wire.len());
    Ok(wire.get(..end).unwrap_or_default().to_vec())
}

fn le_u16(bytes: &[u8], offset: usize) -> Option<u16> {
    let raw = bytes.get(offset..offset.checked_add(2)?)?;
    Some(u16::from_le_bytes(raw.try_into().ok()?))
}

fn le_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    let raw = bytes.get(offset..offset.checked_add(4)?)?;
    Some(u32::from_le_bytes(raw.try_into().ok()?))
}

/// Where a DIB's pixels start, counted from the start of the DIB (header, masks and colour
/// table); checks the header against the DIB's length.
fn dib_pixel_offset(dib: &[u8]) -> Result<usize, ConvertError> {
    let header_len = le_u32(dib, 0)
        .and_then(|len| usize::try_from(len).ok())
        .ok_or(ConvertError::Dib("shorter than its header"))?;
    if !DIB_HEADER_SIZES.contains(&header_len) {
        return Err(ConvertError::Dib("unsupported header size"));
    }
    if dib.len() < header_len {
        return Err(ConvertError::Dib("shorter than its header"));
    }
    let bit_count = le_u16(dib, 14).ok_or(ConvertError::Dib("truncated header"))?;
    let compression = le_u32(dib, 16).ok_or(ConvertError::Dib("truncated header"))?;
    let colours_used = le_u32(dib, 32).ok_or(ConvertError::Dib("truncated header"))?;
    if !matches!(bit_count, 1 | 4 | 8 | 16 | 24 | 32) {
        return Err(ConvertError::Dib("unsupported bit count"));
    }
    let palette_entries = match colours_used {
        0 if bit_count <= 8 => 1usize << bit_count,
        n => usize::try_from(n).unwrap_or(usize::MAX),
    };
    // A 40-byte header is followed by the channel masks when the compression says so; larger
    // headers contain them.
    let masks = match compression {
        BI_BITFIELDS if header_len == DIB_INFO_HEADER_SIZE => 12,
        BI_ALPHABITFIELDS if header_len == DIB_INFO_HEADER_SIZE => 16,
        _ => 0,
    };
    palette_entries
        .checked_mul(4)
        .and_then(|table| table.checked_add(header_len + masks))
        .filter(|&offset| offset <= dib.len())
        .ok_or(ConvertError::Dib("colour table beyond the data"))
}

/// A wire DIB to a BMP file: the 14-byte file header put in front, pointing at the pixels.
pub fn dib_to_bmp(dib: &[u8]) -> Result<Vec<u8>, ConvertError> {
    let too_large = || ConvertError::Dib("too large for a BMP file");
    let pixels = dib_pixel_offset(dib)?;
    let file_len = dib
        .len()
        .checked_add(BMP_FILE_HEADER_SIZE)
        .and_then(|len| u32::try_from(len).ok())
        .ok_or_else(too_large)?;
    let pixels = u32::try_from(pixels + BMP_FILE_HEADER_SIZE).map_err(|_| too_large())?;
    let mut bmp = Vec::with_capacity(BMP_FILE_HEADER_SIZE + dib.len());
    bmp.extend_from_slice(b"BM");
    bmp.extend_from_slice(&file_len.to_le_bytes());
    bmp.extend_from_slice(&[0; 4]);
    bmp.extend_from_slice(&pixels.to_le_bytes());
    bmp.extend_from_slice(dib);
    Ok(bmp)
}

/// A BMP file to the wire DIB, after checking both headers: the file header goes, and a gap
/// that some writers leave between the colour table and the pixels is closed. Borrows from
/// `bmp` unless there is a gap to close.
pub fn bmp_to_dib(bmp: &[u8]) -> Result<Cow<'_, [u8]>, ConvertError> {
    if !bmp.starts_with(b"BM") {
        return Err(ConvertError::NotBmp("no \"BM\" signature"));
    }
    let pixels_at = le_u32(bmp, 10)
        .and_then(|offset| usize::try_from(offset).ok())
        .ok_or(ConvertError::NotBmp("shorter than its file header"))?;
    let dib = bmp
        .get(BMP_FILE_HEADER_SIZE..)
        .ok_or(ConvertError::NotBmp("shorter than its file header"))?;
    let pixel_offset = dib_pixel_offset(dib)?;
    let gap = pixels_at
        .checked_sub(BMP_FILE_HEADER_SIZE + pixel_offset)
        .ok_or(ConvertError::NotBmp(
            "pixel offset points into the colour table",
        ))?;
    if gap == 0 {
        return Ok(Cow::Borrowed(dib));
    }
    let pixels = bmp.get(pixels_at..).ok_or(ConvertError::NotBmp(
        "pixel offset past the end of the file",
    ))?;
    let mut compact = Vec::with_capacity(pixel_offset + pixels.len());
    compact.extend_from_slice(dib.get(..pixel_offset).unwrap_or_default());
    compact.extend_from_slice(pixels);
    Ok(Cow::Owned(compact))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16(text: &str) -> Vec<u8> {
        text.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }

    /// A 2x1 24-bit DIB: a 40-byte header and one row of two pixels padded to 8 bytes.
    fn dib_24bit() -> Vec<u8> {
        let mut dib = Vec::new();
        dib.extend_from_slice(&40u32.to_le_bytes());
        dib.extend_from_slice(&2i32.to_le_bytes());
        dib.extend_from_slice(&1i32.to_le_bytes());
        dib.extend_from_slice(&1u16.to_le_bytes());
        dib.extend_from_slice(&24u16.to_le_bytes());
        dib.extend_from_slice(&[0; 24]);
        dib.extend_from_slice(&[0, 0, 0xFF, 0, 0xFF, 0, 0, 0]);
        dib
    }

    /// A 1x1 8-bit DIB with a two-colour table.
    fn dib_8bit_two_colours() -> Vec<u8> {
        let mut dib = dib_24bit();
        dib[14..16].copy_from_slice(&8u16.to_le_bytes());
        dib[32..36].copy_from_slice(&2u32.to_le_bytes());
        dib.truncate(40);
        dib.extend_from_slice(&[1, 2, 3, 0, 4, 5, 6, 0]);
        dib.extend_from_slice(&[1, 0, 0, 0]);
        dib
    }

    #[test]
    fn text_goes_to_the_wire_as_utf16_with_crlf_and_a_nul() {
        assert_eq!(text_to_wire("a\nb"), utf16("a\r\nb\0"));
        assert_eq!(text_to_wire("a\r\nb"), utf16("a\r\nb\0"));
        assert_eq!(text_to_wire("a\nb\r\nc"), utf16("a\r\nb\r\nc\0"));
        assert_eq!(text_to_wire(""), [0, 0]);
    }

    #[test]
    fn wire_length_is_known_without_converting() {
        for text in ["", "a\nb", "a\r\nb\n", "Grüße 🦀\n\n", "é\n"] {
            assert_eq!(text_wire_len(text), text_to_wire(text).len(), "{text:?}");
        }
    }

    #[test]
    fn non_ascii_text_round_trips() {
        let text = "Grüße, 世界, 🦀\nzweite Zeile\n";
        assert_eq!(text_from_wire(&text_to_wire(text)), Ok(text.into()));
    }

    #[test]
    fn wire_text_stops_at_the_first_nul_and_skips_a_little_endian_bom() {
        let mut wire = alloc::vec![0xFF, 0xFE];
        wire.extend(utf16("hi\r\n\0ignored"));
        wire.push(0xAA);
        assert_eq!(text_from_wire(&wire), Ok("hi\n".into()));
    }

    #[test]
    fn wire_text_without_a_terminator_is_read_to_its_end() {
        assert_eq!(text_from_wire(&utf16("no nul")), Ok("no nul".into()));
    }

    #[test]
    fn empty_wire_text_is_empty() {
        assert_eq!(text_from_wire(&[]), Ok(String::new()));
        assert_eq!(text_from_wire(&[0, 0]), Ok(String::new()));
    }

    #[test]
    fn lone_carriage_returns_survive_and_crlf_becomes_lf() {
        assert_eq!(
            text_from_wire(&utf16("a\rb\r\nc\r")),
            Ok("a\rb\nc\r".into())
        );
        assert_eq!(text_to_wire("a\rb"), utf16("a\rb\0"));
    }

    #[test]
    fn wire_text_with_a_big_endian_bom_is_refused() {
        assert_eq!(
            text_from_wire(&[0xFE, 0xFF, 0, b'a']),
            Err(ConvertError::BigEndianText)
        );
    }

    #[test]
    fn wire_text_with_an_odd_length_and_lone_surrogates_still_decodes() {
        let mut wire = utf16("ok");
        wire.extend_from_slice(&0xD800u16.to_le_bytes());
        wire.push(b'x');
        assert_eq!(text_from_wire(&wire), Ok("ok\u{FFFD}".into()));
    }

    #[test]
    fn html_gets_exactly_one_terminating_nul() {
        assert_eq!(html_to_wire(b"<b>x</b>"), b"<b>x</b>\0");
        assert_eq!(html_to_wire(b"<b>x</b>\0"), b"<b>x</b>\0");
    }

    #[test]
    fn wire_html_ends_at_the_nul_and_keeps_its_bytes() {
        assert_eq!(html_from_wire(b"<i>y</i>\0junk"), Ok(b"<i>y</i>".to_vec()));
        assert_eq!(html_from_wire(b"<i>y</i>"), Ok(b"<i>y</i>".to_vec()));
        assert_eq!(html_from_wire(b"<i>\xff</i>"), Ok(b"<i>\xff</i>".to_vec()));
    }

    #[test]
    fn utf16_html_with_a_bom_becomes_utf8() {
        let wire = utf16("\u{FEFF}<p>ä</p>\0");
        assert_eq!(html_from_wire(&wire), Ok("<p>ä</p>".as_bytes().to_vec()));
        assert_eq!(
            html_from_wire(&[0xFE, 0xFF, 0, b'<']),
            Err(ConvertError::BigEndianText)
        );
    }

    #[test]
    fn dib_gains_a_file_header_pointing_at_the_pixels() {
        let dib = dib_24bit();
        let bmp = dib_to_bmp(&dib).expect("valid DIB");
        assert_eq!(&bmp[..2], b"BM");
        assert_eq!(le_u32(&bmp, 2), Some(14 + dib.len() as u32));
        assert_eq!(le_u32(&bmp, 10), Some(54));
        assert_eq!(&bmp[14..], &dib[..]);
    }

    #[test]
    fn the_pixel_offset_counts_the_colour_table() {
        let bmp = dib_to_bmp(&dib_8bit_two_colours()).expect("valid DIB");
        assert_eq!(le_u32(&bmp, 10), Some(14 + 40 + 8));
        let mut full_palette = dib_24bit();
        full_palette[14] = 8;
        full_palette.extend_from_slice(&[0; 1024]);
        assert_eq!(dib_pixel_offset(&full_palette), Ok(40 + 1024));
    }

    #[test]
    fn the_pixel_offset_counts_bitfield_masks() {
        let mut dib = dib_24bit();
        dib[14..16].copy_from_slice(&32u16.to_le_bytes());
        dib[16..20].copy_from_slice(&BI_BITFIELDS.to_le_bytes());
        dib.truncate(40);
        dib.extend_from_slice(&[0; 12 + 4]);
        let bmp = dib_to_bmp(&dib).expect("valid DIB");
        assert_eq!(le_u32(&bmp, 10), Some(14 + 40 + 12));
    }

    #[test]
    fn bmp_and_dib_round_trip_without_copying() {
        for dib in [dib_24bit(), dib_8bit_two_colours()] {
            let bmp = dib_to_bmp(&dib).expect("valid DIB");
            let back = bmp_to_dib(&bmp).expect("valid BMP");
            assert!(matches!(back, Cow::Borrowed(_)));
            assert_eq!(back, dib);
        }
    }

    #[test]
    fn bmp_to_dib_closes_a_gap_before_the_pixels() {
        let dib = dib_24bit();
        let mut bmp = dib_to_bmp(&dib).expect("valid DIB");
        bmp[10..14].copy_from_slice(&(54u32 + 6).to_le_bytes());
        bmp.splice(54..54, [0xEE; 6]);
        assert_eq!(bmp_to_dib(&bmp).expect("valid BMP"), dib);
    }

    #[test]
    fn bmp_to_dib_refuses_what_is_not_a_bmp() {
        assert!(matches!(
            bmp_to_dib(b"\x89PNG\r\n\x1a\n"),
            Err(ConvertError::NotBmp(_))
        ));
        assert!(matches!(bmp_to_dib(b"BM"), Err(ConvertError::NotBmp(_))));
    }

    #[test]
    fn a_pixel_offset_inside_the_header_is_refused() {
        let mut bmp = dib_to_bmp(&dib_24bit()).expect("valid DIB");
        bmp[10..14].copy_from_slice(&20u32.to_le_bytes());
        assert!(matches!(bmp_to_dib(&bmp), Err(ConvertError::NotBmp(_))));
    }

    #[test]
    fn a_pixel_offset_past_the_end_is_refused() {
        let mut bmp = dib_to_bmp(&dib_24bit()).expect("valid DIB");
        bmp[10..14].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(bmp_to_dib(&bmp), Err(ConvertError::NotBmp(_))));
    }

    #[test]
    fn dibs_with_impossible_headers_are_refused() {
        let mut core_header = dib_24bit();
        core_header[0..4].copy_from_slice(&12u32.to_le_bytes());
        let mut odd_header = dib_24bit();
        odd_header[0..4].copy_from_slice(&41u32.to_le_bytes());
        let mut huge_table = dib_24bit();
        huge_table[32..36].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut bad_depth = dib_24bit();
        bad_depth[14] = 7;
        let mut truncated = dib_24bit();
        truncated.truncate(30);
        for dib in [
            Vec::new(),
            12u32.to_le_bytes().to_vec(),
            core_header,
            odd_header,
            huge_table,
            bad_depth,
            truncated,
        ] {
            assert!(
                matches!(dib_to_bmp(&dib), Err(ConvertError::Dib(_))),
                "{dib:?}"
            );
        }
    }
}
