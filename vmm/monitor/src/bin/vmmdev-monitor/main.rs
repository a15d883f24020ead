//! `vmmdev-monitor`: boots a Linux guest on KVM with the VMMDev device and its HGCM services in-process.
//!
//! At the end of the run it logs the exit counters, its own memory use and the cancel audit
//! (`vmmdev_monitor::audit`); `--request-log` writes the device's request log and the audit's summary.
//!
//! Exit status: 0 when the guest rebooted or powered off, 3 when the guest crashed (triple fault, an
//! instruction KVM could not emulate), 1 when the monitor failed, 2 for bad arguments (one line on
//! standard error), 128 + n after signal n (SIGTERM, SIGINT).

mod cli;
mod terminal;

use std::fs::File;
use std::io::Write;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use vmmdev_device::VmmDev;
use vmmdev_host_options::program::{self, Exit, error_chain};
use vmmdev_monitor::audit::AuditReport;
use vmmdev_monitor::exits::ExitCounters;
use vmmdev_monitor::loader::BootSource;
use vmmdev_monitor::memory;
use vmmdev_monitor::vm::{StopHandle, Vm, VmConfig, VmExit};
use vmmdev_protocol::vmmdev::RequestType;

use cli::Cli;

const PROGRAM: &str = "vmmdev-monitor";
/// Exit status when the guest crashed.
const EXIT_GUEST_CRASHED: u8 = 3;

fn main() -> ExitCode {
    let started = Instant::now();
    program::finish(PROGRAM, run(started))
}

fn run(started: Instant) -> Result<u8, Exit> {
    let cli: Cli = program::parse_arguments()?;
    if let Some(message) = cli.host.unsupported() {
        return Err(Exit::usage(message));
    }
    program::init_logging(cli.log_file.as_deref())?;
    signals::block()
        .map_err(|e| Exit::failure(format!("cannot block termination signals: {e}")))?;

    let hgcm = cli.host.build_hgcm().map_err(Exit::from_setup)?;
    let control = cli
        .host
        .start_control(&hgcm)
        .map_err(|e| Exit::failure(error_chain(&e)))?;
    let clipboard_sync = cli
        .host
        .start_clipboard_sync(&hgcm)
        .map_err(Exit::from_setup)?;
    let stop: Arc<OnceLock<StopHandle>> = Arc::new(OnceLock::new());
    let terminal = terminal::RawTerminal::enter_if_tty();
    let console_input = terminal::EscapeReader::new(std::io::stdin(), {
        let stop = Arc::clone(&stop);
        move || {
            if let Some(handle) = stop.get() {
                handle.stop();
            }
        }
    });
    let config = VmConfig {
        memory_mib: cli.memory,
        vcpus: cli.vcpus,
        boot: BootSource {
            kernel: cli.kernel.clone(),
            initrd: cli.initrd.clone(),
            cmdline: cli.kernel_cmdline(),
        },
        intx: cli.intx.into(),
        syscall_bridge: cli.syscall_bridge,
        console_output: Box::new(std::io::stdout()),
        console_input: Some(Box::new(console_input)),
    };
    let mut vm = Vm::new(config, hgcm.clone()).map_err(|e| Exit::failure(error_chain(&e)))?;
    let _ = stop.set(vm.stop_handle());
    let counters = vm.counters();
    signals::spawn_waiter(vm.stop_handle(), Arc::clone(&counters))
        .map_err(|e| Exit::failure(format!("cannot start the signal thread: {e}")))?;
    spawn_guest_state_logger(vm.device(), started);

    let setup = started.elapsed();
    let setup_cpu = process_cpu_time();
    log::info!(
        "VM ready after {:.1} ms ({:.1} ms CPU); {} vCPU(s), {} MiB",
        setup.as_secs_f64() * 1e3,
        setup_cpu * 1e3,
        cli.vcpus,
        cli.memory
    );
    let run = vm.run();
    drop(terminal);
    let (exit, times) = run.map_err(|e| Exit::failure(error_chain(&e)))?;
    if let Some(first) = times.to_first_entry {
        log::info!(
            "monitor start to first guest instruction: {:.1} ms ({:.1} ms CPU to VM ready)",
            (setup + first).as_secs_f64() * 1e3,
            setup_cpu * 1e3
        );
    }
    report(&vm, &counters, started);
    let audit = vm.cancel_audit();
    log::info!("{audit}");
    if let Some(path) = &cli.request_log {
        write_request_log(vm.device(), &audit, path)
            .map_err(|e| Exit::failure(format!("--request-log {}: {e}", path.display())))?;
    }
    drop(vm);
    drop(clipboard_sync);
    drop(control);
    hgcm.shutdown();
    Ok(match exit {
        VmExit::Reset | VmExit::Shutdown | VmExit::Stopped => 0,
        VmExit::TripleFault | VmExit::Crashed(_) => EXIT_GUEST_CRASHED,
    }
    .max(signals::received_status()))
}

/// CPU time of this process so far, in seconds.
fn process_cpu_time() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes one rusage structure into the pointer it is given.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return 0.0;
    }
    // SAFETY: getrusage succeeded, so the structure is initialised.
    let usage = unsafe { usage.assume_init() };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// This process's resident memory by kind, in KiB (from /proc/self/status).
#[derive(Debug, Default, PartialEq, Eq)]
struct ResidentMemory {
    /// Everything resident (`VmRSS`).
    total: u64,
    /// Anonymous memory: heap, stacks and guest RAM (`RssAnon`).
    anonymous: u64,
    /// Pages of mapped files: the binary, its libraries (`RssFile`).
    file: u64,
    /// Shared memory: the VMMDev RAM's memfd (`RssShmem`).
    shared: u64,
}

