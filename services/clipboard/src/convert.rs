//! Conversions between the host's encodings and the wire's.
//!
//! | Format | Host side | Wire |
//! |---|---|---|
//! | text | UTF-8, LF line ends | UTF-16LE, CRLF line ends, one terminating NUL unit counted in the size |
//! | HTML | UTF-8 | UTF-8 followed by a NUL |
//! | bitmap | a BMP file (`BITMAPFILEHEADER` + DIB) | the DIB alone (`BITMAPINFOHEADER`, colour table, pixels) |
//!
//! Everything coming from the guest is hostile: the decoders never panic, never allocate more
//! than their input suggests, and tolerate what real peers send (a leading little-endian BOM,
//! missing terminators, text after the first NUL, which is dropped).

/// Data that cannot be converted.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConvertError {
    /// UTF-16 text that starts with a big-endian byte-order mark.
    #[error("text starts with a big-endian byte-order mark")]
    BigEndianText,
    /// Host data that is not a BMP file.
    #[error("not a BMP file")]
    NotBmp,
    /// A DIB whose header is malformed or inconsistent with its size.
    #[error("malformed bitmap: {0}")]
    Dib(&'static str),
}

const UTF16_BOM_LE: [u8; 2] = [0xFF, 0xFE];
const UTF16_BOM_BE: [u8; 2] = [0xFE, 0xFF];
const FILE_HEADER_LEN: usize = 14;
const INFO_HEADER_LEN: u32 = 40;
/// Header sizes of the DIB variants Windows defines (CORE headers are not accepted).
const INFO_HEADER_SIZES: [u32; 5] = [40, 52, 56, 108, 124];
const BI_BITFIELDS: u32 = 3;
const BI_ALPHABITFIELDS: u32 = 6;

/// Host text to the wire: LF becomes CRLF (an existing CRLF stays one), UTF-16LE, a NUL unit.
pub fn text_to_wire(text: &str) -> Vec<u8> {
    let mut wire = vec![0u8; text_wire_len(text)];
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

/// The length of [`text_to_wire`]'s result, computed without converting.
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

/// Wire text to the host: skips a little-endian BOM, stops at the first NUL unit (an odd
/// trailing byte is ignored), CRLF becomes LF, unpaired surrogates become U+FFFD.
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

/// Host HTML to the wire: its bytes and a NUL.
pub fn html_to_wire(html: &str) -> Vec<u8> {
    let mut wire = Vec::with_capacity(html.len().saturating_add(1));
    wire.extend_from_slice(html.as_bytes());
    wire.push(0);
    wire
}

/// Wire HTML to the host: up to the first NUL; UTF-16 with a BOM (as some Windows peers send)
/// is decoded, anything else is taken as UTF-8 with invalid sequences replaced.
pub fn html_from_wire(wire: &[u8]) -> String {
    if wire.starts_with(&UTF16_BOM_LE) {
        if let Ok(text) = text_from_wire(wire) {
            return text;
        }
    }
    let end = wire.iter().position(|&b| b == 0).unwrap_or(wire.len());
    String::from_utf8_lossy(wire.get(..end).unwrap_or_default()).into_owned()
}

fn le_u16(bytes: &[u8], offset: usize) -> Option<u16> {
    let raw = bytes.get(offset..offset.checked_add(2)?)?;
    Some(u16::from_le_bytes([raw[0], raw[1]]))
}

fn le_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    let raw = bytes.get(offset..offset.checked_add(4)?)?;
    Some(u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]))
}

/// Where a DIB's pixels start, counted from the start of the DIB; checks the header against
/// the DIB's length.
fn dib_pixel_offset(dib: &[u8]) -> Result<u64, ConvertError> {
    let header_len = le_u32(dib, 0).ok_or(ConvertError::Dib("shorter than its header"))?;
    if !INFO_HEADER_SIZES.contains(&header_len) {
        return Err(ConvertError::Dib("unsupported header size"));
    }
    if dib.len() < header_len as usize {
        return Err(ConvertError::Dib("shorter than its header"));
    }
    let bit_count = le_u16(dib, 14).ok_or(ConvertError::Dib("truncated header"))?;
    let compression = le_u32(dib, 16).ok_or(ConvertError::Dib("truncated header"))?;
    let colours_used = le_u32(dib, 32).ok_or(ConvertError::Dib("truncated header"))?;
    if !matches!(bit_count, 1 | 4 | 8 | 16 | 24 | 32) {
        return Err(ConvertError::Dib("unsupported bit count"));
    }
    let palette_entries = match colours_used {
        0 if bit_count <= 8 => 1u64 << bit_count,
        n => u64::from(n),
    };
    // A 40-byte header is followed by the channel masks when the compression says so; larger
    // headers contain them.
    let masks = match compression {
        BI_BITFIELDS if header_len == INFO_HEADER_LEN => 12,
        BI_ALPHABITFIELDS if header_len == INFO_HEADER_LEN => 16,
        _ => 0,
    };
    let offset = u64::from(header_len) + masks + palette_entries * 4;
    if offset > dib.len() as u64 {
        return Err(ConvertError::Dib("colour table beyond the data"));
    }
    Ok(offset)
}

