//! `SHFLSTRING`: the length-prefixed strings of the protocol, in the client's encoding.
//!
//! Input strings (paths, share names, symlink targets, LIST filters) are validated exactly as
//! VirtualBox does (`ShflStringIsValidIn`): the header must fit the buffer, the terminator must
//! sit right after `length` bytes, and the text must be valid in the client's encoding with no
//! embedded NUL. Parsing works on a host copy of the buffer, so the guest cannot change the bytes
//! between validation and use. Output strings are written with `size = length + terminator`.

use vmmdev_protocol::services::shared_folders::{SHFLSTRING_HEADER_SIZE, ShflStringHeader};
use zerocopy::FromBytes;
use zerocopy::little_endian::U16;

/// Bytes of the `SHFLSTRING` header.
pub const HEADER_SIZE: usize = SHFLSTRING_HEADER_SIZE;

/// How a client's strings are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// UTF-16LE with a 2-byte terminator (every client until it calls SET_UTF8).
    Utf16,
    /// UTF-8 with a 1-byte terminator.
    Utf8,
}

impl Encoding {
    /// Bytes of the terminator.
    pub fn terminator_len(self) -> usize {
        match self {
            Encoding::Utf16 => 2,
            Encoding::Utf8 => 1,
        }
    }
}

/// Why an `SHFLSTRING` was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StringError {
    /// The buffer cannot even hold the header and one terminator.
    #[error("string buffer of {0} bytes is too short")]
    BufferTooShort(usize),
    /// `size` says the storage extends past the buffer.
    #[error("string size {size} does not fit a {buffer}-byte buffer")]
    SizeExceedsBuffer {
        /// The header's `size`.
        size: usize,
        /// The buffer length.
        buffer: usize,
    },
    /// `length` leaves no room for the terminator, or is odd for UTF-16.
    #[error("string length {length} is invalid for size {size}")]
    BadLength {
        /// The header's `length`.
        length: usize,
        /// The header's `size`.
        size: usize,
    },
    /// No terminator right after the text.
    #[error("string is not terminated after its length")]
    MissingTerminator,
    /// A NUL inside the text.
    #[error("string contains an embedded NUL")]
    EmbeddedNul,
    /// The text is not valid in the client's encoding.
    #[error("string is not valid {0:?}")]
    BadEncoding(Encoding),
    /// The text does not fit the 16-bit size field when encoded.
    #[error("string of {0} bytes is too long for an SHFLSTRING")]
    TooLong(usize),
}

fn header(buffer: &[u8]) -> Result<(usize, usize), StringError> {
    if buffer.len() <= SHFLSTRING_HEADER_SIZE {
        return Err(StringError::BufferTooShort(buffer.len()));
    }
    let (header, _) = ShflStringHeader::read_from_prefix(buffer)
        .map_err(|_| StringError::BufferTooShort(buffer.len()))?;
    let size = usize::from(header.size.get());
    let length = usize::from(header.length.get());
    if size + SHFLSTRING_HEADER_SIZE > buffer.len() {
        return Err(StringError::SizeExceedsBuffer {
            size,
            buffer: buffer.len(),
        });
    }
    Ok((size, length))
}

/// Parses and validates an input `SHFLSTRING` (the whole HGCM buffer, copied from the guest).
pub fn parse(buffer: &[u8], encoding: Encoding) -> Result<String, StringError> {
    let (size, length) = header(buffer)?;
    let payload = &buffer[SHFLSTRING_HEADER_SIZE..SHFLSTRING_HEADER_SIZE + size];
    let bad_length = StringError::BadLength { length, size };
    match encoding {
        Encoding::Utf8 => {
            if length >= size {
                return Err(bad_length);
            }
            let (text, rest) = payload.split_at(length);
            if rest.first() != Some(&0) {
                return Err(StringError::MissingTerminator);
            }
            if text.contains(&0) {
                return Err(StringError::EmbeddedNul);
            }
            String::from_utf8(text.to_vec()).map_err(|_| StringError::BadEncoding(encoding))
        }
        Encoding::Utf16 => {
            if length % 2 != 0 || length + 2 > size {
                return Err(bad_length);
            }
            let units: Vec<u16> = payload
                .chunks_exact(2)
                .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
                .collect();
            let count = length / 2;
            if units.get(count) != Some(&0) {
                return Err(StringError::MissingTerminator);
            }
            let text = &units[..count];
            if text.contains(&0) {
                return Err(StringError::EmbeddedNul);
            }
            String::from_utf16(text).map_err(|_| StringError::BadEncoding(encoding))
        }
    }
}

