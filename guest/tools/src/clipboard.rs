//! `vboxcontrol clipboard`: the shared clipboard from the guest's command line.
//!
//! | Command | What it does |
//! |---|---|
//! | `clipboard get [--format text\|html\|bitmap]` | prints the host clipboard: UTF-8 text, HTML, or a BMP file |
//! | `clipboard set [--format ..] [--once] [--timeout MS] [--background]` | offers stdin as the guest clipboard and answers the host's reads |
//! | `clipboard watch [--count N] [--timeout MS]` | prints a line each time the host clipboard changes |
//! | `clipboard bridge [--interval-ms MS]` | keeps an X11 or Wayland guest desktop clipboard in sync with the host ([`bridge`]) |
//!
//! The clipboard is lazy: `set` only *announces* the data, and the host asks for it when
//! something is pasted there. So `set` stays connected and answers the host's requests until
//! the host clipboard changes (the host took the clipboard back), the service closes the client,
//! `--once` answered one request, `--timeout` expired, or it is killed. With `--background` it
//! returns as soon as the host can read the data, prints the PID of the process that keeps
//! serving it, and serves from there, as `xclip` does.
//!
//! `watch` prints the host clipboard's formats as they are now first, then one line per change:
//! `Host clipboard: text, html` or `Host clipboard: empty`. It ends after `--count` lines, when
//! the service closes the client, or (exit 1) when `--timeout` expires first.
//!
//! Exit codes are `vboxcontrol`'s: 0 success, 1 failure (no data in the format asked for, a
//! clipboard mode that forbids the direction, a timeout), 2 usage error.

pub mod bridge;
pub mod desktop;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand, ValueEnum};
use vmmdev_guest_ioctl::clipboard::{
    ClipboardClient, ClipboardError, Format, Formats, HostEvent, encoding,
};
use vmmdev_guest_ioctl::{Device, GuestTransport};

use crate::control::{ExitStatus, fail};

/// A `clipboard` command.
#[derive(Debug, Subcommand)]
pub enum ClipboardCommand {
    /// Print the host clipboard (text as UTF-8, HTML, or a bitmap as a BMP file).
    Get {
        /// The format to read.
        #[arg(long, value_enum, default_value_t = FormatArg::Text)]
        format: FormatArg,
    },
    /// Offer stdin as the guest clipboard and answer the host's reads of it.
    Set(SetArgs),
    /// Print the host clipboard's formats now and at every change.
    Watch {
        /// Stop after this many lines.
        #[arg(long)]
        count: Option<u32>,
        /// Give up (exit 1) after this many milliseconds.
        #[arg(long, value_name = "MS")]
        timeout: Option<u32>,
    },
    /// Keep the guest desktop clipboard (X11 through xclip, Wayland through wl-copy and
    /// wl-paste) in sync with the host clipboard.
    Bridge {
        /// How often the desktop clipboard is checked for changes, in milliseconds.
        #[arg(long, value_name = "MS", default_value_t = 500)]
        interval_ms: u64,
    },
}

/// Arguments of `clipboard set`.
#[derive(Debug, Args)]
pub struct SetArgs {
    /// The format of the data on stdin (text: UTF-8, or Latin-1 when it is not UTF-8).
    #[arg(long, value_enum, default_value_t = FormatArg::Text)]
    pub format: FormatArg,
    /// Exit after answering one read of the host.
    #[arg(long)]
    pub once: bool,
    /// Stop offering the data after this many milliseconds.
    #[arg(long, value_name = "MS")]
    pub timeout: Option<u32>,
    /// Return once the data is offered and keep serving it from a background process whose
    /// PID is printed.
    #[arg(long)]
    pub background: bool,
}

/// A clipboard format on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// Unicode text (UTF-8 for the user).
    Text,
    /// HTML.
    Html,
    /// A bitmap (a BMP file for the user).
    Bitmap,
}

impl From<FormatArg> for Format {
    fn from(format: FormatArg) -> Self {
        match format {
            FormatArg::Text => Self::UnicodeText,
            FormatArg::Html => Self::Html,
            FormatArg::Bitmap => Self::Bitmap,
        }
    }
}