impl ResidentMemory {
    fn of_this_process() -> Self {
        std::fs::read_to_string("/proc/self/status")
            .map(|status| Self::parse(&status))
            .unwrap_or_default()
    }

    fn parse(status: &str) -> Self {
        let mut memory = ResidentMemory::default();
        for line in status.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let kib = value
                .split_whitespace()
                .next()
                .and_then(|number| number.parse::<u64>().ok())
                .unwrap_or(0);
            match key {
                "VmRSS" => memory.total = kib,
                "RssAnon" => memory.anonymous = kib,
                "RssFile" => memory.file = kib,
                "RssShmem" => memory.shared = kib,
                _ => {}
            }
        }
        memory
    }
}

/// The end-of-run summary: exits, CPU, memory.
fn report(vm: &Vm, counters: &ExitCounters, started: Instant) {
    let memory = ResidentMemory::of_this_process();
    let guest = memory::resident_bytes(vm.memory()) / 1024;
    log::info!(
        "run ended after {:.1} s ({:.1} s CPU); {}",
        started.elapsed().as_secs_f64(),
        process_cpu_time(),
        counters.snapshot()
    );
    log::info!(
        "memory: RSS {} KiB, of which guest RAM {guest} KiB; monitor without guest RAM {} KiB: heap and \
         stacks {} KiB, mapped files {} KiB, shared {} KiB",
        memory.total,
        memory.total.saturating_sub(guest),
        memory.anonymous.saturating_sub(guest),
        memory.file,
        memory.shared
    );
}

/// Logs what the guest's driver reports about itself, with the time since the monitor started.
fn spawn_guest_state_logger(device: &VmmDev, started: Instant) {
    let changes = device.subscribe();
    let spawned = std::thread::Builder::new()
        .name("guest-state".into())
        .spawn(move || {
            for change in changes {
                log::info!(
                    "guest at {:.2} s: {change:?}",
                    started.elapsed().as_secs_f64()
                );
            }
        });
    if let Err(error) = spawned {
        log::warn!("cannot start the guest state logger: {error}");
    }
}

/// One line per request: address, type (name and number), size, requestor, status; then the cancel
/// audit's summary as a `#` line.
fn write_request_log(
    device: &VmmDev,
    audit: &AuditReport,
    path: &std::path::Path,
) -> std::io::Result<()> {
    let mut file = std::io::BufWriter::new(File::create(path)?);
    for record in device.request_log() {
        let kind = RequestType::from(record.request_type);
        writeln!(
            file,
            "gpa={:#x} type={}({}) size={} requestor={:#x} status={}",
            record.gpa,
            kind.name().unwrap_or("UNKNOWN"),
            record.request_type,
            record.size,
            record.requestor,
            record.status
        )?;
    }
    writeln!(file, "# {audit}")?;
    file.flush()
}

mod signals {
    //! SIGTERM/SIGINT end the run; SIGUSR1 logs the exit counters. A dedicated thread waits for them
    //! with `sigwait`, after [`block`] blocked them in every thread.

    use std::io;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU8, Ordering};

    use vmmdev_monitor::exits::ExitCounters;
    use vmmdev_monitor::vm::StopHandle;

    const SIGNALS: [libc::c_int; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGUSR1];

    /// 128 + the termination signal received, or 0.
    static RECEIVED: AtomicU8 = AtomicU8::new(0);

    fn set() -> libc::sigset_t {
        // SAFETY: an all-zero sigset_t is a valid place for sigemptyset to initialise.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid sigset_t and the signal numbers are valid.
        unsafe {
            libc::sigemptyset(&mut set);
            for signal in SIGNALS {
                libc::sigaddset(&mut set, signal);
            }
        }
        set
    }

    /// Blocks the signals in the calling thread and every thread it starts later.
    pub fn block() -> io::Result<()> {
        let set = set();
        // SAFETY: `set` is initialised; a null old-set pointer is allowed.
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(())
    }

    /// The exit status a termination signal asks for, or 0.
    pub fn received_status() -> u8 {
        RECEIVED.load(Ordering::Acquire)
    }

    /// Starts the thread that handles the signals.
    pub fn spawn_waiter(stop: StopHandle, counters: Arc<ExitCounters>) -> io::Result<()> {
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let set = set();
                loop {
                    let mut signal: libc::c_int = 0;
                    // SAFETY: `set` is initialised and `signal` is a valid place for the result.
                    if unsafe { libc::sigwait(&set, &mut signal) } != 0 {
                        continue;
                    }
                    if signal == libc::SIGUSR1 {
                        log::info!("counters: {}", counters.snapshot());
                        continue;
                    }
                    log::info!("signal {signal} received; stopping the VM");
                    RECEIVED.store(128 + signal as u8, Ordering::Release);
                    stop.stop();
                }
            })
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_memory_is_read_by_kind_from_proc_status() {
        let status = "Name:\tvmmdev-monitor\nVmRSS:\t   82316 kB\nRssAnon:\t   73680 kB\n\
                      RssFile:\t    8632 kB\nRssShmem:\t       4 kB\nThreads:\t14\n";
        assert_eq!(
            ResidentMemory::parse(status),
            ResidentMemory {
                total: 82316,
                anonymous: 73680,
                file: 8632,
                shared: 4,
            }
        );
    }

    #[test]
    fn this_process_has_resident_memory() {
        let memory = ResidentMemory::of_this_process();
        assert!(
            memory.total > 0 && memory.anonymous > 0 && memory.file > 0,
            "{memory:?}"
        );
    }
}
