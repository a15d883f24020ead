//! The service itself: HGCM parameters in, store operations, statuses and buffers out.
//!
//! This is the wire boundary: every other module works with typed values and its own errors;
//! here calls are validated parameter by parameter in VirtualBox's order, turned into store
//! operations, and answered with VirtualBox status codes. Everything runs on the service thread;
//! parked GET_NOTIFICATION calls are completed there too, when a change, a cancel, a disconnect
//! or a lifecycle event reaches the service.

use vmmdev_hgcm_sdk::{
    Buffer, BufferError, Call, ClientCategory, ClientId, ClientLimits, Host, Params, Requestor,
    Service, VmEvent,
};
use vmmdev_protocol::services::guest_props::{Function, HostFunction, PropertyFlags};
use vmmdev_protocol::status::Status;

use crate::clock::Clock;
use crate::config::{Config, HostInfo, Limits};
use crate::events::{Event, EventQueue, Position};
use crate::host_notify::{NOTIFY_PROPERTY_CHANGED, PropertyChange};
use crate::pattern::PatternList;
use crate::persist::{PersistError, StoreFile};
use crate::policy::Policy;
use crate::state::{STATE_VERSION, ServiceState};
use crate::store::{Actor, Change, Decision, Property, Store, StoreError};
use crate::waiters::{OverflowMemory, Overflowed, Waiter, Waiters};
use crate::wire::{self, InputError};

/// Calls a client may have pending besides its parked waits.
const SPARE_CALLS_PER_CLIENT: u32 = 16;
/// Largest buffer of the host's bulk load.
const MAX_BULK_BUFFER: usize = 256 << 20;

/// Flags of the properties the service publishes itself.
const PUBLISHED_FLAGS: PropertyFlags = PropertyFlags::TRANSIENT.union(PropertyFlags::RDONLYGUEST);
const VBOX_VER: &str = "/VirtualBox/HostInfo/VBoxVer";
const VBOX_VER_EXT: &str = "/VirtualBox/HostInfo/VBoxVerExt";
const VBOX_REV: &str = "/VirtualBox/HostInfo/VBoxRev";
const LANGUAGE_ID: &str = "/VirtualBox/HostInfo/GUI/LanguageID";
const RESET_COUNTER: &str = "/VirtualBox/VMInfo/ResetCounter";
const RESUME_COUNTER: &str = "/VirtualBox/VMInfo/ResumeCounter";
const SYSPREP_EXEC: &str = "/VirtualBox/HostGuest/SysprepExec";
const SYSPREP_ARGS: &str = "/VirtualBox/HostGuest/SysprepArgs";

