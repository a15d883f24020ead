//! The monitor on real `/dev/kvm` with a guest of a few instructions instead of Linux: the 64-bit boot
//! state, the serial console, PCI configuration mechanism #1 with VMMDev in slot 4, the exit counters and
//! the end of a run through the keyboard controller's reset line. Skipped (with a `SKIPPED:` line) where
//! `/dev/kvm` cannot be opened.

use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use vmmdev_hgcm::{Hgcm, HgcmConfig};
use vmmdev_monitor::exits::ExitKind;
use vmmdev_monitor::intx::IntxMode;
use vmmdev_monitor::loader::{BootSource, KernelFormat};
use vmmdev_monitor::vm::{Vm, VmConfig, VmExit};

/// Where the ELF places the code (and its entry point), as a Linux vmlinux would.
const ENTRY: u64 = 0x100_0000;

/// Prints 'K', reads the vendor/device dword of 00:04.0 through 0xCF8/0xCFC and prints its four bytes,
/// then pulses the i8042 reset line.
const GUEST: &[u8] = &[
    0x66, 0xba, 0xf8, 0x03, // mov dx, 0x3f8
    0xb0, b'K', // mov al, 'K'
    0xee, // out dx, al
    0x66, 0xba, 0xf8, 0x0c, // mov dx, 0xcf8
    0xb8, 0x00, 0x20, 0x00, 0x80, // mov eax, 0x8000_2000 (bus 0, device 4, function 0, register 0)
    0xef, // out dx, eax
    0x66, 0xba, 0xfc, 0x0c, // mov dx, 0xcfc
    0xed, // in eax, dx
    0x66, 0xba, 0xf8, 0x03, // mov dx, 0x3f8
    0xee, // out dx, al
    0xc1, 0xe8, 0x08, // shr eax, 8
    0xee, // out dx, al
    0xc1, 0xe8, 0x08, // shr eax, 8
    0xee, // out dx, al
    0xc1, 0xe8, 0x08, // shr eax, 8
    0xee, // out dx, al
    0xb0, 0xfe, // mov al, 0xfe
    0xe6, 0x64, // out 0x64, al
    0xf4, // hlt
    0xeb, 0xfd, // jmp back to hlt
];

fn kvm_or_skip(test: &str) -> bool {
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
fn elf(code: &[u8]) -> Vec<u8> {
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

/// Forwards what the guest writes on its serial console.
struct Console(mpsc::Sender<u8>);

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

#[test]
fn bare_guest_reads_vmmdev_identity_through_conf1_and_resets_the_machine() {
    let test = "bare_guest_reads_vmmdev_identity_through_conf1_and_resets_the_machine";
    if !kvm_or_skip(test) {
        return;
    }
    let kernel = std::env::temp_dir().join(format!("vmmdev-monitor-bare-{}.elf", std::process::id()));
    std::fs::write(&kernel, elf(GUEST)).unwrap();
    let (sender, receiver) = mpsc::channel();
    let config = VmConfig {
        memory_mib: 128,
        vcpus: 1,
        boot: BootSource {
            kernel: PathBuf::from(&kernel),
            initrd: None,
            cmdline: String::new(),
        },
        intx: IntxMode::Irqfd,
        console_output: Box::new(Console(sender)),
        console_input: None,
    };
    let hgcm = Hgcm::new(HgcmConfig::default());

    let mut vm = Vm::new(config, hgcm.clone()).unwrap();
    let stop = vm.stop_handle();
    let watchdog = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(120));
        stop.stop();
    });
    let (exit, times) = vm.run().unwrap();
    std::fs::remove_file(&kernel).unwrap();
    drop(watchdog);

    assert_eq!(vm.entry().format, KernelFormat::Elf);
    assert_eq!(vm.entry().rip, ENTRY);
    assert_eq!(exit, VmExit::Reset);
    assert!(times.to_first_entry.is_some());
    let console: Vec<u8> = receiver.try_iter().collect();
    assert_eq!(console, [b'K', 0xee, 0x80, 0xfe, 0xca]);
    let exits = vm.counters().snapshot();
    assert_eq!(exits.of(ExitKind::Serial), 5);
    assert_eq!(exits.of(ExitKind::PciConfig), 2);
    drop(vm);
    hgcm.shutdown();
}
