//! Null-call latency through the framework, next to a bare cross-thread round trip.
//!
//! "HGCM null call": the Echo service's `FN_NOOP`, submitted with `Hgcm::call`, carried to the
//! service thread, completed there through the plugin ABI and the SDK, and the completion
//! signals the waiting client thread. "Bare round trip": the same two thread hops with nothing in
//! between: a crossbeam channel to a server thread and a reply channel back; the server waits
//! with crossbeam's blocking `recv` (the reference the ≤ 2 target is stated against). "Bare,
//! polling server": the same, but the server waits the way the framework's service thread does
//! (polling its queue for a few microseconds before blocking), so that the framework/bare ratio
//! on this line shows the framework's own cost, not the difference in waiting.
//!
//! To make the two comparable on a small, shared machine:
//! * the client thread runs on CPU 0 and the service / server thread on CPU 1 (pinned with
//!   `sched_setaffinity`; the framework's service thread is found by its name), so both paths
//!   get the same placement;
//! * the two paths are measured interleaved, in alternating batches in the same process, so a
//!   change in machine load hits both alike;
//! * every call's latency is recorded; p50/p99 and calls/s come from all batches together.
//!
//! Criterion then gives the 1-client means of both paths (same pinning).
//!
//! Run: `cargo bench -p vmmdev-hgcm --bench null_call` (`-- --quick` for a short smoke run).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use criterion::Criterion;
use crossbeam_channel::{Receiver, Sender, TryRecvError, bounded, unbounded};
use vmmdev_hgcm::{CallRequest, ClientId, Hgcm, HgcmConfig, Requestor};

/// The CPU the client threads run on.
const CLIENT_CPU: usize = 0;
/// The CPU the service (or bare server) thread runs on.
const SERVER_CPU: usize = 1;

/// Pins the thread with kernel id `tid` (0: the calling thread) to `cpu`; false if the kernel
/// refused (fewer CPUs, a restricted cpuset).
fn pin(tid: libc::pid_t, cpu: usize) -> bool {
    // SAFETY: `cpu_set_t` is plain data for which all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid set and `cpu` is below CPU_SETSIZE on any machine this runs on.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: a valid set of the size passed; the kernel validates `tid`.
    unsafe { libc::sched_setaffinity(tid, size_of::<libc::cpu_set_t>(), &set) == 0 }
}

/// The kernel id of this process's thread named `name`.
fn thread_named(name: &str) -> Option<libc::pid_t> {
    std::fs::read_dir("/proc/self/task").ok()?.find_map(|task| {
        let task = task.ok()?;
        let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
        (comm.trim_end() == name)
            .then(|| task.file_name().to_str()?.parse().ok())
            .flatten()
    })
}

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
            Requestor::KERNEL_DRIVER,
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
            requestor: Requestor::KERNEL_DRIVER,
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

/// The Echo service on its own, pinned, thread.
fn echo_hgcm() -> Hgcm {
    let hgcm = Hgcm::new(HgcmConfig::default());
    hgcm.register_builtin(vmmdev_svc_echo::echo_entry, "")
        .expect("echo registers");
    // The first service registered runs on the thread named after slot 0.
    match thread_named("hgcm-svc-0") {
        Some(tid) if pin(tid, SERVER_CPU) => {}
        _ => eprintln!("warning: the service thread could not be pinned"),
    }
    hgcm
}

/// How a bare server waits for the next request.
#[derive(Clone, Copy)]
enum ServerWait {
    /// crossbeam's `recv` (spins with exponential back-off, then blocks).
    Blocking,
    /// Polls for 5 µs at a steady pace, then blocks: what the framework's service thread does.
    Polling,
}

impl ServerWait {
    fn next<T>(self, rx: &Receiver<T>) -> Option<T> {
        if let Self::Polling = self {
            let start = Instant::now();
            while start.elapsed() < Duration::from_micros(5) {
                for _ in 0..32 {
                    match rx.try_recv() {
                        Ok(msg) => return Some(msg),
                        Err(TryRecvError::Disconnected) => return None,
                        Err(TryRecvError::Empty) => std::hint::spin_loop(),
                    }
                }
            }
        }
        rx.recv().ok()
    }
}

