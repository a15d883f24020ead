//! What the device binaries do the same way around their work: parse the command line, set up logging,
//! map failures to an exit status and one line on standard error.
//!
//! Exit statuses: 2 for bad arguments (the user's input, one line), 1 when the program cannot run.

use std::fs::File;
use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;

use crate::HostSetupError;

/// A failure that ends the program, with its exit status.
#[derive(Debug)]
pub struct Exit {
    status: u8,
    message: String,
}

impl Exit {
    /// Bad arguments: exit status 2.
    pub fn usage(message: impl Into<String>) -> Self {
        Exit {
            status: 2,
            message: message.into(),
        }
    }

    /// The program could not run: exit status 1.
    pub fn failure(message: impl Into<String>) -> Self {
        Exit {
            status: 1,
            message: message.into(),
        }
    }

    /// A failure to set up the host services: a `--plugin` that cannot be loaded is the user's
    /// argument, anything else a failure.
    pub fn from_setup(error: HostSetupError) -> Self {
        let message = error_chain(&error);
        match error {
            HostSetupError::Plugin { .. } => Exit::usage(message),
            _ => Exit::failure(message),
        }
    }
}

/// Ends `program`: `Ok(status)` exits with it; a failure prints `PROGRAM: error: MESSAGE` on standard
/// error (and in the log unless it was a usage error) and exits with its status.
pub fn finish(program: &str, result: Result<u8, Exit>) -> ExitCode {
    match result {
        Ok(status) => ExitCode::from(status),
        Err(exit) => {
            eprintln!("{program}: error: {}", exit.message);
            if exit.status != 2 {
                log::error!("{}", exit.message);
            }
            ExitCode::from(exit.status)
        }
    }
}

/// Parses the command line; `--help` and `--version` print and exit 0 here.
pub fn parse_arguments<C: Parser>() -> Result<C, Exit> {
    C::try_parse().map_err(|error| match error.kind() {
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

/// An error and its sources, joined with ": ".
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// Logs to standard error, or appended to `log_file` (`--log-file`); filtered by `RUST_LOG`, default
/// "info".
pub fn init_logging(log_file: Option<&Path>) -> Result<(), Exit> {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if let Some(path) = log_file {
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

    #[test]
    fn first_line_of_nothing_says_invalid_arguments() {
        assert_eq!(first_line(""), "invalid arguments");
    }

    #[test]
    fn error_chain_joins_sources() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);

        let error = Outer(std::io::Error::other("inner"));

        assert_eq!(error_chain(&error), "outer: inner");
    }
}
