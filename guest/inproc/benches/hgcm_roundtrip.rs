//! HGCM round trips through the whole in-process stack, next to the framework alone.
//!
//! * `framework/null_call`: `Hgcm::call` → Echo's service thread → completion closure →
//!   wake the waiting thread (no device, no guest memory).
//! * `device/null_call`: the guest builds a Call64 in guest RAM, writes the request port, the
//!   device parses and submits, the service completes, the device writes the result and DONE
//!   and raises the interrupt, the guest's ISR thread acknowledges and wakes the caller, which
//!   sees DONE.
//! * `device/page_list_4k_call`: the same with a 4 KiB in-buffer and a 4 KiB out-buffer, each
//!   a page list over guest pages (Echo copies one into the other).
//!
//! Run: `cargo bench -p vmmdev-guest-inproc --bench hgcm_roundtrip`.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use crossbeam_channel::bounded;
use vmmdev_guest_inproc::{BufferDirection, CallOptions, GuestParm, InProcessVm};
use vmmdev_hgcm::{CallRequest, Hgcm, HgcmConfig, Requestor};
use vmmdev_svc_echo::{FN_ECHO, FN_NOOP, SERVICE_NAME};

fn echo_hgcm() -> Hgcm {
    let hgcm = Hgcm::new(HgcmConfig::default());
    hgcm.register_builtin(vmmdev_svc_echo::echo_entry, "")
        .expect("register Echo");
    hgcm
}

fn framework(c: &mut Criterion) {
    let hgcm = echo_hgcm();
    let (tx, rx) = bounded(1);
    hgcm.connect(
        SERVICE_NAME,
        Requestor(1),
        Box::new(move |outcome| {
            let _ = tx.send(outcome.client);
        }),
    )
    .expect("connect");
    let client = rx.recv().expect("client");
    let (done_tx, done_rx) = bounded::<i32>(1);
    c.bench_function("framework/null_call", |b| {
        b.iter(|| {
            let done_tx = done_tx.clone();
            hgcm.call(
                CallRequest {
                    client,
                    function: FN_NOOP,
                    params: Vec::new(),
                    requestor: Requestor(1),
                    restored: false,
                },
                Box::new(move |outcome| {
                    let _ = done_tx.send(outcome.status);
                }),
            )
            .expect("call");
            done_rx.recv().expect("completion")
        });
    });
}

fn device(c: &mut Criterion) {
    let vm = InProcessVm::new(echo_hgcm()).expect("VM");
    vm.guest.probe().expect("probe");
    let client = vm.guest.hgcm_connect(SERVICE_NAME).expect("connect");
    let options = CallOptions::default();
    c.bench_function("device/null_call", |b| {
        b.iter(|| {
            vm.guest
                .hgcm_call(client, FN_NOOP, &mut [], &options)
                .expect("call")
        });
    });
    let payload: Vec<u8> = (0..4096).map(|i| i as u8).collect();
    c.bench_function("device/page_list_4k_call", |b| {
        b.iter(|| {
            let mut params = [
                GuestParm::Buffer {
                    data: payload.clone(),
                    direction: BufferDirection::In,
                },
                GuestParm::Buffer {
                    data: vec![0; 4096],
                    direction: BufferDirection::Out,
                },
            ];
            vm.guest
                .hgcm_call(client, FN_ECHO, &mut params, &options)
                .expect("call")
        });
    });
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = framework, device
}
criterion_main!(benches);
