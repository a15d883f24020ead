//! In-process clipboard round trips through the HGCM framework for 1 KiB and 1 MiB of text, next to
//! the Echo null call in the same run.
//!
//! "host→guest": the host replaces the clipboard with N bytes of text (host call SET_CONTENT, which
//! announces it to the guest client) and the guest reads it with DATA_READ into a buffer of the
//! right size (UTF-8 → UTF-16LE with CRLF, 2N + 2 bytes). "guest→host": the host asks for the
//! guest's text (REQUEST_GUEST_DATA), the guest fetches the request (MSG_GET of READ_DATA_CID) and
//! answers with 2N + 2 bytes of UTF-16 (DATA_WRITE), the host collects it (FETCH_GUEST_DATA): four
//! calls, issued one after the other from this thread, so the figure is the protocol's cost without
//! the scheduling of a separate guest thread. "Null call": Echo's `FN_NOOP` (loaded as a plugin,
//! built if missing), the framework's own cost per call.
//!
//! Criterion measures the means; a second pass records each round trip's latency for the p50 and
//! p99, which move far less with the machine's load.
//!
//! Run: `cargo bench -p vmmdev-svc-clipboard --bench round_trip` (`-- --quick` for a short run).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use crossbeam_channel::{Receiver, Sender, bounded};
use vmmdev_hgcm::{Buffer, CallRequest, ClientId, Direction, Hgcm, HgcmConfig, Parm, Requestor};
use vmmdev_svc_clipboard::host::{
    HOST_FN_FETCH_GUEST_DATA, HOST_FN_REQUEST_GUEST_DATA, set_content_params,
};
use vmmdev_svc_clipboard::{Content, Function, SERVICE_NAME};

const ROOT: Requestor = Requestor(0x8B);
const ECHO: &str = "Echo";
/// Echo's `FN_NOOP`.
const ECHO_FN_NOOP: u32 = 4;

struct Client {
    hgcm: Hgcm,
    id: ClientId,
    done_tx: Sender<(i32, Vec<Parm>)>,
    done_rx: Receiver<(i32, Vec<Parm>)>,
}

impl Client {
    fn connect(hgcm: &Hgcm, service: &str) -> Client {
        let (tx, rx) = bounded(1);
        hgcm.connect(
            service,
            ROOT,
            Box::new(move |o| {
                let _ = tx.send(o);
            }),
        )
        .expect("connect accepted");
        let outcome = rx.recv().expect("connected");
        assert_eq!(outcome.status, 0, "connect status");
        let (done_tx, done_rx) = bounded(1);
        Client {
            hgcm: hgcm.clone(),
            id: outcome.client,
            done_tx,
            done_rx,
        }
    }

    fn call(&self, function: u32, params: Vec<Parm>) -> (i32, Vec<Parm>) {
        let done = self.done_tx.clone();
        let call = CallRequest {
            client: self.id,
            function,
            params,
            requestor: ROOT,
            restored: false,
        };
        self.hgcm
            .call(
                call,
                Box::new(move |outcome| {
                    let _ = done.send((outcome.status, outcome.params));
                }),
            )
            .expect("call accepted");
        self.done_rx.recv().expect("completed")
    }
}

/// The Echo plugin next to this benchmark's build, built if missing.
fn echo_plugin() -> PathBuf {
    const FILE: &str = "libvmmdev_echo.so";
    let exe = std::env::current_exe().expect("benchmark path");
    let deps = exe.parent().expect("deps dir").to_path_buf();
    let profile = deps.parent().expect("profile dir").to_path_buf();
    let path = profile.join(FILE);
    if !path.is_file() {
        // Built in the profile this binary was built in (`cargo test` runs benches in debug).
        let release = profile.file_name().is_some_and(|name| name == "release");
        let profile_flag = if release {
            "--release"
        } else {
            "--profile=dev"
        };
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", profile_flag, "-p", "vmmdev-svc-echo-plugin"])
            .env("CARGO_TARGET_DIR", profile.parent().expect("target dir"))
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the Echo plugin failed");
    }
    path
}

fn host_call(hgcm: &Hgcm, function: u32, params: &mut [Parm]) -> i32 {
    hgcm.host_call(SERVICE_NAME, function, params)
        .expect("host call")
}

/// Host set, then the guest's read of the whole text.
fn host_to_guest(hgcm: &Hgcm, guest: &Client, content: &Content, wire_len: usize) {
    let status = host_call(hgcm, 0x101, &mut set_content_params(content));
    assert_eq!(status, 0, "SET_CONTENT");
    let (status, _) = guest.call(
        Function::DATA_READ.raw(),
        vec![
            Parm::U32(1),
            Parm::Buffer(Buffer::host(vec![0; wire_len], Direction::FromHost)),
            Parm::U32(0),
        ],
    );
    assert_eq!(status, 0, "DATA_READ");
}

