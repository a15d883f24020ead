//! The operations of the control endpoint, executed over the embedder API of [`Hgcm`]: host calls into
//! the guest properties, shared folders and shared clipboard services (the clipboard's in
//! [`crate::clipboard`]), and the guest properties' change notifications.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vmmdev_hgcm::{Buffer, Direction, Hgcm, HostCallError, Parm, ServiceNotification, Status};
use vmmdev_protocol::services::shared_folders::{
    HostFunction as ShareFunction, SERVICE_NAME as SHARES,
};
use vmmdev_svc_guest_props::{
    HostFunction as PropFunction, NOTIFY_PROPERTY_CHANGED, PropertyChange, SERVICE_NAME as PROPS,
};
use vmmdev_svc_shared_folders::config::{ServiceConfig, ShareConfig, SymlinkPolicy};
use vmmdev_svc_shared_folders::host::{
    HOST_FN_LIST_SHARES, add_mapping_params, list_shares_params, listed_shares,
    remove_mapping_params,
};

use crate::clipboard;
use crate::pattern;
use crate::protocol::{MAX_WAIT, Request};

/// Room for one GET_PROP reply: the longest value and flags, their terminators, and slack.
const GET_REPLY_CAPACITY: usize = 2048;
/// First ENUM_PROPS and list buffer; grown to what the service asks for.
const INITIAL_LIST_CAPACITY: usize = 16 * 1024;
/// Largest ENUM_PROPS or list reply accepted (256 properties of the longest size fit).
const MAX_LIST_CAPACITY: usize = 1024 * 1024;

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The service could not be reached.
    #[error(transparent)]
    Call(#[from] HostCallError),
    /// The service refused the operation.
    #[error("{operation} failed: {status}")]
    Refused {
        /// What was attempted.
        operation: &'static str,
        /// The service's status.
        status: Status,
    },
    /// An argument the service cannot take.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The service answered with something this client cannot read.
    #[error("malformed reply from the {0} service")]
    MalformedReply(&'static str),
    /// A reply larger than this client accepts.
    #[error("the {0} reply exceeds {MAX_LIST_CAPACITY} bytes")]
    ReplyTooLarge(&'static str),
    /// A clipboard operation failed.
    #[error(transparent)]
    Clipboard(#[from] crate::clipboard::ClipboardError),
}

/// A guest property.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Property {
    /// Name.
    pub name: String,
    /// Value.
    pub value: String,
    /// Last change, ns since the epoch.
    pub timestamp: u64,
    /// Flags in VirtualBox's text form.
    pub flags: String,
}

/// A change a wait observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PropertyChangeEvent {
    /// Name.
    pub name: String,
    /// New value; `None` for a deletion.
    pub value: Option<String>,
    /// The change's timestamp, ns since the epoch.
    pub timestamp: u64,
    /// New flags.
    pub flags: String,
}

/// A shared folder as the service lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedFolder {
    /// The root ID guests map it by.
    pub root: u32,
    /// The share's configuration: name, host path, access, symlink policy, mount point.
    pub config: ShareConfig,
    /// `ok`, `missing` (the host directory is gone) or `removed` (waiting for the last unmap).
    pub state: String,
    /// How many guest mappings it has.
    pub maps: u32,
}

/// What removing a share did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoveOutcome {
    /// The share is gone.
    Removed,
    /// The guest still has it mapped: it is gone for new mappings and disappears at the last unmap.
    Deferred,
}

/// Executes control requests against one HGCM framework. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Control {
    hgcm: Hgcm,
}

fn text(s: &str) -> Parm {
    let mut bytes = Vec::with_capacity(s.len() + 1);
    bytes.extend_from_slice(s.as_bytes());
    bytes.push(0);
    Parm::Buffer(Buffer::host(bytes, Direction::ToHost))
}

fn out_buffer(capacity: usize) -> Parm {
    Parm::Buffer(Buffer::host(vec![0; capacity], Direction::FromHost))
}

/// The bytes the service reported in the buffer parameter at `index`.
fn reply_bytes(
    params: &[Parm],
    index: usize,
    service: &'static str,
) -> Result<Vec<u8>, ControlError> {
    let buffer = params
        .get(index)
        .and_then(Parm::as_buffer)
        .ok_or(ControlError::MalformedReply(service))?;
    let mut bytes = vec![0; buffer.reported_len().min(MAX_LIST_CAPACITY)];
    let read = buffer
        .read_at(0, &mut bytes)
        .map_err(|_| ControlError::MalformedReply(service))?;
    bytes.truncate(read);
    Ok(bytes)
}

