//! QEMU under TCG as a [`Backend`], with the device as a `vfio-user-pci` function.
//!
//! TCG does not use `/dev/kvm`, which on this project's machines is slow for guest kernel code; with TCG the
//! stock Debian kernel reaches `/init` in seconds. QEMU >= 10.1 brings `vfio-user-pci`: the device model runs
//! in the `vmmdev-vfio-user` process and QEMU reaches it over a Unix socket. Guest RAM must be a shared memfd
//! so that QEMU can hand the server file descriptors for DMA (vfio-user.md §3).
//!
//! `-kernel` takes Debian's bzImage or the decompressed ELF `vmlinux`; QEMU enters the latter through the
//! kernel's PVH entry point, which saves the several seconds the decompressor needs under TCG.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::backend::{Backend, BootSpec, LaunchError, LaunchedVm, RunDir};
use crate::process::GroupChild;
use crate::server;

/// QEMU's x86 system emulator under TCG.
#[derive(Debug, Clone)]
pub struct QemuTcg {
    qemu: PathBuf,
    extra_args: Vec<OsString>,
}

impl QemuTcg {
    /// A backend running the QEMU binary (or wrapper script) `qemu`.
    pub fn new(qemu: &Path) -> Self {
        Self {
            qemu: qemu.to_owned(),
            extra_args: Vec::new(),
        }
    }

    /// Appends arguments to every QEMU command line (for example `-d guest_errors`).
    pub fn with_extra_args(mut self, args: impl IntoIterator<Item = impl Into<OsString>>) -> Self {
        self.extra_args.extend(args.into_iter().map(Into::into));
        self
    }

    /// QEMU's arguments for `spec`, with the device at `socket` if the spec has one.
    pub fn arguments(&self, spec: &BootSpec, socket: Option<&Path>) -> Vec<OsString> {
        let memory = spec.memory_mib;
        let mut args: Vec<OsString> = [
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-serial",
            "stdio",
            "-no-reboot",
            "-accel",
            "tcg",
            "-smp",
            "1",
            "-m",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        args.push(format!("{memory}M").into());
        args.push("-object".into());
        args.push(format!("memory-backend-memfd,id=mem,size={memory}M,share=on").into());
        args.push("-machine".into());
        args.push("pc,memory-backend=mem".into());
        if let Some(socket) = socket {
            args.push("-device".into());
            args.push(vfio_user_device_json(socket));
        }
        args.push("-kernel".into());
        args.push(spec.kernel.clone().into());
        args.push("-initrd".into());
        args.push(spec.initrd.clone().into());
        args.push("-append".into());
        args.push(spec.cmdline.clone().into());
        args.extend(self.extra_args.iter().cloned());
        args
    }
}

/// The `-device` argument for a vfio-user-pci function on `socket`, in QEMU's JSON syntax.
fn vfio_user_device_json(socket: &Path) -> OsString {
    let mut json = OsString::from(r#"{"driver":"vfio-user-pci","socket":{"path":""#);
    json.push(json_escaped(socket.as_os_str()));
    json.push(r#"","type":"unix"}}"#);
    json
}

/// Escapes a path for a JSON string; bytes that are not UTF-8 are kept as they are (QEMU reads bytes).
fn json_escaped(text: &OsStr) -> OsString {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};

    let mut out = Vec::with_capacity(text.len());
    for &byte in text.as_bytes() {
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0..=0x1f => out.extend_from_slice(format!("\\u{byte:04x}").as_bytes()),
            _ => out.push(byte),
        }
    }
    OsString::from_vec(out)
}

impl Backend for QemuTcg {
    fn name(&self) -> &str {
        "qemu-tcg"
    }

