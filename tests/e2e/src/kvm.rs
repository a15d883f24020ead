//! The project's KVM monitor (`vmmdev-monitor`) as a [`Backend`], with the VMMDev device in-process.
//!
//! The monitor always has the device, so [`BootSpec::device`] only contributes its extra arguments (for
//! example `--plugin`); the program named there is not started. The guest's command line is the spec's,
//! preceded by what a machine without ACPI needs (MP table, PCI configuration mechanism #1, reboot through
//! the keyboard controller so the monitor exits, [`MACHINE_PARAMS`]) and followed by
//! `vmmdev.exit=reboot` (power-off needs ACPI), a longer step time limit and the boot log on the console
//! ([`BOOT_LOGLEVEL`]).
//!
//! Where `/dev/kvm` has no hardware virtualization under it (no `vmx`/`svm` in `/proc/cpuinfo`, e.g. PVM
//! hosts that emulate guest kernel code, kvm-vmm.md §0) the backend also passes [`EMULATION_PARAMS`]: they
//! keep the kernel away from instructions that host's emulator cannot execute and from watchdogs that
//! slow emulation would trip. The monitor's log goes to the run's `server.log` (the runner shows its tail
//! when a run fails) and the device's request log to `requests.log`.
//!
//! Artifacts come from `tests/run-all.sh` through [`ENV_KVM_MONITOR`], [`ENV_KVM_KERNEL`] and
//! [`ENV_KVM_INITRD`]; a test without them prints `SKIPPED:` and returns, like the QEMU tests.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::backend::{Backend, BootSpec, LaunchError, LaunchedVm, RunDir};
use crate::process::GroupChild;

/// The monitor binary (`vmmdev-monitor`).
pub const ENV_KVM_MONITOR: &str = "VMMDEV_KVM_MONITOR";
/// The kernel the KVM tests boot (the lean kernel on hosts that emulate guest kernel code, else the stock
/// `vmlinux`).
pub const ENV_KVM_KERNEL: &str = "VMMDEV_KVM_KERNEL";
/// The initramfs matching [`ENV_KVM_KERNEL`] (its modules must be that kernel's).
pub const ENV_KVM_INITRD: &str = "VMMDEV_KVM_INITRD";

/// Kernel parameters for the monitor's machine: no ACPI (the MP table describes CPUs, IOAPIC and the
/// PCI interrupt), PCI through configuration mechanism #1, reboot through the i8042 reset line (the
/// monitor then exits), one UART, no i8042 probing delays.
pub const MACHINE_PARAMS: &str =
    "reboot=k acpi=off pci=conf1 8250.nr_uarts=1 i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd";

/// Kernel parameters for hosts whose KVM emulates guest kernel code (kvm-vmm.md §0): instructions the
/// emulator cannot execute (CMPXCHG16B, POPCNT, SMAP's CLAC, SSSE3 crypto, and the compacted XSAVE
/// formats: the monitor completes XSAVE, XSAVEOPT and XRSTOR in the standard one), `rep movsb`/`rep
/// stosb` string copies (ERMS, FSRM, REP_GOOD: the emulator steps them byte by byte, the unrolled copies
/// take a third less time to unpack the image), watchdogs that slow emulation trips, and work the kernel
/// can skip (zeroing freed pages, speculation mitigations).
pub const EMULATION_PARAMS: &str = "clearcpuid=cx16,popcnt,smap,ssse3,erms,fsrm,rep_good,xsavec,xsaves \
    nowatchdog nosoftlockup tsc=reliable mitigations=off init_on_alloc=0";

/// The monitor option such hosts need: guest system calls from ring 3 completed by the monitor
/// (`vmmdev_monitor::syscall_bridge`).
pub const EMULATION_MONITOR_ARGS: &[&str] = &["--syscall-bridge"];

/// The kernel's console log level until `/init` quiets it: the boot log (PCI enumeration, the MP table,
/// the first user-space fault) is the first thing to read when a slow boot goes wrong.
pub const BOOT_LOGLEVEL: u8 = 7;

