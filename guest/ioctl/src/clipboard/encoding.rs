//! The wire encodings of the shared clipboard's formats, converted to and from what guest users
//! and programs exchange.
//!
//! | Format | On the wire | For the user |
//! |---|---|---|
//! | Unicode text | UTF-16LE, CRLF line ends, one terminating NUL code unit | UTF-8, LF line ends |
//! | HTML | UTF-8, normally NUL-terminated | the HTML bytes |
//! | Bitmap | a Windows DIB: `BITMAPINFOHEADER`, masks, colour table, pixels | a BMP file (the DIB behind a 14-byte file header) |
//!
//! Everything that comes from the host is untrusted: every conversion bounds its reads by the
//! input and reports a malformed input as an [`EncodingError`] instead of panicking.

use std::borrow::Cow;

use super::Format;

/// The size of a BMP file's `BITMAPFILEHEADER`.
pub const BMP_FILE_HEADER_SIZE: usize = 14;
/// The size of a `BITMAPINFOHEADER`, the smallest DIB header the clipboard carries.
pub const DIB_INFO_HEADER_SIZE: usize = 40;
/// The largest DIB header this module knows (`BITMAPV5HEADER`).
const DIB_V5_HEADER_SIZE: usize = 124;

/// The UTF-16 byte-order mark as a code unit.
const BOM: u16 = 0xFEFF;
/// A byte-swapped byte-order mark: the text is big-endian.
const SWAPPED_BOM: u16 = 0xFFFE;

/// `BI_BITFIELDS`: three colour masks follow a 40-byte header.
const BI_BITFIELDS: u32 = 3;
/// `BI_ALPHABITFIELDS`: four colour masks follow a 40-byte header.
const BI_ALPHABITFIELDS: u32 = 6;

/// Clipboard data that cannot be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodingError {
    /// UTF-16 text with an odd number of bytes before its terminator.
    #[error("UTF-16 text of odd length ({0} bytes)")]
    OddLength(usize),
    /// UTF-16 text that starts with a big-endian byte-order mark; the wire carries little-endian.
    #[error("UTF-16 text is big-endian (byte-order mark FE FF)")]
    BigEndian,
    /// Input that is not a BMP file.
    #[error("not a BMP file: {0}")]
    NotBmp(&'static str),
    /// A DIB whose header contradicts its size.
    #[error("malformed DIB: {0}")]
    BadDib(&'static str),
}

/// Converts data as guest users and programs exchange it (UTF-8 text, HTML, a BMP file) into the
/// wire encoding of `format`. Text that is not UTF-8 is read as Latin-1.
pub fn to_wire(format: Format, data: &[u8]) -> Result<Vec<u8>, EncodingError> {
    match format {
        Format::UnicodeText => Ok(text_to_wire(&bytes_to_text(data))),
        Format::Html => Ok(html_to_wire(data)),
        Format::Bitmap => bmp_to_dib(data),
    }
}

/// Converts data in the wire encoding of `format` into what guest users and programs exchange:
/// UTF-8 text with LF line ends, HTML, a BMP file.
pub fn from_wire(format: Format, wire: &[u8]) -> Result<Vec<u8>, EncodingError> {
    match format {
        Format::UnicodeText => text_from_wire(wire).map(String::into_bytes),
        Format::Html => html_from_wire(wire),
        Format::Bitmap => dib_to_bmp(wire),
    }
}

/// Converts UTF-8 text into the wire's UTF-16LE with CRLF line ends and a terminating NUL.
///
/// A lone LF becomes CRLF; a CRLF already in the text is kept as it is.
pub fn text_to_wire(text: &str) -> Vec<u8> {
    let mut wire = Vec::with_capacity(text.len().saturating_mul(2).saturating_add(2));
    let mut previous = 0u16;
    for unit in text.encode_utf16() {
        if unit == u16::from(b'\n') && previous != u16::from(b'\r') {
            wire.extend_from_slice(&u16::from(b'\r').to_le_bytes());
        }
        wire.extend_from_slice(&unit.to_le_bytes());
        previous = unit;
    }
    wire.extend_from_slice(&[0, 0]);
    wire
}

/// Converts wire text into UTF-8 with LF line ends.
///
/// The text ends at the first NUL code unit (or with the data); a leading little-endian
/// byte-order mark is skipped. Unpaired surrogates become U+FFFD, as Windows clipboards can
/// hold them.
pub fn text_from_wire(wire: &[u8]) -> Result<String, EncodingError> {
    let mut units = Vec::with_capacity(wire.len() / 2);
    let mut pairs = wire.chunks_exact(2);
    let mut terminated = false;
    for pair in &mut pairs {
        let unit = u16::from_le_bytes([pair[0], pair[1]]);
        if unit == 0 {
            terminated = true;
            break;
        }
        units.push(unit);
    }
    if !terminated && !pairs.remainder().is_empty() {
        return Err(EncodingError::OddLength(wire.len()));
    }
    let units = match units.first() {
        Some(&BOM) => units.get(1..).unwrap_or_default(),
        Some(&SWAPPED_BOM) => return Err(EncodingError::BigEndian),
        _ => &units[..],
    };
    let mut text = String::with_capacity(units.len());
    for decoded in char::decode_utf16(units.iter().copied()) {
        text.push(decoded.unwrap_or(char::REPLACEMENT_CHARACTER));
    }
    Ok(text.replace("\r\n", "\n"))
}

/// Reads bytes as text: UTF-8 when they are, Latin-1 otherwise (what X11 clipboard owners
/// usually mean by a non-UTF-8 string).
pub fn bytes_to_text(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => Cow::Owned(bytes.iter().map(|&byte| char::from(byte)).collect()),
    }
}

