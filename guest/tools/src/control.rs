//! `vboxcontrol`: the guest control command line, shaped like VirtualBox's `VBoxControl`.
//!
//! Scripts written for `VBoxControl guestproperty ...` keep working: the same commands and
//! options (the old single-dash spellings such as `-verbose` included), the same output lines
//! and the same exit codes: 0 on success, 1 on failure (a missing property included), 2 for a
//! usage error. Unless `--nologo` is given, a banner line and an empty line come first, as
//! VBoxControl prints its logo.
//!
//! | Command | Output |
//! |---|---|
//! | `guestproperty get <name> [--verbose]` | `Value: <value>` (with `--verbose` also `Timestamp: <ns> ns` and `Flags: <flags>`); `No value set!` and exit 1 when the property does not exist |
//! | `guestproperty set <name> [<value> [--flags <flags>]]` | nothing; without a value the property is deleted |
//! | `guestproperty delete\|unset <name>` | nothing |
//! | `guestproperty enumerate [--patterns <pattern>...]` | `Name: <name>, value: <value>, timestamp: <ns>, flags: <flags>` per property |
//! | `guestproperty wait <patterns> [--timestamp <ns>] [--timeout <ms>] [--fail-on-timeout]` | `Name: `, `Value: `, `Timestamp: <ns> ns`, `Flags: ` lines, or `Property <name> was deleted` |
//! | `clipboard get\|set\|watch\|bridge ...` | the shared clipboard ([`crate::clipboard`]) |
//! | `version`, `getversion`, `--version` | the project version |
//!
//! A wait that times out or is interrupted prints `The request timed out or was interrupted` on
//! stderr and exits 1, as VBoxControl does; with `--fail-on-timeout` it exits 2 instead, the
//! code `VBoxManage guestproperty wait --fail-on-timeout` uses, so scripts can tell a timeout
//! from a failure. Errors go to stderr as `vboxcontrol: error: <message>`. A failure the host
//! answered with a status reads as VBoxControl's, the status by name (`Failed to store the
//! property value, error VERR_PERMISSION_DENIED`); other failures are described in words.
//!
//! The program talks to the driver through `/dev/vboxuser` (any user may use it; VBoxControl
//! uses `/dev/vboxguest`, which needs root); `--device` selects another node.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use vmmdev_guest_ioctl::guest_props::{GuestPropClient, GuestPropError, PropertyFlags};
use vmmdev_guest_ioctl::{Device, GuestTransport};
use vmmdev_protocol::status::Status;

/// The program's exit codes (IPRT's `RTEXITCODE_*`, which VBoxControl returns).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// The command did what was asked.
    Success = 0,
    /// The command failed.
    Failure = 1,
    /// The command line was wrong, or a wait with `--fail-on-timeout` timed out.
    Syntax = 2,
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(status: ExitStatus) -> Self {
        Self::from(status as u8)
    }
}

/// The guest control command line.
#[derive(Debug, Parser)]
#[command(name = "vboxcontrol", disable_version_flag = true)]
pub struct Cli {
    /// Print the version and exit.
    #[arg(short = 'V', visible_short_alias = 'v', long)]
    pub version: bool,
    /// Do not print the banner.
    #[arg(long)]
    pub nologo: bool,
    /// The driver's device node.
    #[arg(long, value_name = "PATH", default_value = "/dev/vboxuser")]
    pub device: PathBuf,
    /// The command.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// A top-level command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read, write, list and wait for guest properties.
    #[command(name = "guestproperty", subcommand)]
    GuestProperty(PropertyCommand),
    /// Read and offer the shared clipboard, watch it, or bridge it to the guest desktop.
    #[command(subcommand)]
    Clipboard(crate::clipboard::ClipboardCommand),
    /// Print the version.
    #[command(visible_alias = "getversion")]
    Version,
}

/// A `guestproperty` command.
#[derive(Debug, Subcommand)]
pub enum PropertyCommand {
    /// Print a property's value.
    Get {
        /// The property name.
        name: String,
        /// Also print the timestamp and the flags.
        #[arg(long)]
        verbose: bool,
    },
    /// Set a property, or delete it when no value is given.
    Set(SetArgs),
    /// Delete a property.
    #[command(visible_alias = "unset")]
    Delete {
        /// The property name.
        name: String,
    },
    /// List properties.
    Enumerate {
        /// List only the properties matching one of these patterns (`*`, `?`, `|`).
        #[arg(long, num_args = 1.., value_name = "PATTERN")]
        patterns: Vec<String>,
    },
    /// Wait for a property matching PATTERNS to change.
    Wait(WaitArgs),
}