/// A wire DIB to a host BMP file: the 14-byte file header put in front.
pub fn dib_to_bmp(dib: &[u8]) -> Result<Vec<u8>, ConvertError> {
    let pixels = dib_pixel_offset(dib)? + FILE_HEADER_LEN as u64;
    let file_len = u32::try_from(dib.len() as u64 + FILE_HEADER_LEN as u64)
        .map_err(|_| ConvertError::Dib("larger than 4 GiB"))?;
    let pixels = u32::try_from(pixels).map_err(|_| ConvertError::Dib("larger than 4 GiB"))?;
    let mut bmp = Vec::with_capacity(file_len as usize);
    bmp.extend_from_slice(b"BM");
    bmp.extend_from_slice(&file_len.to_le_bytes());
    bmp.extend_from_slice(&[0; 4]);
    bmp.extend_from_slice(&pixels.to_le_bytes());
    bmp.extend_from_slice(dib);
    Ok(bmp)
}

/// A host BMP file to the wire DIB (the file header dropped), after checking both headers.
pub fn bmp_to_dib(bmp: &[u8]) -> Result<&[u8], ConvertError> {
    if !bmp.starts_with(b"BM") {
        return Err(ConvertError::NotBmp);
    }
    let dib = bmp.get(FILE_HEADER_LEN..).ok_or(ConvertError::NotBmp)?;
    dib_pixel_offset(dib)?;
    Ok(dib)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A 2x1 24-bit DIB: header, then one row of two pixels padded to 8 bytes.
    pub(crate) fn tiny_dib() -> Vec<u8> {
        let mut dib = Vec::new();
        dib.extend_from_slice(&40u32.to_le_bytes());
        dib.extend_from_slice(&2i32.to_le_bytes());
        dib.extend_from_slice(&1i32.to_le_bytes());
        dib.extend_from_slice(&1u16.to_le_bytes());
        dib.extend_from_slice(&24u16.to_le_bytes());
        dib.extend_from_slice(&[0; 24]);
        dib.extend_from_slice(&[0, 0, 255, 0, 255, 0, 0, 0]);
        dib
    }

    fn utf16(text: &str) -> Vec<u8> {
        text.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }

    #[test]
    fn text_goes_to_the_wire_as_utf16_with_crlf_and_a_nul() {
        assert_eq!(text_to_wire("a\nb"), utf16("a\r\nb\0"));
        assert_eq!(text_to_wire("a\r\nb"), utf16("a\r\nb\0"));
        assert_eq!(text_to_wire(""), vec![0, 0]);
    }

    #[test]
    fn wire_length_is_known_without_converting() {
        for text in ["", "a\nb", "a\r\nb\n", "Grüße 🦀\n\n"] {
            assert_eq!(text_wire_len(text), text_to_wire(text).len(), "{text:?}");
        }
    }

    #[test]
    fn non_ascii_text_round_trips() {
        let text = "Grüße, 世界 🦀\nzweite Zeile";
        assert_eq!(text_from_wire(&text_to_wire(text)), Ok(text.to_owned()));
    }

    #[test]
    fn wire_text_stops_at_the_first_nul_and_skips_a_little_endian_bom() {
        let mut wire = vec![0xFF, 0xFE];
        wire.extend(utf16("hi\r\n\0ignored"));
        assert_eq!(text_from_wire(&wire), Ok("hi\n".to_owned()));
    }

    #[test]
    fn lone_carriage_returns_survive_and_crlf_becomes_lf() {
        assert_eq!(
            text_from_wire(&utf16("a\rb\r\nc\r")),
            Ok("a\rb\nc\r".to_owned())
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
        assert_eq!(text_from_wire(&wire), Ok("ok\u{FFFD}".to_owned()));
    }

    #[test]
    fn html_travels_as_utf8_with_a_nul() {
        assert_eq!(html_to_wire("<b>x</b>"), b"<b>x</b>\0");
        assert_eq!(html_from_wire(b"<b>x</b>\0junk"), "<b>x</b>");
        assert_eq!(html_from_wire(b"<i>\xff</i>"), "<i>\u{FFFD}</i>");
    }

    #[test]
    fn dib_gains_a_file_header_pointing_at_the_pixels() {
        let dib = tiny_dib();
        let bmp = dib_to_bmp(&dib).expect("valid DIB");
        assert_eq!(&bmp[..2], b"BM");
        assert_eq!(le_u32(&bmp, 2), Some((dib.len() + 14) as u32));
        assert_eq!(le_u32(&bmp, 10), Some(54));
        assert_eq!(bmp_to_dib(&bmp), Ok(&dib[..]));
    }

    #[test]
    fn palette_and_bitfield_masks_move_the_pixel_offset() {
        let mut dib = tiny_dib();
        dib[14] = 8;
        dib.extend_from_slice(&[0; 1024]);
        assert_eq!(dib_pixel_offset(&dib), Ok(40 + 1024));
        let mut masked = tiny_dib();
        masked[14] = 32;
        masked[16] = BI_BITFIELDS as u8;
        masked.extend_from_slice(&[0; 12]);
        assert_eq!(dib_pixel_offset(&masked), Ok(52));
    }

    #[test]
    fn malformed_dibs_are_refused() {
        assert!(dib_to_bmp(&[]).is_err());
        assert!(dib_to_bmp(&12u32.to_le_bytes()).is_err());
        let mut huge_palette = tiny_dib();
        huge_palette[32..36].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(dib_to_bmp(&huge_palette).is_err());
        let mut bad_depth = tiny_dib();
        bad_depth[14] = 7;
        assert!(dib_to_bmp(&bad_depth).is_err());
    }

    #[test]
    fn non_bmp_host_data_is_refused() {
        assert_eq!(bmp_to_dib(b"\x89PNG\r\n"), Err(ConvertError::NotBmp));
        assert_eq!(bmp_to_dib(b"BM"), Err(ConvertError::NotBmp));
    }
}