fn utf8(bytes: &[u8], service: &'static str) -> Result<String, ControlError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| ControlError::MalformedReply(service))
}

/// Rejects strings the services would cut at an embedded NUL.
fn no_nul(what: &str, value: &str) -> Result<(), ControlError> {
    if value.contains('\0') {
        return Err(ControlError::InvalidArgument(format!(
            "{what} contains a NUL character"
        )));
    }
    Ok(())
}

impl Control {
    /// Controls the services registered in `hgcm`.
    pub fn new(hgcm: Hgcm) -> Self {
        Control { hgcm }
    }

    fn call(
        &self,
        service: &str,
        function: u32,
        params: &mut [Parm],
    ) -> Result<Status, ControlError> {
        Ok(Status(self.hgcm.host_call(service, function, params)?))
    }

    /// Reads a guest property; `None` if it is not set.
    pub fn get_property(&self, name: &str) -> Result<Option<Property>, ControlError> {
        no_nul("the name", name)?;
        let mut params = [
            text(name),
            out_buffer(GET_REPLY_CAPACITY),
            Parm::U64(0),
            Parm::U32(0),
        ];
        let status = self.call(PROPS, PropFunction::GET_PROP.raw(), &mut params)?;
        if status == Status::VERR_NOT_FOUND {
            return Ok(None);
        }
        if status.is_failure() {
            return Err(ControlError::Refused {
                operation: "guestproperty get",
                status,
            });
        }
        let reply = reply_bytes(&params, 1, PROPS)?;
        let mut parts = reply.split(|&b| b == 0);
        let value = utf8(parts.next().unwrap_or_default(), PROPS)?;
        let flags = utf8(parts.next().unwrap_or_default(), PROPS)?;
        let timestamp = params
            .get(2)
            .and_then(Parm::as_u64)
            .ok_or(ControlError::MalformedReply(PROPS))?;
        Ok(Some(Property {
            name: name.to_owned(),
            value,
            timestamp,
            flags,
        }))
    }

    /// Creates or replaces a guest property; without `flags` its flags are cleared.
    pub fn set_property(
        &self,
        name: &str,
        value: &str,
        flags: Option<&str>,
    ) -> Result<(), ControlError> {
        no_nul("the name", name)?;
        no_nul("the value", value)?;
        let mut params = vec![text(name), text(value)];
        if let Some(flags) = flags {
            no_nul("the flags", flags)?;
            params.push(text(flags));
        }
        let status = self.call(PROPS, PropFunction::SET_PROP.raw(), &mut params)?;
        if status.is_failure() {
            return Err(ControlError::Refused {
                operation: "guestproperty set",
                status,
            });
        }
        Ok(())
    }

    /// Deletes a guest property (succeeds if it was not set).
    pub fn delete_property(&self, name: &str) -> Result<(), ControlError> {
        no_nul("the name", name)?;
        let mut params = [text(name)];
        let status = self.call(PROPS, PropFunction::DEL_PROP.raw(), &mut params)?;
        if status.is_failure() {
            return Err(ControlError::Refused {
                operation: "guestproperty delete",
                status,
            });
        }
        Ok(())
    }

    /// The guest properties matching any of `patterns` (every property if there are none).
    pub fn enumerate_properties(&self, patterns: &[String]) -> Result<Vec<Property>, ControlError> {
        let mut list = Vec::new();
        for pattern in patterns {
            no_nul("a pattern", pattern)?;
            list.extend_from_slice(pattern.as_bytes());
            list.push(0);
        }
        if list.is_empty() {
            list.push(0);
        }
        let mut capacity = INITIAL_LIST_CAPACITY;
        loop {
            let mut params = [
                Parm::Buffer(Buffer::host(list.clone(), Direction::ToHost)),
                out_buffer(capacity),
                Parm::U32(0),
            ];
            let status = self.call(PROPS, PropFunction::ENUM_PROPS.raw(), &mut params)?;
            if status == Status::VERR_BUFFER_OVERFLOW {
                capacity = grown(&params, 2, capacity, PROPS)?;
                continue;
            }
            if status.is_failure() {
                return Err(ControlError::Refused {
                    operation: "guestproperty enumerate",
                    status,
                });
            }
            return parse_enumeration(&reply_bytes(&params, 1, PROPS)?);
        }
    }

