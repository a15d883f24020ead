//! The shared clipboard HGCM service (`VBoxSharedClipboard`), wire-compatible with VirtualBox's.
//!
//! Guest and host each *announce* the formats their clipboard holds; the other side *reads* one
//! format when something is pasted. The guest (VirtualBox's `VBoxClient --clipboard`, VBoxTray,
//! or this project's `vboxcontrol clipboard`) keeps a wait parked for host messages; the host
//! side is a [`Backend`] (headless memory by default, the desktop clipboard with the `desktop`
//! feature) driven through the host functions ([`host`]). The crate
//! `vmmdev-svc-clipboard-plugin` (`services/clipboard/plugin`) exports it as a plugin
//! (`libvmmdev_clipboard.so`); [`clipboard_entry`] registers it as a built-in:
//! `Hgcm::register_builtin(vmmdev_svc_clipboard::clipboard_entry, "mode=bidirectional")`.
//!
//! # Guest functions
//!
//! Both protocol generations (see `shared/reference/shared-clipboard.md`): the legacy one
//! (MSG_OLD_GET_WAIT, REPORT_FORMATS, DATA_READ, 2-parameter DATA_WRITE) and the message
//! protocol of additions 6.1+ (REPORT_FEATURES / QUERY_FEATURES, MSG_PEEK_NOWAIT / WAIT, MSG_GET,
//! MSG_CANCEL, REPORT_FORMATS, DATA_READ, DATA_WRITE with context IDs, ERROR). The host offers
//! only context IDs (no file transfers), so a client gets READ_DATA_CID if it negotiated context
//! IDs and READ_DATA otherwise, and never a transfer message. CONNECT, the transfer functions
//! and NEGOTIATE_CHUNK_SIZE answer `VERR_NOT_IMPLEMENTED`.
//!
//! Modes, checked after the parameters: REPORT_FORMATS and DATA_WRITE need guest-to-host or
//! bidirectional, DATA_READ host-to-guest or bidirectional (else `VERR_ACCESS_DENIED`); host
//! announcements reach the guest only in host-to-guest or bidirectional (silently dropped
//! otherwise), and host reads of guest data need guest-to-host or bidirectional (VirtualBox 7.0
//! does not check this one; the reference recommends it).
//!
//! Choices where VirtualBox leaves room, all compatible with its guests: DATA_READ reports
//! `VINF_BUFFER_OVERFLOW` only when the data is strictly larger than the buffer (VirtualBox's
//! `>=` makes its own client fail on an exactly fitting retry); a host read of guest data never
//! blocks the service thread (VirtualBox waits up to 30 s there) but is a request the host
//! collects, with a deadline; a newer host announcement replaces an unfetched one in a client's
//! queue; an empty REPORT_FORMATS from a guest that does not own the clipboard is ignored.
//!
//! # Encodings and limits
//!
//! On the wire text is UTF-16LE with CRLF and a NUL, HTML UTF-8 with a NUL, bitmaps DIBs; on the
//! host text and HTML are UTF-8, bitmaps BMP files ([`convert`]). One format's data is at most
//! `max_data` bytes (32 MiB by default) as its sender gives it, the host in host encoding and the
//! guest in wire encoding (`VERR_TOO_MUCH_DATA`). 128 root and 128 user
//! clients, one kernel client, 16 calls per client, 4096 queued messages per client, 64
//! outstanding host reads.

pub mod backend;
mod client;
pub mod config;
pub mod content;
#[cfg(feature = "desktop")]
pub mod desktop;
pub mod host;
mod requests;
mod service;
mod state;
pub mod sync;

pub use backend::{Backend, BackendError, MemoryBackend};
pub use config::{Config, ConfigError};
pub use content::{Content, ContentError, Format};
pub use host::{ClipboardHost, HostError};
pub use service::Clipboard;
pub use sync::DesktopSync;
/// The wire conversions, shared with the guest library.
pub use vmmdev_protocol::services::clipboard::convert;
pub use vmmdev_protocol::services::clipboard::{
    Formats, Function, HostFunction, Mode, SERVICE_NAME,
};

vmmdev_hgcm_sdk::service_entry!(
    pub fn clipboard_entry,
    Clipboard,
    "VBoxSharedClipboard",
    Clipboard::new
);
