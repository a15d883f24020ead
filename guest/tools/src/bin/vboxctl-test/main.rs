//! `vboxctl-test`: checks the vboxguest driver and the host behind it from inside a Linux guest.
//!
//! Each subcommand exercises one behaviour of the ioctl interface (linux-guest.md §7) and prints one
//! line of facts, `<command>: <facts>`, on stdout. It exits 0 when the behaviour is the expected one;
//! otherwise it prints `<command>: FAIL: <reason>` on stderr and exits 1. Usage errors exit 2.

mod driver;
mod guestprop;
mod hgcm;
mod mapped;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use vmmdev_guest_ioctl::{Device, Node};
use vmmdev_guest_tools::echo;

/// Checks the vboxguest driver and the VMMDev host from inside the guest.
#[derive(Debug, Parser)]
#[command(name = "vboxctl-test", version)]
struct Cli {
    /// Device node for commands that do not name one: `guest`, `user` or a path.
    #[arg(long, global = true, default_value = "user", value_parser = parse_node)]
    node: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Writes TEXT to the driver log and the host's backdoor log (LOG ioctl).
    Log {
        /// The message.
        text: String,
    },
    /// Prints the driver's interface version (DRIVER_VERSION_INFO).
    Version,
    /// Prints the memory balloon size (CHECK_BALLOON).
    Balloon,
    /// Passes GET_HOST_VERSION through NODE and compares it with sysfs.
    VmmreqHostver {
        /// `guest`, `user` or a device path.
        #[arg(value_parser = parse_node)]
        node: PathBuf,
    },
    /// Expects the driver to refuse passing a request of TYPE through NODE (EPERM).
    VmmreqDenied {
        /// `guest`, `user` or a device path.
        #[arg(value_parser = parse_node)]
        node: PathBuf,
        /// VMMDev request type, decimal or 0x-hex.
        #[arg(value_parser = parse_u32)]
        request_type: u32,
    },
    /// Asks the host for a core dump (WRITE_CORE_DUMP) and prints its answer.
    Coredump,
    /// Adds MASK to the event filter and waits MS milliseconds for those events.
    WaitEvent {
        /// Event bits, decimal or 0x-hex.
        #[arg(value_parser = parse_u32)]
        mask: u32,
        /// Timeout in milliseconds.
        ms: u32,
        /// The outcome that counts as success.
        #[arg(long, value_enum, default_value = "timeout")]
        expect: WaitOutcome,
    },
    /// Waits for events in one thread and interrupts it from another (expects EINTR).
    WaitInterrupt {
        /// Event bits to wait for, decimal or 0x-hex.
        #[arg(long, value_parser = parse_u32, default_value = "0x4")]
        mask: u32,
    },
    /// Sets guest capabilities MASK and prints the session and global capabilities.
    Caps {
        /// Capability bits, decimal or 0x-hex.
        #[arg(value_parser = parse_u32)]
        mask: u32,
    },
    /// Connects to SERVICE, prints the client id and disconnects.
    Connect {
        /// HGCM service name.
        service: String,
    },
    /// Expects the host to refuse a connection to SERVICE.
    ConnectFail {
        /// HGCM service name.
        service: String,
    },
    /// Sends TEXT through the echo service and compares the answer.
    Echo {
        /// The text to echo.
        text: String,
        /// Name of the echo service.
        #[arg(long, default_value = echo::SERVICE_NAME)]
        service: String,
    },
    /// Blocks in the echo service's WAIT until SIGALRM after SECONDS (expects EINTR), then echoes.
    WaitAlarm {
        /// Seconds until the alarm.
        seconds: u32,
        /// Name of the echo service.
        #[arg(long, default_value = echo::SERVICE_NAME)]
        service: String,
    },
    /// Blocks in the echo service's WAIT with an MS call timeout (expects ETIMEDOUT), then echoes.
    WaitTimeout {
        /// Call timeout in milliseconds.
        ms: u32,
        /// Name of the echo service.
        #[arg(long, default_value = echo::SERVICE_NAME)]
        service: String,
    },
    /// Blocks in the echo service's WAIT forever (to be killed); returning is a failure.
    WaitForever {
        /// Name of the echo service.
        #[arg(long, default_value = echo::SERVICE_NAME)]
        service: String,
    },
    /// Makes COUNT null (NOOP) calls to the echo service and prints the time per round trip.
    NullCalls {
        /// Number of calls.
        count: u32,
        /// Name of the echo service.
        #[arg(long, default_value = echo::SERVICE_NAME)]
        service: String,
    },
    /// Reads guest property NAME COUNT times and prints the time per round trip.
    PropGets {
        /// Number of reads.
        count: u32,
        /// The property, which must exist.
        name: String,
    },
    /// Sizes file PATH to SIZE bytes, writes a pattern through a MAP_SHARED mapping, unmaps and
    /// closes it (each 16-byte record is its offset as 15 zero-padded digits and a newline).
    MmapWrite {
        /// The file (created or truncated).
        path: PathBuf,
        /// The size, a multiple of 16.
        #[arg(default_value_t = 8192)]
        size: usize,
    },
}

/// What `wait-event` expects to happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum WaitOutcome {
    /// The wait times out (ETIMEDOUT).
    Timeout,
    /// One of the events arrives.
    Event,
}