/// Host request, guest fetch and answer, host collection.
fn guest_to_host(hgcm: &Hgcm, guest: &Client, wire: &[u8]) {
    let mut request = [Parm::U32(1), Parm::U32(5000), Parm::U32(0)];
    assert_eq!(host_call(hgcm, HOST_FN_REQUEST_GUEST_DATA, &mut request), 0);
    let id = request[2].as_u32().expect("request id");
    let (status, params) = guest.call(Function::MSG_GET.raw(), vec![Parm::U64(5), Parm::U32(0)]);
    assert_eq!(status, 0, "MSG_GET");
    let context = params[0].as_u64().expect("context");
    let (status, _) = guest.call(
        Function::DATA_WRITE.raw(),
        vec![
            Parm::U64(context),
            Parm::U32(1),
            Parm::Buffer(Buffer::host(wire.to_vec(), Direction::ToHost)),
        ],
    );
    assert_eq!(status, 0, "DATA_WRITE");
    let mut fetch = [
        Parm::U32(id),
        Parm::Buffer(Buffer::host(vec![0; wire.len()], Direction::FromHost)),
        Parm::U32(0),
    ];
    assert_eq!(host_call(hgcm, HOST_FN_FETCH_GUEST_DATA, &mut fetch), 0);
}

/// p50 and p99 of `count` runs of `round_trip`.
fn percentiles(count: usize, mut round_trip: impl FnMut()) -> (Duration, Duration) {
    let mut samples: Vec<Duration> = (0..count)
        .map(|_| {
            let start = Instant::now();
            round_trip();
            start.elapsed()
        })
        .collect();
    samples.sort_unstable();
    let pick = |q: f64| {
        let index = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples.get(index).copied().unwrap_or_default()
    };
    (pick(0.5), pick(0.99))
}

fn main() {
    let quick = std::env::args().any(|a| a == "--test" || a == "--quick");
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
        .configure_from_args();
    let hgcm = Hgcm::new(HgcmConfig::default());
    hgcm.register_builtin(vmmdev_svc_clipboard::clipboard_entry, "mode=bidirectional")
        .expect("clipboard registers");
    let echo = echo_plugin();
    hgcm.load_plugin(echo.to_str().expect("utf-8 path"), "")
        .expect("echo loads");
    let host_guest = Client::connect(&hgcm, SERVICE_NAME);
    let echo = Client::connect(&hgcm, ECHO);
    let (status, _) = host_guest.call(
        Function::REPORT_FEATURES.raw(),
        vec![Parm::U64(1), Parm::U64(1 << 63)],
    );
    assert_eq!(status, 0, "REPORT_FEATURES");

    let mut rows = Vec::new();
    let mut group = criterion.benchmark_group("clipboard_text");
    for size in [1024usize, 1 << 20] {
        let count = match (quick, size) {
            (true, _) => 5,
            (false, 1024) => 2_000,
            (false, _) => 40,
        };
        let text: String = (0..size)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let content = Content {
            text: Some(text.clone()),
            ..Content::default()
        };
        let mut wire: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
        wire.extend_from_slice(&[0, 0]);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("host_to_guest", size), &size, |b, _| {
            b.iter(|| host_to_guest(&hgcm, &host_guest, &content, wire.len()))
        });
        let (p50, p99) = percentiles(count, || {
            host_to_guest(&hgcm, &host_guest, &content, wire.len())
        });
        rows.push((format!("host→guest {size} B"), p50, p99));
        // The guest owns the clipboard for the other direction.
        let (status, _) = host_guest.call(Function::REPORT_FORMATS.raw(), vec![Parm::U32(1)]);
        assert_eq!(status, 0, "REPORT_FORMATS");
        // Drop the announcements the host sets queued.
        loop {
            let (status, _) =
                host_guest.call(Function::MSG_GET.raw(), vec![Parm::U32(3), Parm::U32(0)]);
            if status != 0 {
                break;
            }
        }
        group.bench_with_input(BenchmarkId::new("guest_to_host", size), &size, |b, _| {
            b.iter(|| guest_to_host(&hgcm, &host_guest, &wire))
        });
        let (p50, p99) = percentiles(count, || guest_to_host(&hgcm, &host_guest, &wire));
        rows.push((format!("guest→host {size} B"), p50, p99));
        // The host takes the clipboard back for the next size's host→guest case.
        host_call(&hgcm, 0x101, &mut set_content_params(&Content::default()));
    }
    group.finish();
    criterion.bench_function("echo_null_call", |b| {
        b.iter(|| {
            let (status, _) = echo.call(ECHO_FN_NOOP, Vec::new());
            assert_eq!(status, 0);
        })
    });
    criterion.final_summary();
    let (null_p50, null_p99) = percentiles(if quick { 5 } else { 20_000 }, || {
        let (status, _) = echo.call(ECHO_FN_NOOP, Vec::new());
        assert_eq!(status, 0);
    });
    println!();
    println!("| round trip | p50 (µs) | p99 (µs) | p50 / null-call p50 |");
    println!("|---|---|---|---|");
    for (name, p50, p99) in &rows {
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} |",
            p50.as_secs_f64() * 1e6,
            p99.as_secs_f64() * 1e6,
            p50.as_secs_f64() / null_p50.as_secs_f64()
        );
    }
    println!(
        "| Echo null call | {:.1} | {:.1} | 1.0 |",
        null_p50.as_secs_f64() * 1e6,
        null_p99.as_secs_f64() * 1e6
    );
    drop((host_guest, echo));
    hgcm.shutdown();
}