    fn launch(&self, spec: &BootSpec, dir: &RunDir) -> Result<LaunchedVm, LaunchError> {
        let mut helpers = Vec::new();
        let mut socket = None;
        if let Some(device) = &spec.device {
            let path = server::socket_path(dir);
            let started = server::start(device, &path, dir)?;
            helpers.push(started.process);
            socket = Some(started.socket);
        }

        let args = self.arguments(spec, socket.as_deref());
        dir.write_command_file(&self.qemu, &args)?;
        let stderr_path = dir.vm_stderr_log();
        let stderr =
            std::fs::File::create(&stderr_path).map_err(|source| LaunchError::RunFile {
                path: stderr_path,
                source,
            })?;
        let mut command = Command::new(&self.qemu);
        command
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let started = Instant::now();
        let mut vm = GroupChild::spawn("qemu", &mut command)?;
        let serial = vm.take_stdout().ok_or(LaunchError::NoSerial)?;
        Ok(LaunchedVm {
            vm,
            serial,
            helpers,
            socket,
            started,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> BootSpec {
        BootSpec::test(
            Path::new("/k/vmlinuz"),
            Path::new("/i/initrd.cpio.gz"),
            &["init"],
        )
    }

    fn value_after<'a>(args: &'a [OsString], option: &str) -> Vec<&'a OsStr> {
        args.windows(2)
            .filter(|pair| pair[0] == option)
            .map(|pair| pair[1].as_os_str())
            .collect()
    }

    #[test]
    fn guest_ram_is_a_shared_memfd_used_by_the_machine() {
        let args = QemuTcg::new(Path::new("qemu")).arguments(&spec(), None);
        assert_eq!(
            value_after(&args, "-object"),
            ["memory-backend-memfd,id=mem,size=512M,share=on"]
        );
        assert_eq!(value_after(&args, "-machine"), ["pc,memory-backend=mem"]);
        assert_eq!(value_after(&args, "-m"), ["512M"]);
    }

    #[test]
    fn tcg_with_serial_on_stdio_and_no_reboot() {
        let args = QemuTcg::new(Path::new("qemu")).arguments(&spec(), None);
        assert_eq!(value_after(&args, "-accel"), ["tcg"]);
        assert_eq!(value_after(&args, "-serial"), ["stdio"]);
        assert!(args.iter().any(|a| a == "-no-reboot"));
    }

    #[test]
    fn kernel_initrd_and_cmdline_are_passed_through() {
        let spec = spec();
        let args = QemuTcg::new(Path::new("qemu")).arguments(&spec, None);
        assert_eq!(value_after(&args, "-kernel"), ["/k/vmlinuz"]);
        assert_eq!(value_after(&args, "-initrd"), ["/i/initrd.cpio.gz"]);
        assert_eq!(value_after(&args, "-append"), [spec.cmdline.as_str()]);
    }

    #[test]
    fn no_device_without_a_socket() {
        let args = QemuTcg::new(Path::new("qemu")).arguments(&spec(), None);
        assert!(value_after(&args, "-device").is_empty());
    }

    #[test]
    fn device_is_a_vfio_user_pci_function_on_the_socket() {
        let args =
            QemuTcg::new(Path::new("qemu")).arguments(&spec(), Some(Path::new("/run/x.sock")));
        assert_eq!(
            value_after(&args, "-device"),
            [r#"{"driver":"vfio-user-pci","socket":{"path":"/run/x.sock","type":"unix"}}"#]
        );
    }

    #[test]
    fn quotes_and_backslashes_in_the_socket_path_are_escaped() {
        let json = vfio_user_device_json(Path::new("/tmp/a\"b\\c"));
        assert_eq!(
            json,
            r#"{"driver":"vfio-user-pci","socket":{"path":"/tmp/a\"b\\c","type":"unix"}}"#
        );
    }

    #[test]
    fn extra_arguments_come_last() {
        let qemu = QemuTcg::new(Path::new("qemu")).with_extra_args(["-d", "guest_errors"]);
        let args = qemu.arguments(&spec(), None);
        assert_eq!(&args[args.len() - 2..], ["-d", "guest_errors"]);
    }
}
