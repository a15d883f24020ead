//! Drives the real service through the HGCM framework: a blocking client for each guest and host
//! function, with host-memory buffers shaped the way the guest library sends them.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, bounded};
use vmmdev_hgcm::{
    Buffer, CallOutcome, CallRequest, ClientId, Direction, Hgcm, HgcmConfig, Parm, RegisterError,
    RequestId, Requestor, ServiceNotification, Subscription,
};
use vmmdev_protocol::status::Status;
use vmmdev_svc_guest_props::{Function, HostFunction, SERVICE_NAME};

/// How long a test waits for a completion that must come.
pub const DEADLINE: Duration = Duration::from_secs(10);
/// How long a test waits to be confident a completion does not come.
pub const QUIET: Duration = Duration::from_millis(150);

/// The Linux core driver.
pub const KERNEL: Requestor = Requestor(0x1);
/// Root through /dev/vboxguest.
pub const ROOT: Requestor = Requestor(0x8B);
/// A user process through /dev/vboxuser.
pub const USER_DEVICE: Requestor = Requestor(0x800E);

/// The HGCM framework with the guest properties service registered.
pub struct Fixture {
    pub hgcm: Hgcm,
    pub notifications: Subscription<ServiceNotification>,
}

impl Fixture {
    pub fn new(config: &str) -> Fixture {
        Fixture::try_new(config).expect("guest properties register")
    }

    pub fn try_new(config: &str) -> Result<Fixture, RegisterError> {
        let hgcm = Hgcm::new(HgcmConfig::default());
        let notifications = hgcm.subscribe();
        hgcm.register_builtin(vmmdev_svc_guest_props::guest_props_entry, config)?;
        Ok(Fixture {
            hgcm,
            notifications,
        })
    }

    pub fn connect(&self, requestor: Requestor) -> Guest {
        let (tx, rx) = bounded(1);
        self.hgcm
            .connect(
                SERVICE_NAME,
                requestor,
                Box::new(move |o| {
                    let _ = tx.send(o);
                }),
            )
            .expect("connect accepted");
        let outcome = rx.recv_timeout(DEADLINE).expect("connect completes");
        assert_eq!(outcome.status, 0, "connect status");
        Guest {
            hgcm: self.hgcm.clone(),
            client: outcome.client,
            requestor,
        }
    }

    pub fn host(&self) -> HostSide {
        HostSide {
            hgcm: self.hgcm.clone(),
        }
    }

    /// Drops every notification received so far.
    pub fn drain_notifications(&self) {
        while self.notifications.try_recv().is_ok() {}
    }
}

/// A NUL-terminated string buffer the guest sends to the host.
pub fn string(text: &str) -> Parm {
    let mut bytes = text.as_bytes().to_vec();
    bytes.push(0);
    bytes_in(&bytes)
}

/// A guest-to-host buffer with exactly these bytes.
pub fn bytes_in(bytes: &[u8]) -> Parm {
    Parm::Buffer(Buffer::host(bytes.to_vec(), Direction::ToHost))
}

/// An empty host-to-guest buffer of `len` bytes.
pub fn out(len: usize) -> Parm {
    Parm::Buffer(Buffer::host(vec![0; len], Direction::FromHost))
}

/// The bytes of the buffer parameter at `index`.
pub fn buffer_bytes(params: Vec<Parm>, index: usize) -> Vec<u8> {
    match params.into_iter().nth(index) {
        Some(Parm::Buffer(buffer)) => buffer.into_host_bytes().expect("host buffer"),
        other => panic!("parameter {index} is not a buffer: {other:?}"),
    }
}

/// Splits `a\0b\0` into strings.
pub fn strings(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|&b| b == 0)
        .map(|s| String::from_utf8(s.to_vec()).expect("utf-8"))
        .collect()
}

/// The answer of GET_PROP.
#[derive(Debug, PartialEq, Eq)]
pub struct Got {
    pub status: Status,
    pub value: String,
    pub flags: String,
    pub timestamp: u64,
    pub needed: u32,
}