/// Puts HTML on the wire: the bytes with one terminating NUL.
pub fn html_to_wire(html: &[u8]) -> Vec<u8> {
    let content = html.strip_suffix(&[0]).unwrap_or(html);
    let mut wire = Vec::with_capacity(content.len() + 1);
    wire.extend_from_slice(content);
    wire.push(0);
    wire
}

/// Takes HTML off the wire: the bytes up to the first NUL. HTML that a peer sent as UTF-16 with
/// a byte-order mark is converted to UTF-8.
pub fn html_from_wire(wire: &[u8]) -> Result<Vec<u8>, EncodingError> {
    if wire.starts_with(&BOM.to_le_bytes()) {
        return text_from_wire(wire).map(String::into_bytes);
    }
    if wire.starts_with(&SWAPPED_BOM.to_le_bytes()) {
        return Err(EncodingError::BigEndian);
    }
    let end = wire
        .iter()
        .position(|&byte| byte == 0)
        .unwrap_or(wire.len());
    Ok(wire.get(..end).unwrap_or_default().to_vec())
}

/// The parts of a DIB header the conversions need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DibLayout {
    /// Offset of the pixels from the start of the DIB: header, masks and colour table.
    pixels_offset: usize,
}

impl DibLayout {
    /// Reads the layout of the DIB at the start of `dib` and checks it against `dib`'s length.
    fn parse(dib: &[u8]) -> Result<Self, EncodingError> {
        let header_size =
            read_u32(dib, 0).ok_or(EncodingError::BadDib("shorter than its header"))?;
        let header_size = usize::try_from(header_size)
            .ok()
            .filter(|size| (DIB_INFO_HEADER_SIZE..=DIB_V5_HEADER_SIZE).contains(size))
            .ok_or(EncodingError::BadDib(
                "header size is not that of a BITMAPINFOHEADER or a later version",
            ))?;
        if dib.len() < header_size {
            return Err(EncodingError::BadDib("shorter than its header"));
        }
        let bit_count = read_u16(dib, 14).ok_or(EncodingError::BadDib("no bit count"))?;
        let compression = read_u32(dib, 16).ok_or(EncodingError::BadDib("no compression"))?;
        let colours_used = read_u32(dib, 32).ok_or(EncodingError::BadDib("no colour count"))?;
        let masks = match (header_size, compression) {
            (DIB_INFO_HEADER_SIZE, BI_BITFIELDS) => 12,
            (DIB_INFO_HEADER_SIZE, BI_ALPHABITFIELDS) => 16,
            _ => 0,
        };
        let colours = match (colours_used, bit_count) {
            (0, 1..=8) => 1usize << bit_count,
            (0, _) => 0,
            (used, _) => usize::try_from(used).unwrap_or(usize::MAX),
        };
        let pixels_offset = colours
            .checked_mul(4)
            .and_then(|table| table.checked_add(header_size + masks))
            .filter(|&offset| offset <= dib.len())
            .ok_or(EncodingError::BadDib(
                "colour table runs past the end of the data",
            ))?;
        Ok(Self { pixels_offset })
    }
}

