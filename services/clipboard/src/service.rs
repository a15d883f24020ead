//! The service: guest calls validated the way VirtualBox validates them and answered with its
//! statuses, the host functions, the mode gates, parked waits, and save/restore.
//!
//! This is the wire boundary: the other modules work with typed values and their own errors.
//! Everything runs on the service thread and nothing here waits: a parked wait is completed when
//! a message is queued for its client, and host reads of guest data are requests the host
//! collects later (see [`crate::requests`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use vmmdev_hgcm_sdk::{
    Buffer, BufferError, Call, ClientCategory, ClientId, ClientLimits, Delivery, Host, Params,
    Parm, Requestor, Service, VmEvent,
};
use vmmdev_protocol::services::clipboard::{
    Formats, Function, GuestFeatures0, GuestFeatures1, HostFeatures0, HostFunction, HostMessage,
    MSG_GET_ANY, Mode, VBOX_SHCL_MAX_CALLS_PER_CLIENT, VBOX_SHCL_MAX_CLIENTS,
};
use vmmdev_protocol::status::Status;

use crate::backend::{Backend, BackendError, MemoryBackend};
use crate::client::{Client, First, MESSAGE_PARAMETERS, Message, Parked, WaitKind};
use crate::config::{BackendKind, Config};
use crate::content::{self, Content, ContentError, Format};
use crate::convert::ConvertError;
use crate::host::{
    DEFAULT_TIMEOUT, HOST_FN_FETCH_GUEST_DATA, HOST_FN_GET_MODE, HOST_FN_QUERY_STATE,
    HOST_FN_READ_HOST_CONTENT, HOST_FN_REQUEST_GUEST_DATA, HOST_FN_SET_CONTENT, HOST_FN_SYNC_HOST,
    MAX_TIMEOUT, NOTIFY_FORMATS_CHANGED, NOTIFY_GUEST_DATA,
};
use crate::requests::{Collected, RequestState, Requests, TooManyRequests};
use crate::state::{ClientState, Owner, STATE_VERSION, ServiceState};