    /// Waits up to `timeout` (at most [`MAX_WAIT`]) for the next change of a property whose name matches
    /// `pattern`; `None` if none came. Only changes made after the call started are seen.
    pub fn wait_property(
        &self,
        pattern: &str,
        timeout: Duration,
    ) -> Result<Option<PropertyChangeEvent>, ControlError> {
        let changes = self.hgcm.subscribe();
        let deadline = Instant::now() + timeout.min(MAX_WAIT);
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let Ok(notification) = changes.recv_timeout(remaining) else {
                return Ok(None);
            };
            if let Some(change) = self.matching_change(&notification, pattern)? {
                return Ok(Some(change));
            }
        }
    }

    fn matching_change(
        &self,
        notification: &ServiceNotification,
        pattern: &str,
    ) -> Result<Option<PropertyChangeEvent>, ControlError> {
        if notification.service != PROPS || notification.code != NOTIFY_PROPERTY_CHANGED {
            return Ok(None);
        }
        let change = match PropertyChange::decode(&notification.payload) {
            Ok(change) => change,
            Err(error) => {
                log::warn!("control: ignoring a guest property notification: {error}");
                return Ok(None);
            }
        };
        if !pattern::matches(pattern, &change.name) {
            return Ok(None);
        }
        let mut value = change.value;
        if change.value_omitted {
            // Too large for the notification: read what the property holds now.
            value = self
                .get_property(&change.name)?
                .map(|property| property.value);
        }
        Ok(Some(PropertyChangeEvent {
            name: change.name,
            value,
            timestamp: change.timestamp,
            flags: change.flags,
        }))
    }

    /// Adds a shared folder; the host directory must exist.
    pub fn add_share(&self, share: &ShareConfig) -> Result<(), ControlError> {
        share
            .validate()
            .map_err(|error| ControlError::InvalidArgument(error.to_string()))?;
        if share.path.to_string_lossy().contains('\0') {
            return Err(ControlError::InvalidArgument(
                "the path contains a NUL character".into(),
            ));
        }
        let mut params = add_mapping_params(share, false)
            .map_err(|error| ControlError::InvalidArgument(error.to_string()))?;
        let status = self.call(SHARES, ShareFunction::ADD_MAPPING.raw(), &mut params)?;
        if status.is_failure() {
            return Err(ControlError::Refused {
                operation: "sharedfolder add",
                status,
            });
        }
        Ok(())
    }

    /// Removes a shared folder.
    pub fn remove_share(&self, name: &str) -> Result<RemoveOutcome, ControlError> {
        no_nul("the share name", name)?;
        let mut params = remove_mapping_params(name)
            .map_err(|error| ControlError::InvalidArgument(error.to_string()))?;
        let status = self.call(SHARES, ShareFunction::REMOVE_MAPPING.raw(), &mut params)?;
        if status == Status::VINF_PERMISSION_DENIED {
            return Ok(RemoveOutcome::Deferred);
        }
        if status.is_failure() {
            return Err(ControlError::Refused {
                operation: "sharedfolder remove",
                status,
            });
        }
        Ok(RemoveOutcome::Removed)
    }

    /// The shared folders.
    pub fn list_shares(&self) -> Result<Vec<SharedFolder>, ControlError> {
        let mut capacity = INITIAL_LIST_CAPACITY;
        loop {
            let mut params = list_shares_params(capacity);
            let status = self.call(SHARES, HOST_FN_LIST_SHARES, &mut params)?;
            if status == Status::VERR_BUFFER_OVERFLOW {
                capacity = grown(&params, 1, capacity, SHARES)?;
                continue;
            }
            if status.is_failure() {
                return Err(ControlError::Refused {
                    operation: "sharedfolder list",
                    status,
                });
            }
            let text = listed_shares(&params).ok_or(ControlError::MalformedReply(SHARES))?;
            return text.lines().map(parse_share_line).collect();
        }
    }

    /// Executes one request and returns its response object.
    pub fn handle(&self, request: Request) -> Value {
        match self.execute(request) {
            Ok(value) => value,
            Err(error) => error_response(&error.to_string()),
        }
    }

    fn execute(&self, request: Request) -> Result<Value, ControlError> {
        Ok(match request {
            Request::GetProperty { name } => match self.get_property(&name)? {
                Some(p) => {
                    json!({"ok": true, "value": p.value, "timestamp": p.timestamp, "flags": p.flags})
                }
                None => json!({"ok": true, "value": null}),
            },
            Request::SetProperty { name, value, flags } => {
                self.set_property(&name, &value, flags.as_deref())?;
                json!({"ok": true})
            }
            Request::DeleteProperty { name } => {
                self.delete_property(&name)?;
                json!({"ok": true})
            }
            Request::EnumerateProperties { patterns } => {
                let properties: Vec<Value> = self
                    .enumerate_properties(&patterns)?
                    .into_iter()
                    .map(|p| json!({"name": p.name, "value": p.value, "timestamp": p.timestamp, "flags": p.flags}))
                    .collect();
                json!({"ok": true, "properties": properties})
            }
            Request::WaitProperty {
                pattern,
                timeout_ms,
            } => {
                no_nul("the pattern", &pattern)?;
                let timeout = timeout_ms.map_or(MAX_WAIT, Duration::from_millis);
                match self.wait_property(&pattern, timeout)? {
                    Some(c) => {
                        json!({"ok": true, "name": c.name, "value": c.value, "timestamp": c.timestamp, "flags": c.flags})
                    }
                    None => json!({"ok": true, "timed_out": true}),
                }
            }
            Request::AddShare {
                name,
                path,
                readonly,
                automount,
                automount_point,
                symlinks,
            } => {
                let mut share = ShareConfig::new(name, PathBuf::from(path));
                share.writable = !readonly;
                share.auto_mount = automount;
                share.mount_point = automount_point;
                share.symlinks = match symlinks.as_deref() {
                    None | Some("deny") => SymlinkPolicy::Deny,
                    Some("inside") => SymlinkPolicy::Inside,
                    Some("allow") => SymlinkPolicy::Allow,
                    Some(other) => {
                        return Err(ControlError::InvalidArgument(format!(
                            "symlinks '{other}' is not deny, inside or allow"
                        )));
                    }
                };
                self.add_share(&share)?;
                json!({"ok": true})
            }
            Request::RemoveShare { name } => {
                let deferred = self.remove_share(&name)? == RemoveOutcome::Deferred;
                json!({"ok": true, "deferred": deferred})
            }
            Request::ListShares => {
                let shares: Vec<Value> = self
                    .list_shares()?
                    .into_iter()
                    .map(|s| {
                        json!({
                            "root": s.root, "name": s.config.name,
                            "path": s.config.path.to_string_lossy(), "writable": s.config.writable,
                            "automount": s.config.auto_mount, "automount_point": s.config.mount_point,
                            "symlinks": s.config.symlinks.keyword(), "state": s.state, "maps": s.maps,
                        })
                    })
                    .collect();
                json!({"ok": true, "shares": shares})
            }
            Request::GetClipboard { format, timeout_ms } => {
                let format = clipboard::parse_format(format.as_deref())?;
                let timeout =
                    timeout_ms.map_or(clipboard::DEFAULT_GET_TIMEOUT, Duration::from_millis);
                clipboard::get_response(&clipboard::get(&self.hgcm, format, timeout)?)
            }
            Request::SetClipboard {
                text,
                text_path,
                html,
                html_path,
                bitmap_base64,
                bitmap_path,
            } => {
                let content = clipboard::content_of(&clipboard::Inputs {
                    text: text.as_deref(),
                    text_path: text_path.as_deref(),
                    html: html.as_deref(),
                    html_path: html_path.as_deref(),
                    bitmap_base64: bitmap_base64.as_deref(),
                    bitmap_path: bitmap_path.as_deref(),
                })?;
                clipboard::set(&self.hgcm, &content)?;
                json!({"ok": true})
            }
            Request::ClipboardMode { mode } => {
                clipboard::mode_request(&self.hgcm, mode.as_deref())?
            }
        })
    }
}

