//! Clipboard content as the host sees it, and the one-format view the protocol works in.
//!
//! A [`Content`] holds up to one representation per [`Format`] in the host encoding (see
//! [`crate::convert`]); which formats it holds is what an announcement reports.

use vmmdev_protocol::services::clipboard::Formats;

use crate::convert::{self, ConvertError};

/// One clipboard format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Format {
    /// Unicode text.
    Text,
    /// HTML.
    Html,
    /// A bitmap.
    Bitmap,
}

impl Format {
    /// Every format, in the order the host requests guest data (VirtualBox's priority).
    pub const ALL: [Format; 3] = [Format::Text, Format::Bitmap, Format::Html];

    /// The format's bit.
    pub fn bit(self) -> Formats {
        match self {
            Format::Text => Formats::UNICODETEXT,
            Format::Html => Formats::HTML,
            Format::Bitmap => Formats::BITMAP,
        }
    }

    /// The format of a mask with exactly one known bit.
    pub fn from_single(bits: u32) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.bit().bits() == bits)
    }

    /// The name used by the control endpoint and the command line.
    pub fn name(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Html => "html",
            Format::Bitmap => "bitmap",
        }
    }

    /// The format with this [`Format::name`].
    pub fn from_name(name: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// The formats of `mask` that this service handles (others are dropped).
pub fn supported(mask: u32) -> Formats {
    Formats::from_bits_truncate(mask) & (Formats::UNICODETEXT | Formats::HTML | Formats::BITMAP)
}

/// Clipboard content in host encodings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Content {
    /// UTF-8 text with LF line ends.
    pub text: Option<String>,
    /// UTF-8 HTML.
    pub html: Option<String>,
    /// A BMP file.
    pub bitmap: Option<Vec<u8>>,
}

impl Content {
    /// The formats present.
    pub fn formats(&self) -> Formats {
        let mut formats = Formats::NONE;
        formats.set(Formats::UNICODETEXT, self.text.is_some());
        formats.set(Formats::HTML, self.html.is_some());
        formats.set(Formats::BITMAP, self.bitmap.is_some());
        formats
    }

    /// The host bytes of one format (UTF-8 for text and HTML, a BMP file for bitmaps).
    pub fn host_bytes(&self, format: Format) -> Option<&[u8]> {
        match format {
            Format::Text => self.text.as_deref().map(str::as_bytes),
            Format::Html => self.html.as_deref().map(str::as_bytes),
            Format::Bitmap => self.bitmap.as_deref(),
        }
    }

    /// The wire encoding of one format, if present.
    pub fn wire_bytes(&self, format: Format) -> Result<Option<Vec<u8>>, ConvertError> {
        match self.host_bytes(format) {
            Some(bytes) => wire_of(format, bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Stores one format from host bytes; text and HTML must be UTF-8, bitmaps a BMP file.
    pub fn set_host_bytes(&mut self, format: Format, bytes: Vec<u8>) -> Result<(), ContentError> {
        match format {
            Format::Text => {
                self.text = Some(String::from_utf8(bytes).map_err(|_| ContentError::Utf8)?)
            }
            Format::Html => {
                self.html = Some(String::from_utf8(bytes).map_err(|_| ContentError::Utf8)?)
            }
            Format::Bitmap => {
                convert::bmp_to_dib(&bytes)?;
                self.bitmap = Some(bytes);
            }
        }
        Ok(())
    }

    /// Stores one format from its wire encoding.
    pub fn set_wire_bytes(&mut self, format: Format, wire: &[u8]) -> Result<(), ConvertError> {
        match format {
            Format::Text => self.text = Some(convert::text_from_wire(wire)?),
            Format::Html => {
                // Content holds UTF-8; HTML that is not is kept with replacement characters.
                let html = convert::html_from_wire(wire)?;
                self.html = Some(
                    String::from_utf8(html)
                        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
                );
            }
            Format::Bitmap => self.bitmap = Some(convert::dib_to_bmp(wire)?),
        }
        Ok(())
    }

    /// Whether no format is present.
    pub fn is_empty(&self) -> bool {
        self.formats().is_empty()
    }
}

/// The wire encoding of one format's host bytes (text and HTML that are not UTF-8 are converted
/// with replacement characters; [`Content`] only holds UTF-8).
pub fn wire_of(format: Format, host: &[u8]) -> Result<Vec<u8>, ConvertError> {
    let text = || match std::str::from_utf8(host) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(host),
    };
    Ok(match format {
        Format::Text => convert::text_to_wire(&text()),
        Format::Html => convert::html_to_wire(text().as_bytes()),
        Format::Bitmap => convert::bmp_to_dib(host)?.into_owned(),
    })
}

/// Host data the content refuses.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ContentError {
    /// Text or HTML that is not UTF-8.
    #[error("text is not UTF-8")]
    Utf8,
    /// A bitmap that is not a usable BMP file.
    #[error(transparent)]
    Convert(#[from] ConvertError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_reflect_the_representations_present() {
        let mut content = Content::default();
        assert!(content.is_empty());
        content.text = Some("x".into());
        content.html = Some("<p>x</p>".into());
        assert_eq!(content.formats(), Formats::UNICODETEXT | Formats::HTML);
    }

    #[test]
    fn single_format_bits_map_to_formats_and_masks_do_not() {
        assert_eq!(Format::from_single(1), Some(Format::Text));
        assert_eq!(Format::from_single(2), Some(Format::Bitmap));
        assert_eq!(Format::from_single(4), Some(Format::Html));
        assert_eq!(Format::from_single(3), None);
        assert_eq!(Format::from_single(0), None);
        assert_eq!(Format::from_single(8), None);
    }

    #[test]
    fn unsupported_bits_are_dropped_from_masks() {
        assert_eq!(
            supported(0xFF),
            Formats::UNICODETEXT | Formats::HTML | Formats::BITMAP
        );
        assert_eq!(supported(0x8), Formats::NONE);
    }

    #[test]
    fn wire_html_that_is_not_utf8_is_kept_with_replacement_characters() {
        let mut content = Content::default();
        content
            .set_wire_bytes(Format::Html, b"<i>\xff</i>\0")
            .expect("HTML is always accepted");
        assert_eq!(content.html.as_deref(), Some("<i>\u{FFFD}</i>"));
    }

    #[test]
    fn host_text_must_be_utf8_and_bitmaps_bmp() {
        let mut content = Content::default();
        assert_eq!(
            content.set_host_bytes(Format::Text, vec![0xFF]),
            Err(ContentError::Utf8)
        );
        assert!(
            content
                .set_host_bytes(Format::Bitmap, b"GIF89a".to_vec())
                .is_err()
        );
        assert!(content.is_empty());
    }
}