/// Why a call failed, before it becomes a status.
#[derive(Debug, thiserror::Error)]
enum CallError {
    /// Wrong parameter count or type, or an output buffer that cannot be written.
    #[error("wrong parameter count or types")]
    Parameters,
    /// A malformed input string.
    #[error(transparent)]
    Input(#[from] InputError),
    /// A write the store rules refuse.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The caller's policy forbids writing this name.
    #[error("the policy forbids this caller to write {0:?}")]
    PolicyDenied(String),
    /// No such property (or the caller may not read it).
    #[error("no such property")]
    NotFound,
    /// A buffer could not be accessed (the call was cancelled).
    #[error("buffer access failed")]
    Buffer(#[from] BufferError),
    /// The change could not be made durable.
    #[error(transparent)]
    Persist(#[from] PersistError),
    /// The host's bulk load is malformed.
    #[error("malformed bulk load: {0}")]
    Bulk(&'static str),
}

impl CallError {
    fn status(&self) -> Status {
        match self {
            Self::Parameters | Self::Bulk(_) => Status::VERR_INVALID_PARAMETER,
            Self::Input(e) => e.status(),
            Self::Store(e) => e.status(),
            Self::PolicyDenied(_) => Status::VERR_PERMISSION_DENIED,
            Self::NotFound => Status::VERR_NOT_FOUND,
            Self::Buffer(BufferError::Cancelled) => Status::VERR_INTERRUPTED,
            Self::Buffer(_) => Status::VERR_INVALID_PARAMETER,
            Self::Persist(e) => e.status(),
        }
    }
}

/// A `Params` getter error (always a type or count mismatch).
fn parameters<T>(result: Result<T, i32>) -> Result<T, CallError> {
    result.map_err(|_| CallError::Parameters)
}

/// Who calls: a guest caller (subject to the policy) or the host.
#[derive(Clone, Copy)]
enum Caller {
    Guest(Requestor),
    Host,
}

impl Caller {
    fn actor(self) -> Actor {
        match self {
            Self::Guest(_) => Actor::Guest,
            Self::Host => Actor::Host,
        }
    }
}

/// Copies an input buffer after checking its size with `check`, so an oversized buffer is
/// refused without being copied.
fn read_input(
    buffer: &Buffer,
    check: impl FnOnce(usize) -> Result<(), InputError>,
) -> Result<Vec<u8>, CallError> {
    check(buffer.len())?;
    Ok(buffer.copy_in(buffer.len())?)
}

/// The writable, non-empty output buffer at `index`.
fn output(params: &Params, index: usize) -> Result<&Buffer, CallError> {
    let buffer = parameters(params.buffer(index))?;
    if buffer.is_empty() || !buffer.direction().host_writes() {
        return Err(CallError::Parameters);
    }
    Ok(buffer)
}

/// Writes `reply` into the output buffer at `index`, or reports that it does not fit.
fn write_reply(params: &mut Params, index: usize, reply: &[u8]) -> Result<Status, CallError> {
    let mut out = parameters(params.buffer_mut(index))?;
    if reply.len() > out.len() {
        return Ok(Status::VERR_BUFFER_OVERFLOW);
    }
    out.write_at(0, reply)?;
    Ok(Status::VINF_SUCCESS)
}

fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// The guest properties service.
pub struct GuestProps {
    host: Host,
    limits: Limits,
    host_info: HostInfo,
    policy: Policy,
    store: Store,
    clock: Clock,
    events: EventQueue,
    waiters: Waiters<Call>,
    overflows: OverflowMemory,
    file: Option<StoreFile>,
}

impl std::fmt::Debug for GuestProps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestProps")
            .field("properties", &self.store.len())
            .field("waiters", &self.waiters.len())
            .field("store", &self.file.as_ref().map(StoreFile::path))
            .finish_non_exhaustive()
    }
}

impl GuestProps {
    /// Builds the service from its configuration string (see [`crate::config`]): loads the
    /// store file, if any, and publishes the host information. A bad configuration or an
    /// unusable store file refuses the load with a logged reason.
    pub fn new(host: Host, config: &str) -> Result<GuestProps, i32> {
        let config = Config::parse(config).map_err(|e| {
            host.log(
                log::Level::Error,
                &format!("guest properties: configuration refused: {e}"),
            );
            Status::VERR_INVALID_PARAMETER.0
        })?;
        let mut service = GuestProps::with_config(host, config)?;
        service.publish_host_info();
        Ok(service)
    }

    fn with_config(host: Host, config: Config) -> Result<GuestProps, i32> {
        let Config {
            limits,
            store: store_path,
            host_info,
            global_flags,
            policy,
        } = config;
        let mut store = Store::new(limits.max_props);
        store.set_global_flags(global_flags);
        let mut file = None;
        if let Some(path) = store_path {
            let (opened, properties) = StoreFile::open(&path).map_err(|e| {
                host.log(
                    log::Level::Error,
                    &format!("guest properties: {}", error_chain(&e)),
                );
                e.status().0
            })?;
            host.log(
                log::Level::Info,
                &format!(
                    "guest properties: {} properties loaded from {}",
                    properties.len(),
                    path.display()
                ),
            );
            properties.into_iter().for_each(|p| store.load(p));
            file = Some(opened);
        }
        Ok(GuestProps {
            host,
            events: EventQueue::new(limits.max_events),
            waiters: Waiters::new(limits.max_waits_per_client),
            overflows: OverflowMemory::new(limits.max_waits_per_client),
            limits,
            host_info,
            policy,
            store,
            clock: Clock::default(),
            file,
        })
    }

    // ----- changes -------------------------------------------------------------------------

    /// Makes `change` durable, then visible: store, event queue, waiters, host notification.
    fn commit(&mut self, change: Change) -> Result<(), PersistError> {
        if let Some(file) = &self.file {
            if self.store.changes_persistent_set(&change) {
                file.write(self.store.persistent_after(Some(&change)))
                    .inspect_err(|e| {
                        self.host.log(
                            log::Level::Error,
                            &format!("guest properties: change refused: {}", error_chain(e)),
                        );
                    })?;
            }
        }
        self.store.apply(&change);
        let event = self.events.push(Event::of(&change));
        self.wake(&event);
        self.host.notify(
            NOTIFY_PROPERTY_CHANGED,
            &PropertyChange::of(&event).encode(),
        );
        Ok(())
    }

    /// Carries out a planned write and says how it went.
    fn decide(&mut self, decision: Result<Decision, StoreError>) -> Result<Status, CallError> {
        match decision? {
            Decision::Nothing => Ok(Status::VINF_SUCCESS),
            Decision::GuestReadOnly => Ok(Status::VINF_PERMISSION_DENIED),
            Decision::Change(change) => {
                self.commit(change)?;
                Ok(Status::VINF_SUCCESS)
            }
        }
    }

    /// A host-side set by the service itself (published information, counters).
    fn set_internal(&mut self, name: &str, value: &str) {
        let decision =
            self.store
                .plan_set(Actor::Host, name, value, PUBLISHED_FLAGS, &mut self.clock);
        if let Err(e) = self.decide(decision) {
            self.host.log(
                log::Level::Warn,
                &format!("guest properties: cannot publish {name}: {e}"),
            );
        }
    }

    /// Publishes the host information and creates the counters and Sysprep properties that are
    /// missing (at start and at power-on).
    fn publish_host_info(&mut self) {
        self.publish_versions();
        let language = self.host_info.language_id.clone();
        self.set_internal(LANGUAGE_ID, &language);
        for (name, initial) in [
            (RESET_COUNTER, "0"),
            (RESUME_COUNTER, "0"),
            (SYSPREP_EXEC, ""),
            (SYSPREP_ARGS, ""),
        ] {
            if self.store.get(name).is_none() {
                self.set_internal(name, initial);
            }
        }
    }

    /// (Re)publishes the host version properties.
    fn publish_versions(&mut self) {
        let info = self.host_info.clone();
        self.set_internal(VBOX_VER, &info.version);
        self.set_internal(VBOX_VER_EXT, &info.version_ext);
        self.set_internal(VBOX_REV, &info.revision);
    }

    fn increment_counter(&mut self, name: &str) {
        let current = self
            .store
            .get(name)
            .and_then(|p| p.value.parse::<u64>().ok())
            .unwrap_or(0);
        self.set_internal(name, &current.saturating_add(1).to_string());
    }

    // ----- reading -------------------------------------------------------------------------

    fn may_read(&self, caller: Caller, name: &str) -> bool {
        match caller {
            Caller::Host => true,
            Caller::Guest(requestor) => self.policy.may_read(requestor, name),
        }
    }

    fn may_write(&self, caller: Caller, name: &str) -> Result<(), CallError> {
        match caller {
            Caller::Guest(requestor) if !self.policy.may_write(requestor, name) => {
                Err(CallError::PolicyDenied(name.to_owned()))
            }
            _ => Ok(()),
        }
    }

    fn parse_name(&self, params: &Params, index: usize) -> Result<String, CallError> {
        let max = self.limits.max_name_len;
        let bytes = read_input(parameters(params.buffer(index))?, |len| {
            wire::check_name_len(len, max)
        })?;
        Ok(wire::parse_name(&bytes, max)?)
    }

    /// GET_PROP: `name`, out buffer, out timestamp, out size.
    fn get_prop(&self, params: &mut Params, caller: Caller) -> Result<Status, CallError> {
        parameters(params.expect_count(4))?;
        output(params, 1)?;
        parameters(params.u64(2))?;
        parameters(params.u32(3))?;
        let name = self.parse_name(params, 0)?;
        let property = self
            .store
            .get(&name)
            .filter(|_| self.may_read(caller, &name))
            .ok_or(CallError::NotFound)?;
        let reply = wire::get_reply(&property.value, &property.flags_text());
        parameters(params.set_u32(3, len_u32(reply.len())))?;
        let status = write_reply(params, 1, &reply)?;
        if status == Status::VINF_SUCCESS {
            parameters(params.set_u64(2, property.timestamp))?;
        }
        Ok(status)
    }

    /// ENUM_PROPS: patterns, out buffer, out size.
    fn enum_props(&self, params: &mut Params, caller: Caller) -> Result<Status, CallError> {
        parameters(params.expect_count(3))?;
        output(params, 1)?;
        parameters(params.u32(2))?;
        let max = self.limits.max_pattern_len;
        let bytes = read_input(parameters(params.buffer(0))?, |len| {
            wire::check_patterns_len(len, max)
        })?;
        let patterns = wire::parse_enum_patterns(&bytes, max)?;
        let mut reply = Vec::new();
        for property in self
            .store
            .iter()
            .filter(|p| patterns.matches(&p.name) && self.may_read(caller, &p.name))
        {
            wire::push_enum_record(
                &mut reply,
                &property.name,
                &property.value,
                property.timestamp,
                &property.flags_text(),
            );
        }
        reply.extend_from_slice(&wire::ENUM_TERMINATOR);
        parameters(params.set_u32(2, len_u32(reply.len())))?;
        write_reply(params, 1, &reply)
    }

    // ----- writing -------------------------------------------------------------------------

    /// SET_PROP / SET_PROP_VALUE: name, value, optional flags.
    fn set_prop(&mut self, params: &Params, caller: Caller) -> Result<Status, CallError> {
        if !matches!(params.len(), 2 | 3) {
            return Err(CallError::Parameters);
        }
        let name = self.parse_name(params, 0)?;
        let max_value = self.limits.max_value_len;
        let value_bytes = read_input(parameters(params.buffer(1))?, |len| {
            wire::check_value_len(len, max_value)
        })?;
        let value = wire::parse_value(&value_bytes, max_value)?;
        let flags = if params.len() == 3 {
            let bytes = read_input(parameters(params.buffer(2))?, wire::check_flags_len)?;
            wire::parse_flags(&bytes)?
        } else {
            PropertyFlags::NILFLAG
        };
        self.may_write(caller, &name)?;
        let decision = self
            .store
            .plan_set(caller.actor(), &name, &value, flags, &mut self.clock);
        self.decide(decision)
    }

    /// DEL_PROP: name.
    fn del_prop(&mut self, params: &Params, caller: Caller) -> Result<Status, CallError> {
        parameters(params.expect_count(1))?;
        let name = self.parse_name(params, 0)?;
        self.may_write(caller, &name)?;
        let decision = self
            .store
            .plan_delete(caller.actor(), &name, &mut self.clock);
        self.decide(decision)
    }

    // ----- notifications -------------------------------------------------------------------

    /// GET_NOTIFICATION: patterns, in/out timestamp, out buffer, out size. Completes the call
    /// now or parks it.
    fn get_notification(&mut self, mut call: Call) {
        let (patterns, timestamp) = match self.notification_request(call.params()) {
            Ok(request) => request,
            Err(e) => {
                call.complete(e.status().0);
                return;
            }
        };
        let client = call.client();
        let requestor = call.requestor();
        let policy = &self.policy;
        let wanted = |e: &Event| patterns.matches(&e.name) && policy.may_read(requestor, &e.name);
        let retry = self
            .overflows
            .take_retry(client, &patterns, timestamp)
            .and_then(|o| {
                self.events
                    .get(o.timestamp)
                    .filter(|e| wanted(e))
                    .map(|e| (e.clone(), o.status))
            });
        let mut status = Status::VINF_SUCCESS;
        let found = match retry {
            Some(found) => Some(found),
            None if timestamp != 0 => {
                let (position, event) = self.events.find_after(timestamp, wanted);
                if position == Position::Unknown {
                    status = Status::VWRN_NOT_FOUND;
                }
                event.map(|e| (e.clone(), status))
            }
            None => None,
        };
        if let Some((event, status)) = found {
            let result = self.deliver(&mut call, &event, status, &patterns);
            call.complete(result.0);
            return;
        }
        let parking = self.waiters.park(
            Waiter {
                client,
                requestor,
                patterns,
                status,
                call,
            },
            Call::is_cancelled,
        );
        for superseded in parking.superseded {
            superseded.complete(Status::VERR_INTERRUPTED.0);
        }
        if let Some(refused) = parking.refused {
            refused.call.complete(Status::VERR_OUT_OF_RESOURCES.0);
        }
    }

    fn notification_request(&self, params: &Params) -> Result<(PatternList, u64), CallError> {
        parameters(params.expect_count(4))?;
        let max = self.limits.max_pattern_len;
        let bytes = read_input(parameters(params.buffer(0))?, |len| {
            wire::check_patterns_len(len, max)
        })?;
        let patterns = wire::parse_notification_patterns(&bytes, max)?;
        let timestamp = parameters(params.u64(1))?;
        output(params, 2)?;
        parameters(params.u32(3))?;
        Ok((patterns, timestamp))
    }

    /// Writes `event` into a GET_NOTIFICATION call; returns the status to complete it with.
    fn deliver(
        &mut self,
        call: &mut Call,
        event: &Event,
        status: Status,
        patterns: &PatternList,
    ) -> Status {
        let reply = wire::notification_reply(&event.name, event.value.as_deref(), &event.flags);
        let client = call.client();
        let params = call.params_mut();
        let written = parameters(params.set_u64(1, event.timestamp))
            .and_then(|()| parameters(params.set_u32(3, len_u32(reply.len()))))
            .and_then(|()| write_reply(params, 2, &reply));
        match written {
            Ok(Status::VERR_BUFFER_OVERFLOW) => {
                self.overflows.remember(
                    client,
                    patterns,
                    Overflowed {
                        timestamp: event.timestamp,
                        status,
                    },
                );
                Status::VERR_BUFFER_OVERFLOW
            }
            Ok(_) => status,
            Err(e) => e.status(),
        }
    }

    /// Completes every parked wait that accepts `event`.
    fn wake(&mut self, event: &Event) {
        let policy = &self.policy;
        let woken = self
            .waiters
            .take(|w| w.patterns.matches(&event.name) && policy.may_read(w.requestor, &event.name));
        for mut waiter in woken {
            let status = self.deliver(&mut waiter.call, event, waiter.status, &waiter.patterns);
            waiter.call.complete(status.0);
        }
    }

    fn interrupt(waiters: Vec<Waiter<Call>>) {
        for waiter in waiters {
            waiter.call.complete(Status::VERR_INTERRUPTED.0);
        }
    }

    // ----- host ----------------------------------------------------------------------------

    /// SET_PROPS: four buffers — names and values as NUL-terminated strings one after another,
    /// timestamps as little-endian u64s, flags strings like names — all with the same count.
    fn bulk_load(&mut self, params: &Params) -> Result<Status, CallError> {
        parameters(params.expect_count(4))?;
        let read = |index| -> Result<Vec<u8>, CallError> {
            let buffer = parameters(params.buffer(index))?;
            if buffer.len() > MAX_BULK_BUFFER {
                return Err(CallError::Bulk("a buffer exceeds 256 MiB"));
            }
            Ok(buffer.copy_in(MAX_BULK_BUFFER)?)
        };
        let (names, values, stamps, flags) = (read(0)?, read(1)?, read(2)?, read(3)?);
        let names = split_strings(&names).ok_or(CallError::Bulk("names"))?;
        let values = split_strings(&values).ok_or(CallError::Bulk("values"))?;
        let flags = split_strings(&flags).ok_or(CallError::Bulk("flags"))?;
        let count = names.len();
        if values.len() != count
            || flags.len() != count
            || Some(stamps.len()) != count.checked_mul(8)
        {
            return Err(CallError::Bulk("the four lists differ in length"));
        }
        let stamps = stamps
            .chunks_exact(8)
            .filter_map(|c| <[u8; 8]>::try_from(c).ok().map(u64::from_le_bytes));
        // All flags first, as VirtualBox does, so a bad one changes nothing.
        let flags = flags
            .iter()
            .map(|f| PropertyFlags::parse(f).map_err(InputError::from))
            .collect::<Result<Vec<_>, _>>()?;
        let mut loaded = self.store.clone();
        for (((name, value), timestamp), flags) in
            names.into_iter().zip(values).zip(stamps).zip(flags)
        {
            wire::check_name_len(name.len() + 1, self.limits.max_name_len)?;
            if !wire::is_valid_name(name) {
                return Err(InputError::NameCharacter.into());
            }
            wire::check_value_len(value.len() + 1, self.limits.max_value_len)?;
            loaded.load(Property {
                name: name.to_owned(),
                value: value.to_owned(),
                timestamp,
                flags,
            });
        }
        if let Some(file) = &self.file {
            file.write(loaded.persistent_after(None))?;
        }
        if let Some(newest) = loaded.iter().map(|p| p.timestamp).max() {
            self.clock.advance_past(newest);
        }
        self.store = loaded;
        Ok(Status::VINF_SUCCESS)
    }

    fn host_function(&mut self, function: u32, params: &mut Params) -> Result<Status, CallError> {
        match HostFunction(function) {
            HostFunction::SET_PROPS => self.bulk_load(params),
            HostFunction::GET_PROP => self.get_prop(params, Caller::Host),
            HostFunction::SET_PROP | HostFunction::SET_PROP_VALUE => {
                self.set_prop(params, Caller::Host)
            }
            HostFunction::DEL_PROP => self.del_prop(params, Caller::Host),
            HostFunction::ENUM_PROPS => self.enum_props(params, Caller::Host),
            HostFunction::SET_GLOBAL_FLAGS => {
                parameters(params.expect_count(1))?;
                let bits = parameters(params.u32(0))?;
                self.store
                    .set_global_flags(PropertyFlags::from_bits_truncate(bits));
                Ok(Status::VINF_SUCCESS)
            }
            _ => Ok(Status::VERR_NOT_SUPPORTED),
        }
    }

    // ----- lifecycle -----------------------------------------------------------------------

    /// Deletes the TRANSRESET properties the host may delete (as VirtualBox's Main does through
    /// the host interface, so RDONLYHOST ones stay), with events and notifications.
    fn delete_transreset(&mut self) {
        let names: Vec<String> = self
            .store
            .iter()
            .filter(|p| p.flags.contains(PropertyFlags::TRANSRESET))
            .map(|p| p.name.clone())
            .collect();
        for name in names {
            let decision = self.store.plan_delete(Actor::Host, &name, &mut self.clock);
            // RDONLYHOST properties are refused by the rules and stay; transient ones are never
            // in the store file, so nothing here can fail to persist.
            let _ = self.decide(decision);
        }
    }

    fn restore(&mut self, state: ServiceState) -> Result<(), PersistError> {
        let mut store = Store::new(self.limits.max_props);
        store.set_global_flags(state.global_flags);
        for property in state.properties {
            store.load(property);
        }
        if let Some(file) = &self.file {
            file.write(store.persistent_after(None))?;
        }
        let newest = store
            .iter()
            .map(|p| p.timestamp)
            .chain(state.events.iter().map(|e| e.timestamp))
            .max();
        if let Some(newest) = newest {
            self.clock.advance_past(newest);
        }
        self.store = store;
        self.events.replace(state.events);
        self.overflows.clear();
        Ok(())
    }
}

/// Splits `a\0b\0c\0` into `["a", "b", "c"]`; `None` unless UTF-8 and NUL-terminated (an
/// empty buffer is an empty list).
fn split_strings(bytes: &[u8]) -> Option<Vec<&str>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let body = bytes.strip_suffix(&[0])?;
    body.split(|&b| b == 0)
        .map(|s| std::str::from_utf8(s).ok())
        .collect()
}

/// An error with its sources, for a log line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl Service for GuestProps {
    const STATE_VERSION: u32 = STATE_VERSION;

