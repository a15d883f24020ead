//! One VM run from start to clean-up: launch through a [`Backend`], capture the serial console to a file
//! while parsing the guest's report, enforce a time limit, then end every process of the run.
//!
//! A run ends when the VM process exits by itself (the guest powered off), when the time limit passes, or
//! when the guest reported `@@DONE` but the VM did not exit within a grace period. In every case the VM's
//! and the helpers' process groups are killed before [`boot`] returns. Runs in one test process are
//! serialized: the machines have two cores, and parallel TCG guests would only distort the timings.
//! [`boot_with_agent`] is the same run with the [host agent](crate::host_agent) serving the guest's requests.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdout, ExitStatus};
use std::sync::Mutex;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::backend::{Backend, BootSpec, LaunchError, RunDir};
use crate::console::{ConsoleEvent, ConsoleParser, GuestReport};
use crate::host_agent::{HostAgent, Served, control_socket_path};
use crate::process::ProcessError;

/// Console lines longer than this are cut (the rest of the line still goes to the serial log).
const MAX_LINE_BYTES: usize = 16 * 1024;
/// How often the runner looks at the processes while the console is quiet.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How long the VM may take to exit after a helper ended before the helper's exit counts as a failure.
const HELPER_EXIT_GRACE: Duration = Duration::from_secs(1);
/// How long console output still buffered in the pipe may take to arrive after the VM exited.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);

/// One VM at a time per test process.
static BOOT_LOCK: Mutex<()> = Mutex::new(());

/// Errors that prevent a run from happening at all (a run that happens but fails is a [`BootRun`]).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The run directory could not be prepared.
    #[error("cannot prepare the run directory {path}")]
    RunDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The backend could not start the VM.
    #[error("the {backend} backend could not start the VM")]
    Launch {
        /// The backend's name.
        backend: String,
        /// Why.
        #[source]
        source: LaunchError,
    },
    /// Watching or ending a process failed.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// The console reader thread failed.
    #[error("reading the serial console into {path} failed")]
    Serial {
        /// The serial log.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Limits of a run.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// The whole run, from the VM's start to `@@DONE`.
    pub timeout: Duration,
    /// How long the VM may take to exit after `@@DONE`.
    pub exit_grace: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(180),
            exit_grace: Duration::from_secs(15),
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// The VM process exited by itself.
    Exited(ExitStatus),
    /// The time limit passed before the VM exited; everything was killed.
    TimedOut(Duration),
    /// The guest reported `@@DONE` but the VM did not exit within the grace period; it was killed.
    NoExitAfterDone(Duration),
}

/// When things happened, counted from the VM process's start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BootTimings {
    /// The first console line (firmware or kernel).
    pub first_output: Option<Duration>,
    /// The `@@INIT` line: `/init` runs.
    pub init: Option<Duration>,
    /// The first `@@STEP` line.
    pub first_step: Option<Duration>,
    /// The `@@DONE` line.
    pub done: Option<Duration>,
    /// The end of the run (VM exit, or kill).
    pub total: Duration,
    /// The guest's own uptime when `/init` started, in seconds.
    pub guest_uptime_at_init: Option<f64>,
}

impl std::fmt::Display for BootTimings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show =
            |d: Option<Duration>| d.map_or("-".to_owned(), |d| format!("{:.2} s", d.as_secs_f64()));
        write!(
            f,
            "start → first output {}, → /init {} (guest uptime {}), → first step {}, → done {}, total {:.2} s",
            show(self.first_output),
            show(self.init),
            self.guest_uptime_at_init
                .map_or("-".to_owned(), |u| format!("{u:.2} s")),
            show(self.first_step),
            show(self.done),
            self.total.as_secs_f64()
        )
    }
}

/// A helper process (the device server) that ended while the VM was still running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelperExit {
    /// What the helper is.
    pub name: String,
    /// How it ended.
    pub status: ExitStatus,
    /// When, counted from the VM's start.
    pub at: Duration,
}

