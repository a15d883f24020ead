//! What the bare-guest tests share: the ELF they boot, the console they read and the skip where
//! `/dev/kvm` is missing.

use std::io::Write;
use std::sync::mpsc;

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