    fn client_limits(&self, defaults: ClientLimits) -> ClientLimits {
        let calls =
            len_u32(self.limits.max_waits_per_client).saturating_add(SPARE_CALLS_PER_CLIENT);
        ClientLimits {
            max_calls_per_client: [calls; 3],
            legacy_category: ClientCategory::Kernel,
            ..defaults
        }
    }

    fn disconnect(&mut self, client: ClientId) {
        Self::interrupt(self.waiters.take_client(client));
        self.overflows.forget_client(client);
    }

    fn call(&mut self, mut call: Call) {
        let caller = Caller::Guest(call.requestor());
        let result = match Function(call.function()) {
            Function::GET_PROP => self.get_prop(call.params_mut(), caller),
            Function::SET_PROP | Function::SET_PROP_VALUE => self.set_prop(call.params(), caller),
            Function::DEL_PROP => self.del_prop(call.params(), caller),
            Function::ENUM_PROPS => self.enum_props(call.params_mut(), caller),
            Function::GET_NOTIFICATION => return self.get_notification(call),
            _ => Ok(Status::VERR_NOT_IMPLEMENTED),
        };
        let status = result.unwrap_or_else(|e| e.status());
        call.complete(status.0);
    }

    fn cancelled(&mut self, client: ClientId) {
        Self::interrupt(
            self.waiters
                .take(|w| w.client == client && w.call.is_cancelled()),
        );
    }