/// The answer of ENUM_PROPS.
#[derive(Debug, PartialEq, Eq)]
pub struct Listed {
    pub status: Status,
    /// `(name, value, timestamp, flags)` records.
    pub records: Vec<(String, String, u64, String)>,
    pub needed: u32,
}

/// The answer of GET_NOTIFICATION.
#[derive(Debug, PartialEq, Eq)]
pub struct Notified {
    pub status: Status,
    pub name: String,
    pub value: String,
    pub flags: String,
    pub deleted: bool,
    pub timestamp: u64,
    pub needed: u32,
}

fn get_prop_params(name: &str, len: usize) -> Vec<Parm> {
    vec![string(name), out(len), Parm::U64(0), Parm::U32(0)]
}

fn decode_get(status: i32, params: Vec<Parm>) -> Got {
    let timestamp = params[2].as_u64().expect("u64");
    let needed = params[3].as_u32().expect("u32");
    let parts = strings(&buffer_bytes(params, 1));
    Got {
        status: Status(status),
        value: parts[0].clone(),
        flags: parts.get(1).cloned().unwrap_or_default(),
        timestamp,
        needed,
    }
}

fn enum_params(patterns: &[u8], len: usize) -> Vec<Parm> {
    vec![bytes_in(patterns), out(len), Parm::U32(0)]
}

fn decode_enum(status: i32, params: Vec<Parm>) -> Listed {
    let needed = params[2].as_u32().expect("u32");
    let bytes = buffer_bytes(params, 1);
    let mut records = Vec::new();
    if status >= 0 {
        let parts = strings(&bytes);
        for record in parts.chunks(4) {
            if record[0].is_empty() {
                break;
            }
            records.push((
                record[0].clone(),
                record[1].clone(),
                record[2].parse().expect("decimal timestamp"),
                record[3].clone(),
            ));
        }
    }
    Listed {
        status: Status(status),
        records,
        needed,
    }
}

/// GET_NOTIFICATION parameters: patterns as the guest library sends them (`|`-separated).
pub fn notification_params(patterns: &str, timestamp: u64, len: usize) -> Vec<Parm> {
    vec![
        string(patterns),
        Parm::U64(timestamp),
        out(len),
        Parm::U32(0),
    ]
}

pub fn decode_notification(outcome: CallOutcome) -> Notified {
    let status = Status(outcome.status);
    let params = outcome.params;
    let timestamp = params[1].as_u64().expect("u64");
    let needed = params[3].as_u32().expect("u32");
    let parts = strings(&buffer_bytes(params, 2));
    let field = |i: usize| parts.get(i).cloned().unwrap_or_default();
    Notified {
        status,
        name: field(0),
        value: field(1),
        flags: field(2),
        deleted: field(3) == "1",
        timestamp,
        needed,
    }
}

/// One connected guest client.
pub struct Guest {
    pub hgcm: Hgcm,
    pub client: ClientId,
    pub requestor: Requestor,
}

impl Guest {
    /// Submits a call; the receiver gets its outcome.
    pub fn submit(
        &self,
        function: Function,
        params: Vec<Parm>,
    ) -> (RequestId, Receiver<CallOutcome>) {
        let (tx, rx) = bounded(1);
        let id = self
            .hgcm
            .call(
                CallRequest {
                    client: self.client,
                    function: function.raw(),
                    params,
                    requestor: self.requestor,
                    restored: false,
                },
                Box::new(move |o| {
                    let _ = tx.send(o);
                }),
            )
            .expect("call accepted");
        (id, rx)
    }

    pub fn call(&self, function: Function, params: Vec<Parm>) -> CallOutcome {
        let (_, rx) = self.submit(function, params);
        rx.recv_timeout(DEADLINE).expect("call completes")
    }

    pub fn status(&self, function: Function, params: Vec<Parm>) -> Status {
        Status(self.call(function, params).status)
    }

    pub fn get(&self, name: &str) -> Got {
        self.get_with(name, 1024)
    }

    pub fn get_with(&self, name: &str, len: usize) -> Got {
        let outcome = self.call(Function::GET_PROP, get_prop_params(name, len));
        decode_get(outcome.status, outcome.params)
    }

