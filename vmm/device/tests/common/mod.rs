//! A bare harness for driving the device with raw bytes placed in guest memory.

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress, GuestMemoryAtomic, GuestMemoryMmap};
use vmmdev_device::{InterruptLine, VmmDev, VmmDevConfig};
use vmmdev_hgcm::{Hgcm, HgcmConfig, Parm};
use vmmdev_protocol::hgcm::{HgcmParameter, ParameterType, Width};

/// Guest RAM size of the harness.
pub const RAM_SIZE: usize = 4 << 20;
/// Where the harness builds requests by default.
pub const REQ: u64 = 0x1_0000;

/// An interrupt line that records its level and transitions.
#[derive(Debug, Default)]
pub struct Line {
    pub level: AtomicBool,
    pub raises: AtomicU32,
}

impl InterruptLine for Line {
    fn set_level(&self, asserted: bool) {
        if asserted && !self.level.swap(true, Ordering::SeqCst) {
            self.raises.fetch_add(1, Ordering::SeqCst);
        } else if !asserted {
            self.level.store(false, Ordering::SeqCst);
        }
    }
}

pub struct Vm {
    pub dev: VmmDev,
    pub mem: Arc<GuestMemoryMmap>,
    pub atomic: GuestMemoryAtomic<GuestMemoryMmap>,
    pub line: Arc<Line>,
}

pub fn hgcm() -> Hgcm {
    let hgcm = Hgcm::new(HgcmConfig::default());
    hgcm.register_builtin(vmmdev_svc_echo::echo_entry, "")
        .expect("register Echo");
    hgcm
}

pub fn vm() -> Vm {
    vm_with(VmmDevConfig::default())
}

pub fn vm_with(config: VmmDevConfig) -> Vm {
    let mem = Arc::new(
        GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), RAM_SIZE)]).expect("guest RAM"),
    );
    let atomic = GuestMemoryAtomic::from(mem.clone());
    let line = Arc::new(Line::default());
    let dev = VmmDev::builder(atomic.clone(), hgcm(), line.clone())
        .config(config)
        .build()
        .expect("device");
    Vm {
        dev,
        mem,
        atomic,
        line,
    }
}

/// A request of `size` bytes as Linux builds it: 0xAA everywhere, then the header.
pub fn request(size: u32, request_type: u32) -> Vec<u8> {
    let mut bytes = vec![0xAA; size.max(24) as usize];
    bytes[0..4].copy_from_slice(&size.to_le_bytes());
    bytes[4..8].copy_from_slice(&0x0001_0001u32.to_le_bytes());
    bytes[8..12].copy_from_slice(&request_type.to_le_bytes());
    bytes[12..16].copy_from_slice(&(-1i32).to_le_bytes());
    bytes[16..20].copy_from_slice(&0u32.to_le_bytes());
    bytes[20..24].copy_from_slice(&1u32.to_le_bytes());
    bytes.truncate(size.max(24) as usize);
    bytes
}

