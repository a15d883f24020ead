//! `vmmdev-vfio-user`: the VMMDev device and its HGCM services as a vfio-user server process.
//!
//! Exit status: 0 after a clean shutdown (SIGTERM/SIGINT, or the end of the one VM of `--once`),
//! 2 for bad arguments (one line on standard error), 1 when the server cannot run.

mod cli;
mod signals;

use std::process::ExitCode;

use vmmdev_host_options::program::{self, Exit, error_chain};
use vmmdev_vfio_user::VfioUserServer;

use cli::Cli;

const PROGRAM: &str = "vmmdev-vfio-user";

fn main() -> ExitCode {
    program::finish(PROGRAM, run().map(|()| 0))
}

fn run() -> Result<(), Exit> {
    let cli: Cli = program::parse_arguments()?;
    if let Some(message) = cli.host.unsupported() {
        return Err(Exit::usage(message));
    }
    signals::block_termination_signals()
        .map_err(|e| Exit::failure(format!("cannot block termination signals: {e}")))?;
    program::init_logging(cli.log_file.as_deref())?;

    let hgcm = cli.host.build_hgcm().map_err(Exit::from_setup)?;
    let control = cli
        .host
        .start_control(&hgcm)
        .map_err(|e| Exit::failure(error_chain(&e)))?;
    let clipboard_sync = cli
        .host
        .start_clipboard_sync(&hgcm)
        .map_err(Exit::from_setup)?;

    let server = VfioUserServer::new(&cli.socket, hgcm.clone(), Default::default())
        .map_err(|e| Exit::failure(error_chain(&e)))?;
    let stop = server.stop_handle();
    signals::spawn_waiter(move |signal| {
        log::info!("signal {signal} received; shutting down");
        stop.stop();
    })
    .map_err(|e| Exit::failure(format!("cannot start the signal thread: {e}")))?;

    let served = if cli.once {
        server.serve_one().map(drop)
    } else {
        server.run()
    };
    log::info!(
        "total: {}, irq signals={} unmasks={}",
        server.message_counts(),
        server.interrupt_counts().signals,
        server.interrupt_counts().unmasks
    );
    drop(server);
    drop(clipboard_sync);
    drop(control);
    hgcm.shutdown();
    served.map_err(|e| Exit::failure(error_chain(&e)))
}