    fn host_call(&mut self, function: u32, params: &mut Params) -> i32 {
        let result = self.host_function(function, params);
        result.unwrap_or_else(|e| e.status()).0
    }

    fn save_state(&mut self) -> Vec<u8> {
        ServiceState {
            properties: self.store.iter().cloned().collect(),
            global_flags: self.store.global_flags(),
            events: self.events.iter().cloned().collect(),
        }
        .encode()
    }

    fn load_state(&mut self, version: u32, data: &[u8]) -> Result<(), i32> {
        let state = ServiceState::decode(version, data).map_err(|e| {
            self.host.log(
                log::Level::Error,
                &format!("guest properties: saved state refused: {e}"),
            );
            e.status().0
        })?;
        self.restore(state).map_err(|e| {
            self.host.log(
                log::Level::Error,
                &format!("guest properties: restore refused: {}", error_chain(&e)),
            );
            e.status().0
        })
    }

    fn notify(&mut self, event: VmEvent) {
        match event {
            VmEvent::PowerOn => self.publish_host_info(),
            VmEvent::Resume => {
                self.publish_versions();
                self.increment_counter(RESUME_COUNTER);
            }
            VmEvent::Reset => {
                Self::interrupt(self.waiters.take_all());
                self.overflows.clear();
                self.delete_transreset();
                self.increment_counter(RESET_COUNTER);
            }
            VmEvent::PowerOff => {
                Self::interrupt(self.waiters.take_all());
                self.overflows.clear();
                self.store.remove_where(Property::is_transient);
            }
            VmEvent::Suspend => {}
        }
    }

    fn unload(&mut self) {
        Self::interrupt(self.waiters.take_all());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_string_lists_split_at_nul() {
        assert_eq!(split_strings(b"/a\0\0/c\0"), Some(vec!["/a", "", "/c"]));
        assert_eq!(split_strings(b""), Some(vec![]));
    }

    #[test]
    fn bulk_string_list_without_final_nul_or_utf8_is_refused() {
        assert_eq!(split_strings(b"/a\0/b"), None);
        assert_eq!(split_strings(b"\xff\0"), None);
    }

    #[test]
    fn error_chain_names_every_cause() {
        let error = PersistError::Write {
            path: "/x/props.jsonl".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        let text = error_chain(&error);
        assert!(
            text.starts_with("cannot write store /x/props.jsonl: "),
            "{text}"
        );
        assert!(text.contains("not found"), "{text}");
    }

    #[test]
    fn cancelled_buffer_access_reads_as_interrupted() {
        assert_eq!(
            CallError::Buffer(BufferError::Cancelled).status(),
            Status::VERR_INTERRUPTED
        );
        assert_eq!(
            CallError::PolicyDenied("/a".into()).status(),
            Status::VERR_PERMISSION_DENIED
        );
    }
}
