//! The shared clipboard's cost in the real guest (issue #7 item 6): vfio-user messages per clipboard
//! round trip of 1 KiB and 1 MiB of text, in each direction.
//!
//! Every loop of the `clip-rtt` step (`tests/e2e/guest/steps/80-clipboard.sh`) is booted twice under
//! QEMU/TCG with the same steps and a different number of rounds; everything but the rounds is the same
//! in both boots, so the difference of the server's message counts (the `client disconnected:` report
//! of a `vmmdev-vfio-user --once` the test starts itself, so that the server writes it before it exits)
//! divided by the difference of the rounds is the cost of one round:
//!
//! * `h2g-SIZE`: the guest runs `vboxcontrol clipboard get` of host text of SIZE (a new process each
//!   time: connect, REPORT_FEATURES, DATA_READ, one more DATA_READ when the text does not fit the first
//!   64 KiB buffer, disconnect);
//! * `g2h-SIZE`: the host reads the guest's offer through the control endpoint (`clipboard.get`), which
//!   wakes the guest's `vboxcontrol clipboard set` with a READ_DATA_CID (the peek completes, MSG_GET,
//!   DATA_WRITE, a new peek).
//!
//! It is a measurement, not a check of speed: it prints the table for docs/PERFORMANCE.md and fails only
//! when a boot does. Run it with `--ignored` the way `tests/run-all.sh` runs the boot tests.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use vmmdev_e2e::artifacts::{Artifacts, device_test_or_skip};
use vmmdev_e2e::backend::BootSpec;
use vmmdev_e2e::expect::Expectations;
use vmmdev_e2e::host_agent::control_socket_path;
use vmmdev_e2e::host_side;
use vmmdev_e2e::qemu::QemuTcg;
use vmmdev_e2e::runner::{RunOptions, boot_with_agent};

/// The steps of every boot: the agent's round trip, then the loop.
const STEPS: &[&str] = &["host-agent", "clip-rtt"];

/// How long the server may take to create its socket, and to exit once the VM is gone.
const SERVER_WAIT: Duration = Duration::from_secs(30);

/// The loops, with the two round counts each is booted with.
const LOOPS: &[(&str, u32, u32)] = &[
    ("h2g-1k", 2, 12),
    ("g2h-1k", 2, 12),
    ("h2g-1m", 1, 4),
    ("g2h-1m", 1, 4),
];

/// The counts of the server's last `client disconnected:` report: `messages=N name=N ...`.
fn message_counts(server_log: &Path) -> BTreeMap<String, u64> {
    let log = std::fs::read_to_string(server_log)
        .unwrap_or_else(|error| panic!("reading {}: {error}", server_log.display()));
    let report = log
        .lines()
        .rev()
        .find_map(|line| {
            line.split_once("client disconnected: ")
                .map(|(_, rest)| rest)
        })
        .unwrap_or_else(|| panic!("no disconnect report in {}", server_log.display()));
    report
        .split_whitespace()
        .filter_map(|field| {
            let (name, value) = field.split_once('=')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// A `vmmdev-vfio-user --once` this test starts itself, so that it can let the server write its
/// disconnect report and exit on its own (the boot runner kills the servers it starts when the VM ends).
struct OnceServer {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
}

impl OnceServer {
    fn start(server: &Path, dir: &Path, control_socket: &Path) -> Self {
        static STARTED: AtomicU32 = AtomicU32::new(0);
        let socket = std::env::temp_dir().join(format!(
            "vmmdev-clip-{}-{}.sock",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&socket);
        let log = dir.join("once-server.log");
        let file = File::create(&log).unwrap();
        let child = Command::new(server)
            .arg("--socket")
            .arg(&socket)
            .arg("--once")
            .arg("--control")
            .arg(control_socket)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|error| panic!("starting {}: {error}", server.display()));
        let deadline = Instant::now() + SERVER_WAIT;
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "the server did not create {}",
                socket.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, socket, log }
    }

    /// QEMU's `-device` argument for the server's socket.
    fn device_argument(&self) -> String {
        format!(
            r#"{{"driver":"vfio-user-pci","socket":{{"path":"{}","type":"unix"}}}}"#,
            self.socket.display()
        )
    }

    /// Waits for the server to exit after its client went away, and returns its message counts.
    fn finish(mut self) -> BTreeMap<String, u64> {
        let deadline = Instant::now() + SERVER_WAIT;
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "the server did not exit after the VM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        message_counts(&self.log)
    }
}

impl Drop for OnceServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Boots the `clip-rtt` loop `name` with `rounds` rounds and returns the server's counts and the step's
/// notes.
fn boot_loop(
    artifacts: &Artifacts,
    server: &Path,
    dir: &Path,
    name: &str,
    rounds: u32,
) -> (BTreeMap<String, u64>, Vec<String>) {
    std::fs::create_dir_all(dir).unwrap();
    let control_socket = control_socket_path(dir);
    let once = OnceServer::start(server, dir, &control_socket);
    let backend = QemuTcg::new(&artifacts.qemu)
        .with_extra_args(["-device".to_owned(), once.device_argument()]);
    let expected = Expectations::new().pass(STEPS);
    let mut spec = BootSpec::test(&artifacts.kernel, &artifacts.initrd, &expected.step_names());
    spec.cmdline.push_str(&format!(
        " vmmdev.clip_rtt={name} vmmdev.clip_rounds={rounds}"
    ));
    let (run, _) = boot_with_agent(
        host_side::agent(),
        &backend,
        &spec,
        dir,
        &RunOptions::default(),
    )
    .unwrap();
    if let Err(mismatch) = run.verify(&expected) {
        panic!("{mismatch}");
    }
    let notes = run
        .report
        .step("clip-rtt")
        .map(|step| step.notes.clone())
        .unwrap_or_default();
    (once.finish(), notes)
}

#[test]
#[ignore = "a measurement of eight boots (several minutes under TCG): run with --ignored"]
fn clipboard_round_trips_cost_this_many_vfio_user_messages() {
    let test = "clipboard_round_trips_cost_this_many_vfio_user_messages";
    let Some(setup) = device_test_or_skip(test, Path::new(env!("CARGO_TARGET_TMPDIR"))) else {
        return;
    };
    let (artifacts, server, dir) = (setup.artifacts, setup.server, setup.dir);
    println!("| loop | rounds | messages per round | by kind, per round | guest notes |");
    println!("|---|---|---|---|---|");
    for &(name, few, many) in LOOPS {
        let (base, _) = boot_loop(
            &artifacts,
            &server,
            &dir.join(format!("{name}-{few}")),
            name,
            few,
        );
        let (more, notes) = boot_loop(
            &artifacts,
            &server,
            &dir.join(format!("{name}-{many}")),
            name,
            many,
        );
        let rounds = f64::from(many - few);
        let per_round = |key: &str| {
            let after = more.get(key).copied().unwrap_or(0) as f64;
            let before = base.get(key).copied().unwrap_or(0) as f64;
            (after - before) / rounds
        };
        let kinds: Vec<String> = more
            .keys()
            .filter(|key| key.as_str() != "messages")
            .map(|key| format!("{key} {:.1}", per_round(key)))
            .filter(|text| !text.ends_with(" 0.0"))
            .collect();
        println!(
            "| {name} | {few} / {many} | {:.1} | {} | {} |",
            per_round("messages"),
            kinds.join(", "),
            notes.join("; ")
        );
    }
}
