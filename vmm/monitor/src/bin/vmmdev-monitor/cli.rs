//! Command-line options of `vmmdev-monitor`.
//!
//! Every value is checked while parsing, so a bad argument is reported as one line (exit status 2) before
//! the monitor opens `/dev/kvm`. The host options (services, plugins, shares, guest properties) are the
//! same as the vfio-user server's, from `vmmdev-host-options`.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use vmmdev_host_options::HostOptions;
use vmmdev_monitor::intx::IntxMode;
use vmmdev_monitor::memory::{MAX_RAM_MIB, MIN_RAM_MIB};
use vmmdev_monitor::mptable::MAX_CPUS;

/// The command line Linux gets unless --cmdline says otherwise: serial console, reboot through the
/// keyboard controller (the monitor then exits), no ACPI (the MP table describes the machine), PCI
/// configuration mechanism #1.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 reboot=k panic=-1 acpi=off pci=conf1 8250.nr_uarts=1 i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd";

/// Boots a Linux guest on KVM with the VirtualBox VMMDev PCI device (80EE:CAFE) and its HGCM services
/// in-process. The guest's serial console is standard input/output (on a terminal: raw mode, Ctrl-A x
/// quits). Exit status: 0 when the guest rebooted or powered off, 3 when it crashed, 1 when the monitor
/// failed, 2 for bad arguments.
#[derive(Debug, Parser)]
#[command(name = "vmmdev-monitor", version)]
pub struct Cli {
    /// The guest kernel: a bzImage, or an ELF vmlinux (entered directly, no decompressor).
    #[arg(long, value_name = "PATH", value_parser = existing_file)]
    pub kernel: PathBuf,

    /// The initramfs.
    #[arg(long, value_name = "PATH", value_parser = existing_file)]
    pub initrd: Option<PathBuf>,

    /// The kernel command line.
    #[arg(long, value_name = "TEXT", default_value = DEFAULT_CMDLINE)]
    pub cmdline: String,

    /// Appended to the command line (after a space): the guest's own parameters on top of the default
    /// machine parameters.
    #[arg(long, value_name = "TEXT")]
    pub append: Option<String>,

    /// Guest memory in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 512,
          value_parser = clap::value_parser!(u64).range(MIN_RAM_MIB..=MAX_RAM_MIB))]
    pub memory: u64,

    /// Number of vCPUs.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(1..=i64::from(MAX_CPUS)))]
    pub vcpus: u8,

    /// How VMMDev's interrupt reaches KVM: an irqfd with a resample eventfd (falls back to irq-line where
    /// KVM cannot resample), or KVM_IRQ_LINE calls.
    #[arg(long, value_enum, default_value_t = IntxArg::Irqfd)]
    pub intx: IntxArg,

    /// On a PVM host (kvm_pvm), complete the guest's ring-3 system calls that PVM leaves in ring 3, by
    /// trapping the guest's page-fault entry (every guest page fault then exits to the monitor).
    /// Without it guest user space cannot make system calls there. Ignored on hardware KVM.
    #[arg(long)]
    pub syscall_bridge: bool,

    /// Writes the device's request log (one line per request, oldest first) to FILE when the VM ends.
    #[arg(long, value_name = "FILE")]
    pub request_log: Option<PathBuf>,

    /// Writes the log to FILE instead of standard error (filter with RUST_LOG, default "info").
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,

    /// Services, plugins, shares and guest properties.
    #[command(flatten)]
    pub host: HostOptions,
}

/// `--intx` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum IntxArg {
    /// irqfd with resample.
    Irqfd,
    /// KVM_IRQ_LINE.
    IrqLine,
}

impl Cli {
    /// The full kernel command line: `--cmdline`, then `--append`.
    pub fn kernel_cmdline(&self) -> String {
        match &self.append {
            Some(extra) => format!("{} {extra}", self.cmdline),
            None => self.cmdline.clone(),
        }
    }
}

impl From<IntxArg> for IntxMode {
    fn from(arg: IntxArg) -> Self {
        match arg {
            IntxArg::Irqfd => IntxMode::Irqfd,
            IntxArg::IrqLine => IntxMode::IrqLine,
        }
    }
}

fn existing_file(text: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(text);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!("{text} is not a file"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("vmmdev-monitor").chain(args.iter().copied()))
    }

    fn kernel() -> String {
        std::env::current_exe().unwrap().display().to_string()
    }

    #[test]
    fn kernel_is_required() {
        let error = parse(&[]).unwrap_err();
        assert_eq!(
            error.kind(),
            clap::error::ErrorKind::MissingRequiredArgument
        );
    }

    #[test]
    fn defaults_are_one_vcpu_512_mib_irqfd_and_the_no_acpi_cmdline() {
        let cli = parse(&["--kernel", &kernel()]).unwrap();
        assert_eq!((cli.vcpus, cli.memory, cli.intx), (1, 512, IntxArg::Irqfd));
        assert!(cli.cmdline.contains("acpi=off") && cli.cmdline.contains("reboot=k"));
    }

    #[test]
    fn append_goes_after_the_default_machine_parameters() {
        let cli = parse(&["--kernel", &kernel(), "--append", "quiet vmmdev.mode=demo"]).unwrap();
        assert_eq!(
            cli.kernel_cmdline(),
            format!("{DEFAULT_CMDLINE} quiet vmmdev.mode=demo")
        );
    }

    #[test]
    fn missing_kernel_file_is_refused() {
        let error = parse(&["--kernel", "/no/such/vmlinux"]).unwrap_err();
        assert!(error.to_string().contains("is not a file"), "{error}");
    }

    #[test]
    fn out_of_range_memory_and_vcpus_are_refused() {
        assert!(parse(&["--kernel", &kernel(), "--memory", "16"]).is_err());
        assert!(parse(&["--kernel", &kernel(), "--vcpus", "0"]).is_err());
        assert!(parse(&["--kernel", &kernel(), "--vcpus", "33"]).is_err());
    }

    #[test]
    fn host_options_are_accepted_beside_the_machine_options() {
        let cli = parse(&["--kernel", &kernel(), "--vcpus", "2", "--plugin", "x"]).unwrap();
        assert_eq!(cli.vcpus, 2);
        assert_eq!(cli.host.plugins, ["x"]);
    }
}