/// Arguments of `guestproperty set`.
#[derive(Debug, Args)]
pub struct SetArgs {
    /// The property name.
    pub name: String,
    /// The new value; without one the property is deleted.
    pub value: Option<String>,
    /// Flags: TRANSIENT, TRANSRESET, RDONLYGUEST, RDONLYHOST, READONLY, comma-separated.
    #[arg(long, requires = "value")]
    pub flags: Option<String>,
}

/// Arguments of `guestproperty wait`.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Names to wait for: `|`-separated patterns with `*` and `?`; "" matches all.
    pub patterns: String,
    /// Report the first change after the change with this timestamp (ns) instead of the next
    /// one from now on.
    #[arg(long, default_value_t = 0)]
    pub timestamp: u64,
    /// Give up after this many milliseconds.
    #[arg(long, value_name = "MS")]
    pub timeout: Option<u32>,
    /// Exit with 2 instead of 1 when the wait times out or is interrupted.
    #[arg(long)]
    pub fail_on_timeout: bool,
}

/// The options VBoxControl also accepts with a single dash.
const SINGLE_DASH_OPTIONS: &[&str] = &[
    "-verbose",
    "-flags",
    "-patterns",
    "-timeout",
    "-timestamp",
    "-nologo",
    "-version",
    "-help",
];

/// Rewrites VBoxControl's single-dash long options (`-verbose`) into their `--` form.
pub fn normalize_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    args.into_iter()
        .map(|arg| match arg.to_str() {
            Some(text) if SINGLE_DASH_OPTIONS.contains(&text) => OsString::from(format!("-{text}")),
            _ => arg,
        })
        .collect()
}

