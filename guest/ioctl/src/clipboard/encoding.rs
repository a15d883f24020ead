//! The shared clipboard's formats converted between their wire encodings and what guest users
//! and programs exchange: UTF-8 text with LF line ends, HTML bytes, a BMP file.
//!
//! The conversions themselves are [`vmmdev_protocol::services::clipboard::convert`], the ones
//! the host service uses, re-exported here; this module adds the per-[`Format`] dispatch and
//! the reading of text that X11 programs hand over in Latin-1.

use std::borrow::Cow;

pub use vmmdev_protocol::services::clipboard::convert::{
    BMP_FILE_HEADER_SIZE, ConvertError, DIB_INFO_HEADER_SIZE, bmp_to_dib, dib_to_bmp,
    html_from_wire, html_to_wire, text_from_wire, text_to_wire, text_wire_len,
};

use super::Format;

/// Converts data as guest users and programs exchange it (UTF-8 text, HTML, a BMP file) into the
/// wire encoding of `format`. Text that is not UTF-8 is read as Latin-1.
pub fn to_wire(format: Format, data: &[u8]) -> Result<Vec<u8>, ConvertError> {
    match format {
        Format::UnicodeText => Ok(text_to_wire(&bytes_to_text(data))),
        Format::Html => Ok(html_to_wire(data)),
        Format::Bitmap => bmp_to_dib(data).map(Cow::into_owned),
    }
}

/// Converts data in the wire encoding of `format` into what guest users and programs exchange:
/// UTF-8 text with LF line ends, HTML, a BMP file.
pub fn from_wire(format: Format, wire: &[u8]) -> Result<Vec<u8>, ConvertError> {
    match format {
        Format::UnicodeText => text_from_wire(wire).map(String::into_bytes),
        Format::Html => html_from_wire(wire),
        Format::Bitmap => dib_to_bmp(wire),
    }
}

/// Reads bytes as text: UTF-8 when they are, Latin-1 otherwise (what X11 clipboard owners
/// usually mean by a non-UTF-8 string).
pub fn bytes_to_text(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => Cow::Owned(bytes.iter().map(|&byte| char::from(byte)).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 1x1 8-bit BMP file with a two-colour table.
    fn bmp_8bit() -> Vec<u8> {
        let mut dib = Vec::new();
        dib.extend_from_slice(&40u32.to_le_bytes());
        dib.extend_from_slice(&1i32.to_le_bytes());
        dib.extend_from_slice(&1i32.to_le_bytes());
        dib.extend_from_slice(&1u16.to_le_bytes());
        dib.extend_from_slice(&8u16.to_le_bytes());
        dib.extend_from_slice(&[0; 16]);
        dib.extend_from_slice(&2u32.to_le_bytes());
        dib.extend_from_slice(&[0; 4]);
        dib.extend_from_slice(&[1, 2, 3, 0, 4, 5, 6, 0, 1, 0, 0, 0]);
        dib_to_bmp(&dib).expect("valid DIB")
    }

    #[test]
    fn every_format_round_trips_between_user_and_wire_forms() {
        let cases = [
            (Format::UnicodeText, "zwei\nZeilen äö".as_bytes().to_vec()),
            (Format::Html, b"<p>hi</p>".to_vec()),
            (Format::Bitmap, bmp_8bit()),
        ];
        for (format, user) in cases {
            let wire = to_wire(format, &user).expect("encodable");
            assert_eq!(from_wire(format, &wire), Ok(user), "{format:?}");
        }
    }

    #[test]
    fn non_utf8_user_text_is_read_as_latin1() {
        assert_eq!(bytes_to_text(b"caf\xE9"), "café");
        assert_eq!(bytes_to_text("café".as_bytes()), "café");
        assert_eq!(to_wire(Format::UnicodeText, b"\xE9"), Ok(text_to_wire("é")));
    }
}