/// The result of one run: what the guest reported, how the run ended, and where its files are.
#[derive(Debug, Clone)]
pub struct BootRun {
    /// The backend's name.
    pub backend: String,
    /// The guest's report.
    pub report: GuestReport,
    /// How the run ended.
    pub end: RunEnd,
    /// When things happened.
    pub timings: BootTimings,
    /// Helpers that ended while the VM was running.
    pub helper_exits: Vec<HelperExit>,
    /// The run's files (serial log, server log, command line).
    pub dir: RunDir,
    /// The VM process's id, which was also its process group id (ended by the time [`boot`] returns).
    pub vm_pid: u32,
}

/// Boots `spec` with `backend`, keeping the run's files in `dir` (created if needed).
pub fn boot(
    backend: &dyn Backend,
    spec: &BootSpec,
    dir: &Path,
    options: &RunOptions,
) -> Result<BootRun, RunError> {
    let _serialized = BOOT_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let run_dir = RunDir::new(dir);
    prepare_dir(&run_dir)?;
    let serial_path = run_dir.serial_log();
    let serial_log = File::create(&serial_path).map_err(|source| RunError::Serial {
        path: serial_path.clone(),
        source,
    })?;

    log::info!("booting with {} in {}", backend.name(), dir.display());
    let mut launched = backend
        .launch(spec, &run_dir)
        .map_err(|source| RunError::Launch {
            backend: backend.name().to_owned(),
            source,
        })?;
    let started = launched.started;
    let vm_pid = launched.vm.id();
    let (lines, reader) = spawn_serial_reader(launched.serial, serial_log, started);

    let mut parser = ConsoleParser::new();
    let mut helper_exits = Vec::new();
    let mut exit_deadline: Option<Instant> = None;
    let mut serial_open = true;
    let deadline = started + options.timeout;
    let end = loop {
        if serial_open {
            match lines.recv_timeout(POLL_INTERVAL) {
                Ok((at, line)) => {
                    if parser.feed_line(&line, at) == ConsoleEvent::Done {
                        exit_deadline.get_or_insert_with(|| Instant::now() + options.exit_grace);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => serial_open = false,
            }
        } else {
            thread::sleep(POLL_INTERVAL);
        }
        if let Some(status) = launched.vm.try_wait()? {
            drain(&lines, &mut parser);
            break RunEnd::Exited(status);
        }
        for helper in &mut launched.helpers {
            if helper_exits
                .iter()
                .any(|e: &HelperExit| e.name == helper.name())
            {
                continue;
            }
            let Some(status) = helper.try_wait()? else {
                continue;
            };
            // A server whose client is shutting down may end first; only an exit the VM does not follow
            // promptly is the server's own failure.
            if launched.vm.wait_timeout(HELPER_EXIT_GRACE)?.is_none() {
                log::warn!(
                    "{} exited ({status}) while the VM was running",
                    helper.name()
                );
                helper_exits.push(HelperExit {
                    name: helper.name().to_owned(),
                    status,
                    at: started.elapsed(),
                });
            }
        }
        let now = Instant::now();
        match exit_deadline {
            Some(limit) if now >= limit => break RunEnd::NoExitAfterDone(options.exit_grace),
            None if now >= deadline => break RunEnd::TimedOut(options.timeout),
            _ => {}
        }
    };
    let total = started.elapsed();

    launched.vm.kill_group()?;
    for helper in &mut launched.helpers {
        helper.kill_group()?;
    }
    drain(&lines, &mut parser);
    let read_result = reader
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the reader thread panicked")));
    if let Some(socket) = &launched.socket {
        // The server is gone; its socket file is ours to remove.
        let _ = std::fs::remove_file(socket);
    }
    read_result.map_err(|source| RunError::Serial {
        path: serial_path,
        source,
    })?;

    let report = parser.finish();
    let timings = BootTimings {
        first_output: report.first_output_at,
        init: report.init.as_ref().map(|init| init.at),
        first_step: report.steps.first().map(|step| step.at),
        done: report.done.map(|done| done.at),
        total,
        guest_uptime_at_init: report.init.as_ref().and_then(|init| init.guest_uptime),
    };
    log::info!("{} run ended: {end:?}; {timings}", backend.name());
    Ok(BootRun {
        backend: backend.name().to_owned(),
        report,
        end,
        timings,
        helper_exits,
        dir: run_dir,
        vm_pid,
    })
}

/// [`boot`] while `agent` answers the guest's `host_do` requests on the run's control socket
/// ([`control_socket_path`] of `dir`, which the device must be given with `--control`).
///
/// The agent is stopped once the run has ended, whether or not it ended well; the run's summary and what
/// the agent served are printed, so a failing test's output shows both.
pub fn boot_with_agent(
    agent: HostAgent,
    backend: &dyn Backend,
    spec: &BootSpec,
    dir: &Path,
    options: &RunOptions,
) -> Result<(BootRun, Served), RunError> {
    let running = agent.start(control_socket_path(dir), dir.to_owned());
    let run = boot(backend, spec, dir, options);
    let served = running.stop();
    if let Ok(run) = &run {
        println!("{}", run.summary());
    }
    println!("{served}");
    Ok((run?, served))
}

/// Creates the run directory and removes the files of an earlier run in it.
fn prepare_dir(dir: &RunDir) -> Result<(), RunError> {
    let error = |source| RunError::RunDir {
        path: dir.path().to_owned(),
        source,
    };
    std::fs::create_dir_all(dir.path()).map_err(error)?;
    for old in [
        dir.serial_log(),
        dir.server_log(),
        dir.command_file(),
        dir.vm_stderr_log(),
    ] {
        match std::fs::remove_file(&old) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(error(e)),
        }
    }
    Ok(())
}

/// Feeds whatever console lines are still on their way, for at most [`DRAIN_LIMIT`].
fn drain(lines: &Receiver<(Duration, String)>, parser: &mut ConsoleParser) {
    let limit = Instant::now() + DRAIN_LIMIT;
    while let Some(left) = limit.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok((at, line)) => {
                parser.feed_line(&line, at);
            }
            Err(_) => return,
        }
    }
}

