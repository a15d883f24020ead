//! The clipboard operations of the control endpoint, over the shared clipboard service's typed host
//! client ([`vmmdev_svc_clipboard::ClipboardHost`]).
//!
//! Reading what the guest offers is asynchronous in the service: the read asks the guest and then
//! collects the answer until its deadline, on the connection's own thread, so a guest that never
//! answers costs the caller its timeout and nothing else (the service and the VM keep running).

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use vmmdev_hgcm::{Hgcm, HostCallError, Parm, Status};
use vmmdev_svc_clipboard::config::{mode_name, parse_mode};
use vmmdev_svc_clipboard::host::{HostError, Source};
use vmmdev_svc_clipboard::{ClipboardHost, Content, ContentError, Format, Mode, SERVICE_NAME};

/// How long `clipboard.get` waits for the guest without `timeout_ms`.
pub const DEFAULT_GET_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest file `clipboard.set` reads for one format.
const MAX_FILE: u64 = 256 << 20;

/// Why a clipboard operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClipboardError {
    /// The service could not be reached.
    #[error(transparent)]
    Call(#[from] HostCallError),
    /// The mode forbids the direction the operation needs.
    #[error("{operation} refused: the clipboard mode forbids {direction} (VERR_ACCESS_DENIED)")]
    ModeForbids {
        /// The operation.
        operation: &'static str,
        /// The direction it needs.
        direction: &'static str,
    },
    /// The guest did not answer in time.
    #[error("{operation} timed out: the guest did not answer within {} ms", .timeout.as_millis())]
    Timeout {
        /// The operation.
        operation: &'static str,
        /// How long it waited.
        timeout: Duration,
    },
    /// The service refused with another status.
    #[error("{operation} refused: {status}")]
    Refused {
        /// The operation.
        operation: &'static str,
        /// The status.
        status: Status,
    },
    /// The service answered with something unreadable.
    #[error("malformed reply from the clipboard service")]
    MalformedReply,
    /// An argument the operation does not take.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A file named by the request could not be read.
    #[error("cannot read {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl ClipboardError {
    fn of(operation: &'static str, error: HostError<HostCallError>) -> Self {
        match error {
            HostError::Call(e) => Self::Call(e),
            HostError::Refused {
                status: Status::VERR_ACCESS_DENIED,
                ..
            } => Self::ModeForbids {
                operation,
                direction: if operation == "clipboard.get" {
                    "guest-to-host"
                } else {
                    "host-to-guest"
                },
            },
            HostError::Refused { status, .. } => Self::Refused { operation, status },
            HostError::Timeout(timeout) => Self::Timeout { operation, timeout },
            HostError::MalformedReply => Self::MalformedReply,
        }
    }
}

/// What `clipboard.get` read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClipboardData {
    /// The format read.
    pub format: Format,
    /// Whether it came from the guest (else the host content).
    pub from_guest: bool,
    /// The data in host encoding; `None` if the clipboard has nothing in that format.
    pub data: Option<Vec<u8>>,
}

type HostCall = Box<dyn FnMut(u32, &mut [Parm]) -> Result<i32, HostCallError> + Send>;

fn client(hgcm: &Hgcm) -> ClipboardHost<HostCall> {
    let hgcm = hgcm.clone();
    ClipboardHost::new(Box::new(move |function, params: &mut [Parm]| {
        hgcm.host_call(SERVICE_NAME, function, params)
    }))
}

/// Reads the clipboard in `format`: the guest's data if a guest owns it, else the host content.
pub fn get(
    hgcm: &Hgcm,
    format: Format,
    timeout: Duration,
) -> Result<ClipboardData, ClipboardError> {
    let read = client(hgcm)
        .read(format, timeout)
        .map_err(|e| ClipboardError::of("clipboard.get", e))?;
    Ok(ClipboardData {
        format,
        from_guest: read.source == Source::Guest,
        data: read.data,
    })
}

/// Replaces the host clipboard content (announced to the guest if the mode allows).
pub fn set(hgcm: &Hgcm, content: &Content) -> Result<(), ClipboardError> {
    client(hgcm)
        .set_content(content)
        .map_err(|e| ClipboardError::of("clipboard.set", e))
}

/// The mode.
pub fn mode(hgcm: &Hgcm) -> Result<Mode, ClipboardError> {
    client(hgcm)
        .mode()
        .map_err(|e| ClipboardError::of("clipboard.mode", e))
}

/// Sets the mode.
pub fn set_mode(hgcm: &Hgcm, mode: Mode) -> Result<(), ClipboardError> {
    client(hgcm)
        .set_mode(mode)
        .map_err(|e| ClipboardError::of("clipboard.mode", e))
}

/// The `format` field of a request (default text).
pub(crate) fn parse_format(format: Option<&str>) -> Result<Format, ClipboardError> {
    match format {
        None => Ok(Format::Text),
        Some(name) => Format::from_name(name).ok_or_else(|| {
            ClipboardError::InvalidArgument(format!("format '{name}' is not text, html or bitmap"))
        }),
    }
}

fn read_file(path: &str) -> Result<Vec<u8>, ClipboardError> {
    use std::io::Read;
    let file_error = |source| ClipboardError::File {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(Path::new(path)).map_err(file_error)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(file_error)?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(ClipboardError::InvalidArgument(format!(
            "{path} is larger than {MAX_FILE} bytes"
        )));
    }
    Ok(bytes)
}