pub fn set_u32(bytes: &mut [u8], offset: usize, value: u32) {
    bytes[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
}

pub fn set_u64(bytes: &mut [u8], offset: usize, value: u64) {
    bytes[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
}

/// A 64-bit HGCM parameter.
pub fn parm(p: HgcmParameter) -> [u8; 16] {
    let mut out = [0u8; 16];
    p.encode(Width::W64, &mut out).expect("encode");
    out
}

pub fn page_list_parm(size: u32, offset: u32) -> [u8; 16] {
    parm(HgcmParameter::PageList {
        kind: ParameterType::PAGE_LIST,
        size,
        offset,
    })
}

/// A page-list descriptor.
pub fn page_list(flags: u32, first_offset: u16, pages: &[u64]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&first_offset.to_le_bytes());
    out.extend_from_slice(&(pages.len() as u16).to_le_bytes());
    for page in pages {
        out.extend_from_slice(&page.to_le_bytes());
    }
    out
}

/// An HGCM Call64 with `params` and `extra` appended after the parameter array.
pub fn call64(client: u32, function: u32, params: &[[u8; 16]], extra: &[u8]) -> Vec<u8> {
    let size = 44 + 16 * params.len() + extra.len();
    let mut bytes = request(size as u32, 63);
    set_u32(&mut bytes, 24, 0);
    set_u32(&mut bytes, 28, 0);
    set_u32(&mut bytes, 32, client);
    set_u32(&mut bytes, 36, function);
    set_u32(&mut bytes, 40, params.len() as u32);
    for (i, p) in params.iter().enumerate() {
        bytes[44 + 16 * i..60 + 16 * i].copy_from_slice(p);
    }
    bytes[44 + 16 * params.len()..].copy_from_slice(extra);
    bytes
}

/// Offset of the extra area of a Call64 with `n` parameters.
pub fn extra_offset(n: usize) -> u32 {
    (44 + 16 * n) as u32
}

impl Vm {
    pub fn put(&self, gpa: u64, bytes: &[u8]) {
        self.mem.write_slice(bytes, GuestAddress(gpa)).expect("put");
    }

    pub fn get(&self, gpa: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0; len];
        self.mem
            .read_slice(&mut out, GuestAddress(gpa))
            .expect("get");
        out
    }

    pub fn u32_at(&self, gpa: u64) -> u32 {
        let mut b = [0u8; 4];
        self.mem.read_slice(&mut b, GuestAddress(gpa)).expect("u32");
        u32::from_le_bytes(b)
    }

    pub fn rc(&self, gpa: u64) -> i32 {
        self.u32_at(gpa + 12) as i32
    }

    pub fn result(&self, gpa: u64) -> i32 {
        self.u32_at(gpa + 28) as i32
    }

    pub fn done(&self, gpa: u64) -> bool {
        self.u32_at(gpa + 24) & 1 != 0
    }

    /// Places `bytes` at `gpa`, submits, returns `rc`.
    pub fn send(&self, gpa: u64, bytes: &[u8]) -> i32 {
        self.put(gpa, bytes);
        self.dev.submit_request(gpa);
        self.rc(gpa)
    }

    /// Reports guest info like Linux (INFO2 then INFO), opening the request gate.
    pub fn report(&self) {
        let mut info2 = request(168, 58);
        info2[24..26].copy_from_slice(&6u16.to_le_bytes());
        info2[26..28].copy_from_slice(&0u16.to_le_bytes());
        set_u32(&mut info2, 28, 0);
        set_u32(&mut info2, 32, 127_566);
        set_u32(&mut info2, 36, 1);
        info2[40..46].copy_from_slice(b"6.0.0\0");
        assert_eq!(self.send(REQ, &info2), 0);
        let mut info = request(32, 50);
        set_u32(&mut info, 24, 0x0001_0004);
        set_u32(&mut info, 28, 0x0005_3100);
        assert_eq!(self.send(REQ, &info), 0);
    }

    /// Waits for DONE on the request at `gpa`.
    pub fn wait_done(&self, gpa: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.done(gpa) {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }

    /// Connects to Echo through a raw request at `gpa`; returns the client ID.
    pub fn connect(&self, gpa: u64) -> u32 {
        let mut req = request(168, 60);
        set_u32(&mut req, 24, 0);
        set_u32(&mut req, 32, 2);
        req[36..36 + 5].copy_from_slice(b"Echo\0");
        set_u32(&mut req, 164, 0);
        assert_eq!(self.send(gpa, &req), 2903);
        assert!(self.wait_done(gpa));
        assert_eq!(self.result(gpa), 0);
        self.u32_at(gpa + 164)
    }

    /// Number of parked Echo WAIT calls.
    pub fn waiters(&self) -> u32 {
        let mut params = [Parm::U32(0)];
        self.dev
            .hgcm()
            .host_call(
                vmmdev_svc_echo::SERVICE_NAME,
                vmmdev_svc_echo::HOST_FN_WAITER_COUNT,
                &mut params,
            )
            .expect("host call");
        params[0].as_u32().unwrap_or(0)
    }

    /// Wakes every parked Echo WAIT call.
    pub fn wake_all(&self) {
        let mut params = [Parm::U32(0)];
        let _ = self.dev.hgcm().host_call(
            vmmdev_svc_echo::SERVICE_NAME,
            vmmdev_svc_echo::HOST_FN_WAKE_ALL,
            &mut params,
        );
    }

    /// Waits until `n` WAIT calls are parked.
    pub fn wait_waiters(&self, n: u32) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.waiters() != n {
            assert!(Instant::now() < deadline, "waiters never reached {n}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