/// The name of a format in the tool's output and options.
pub fn format_name(format: Format) -> &'static str {
    match format {
        Format::UnicodeText => "text",
        Format::Html => "html",
        Format::Bitmap => "bitmap",
    }
}

/// Formats as the tool prints them: `text, html`, `empty`, unknown bits in hexadecimal.
pub fn formats_text(formats: Formats) -> String {
    let mut names: Vec<String> = Format::ALL
        .into_iter()
        .filter(|format| formats.contains(format.flag()))
        .map(|format| format_name(format).to_owned())
        .collect();
    let known = Format::ALL
        .into_iter()
        .fold(Formats::NONE, |all, format| all | format.flag());
    let unknown = formats.difference(known);
    if !unknown.is_empty() {
        names.push(format!("{:#x}", unknown.bits()));
    }
    if names.is_empty() {
        "empty".to_owned()
    } else {
        names.join(", ")
    }
}

/// What became of a command in this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// It ran to its end here.
    Done(ExitStatus),
    /// A background process took over the connection and serves the data.
    Detached(ExitStatus),
}

/// How serving the data ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Served {
    /// The host clipboard changed: the guest no longer owns the clipboard.
    Replaced,
    /// The service closed the client.
    Quit,
    /// `--once`: one request was answered.
    Answered,
    /// `--timeout` expired.
    TimedOut,
}