    /// SET_PROP_VALUE with flags (as `VbglR3GuestPropWrite` sends it) or without.
    pub fn set(&self, name: &str, value: &str, flags: Option<&str>) -> Status {
        let mut params = vec![string(name), string(value)];
        params.extend(flags.map(string));
        self.status(Function::SET_PROP_VALUE, params)
    }

    pub fn del(&self, name: &str) -> Status {
        self.status(Function::DEL_PROP, vec![string(name)])
    }

    /// ENUM_PROPS with the patterns in the guest library's `p1\0p2\0\0` form.
    pub fn list(&self, patterns: &[&str]) -> Listed {
        self.list_with(patterns, 16 * 1024)
    }

    pub fn list_with(&self, patterns: &[&str], len: usize) -> Listed {
        let mut bytes = Vec::new();
        for pattern in patterns {
            bytes.extend_from_slice(pattern.as_bytes());
            bytes.push(0);
        }
        bytes.push(0);
        let outcome = self.call(Function::ENUM_PROPS, enum_params(&bytes, len));
        decode_enum(outcome.status, outcome.params)
    }

    /// Starts a GET_NOTIFICATION.
    pub fn wait(
        &self,
        patterns: &str,
        timestamp: u64,
        len: usize,
    ) -> (RequestId, Receiver<CallOutcome>) {
        self.submit(
            Function::GET_NOTIFICATION,
            notification_params(patterns, timestamp, len),
        )
    }

    /// GET_NOTIFICATION that must complete (at once or soon).
    pub fn notification(&self, patterns: &str, timestamp: u64, len: usize) -> Notified {
        let (_, rx) = self.wait(patterns, timestamp, len);
        decode_notification(rx.recv_timeout(DEADLINE).expect("notification completes"))
    }

    pub fn disconnect(self) {
        let (tx, rx) = bounded(1);
        self.hgcm
            .disconnect(
                self.client,
                Box::new(move |o| {
                    let _ = tx.send(o);
                }),
            )
            .expect("disconnect accepted");
        rx.recv_timeout(DEADLINE).expect("disconnect completes");
    }
}

/// The embedder's side: host calls.
pub struct HostSide {
    pub hgcm: Hgcm,
}

impl HostSide {
    pub fn call(&self, function: HostFunction, params: &mut [Parm]) -> Status {
        Status(
            self.hgcm
                .host_call(SERVICE_NAME, function.raw(), params)
                .expect("host call"),
        )
    }

    pub fn set(&self, name: &str, value: &str, flags: Option<&str>) -> Status {
        let mut params = vec![string(name), string(value)];
        params.extend(flags.map(string));
        self.call(HostFunction::SET_PROP, &mut params)
    }

    pub fn del(&self, name: &str) -> Status {
        self.call(HostFunction::DEL_PROP, &mut [string(name)])
    }

    pub fn get(&self, name: &str) -> Got {
        let mut params = get_prop_params(name, 1024);
        let status = self.call(HostFunction::GET_PROP, &mut params);
        decode_get(status.0, params)
    }

    pub fn list(&self, patterns: &[u8]) -> Listed {
        let mut params = enum_params(patterns, 64 * 1024);
        let status = self.call(HostFunction::ENUM_PROPS, &mut params);
        decode_enum(status.0, params)
    }
}

/// A fresh directory for store files, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "vmmdev-guest-props-it-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temporary directory");
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The plugin build of the service (`libvmmdev_guest_props.so`, crate `vmmdev-svc-guest-props-plugin`), built if needed.
pub fn plugin_path() -> PathBuf {
    const FILE: &str = "libvmmdev_guest_props.so";
    // Test binaries live in <target>/<profile>/deps/.
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe.parent().expect("deps dir").to_path_buf();
    let profile = deps.parent().expect("profile dir").to_path_buf();
    if let Some(found) = [&profile, &deps]
        .iter()
        .map(|d| d.join(FILE))
        .find(|p| p.is_file())
    {
        return found;
    }
    let status = std::process::Command::new(env!("CARGO"))
        .args(["build", "-p", "vmmdev-svc-guest-props-plugin"])
        .env("CARGO_TARGET_DIR", profile.parent().expect("target dir"))
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the plugin failed");
    profile.join(FILE)
}
