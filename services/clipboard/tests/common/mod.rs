//! Drives the real service through the HGCM framework: guest clients that call the way the guest
//! library does, and the host side through the service's typed host client.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::time::Duration;

use crossbeam_channel::{Receiver, bounded};
use vmmdev_hgcm::{
    Buffer, CallOutcome, CallRequest, ClientId, Direction, Hgcm, HgcmConfig, HostCallError, Parm,
    RequestId, Requestor,
};
use vmmdev_protocol::services::clipboard::{
    Function, GuestFeatures0, GuestFeatures1, SERVICE_NAME,
};
use vmmdev_protocol::status::Status;
use vmmdev_svc_clipboard::ClipboardHost;

/// How long a test waits for a completion that must come.
pub const DEADLINE: Duration = Duration::from_secs(10);
/// How long a test waits to be confident a completion does not come.
pub const QUIET: Duration = Duration::from_millis(150);
/// A root process through /dev/vboxguest (VBoxClient runs as the user; either is a root/user client).
pub const ROOT: Requestor = Requestor(0x8B);

/// The service's typed host client over `Hgcm::host_call`.
pub type HostClient =
    ClipboardHost<Box<dyn FnMut(u32, &mut [Parm]) -> Result<i32, HostCallError> + Send>>;

pub struct Fixture {
    pub hgcm: Hgcm,
}

impl Fixture {
    pub fn new(config: &str) -> Fixture {
        let hgcm = Hgcm::new(HgcmConfig::default());
        hgcm.register_builtin(vmmdev_svc_clipboard::clipboard_entry, config)
            .expect("clipboard registers");
        Fixture { hgcm }
    }

    pub fn bidirectional() -> Fixture {
        Fixture::new("mode=bidirectional")
    }

    pub fn connect(&self) -> Guest {
        let (tx, rx) = bounded(1);
        self.hgcm
            .connect(
                SERVICE_NAME,
                ROOT,
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
        }
    }

    /// A guest of the message protocol, with the initial announcement fetched.
    pub fn modern(&self) -> Guest {
        let guest = self.connect();
        assert_eq!(guest.report_features(), Status::VINF_SUCCESS);
        guest.drain();
        guest
    }

    /// A legacy guest (no features), with the initial announcement fetched.
    pub fn legacy(&self) -> Guest {
        let guest = self.connect();
        guest.drain();
        guest
    }

    pub fn host(&self) -> HostClient {
        let hgcm = self.hgcm.clone();
        ClipboardHost::new(Box::new(move |function, params: &mut [Parm]| {
            hgcm.host_call(SERVICE_NAME, function, params)
        }))
    }

    pub fn host_call(&self, function: u32, params: &mut [Parm]) -> Status {
        Status(
            self.hgcm
                .host_call(SERVICE_NAME, function, params)
                .expect("host call reaches the service"),
        )
    }
}

pub fn bytes_in(bytes: &[u8]) -> Parm {
    Parm::Buffer(Buffer::host(bytes.to_vec(), Direction::ToHost))
}

pub fn out(len: usize) -> Parm {
    Parm::Buffer(Buffer::host(vec![0; len], Direction::FromHost))
}

/// The bytes the service reported in the buffer parameter at `index`.
pub fn reported(params: &[Parm], index: usize) -> Vec<u8> {
    let buffer = params[index].as_buffer().expect("buffer");
    let mut bytes = vec![0; buffer.reported_len()];
    let n = buffer.read_at(0, &mut bytes).expect("readable");
    bytes.truncate(n);
    bytes
}

pub fn utf16(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

pub struct Guest {
    pub hgcm: Hgcm,
    pub client: ClientId,
}

impl Guest {
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
                    requestor: ROOT,
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

    /// REPORT_FEATURES with context IDs, as VbglR3ClipboardConnectEx sends it.
    pub fn report_features(&self) -> Status {
        let outcome = self.call(
            Function::REPORT_FEATURES,
            vec![
                Parm::U64(GuestFeatures0::CONTEXT_ID.bits()),
                Parm::U64(GuestFeatures1::MUST_BE_ONE.bits()),
            ],
        );
        Status(outcome.status)
    }

    /// MSG_PEEK_NOWAIT with the sizes of two parameters: (status, id, count, sizes).
    pub fn peek(&self) -> (Status, u64, u32, [u32; 2]) {
        decode_peek(self.call(Function::MSG_PEEK_NOWAIT, peek_params()))
    }

    /// Starts a MSG_PEEK_WAIT.
    pub fn peek_wait(&self) -> (RequestId, Receiver<CallOutcome>) {
        self.submit(Function::MSG_PEEK_WAIT, peek_params())
    }

    /// MSG_GET of FORMATS_REPORT: (status, formats).
    pub fn get_formats(&self) -> (Status, u32) {
        let outcome = self.call(Function::MSG_GET, vec![Parm::U32(3), Parm::U32(0)]);
        (
            Status(outcome.status),
            outcome.params[1].as_u32().expect("u32"),
        )
    }

    /// MSG_GET of READ_DATA_CID: (status, context, format).
    pub fn get_read_cid(&self) -> (Status, u64, u32) {
        let outcome = self.call(Function::MSG_GET, vec![Parm::U64(5), Parm::U32(0)]);
        (
            Status(outcome.status),
            outcome.params[0].as_u64().expect("u64"),
            outcome.params[1].as_u32().expect("u32"),
        )
    }

    /// Fetches queued messages until the queue is empty.
    pub fn drain(&self) {
        for _ in 0..16 {
            let (status, id, _, _) = self.peek();
            if status != Status::VINF_SUCCESS {
                return;
            }
            let first = if id == 5 {
                Parm::U64(5)
            } else {
                Parm::U32(id as u32)
            };
            self.call(Function::MSG_GET, vec![first, Parm::U32(0)]);
        }
        panic!("the queue does not drain");
    }

    pub fn report_formats(&self, mask: u32) -> Status {
        self.status(Function::REPORT_FORMATS, vec![Parm::U32(mask)])
    }

    /// DATA_READ with a buffer of `len`: (status, bytes copied, size reported).
    pub fn read(&self, format: u32, len: usize) -> (Status, Vec<u8>, u32) {
        let outcome = self.call(
            Function::DATA_READ,
            vec![Parm::U32(format), out(len), Parm::U32(0)],
        );
        let size = outcome.params[2].as_u32().expect("u32");
        let bytes = reported(&outcome.params, 1);
        (Status(outcome.status), bytes, size)
    }

    /// DATA_WRITE of a context-ID client.
    pub fn write(&self, context: u64, format: u32, data: &[u8]) -> Status {
        self.status(
            Function::DATA_WRITE,
            vec![Parm::U64(context), Parm::U32(format), bytes_in(data)],
        )
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

pub fn peek_params() -> Vec<Parm> {
    vec![Parm::U64(0), Parm::U32(0), Parm::U32(0), Parm::U32(0)]
}

pub fn decode_peek(outcome: CallOutcome) -> (Status, u64, u32, [u32; 2]) {
    let id = match &outcome.params[0] {
        Parm::U64(v) => *v,
        Parm::U32(v) => u64::from(*v),
        other => panic!("peek parameter 0 is {other:?}"),
    };
    let count = outcome.params[1].as_u32().expect("u32");
    let sizes = [
        outcome.params[2].as_u32().expect("u32"),
        outcome.params[3].as_u32().expect("u32"),
    ];
    (Status(outcome.status), id, count, sizes)
}