/// The storage size (`size` field) the guest declared for an output string buffer; validated
/// as VirtualBox does for outputs (`ShflStringIsValidOut`).
pub fn output_capacity(buffer_len: usize, header_bytes: &[u8]) -> Result<usize, StringError> {
    if buffer_len <= SHFLSTRING_HEADER_SIZE {
        return Err(StringError::BufferTooShort(buffer_len));
    }
    let (header, _) = ShflStringHeader::read_from_prefix(header_bytes)
        .map_err(|_| StringError::BufferTooShort(header_bytes.len()))?;
    let size = usize::from(header.size.get());
    let length = usize::from(header.length.get());
    if size + SHFLSTRING_HEADER_SIZE > buffer_len {
        return Err(StringError::SizeExceedsBuffer {
            size,
            buffer: buffer_len,
        });
    }
    if length >= size {
        return Err(StringError::BadLength { length, size });
    }
    Ok(size)
}

/// `text` encoded for the client, without terminator.
pub fn encode(text: &str, encoding: Encoding) -> Vec<u8> {
    match encoding {
        Encoding::Utf8 => text.as_bytes().to_vec(),
        Encoding::Utf16 => text.encode_utf16().flat_map(u16::to_le_bytes).collect(),
    }
}

/// A complete `SHFLSTRING` (header, text, terminator) for `text`.
pub fn build(text: &str, encoding: Encoding) -> Result<Vec<u8>, StringError> {
    let body = encode(text, encoding);
    let length = u16::try_from(body.len()).map_err(|_| StringError::TooLong(body.len()))?;
    let size = u16::try_from(body.len() + encoding.terminator_len())
        .map_err(|_| StringError::TooLong(body.len()))?;
    let mut out = Vec::with_capacity(SHFLSTRING_HEADER_SIZE + usize::from(size));
    out.extend_from_slice(zerocopy::IntoBytes::as_bytes(&ShflStringHeader {
        size: U16::new(size),
        length: U16::new(length),
    }));
    out.extend_from_slice(&body);
    out.resize(SHFLSTRING_HEADER_SIZE + usize::from(size), 0);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(size: u16, length: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&length.to_le_bytes());
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn utf8_string_as_linux_sends_it_parses() {
        let buffer = raw(5, 4, b"/a/b\0");
        assert_eq!(parse(&buffer, Encoding::Utf8), Ok("/a/b".to_owned()));
    }

    #[test]
    fn utf16_string_round_trips_through_build() {
        let built = build("dir/ä", Encoding::Utf16).expect("fits");
        assert_eq!(parse(&built, Encoding::Utf16), Ok("dir/ä".to_owned()));
    }

    #[test]
    fn header_only_buffer_is_refused() {
        assert_eq!(
            parse(&raw(0, 0, b""), Encoding::Utf8),
            Err(StringError::BufferTooShort(4))
        );
    }

    #[test]
    fn size_beyond_buffer_is_refused() {
        assert!(matches!(
            parse(&raw(200, 1, b"a\0"), Encoding::Utf8),
            Err(StringError::SizeExceedsBuffer { .. })
        ));
    }

    #[test]
    fn length_without_room_for_terminator_is_refused() {
        assert!(matches!(
            parse(&raw(2, 2, b"ab"), Encoding::Utf8),
            Err(StringError::BadLength { .. })
        ));
    }

    #[test]
    fn embedded_nul_is_refused() {
        assert_eq!(
            parse(&raw(4, 3, b"a\0b\0"), Encoding::Utf8),
            Err(StringError::EmbeddedNul)
        );
    }

    #[test]
    fn missing_terminator_is_refused() {
        assert_eq!(
            parse(&raw(4, 2, b"abc\0"), Encoding::Utf8),
            Err(StringError::MissingTerminator)
        );
    }

    #[test]
    fn invalid_utf8_is_refused() {
        assert_eq!(
            parse(&raw(3, 2, b"\xff\xfe\0"), Encoding::Utf8),
            Err(StringError::BadEncoding(Encoding::Utf8))
        );
    }

    #[test]
    fn odd_utf16_length_is_refused() {
        assert!(matches!(
            parse(&raw(6, 3, b"a\0b\0\0\0"), Encoding::Utf16),
            Err(StringError::BadLength { .. })
        ));
    }

    #[test]
    fn unpaired_utf16_surrogate_is_refused() {
        assert_eq!(
            parse(&raw(4, 2, &[0x00, 0xD8, 0, 0]), Encoding::Utf16),
            Err(StringError::BadEncoding(Encoding::Utf16))
        );
    }

    #[test]
    fn random_bytes_never_panic_and_accepted_strings_have_no_nul() {
        for input in crate::testutil::random_inputs(20_000, 24) {
            for encoding in [Encoding::Utf8, Encoding::Utf16] {
                if let Ok(text) = parse(&input, encoding) {
                    assert!(!text.contains('\0'));
                }
                let _ = output_capacity(input.len(), &input);
            }
        }
    }

    #[test]
    fn output_capacity_follows_the_declared_size() {
        let buffer = raw(10, 0, &[0; 10]);
        assert_eq!(output_capacity(buffer.len(), &buffer), Ok(10));
        assert!(output_capacity(8, &buffer).is_err());
    }

    #[test]
    fn built_utf8_string_has_size_length_plus_one() {
        let built = build("abc", Encoding::Utf8).expect("fits");
        assert_eq!(built, raw(4, 3, b"abc\0"));
    }
}