/// The failure response carrying `message` (one line).
pub(crate) fn error_response(message: &str) -> Value {
    json!({"ok": false, "error": message.replace(['\n', '\r'], " ")})
}

/// The buffer size to retry with after `VERR_BUFFER_OVERFLOW`, from the size parameter at `index`.
fn grown(
    params: &[Parm],
    index: usize,
    capacity: usize,
    service: &'static str,
) -> Result<usize, ControlError> {
    let needed = params
        .get(index)
        .and_then(Parm::as_u32)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or(ControlError::MalformedReply(service))?;
    if needed > MAX_LIST_CAPACITY {
        return Err(ControlError::ReplyTooLarge(service));
    }
    // A service that asks for no more room than it had would make this loop forever.
    if needed <= capacity {
        return Err(ControlError::MalformedReply(service));
    }
    Ok(needed)
}

/// ENUM_PROPS records: `name\0value\0timestamp\0flags\0` each, then an empty name.
fn parse_enumeration(reply: &[u8]) -> Result<Vec<Property>, ControlError> {
    let mut fields = reply.split(|&b| b == 0);
    let mut properties = Vec::new();
    loop {
        let name = fields.next().ok_or(ControlError::MalformedReply(PROPS))?;
        if name.is_empty() {
            return Ok(properties);
        }
        let mut field = || fields.next().ok_or(ControlError::MalformedReply(PROPS));
        let value = field()?;
        let timestamp = field()?;
        let flags = field()?;
        let timestamp = std::str::from_utf8(timestamp)
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or(ControlError::MalformedReply(PROPS))?;
        properties.push(Property {
            name: utf8(name, PROPS)?,
            value: utf8(value, PROPS)?,
            timestamp,
            flags: utf8(flags, PROPS)?,
        });
    }
}