/// Per-step time limit in the guest: every kernel instruction may be emulated.
pub const STEP_TIMEOUT_SECONDS: u32 = 600;

/// The monitor's request log, in the run directory.
pub const REQUEST_LOG: &str = "requests.log";

/// `vmmdev-monitor` on `/dev/kvm`.
#[derive(Debug, Clone)]
pub struct KvmMonitor {
    monitor: PathBuf,
    vcpus: u8,
    emulated_kernel: bool,
    extra_args: Vec<OsString>,
}

impl KvmMonitor {
    /// A backend running `monitor` with one vCPU; the emulation parameters follow the host
    /// ([`kvm_emulates_guest_kernel`]).
    pub fn new(monitor: &Path) -> Self {
        Self {
            monitor: monitor.to_owned(),
            vcpus: 1,
            emulated_kernel: kvm_emulates_guest_kernel(),
            extra_args: Vec::new(),
        }
    }

    /// Uses `vcpus` vCPUs.
    pub fn with_vcpus(mut self, vcpus: u8) -> Self {
        self.vcpus = vcpus;
        self
    }

    /// Forces the emulation parameters on or off.
    pub fn with_emulated_kernel(mut self, emulated: bool) -> Self {
        self.emulated_kernel = emulated;
        self
    }

    /// Appends arguments to every monitor command line.
    pub fn with_extra_args(mut self, args: impl IntoIterator<Item = impl Into<OsString>>) -> Self {
        self.extra_args.extend(args.into_iter().map(Into::into));
        self
    }

    /// The guest's kernel command line for `spec`.
    pub fn kernel_cmdline(&self, spec: &BootSpec) -> String {
        let mut cmdline = String::from(MACHINE_PARAMS);
        if self.emulated_kernel {
            cmdline.push(' ');
            cmdline.push_str(EMULATION_PARAMS);
        }
        cmdline.push(' ');
        cmdline.push_str(&spec.cmdline);
        cmdline.push_str(&format!(
            " loglevel={BOOT_LOGLEVEL} vmmdev.exit=reboot vmmdev.step_timeout={STEP_TIMEOUT_SECONDS}"
        ));
        cmdline
    }

    /// The monitor's arguments for `spec`, with its files in `dir`.
    pub fn arguments(&self, spec: &BootSpec, dir: &RunDir) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "--kernel".into(),
            spec.kernel.clone().into(),
            "--initrd".into(),
            spec.initrd.clone().into(),
            "--memory".into(),
            spec.memory_mib.to_string().into(),
            "--vcpus".into(),
            self.vcpus.to_string().into(),
            "--cmdline".into(),
            self.kernel_cmdline(spec).into(),
            "--log-file".into(),
            dir.server_log().into(),
            "--request-log".into(),
            dir.path().join(REQUEST_LOG).into(),
        ];
        if self.emulated_kernel {
            args.extend(EMULATION_MONITOR_ARGS.iter().map(OsString::from));
        }
        if let Some(device) = &spec.device {
            args.extend(device.args.iter().cloned());
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }
}

/// Whether `/dev/kvm` here has no hardware virtualization under it (no `vmx`/`svm` CPU flag), so guest
/// kernel code is emulated.
pub fn kvm_emulates_guest_kernel() -> bool {
    std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|cpuinfo| !has_virtualization_flag(&cpuinfo))
}

fn has_virtualization_flag(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .filter(|line| line.starts_with("flags"))
        .any(|line| {
            line.split_whitespace()
                .any(|flag| flag == "vmx" || flag == "svm")
        })
}

impl Backend for KvmMonitor {
    fn name(&self) -> &str {
        "kvm-monitor"
    }