/// Copies the console to `log` and sends each line, stamped with its arrival time, to the runner.
fn spawn_serial_reader(
    serial: ChildStdout,
    log: File,
    started: Instant,
) -> (Receiver<(Duration, String)>, JoinHandle<io::Result<()>>) {
    let (sender, receiver) = mpsc::channel();
    let reader = thread::spawn(move || copy_lines(serial, log, started, &sender));
    (receiver, reader)
}

fn copy_lines(
    mut serial: impl Read,
    mut log: impl Write,
    started: Instant,
    lines: &Sender<(Duration, String)>,
) -> io::Result<()> {
    let mut chunk = [0u8; 4096];
    let mut line = Vec::new();
    let send = |line: &mut Vec<u8>| {
        let text = String::from_utf8_lossy(line).into_owned();
        line.clear();
        // The runner may have stopped listening (run over); the log still gets everything.
        let _ = lines.send((started.elapsed(), text));
    };
    loop {
        let count = match serial.read(&mut chunk) {
            Ok(0) => break,
            Ok(count) => count,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let data = chunk.get(..count).unwrap_or_default();
        log.write_all(data)?;
        for &byte in data {
            if byte == b'\n' {
                send(&mut line);
            } else if line.len() < MAX_LINE_BYTES {
                line.push(byte);
            }
        }
    }
    if !line.is_empty() {
        send(&mut line);
    }
    log.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(input: &[u8]) -> (Vec<String>, Vec<u8>) {
        let (sender, receiver) = mpsc::channel();
        let mut log = Vec::new();
        copy_lines(input, &mut log, Instant::now(), &sender).unwrap();
        drop(sender);
        (receiver.iter().map(|(_, line)| line).collect(), log)
    }

    #[test]
    fn console_is_split_into_lines_and_logged_verbatim() {
        let input = b"first\r\nsecond\nunterminated";
        let (lines, log) = lines_of(input);
        assert_eq!(lines, ["first\r", "second", "unterminated"]);
        assert_eq!(log, input);
    }

    #[test]
    fn overlong_line_is_cut_but_logged_whole() {
        let mut input = vec![b'x'; MAX_LINE_BYTES + 100];
        input.extend_from_slice(b"\nnext\n");
        let (lines, log) = lines_of(&input);
        assert_eq!(lines[0].len(), MAX_LINE_BYTES);
        assert_eq!(lines[1], "next");
        assert_eq!(log.len(), input.len());
    }

    #[test]
    fn invalid_utf8_on_the_console_is_replaced_not_fatal() {
        let (lines, _) = lines_of(b"a\xffb\n");
        assert_eq!(lines, ["a\u{fffd}b"]);
    }
}
