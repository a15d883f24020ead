//! `vmmdev-vfio-user`: the VMMDev device and its HGCM services as a vfio-user server process.
//!
//! Exit status: 0 after a clean shutdown (SIGTERM/SIGINT, or the end of the one VM of `--once`),
//! 2 for bad arguments (one line on standard error), 1 when the server cannot run.

mod cli;
mod signals;

use std::fs::File;
use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use vmmdev_host_options::HostSetupError;
use vmmdev_vfio_user::{VfioUserServer, error_chain};

use cli::Cli;

const PROGRAM: &str = "vmmdev-vfio-user";

/// A failure that ends the program, with its exit status.
struct Exit {
    status: u8,
    message: String,
}

impl Exit {
    fn usage(message: impl Into<String>) -> Self {
        Exit {
            status: 2,
            message: message.into(),
        }
    }

    fn failure(message: impl Into<String>) -> Self {
        Exit {
            status: 1,
            message: message.into(),
        }
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(exit) => {
            eprintln!("{PROGRAM}: error: {}", exit.message);
            if exit.status != 2 {
                log::error!("{}", exit.message);
            }
            ExitCode::from(exit.status)
        }
    }
}

fn run() -> Result<(), Exit> {
    let cli = parse_arguments()?;
    if let Some(message) = cli.host.unsupported() {
        return Err(Exit::usage(message));
    }
    signals::block_termination_signals()
        .map_err(|e| Exit::failure(format!("cannot block termination signals: {e}")))?;
    init_logging(&cli)?;

    let hgcm = cli.host.build_hgcm().map_err(|error| {
        let message = error_chain(&error);
        match error {
            HostSetupError::Plugin { .. } => Exit::usage(message),
            _ => Exit::failure(message),
        }
    })?;
    let control = cli
        .host
        .start_control(&hgcm)
        .map_err(|e| Exit::failure(error_chain(&e)))?;

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
    drop(control);
    hgcm.shutdown();
    served.map_err(|e| Exit::failure(error_chain(&e)))
}

/// Parses the command line; `--help` and `--version` print and exit 0 here.
fn parse_arguments() -> Result<Cli, Exit> {
    Cli::try_parse().map_err(|error| match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = error.print();
            std::process::exit(0);
        }
        _ => Exit::usage(first_line(&error.render().to_string())),
    })
}

/// The first non-empty line of clap's message, without its "error: " prefix; a line that ends
/// with ':' (clap's list of missing arguments) is joined with the next one.
fn first_line(rendered: &str) -> String {
    let mut lines = rendered
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty());
    let first = lines.next().unwrap_or("invalid arguments");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    match (first.ends_with(':'), lines.next()) {
        (true, Some(next)) => format!("{first} {next}"),
        _ => first.to_owned(),
    }
}

fn init_logging(cli: &Cli) -> Result<(), Exit> {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if let Some(path) = &cli.log_file {
        let file = File::options()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Exit::usage(format!("--log-file {}: {e}", path.display())))?;
        builder.target(env_logger::Target::Pipe(Box::new(file)));
    }
    builder.init();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_line_drops_clap_prefix_and_usage() {
        let rendered =
            "error: unexpected argument '--x' found\n\nUsage: vmmdev-vfio-user --socket <PATH>\n";
        assert_eq!(first_line(rendered), "unexpected argument '--x' found");
    }

    #[test]
    fn first_line_names_the_missing_argument() {
        let rendered = "error: the following required arguments were not provided:\n  --socket <PATH>\n\nUsage: x\n";
        assert_eq!(
            first_line(rendered),
            "the following required arguments were not provided: --socket <PATH>"
        );
    }
}
