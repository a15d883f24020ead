//! The wire format of the control endpoint: the requests, their parsing, and reading one bounded line.
//! Responses are JSON objects built by [`crate::Control::handle`]; see the crate documentation for both.

use std::io::{self, BufRead, Read};
use std::time::Duration;

use serde::Deserialize;

/// Longest request line in bytes, without its newline.
pub const MAX_REQUEST_LEN: usize = 64 * 1024;

/// Longest a `guestproperty.wait` waits, and how long it waits without `timeout_ms`.
pub const MAX_WAIT: Duration = Duration::from_secs(24 * 60 * 60);

/// One request.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "op")]
pub enum Request {
    /// Reads a guest property.
    #[serde(rename = "guestproperty.get")]
    GetProperty {
        /// Property name.
        name: String,
    },
    /// Creates or replaces a guest property.
    #[serde(rename = "guestproperty.set")]
    SetProperty {
        /// Property name.
        name: String,
        /// New value.
        value: String,
        /// Flags in VirtualBox's text form; none clears them.
        #[serde(default)]
        flags: Option<String>,
    },
    /// Deletes a guest property.
    #[serde(rename = "guestproperty.delete")]
    DeleteProperty {
        /// Property name.
        name: String,
    },
    /// Lists the guest properties matching any of the patterns (all without patterns).
    #[serde(rename = "guestproperty.enumerate")]
    EnumerateProperties {
        /// Name patterns.
        #[serde(default)]
        patterns: Vec<String>,
    },
    /// Waits for the next change of a property whose name matches.
    #[serde(rename = "guestproperty.wait")]
    WaitProperty {
        /// Name pattern; empty matches every name.
        #[serde(default)]
        pattern: String,
        /// Longest wait in milliseconds (at most [`MAX_WAIT`]).
        #[serde(default)]
        timeout_ms: Option<u64>,
    },
    /// Adds a shared folder.
    #[serde(rename = "sharedfolder.add")]
    AddShare {
        /// Share name the guest mounts.
        name: String,
        /// Host directory.
        path: String,
        /// Whether the guest may only read.
        #[serde(default)]
        readonly: bool,
        /// Whether guest automounters should mount it.
        #[serde(default)]
        automount: bool,
        /// Where automounters should mount it.
        #[serde(default)]
        automount_point: String,
        /// Which symbolic links the guest may create: `deny` (default), `inside`, `allow`.
        #[serde(default)]
        symlinks: Option<String>,
    },
    /// Removes a shared folder.
    #[serde(rename = "sharedfolder.remove")]
    RemoveShare {
        /// Share name.
        name: String,
    },
    /// Lists the shared folders.
    #[serde(rename = "sharedfolder.list")]
    ListShares,
    /// Reads the clipboard: the guest's data if a guest owns it, else the host content.
    #[serde(rename = "clipboard.get")]
    GetClipboard {
        /// `text` (default), `html` or `bitmap`.
        #[serde(default)]
        format: Option<String>,
        /// Longest wait for the guest's answer in milliseconds.
        #[serde(default)]
        timeout_ms: Option<u64>,
    },
    /// Replaces the host clipboard content; no field empties it.
    #[serde(rename = "clipboard.set")]
    SetClipboard {
        /// Text (UTF-8).
        #[serde(default)]
        text: Option<String>,
        /// A file holding the text.
        #[serde(default)]
        text_path: Option<String>,
        /// HTML (UTF-8).
        #[serde(default)]
        html: Option<String>,
        /// A file holding the HTML.
        #[serde(default)]
        html_path: Option<String>,
        /// A BMP file, base64-encoded.
        #[serde(default)]
        bitmap_base64: Option<String>,
        /// A BMP file.
        #[serde(default)]
        bitmap_path: Option<String>,
    },
    /// Reads, or sets and reads, the clipboard mode.
    #[serde(rename = "clipboard.mode")]
    ClipboardMode {
        /// `off`, `host-to-guest`, `guest-to-host` or `bidirectional`; none only reads.
        #[serde(default)]
        mode: Option<String>,
    },
}

