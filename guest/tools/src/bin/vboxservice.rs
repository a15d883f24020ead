//! `vboxservice`: the guest service daemon (see [`vmmdev_guest_tools::service`]).
//!
//! Exit statuses: 0 after a clean stop (SIGTERM/SIGINT), 1 when the daemon cannot run (no
//! driver, no subservice could start), 2 for a bad command line. Errors before the daemon
//! detaches are one line on stderr: `vboxservice: error: <message>`.

use std::process::ExitCode;

use vmmdev_guest_ioctl::Device;
use vmmdev_guest_tools::service::daemon::{self, PidFile};
use vmmdev_guest_tools::service::logger;
use vmmdev_guest_tools::service::mounts::SystemMounter;
use vmmdev_guest_tools::service::options::{Options, Parsed};

fn main() -> ExitCode {
    let options = match Options::parse_args(std::env::args_os()) {
        Parsed::Run(options) => options,
        Parsed::Print(text) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Parsed::Usage(line) => {
            eprintln!("vboxservice: error: {line}");
            return ExitCode::from(2);
        }
    };
    logger::init(options.verbose);
    // Open the driver first, so that a missing driver is reported on the terminal.
    let device = match Device::open_path(&options.device) {
        Ok(device) => device,
        Err(error) => return fail(&error),
    };
    if !options.foreground {
        if let Err(error) = daemon::daemonize() {
            return fail(&error);
        }
    }
    if let Err(error) = daemon::block_stop_signals() {
        return fail(&error);
    }
    let _pidfile = match options.pidfile.as_deref().map(PidFile::create).transpose() {
        Ok(pidfile) => pidfile,
        Err(error) => return fail(&error),
    };
    log::info!("vboxservice {} started", env!("CARGO_PKG_VERSION"));
    match daemon::run(&device, &options, SystemMounter) {
        Ok(()) => {
            log::info!("vboxservice stopped");
            ExitCode::SUCCESS
        }
        Err(error) => fail(&error),
    }
}

/// Reports `error` on one line (and in the log) and returns status 1.
fn fail(error: &dyn std::error::Error) -> ExitCode {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    eprintln!("vboxservice: error: {message}");
    ExitCode::from(1)
}