impl Command {
    /// The subcommand's name as typed.
    fn name(&self) -> &'static str {
        match self {
            Self::Log { .. } => "log",
            Self::Version => "version",
            Self::Balloon => "balloon",
            Self::VmmreqHostver { .. } => "vmmreq-hostver",
            Self::VmmreqDenied { .. } => "vmmreq-denied",
            Self::Coredump => "coredump",
            Self::WaitEvent { .. } => "wait-event",
            Self::WaitInterrupt { .. } => "wait-interrupt",
            Self::Caps { .. } => "caps",
            Self::Connect { .. } => "connect",
            Self::ConnectFail { .. } => "connect-fail",
            Self::Echo { .. } => "echo",
            Self::WaitAlarm { .. } => "wait-alarm",
            Self::WaitTimeout { .. } => "wait-timeout",
            Self::WaitForever { .. } => "wait-forever",
            Self::NullCalls { .. } => "null-calls",
            Self::PropGets { .. } => "prop-gets",
            Self::MmapWrite { .. } => "mmap-write",
        }
    }
}

/// Why a check did not show the expected behaviour.
#[derive(Debug)]
struct Failure(String);

impl From<vmmdev_guest_ioctl::Error> for Failure {
    fn from(err: vmmdev_guest_ioctl::Error) -> Self {
        Self(err.to_string())
    }
}

impl From<String> for Failure {
    fn from(reason: String) -> Self {
        Self(reason)
    }
}

/// The result of one check: its line of facts, or why it failed.
type Outcome = Result<String, Failure>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let name = cli.command.name();
    match run(cli) {
        Ok(facts) => {
            println!("{name}: {facts}");
            ExitCode::SUCCESS
        }
        Err(Failure(reason)) => {
            eprintln!("{name}: FAIL: {reason}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Outcome {
    let open = || Device::open_path(&cli.node);
    match cli.command {
        Command::Log { text } => driver::log(&open()?, &text),
        Command::Version => driver::version(&open()?),
        Command::Balloon => driver::balloon(&open()?),
        Command::VmmreqHostver { node } => driver::vmmreq_hostver(&node),
        Command::VmmreqDenied { node, request_type } => driver::vmmreq_denied(&node, request_type),
        Command::Coredump => driver::coredump(&open()?),
        Command::WaitEvent { mask, ms, expect } => {
            driver::wait_event(&open()?, mask, ms, expect == WaitOutcome::Event)
        }
        Command::WaitInterrupt { mask } => driver::wait_interrupt(&open()?, mask),
        Command::Caps { mask } => driver::caps(&open()?, mask),
        Command::Connect { service } => hgcm::connect(&open()?, &service),
        Command::ConnectFail { service } => hgcm::connect_fail(&open()?, &service),
        Command::Echo { text, service } => hgcm::echo(&open()?, &service, &text),
        Command::WaitAlarm { seconds, service } => hgcm::wait_alarm(&open()?, &service, seconds),
        Command::WaitTimeout { ms, service } => hgcm::wait_timeout(&open()?, &service, ms),
        Command::WaitForever { service } => hgcm::wait_forever(&open()?, &service),
        Command::NullCalls { count, service } => hgcm::null_calls(&open()?, &service, count),
        Command::PropGets { count, name } => guestprop::prop_gets(&open()?, &name, count),
        Command::MmapWrite { path, size } => mapped::mmap_write(&path, size),
    }
}

/// Parses a device node: `guest`, `user` or a path.
fn parse_node(text: &str) -> Result<PathBuf, String> {
    match text {
        "guest" => Ok(Node::Guest.path().to_path_buf()),
        "user" => Ok(Node::User.path().to_path_buf()),
        path if path.starts_with('/') => Ok(PathBuf::from(path)),
        other => Err(format!(
            "`{other}` is neither `guest`, `user` nor an absolute path"
        )),
    }
}

/// Parses a u32 written in decimal or as `0x` hex.
fn parse_u32(text: &str) -> Result<u32, String> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|err| format!("`{text}`: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn node_names_map_to_the_driver_nodes() {
        assert_eq!(
            parse_node("guest").unwrap(),
            PathBuf::from("/dev/vboxguest")
        );
        assert_eq!(parse_node("user").unwrap(), PathBuf::from("/dev/vboxuser"));
        assert_eq!(
            parse_node("/dev/vboxuser").unwrap(),
            PathBuf::from("/dev/vboxuser")
        );
    }

    #[test]
    fn relative_node_paths_are_refused() {
        assert!(parse_node("vboxuser").is_err());
    }

    #[test]
    fn numbers_parse_as_decimal_or_hex() {
        assert_eq!(parse_u32("218").unwrap(), 218);
        assert_eq!(parse_u32("0x4").unwrap(), 4);
        assert_eq!(parse_u32("0X7FF").unwrap(), 0x7ff);
        assert!(parse_u32("0x").is_err());
        assert!(parse_u32("-1").is_err());
    }

    #[test]
    fn node_option_defaults_to_the_user_device() {
        let cli = Cli::try_parse_from(["vboxctl-test", "version"]).unwrap();
        assert_eq!(cli.node, PathBuf::from("/dev/vboxuser"));
    }

    #[test]
    fn positional_node_of_vmmreq_denied_is_parsed() {
        let cli = Cli::try_parse_from(["vboxctl-test", "vmmreq-denied", "guest", "63"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::VmmreqDenied { ref node, request_type: 63 } if node == &PathBuf::from("/dev/vboxguest")
        ));
    }
}
