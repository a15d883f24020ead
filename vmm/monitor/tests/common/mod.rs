//! What the bare-guest tests share: the ELF they boot, the VM that boots it, the console they read and
//! the skip where `/dev/kvm` is missing.

use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc;

use vmmdev_hgcm::{Hgcm, HgcmConfig};
use vmmdev_monitor::intx::IntxMode;
use vmmdev_monitor::loader::BootSource;
use vmmdev_monitor::vm::{Vm, VmConfig};

/// Where the ELF places the code (and its entry point), as a Linux vmlinux would.
pub const ENTRY: u64 = 0x100_0000;

/// Whether `/dev/kvm` can be opened; prints the test's `SKIPPED:` line when not.
pub fn kvm_or_skip(test: &str) -> bool {
    let usable = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    if !usable {
        println!("SKIPPED: {test}: /dev/kvm cannot be opened");
    }
    usable
}

/// A minimal ELF64 executable with one loadable segment holding `code` at [`ENTRY`].
pub fn elf(code: &[u8]) -> Vec<u8> {
    const SEGMENT_OFFSET: u64 = 0x1000;
    let mut file = Vec::new();
    file.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    file.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    file.extend_from_slice(&0x3eu16.to_le_bytes()); // EM_X86_64
    file.extend_from_slice(&1u32.to_le_bytes());
    file.extend_from_slice(&ENTRY.to_le_bytes());
    file.extend_from_slice(&64u64.to_le_bytes()); // program headers right after this header
    file.extend_from_slice(&0u64.to_le_bytes()); // no section headers
    file.extend_from_slice(&0u32.to_le_bytes());
    file.extend_from_slice(&64u16.to_le_bytes());
    file.extend_from_slice(&56u16.to_le_bytes());
    file.extend_from_slice(&1u16.to_le_bytes());
    file.extend_from_slice(&[0; 6]);
    file.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    file.extend_from_slice(&5u32.to_le_bytes()); // R+X
    file.extend_from_slice(&SEGMENT_OFFSET.to_le_bytes());
    file.extend_from_slice(&ENTRY.to_le_bytes());
    file.extend_from_slice(&ENTRY.to_le_bytes());
    file.extend_from_slice(&(code.len() as u64).to_le_bytes());
    file.extend_from_slice(&(code.len() as u64).to_le_bytes());
    file.extend_from_slice(&0x1000u64.to_le_bytes());
    file.resize(SEGMENT_OFFSET as usize, 0);
    file.extend_from_slice(code);
    file
}

/// Forwards what the guest writes on its serial console, byte by byte.
pub struct Console(pub mpsc::Sender<u8>);

impl Write for Console {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        for &byte in bytes {
            let _ = self.0.send(byte);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A bare guest ready to run: the VM, its HGCM host (with the Echo service built in) and the bytes the
/// guest writes on its serial console.
pub struct BareVm {
    pub vm: Vm,
    pub hgcm: Hgcm,
    pub console: mpsc::Receiver<u8>,
}

/// Creates a 128 MiB VM on `vcpus` vCPUs that boots `code` at [`ENTRY`] as an ELF, with its INTx line
/// on an irqfd and the PVM system-call bridge as `syscall_bridge` says. `name` tells concurrent tests'
/// temporary kernel files apart.
pub fn bare_vm(name: &str, code: &[u8], vcpus: u8, syscall_bridge: bool) -> BareVm {
    let kernel =
        std::env::temp_dir().join(format!("vmmdev-monitor-{name}-{}.elf", std::process::id()));
    std::fs::write(&kernel, elf(code)).unwrap();
    let (sender, console) = mpsc::channel();
    let config = VmConfig {
        memory_mib: 128,
        vcpus,
        boot: BootSource {
            kernel: PathBuf::from(&kernel),
            initrd: None,
            cmdline: String::new(),
        },
        intx: IntxMode::Irqfd,
        syscall_bridge,
        console_output: Box::new(Console(sender)),
        console_input: None,
    };
    let hgcm = Hgcm::new(HgcmConfig::default());
    hgcm.register_builtin(vmmdev_svc_echo::echo_entry, "")
        .unwrap();
    let vm = Vm::new(config, hgcm.clone()).unwrap();
    std::fs::remove_file(&kernel).unwrap();
    BareVm { vm, hgcm, console }
}
