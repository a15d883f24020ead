//! Drives the real device with arbitrary bytes placed in guest memory.
//!
//! Input layout: `[op count][ops: count × (kind, offset lo, offset hi)][guest memory image]`.
//! The image is written at `IMAGE` before the operations run; each operation then submits a
//! request inside the image (optionally with the live Echo client ID patched in, so calls
//! reach the service), reads the fast-acknowledge port, writes configuration space or feeds
//! the backdoor port. The device is reset between inputs, which also drops the previous
//! input's pending HGCM calls.

#![no_main]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use vm_device::DevicePio;
use vm_device::bus::PioAddress;
use vm_memory::{Bytes, GuestAddress, GuestMemoryAtomic, GuestMemoryMmap};
use vmmdev_device::{InterruptLine, VmmDev};
use vmmdev_hgcm::{Hgcm, HgcmConfig};

const RAM_SIZE: usize = 2 << 20;
const SETUP: u64 = 0x1000;
const IMAGE: u64 = 0x10000;
const MAX_IMAGE: usize = 256 << 10;

struct Line(AtomicBool);

impl InterruptLine for Line {
    fn set_level(&self, asserted: bool) {
        self.0.store(asserted, Ordering::Relaxed);
    }
}

struct Harness {
    device: VmmDev,
    mem: Arc<GuestMemoryMmap>,
}

fn harness() -> &'static Mutex<Harness> {
    static HARNESS: OnceLock<Mutex<Harness>> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let mem = Arc::new(
            GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), RAM_SIZE)]).expect("RAM"),
        );
        let hgcm = Hgcm::new(HgcmConfig::default());
        hgcm.register_builtin(vmmdev_svc_echo::echo_entry, "")
            .expect("Echo");
        let device = VmmDev::builder(
            GuestMemoryAtomic::from(mem.clone()),
            hgcm,
            Arc::new(Line(AtomicBool::new(false))),
        )
        .build()
        .expect("device");
        Mutex::new(Harness { device, mem })
    })
}

fn header(size: u32, request_type: u32) -> Vec<u8> {
    let mut bytes = vec![0u8; size as usize];
    bytes[0..4].copy_from_slice(&size.to_le_bytes());
    bytes[4..8].copy_from_slice(&0x0001_0001u32.to_le_bytes());
    bytes[8..12].copy_from_slice(&request_type.to_le_bytes());
    bytes[20..24].copy_from_slice(&1u32.to_le_bytes());
    bytes
}

impl Harness {
    fn send(&self, gpa: u64, bytes: &[u8]) {
        let _ = self.mem.write_slice(bytes, GuestAddress(gpa));
        self.device.submit_request(gpa);
    }

    /// Opens the request gate and connects to Echo; returns the client ID (0 on failure).
    fn boot(&self) -> u32 {
        let mut info2 = header(168, 58);
        info2[24..26].copy_from_slice(&6u16.to_le_bytes());
        info2[32..36].copy_from_slice(&127_566u32.to_le_bytes());
        info2[36..40].copy_from_slice(&1u32.to_le_bytes());
        info2[40..46].copy_from_slice(b"6.0.0\0");
        self.send(SETUP, &info2);
        let mut info = header(32, 50);
        info[24..28].copy_from_slice(&0x0001_0004u32.to_le_bytes());
        self.send(SETUP, &info);
        let mut connect = header(168, 60);
        connect[32..36].copy_from_slice(&2u32.to_le_bytes());
        connect[36..41].copy_from_slice(b"Echo\0");
        self.send(SETUP, &connect);
        for _ in 0..10_000 {
            let mut flags = [0u8; 4];
            let _ = self.mem.read_slice(&mut flags, GuestAddress(SETUP + 24));
            if u32::from_le_bytes(flags) & 1 != 0 {
                let mut id = [0u8; 4];
                let _ = self.mem.read_slice(&mut id, GuestAddress(SETUP + 164));
                return u32::from_le_bytes(id);
            }
            std::thread::yield_now();
        }
        0
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(harness) = harness().lock() else {
        return;
    };
    harness.device.reset();
    let client = harness.boot();

    let Some((&count, rest)) = data.split_first() else {
        return;
    };
    let ops_len = (count as usize % 16) * 3;
    if rest.len() < ops_len {
        return;
    }
    let (ops, image) = rest.split_at(ops_len);
    let image = &image[..image.len().min(MAX_IMAGE)];
    let _ = harness.mem.write_slice(image, GuestAddress(IMAGE));

    for op in ops.chunks_exact(3) {
        let offset = u64::from(u16::from_le_bytes([op[1], op[2]]));
        let gpa = IMAGE + offset;
        match op[0] % 6 {
            0 => harness.device.submit_request(gpa),
            1 => {
                // An HGCM request aimed at the live client.
                let _ = harness
                    .mem
                    .write_slice(&client.to_le_bytes(), GuestAddress(gpa + 32));
                harness.device.submit_request(gpa);
            }
            2 => {
                let mut data = [0u8; 4];
                harness
                    .device
                    .pio_read(PioAddress(0xD000), (offset % 16) as u16, &mut data);
            }
            3 => {
                let value = image.get(offset as usize % image.len().max(1)).copied();
                harness
                    .device
                    .pci_config_write(offset % 0x110, &[value.unwrap_or(0xFF); 4]);
            }
            4 => harness.device.pio_write(PioAddress(0x504), 0, &[op[1]]),
            _ => harness.device.submit_request(offset << 8),
        }
    }
});