/// The sources of one format in a `clipboard.set` request: inline or a file, not both.
pub(crate) struct Inputs<'a> {
    pub(crate) text: Option<&'a str>,
    pub(crate) text_path: Option<&'a str>,
    pub(crate) html: Option<&'a str>,
    pub(crate) html_path: Option<&'a str>,
    pub(crate) bitmap_base64: Option<&'a str>,
    pub(crate) bitmap_path: Option<&'a str>,
}

/// Builds the content of a `clipboard.set` request.
pub(crate) fn content_of(inputs: &Inputs<'_>) -> Result<Content, ClipboardError> {
    let one = |name: &str, inline: Option<Vec<u8>>, path: Option<&str>| match (inline, path) {
        (Some(_), Some(_)) => Err(ClipboardError::InvalidArgument(format!(
            "give either {name} or {name}_path"
        ))),
        (Some(bytes), None) => Ok(Some(bytes)),
        (None, Some(path)) => read_file(path).map(Some),
        (None, None) => Ok(None),
    };
    let bitmap_inline = inputs
        .bitmap_base64
        .map(|b| BASE64.decode(b.trim()))
        .transpose()
        .map_err(|_| ClipboardError::InvalidArgument("bitmap_base64 is not base64".into()))?;
    let mut content = Content::default();
    let formats = [
        (
            Format::Text,
            one(
                "text",
                inputs.text.map(|t| t.as_bytes().to_vec()),
                inputs.text_path,
            )?,
        ),
        (
            Format::Html,
            one(
                "html",
                inputs.html.map(|h| h.as_bytes().to_vec()),
                inputs.html_path,
            )?,
        ),
        (
            Format::Bitmap,
            one("bitmap", bitmap_inline, inputs.bitmap_path)?,
        ),
    ];
    for (format, bytes) in formats {
        if let Some(bytes) = bytes {
            content.set_host_bytes(format, bytes).map_err(|e| match e {
                ContentError::Utf8 => {
                    ClipboardError::InvalidArgument(format!("the {} is not UTF-8", format.name()))
                }
                ContentError::Convert(e) => {
                    ClipboardError::InvalidArgument(format!("the bitmap: {e}"))
                }
            })?;
        }
    }
    Ok(content)
}

/// The response to `clipboard.get`.
pub(crate) fn get_response(read: &ClipboardData) -> Value {
    let source = if read.from_guest { "guest" } else { "host" };
    let mut response = json!({"ok": true, "format": read.format.name(), "source": source});
    match &read.data {
        None => response["empty"] = json!(true),
        Some(bytes) => match read.format {
            Format::Text => response["text"] = json!(String::from_utf8_lossy(bytes)),
            Format::Html => response["html"] = json!(String::from_utf8_lossy(bytes)),
            Format::Bitmap => response["bitmap_base64"] = json!(BASE64.encode(bytes)),
        },
    }
    response
}

/// Executes `clipboard.mode`: sets the mode if one is given, answers the current one.
pub(crate) fn mode_request(hgcm: &Hgcm, requested: Option<&str>) -> Result<Value, ClipboardError> {
    if let Some(name) = requested {
        let mode = parse_mode(name).ok_or_else(|| {
            ClipboardError::InvalidArgument(format!(
                "mode '{name}' is not off, host-to-guest, guest-to-host or bidirectional"
            ))
        })?;
        set_mode(hgcm, mode)?;
    }
    let mode = mode(hgcm)?;
    Ok(json!({"ok": true, "mode": mode_name(mode).unwrap_or("off")}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Inputs<'static> {
        Inputs {
            text: None,
            text_path: None,
            html: None,
            html_path: None,
            bitmap_base64: None,
            bitmap_path: None,
        }
    }

    #[test]
    fn formats_parse_by_name_with_text_the_default() {
        assert_eq!(parse_format(None).expect("default"), Format::Text);
        assert_eq!(parse_format(Some("bitmap")).expect("known"), Format::Bitmap);
        assert!(parse_format(Some("rtf")).is_err());
    }

    #[test]
    fn inline_and_path_for_one_format_are_refused() {
        let both = Inputs {
            text: Some("a"),
            text_path: Some("/etc/hostname"),
            ..inputs()
        };
        assert!(matches!(
            content_of(&both),
            Err(ClipboardError::InvalidArgument(_))
        ));
    }

    #[test]
    fn bitmap_must_be_base64_of_a_bmp() {
        let garbage = Inputs {
            bitmap_base64: Some("!!!"),
            ..inputs()
        };
        assert!(content_of(&garbage).is_err());
        let not_bmp = Inputs {
            bitmap_base64: Some("R0lGODlh"),
            ..inputs()
        };
        assert!(content_of(&not_bmp).is_err());
    }

    #[test]
    fn no_inputs_make_an_empty_clipboard() {
        assert!(content_of(&inputs()).expect("empty").is_empty());
    }

    #[test]
    fn get_response_names_source_and_format() {
        let read = ClipboardData {
            format: Format::Bitmap,
            from_guest: true,
            data: Some(vec![1, 2, 3]),
        };
        let response = get_response(&read);
        assert_eq!(response["source"], "guest");
        assert_eq!(response["bitmap_base64"], "AQID");
        let empty = get_response(&ClipboardData {
            format: Format::Text,
            from_guest: false,
            data: None,
        });
        assert_eq!(empty["empty"], true);
    }

    #[test]
    fn access_denied_names_the_forbidden_direction() {
        let error = ClipboardError::of(
            "clipboard.get",
            HostError::Refused {
                operation: "clipboard read",
                status: Status::VERR_ACCESS_DENIED,
            },
        );
        assert_eq!(
            error.to_string(),
            "clipboard.get refused: the clipboard mode forbids guest-to-host (VERR_ACCESS_DENIED)"
        );
    }
}
