//! No guest-memory access after a cancel: a call's buffers are touched only inside accesses, and
//! cancel, disconnect and reset shut the call's gate and wait for the accesses in flight.
//!
//! The `Holder` service hands every call to the test through a channel, so the test plays the
//! service's worker thread and decides exactly when it accesses guest memory.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use common::*;
use crossbeam_channel::{Receiver, Sender, unbounded};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmmdev_hgcm::{
    Buffer, BufferError, ClientId, Direction, Hgcm, HgcmConfig, Parm, RequestId, Status,
};
use vmmdev_hgcm_sdk::{Call, Delivery, Host, Service};

const HOLDER: &str = "Holder";
/// Where the call's output buffer lives in guest RAM.
const OUT_GPA: GuestAddress = GuestAddress(0x2000);
const OUT_LEN: usize = 64;

/// The tests share one static channel, so they run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());
static HELD: Mutex<Option<Sender<Call>>> = Mutex::new(None);

struct Holder;

impl Service for Holder {
    fn call(&mut self, call: Call) {
        if let Some(tx) = HELD.lock().expect("held").as_ref() {
            let _ = tx.send(call);
        }
    }
}

vmmdev_hgcm_sdk::service_entry!(fn holder_entry, Holder, "Holder", |_: Host, _: &str| Ok(Holder));

struct Fixture {
    _serial: MutexGuard<'static, ()>,
    hgcm: Hgcm,
    client: ClientId,
    mem: Arc<GuestMemoryMmap>,
    held: Receiver<Call>,
}

impl Fixture {
    fn new() -> Self {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let (tx, held) = unbounded();
        *HELD.lock().expect("held") = Some(tx);
        let hgcm = Hgcm::new(HgcmConfig::default());
        hgcm.register_builtin(holder_entry, "").expect("registers");
        let client = connect_ok(&hgcm, HOLDER);
        Fixture {
            _serial: serial,
            hgcm,
            client,
            mem: guest_memory(),
            held,
        }
    }

    /// Submits a call with one guest output buffer; returns its id, outcome and the held call.
    fn submit_held(&self) -> (RequestId, Receiver<vmmdev_hgcm::CallOutcome>, Call) {
        self.mem.write_slice(&[0; OUT_LEN], OUT_GPA).expect("clear");
        let out = Buffer::guest(
            self.mem.clone(),
            vec![(OUT_GPA, OUT_LEN)],
            Direction::FromHost,
        )
        .expect("in RAM");
        let (id, rx) =
            submit(&self.hgcm, request(self.client, 1, vec![Parm::Buffer(out)])).expect("accepted");
        let call = self.held.recv_timeout(DEADLINE).expect("held");
        (id, rx, call)
    }

    fn guest_bytes(&self) -> [u8; OUT_LEN] {
        let mut bytes = [0u8; OUT_LEN];
        self.mem.read_slice(&mut bytes, OUT_GPA).expect("read");
        bytes
    }
}

fn write(call: &mut Call, offset: usize, data: &[u8]) -> Result<usize, BufferError> {
    call.params_mut()
        .buffer_mut(0)
        .expect("buffer 0")
        .write_at(offset, data)
}

#[test]
fn write_after_cancel_is_refused_and_never_reaches_guest_memory() {
    let fx = Fixture::new();
    let (id, rx, mut call) = fx.submit_held();
    assert_eq!(fx.hgcm.cancel(id), Ok(()));
    assert_eq!(write(&mut call, 0, b"late"), Err(BufferError::Cancelled));
    assert!(
        call.params()
            .buffer(0)
            .expect("buffer")
            .guest_access()
            .is_err()
    );
    assert_eq!(fx.guest_bytes(), [0; OUT_LEN]);
    assert_eq!(
        call.complete(Status::VINF_SUCCESS.raw()),
        Delivery::Cancelled
    );
    assert!(rx.recv_timeout(QUIET).is_err(), "cancelled call completed");
}