/// Runs a `clipboard` command over `device`; `input` is the data of `set`.
pub fn clipboard<T: GuestTransport>(
    device: &Device<T>,
    command: &ClipboardCommand,
    input: &mut dyn Read,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> ExitStatus {
    match command {
        ClipboardCommand::Get { format } => with_client(device, err, |client, err| {
            Outcome::Done(get(client, (*format).into(), out, err))
        }),
        ClipboardCommand::Set(args) => with_client(device, err, |client, err| {
            set(client, args, input, out, err)
        }),
        ClipboardCommand::Watch { count, timeout } => with_client(device, err, |client, err| {
            Outcome::Done(watch(client, *count, *timeout, out, err))
        }),
        ClipboardCommand::Bridge { interval_ms } => {
            bridge::run_detected(device, Duration::from_millis(*interval_ms), err)
        }
    }
}

/// Connects to the service, runs `command` and disconnects, unless the connection went to a
/// background process.
fn with_client<'d, T: GuestTransport>(
    device: &'d Device<T>,
    err: &mut dyn Write,
    command: impl FnOnce(&ClipboardClient<'d, T>, &mut dyn Write) -> Outcome,
) -> ExitStatus {
    let client = match ClipboardClient::connect(device) {
        Ok(client) => client,
        Err(error) => {
            return fail(
                err,
                &format!("Failed to connect to the shared clipboard service: {error}"),
            );
        }
    };
    match command(&client, err) {
        Outcome::Done(status) => {
            if let Err(error) = client.disconnect() {
                log::warn!("disconnecting from the shared clipboard service: {error}");
            }
            status
        }
        Outcome::Detached(status) => {
            // The background process serves on this connection: leave it connected.
            std::mem::forget(client);
            status
        }
    }
}

fn get<T: GuestTransport>(
    client: &ClipboardClient<'_, T>,
    format: Format,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> ExitStatus {
    let wire = match client.read(format) {
        Ok(Some(wire)) => wire,
        Ok(None) => {
            return fail(
                err,
                &format!("The host clipboard holds no {}", format_name(format)),
            );
        }
        Err(error) => return fail(err, &describe(&error, "read the host clipboard")),
    };
    match encoding::from_wire(format, &wire) {
        Ok(data) => write_out(out, err, &data),
        Err(error) => fail(
            err,
            &format!("The host clipboard data is unusable: {error}"),
        ),
    }
}

fn set<T: GuestTransport>(
    client: &ClipboardClient<'_, T>,
    args: &SetArgs,
    input: &mut dyn Read,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Outcome {
    let format = Format::from(args.format);
    let mut data = Vec::new();
    if let Err(error) = input.read_to_end(&mut data) {
        return Outcome::Done(fail(err, &format!("reading the data from stdin: {error}")));
    }
    let wire = match encoding::to_wire(format, &data) {
        Ok(wire) => wire,
        Err(error) => {
            return Outcome::Done(fail(err, &format!("The data is not usable: {error}")));
        }
    };
    // The service greets a new client with the host's formats; that is not a change to stop at.
    loop {
        match client.poll_event() {
            Ok(Some(_)) => continue,
            Ok(None) => break,
            Err(error) => {
                return Outcome::Done(fail(err, &describe(&error, "read the host's messages")));
            }
        }
    }
    if let Err(error) = client.report_formats(format.flag()) {
        return Outcome::Done(fail(err, &describe(&error, "offer the guest clipboard")));
    }
    if args.background {
        match detach() {
            Ok(Some(child)) => {
                return Outcome::Detached(write_out(out, err, format!("{child}\n").as_bytes()));
            }
            Ok(None) => {}
            Err(error) => {
                return Outcome::Done(fail(
                    err,
                    &format!("starting the background server: {error}"),
                ));
            }
        }
    }
    let deadline = args
        .timeout
        .and_then(|ms| Instant::now().checked_add(Duration::from_millis(ms.into())));
    Outcome::Done(match serve(client, format, &wire, args.once, deadline) {
        Ok(Served::TimedOut) => {
            // Still the owner: stop offering what nobody will serve any more.
            if let Err(error) = client.report_formats(Formats::NONE) {
                log::warn!("withdrawing the guest clipboard: {error}");
            }
            ExitStatus::Success
        }
        Ok(Served::Replaced | Served::Quit | Served::Answered) => ExitStatus::Success,
        Err(error) => fail(err, &describe(&error, "serve the guest clipboard")),
    })
}

/// Answers the host's requests for `wire` (in `format`) until the host clipboard changes, the
/// service closes the client, one answer with `once`, or `deadline`.
fn serve<T: GuestTransport>(
    client: &ClipboardClient<'_, T>,
    format: Format,
    wire: &[u8],
    once: bool,
    deadline: Option<Instant>,
) -> Result<Served, ClipboardError> {
    loop {
        let timeout = match deadline {
            None => None,
            Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                Some(remaining) => Some(remaining),
                None => return Ok(Served::TimedOut),
            },
        };
        match client.next_event(timeout) {
            Ok(HostEvent::DataRequest(request)) => {
                let answer = if request.format() == Some(format) {
                    wire
                } else {
                    &[]
                };
                client.write(&request, answer)?;
                if once {
                    return Ok(Served::Answered);
                }
            }
            Ok(HostEvent::Formats(_)) => return Ok(Served::Replaced),
            Ok(HostEvent::Quit) => return Ok(Served::Quit),
            Ok(HostEvent::Canceled) => {}
            Err(ClipboardError::TimedOut { .. }) if deadline.is_some() => {
                return Ok(Served::TimedOut);
            }
            Err(error) => return Err(error),
        }
    }
}

fn watch<T: GuestTransport>(
    client: &ClipboardClient<'_, T>,
    count: Option<u32>,
    timeout: Option<u32>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> ExitStatus {
    let deadline =
        timeout.and_then(|ms| Instant::now().checked_add(Duration::from_millis(ms.into())));
    let mut printed = 0u32;
    loop {
        if count.is_some_and(|count| printed >= count) {
            return ExitStatus::Success;
        }
        let remaining = deadline.map(|deadline| deadline.saturating_duration_since(Instant::now()));
        match client.next_event(remaining) {
            Ok(HostEvent::Formats(formats)) => {
                let line = format!("Host clipboard: {}\n", formats_text(formats));
                if write_out(out, err, line.as_bytes()) != ExitStatus::Success {
                    return ExitStatus::Failure;
                }
                printed += 1;
            }
            // This client offers nothing; say so rather than let the host wait.
            Ok(HostEvent::DataRequest(request)) => {
                if let Err(error) = client.write(&request, &[]) {
                    log::warn!("answering a host request with no data: {error}");
                }
            }
            Ok(HostEvent::Quit) => return ExitStatus::Success,
            Ok(HostEvent::Canceled) => {}
            Err(ClipboardError::TimedOut { .. }) => {
                return fail(err, "No clipboard change within the timeout");
            }
            Err(error) => return fail(err, &describe(&error, "wait for the host clipboard")),
        }
    }
}

/// A one-line explanation of a failed attempt to `what`.
pub fn describe(error: &ClipboardError, what: &str) -> String {
    match error {
        ClipboardError::AccessDenied { .. } => format!(
            "Failed to {what}: the clipboard mode forbids this direction (VERR_ACCESS_DENIED)"
        ),
        other => format!("Failed to {what}: {other}"),
    }
}

/// Forks a process that carries on serving, with stdin, stdout and stderr on `/dev/null`.
/// Returns the child's PID in the parent and `None` in the child.
fn detach() -> std::io::Result<Option<libc::pid_t>> {
    // SAFETY: the tool is single-threaded at this point, so the child starts with a consistent
    // copy of the whole process; fork has no memory-safety preconditions beyond that.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(std::io::Error::last_os_error()),
        0 => {
            // SAFETY: setsid only changes the process's session; failing is harmless here.
            unsafe { libc::setsid() };
            let null = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")?;
            for fd in 0..3 {
                // SAFETY: `null` is an open descriptor for the duration of the call, and
                // replacing the standard descriptors does not invalidate any Rust object (the
                // standard streams are used only through their descriptor numbers).
                if unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), fd) } < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(None)
        }
        child => Ok(Some(child)),
    }
}

