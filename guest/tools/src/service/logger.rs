//! The daemon's log: one line per record, written with a single `write` so that each record
//! stays one kernel log entry when standard error is `/dev/kmsg` (the daemon's log in the
//! background, where a minimal guest has no syslog), with the record's priority there.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use log::{Level, LevelFilter, Log, Metadata, Record};

/// Writes records to standard error as `vboxservice: <level>: <message>`.
#[derive(Debug)]
struct StderrLogger;

static LOGGER: StderrLogger = StderrLogger;

/// Whether standard error is the kernel log, whose records start with their priority.
static TO_KERNEL_LOG: AtomicBool = AtomicBool::new(false);

/// The kernel log priority of `level` (`<3>` error ... `<7>` debug).
fn kernel_priority(level: Level) -> &'static str {
    match level {
        Level::Error => "<3>",
        Level::Warn => "<4>",
        Level::Info => "<6>",
        Level::Debug | Level::Trace => "<7>",
    }
}

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            Level::Error => "error",
            Level::Warn => "warning",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        };
        let priority = if TO_KERNEL_LOG.load(Ordering::Relaxed) {
            kernel_priority(record.level())
        } else {
            ""
        };
        let line = format!("{priority}vboxservice: {level}: {}\n", record.args());
        // One write per record; a failed log write has nowhere to be reported.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// Marks standard error as the kernel log (`/dev/kmsg`), so records carry their priority.
pub fn to_kernel_log() {
    TO_KERNEL_LOG.store(true, Ordering::Relaxed);
}

/// Installs the logger: info and above, or everything down to debug with `verbose`.
pub fn init(verbose: bool) {
    let level = if verbose {
        LevelFilter::Debug
    } else {
        LevelFilter::Info
    };
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}
