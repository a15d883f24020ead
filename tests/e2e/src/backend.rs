//! What a VM run needs from a monitor: the [`Backend`] trait and the description of one boot.
//!
//! A backend starts one VM with the guest image and, optionally, the VMMDev device. Today that is QEMU under
//! TCG with the device served by the `vmmdev-vfio-user` process ([`crate::qemu::QemuTcg`]); the project's
//! own KVM monitor will be a second backend with the device in-process. Everything after the start (serial
//! capture, timeout, parsing, clean-up) is shared and lives in [`crate::runner`].

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ChildStdout;
use std::time::{Duration, Instant};

use crate::process::{GroupChild, ProcessError};

/// Guest memory given to the VM unless a test asks otherwise.
pub const DEFAULT_MEMORY_MIB: u32 = 512;

/// How the guest's `/init` behaves (kernel parameter `vmmdev.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestMode {
    /// Run the steps, report, power off.
    Test,
    /// Run the steps, then open a shell on the console.
    Demo,
}

/// One boot: kernel, image, command line, memory and the device.
#[derive(Debug, Clone)]
pub struct BootSpec {
    /// The kernel image (bzImage).
    pub kernel: PathBuf,
    /// The initramfs.
    pub initrd: PathBuf,
    /// The kernel command line.
    pub cmdline: String,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// The VMMDev device, or `None` to boot without it.
    pub device: Option<DeviceServer>,
}

impl BootSpec {
    /// A test-mode boot that runs `steps` in order, without the device.
    pub fn test(kernel: &Path, initrd: &Path, steps: &[&str]) -> Self {
        Self {
            kernel: kernel.to_owned(),
            initrd: initrd.to_owned(),
            cmdline: guest_cmdline(GuestMode::Test, steps),
            memory_mib: DEFAULT_MEMORY_MIB,
            device: None,
        }
    }

    /// The same boot with the VMMDev device served by `device`.
    pub fn with_device(mut self, device: DeviceServer) -> Self {
        self.device = Some(device);
        self
    }
}

/// The kernel command line for the guest image: serial console, quiet kernel, a panic ends the VM, and the
/// `/init` parameters (see `tests/e2e/guest/init`). An empty `steps` runs every registered step.
pub fn guest_cmdline(mode: GuestMode, steps: &[&str]) -> String {
    let mode = match mode {
        GuestMode::Test => "test",
        GuestMode::Demo => "demo",
    };
    let steps = if steps.is_empty() {
        "all".to_owned()
    } else {
        steps.join(",")
    };
    format!("console=ttyS0 quiet panic=-1 vmmdev.mode={mode} vmmdev.steps={steps}")
}

/// A device model in a separate process, reached over a vfio-user socket.
#[derive(Debug, Clone)]
pub struct DeviceServer {
    /// The server program (`vmmdev-vfio-user`); it is started as `PROGRAM --socket PATH ARGS...`.
    pub program: PathBuf,
    /// Further arguments.
    pub args: Vec<OsString>,
    /// Further environment variables (for example `RUST_LOG`).
    pub env: Vec<(OsString, OsString)>,
    /// How long the server may take to create its socket.
    pub socket_wait: Duration,
}

impl DeviceServer {
    /// The server `program` with no further arguments and a 10 s socket wait.
    pub fn new(program: &Path) -> Self {
        Self {
            program: program.to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            socket_wait: Duration::from_secs(10),
        }
    }
}

/// The files of one run, all in one directory.
#[derive(Debug, Clone)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// The run directory `path` (created by the runner).
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
        }
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Everything the guest wrote on its serial console.
    pub fn serial_log(&self) -> PathBuf {
        self.path.join("serial.log")
    }

    /// Standard output and error of the device server.
    pub fn server_log(&self) -> PathBuf {
        self.path.join("server.log")
    }

    /// The VM's command line, one argument per line, to repeat a run by hand.
    pub fn command_file(&self) -> PathBuf {
        self.path.join("command.txt")
    }

    /// Writes `program` and `args` to [`Self::command_file`], one per line.
    pub fn write_command_file(&self, program: &Path, args: &[OsString]) -> Result<(), LaunchError> {
        use std::io::Write;
        use std::os::unix::ffi::OsStrExt;

        let path = self.command_file();
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&path)?;
            file.write_all(program.as_os_str().as_bytes())?;
            for arg in args {
                file.write_all(b"\n")?;
                file.write_all(arg.as_bytes())?;
            }
            file.write_all(b"\n")
        };
        write().map_err(|source| LaunchError::RunFile {
            path: path.clone(),
            source,
        })
    }

    /// Standard error of the VM process.
    pub fn vm_stderr_log(&self) -> PathBuf {
        self.path.join("vm-stderr.log")
    }
}

/// A started VM.
#[derive(Debug)]
pub struct LaunchedVm {
    /// The VM process; its standard output is the guest's serial console.
    pub vm: GroupChild,
    /// The guest's serial console.
    pub serial: ChildStdout,
    /// Processes serving the VM (the device server), killed together with it.
    pub helpers: Vec<GroupChild>,
    /// The device socket, removed after the run.
    pub socket: Option<PathBuf>,
    /// When the VM process was started.
    pub started: Instant,
}

/// Errors of starting a VM.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// A process could not be started.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// A run file could not be written.
    #[error("cannot write {path}")]
    RunFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The device server ended before it created its socket.
    #[error("the device server exited ({status}) before creating {socket}; see {log}")]
    ServerExited {
        /// How it ended.
        status: std::process::ExitStatus,
        /// The socket it should have created.
        socket: PathBuf,
        /// Its log.
        log: PathBuf,
    },
    /// The device server did not create its socket in time.
    #[error("the device server did not create {socket} within {waited:?}; see {log}")]
    SocketTimeout {
        /// The socket it should have created.
        socket: PathBuf,
        /// How long the runner waited.
        waited: Duration,
        /// Its log.
        log: PathBuf,
    },
    /// The VM process did not give a pipe for its serial console.
    #[error("the VM process has no serial console pipe")]
    NoSerial,
}

/// A virtual machine monitor that can boot the guest image.
pub trait Backend {
    /// A short name for logs and reports (e.g. `qemu-tcg`).
    fn name(&self) -> &str;

    /// Starts the VM described by `spec`, with its files in `dir`.
    ///
    /// The VM process must write the guest's serial console to its standard output (piped) and must be
    /// a [`GroupChild`], as must every helper it starts, so that the runner can end them all.
    fn launch(&self, spec: &BootSpec, dir: &RunDir) -> Result<LaunchedVm, LaunchError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_cmdline_lists_the_steps_in_order() {
        let cmdline = guest_cmdline(GuestMode::Test, &["init", "pci-identity"]);
        assert!(cmdline.contains(" vmmdev.mode=test "));
        assert!(cmdline.ends_with(" vmmdev.steps=init,pci-identity"));
    }

    #[test]
    fn no_steps_means_all_steps() {
        assert!(guest_cmdline(GuestMode::Demo, &[]).ends_with("vmmdev.mode=demo vmmdev.steps=all"));
    }

    #[test]
    fn cmdline_puts_the_console_on_the_first_serial_port_and_ends_the_vm_on_panic() {
        let cmdline = guest_cmdline(GuestMode::Test, &[]);
        assert!(cmdline.split(' ').any(|p| p == "console=ttyS0"));
        assert!(cmdline.split(' ').any(|p| p == "panic=-1"));
    }
}