/// Why a call failed, before it becomes a status.
#[derive(Debug, thiserror::Error)]
enum CallError {
    /// The parameter count does not fit the function (or the client's protocol).
    #[error("wrong parameter count")]
    Count,
    /// A parameter has the wrong type.
    #[error("wrong parameter type")]
    Type,
    /// A value the function does not take.
    #[error("invalid parameter")]
    Invalid,
    /// Reserved flags are not zero.
    #[error("reserved flags are set")]
    Flags,
    /// The mode forbids this direction.
    #[error("the clipboard mode forbids this direction")]
    Mode,
    /// More data than the configured limit.
    #[error("{0} bytes exceed the data limit")]
    TooMuchData(usize),
    /// A DATA_WRITE whose context the host never issued to this client.
    #[error("unknown context ID")]
    Context,
    /// The guest does not offer the format the host asked for.
    #[error("the guest does not offer that format")]
    NotOffered,
    /// No such host request.
    #[error("unknown request")]
    UnknownRequest,
    /// The call's client is not connected (a framework bug).
    #[error("unknown client")]
    Client,
    /// A buffer could not be accessed.
    #[error(transparent)]
    Buffer(#[from] BufferError),
    /// Guest data that cannot be converted.
    #[error(transparent)]
    Convert(#[from] ConvertError),
    /// Host data the content refuses.
    #[error(transparent)]
    Content(#[from] ContentError),
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// Too many outstanding host reads.
    #[error(transparent)]
    Requests(#[from] TooManyRequests),
}

impl CallError {
    fn status(&self) -> Status {
        match self {
            Self::Count => Status::VERR_WRONG_PARAMETER_COUNT,
            Self::Type => Status::VERR_WRONG_PARAMETER_TYPE,
            Self::Invalid | Self::Convert(_) | Self::Content(_) => Status::VERR_INVALID_PARAMETER,
            Self::Flags => Status::VERR_INVALID_FLAGS,
            Self::Mode => Status::VERR_ACCESS_DENIED,
            Self::TooMuchData(_) => Status::VERR_TOO_MUCH_DATA,
            Self::Context => Status::VERR_INVALID_CONTEXT,
            Self::NotOffered | Self::UnknownRequest => Status::VERR_NOT_FOUND,
            Self::Client => Status::VERR_INVALID_STATE,
            Self::Buffer(BufferError::Cancelled) => Status::VERR_INTERRUPTED,
            Self::Buffer(_) => Status::VERR_INVALID_PARAMETER,
            Self::Backend(_) => Status::VERR_GENERAL_FAILURE,
            Self::Requests(_) => Status::VERR_OUT_OF_RESOURCES,
        }
    }
}

fn u32_at(params: &Params, index: usize) -> Result<u32, CallError> {
    match params.get(index) {
        Some(Parm::U32(v)) => Ok(*v),
        Some(_) => Err(CallError::Type),
        None => Err(CallError::Count),
    }
}

fn u64_at(params: &Params, index: usize) -> Result<u64, CallError> {
    match params.get(index) {
        Some(Parm::U64(v)) => Ok(*v),
        Some(_) => Err(CallError::Type),
        None => Err(CallError::Count),
    }
}

fn buffer_at(params: &Params, index: usize) -> Result<&Buffer, CallError> {
    match params.get(index) {
        Some(Parm::Buffer(b)) => Ok(b),
        Some(_) => Err(CallError::Type),
        None => Err(CallError::Count),
    }
}

/// The host-writable buffer at `index`.
fn out_buffer_at(params: &Params, index: usize) -> Result<&Buffer, CallError> {
    let buffer = buffer_at(params, index)?;
    if !buffer.direction().host_writes() {
        return Err(CallError::Invalid);
    }
    Ok(buffer)
}

fn set_u32(params: &mut Params, index: usize, value: u32) -> Result<(), CallError> {
    params.set_u32(index, value).map_err(|_| CallError::Type)
}

/// Sets a parameter that may be 32 or 64 bits wide (the first of a peek).
fn set_either(params: &mut Params, index: usize, value: u64) {
    match params.get(index) {
        Some(Parm::U32(_)) => {
            let _ = params.set_u32(index, value as u32);
        }
        Some(Parm::U64(_)) => {
            let _ = params.set_u64(index, value);
        }
        _ => {}
    }
}

/// Writes `data` into the output buffer at `index` as far as it fits and its full size into
/// the u32 at `size_index`; says whether it was cut.
fn write_out(
    params: &mut Params,
    index: usize,
    size_index: usize,
    data: &[u8],
) -> Result<bool, CallError> {
    let size = u32::try_from(data.len()).map_err(|_| CallError::TooMuchData(data.len()))?;
    set_u32(params, size_index, size)?;
    let mut out = params.buffer_mut(index).map_err(|_| CallError::Type)?;
    let fits = data.len().min(out.len());
    let written = out.write_at(0, data.get(..fits).unwrap_or_default())?;
    out.set_reported_len(written)?;
    Ok(data.len() > out.len())
}

fn copy_in(buffer: &Buffer, max: usize) -> Result<Vec<u8>, CallError> {
    if buffer.len() > max {
        return Err(CallError::TooMuchData(buffer.len()));
    }
    Ok(buffer.copy_in(max)?)
}

fn host_to_guest(mode: Mode) -> bool {
    mode == Mode::HOST_TO_GUEST || mode == Mode::BIDIRECTIONAL
}

fn guest_to_host(mode: Mode) -> bool {
    mode == Mode::GUEST_TO_HOST || mode == Mode::BIDIRECTIONAL
}

/// A session ID for restore checks: never 0, different for each start and each restore.
fn new_session(not: u64) -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let session = nanos | 1;
    if session == not {
        session.wrapping_add(2)
    } else {
        session
    }
}

/// The shared clipboard service.
#[derive(Debug)]
pub struct Clipboard {
    host: Host,
    max_data: usize,
    mode: Mode,
    headless: bool,
    session: u64,
    backend: Box<dyn Backend>,
    /// Fingerprint of the content the service last stored in (or read from) the backend.
    synced: u64,
    clients: BTreeMap<ClientId, Client>,
    owner: Owner,
    guest_formats: Formats,
    /// Counts the guests' announcements, so a host polling QUERY_STATE sees a new copy even when
    /// the owner and formats stay the same (wraps).
    announcements: u32,
    requests: Requests,
}

impl Clipboard {
    /// Builds the service from its configuration string (see [`crate::config`]).
    pub fn new(host: Host, config: &str) -> Result<Clipboard, i32> {
        let config = Config::parse(config).map_err(|e| {
            host.log(
                log::Level::Error,
                &format!("shared clipboard: configuration refused: {e}"),
            );
            Status::VERR_INVALID_PARAMETER.raw()
        })?;
        let backend = Self::backend(&host, config.backend)?;
        Ok(Self::with_backend(host, &config, backend))
    }

    /// Builds the service with an embedder's own backend.
    pub fn with_backend(host: Host, config: &Config, backend: Box<dyn Backend>) -> Clipboard {
        Clipboard {
            host,
            max_data: config.max_data,
            mode: config.mode,
            headless: false,
            session: new_session(0),
            backend,
            synced: fingerprint(&Content::default()),
            clients: BTreeMap::new(),
            owner: Owner::Nobody,
            guest_formats: Formats::NONE,
            announcements: 0,
            requests: Requests::default(),
        }
    }

    fn backend(host: &Host, kind: BackendKind) -> Result<Box<dyn Backend>, i32> {
        match kind {
            BackendKind::Memory => Ok(Box::new(MemoryBackend::default())),
            #[cfg(feature = "desktop")]
            BackendKind::Desktop => crate::desktop::DesktopBackend::open()
                .map(|b| Box::new(b) as Box<dyn Backend>)
                .map_err(|e| {
                    host.log(log::Level::Error, &format!("shared clipboard: {e}"));
                    Status::VERR_NOT_SUPPORTED.raw()
                }),
            #[cfg(not(feature = "desktop"))]
            BackendKind::Desktop => {
                host.log(
                    log::Level::Error,
                    "shared clipboard: the desktop backend is not built in",
                );
                Err(Status::VERR_NOT_SUPPORTED.raw())
            }
        }
    }

    fn notify_formats(&mut self) {
        let formats = match self.owner {
            Owner::Guest(_) => self.guest_formats,
            _ => Formats::NONE,
        };
        let host_formats = if self.owner == Owner::Host {
            self.host_formats()
        } else {
            Formats::NONE
        };
        let mut payload = (formats | host_formats).bits().to_le_bytes().to_vec();
        payload.extend_from_slice(&self.owner.code().to_le_bytes());
        self.host.notify(NOTIFY_FORMATS_CHANGED, &payload);
    }

    /// Replaces the backend's content, remembering what was stored.
    fn store_host(&mut self, content: &Content) -> Result<(), BackendError> {
        self.backend.store(content)?;
        if self.backend.changes_outside() {
            self.synced = fingerprint(content);
        }
        Ok(())
    }

    /// SYNC_HOST: if the backend's content changed behind the service's back (a desktop
    /// application copied something), the host owns the clipboard and the guest is told.
    fn sync_host(&mut self) -> Result<Status, CallError> {
        if !self.backend.take_outside_change() {
            return Ok(Status::VINF_SUCCESS);
        }
        let content = self.backend.load()?;
        let seen = fingerprint(&content);
        if seen == self.synced {
            return Ok(Status::VINF_SUCCESS);
        }
        self.synced = seen;
        self.owner = if content.is_empty() {
            Owner::Nobody
        } else {
            Owner::Host
        };
        self.guest_formats = Formats::NONE;
        self.announce(content.formats());
        self.notify_formats();
        Ok(Status::VINF_SUCCESS)
    }

    fn notify_guest_data(&self, id: u32, status: Status) {
        let mut payload = id.to_le_bytes().to_vec();
        payload.extend_from_slice(&status.raw().to_le_bytes());
        self.host.notify(NOTIFY_GUEST_DATA, &payload);
    }

    fn host_formats(&mut self) -> Formats {
        match self.backend.formats() {
            Ok(formats) => formats,
            Err(e) => {
                self.host.log(
                    log::Level::Warn,
                    &format!("shared clipboard: cannot read the host clipboard: {e}"),
                );
                Formats::NONE
            }
        }
    }

    // ----- queue and waits -------------------------------------------------------------------

    /// Queues `message` for `client` and completes its parked wait.
    fn send(&mut self, client: ClientId, message: Message) -> Result<(), CallError> {
        let target = self.clients.get_mut(&client).ok_or(CallError::Client)?;
        target.push(message).map_err(|e| {
            self.host.log(
                log::Level::Warn,
                &format!("shared clipboard: {e} (client {client})"),
            );
            CallError::Requests(TooManyRequests)
        })?;
        self.deliver_parked(client);
        Ok(())
    }

    /// Completes the parked wait of `client` with the head of its queue, if both exist.
    fn deliver_parked(&mut self, client: ClientId) {
        let Some(target) = self.clients.get_mut(&client) else {
            return;
        };
        let Some(head) = target.queue.front().copied() else {
            return;
        };
        let Some(mut parked) = target.parked.take() else {
            return;
        };
        if parked.call.is_cancelled() {
            parked.call.complete(Status::VERR_INTERRUPTED.raw());
            return;
        }
        let context_ids = target.context_ids();
        match parked.kind {
            WaitKind::Peek => {
                fill_peek(parked.call.params_mut(), &head, context_ids);
                parked.call.complete(Status::VINF_SUCCESS.raw());
            }
            WaitKind::OldGet => {
                target.queue.pop_front();
                fill_old_get(parked.call.params_mut(), &head, context_ids);
                if parked.call.complete(Status::VINF_SUCCESS.raw()) == Delivery::Cancelled {
                    target.queue.push_front(head);
                }
            }
        }
    }

    /// Parks `call`, unless the client already has a live wait parked.
    fn park(&mut self, kind: WaitKind, call: Call) {
        let Some(target) = self.clients.get_mut(&call.client()) else {
            call.complete(Status::VERR_INVALID_STATE.raw());
            return;
        };
        if let Some(parked) = target.parked.take() {
            if !parked.call.is_cancelled() {
                target.parked = Some(parked);
                call.complete(Status::VERR_RESOURCE_BUSY.raw());
                return;
            }
            parked.call.complete(Status::VERR_INTERRUPTED.raw());
        }
        target.parked = Some(Parked { kind, call });
    }

    /// Tells every client the host's formats, if the mode lets data go to the guest.
    fn announce(&mut self, formats: Formats) {
        if !host_to_guest(self.mode) {
            return;
        }
        let clients: Vec<ClientId> = self.clients.keys().copied().collect();
        for client in clients {
            // A full queue was logged; the next announcement replaces the queued one anyway.
            let _ = self.send(client, Message::Formats(formats));
        }
    }

    // ----- guest functions -------------------------------------------------------------------

    /// MSG_PEEK_WAIT / MSG_PEEK_NOWAIT.
    fn peek(&mut self, mut call: Call, wait: bool) {
        let client = call.client();
        let checked = self.check_peek(call.params_mut());
        if let Err(status) = checked {
            call.complete(status.raw());
            return;
        }
        let Some(target) = self.clients.get(&client) else {
            call.complete(Status::VERR_INVALID_STATE.raw());
            return;
        };
        if let Some(head) = target.queue.front() {
            fill_peek(call.params_mut(), head, target.context_ids());
            call.complete(Status::VINF_SUCCESS.raw());
        } else if wait {
            self.park(WaitKind::Peek, call);
        } else {
            call.complete(Status::VERR_TRY_AGAIN.raw());
        }
    }

    /// Validates a peek's parameters, zeroes them and runs the restore check.
    fn check_peek(&self, params: &mut Params) -> Result<(), Status> {
        if params.len() < 2 {
            return Err(Status::VERR_WRONG_PARAMETER_COUNT);
        }
        let restore_check = match params.get(0) {
            Some(Parm::U64(session)) => *session,
            Some(Parm::U32(_)) => 0,
            _ => return Err(Status::VERR_WRONG_PARAMETER_TYPE),
        };
        if params.iter().skip(1).any(|p| !matches!(p, Parm::U32(_))) {
            return Err(Status::VERR_WRONG_PARAMETER_TYPE);
        }
        set_either(params, 0, 0);
        for index in 1..params.len() {
            let _ = params.set_u32(index, 0);
        }
        if restore_check != 0 && restore_check != self.session {
            set_either(params, 0, self.session);
            return Err(Status::VERR_VM_RESTORED);
        }
        Ok(())
    }

    /// MSG_OLD_GET_WAIT: returns and removes the head message, or parks.
    fn old_get_wait(&mut self, mut call: Call) {
        let params = call.params();
        let checked = if params.len() != 2 {
            Err(Status::VERR_WRONG_PARAMETER_COUNT)
        } else if params.iter().any(|p| !matches!(p, Parm::U32(_))) {
            Err(Status::VERR_WRONG_PARAMETER_TYPE)
        } else {
            Ok(())
        };
        if let Err(status) = checked {
            call.complete(status.raw());
            return;
        }
        let Some(target) = self.clients.get_mut(&call.client()) else {
            call.complete(Status::VERR_INVALID_STATE.raw());
            return;
        };
        let Some(head) = target.queue.pop_front() else {
            self.park(WaitKind::OldGet, call);
            return;
        };
        fill_old_get(call.params_mut(), &head, target.context_ids());
        if call.complete(Status::VINF_SUCCESS.raw()) == Delivery::Cancelled {
            target.queue.push_front(head);
        }
    }

    /// MSG_GET: the head message's parameters, if the caller expects it and its parameters
    /// have the message's count and types.
    fn msg_get(&mut self, mut call: Call) {
        let Some(target) = self.clients.get_mut(&call.client()) else {
            call.complete(Status::VERR_INVALID_STATE.raw());
            return;
        };
        let Some(head) = target.queue.front().copied() else {
            call.complete(Status::VERR_TRY_AGAIN.raw());
            return;
        };
        let context_ids = target.context_ids();
        let params = call.params_mut();
        let expected = match params.get(0) {
            Some(Parm::U32(id)) => *id,
            Some(Parm::U64(id)) => u32::try_from(*id).unwrap_or(MSG_GET_ANY),
            _ => MSG_GET_ANY,
        };
        let status = if expected != MSG_GET_ANY && expected != head.id(context_ids).raw() {
            Status::VERR_MISMATCH
        } else if params.len() != MESSAGE_PARAMETERS as usize {
            Status::VERR_WRONG_PARAMETER_COUNT
        } else {
            let (first, second) = head.values(context_ids);
            let first_set = match first {
                First::U32(v) => params.set_u32(0, v),
                First::U64(v) => params.set_u64(0, v),
            };
            match first_set.and_then(|()| params.set_u32(1, second)) {
                Ok(()) => Status::VINF_SUCCESS,
                Err(_) => Status::VERR_WRONG_PARAMETER_TYPE,
            }
        };
        if status != Status::VINF_SUCCESS {
            call.complete(status.raw());
            return;
        }
        target.queue.pop_front();
        if call.complete(status.raw()) == Delivery::Cancelled {
            target.queue.push_front(head);
        }
    }

    /// MSG_CANCEL: completes the client's parked wait as cancelled.
    fn msg_cancel(&mut self, client: ClientId, params: &Params) -> Result<Status, CallError> {
        if !params.is_empty() {
            return Err(CallError::Count);
        }
        let target = self.clients.get_mut(&client).ok_or(CallError::Client)?;
        let Some(mut parked) = target.parked.take() else {
            return Ok(Status::VWRN_NOT_FOUND);
        };
        let canceled = HostMessage::CANCELED.raw();
        let status = match parked.kind {
            WaitKind::Peek => {
                set_either(parked.call.params_mut(), 0, u64::from(canceled));
                Status::VINF_TRY_AGAIN
            }
            WaitKind::OldGet => {
                let params = parked.call.params_mut();
                let _ = params.set_u32(0, canceled);
                let _ = params.set_u32(1, 0);
                Status::VINF_SUCCESS
            }
        };
        parked.call.complete(status.raw());
        Ok(Status::VINF_SUCCESS)
    }

    /// REPORT_FEATURES: stores the guest's features (those this host honours), returns ours.
    fn report_features(
        &mut self,
        client: ClientId,
        params: &mut Params,
    ) -> Result<Status, CallError> {
        let (word0, word1) = feature_words(params)?;
        if !GuestFeatures1::from_bits_retain(word1).contains(GuestFeatures1::MUST_BE_ONE) {
            return Err(CallError::Invalid);
        }
        let target = self.clients.get_mut(&client).ok_or(CallError::Client)?;
        target.features = GuestFeatures0::from_bits_truncate(word0) & GuestFeatures0::CONTEXT_ID;
        answer_features(params)
    }

    /// REPORT_FORMATS: the guest's clipboard changed.
    fn report_formats(&mut self, client: ClientId, params: &Params) -> Result<Status, CallError> {
        let context_ids = self
            .clients
            .get(&client)
            .ok_or(CallError::Client)?
            .context_ids();
        let mask = match params.len() {
            1 => u32_at(params, 0)?,
            3 if context_ids => {
                u64_at(params, 0)?;
                let mask = u32_at(params, 1)?;
                if u32_at(params, 2)? != 0 {
                    return Err(CallError::Flags);
                }
                mask
            }
            _ => return Err(CallError::Count),
        };
        if !guest_to_host(self.mode) {
            return Err(CallError::Mode);
        }
        let formats = content::supported(mask);
        if formats.is_empty() {
            if self.owner == Owner::Guest(client) {
                self.owner = Owner::Nobody;
                self.guest_formats = Formats::NONE;
                self.store_host(&Content::default())?;
                self.notify_formats();
            }
            return Ok(Status::VINF_SUCCESS);
        }
        self.owner = Owner::Guest(client);
        self.guest_formats = formats;
        self.announcements = self.announcements.wrapping_add(1);
        self.store_host(&Content::default())?;
        self.notify_formats();
        Ok(Status::VINF_SUCCESS)
    }

    /// DATA_READ: the host clipboard in one format, in wire encoding.
    fn data_read(&mut self, client: ClientId, params: &mut Params) -> Result<Status, CallError> {
        let context_ids = self
            .clients
            .get(&client)
            .ok_or(CallError::Client)?
            .context_ids();
        let (format, buffer, size) = match params.len() {
            3 => (u32_at(params, 0)?, 1, 2),
            5 if context_ids => {
                u64_at(params, 0)?;
                if u32_at(params, 1)? != 0 {
                    return Err(CallError::Flags);
                }
                u32_at(params, 3)?;
                (u32_at(params, 2)?, 4, 3)
            }
            _ => return Err(CallError::Count),
        };
        out_buffer_at(params, buffer)?;
        u32_at(params, size)?;
        if !host_to_guest(self.mode) {
            return Err(CallError::Mode);
        }
        let format = Format::from_single(format).ok_or(CallError::Invalid)?;
        let wire = match self.backend.read(format)? {
            Some(host) => content::wire_of(format, &host)?,
            None => Vec::new(),
        };
        let cut = write_out(params, buffer, size, &wire)?;
        Ok(if cut {
            Status::VINF_BUFFER_OVERFLOW
        } else {
            Status::VINF_SUCCESS
        })
    }

    /// DATA_WRITE: the guest answers a host read.
    fn data_write(&mut self, client: ClientId, params: &Params) -> Result<Status, CallError> {
        let context_ids = self
            .clients
            .get(&client)
            .ok_or(CallError::Client)?
            .context_ids();
        let (context, format, data) = match (context_ids, params.len()) {
            (true, 3) => (Some(u64_at(params, 0)?), u32_at(params, 1)?, 2),
            (true, 5) => {
                let context = u64_at(params, 0)?;
                if u32_at(params, 1)? != 0 {
                    return Err(CallError::Flags);
                }
                u32_at(params, 3)?;
                (Some(context), u32_at(params, 2)?, 4)
            }
            (false, 2) => (None, u32_at(params, 0)?, 1),
            _ => return Err(CallError::Count),
        };
        let buffer = buffer_at(params, data)?;
        if !guest_to_host(self.mode) {
            return Err(CallError::Mode);
        }
        let format = Format::from_single(format).ok_or(CallError::Invalid)?;
        let id = match context {
            Some(context) => {
                let id = u32::try_from(context).map_err(|_| CallError::Context)?;
                if self.requests.waiting(client, id).is_none() {
                    let foreign = self.requests.get(id).is_some_and(|r| r.client != client);
                    if self.requests.was_issued(id) && !foreign {
                        // The host stopped waiting (timeout, restore): drop the late answer.
                        return Ok(Status::VINF_SUCCESS);
                    }
                    return Err(CallError::Context);
                }
                id
            }
            None => self
                .requests
                .oldest_waiting(client, format)
                .ok_or(CallError::Context)?,
        };
        if self.requests.get(id).map(|r| r.format) != Some(format) {
            return Err(CallError::Invalid);
        }
        let (answer, outcome) = match self.accept_guest_data(client, format, buffer) {
            Ok(bytes) => (Ok(bytes), Ok(Status::VINF_SUCCESS)),
            Err(e) => (Err(e.status()), Err(e)),
        };
        let status = answer
            .as_ref()
            .err()
            .copied()
            .unwrap_or(Status::VINF_SUCCESS);
        self.requests.answer(id, answer);
        self.notify_guest_data(id, status);
        outcome
    }

    /// Converts guest data to host encoding and, while that guest still owns the clipboard,
    /// keeps it as the host content. Empty data means the guest had none.
    fn accept_guest_data(
        &mut self,
        client: ClientId,
        format: Format,
        buffer: &Buffer,
    ) -> Result<Vec<u8>, CallError> {
        let wire = copy_in(buffer, self.max_data)?;
        if wire.is_empty() {
            return Ok(Vec::new());
        }
        let mut content = if self.owner == Owner::Guest(client) {
            self.backend.load()?
        } else {
            Content::default()
        };
        content.set_wire_bytes(format, &wire)?;
        let bytes = content.host_bytes(format).unwrap_or_default().to_vec();
        if self.owner == Owner::Guest(client) {
            self.store_host(&content)?;
        }
        Ok(bytes)
    }

    // ----- host functions --------------------------------------------------------------------

    fn set_mode(&mut self, params: &Params) -> Result<Status, CallError> {
        if params.len() != 1 {
            return Err(CallError::Invalid);
        }
        let requested = Mode(u32_at(params, 0).map_err(|_| CallError::Invalid)?);
        let (mode, status) = if requested.name().is_some() {
            (requested, Status::VINF_SUCCESS)
        } else {
            (Mode::OFF, Status::VERR_NOT_SUPPORTED)
        };
        let was = self.mode;
        self.mode = mode;
        self.host.log(
            log::Level::Info,
            &format!(
                "shared clipboard: mode {}",
                crate::config::mode_name(mode).unwrap_or("off")
            ),
        );
        if !host_to_guest(was) && host_to_guest(mode) && self.owner == Owner::Host {
            let formats = self.host_formats();
            self.announce(formats);
        }
        Ok(status)
    }

    fn set_content(&mut self, params: &Params) -> Result<Status, CallError> {
        if params.len() != 4 {
            return Err(CallError::Count);
        }
        let mask = content::supported(u32_at(params, 0)?);
        let mut content = Content::default();
        for (index, format) in [(1, Format::Text), (2, Format::Html), (3, Format::Bitmap)] {
            let buffer = buffer_at(params, index)?;
            if mask.contains(format.bit()) {
                content.set_host_bytes(format, copy_in(buffer, self.max_data)?)?;
            }
        }
        self.store_host(&content)?;
        self.owner = if content.is_empty() {
            Owner::Nobody
        } else {
            Owner::Host
        };
        self.guest_formats = Formats::NONE;
        self.announce(content.formats());
        self.notify_formats();
        Ok(Status::VINF_SUCCESS)
    }

    fn query_state(&mut self, params: &mut Params) -> Result<Status, CallError> {
        if !matches!(params.len(), 3 | 4) {
            return Err(CallError::Count);
        }
        let guest = match self.owner {
            Owner::Guest(_) => self.guest_formats,
            _ => Formats::NONE,
        };
        let host = self.host_formats();
        set_u32(params, 0, guest.bits())?;
        set_u32(params, 1, host.bits())?;
        set_u32(params, 2, self.owner.code())?;
        if params.len() == 4 {
            set_u32(params, 3, self.announcements)?;
        }
        Ok(Status::VINF_SUCCESS)
    }

    fn request_guest_data(&mut self, params: &mut Params) -> Result<Status, CallError> {
        if params.len() != 3 {
            return Err(CallError::Count);
        }
        let format = u32_at(params, 0)?;
        let timeout = u32_at(params, 1)?;
        u32_at(params, 2)?;
        if !guest_to_host(self.mode) {
            return Err(CallError::Mode);
        }
        let format = Format::from_single(format).ok_or(CallError::Invalid)?;
        let Owner::Guest(client) = self.owner else {
            return Err(CallError::NotOffered);
        };
        if !self.guest_formats.contains(format.bit()) {
            return Err(CallError::NotOffered);
        }
        let now = Instant::now();
        self.purge(now);
        let timeout = match timeout {
            0 => DEFAULT_TIMEOUT,
            ms => Duration::from_millis(u64::from(ms)).min(MAX_TIMEOUT),
        };
        let id = self.requests.create(client, format, now + timeout)?;
        let context = u64::from(id);
        if let Err(e) = self.send(client, Message::ReadData { context, format }) {
            self.requests.answer(id, Err(e.status()));
            let _ = self.requests.collect(id, now);
            return Err(e);
        }
        set_u32(params, 2, id)?;
        Ok(Status::VINF_SUCCESS)
    }

    /// Drops requests the host abandoned, and their queued messages.
    fn purge(&mut self, now: Instant) {
        for (id, client) in self.requests.purge(now) {
            if let Some(target) = self.clients.get_mut(&client) {
                target.forget_request(u64::from(id));
            }
        }
    }

    fn fetch_guest_data(&mut self, params: &mut Params) -> Result<Status, CallError> {
        if params.len() != 3 {
            return Err(CallError::Count);
        }
        let id = u32_at(params, 0)?;
        let capacity = out_buffer_at(params, 1)?.len();
        u32_at(params, 2)?;
        if let Some(RequestState::Answered(Ok(data))) = self.requests.get(id).map(|r| &r.state) {
            if data.len() > capacity {
                let size = u32::try_from(data.len()).unwrap_or(u32::MAX);
                set_u32(params, 2, size)?;
                return Ok(Status::VERR_BUFFER_OVERFLOW);
            }
        }
        let client = self.requests.get(id).map(|r| r.client);
        match self.requests.collect(id, Instant::now()) {
            Collected::Answer(Ok(data)) => {
                write_out(params, 1, 2, &data)?;
                Ok(Status::VINF_SUCCESS)
            }
            Collected::Answer(Err(status)) => Ok(status),
            Collected::Pending => Ok(Status::VERR_TRY_AGAIN),
            Collected::TimedOut => {
                if let Some(target) = client.and_then(|c| self.clients.get_mut(&c)) {
                    target.forget_request(u64::from(id));
                }
                Ok(Status::VERR_TIMEOUT)
            }
            Collected::Unknown => Err(CallError::UnknownRequest),
        }
    }

    fn read_host_content(&mut self, params: &mut Params) -> Result<Status, CallError> {
        if params.len() != 3 {
            return Err(CallError::Count);
        }
        let format = Format::from_single(u32_at(params, 0)?).ok_or(CallError::Invalid)?;
        let capacity = out_buffer_at(params, 1)?.len();
        u32_at(params, 2)?;
        let data = self.backend.read(format)?.unwrap_or_default();
        if data.len() > capacity {
            set_u32(params, 2, u32::try_from(data.len()).unwrap_or(u32::MAX))?;
            return Ok(Status::VERR_BUFFER_OVERFLOW);
        }
        write_out(params, 1, 2, &data)?;
        Ok(Status::VINF_SUCCESS)
    }

    fn host_function(&mut self, function: u32, params: &mut Params) -> Result<Status, CallError> {
        match function {
            f if f == HostFunction::SET_MODE.raw() => self.set_mode(params),
            f if f == HostFunction::SET_HEADLESS.raw() => {
                if params.len() != 1 {
                    return Err(CallError::Invalid);
                }
                self.headless = u32_at(params, 0)? != 0;
                Ok(Status::VINF_SUCCESS)
            }
            HOST_FN_GET_MODE => {
                if params.len() != 1 {
                    return Err(CallError::Count);
                }
                set_u32(params, 0, self.mode.raw())?;
                Ok(Status::VINF_SUCCESS)
            }
            HOST_FN_SET_CONTENT => self.set_content(params),
            HOST_FN_QUERY_STATE => self.query_state(params),
            HOST_FN_REQUEST_GUEST_DATA => self.request_guest_data(params),
            HOST_FN_FETCH_GUEST_DATA => self.fetch_guest_data(params),
            HOST_FN_READ_HOST_CONTENT => self.read_host_content(params),
            HOST_FN_SYNC_HOST => {
                if !params.is_empty() {
                    return Err(CallError::Count);
                }
                self.sync_host()
            }
            _ => Ok(Status::VERR_NOT_IMPLEMENTED),
        }
    }

    /// Forgets a departed client: its wait ends with QUIT, its pending host reads fail, and
    /// if it owned the clipboard, what it had sent stays as the host content.
    fn drop_client(&mut self, client: ClientId) {
        if let Some(mut target) = self.clients.remove(&client) {
            if let Some(mut parked) = target.parked.take() {
                let quit = HostMessage::QUIT.raw();
                set_either(parked.call.params_mut(), 0, u64::from(quit));
                parked.call.complete(Status::VINF_SUCCESS.raw());
            }
        }
        for id in self.requests.fail_client(client, Status::VERR_CANCELLED) {
            self.notify_guest_data(id, Status::VERR_CANCELLED);
        }
        if self.owner == Owner::Guest(client) {
            self.guest_formats = Formats::NONE;
            self.owner = if self.host_formats().is_empty() {
                Owner::Nobody
            } else {
                Owner::Host
            };
            self.notify_formats();
        }
    }

    fn restore(&mut self, state: ServiceState) -> Result<(), CallError> {
        self.store_host(&state.content)?;
        self.mode = state.mode;
        self.headless = state.headless;
        self.session = new_session(state.session);
        self.requests = Requests::starting_at(state.next_request);
        self.owner = state.owner;
        self.guest_formats = state.guest_formats;
        Ok(())
    }
}

/// A fingerprint of content, to notice changes made outside the service.
fn fingerprint(content: &Content) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    content.text.hash(&mut hasher);
    content.html.hash(&mut hasher);
    content.bitmap.hash(&mut hasher);
    hasher.finish()
}

/// The two feature words of REPORT_FEATURES / QUERY_FEATURES.
fn feature_words(params: &Params) -> Result<(u64, u64), CallError> {
    if params.len() != 2 {
        return Err(CallError::Count);
    }
    Ok((u64_at(params, 0)?, u64_at(params, 1)?))
}

/// Writes the host's features into a REPORT_FEATURES / QUERY_FEATURES call.
fn answer_features(params: &mut Params) -> Result<Status, CallError> {
    params
        .set_u64(0, HostFeatures0::CONTEXT_ID.bits())
        .and_then(|()| params.set_u64(1, 0))
        .map_err(|_| CallError::Type)?;
    Ok(Status::VINF_SUCCESS)
}

/// A peek's answer: message ID, parameter count, and as many sizes as there are slots.
fn fill_peek(params: &mut Params, message: &Message, context_ids: bool) {
    set_either(params, 0, u64::from(message.id(context_ids).raw()));
    let _ = params.set_u32(1, MESSAGE_PARAMETERS);
    for (index, size) in (2..params.len()).zip(message.peek_sizes(context_ids)) {
        let _ = params.set_u32(index, size);
    }
}

/// The legacy wait's answer: message ID and format (mask).
fn fill_old_get(params: &mut Params, message: &Message, context_ids: bool) {
    let _ = params.set_u32(0, message.id(context_ids).raw());
    let _ = params.set_u32(1, message.values(context_ids).1);
}

impl Service for Clipboard {
    const STATE_VERSION: u32 = STATE_VERSION;

    fn client_limits(&self, defaults: ClientLimits) -> ClientLimits {
        // VirtualBox's limits, never above the host's own.
        let at_most = |ours: [u32; 3], host: [u32; 3]| {
            let [a, b, c] = ours;
            let [x, y, z] = host;
            [a.min(x), b.min(y), c.min(z)]
        };
        ClientLimits {
            max_clients: at_most(VBOX_SHCL_MAX_CLIENTS, defaults.max_clients),
            max_calls_per_client: at_most(
                [VBOX_SHCL_MAX_CALLS_PER_CLIENT; 3],
                defaults.max_calls_per_client,
            ),
            // Clients without requestor information count as root, as in VirtualBox.
            legacy_category: ClientCategory::Root,
        }
    }

    fn connect(
        &mut self,
        client: ClientId,
        _requestor: Requestor,
        restoring: bool,
    ) -> Result<(), i32> {
        self.clients.insert(client, Client::default());
        if !restoring && host_to_guest(self.mode) {
            let formats = if self.owner == Owner::Host {
                self.host_formats()
            } else {
                Formats::NONE
            };
            let _ = self.send(client, Message::Formats(formats));
        }
        Ok(())
    }

    fn disconnect(&mut self, client: ClientId) {
        self.drop_client(client);
    }

    fn call(&mut self, mut call: Call) {
        let client = call.client();
        let result = match Function(call.function()) {
            Function::MSG_OLD_GET_WAIT => return self.old_get_wait(call),
            Function::MSG_PEEK_WAIT => return self.peek(call, true),
            Function::MSG_PEEK_NOWAIT => return self.peek(call, false),
            Function::MSG_GET => return self.msg_get(call),
            Function::MSG_CANCEL => self.msg_cancel(client, call.params()),
            Function::REPORT_FEATURES => self.report_features(client, call.params_mut()),
            Function::QUERY_FEATURES => {
                feature_words(call.params()).and_then(|_| answer_features(call.params_mut()))
            }
            Function::REPORT_FORMATS => self.report_formats(client, call.params()),
            Function::DATA_READ => self.data_read(client, call.params_mut()),
            Function::DATA_WRITE => self.data_write(client, call.params()),
            Function::ERROR => {
                let params = call.params();
                match (params.len(), u32_at(params, 1)) {
                    (2, Ok(status)) => {
                        self.host.log(
                            log::Level::Info,
                            &format!(
                                "shared clipboard: client {client} reports error {}",
                                Status(status as i32)
                            ),
                        );
                        Ok(Status::VINF_SUCCESS)
                    }
                    _ => Err(CallError::Invalid),
                }
            }
            _ => Ok(Status::VERR_NOT_IMPLEMENTED),
        };
        let status = result.unwrap_or_else(|e| {
            log::debug!(
                "shared clipboard: call {} of {client}: {e}",
                call.function()
            );
            e.status()
        });
        call.complete(status.raw());
    }

    fn cancelled(&mut self, client: ClientId) {
        let Some(target) = self.clients.get_mut(&client) else {
            return;
        };
        if target
            .parked
            .as_ref()
            .is_some_and(|p| p.call.is_cancelled())
        {
            if let Some(parked) = target.parked.take() {
                parked.call.complete(Status::VERR_INTERRUPTED.raw());
            }
        }
    }

    fn host_call(&mut self, function: u32, params: &mut Params) -> i32 {
        let result = self.host_function(function, params);
        result
            .unwrap_or_else(|e| {
                log::debug!("shared clipboard: host function {function:#x}: {e}");
                e.status()
            })
            .raw()
    }

    fn save_state(&mut self) -> Vec<u8> {
        let content = self.backend.load().unwrap_or_default();
        ServiceState {
            mode: self.mode,
            headless: self.headless,
            session: self.session,
            next_request: self.requests.next_id(),
            owner: self.owner,
            guest_formats: self.guest_formats,
            content,
        }
        .encode()
    }

    fn load_state(&mut self, version: u32, data: &[u8]) -> Result<(), i32> {
        let state = ServiceState::decode(version, data).map_err(|e| {
            self.host.log(
                log::Level::Error,
                &format!("shared clipboard: saved state refused: {e}"),
            );
            e.status().raw()
        })?;
        self.restore(state).map_err(|e| e.status().raw())
    }

    fn save_client(&mut self, client: ClientId) -> Vec<u8> {
        let Some(target) = self.clients.get(&client) else {
            return Vec::new();
        };
        ClientState {
            features: target.features,
            queue: target.queue.iter().copied().collect(),
        }
        .encode()
    }

    fn load_client(&mut self, client: ClientId, version: u32, data: &[u8]) -> Result<(), i32> {
        let state = ClientState::decode(version, data).map_err(|e| e.status().raw())?;
        let target = self.clients.entry(client).or_default();
        target.features = state.features;
        target.queue = state.queue.into();
        Ok(())
    }

    fn notify(&mut self, event: VmEvent) {
        if matches!(event, VmEvent::Reset | VmEvent::PowerOff) {
            // Every client is gone already; host reads still waiting can never be answered.
            self.requests.clear();
            if let Owner::Guest(_) = self.owner {
                self.owner = Owner::Nobody;
                self.guest_formats = Formats::NONE;
                self.notify_formats();
            }
        }
    }

    fn unload(&mut self) {
        for target in self.clients.values_mut() {
            if let Some(parked) = target.parked.take() {
                parked.call.complete(Status::VERR_INTERRUPTED.raw());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_virtualbox() {
        assert_eq!(CallError::Mode.status(), Status::VERR_ACCESS_DENIED);
        assert_eq!(
            CallError::Count.status(),
            Status::VERR_WRONG_PARAMETER_COUNT
        );
        assert_eq!(CallError::Type.status(), Status::VERR_WRONG_PARAMETER_TYPE);
        assert_eq!(CallError::Context.status(), Status::VERR_INVALID_CONTEXT);
        assert_eq!(
            CallError::Buffer(BufferError::Cancelled).status(),
            Status::VERR_INTERRUPTED
        );
    }

    #[test]
    fn modes_gate_their_directions() {
        assert!(host_to_guest(Mode::HOST_TO_GUEST) && host_to_guest(Mode::BIDIRECTIONAL));
        assert!(!host_to_guest(Mode::GUEST_TO_HOST) && !host_to_guest(Mode::OFF));
        assert!(guest_to_host(Mode::GUEST_TO_HOST) && guest_to_host(Mode::BIDIRECTIONAL));
        assert!(!guest_to_host(Mode::HOST_TO_GUEST) && !guest_to_host(Mode(7)));
    }

    #[test]
    fn restored_session_differs_from_the_saved_one() {
        let saved = new_session(0);
        assert_ne!(new_session(saved), saved);
        assert_ne!(new_session(saved), 0);
    }
}