/// Writes command output; a failed write (a closed pipe) is a failure of the command.
fn write_out(out: &mut dyn Write, err: &mut dyn Write, data: &[u8]) -> ExitStatus {
    match out.write_all(data).and_then(|()| out.flush()) {
        Ok(()) => ExitStatus::Success,
        Err(error) => fail(err, &format!("writing the output: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<ClipboardCommand, clap::Error> {
        let args = ["vboxcontrol", "clipboard"].iter().chain(args);
        match Cli::try_parse_from(args)?.command {
            Some(Command::Clipboard(command)) => Ok(command),
            other => panic!("not a clipboard command: {other:?}"),
        }
    }

    #[test]
    fn get_reads_text_unless_told_otherwise() {
        assert!(matches!(
            parse(&["get"]).unwrap(),
            ClipboardCommand::Get {
                format: FormatArg::Text
            }
        ));
        assert!(matches!(
            parse(&["get", "--format", "bitmap"]).unwrap(),
            ClipboardCommand::Get {
                format: FormatArg::Bitmap
            }
        ));
    }

    #[test]
    fn set_parses_its_options() {
        let ClipboardCommand::Set(args) = parse(&[
            "set",
            "--format",
            "html",
            "--once",
            "--timeout",
            "1500",
            "--background",
        ])
        .unwrap() else {
            panic!("not a set");
        };
        assert_eq!(args.format, FormatArg::Html);
        assert!(args.once && args.background);
        assert_eq!(args.timeout, Some(1500));
    }

    #[test]
    fn an_unknown_format_is_a_usage_error() {
        let err = parse(&["get", "--format", "png"]).unwrap_err();
        assert_eq!(err.exit_code(), ExitStatus::Syntax as i32);
    }

    #[test]
    fn bridge_checks_every_half_second_by_default() {
        assert!(matches!(
            parse(&["bridge"]).unwrap(),
            ClipboardCommand::Bridge { interval_ms: 500 }
        ));
    }

    #[test]
    fn formats_print_by_name_with_unknown_bits_in_hex() {
        assert_eq!(formats_text(Formats::NONE), "empty");
        assert_eq!(
            formats_text(Formats::HTML | Formats::UNICODETEXT),
            "text, html"
        );
        assert_eq!(
            formats_text(Formats::BITMAP | Formats::from_bits_retain(0x18)),
            "bitmap, 0x18"
        );
    }

    #[test]
    fn a_mode_refusal_is_explained() {
        let error = ClipboardError::AccessDenied {
            function: vmmdev_protocol::services::clipboard::Function::DATA_READ,
        };
        assert_eq!(
            describe(&error, "read the host clipboard"),
            "Failed to read the host clipboard: the clipboard mode forbids this direction \
             (VERR_ACCESS_DENIED)"
        );
    }
}