/// A line that is not a request.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// Not a JSON object naming a known operation with its fields.
    #[error("bad request: {0}")]
    Json(#[from] serde_json::Error),
}

impl Request {
    /// Parses one request line (without its newline).
    pub fn parse(line: &[u8]) -> Result<Request, ProtocolError> {
        Ok(serde_json::from_slice(line)?)
    }
}

/// What [`read_request_line`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineRead {
    /// A line is in the buffer, without its newline.
    Line,
    /// The line exceeds [`MAX_REQUEST_LEN`]; the buffer holds its start and the rest is unread.
    TooLong,
    /// The peer closed the connection.
    Eof,
}

/// Reads one line into `line` (cleared first), reading at most [`MAX_REQUEST_LEN`] + 1 bytes, so a
/// peer cannot make the server buffer more. A last line without a newline counts as a line.
pub fn read_request_line(reader: &mut impl BufRead, line: &mut Vec<u8>) -> io::Result<LineRead> {
    line.clear();
    let limit = u64::try_from(MAX_REQUEST_LEN + 1).unwrap_or(u64::MAX);
    let read = reader.by_ref().take(limit).read_until(b'\n', line)?;
    if read == 0 {
        return Ok(LineRead::Eof);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        return Ok(LineRead::Line);
    }
    if line.len() > MAX_REQUEST_LEN {
        return Ok(LineRead::TooLong);
    }
    Ok(LineRead::Line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_request_parses_with_its_name() {
        let request = Request::parse(br#"{"op":"guestproperty.get","name":"/A"}"#).expect("valid");
        assert_eq!(request, Request::GetProperty { name: "/A".into() });
    }

    #[test]
    fn optional_fields_take_their_defaults() {
        let request = Request::parse(br#"{"op":"guestproperty.wait"}"#).expect("valid");
        assert_eq!(
            request,
            Request::WaitProperty {
                pattern: String::new(),
                timeout_ms: None
            }
        );
    }

    #[test]
    fn unit_operation_parses_without_fields() {
        let request = Request::parse(br#"{"op":"sharedfolder.list"}"#).expect("valid");
        assert_eq!(request, Request::ListShares);
    }

    #[test]
    fn unknown_op_is_an_error() {
        let error = Request::parse(br#"{"op":"vm.poweroff"}"#).expect_err("unknown op");
        assert!(error.to_string().contains("vm.poweroff"), "{error}");
    }

    #[test]
    fn missing_field_is_an_error() {
        assert!(Request::parse(br#"{"op":"guestproperty.set","name":"/A"}"#).is_err());
    }

    #[test]
    fn garbage_is_an_error() {
        for line in [&b"\xff\xfe{"[..], b"", b"[]", b"42", b"{\"op\":7}", b"{"] {
            assert!(Request::parse(line).is_err(), "{line:?}");
        }
    }

    #[test]
    fn lines_are_split_at_newlines_without_terminators() {
        let mut input = &b"one\r\ntwo\nthree"[..];
        let mut line = Vec::new();
        for expected in [&b"one"[..], b"two", b"three"] {
            assert_eq!(
                read_request_line(&mut input, &mut line).expect("read"),
                LineRead::Line
            );
            assert_eq!(line, expected);
        }
        assert_eq!(
            read_request_line(&mut input, &mut line).expect("read"),
            LineRead::Eof
        );
    }

    #[test]
    fn oversized_line_is_reported_without_reading_it_all() {
        let input = vec![b'x'; MAX_REQUEST_LEN * 3];
        let mut reader = &input[..];
        let mut line = Vec::new();
        assert_eq!(
            read_request_line(&mut reader, &mut line).expect("read"),
            LineRead::TooLong
        );
        assert_eq!(line.len(), MAX_REQUEST_LEN + 1);
    }

    #[test]
    fn line_of_exactly_the_limit_is_accepted() {
        let mut input = vec![b'x'; MAX_REQUEST_LEN];
        input.push(b'\n');
        let mut reader = &input[..];
        let mut line = Vec::new();
        assert_eq!(
            read_request_line(&mut reader, &mut line).expect("read"),
            LineRead::Line
        );
        assert_eq!(line.len(), MAX_REQUEST_LEN);
    }
}