#[test]
fn cancel_waits_for_a_guarded_write_in_flight_then_later_writes_fail() {
    let fx = Fixture::new();
    let (id, _rx, call) = fx.submit_held();
    let written = Arc::new(AtomicBool::new(false));
    let (entered_tx, entered_rx) = unbounded();
    let service_thread = {
        let written = written.clone();
        std::thread::spawn(move || {
            let mut call = call;
            {
                let buffer = call.params().buffer(0).expect("buffer");
                let access = buffer.guest_access().expect("open before the cancel");
                entered_tx.send(()).expect("test alive");
                // A long write: the cancel arrives in the middle of it.
                while !call.is_cancelled() {
                    std::thread::yield_now();
                }
                std::thread::sleep(Duration::from_millis(50));
                access
                    .write_at(0, b"inside")
                    .expect("the open access still writes");
                written.store(true, Ordering::SeqCst);
            }
            let late = write(&mut call, 8, b"late");
            (late, call.complete(Status::VINF_SUCCESS.raw()))
        })
    };
    entered_rx.recv_timeout(DEADLINE).expect("access open");
    assert_eq!(fx.hgcm.cancel(id), Ok(()));
    assert!(
        written.load(Ordering::SeqCst),
        "cancel returned while a guarded write was still in flight"
    );
    let (late, delivery) = service_thread.join().expect("service thread");
    assert_eq!(late, Err(BufferError::Cancelled));
    assert_eq!(delivery, Delivery::Cancelled);
    let bytes = fx.guest_bytes();
    assert_eq!(&bytes[..6], b"inside");
    assert_eq!(
        &bytes[8..12],
        &[0; 4],
        "a write after the cancel reached guest memory"
    );
}

#[test]
fn disconnect_closes_the_gates_of_the_clients_calls() {
    let fx = Fixture::new();
    let (_, rx, mut call) = fx.submit_held();
    assert_eq!(
        disconnect(&fx.hgcm, fx.client).status,
        Status::VINF_SUCCESS.raw()
    );
    assert_eq!(write(&mut call, 0, b"late"), Err(BufferError::Cancelled));
    assert_eq!(fx.guest_bytes(), [0; OUT_LEN]);
    assert_eq!(
        call.complete(Status::VINF_SUCCESS.raw()),
        Delivery::Cancelled
    );
    assert_eq!(
        rx.recv_timeout(DEADLINE).expect("completes").status,
        Status::VERR_CANCELLED.raw()
    );
}

#[test]
fn reset_closes_the_gates_of_every_pending_call() {
    let fx = Fixture::new();
    let (_, _rx, mut call) = fx.submit_held();
    fx.hgcm.reset();
    assert_eq!(write(&mut call, 0, b"late"), Err(BufferError::Cancelled));
    assert_eq!(fx.guest_bytes(), [0; OUT_LEN]);
    assert_eq!(call.complete(Status::VINF_SUCCESS.raw()), Delivery::Reset);
}

#[test]
fn completed_call_gives_the_transport_readable_buffers() {
    let fx = Fixture::new();
    let (_, rx, mut call) = fx.submit_held();
    assert_eq!(write(&mut call, 0, b"done"), Ok(4));
    assert_eq!(
        call.complete(Status::VINF_SUCCESS.raw()),
        Delivery::Delivered
    );
    let outcome = rx.recv_timeout(DEADLINE).expect("completes");
    let out = outcome.params[0].as_buffer().expect("buffer");
    assert_eq!(&out.copy_in(OUT_LEN).expect("readable")[..4], b"done");
}

#[test]
fn writes_racing_a_cancel_never_land_after_it_returned() {
    let fx = Fixture::new();
    for round in 0..200u32 {
        let (id, _rx, call) = fx.submit_held();
        let writer = std::thread::spawn(move || {
            let mut call = call;
            let mut pattern = 0u8;
            // Keep overwriting the buffer until the gate refuses.
            loop {
                pattern = pattern.wrapping_add(1);
                if write(&mut call, 0, &[pattern; OUT_LEN]).is_err() {
                    break;
                }
            }
            call.complete(Status::VINF_SUCCESS.raw())
        });
        if round % 2 == 1 {
            std::thread::yield_now();
        }
        assert_eq!(fx.hgcm.cancel(id), Ok(()));
        let after_cancel = fx.guest_bytes();
        assert_eq!(writer.join().expect("writer"), Delivery::Cancelled);
        assert_eq!(
            fx.guest_bytes(),
            after_cancel,
            "round {round}: guest memory changed after cancel returned"
        );
    }
}
