//! Null-call latency through the framework, next to a bare cross-thread round trip.
//!
//! "HGCM null call": the Echo service's `FN_NOOP`, submitted with `Hgcm::call`, carried to the
//! service thread, completed there, and the completion signals the waiting client thread.
//! "Bare round trip": the same two thread hops with nothing in between — a crossbeam channel to a
//! server thread and a reply channel back. Both run with 1 and with 8 concurrent clients (one
//! service / server thread in each case).
//!
//! Criterion measures the 1-client means; a second pass records every call's latency to report
//! p50/p99 and calls per second for 1 and 8 clients, and the framework/bare ratios.
//!
//! Run: `cargo bench -p vmmdev-hgcm --bench null_call`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use criterion::Criterion;
use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use vmmdev_hgcm::{CallRequest, ClientId, Hgcm, HgcmConfig, Requestor};

/// One way of doing a round trip, per client thread.
trait RoundTrip: Send {
    fn round_trip(&mut self);
}

struct HgcmClient {
    hgcm: Hgcm,
    client: ClientId,
    done_tx: Sender<()>,
    done_rx: Receiver<()>,
}

impl HgcmClient {
    fn new(hgcm: &Hgcm) -> Self {
        let (tx, rx) = bounded(1);
        hgcm.connect(
            vmmdev_svc_echo::SERVICE_NAME,
            Requestor(1),
            Box::new(move |o| {
                let _ = tx.send(o);
            }),
        )
        .expect("connect accepted");
        let outcome = rx.recv().expect("connected");
        let (done_tx, done_rx) = bounded(1);
        HgcmClient {
            hgcm: hgcm.clone(),
            client: outcome.client,
            done_tx,
            done_rx,
        }
    }
}

impl RoundTrip for HgcmClient {
    fn round_trip(&mut self) {
        let done = self.done_tx.clone();
        let call = CallRequest {
            client: self.client,
            function: vmmdev_svc_echo::FN_NOOP,
            params: Vec::new(),
            requestor: Requestor(1),
            restored: false,
        };
        self.hgcm
            .call(
                call,
                Box::new(move |_| {
                    let _ = done.send(());
                }),
            )
            .expect("call accepted");
        self.done_rx.recv().expect("completed");
    }
}

/// A server thread answering every request on the reply channel it carries.
struct BareServer {
    requests: Sender<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl BareServer {
    fn start() -> Self {
        let (requests, incoming) = unbounded::<Sender<()>>();
        let thread = std::thread::spawn(move || {
            for reply in incoming {
                let _ = reply.send(());
            }
        });
        BareServer {
            requests,
            thread: Some(thread),
        }
    }

    fn client(&self) -> BareClient {
        let (reply_tx, reply_rx) = bounded(1);
        BareClient {
            requests: self.requests.clone(),
            reply_tx,
            reply_rx,
        }
    }
}

impl Drop for BareServer {
    fn drop(&mut self) {
        let (dead, _) = unbounded();
        self.requests = dead;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct BareClient {
    requests: Sender<Sender<()>>,
    reply_tx: Sender<()>,
    reply_rx: Receiver<()>,
}

impl RoundTrip for BareClient {
    fn round_trip(&mut self) {
        self.requests
            .send(self.reply_tx.clone())
            .expect("server alive");
        self.reply_rx.recv().expect("reply");
    }
}

fn echo_hgcm() -> Hgcm {
    let hgcm = Hgcm::new(HgcmConfig::default());
    hgcm.register_builtin(vmmdev_svc_echo::echo_entry, "")
        .expect("echo registers");
    hgcm
}

/// Latency distribution and throughput of one scenario.
struct Figures {
    p50: Duration,
    p99: Duration,
    calls_per_sec: f64,
}

/// Runs `per_client` round trips on each client concurrently (after `warmup` each).
fn measure<C: RoundTrip + 'static>(clients: Vec<C>, warmup: usize, per_client: usize) -> Figures {
    let start_flag = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            let start_flag = start_flag.clone();
            std::thread::spawn(move || {
                for _ in 0..warmup {
                    client.round_trip();
                }
                while !start_flag.load(Ordering::Acquire) {
                    std::hint::spin_loop();
                }
                let mut samples = Vec::with_capacity(per_client);
                for _ in 0..per_client {
                    let t = Instant::now();
                    client.round_trip();
                    samples.push(t.elapsed());
                }
                samples
            })
        })
        .collect();
    let wall = Instant::now();
    start_flag.store(true, Ordering::Release);
    let mut samples: Vec<Duration> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("client thread"))
        .collect();
    let elapsed = wall.elapsed();
    samples.sort_unstable();
    let pick = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    Figures {
        p50: pick(0.50),
        p99: pick(0.99),
        calls_per_sec: samples.len() as f64 / elapsed.as_secs_f64(),
    }
}

fn percentiles(quick: bool) {
    let (warmup, per_client) = if quick { (10, 100) } else { (2_000, 20_000) };
    println!();
    println!("| clients | path | p50 (µs) | p99 (µs) | calls/s |");
    println!("|---|---|---|---|---|");
    for clients in [1usize, 8] {
        let per_client = if clients == 1 {
            per_client
        } else {
            per_client / 4
        };
        let hgcm = echo_hgcm();
        let framework = measure(
            (0..clients).map(|_| HgcmClient::new(&hgcm)).collect(),
            warmup,
            per_client,
        );
        hgcm.shutdown();
        let server = BareServer::start();
        let bare = measure(
            (0..clients).map(|_| server.client()).collect(),
            warmup,
            per_client,
        );
        drop(server);
        for (path, f) in [("HGCM null call", &framework), ("bare round trip", &bare)] {
            println!(
                "| {clients} | {path} | {:.1} | {:.1} | {:.0} |",
                f.p50.as_secs_f64() * 1e6,
                f.p99.as_secs_f64() * 1e6,
                f.calls_per_sec
            );
        }
        println!(
            "| {clients} | ratio HGCM/bare | {:.2} | {:.2} | {:.2} |",
            framework.p50.as_secs_f64() / bare.p50.as_secs_f64(),
            framework.p99.as_secs_f64() / bare.p99.as_secs_f64(),
            bare.calls_per_sec / framework.calls_per_sec
        );
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--test" || a == "--quick");
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
        .configure_from_args();
    let hgcm = echo_hgcm();
    let mut framework = HgcmClient::new(&hgcm);
    criterion.bench_function("hgcm_null_call_1_client", |b| {
        b.iter(|| framework.round_trip())
    });
    let server = BareServer::start();
    let mut bare = server.client();
    criterion.bench_function("bare_round_trip_1_client", |b| b.iter(|| bare.round_trip()));
    drop(framework);
    hgcm.shutdown();
    criterion.final_summary();
    percentiles(quick);
}
