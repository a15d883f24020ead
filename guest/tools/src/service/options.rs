//! The `vboxservice` command line.
//!
//! `vboxservice [--foreground] [--only guestinfo|automount] [--interval-ms N] [--verbose]
//! [--device PATH] [--pidfile PATH] [--include-loopback] [--utmp PATH] [--mount-dir DIR]
//! [--mount-prefix PREFIX]`. A bad flag prints one line on stderr and exits with status 2.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{Parser, ValueEnum};

use super::automount::AutomountConfig;
use super::guest_info::GuestInfoConfig;
use super::users::DEFAULT_UTMP;

/// The default interval between guest-information rounds (VBoxService's VMInfo default).
pub const DEFAULT_INTERVAL_MS: u64 = 5000;

/// A subservice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Subservice {
    /// Guest information properties (`/VirtualBox/GuestInfo/*`, `/VirtualBox/GuestAdd/*`).
    #[value(name = "guestinfo")]
    GuestInfo,
    /// Shared-folder automounting.
    #[value(name = "automount")]
    Automount,
}

/// The guest service daemon.
#[derive(Clone, Debug, Parser, PartialEq, Eq)]
#[command(
    name = "vboxservice",
    version,
    about = "Guest service daemon: guest information and shared-folder automounting"
)]
pub struct Options {
    /// Stay in the foreground, logging to stderr (default: become a daemon logging to /dev/kmsg).
    #[arg(short, long)]
    pub foreground: bool,
    /// Run only this subservice.
    #[arg(long, value_enum, value_name = "SUBSERVICE")]
    pub only: Option<Subservice>,
    /// Milliseconds between guest-information rounds, and between automount retries.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_INTERVAL_MS,
          value_parser = clap::value_parser!(u64).range(10..=86_400_000))]
    pub interval_ms: u64,
    /// Log every change, not only the important events.
    #[arg(short, long)]
    pub verbose: bool,
    /// The driver's device node.
    #[arg(long, value_name = "PATH", default_value = "/dev/vboxguest")]
    pub device: PathBuf,
    /// Write the daemon's process id to this file (removed at exit).
    #[arg(long, value_name = "PATH")]
    pub pidfile: Option<PathBuf>,
    /// Report the loopback interface too (VirtualBox skips it).
    #[arg(long)]
    pub include_loopback: bool,
    /// The utmp file logged-in users are read from.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_UTMP)]
    pub utmp: PathBuf,
    /// Directory shares are mounted in (default: the host's MountDir property, else /media).
    #[arg(long, value_name = "DIR")]
    pub mount_dir: Option<PathBuf>,
    /// Prefix of mount point names (default: the host's MountPrefix property, else sf_).
    #[arg(long, value_name = "PREFIX")]
    pub mount_prefix: Option<String>,
}

/// What parsing the command line decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Run with these options.
    Run(Options),
    /// Print this text on stdout and exit 0 (`--help`, `--version`).
    Print(String),
    /// Print this one line on stderr and exit 2.
    Usage(String),
}

impl Options {
    /// Parses `args` (program name first).
    pub fn parse_args(args: impl IntoIterator<Item = OsString>) -> Parsed {
        match Self::try_parse_from(args) {
            Ok(options) => match options.check() {
                Ok(()) => Parsed::Run(options),
                Err(message) => Parsed::Usage(message),
            },
            Err(error) => match error.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    Parsed::Print(error.render().to_string())
                }
                _ => Parsed::Usage(first_line(&error.render().to_string())),
            },
        }
    }

    fn check(&self) -> Result<(), String> {
        if let Some(dir) = &self.mount_dir {
            if !dir.is_absolute() {
                return Err(format!("--mount-dir must be absolute: {}", dir.display()));
            }
        }
        if let Some(prefix) = &self.mount_prefix {
            if prefix.contains('/') || prefix.contains('\0') {
                return Err(format!("--mount-prefix must not contain '/': {prefix:?}"));
            }
        }
        Ok(())
    }

    /// Whether `subservice` runs.
    pub fn runs(&self, subservice: Subservice) -> bool {
        self.only.is_none_or(|only| only == subservice)
    }

    /// The interval.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }

    /// The guest-information settings.
    pub fn guest_info(&self) -> GuestInfoConfig {
        GuestInfoConfig {
            interval: self.interval(),
            include_loopback: self.include_loopback,
            utmp: self.utmp.clone(),
        }
    }

    /// The automount settings.
    pub fn automount(&self) -> AutomountConfig {
        AutomountConfig {
            mount_dir: self.mount_dir.clone(),
            mount_prefix: self.mount_prefix.clone(),
            interval: self.interval(),
        }
    }
}

/// Clap's message reduced to its first line, without the `error: ` prefix.
fn first_line(rendered: &str) -> String {
    let line = rendered
        .lines()
        .find(|line| !line.trim().is_empty())
        .unwrap_or("invalid arguments");
    line.strip_prefix("error: ").unwrap_or(line).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Parsed {
        Options::parse_args(
            std::iter::once("vboxservice")
                .chain(args.iter().copied())
                .map(OsString::from),
        )
    }

    #[test]
    fn defaults_run_both_subservices_every_five_seconds() {
        let Parsed::Run(options) = parse(&[]) else {
            panic!("defaults refused")
        };
        assert!(options.runs(Subservice::GuestInfo) && options.runs(Subservice::Automount));
        assert_eq!(options.interval(), Duration::from_secs(5));
        assert!(!options.foreground);
        assert_eq!(options.device, PathBuf::from("/dev/vboxguest"));
    }

    #[test]
    fn only_selects_one_subservice() {
        let Parsed::Run(options) = parse(&["--only", "automount", "--foreground"]) else {
            panic!("refused")
        };
        assert!(options.runs(Subservice::Automount));
        assert!(!options.runs(Subservice::GuestInfo));
    }

    #[test]
    fn an_unknown_flag_is_one_usage_line() {
        let Parsed::Usage(line) = parse(&["--bogus"]) else {
            panic!("accepted")
        };
        assert!(line.contains("--bogus"), "{line}");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn an_unknown_subservice_and_a_zero_interval_are_usage_errors() {
        assert!(matches!(parse(&["--only", "timesync"]), Parsed::Usage(_)));
        assert!(matches!(parse(&["--interval-ms", "0"]), Parsed::Usage(_)));
        assert!(matches!(
            parse(&["--interval-ms", "soon"]),
            Parsed::Usage(_)
        ));
    }

    #[test]
    fn mount_dir_must_be_absolute_and_prefix_without_slash() {
        assert!(matches!(parse(&["--mount-dir", "media"]), Parsed::Usage(_)));
        assert!(matches!(
            parse(&["--mount-prefix", "a/b"]),
            Parsed::Usage(_)
        ));
        assert!(matches!(
            parse(&["--mount-dir", "/mnt", "--mount-prefix", ""]),
            Parsed::Run(_)
        ));
    }

    #[test]
    fn version_is_printed_not_run() {
        let Parsed::Print(text) = parse(&["--version"]) else {
            panic!("not printed")
        };
        assert!(text.contains(env!("CARGO_PKG_VERSION")));
    }
}