/// One line of the share list: `root<TAB>entry<TAB>state<TAB>maps`, `entry` in configuration syntax.
fn parse_share_line(line: &str) -> Result<SharedFolder, ControlError> {
    let malformed = || ControlError::MalformedReply(SHARES);
    let mut fields = line.split('\t');
    let mut field = || fields.next().ok_or_else(malformed);
    let root = field()?.parse().map_err(|_| malformed())?;
    let entry = field()?;
    let state = field()?.to_owned();
    let maps = field()?.parse().map_err(|_| malformed())?;
    let config = ServiceConfig::parse(entry)
        .ok()
        .and_then(|config| config.shares.into_iter().next())
        .ok_or_else(malformed)?;
    Ok(SharedFolder {
        root,
        config,
        state,
        maps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enumeration_reply_yields_every_record() {
        let reply = b"/A\0a\x001\0\0/B\0b\x002\0RDONLYGUEST\0\0\0\0\0";
        let properties = parse_enumeration(reply).expect("well formed");
        assert_eq!(properties.len(), 2);
        assert_eq!(properties[1].name, "/B");
        assert_eq!(properties[1].timestamp, 2);
        assert_eq!(properties[1].flags, "RDONLYGUEST");
    }

    #[test]
    fn truncated_enumeration_reply_is_malformed() {
        assert!(matches!(
            parse_enumeration(b"/A\0a"),
            Err(ControlError::MalformedReply(_))
        ));
    }

    #[test]
    fn enumeration_with_bad_timestamp_is_malformed() {
        assert!(parse_enumeration(b"/A\0a\0x\0\0\0\0\0\0").is_err());
    }

    #[test]
    fn share_line_splits_into_fields() {
        let share =
            parse_share_line("3\tshare=s:/srv:ro:symlinks=inside\tok\t2").expect("well formed");
        assert_eq!(share.root, 3);
        assert_eq!(share.config.name, "s");
        assert_eq!(share.config.path, PathBuf::from("/srv"));
        assert!(!share.config.writable);
        assert_eq!(share.config.symlinks, SymlinkPolicy::Inside);
        assert_eq!(share.maps, 2);
    }

    #[test]
    fn short_share_line_is_malformed() {
        assert!(parse_share_line("0\tshare=s:/srv").is_err());
    }

    #[test]
    fn overflow_size_not_larger_than_the_buffer_is_malformed() {
        let params = [out_buffer(0), Parm::U32(16)];
        assert!(grown(&params, 1, 16, PROPS).is_err());
        assert_eq!(grown(&params, 1, 8, PROPS).expect("larger"), 16);
    }

    #[test]
    fn error_responses_stay_on_one_line() {
        let response = error_response("a\nb");
        assert_eq!(response["error"], "a b");
        assert_eq!(response["ok"], false);
    }
}