    fn launch(&self, spec: &BootSpec, dir: &RunDir) -> Result<LaunchedVm, LaunchError> {
        let args = self.arguments(spec, dir);
        dir.write_command_file(&self.monitor, &args)?;
        let stderr_path = dir.vm_stderr_log();
        let stderr =
            std::fs::File::create(&stderr_path).map_err(|source| LaunchError::RunFile {
                path: stderr_path,
                source,
            })?;
        let mut command = Command::new(&self.monitor);
        command
            .args(&args)
            .envs(
                spec.device
                    .iter()
                    .flat_map(|d| d.env.iter().map(|(k, v)| (k, v))),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let started = Instant::now();
        let mut vm = GroupChild::spawn("vmmdev-monitor", &mut command)?;
        let serial = vm.take_stdout().ok_or(LaunchError::NoSerial)?;
        Ok(LaunchedVm {
            vm,
            serial,
            helpers: Vec::new(),
            socket: None,
            started,
        })
    }
}

/// The files a KVM boot test needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvmArtifacts {
    /// The monitor.
    pub monitor: PathBuf,
    /// The kernel.
    pub kernel: PathBuf,
    /// Its initramfs.
    pub initrd: PathBuf,
}

/// The KVM artifacts, or `None` after printing `SKIPPED: <test>: <why>` (no `/dev/kvm`, or the variables
/// unset because `tests/run-all.sh` did not run). A variable naming a missing file is a broken setup: the
/// test panics.
pub fn kvm_artifacts_or_skip(test: &str) -> Option<KvmArtifacts> {
    let skip = |why: &str| {
        let line = format!("SKIPPED: {test}: {why}");
        println!("{line}");
        eprintln!("{line}");
        None
    };
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let (Some(monitor), Some(kernel), Some(initrd)) = (
        var(ENV_KVM_MONITOR),
        var(ENV_KVM_KERNEL),
        var(ENV_KVM_INITRD),
    ) else {
        return skip(&format!(
            "{ENV_KVM_MONITOR}, {ENV_KVM_KERNEL} or {ENV_KVM_INITRD} is not set \
             (tests/run-all.sh sets them where /dev/kvm is usable)"
        ));
    };
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return skip("/dev/kvm cannot be opened");
    }
    for (name, path) in [
        (ENV_KVM_MONITOR, &monitor),
        (ENV_KVM_KERNEL, &kernel),
        (ENV_KVM_INITRD, &initrd),
    ] {
        assert!(
            path.exists(),
            "{test}: {name}={} does not exist",
            path.display()
        );
    }
    Some(KvmArtifacts {
        monitor,
        kernel,
        initrd,
    })
}

/// The request types of the monitor's request log (`type=NAME(n)` of each line), oldest first.
pub fn request_types(log: &str) -> Vec<u32> {
    log.lines()
        .filter_map(|line| {
            let field = line.split_whitespace().find(|f| f.starts_with("type="))?;
            let number = field.rsplit_once('(')?.1.strip_suffix(')')?;
            number.parse().ok()
        })
        .collect()
}

/// The cancel audit's summary at the end of the request log: `(cancels watched, violations)`.
pub fn cancel_audit(log: &str) -> Option<(u64, u64)> {
    let line = log
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix("# cancel-audit "))?;
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
    };
    Some((field("cancels")?, field("violations")?))
}

