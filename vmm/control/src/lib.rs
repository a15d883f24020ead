//! The host control endpoint of a VMMDev binary, and `vmmdev-ctl`, its command-line client.
//!
//! A running `vmmdev-vfio-user` or `vmmdev-monitor` started with `--control PATH` listens on the Unix
//! socket PATH, so an operator or a script can read and change guest properties, shared folders and the
//! shared clipboard while the guest runs, as `VBoxManage guestproperty`, `VBoxManage sharedfolder` and
//! `VBoxManage controlvm clipboard` do for VirtualBox. The
//! endpoint is built only on the embedder API of [`vmmdev_hgcm::Hgcm`]: host calls into the built-in
//! services and the services' change notifications.
//!
//! # Protocol
//!
//! Line-delimited JSON: the client writes one request object per line, the server answers each with one
//! response object per line, in order. A request is at most [`MAX_REQUEST_LEN`] bytes; a longer line is
//! answered with an error and the connection is closed. Unknown fields are ignored.
//!
//! Every response has `"ok"`. A failure is `{"ok":false,"error":"one line of text"}`; a request that is
//! not valid JSON, names an unknown `op` or lacks a field fails this way and the connection stays usable.
//!
//! | Request | Success response |
//! |---|---|
//! | `{"op":"guestproperty.get","name":"/A"}` | `{"ok":true,"value":"v","timestamp":1700000000000000000,"flags":"RDONLYGUEST"}`; `{"ok":true,"value":null}` if `/A` is not set |
//! | `{"op":"guestproperty.set","name":"/A","value":"v"}`, optional `"flags":"TRANSIENT,RDONLYGUEST"` | `{"ok":true}` |
//! | `{"op":"guestproperty.delete","name":"/A"}` | `{"ok":true}` (also when `/A` was not set) |
//! | `{"op":"guestproperty.enumerate"}`, optional `"patterns":["/VirtualBox/*"]` | `{"ok":true,"properties":[{"name":..,"value":..,"timestamp":..,"flags":..},..]}` |
//! | `{"op":"guestproperty.wait","pattern":"/A*"}`, optional `"timeout_ms":5000` | `{"ok":true,"name":"/A","value":"v","timestamp":..,"flags":".."}` (`"value":null` for a deletion); `{"ok":true,"timed_out":true}` |
//! | `{"op":"sharedfolder.add","name":"s","path":"/srv"}`, optional `"readonly":true`, `"automount":true`, `"automount_point":"/mnt/s"`, `"symlinks":"deny"\|"inside"\|"allow"` | `{"ok":true}` |
//! | `{"op":"sharedfolder.remove","name":"s"}` | `{"ok":true,"deferred":false}`; `"deferred":true` when the guest still has it mapped (it goes away at the last unmap) |
//! | `{"op":"clipboard.get"}`, optional `"format":"text"\|"html"\|"bitmap"` (default text), `"timeout_ms":5000` (default [`clipboard::DEFAULT_GET_TIMEOUT`], at most 60 s) | `{"ok":true,"format":"text","source":"guest","text":".."}` (`"html":".."`; `"bitmap_base64":".."`, a BMP file); `"source":"host"` when no guest owns the clipboard; `{"ok":true,..,"empty":true}` if it has nothing in that format. A guest that does not answer: `{"ok":false,"error":"clipboard.get timed out: the guest did not answer within 5000 ms"}`; the mode forbids it: `"clipboard.get refused: the clipboard mode forbids guest-to-host (VERR_ACCESS_DENIED)"` |
//! | `{"op":"clipboard.set","text":".."}`, and/or `"html":".."`, `"bitmap_base64":".."` (a BMP file); each also as a file: `"text_path"`, `"html_path"`, `"bitmap_path"`; none empties the clipboard | `{"ok":true}`; the guest is told the new formats if the mode lets data go to the guest |
//! | `{"op":"clipboard.mode"}`, optional `"mode":"off"\|"host-to-guest"\|"guest-to-host"\|"bidirectional"` | `{"ok":true,"mode":"bidirectional"}` (after setting it, if given) |
//! | `{"op":"sharedfolder.list"}` | `{"ok":true,"shares":[{"root":0,"name":"s","path":"/srv","writable":true,"automount":false,"automount_point":"","symlinks":"deny","state":"ok","maps":1},..]}`; `state` is `ok`, `missing` (directory gone) or `removed` (waiting for the last unmap) |
//!
//! Timestamps are nanoseconds since the epoch. Patterns are the guest properties service's: `*` and `?`
//! wildcards, `|` between alternatives; no pattern (or an empty one) matches every name. A wait sees only
//! changes made after it started; without `timeout_ms` it waits at most [`MAX_WAIT`]. Waits follow the
//! service's change notifications, which the framework drops for a subscriber that falls behind (see
//! `Hgcm::subscribe`): a wait during a burst of changes can miss one.
//!
//! # Serving
//!
//! [`ControlServer::start`] binds the socket (mode 0600: the endpoint can change what the guest sees),
//! serves every connection on its own thread, at most [`MAX_CONNECTIONS`] at once, closes connections
//! idle for [`IDLE_TIMEOUT`], and stops when dropped. [`Control`] executes one request and can be used without a socket.

pub mod clipboard;
mod control;
mod pattern;
mod protocol;
mod server;

pub use control::{
    Control, ControlError, Property, PropertyChangeEvent, RemoveOutcome, SharedFolder,
};
pub use protocol::{
    LineRead, MAX_REQUEST_LEN, MAX_WAIT, ProtocolError, Request, read_request_line,
};
pub use server::{ControlServer, IDLE_TIMEOUT, MAX_CONNECTIONS, ServerError};