/// Converts a clipboard DIB into a BMP file by putting a file header in front of it.
pub fn dib_to_bmp(dib: &[u8]) -> Result<Vec<u8>, EncodingError> {
    let layout = DibLayout::parse(dib)?;
    let file_size = BMP_FILE_HEADER_SIZE
        .checked_add(dib.len())
        .and_then(|size| u32::try_from(size).ok())
        .ok_or(EncodingError::BadDib("too large for a BMP file"))?;
    let pixels_offset = u32::try_from(BMP_FILE_HEADER_SIZE + layout.pixels_offset)
        .map_err(|_| EncodingError::BadDib("too large for a BMP file"))?;
    let mut bmp = Vec::with_capacity(BMP_FILE_HEADER_SIZE + dib.len());
    bmp.extend_from_slice(b"BM");
    bmp.extend_from_slice(&file_size.to_le_bytes());
    bmp.extend_from_slice(&[0; 4]);
    bmp.extend_from_slice(&pixels_offset.to_le_bytes());
    bmp.extend_from_slice(dib);
    Ok(bmp)
}

/// Converts a BMP file into a clipboard DIB: the file header goes, and a gap that some writers
/// leave between the colour table and the pixels is closed.
pub fn bmp_to_dib(bmp: &[u8]) -> Result<Vec<u8>, EncodingError> {
    if !bmp.starts_with(b"BM") {
        return Err(EncodingError::NotBmp("no \"BM\" signature"));
    }
    let pixels_at = read_u32(bmp, 10)
        .and_then(|offset| usize::try_from(offset).ok())
        .ok_or(EncodingError::NotBmp("shorter than its file header"))?;
    let dib = bmp
        .get(BMP_FILE_HEADER_SIZE..)
        .ok_or(EncodingError::NotBmp("shorter than its file header"))?;
    let layout = DibLayout::parse(dib)?;
    let gap = pixels_at
        .checked_sub(BMP_FILE_HEADER_SIZE + layout.pixels_offset)
        .ok_or(EncodingError::NotBmp(
            "pixel offset points into the colour table",
        ))?;
    if gap == 0 {
        return Ok(dib.to_vec());
    }
    let pixels = bmp.get(pixels_at..).ok_or(EncodingError::NotBmp(
        "pixel offset past the end of the file",
    ))?;
    let mut compact = Vec::with_capacity(layout.pixels_offset + pixels.len());
    compact.extend_from_slice(dib.get(..layout.pixels_offset).unwrap_or_default());
    compact.extend_from_slice(pixels);
    Ok(compact)
}

fn read_u16(bytes: &[u8], offset: usize) -> Option<u16> {
    let field = bytes.get(offset..offset.checked_add(2)?)?;
    Some(u16::from_le_bytes(field.try_into().ok()?))
}

