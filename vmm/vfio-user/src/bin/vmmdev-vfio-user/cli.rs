//! Command-line options of `vmmdev-vfio-user`.
//!
//! Every value is checked while parsing, so a bad argument is reported as one line before the
//! server touches anything. The host options (services, plugins, shares, guest properties) are
//! shared with the KVM monitor through `vmmdev-host-options`.

use std::path::PathBuf;

use clap::Parser;
use vmmdev_host_options::HostOptions;

/// Serves the VirtualBox VMMDev PCI device (80EE:CAFE) and its HGCM services to a VMM over
/// vfio-user (QEMU: -device vfio-user-pci,socket=PATH; Cloud Hypervisor: --user-device).
#[derive(Debug, Parser)]
#[command(name = "vmmdev-vfio-user", version)]
pub struct Cli {
    /// Unix socket to listen on; the VMM connects to it.
    #[arg(long, value_name = "PATH")]
    pub socket: PathBuf,

    /// Services, plugins, shares and guest properties.
    #[command(flatten)]
    pub host: HostOptions,

    /// Writes the log to FILE instead of standard error (filter with RUST_LOG, default "info").
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,

    /// Serves one VM, then exits.
    #[arg(long)]
    pub once: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("vmmdev-vfio-user").chain(args.iter().copied()))
    }

    #[test]
    fn socket_is_required() {
        let error = parse(&[]).unwrap_err();
        assert_eq!(
            error.kind(),
            clap::error::ErrorKind::MissingRequiredArgument
        );
    }

    #[test]
    fn host_options_and_server_options_parse_together() {
        let cli = parse(&[
            "--socket", "/s", "--plugin", "a", "--plugin", "/p/b.so", "--once",
        ])
        .unwrap();
        assert_eq!(cli.host.plugins, ["a", "/p/b.so"]);
        assert!(cli.once);
        assert!(!cli.host.no_default_services);
    }

    #[test]
    fn invalid_host_option_is_a_parse_error() {
        assert!(parse(&["--socket", "/s", "--share", "x=/no/such/dir"]).is_err());
    }
}