/// A server thread answering every request on the reply channel it carries.
struct BareServer {
    requests: Sender<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl BareServer {
    fn start(wait: ServerWait) -> Self {
        let (requests, incoming) = unbounded::<Sender<()>>();
        let thread = std::thread::spawn(move || {
            if !pin(0, SERVER_CPU) {
                eprintln!("warning: the bare server thread could not be pinned");
            }
            while let Some(reply) = wait.next(&incoming) {
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

/// Samples of one path: every call's latency and the wall time of the batches.
#[derive(Default)]
struct Samples {
    latencies: Vec<Duration>,
    calls: usize,
    wall: Duration,
}

impl Samples {
    fn percentile(&self, q: f64) -> Duration {
        let last = self.latencies.len().saturating_sub(1);
        let index = ((last as f64) * q).round() as usize;
        self.latencies.get(index).copied().unwrap_or_default()
    }

    fn calls_per_sec(&self) -> f64 {
        self.calls as f64 / self.wall.as_secs_f64()
    }
}

/// Runs one batch: `per_client` round trips on every client at once (each on a thread pinned to
/// the client CPU), after `warmup` unrecorded ones. Gives the clients back for the next batch.
fn batch<C: RoundTrip + 'static>(
    clients: Vec<C>,
    warmup: usize,
    per_client: usize,
    into: &mut Samples,
) -> Vec<C> {
    let go = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            let go = go.clone();
            std::thread::spawn(move || {
                pin(0, CLIENT_CPU);
                for _ in 0..warmup {
                    client.round_trip();
                }
                while !go.load(Ordering::Acquire) {
                    std::hint::spin_loop();
                }
                let mut latencies = Vec::with_capacity(per_client);
                for _ in 0..per_client {
                    let start = Instant::now();
                    client.round_trip();
                    latencies.push(start.elapsed());
                }
                (client, latencies)
            })
        })
        .collect();
    let wall = Instant::now();
    go.store(true, Ordering::Release);
    let mut clients = Vec::new();
    for thread in threads {
        let (client, latencies) = thread.join().expect("client thread");
        into.calls += latencies.len();
        into.latencies.extend(latencies);
        clients.push(client);
    }
    into.wall += wall.elapsed();
    clients
}

struct Plan {
    rounds: usize,
    warmup: usize,
    per_client: usize,
}

/// The paths measured, in the order they are reported.
const PATHS: [&str; 3] = ["HGCM null call", "bare round trip", "bare, polling server"];

/// The three paths, `clients` clients each, in batches whose order rotates every round.
fn interleaved(clients: usize, plan: &Plan) -> [Samples; 3] {
    let hgcm = echo_hgcm();
    let blocking = BareServer::start(ServerWait::Blocking);
    let polling = BareServer::start(ServerWait::Polling);
    let mut framework_clients: Vec<_> = (0..clients).map(|_| HgcmClient::new(&hgcm)).collect();
    let mut blocking_clients: Vec<_> = (0..clients).map(|_| blocking.client()).collect();
    let mut polling_clients: Vec<_> = (0..clients).map(|_| polling.client()).collect();
    let mut samples: [Samples; 3] = Default::default();
    let (warmup, n) = (plan.warmup, plan.per_client);
    for round in 0..plan.rounds {
        for step in 0..3 {
            match (round + step) % 3 {
                0 => framework_clients = batch(framework_clients, warmup, n, &mut samples[0]),
                1 => blocking_clients = batch(blocking_clients, warmup, n, &mut samples[1]),
                _ => polling_clients = batch(polling_clients, warmup, n, &mut samples[2]),
            }
        }
    }
    drop(framework_clients);
    hgcm.shutdown();
    for path in &mut samples {
        path.latencies.sort_unstable();
    }
    samples
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn percentiles(quick: bool) {
    println!();
    println!("| clients | path | samples | p50 (µs) | p99 (µs) | calls/s |");
    println!("|---|---|---|---|---|---|");
    for clients in [1usize, 8] {
        let plan = match (quick, clients) {
            (true, _) => Plan {
                rounds: 2,
                warmup: 10,
                per_client: 200,
            },
            (false, 1) => Plan {
                rounds: 20,
                warmup: 500,
                per_client: 10_000,
            },
            (false, _) => Plan {
                rounds: 10,
                warmup: 200,
                per_client: 2_500,
            },
        };
        let samples = interleaved(clients, &plan);
        for (path, s) in PATHS.iter().zip(&samples) {
            println!(
                "| {clients} | {path} | {} | {:.2} | {:.2} | {:.0} |",
                s.latencies.len(),
                micros(s.percentile(0.50)),
                micros(s.percentile(0.99)),
                s.calls_per_sec()
            );
        }
        let framework = &samples[0];
        for (path, bare) in PATHS.iter().zip(&samples).skip(1) {
            println!(
                "| {clients} | ratio HGCM / {path} | | {:.2} | {:.2} | {:.2} |",
                framework.percentile(0.50).as_secs_f64() / bare.percentile(0.50).as_secs_f64(),
                framework.percentile(0.99).as_secs_f64() / bare.percentile(0.99).as_secs_f64(),
                bare.calls_per_sec() / framework.calls_per_sec()
            );
        }
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--test" || a == "--quick");
    if !pin(0, CLIENT_CPU) {
        eprintln!("warning: the client thread could not be pinned");
    }
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
    let server = BareServer::start(ServerWait::Blocking);
    let mut bare = server.client();
    criterion.bench_function("bare_round_trip_1_client", |b| b.iter(|| bare.round_trip()));
    drop(framework);
    hgcm.shutdown();
    criterion.final_summary();
    percentiles(quick);
}