fn read_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    let field = bytes.get(offset..offset.checked_add(4)?)?;
    Some(u32::from_le_bytes(field.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16(text: &str) -> Vec<u8> {
        text.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }

    /// A 2x1 24-bit DIB: a 40-byte header and one padded row of 8 bytes.
    fn dib_24bit() -> Vec<u8> {
        let mut dib = Vec::new();
        dib.extend_from_slice(&40u32.to_le_bytes());
        dib.extend_from_slice(&2i32.to_le_bytes());
        dib.extend_from_slice(&1i32.to_le_bytes());
        dib.extend_from_slice(&1u16.to_le_bytes());
        dib.extend_from_slice(&24u16.to_le_bytes());
        dib.extend_from_slice(&[0; 24]);
        dib.extend_from_slice(&[0x00, 0x00, 0xFF, 0x00, 0xFF, 0x00, 0, 0]);
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
    fn every_format_round_trips_between_user_and_wire_forms() {
        let cases = [
            (Format::UnicodeText, "zwei\nZeilen äö".as_bytes().to_vec()),
            (Format::Html, b"<p>hi</p>".to_vec()),
            (Format::Bitmap, dib_to_bmp(&dib_24bit()).unwrap()),
        ];
        for (format, user) in cases {
            let wire = to_wire(format, &user).unwrap();
            assert_eq!(from_wire(format, &wire).unwrap(), user, "{format:?}");
        }
    }

    #[test]
    fn text_goes_on_the_wire_as_utf16_with_crlf_and_a_nul() {
        let wire = text_to_wire("a\nb\r\nc");
        assert_eq!(wire, utf16("a\r\nb\r\nc\0"));
    }

    #[test]
    fn non_ascii_text_survives_the_round_trip() {
        let text = "grüße, 日本語, 🦀\nline two\n";
        assert_eq!(text_from_wire(&text_to_wire(text)).unwrap(), text);
    }

    #[test]
    fn wire_text_ends_at_the_first_nul() {
        let mut wire = utf16("visible\0hidden");
        wire.push(0xAA);
        assert_eq!(text_from_wire(&wire).unwrap(), "visible");
    }

    #[test]
    fn wire_text_without_a_terminator_is_read_to_its_end() {
        assert_eq!(text_from_wire(&utf16("no nul")).unwrap(), "no nul");
    }

    #[test]
    fn wire_text_of_odd_length_is_refused() {
        let mut wire = utf16("ab");
        wire.push(b'c');
        assert_eq!(text_from_wire(&wire), Err(EncodingError::OddLength(5)));
    }

    #[test]
    fn a_little_endian_bom_is_skipped_and_a_big_endian_one_refused() {
        assert_eq!(text_from_wire(&utf16("\u{FEFF}x\0")).unwrap(), "x");
        assert_eq!(
            text_from_wire(&[0xFE, 0xFF, 0, b'x']),
            Err(EncodingError::BigEndian)
        );
    }

    #[test]
    fn unpaired_surrogates_become_replacement_characters() {
        let wire = [0x00, 0xD8, b'x', 0x00, 0x00, 0x00];
        assert_eq!(text_from_wire(&wire).unwrap(), "\u{FFFD}x");
    }

    #[test]
    fn empty_wire_text_is_empty() {
        assert_eq!(text_from_wire(&[]).unwrap(), "");
        assert_eq!(text_from_wire(&[0, 0]).unwrap(), "");
    }

    #[test]
    fn non_utf8_bytes_are_read_as_latin1() {
        assert_eq!(bytes_to_text(b"caf\xE9"), "café");
        assert_eq!(bytes_to_text("café".as_bytes()), "café");
    }

    #[test]
    fn html_gets_exactly_one_terminating_nul() {
        assert_eq!(html_to_wire(b"<b>x</b>"), b"<b>x</b>\0");
        assert_eq!(html_to_wire(b"<b>x</b>\0"), b"<b>x</b>\0");
    }

    #[test]
    fn wire_html_ends_at_the_nul() {
        assert_eq!(html_from_wire(b"<i>y</i>\0junk").unwrap(), b"<i>y</i>");
        assert_eq!(html_from_wire(b"<i>y</i>").unwrap(), b"<i>y</i>");
    }

    #[test]
    fn utf16_html_with_a_bom_becomes_utf8() {
        let wire = utf16("\u{FEFF}<p>ä</p>\0");
        assert_eq!(html_from_wire(&wire).unwrap(), "<p>ä</p>".as_bytes());
    }

    #[test]
    fn dib_to_bmp_adds_a_file_header_pointing_at_the_pixels() {
        let dib = dib_24bit();
        let bmp = dib_to_bmp(&dib).unwrap();
        assert_eq!(&bmp[..2], b"BM");
        assert_eq!(read_u32(&bmp, 2), Some(14 + dib.len() as u32));
        assert_eq!(read_u32(&bmp, 10), Some(54));
        assert_eq!(&bmp[14..], &dib[..]);
    }

    #[test]
    fn the_pixel_offset_counts_the_colour_table() {
        let bmp = dib_to_bmp(&dib_8bit_two_colours()).unwrap();
        assert_eq!(read_u32(&bmp, 10), Some(14 + 40 + 8));
    }

    #[test]
    fn the_pixel_offset_counts_bitfield_masks() {
        let mut dib = dib_24bit();
        dib[14..16].copy_from_slice(&32u16.to_le_bytes());
        dib[16..20].copy_from_slice(&BI_BITFIELDS.to_le_bytes());
        dib.truncate(40);
        dib.extend_from_slice(&[0; 12 + 4]);
        let bmp = dib_to_bmp(&dib).unwrap();
        assert_eq!(read_u32(&bmp, 10), Some(14 + 40 + 12));
    }

    #[test]
    fn bmp_and_dib_round_trip() {
        for dib in [dib_24bit(), dib_8bit_two_colours()] {
            assert_eq!(bmp_to_dib(&dib_to_bmp(&dib).unwrap()).unwrap(), dib);
        }
    }

    #[test]
    fn bmp_to_dib_closes_a_gap_before_the_pixels() {
        let dib = dib_24bit();
        let mut bmp = dib_to_bmp(&dib).unwrap();
        bmp[10..14].copy_from_slice(&(54u32 + 6).to_le_bytes());
        bmp.splice(54..54, [0xEE; 6]);
        assert_eq!(bmp_to_dib(&bmp).unwrap(), dib);
    }

    #[test]
    fn bmp_to_dib_refuses_what_is_not_a_bmp() {
        assert!(matches!(
            bmp_to_dib(b"\x89PNG\r\n\x1a\n"),
            Err(EncodingError::NotBmp(_))
        ));
        assert!(matches!(bmp_to_dib(b"BM"), Err(EncodingError::NotBmp(_))));
    }

    #[test]
    fn a_pixel_offset_inside_the_header_is_refused() {
        let mut bmp = dib_to_bmp(&dib_24bit()).unwrap();
        bmp[10..14].copy_from_slice(&20u32.to_le_bytes());
        assert!(matches!(bmp_to_dib(&bmp), Err(EncodingError::NotBmp(_))));
    }

    #[test]
    fn a_pixel_offset_past_the_end_is_refused() {
        let mut bmp = dib_to_bmp(&dib_24bit()).unwrap();
        bmp[10..14].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(bmp_to_dib(&bmp), Err(EncodingError::NotBmp(_))));
    }

    #[test]
    fn dibs_with_impossible_headers_are_refused() {
        assert!(matches!(dib_to_bmp(&[]), Err(EncodingError::BadDib(_))));
        let mut core_header = dib_24bit();
        core_header[0..4].copy_from_slice(&12u32.to_le_bytes());
        assert!(matches!(
            dib_to_bmp(&core_header),
            Err(EncodingError::BadDib(_))
        ));
        let mut huge_table = dib_24bit();
        huge_table[32..36].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            dib_to_bmp(&huge_table),
            Err(EncodingError::BadDib(_))
        ));
        let mut truncated = dib_24bit();
        truncated.truncate(30);
        assert!(matches!(
            dib_to_bmp(&truncated),
            Err(EncodingError::BadDib(_))
        ));
    }
}
