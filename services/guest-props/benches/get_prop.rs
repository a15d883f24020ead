//! In-process GET_PROP round trip through the HGCM framework, next to the Echo null call in the
//! same run.
//!
//! "GET_PROP": a guest call `GET_PROP("/VirtualBox/GuestInfo/OS/Product")` with host buffers (a
//! 33-byte name, a 1 KiB output buffer, the timestamp and size values), submitted with
//! `Hgcm::call`, served on the service thread (name parsed, policy and lookup, reply written),
//! completed, and the completion signals the waiting client thread. "Null call": Echo's
//! `FN_NOOP` on the same framework instance, the baseline of the framework's own cost. Echo is
//! loaded as a plugin (the same C ABI path as a built-in): linking its rlib next to this one
//! would define the plugin entry symbol twice. The bench builds it if it is missing.
//!
//! Criterion measures the means; a second pass records every call's latency for p50/p99 and
//! calls per second.
//!
//! Run: `cargo bench -p vmmdev-svc-guest-props --bench get_prop` (`-- --quick` for a short run).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::Criterion;
use crossbeam_channel::{Receiver, Sender, bounded};
use vmmdev_hgcm::{Buffer, CallRequest, ClientId, Direction, Hgcm, HgcmConfig, Parm, Requestor};
use vmmdev_svc_guest_props::{Function, HostFunction, SERVICE_NAME};

const KERNEL: Requestor = Requestor(1);
const ECHO: &str = "Echo";
/// Echo's `FN_NOOP`.
const ECHO_FN_NOOP: u32 = 4;
const NAME: &[u8] = b"/VirtualBox/GuestInfo/OS/Product\0";

struct Client {
    hgcm: Hgcm,
    id: ClientId,
    done_tx: Sender<i32>,
    done_rx: Receiver<i32>,
}

impl Client {
    fn connect(hgcm: &Hgcm, service: &str) -> Client {
        let (tx, rx) = bounded(1);
        hgcm.connect(
            service,
            KERNEL,
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

    fn round_trip(&self, function: u32, params: Vec<Parm>) -> i32 {
        let done = self.done_tx.clone();
        let call = CallRequest {
            client: self.id,
            function,
            params,
            requestor: KERNEL,
            restored: false,
        };
        self.hgcm
            .call(
                call,
                Box::new(move |outcome| {
                    let _ = done.send(outcome.status);
                }),
            )
            .expect("call accepted");
        self.done_rx.recv().expect("completed")
    }

    fn get_prop(&self) -> i32 {
        let params = vec![
            Parm::Buffer(Buffer::host(NAME.to_vec(), Direction::ToHost)),
            Parm::Buffer(Buffer::host(vec![0; 1024], Direction::FromHost)),
            Parm::U64(0),
            Parm::U32(0),
        ];
        self.round_trip(Function::GET_PROP.raw(), params)
    }

    fn null_call(&self) -> i32 {
        self.round_trip(ECHO_FN_NOOP, Vec::new())
    }
}

/// The Echo plugin next to this benchmark's build, built if missing.
fn echo_plugin() -> PathBuf {
    const FILE: &str = "libvmmdev_echo.so";
    // Benchmarks live in <target>/release/deps/.
    let exe = std::env::current_exe().expect("benchmark path");
    let deps = exe.parent().expect("deps dir").to_path_buf();
    let profile = deps.parent().expect("profile dir").to_path_buf();
    let path = profile.join(FILE);
    if !path.is_file() {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "--release", "-p", "vmmdev-svc-echo-plugin"])
            .env("CARGO_TARGET_DIR", profile.parent().expect("target dir"))
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the Echo plugin failed");
    }
    path
}

fn framework() -> Hgcm {
    let hgcm = Hgcm::new(HgcmConfig::default());
    hgcm.register_builtin(vmmdev_svc_guest_props::guest_props_entry, "")
        .expect("guest properties register");
    let echo = echo_plugin();
    hgcm.load_plugin(echo.to_str().expect("utf-8 path"), "")
        .expect("echo loads");
    let mut params = [
        Parm::Buffer(Buffer::host(NAME.to_vec(), Direction::ToHost)),
        Parm::Buffer(Buffer::host(b"Linux\0".to_vec(), Direction::ToHost)),
    ];
    let status = hgcm
        .host_call(SERVICE_NAME, HostFunction::SET_PROP.raw(), &mut params)
        .expect("host call");
    assert_eq!(status, 0, "host SET_PROP");
    hgcm
}

struct Figures {
    p50: Duration,
    p99: Duration,
    calls_per_sec: f64,
}

fn measure(count: usize, mut round_trip: impl FnMut() -> i32) -> Figures {
    let mut samples = Vec::with_capacity(count);
    let wall = Instant::now();
    for _ in 0..count {
        let start = Instant::now();
        let status = round_trip();
        samples.push(start.elapsed());
        assert_eq!(status, 0, "call status");
    }
    let elapsed = wall.elapsed();
    samples.sort_unstable();
    let pick = |q: f64| {
        let index = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples.get(index).copied().unwrap_or_default()
    };
    Figures {
        p50: pick(0.50),
        p99: pick(0.99),
        calls_per_sec: samples.len() as f64 / elapsed.as_secs_f64(),
    }
}

fn percentiles(props: &Client, echo: &Client, quick: bool) {
    let (warmup, count) = if quick { (10, 200) } else { (2_000, 20_000) };
    for _ in 0..warmup {
        props.get_prop();
        echo.null_call();
    }
    let get = measure(count, || props.get_prop());
    let null = measure(count, || echo.null_call());
    println!();
    println!("| path | p50 (µs) | p99 (µs) | calls/s |");
    println!("|---|---|---|---|");
    for (path, f) in [("GET_PROP", &get), ("Echo null call", &null)] {
        println!(
            "| {path} | {:.1} | {:.1} | {:.0} |",
            f.p50.as_secs_f64() * 1e6,
            f.p99.as_secs_f64() * 1e6,
            f.calls_per_sec
        );
    }
    println!(
        "| ratio GET_PROP/null | {:.2} | {:.2} | {:.2} |",
        get.p50.as_secs_f64() / null.p50.as_secs_f64(),
        get.p99.as_secs_f64() / null.p99.as_secs_f64(),
        null.calls_per_sec / get.calls_per_sec
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "--test" || a == "--quick");
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
        .configure_from_args();
    let hgcm = framework();
    let props = Client::connect(&hgcm, SERVICE_NAME);
    let echo = Client::connect(&hgcm, ECHO);
    criterion.bench_function("guest_props_get_prop", |b| b.iter(|| props.get_prop()));
    criterion.bench_function("echo_null_call", |b| b.iter(|| echo.null_call()));
    criterion.final_summary();
    percentiles(&props, &echo, quick);
    drop((props, echo));
    hgcm.shutdown();
}