/// The banner VBoxControl-style tools print before the output.
pub fn logo() -> String {
    format!(
        "vmmdev-rs Guest Additions Command Line Management Interface Version {}\n\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// The version line.
pub fn version() -> String {
    format!("{}\n", env!("CARGO_PKG_VERSION"))
}

/// Runs a `guestproperty` command over `device`, writing the results to `out` and errors to
/// `err`.
pub fn guest_property<T: GuestTransport>(
    device: &Device<T>,
    command: &PropertyCommand,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> ExitStatus {
    let client = match GuestPropClient::connect(device) {
        Ok(client) => client,
        Err(error) => {
            return fail(
                err,
                &format!("Failed to connect to the guest property service: {error}"),
            );
        }
    };
    let status = match command {
        PropertyCommand::Get { name, verbose } => get(&client, name, *verbose, out, err),
        PropertyCommand::Set(args) => set(&client, args, err),
        PropertyCommand::Delete { name } => match client.delete(name) {
            Ok(()) => ExitStatus::Success,
            Err(error) => fail(err, &failure("Failed to delete the property value", &error)),
        },
        PropertyCommand::Enumerate { patterns } => enumerate(&client, patterns, out, err),
        PropertyCommand::Wait(args) => wait(&client, args, out, err),
    };
    if let Err(error) = client.disconnect() {
        log::warn!("disconnecting from the guest property service: {error}");
    }
    status
}

fn get<T: GuestTransport>(
    client: &GuestPropClient<'_, T>,
    name: &str,
    verbose: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> ExitStatus {
    match client.get(name) {
        Ok(Some(property)) => {
            let mut text = format!("Value: {}\n", property.value);
            if verbose {
                text.push_str(&format!(
                    "Timestamp: {} ns\nFlags: {}\n",
                    property.timestamp,
                    flags_text(property.flags)
                ));
            }
            print(out, err, &text)
        }
        Ok(None) => {
            print(out, err, "No value set!\n");
            ExitStatus::Failure
        }
        Err(GuestPropError::KeptGrowing { .. }) => {
            fail(err, "Temporarily unable to retrieve the property")
        }
        Err(error) => fail(
            err,
            &failure("Failed to retrieve the property value", &error),
        ),
    }
}

fn set<T: GuestTransport>(
    client: &GuestPropClient<'_, T>,
    args: &SetArgs,
    err: &mut dyn Write,
) -> ExitStatus {
    let outcome = match (&args.value, &args.flags) {
        (None, _) => client.delete(&args.name),
        (Some(value), None) => client.set_value(&args.name, value),
        (Some(value), Some(flags)) => match PropertyFlags::parse(flags) {
            Ok(flags) => client.set(&args.name, value, flags),
            Err(error) => {
                return fail(err, &format!("Failed to store the property value: {error}"));
            }
        },
    };
    match outcome {
        Ok(()) => ExitStatus::Success,
        Err(error) => fail(err, &failure("Failed to store the property value", &error)),
    }
}

fn enumerate<T: GuestTransport>(
    client: &GuestPropClient<'_, T>,
    patterns: &[String],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> ExitStatus {
    let patterns: Vec<&str> = patterns.iter().map(String::as_str).collect();
    match client.enumerate(&patterns) {
        Ok(properties) => {
            let mut text = String::new();
            for property in properties {
                text.push_str(&format!(
                    "Name: {}, value: {}, timestamp: {}, flags: {}\n",
                    property.name,
                    property.value,
                    property.timestamp,
                    flags_text(property.flags)
                ));
            }
            print(out, err, &text)
        }
        Err(error) => fail(
            err,
            &format!("Failed to enumerate the guest properties! Error: {error}"),
        ),
    }
}

fn wait<T: GuestTransport>(
    client: &GuestPropClient<'_, T>,
    args: &WaitArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> ExitStatus {
    let timeout = args
        .timeout
        .map(|milliseconds| Duration::from_millis(milliseconds.into()));
    match client.wait(&args.patterns, args.timestamp, timeout) {
        Ok(change) if change.deleted => {
            print(out, err, &format!("Property {} was deleted\n", change.name))
        }
        Ok(change) => print(
            out,
            err,
            &format!(
                "Name: {}\nValue: {}\nTimestamp: {} ns\nFlags: {}\n",
                change.name,
                change.value,
                change.timestamp,
                flags_text(change.flags)
            ),
        ),
        Err(GuestPropError::TimedOut { .. } | GuestPropError::Interrupted { .. }) => {
            fail(err, "The request timed out or was interrupted");
            if args.fail_on_timeout {
                ExitStatus::Syntax
            } else {
                ExitStatus::Failure
            }
        }
        Err(GuestPropError::KeptGrowing { .. }) => {
            fail(err, "Temporarily unable to get a notification")
        }
        Err(error) => fail(err, &failure("Failed to get a notification", &error)),
    }
}

/// `what` failed: with the host's status by name as VBoxControl prints it (IPRT's `%Rrc`), or
/// with the description of a failure the host gave no status for.
fn failure(what: &str, error: &GuestPropError) -> String {
    match error.host_status() {
        Some(status) => format!("{what}, error {}", status_name(status)),
        None => format!("{what}: {error}"),
    }
}

/// A status's `VERR_`/`VINF_` name, or IPRT's text for a code it has no name for.
fn status_name(status: Status) -> String {
    match status.name() {
        Some(name) => name.to_owned(),
        None => format!("Unknown Status {} ({:#x})", status.raw(), status.raw()),
    }
}

/// Flags in VirtualBox's text form.
fn flags_text(flags: PropertyFlags) -> String {
    flags
        .render()
        .map(|rendered| rendered.to_string())
        .unwrap_or_else(|| format!("{:#x}", flags.bits()))
}

/// Writes command output; a failed write (a closed pipe) is a failure of the command.
fn print(out: &mut dyn Write, err: &mut dyn Write, text: &str) -> ExitStatus {
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitStatus::Success,
        Err(error) => fail(err, &format!("writing the output: {error}")),
    }
}

/// Reports an error on `err` and returns [`ExitStatus::Failure`].
pub fn fail(err: &mut dyn Write, message: &str) -> ExitStatus {
    // Nothing is left to report a failure to report to.
    let _ = writeln!(err, "vboxcontrol: error: {message}");
    ExitStatus::Failure
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmmdev_protocol::services::guest_props::Function;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let args = std::iter::once("vboxcontrol")
            .chain(args.iter().copied())
            .map(OsString::from);
        Cli::try_parse_from(normalize_args(args))
    }

    #[test]
    fn single_dash_long_options_are_accepted() {
        let cli = parse(&["-nologo", "guestproperty", "get", "/A", "-verbose"]).unwrap();
        assert!(cli.nologo);
        assert!(matches!(
            cli.command,
            Some(Command::GuestProperty(PropertyCommand::Get {
                verbose: true,
                ..
            }))
        ));
    }

    #[test]
    fn unset_is_delete() {
        let cli = parse(&["guestproperty", "unset", "/A"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::GuestProperty(PropertyCommand::Delete { name })) if name == "/A"
        ));
    }

    #[test]
    fn set_without_a_value_parses_as_a_deletion() {
        let cli = parse(&["guestproperty", "set", "/A"]).unwrap();
        let Some(Command::GuestProperty(PropertyCommand::Set(args))) = cli.command else {
            panic!("not a set: {cli:?}");
        };
        assert_eq!(args.value, None);
    }

    #[test]
    fn flags_without_a_value_are_a_usage_error() {
        let err = parse(&["guestproperty", "set", "/A", "--flags", "TRANSIENT"]).unwrap_err();
        assert_eq!(err.exit_code(), ExitStatus::Syntax as i32);
    }

    #[test]
    fn enumerate_takes_every_following_pattern() {
        let cli = parse(&["guestproperty", "enumerate", "-patterns", "/A/*", "/B"]).unwrap();
        let Some(Command::GuestProperty(PropertyCommand::Enumerate { patterns })) = cli.command
        else {
            panic!("not an enumerate: {cli:?}");
        };
        assert_eq!(patterns, ["/A/*", "/B"]);
    }

    #[test]
    fn wait_parses_timestamp_timeout_and_fail_on_timeout() {
        let cli = parse(&[
            "guestproperty",
            "wait",
            "/A|/B",
            "--timestamp",
            "123",
            "--timeout",
            "500",
            "--fail-on-timeout",
        ])
        .unwrap();
        let Some(Command::GuestProperty(PropertyCommand::Wait(args))) = cli.command else {
            panic!("not a wait: {cli:?}");
        };
        assert_eq!(
            (args.patterns.as_str(), args.timestamp, args.timeout),
            ("/A|/B", 123, Some(500))
        );
        assert!(args.fail_on_timeout);
    }

    #[test]
    fn a_non_numeric_timeout_is_a_usage_error() {
        let err = parse(&["guestproperty", "wait", "", "--timeout", "soon"]).unwrap_err();
        assert_eq!(err.exit_code(), ExitStatus::Syntax as i32);
    }

    #[test]
    fn version_flag_and_commands_parse() {
        assert!(parse(&["--version"]).unwrap().version);
        assert!(parse(&["-V"]).unwrap().version);
        assert!(matches!(
            parse(&["getversion"]).unwrap().command,
            Some(Command::Version)
        ));
    }

    #[test]
    fn device_defaults_to_the_user_node() {
        assert_eq!(
            parse(&["version"]).unwrap().device,
            PathBuf::from("/dev/vboxuser")
        );
    }

    #[test]
    fn errors_are_prefixed_with_the_program_name() {
        let mut err = Vec::new();
        assert_eq!(fail(&mut err, "broken"), ExitStatus::Failure);
        assert_eq!(err, b"vboxcontrol: error: broken\n");
    }

    #[test]
    fn flags_render_as_virtualbox_does() {
        assert_eq!(
            flags_text(PropertyFlags::TRANSRESET | PropertyFlags::RDONLYGUEST),
            "TRANSIENT, RDONLYGUEST, TRANSRESET"
        );
        assert_eq!(flags_text(PropertyFlags::NILFLAG), "");
    }

    #[test]
    fn a_host_refusal_reads_as_vboxcontrol_with_the_status_by_name() {
        let refused = GuestPropError::AccessDenied {
            function: Function::SET_PROP_VALUE,
            store_read_only: false,
        };
        assert_eq!(
            failure("Failed to store the property value", &refused),
            "Failed to store the property value, error VERR_PERMISSION_DENIED"
        );
    }

    #[test]
    fn a_failure_without_a_host_status_is_described() {
        let invalid = GuestPropError::InvalidArgument {
            what: "name",
            reason: "contains a NUL byte",
        };
        assert_eq!(
            failure("Failed to delete the property value", &invalid),
            "Failed to delete the property value: invalid name: contains a NUL byte"
        );
    }

    #[test]
    fn a_status_without_a_name_reads_as_iprt_prints_it() {
        assert_eq!(
            status_name(Status(-12345)),
            "Unknown Status -12345 (0xffffcfc7)"
        );
    }
}