/// Whether `wanted` occurs in `sequence` in order (other elements may come between).
pub fn contains_in_order(sequence: &[u32], wanted: &[u32]) -> bool {
    let mut rest = sequence.iter();
    wanted.iter().all(|w| rest.any(|s| s == w))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::DeviceServer;

    fn spec() -> BootSpec {
        BootSpec::test(
            Path::new("/k/vmlinux"),
            Path::new("/i/initrd.cpio.gz"),
            &["init"],
        )
    }

    fn value_after<'a>(args: &'a [OsString], option: &str) -> Vec<&'a OsString> {
        args.windows(2)
            .filter(|p| p[0] == option)
            .map(|p| &p[1])
            .collect()
    }

    #[test]
    fn cmdline_has_the_machine_params_then_the_spec_then_reboot_exit() {
        let spec = spec();
        let cmdline = KvmMonitor::new(Path::new("m"))
            .with_emulated_kernel(false)
            .kernel_cmdline(&spec);
        assert!(cmdline.starts_with(MACHINE_PARAMS));
        assert!(cmdline.contains(&spec.cmdline));
        assert!(cmdline.contains(" vmmdev.exit=reboot "));
        assert!(!cmdline.contains("clearcpuid"));
    }

    #[test]
    fn emulated_kernel_hosts_get_the_workaround_params_and_the_syscall_bridge() {
        let monitor = KvmMonitor::new(Path::new("m")).with_emulated_kernel(true);
        assert!(monitor.kernel_cmdline(&spec()).contains(EMULATION_PARAMS));
        let args = monitor.arguments(&spec(), &RunDir::new(Path::new("/run/t")));
        assert!(args.iter().any(|arg| arg == "--syscall-bridge"));
        let hardware = KvmMonitor::new(Path::new("m")).with_emulated_kernel(false);
        let args = hardware.arguments(&spec(), &RunDir::new(Path::new("/run/t")));
        assert!(!args.iter().any(|arg| arg == "--syscall-bridge"));
    }

    #[test]
    fn files_of_the_run_go_to_the_run_directory() {
        let dir = RunDir::new(Path::new("/run/t"));
        let args = KvmMonitor::new(Path::new("m")).arguments(&spec(), &dir);
        assert_eq!(
            value_after(&args, "--log-file"),
            [&OsString::from("/run/t/server.log")]
        );
        assert_eq!(
            value_after(&args, "--request-log"),
            [&OsString::from("/run/t/requests.log")]
        );
        assert_eq!(
            value_after(&args, "--kernel"),
            [&OsString::from("/k/vmlinux")]
        );
        assert_eq!(value_after(&args, "--memory"), [&OsString::from("512")]);
    }

    #[test]
    fn device_arguments_are_passed_to_the_monitor() {
        let mut device = DeviceServer::new(Path::new("/unused"));
        device.args.push("--plugin".into());
        device.args.push("/p/libx.so".into());
        let spec = spec().with_device(device);
        let args = KvmMonitor::new(Path::new("m"))
            .with_vcpus(2)
            .arguments(&spec, &RunDir::new(Path::new("/r")));
        assert_eq!(
            value_after(&args, "--plugin"),
            [&OsString::from("/p/libx.so")]
        );
        assert_eq!(value_after(&args, "--vcpus"), [&OsString::from("2")]);
    }

    #[test]
    fn virtualization_flags_are_found_in_cpuinfo() {
        assert!(has_virtualization_flag(
            "processor: 0\nflags\t\t: fpu vme svm sse\n"
        ));
        assert!(!has_virtualization_flag("flags\t\t: fpu vme sse\n"));
    }

    #[test]
    fn request_types_are_read_from_the_log() {
        let log = "gpa=0x1 type=GET_HOST_VERSION(4) size=40 requestor=0x1 status=0\n\
                   gpa=0x2 type=UNKNOWN(999) size=24 requestor=0x1 status=-2\n";
        assert_eq!(request_types(log), [4, 999]);
    }

    #[test]
    fn cancel_audit_summary_is_read_from_the_end_of_the_log() {
        let log = "gpa=0x1 type=HGCM_CANCEL2(65) size=28 requestor=0x1 status=0\n\
                   # cancel-audit cancels=3 violations=0\n";
        assert_eq!(cancel_audit(log), Some((3, 0)));
        assert_eq!(cancel_audit("gpa=0x1 type=X(1)\n"), None);
    }

    #[test]
    fn in_order_allows_gaps_but_not_reordering() {
        assert!(contains_in_order(&[4, 1, 58, 50], &[4, 58, 50]));
        assert!(!contains_in_order(&[58, 4, 50], &[4, 58, 50]));
    }
}
