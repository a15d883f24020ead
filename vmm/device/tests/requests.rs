//! Request handlers and HGCM parameter kinds, driven with raw requests in guest memory.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::*;
use vm_device::DevicePio;
use vm_device::bus::PioAddress;
use vm_memory::GuestAddress;
use vmmdev_device::{GuestVirtualTranslator, PointerState, VmmDev};
use vmmdev_protocol::Status;
use vmmdev_protocol::hgcm::{HgcmParameter, ParameterType, Width};
use vmmdev_protocol::vmmdev::Events;
use vmmdev_svc_echo::{FN_ECHO, FN_WAIT};

fn reported_vm() -> Vm {
    let vm = vm();
    vm.report();
    vm
}

fn set_filter(vm: &Vm, or_mask: u32, not_mask: u32) {
    let mut req = request(32, 42);
    set_u32(&mut req, 24, or_mask);
    set_u32(&mut req, 28, not_mask);
    assert_eq!(vm.send(0x4000, &req), 0);
}

#[test]
fn host_version_reports_every_implemented_feature() {
    let vm = vm();
    assert_eq!(vm.send(REQ, &request(40, 4)), 0);
    assert_eq!(vm.u32_at(REQ + 36), 0x8000_000F);
    assert_eq!(vm.get(REQ + 24, 4), [7, 0, 1, 0]);
}

#[test]
fn heartbeat_configure_is_refused_and_heartbeats_are_harmless() {
    let vm = reported_vm();
    let mut configure = request(36, 220);
    configure[32] = 1;
    assert_eq!(vm.send(REQ, &configure), Status::VERR_NOT_IMPLEMENTED.raw());
    for _ in 0..100 {
        assert_eq!(vm.send(REQ, &request(24, 219)), 0);
    }
}

#[test]
fn session_id_is_reported_and_changes_on_reset() {
    let vm = reported_vm();
    assert_eq!(vm.send(REQ, &request(32, 217)), 0);
    let first = u64::from_le_bytes(vm.get(REQ + 24, 8).try_into().unwrap());
    assert_eq!(first, vm.dev.session_id());
    vm.dev.reset();
    vm.report();
    assert_eq!(vm.send(REQ, &request(32, 217)), 0);
    let second = u64::from_le_bytes(vm.get(REQ + 24, 8).try_into().unwrap());
    assert_ne!(first, second);
}

#[test]
fn host_time_is_milliseconds_since_the_epoch() {
    let vm = reported_vm();
    assert_eq!(vm.send(REQ, &request(32, 10)), 0);
    let ms = u64::from_le_bytes(vm.get(REQ + 24, 8).try_into().unwrap());
    assert!(ms > 1_600_000_000_000, "{ms}");
}

#[test]
fn hypervisor_info_is_empty_and_only_empty_placements_succeed() {
    let vm = reported_vm();
    assert_eq!(vm.send(REQ, &request(32, 20)), 0);
    assert_eq!(vm.u32_at(REQ + 28), 0);
    let mut set = request(32, 21);
    set_u32(&mut set, 24, 0xC000_0000);
    set_u32(&mut set, 28, 0x40_0000);
    assert_eq!(vm.send(REQ, &set), Status::VERR_TRY_AGAIN.raw());
    set_u32(&mut set, 28, 0);
    assert_eq!(vm.send(REQ, &set), 0);
}

#[test]
fn core_dump_is_denied() {
    let vm = vm();
    let mut req = request(28, 218);
    set_u32(&mut req, 24, 0);
    assert_eq!(vm.send(REQ, &req), Status::VERR_ACCESS_DENIED.raw());
}

#[test]
fn mouse_status_reports_pointer_and_features() {
    let vm = reported_vm();
    let mut set = request(36, 2);
    set_u32(&mut set, 24, 0x11);
    assert_eq!(vm.send(REQ, &set), 0);
    vm.dev.set_pointer(PointerState {
        x: 0x1234,
        y: 0x5678,
        dz: -1,
        dw: 0,
        buttons: 1,
    });
    assert_eq!(vm.send(REQ, &request(36, 1)), 0);
    assert_eq!(vm.u32_at(REQ + 24), 0x11 | 0x20 | 0x100);
    assert_eq!(vm.u32_at(REQ + 28), 0x1234);
    assert_eq!(vm.u32_at(REQ + 32), 0x5678);
    assert_eq!(vm.send(REQ, &request(48, 223)), 0);
    assert_eq!(vm.u32_at(REQ + 36) as i32, -1);
    assert_eq!(vm.u32_at(REQ + 44), 1);
    assert_eq!(vm.send(REQ, &request(48, 223)), 0);
    assert_eq!(vm.u32_at(REQ + 36), 0, "wheel deltas are reported once");
}

#[test]
fn legacy_capability_report_always_adds_graphics() {
    let vm = reported_vm();
    let mut req = request(28, 55);
    set_u32(&mut req, 24, 1);
    assert_eq!(vm.send(REQ, &req), 0);
    assert_eq!(vm.dev.guest_state().capabilities, 0x5);
}

#[test]
fn user_state_reports_reach_subscribers() {
    let vm = reported_vm();
    let changes = vm.dev.subscribe();
    let mut req = request(40 + 6 + 1, 74);
    set_u32(&mut req, 24, 3);
    set_u32(&mut req, 28, 6);
    set_u32(&mut req, 32, 1);
    set_u32(&mut req, 36, 0);
    req[40..46].copy_from_slice(b"alice\0");
    req[46] = 0;
    assert_eq!(vm.send(REQ, &req), 0);
    let user = vm.dev.guest_state().user_state.unwrap();
    assert_eq!((user.state, user.user.as_str()), (3, "alice"));
    assert_eq!(changes.try_iter().count(), 1);
}

#[test]
fn balloon_request_is_read_with_ack_and_chunks_are_tracked() {
    let vm = reported_vm();
    set_filter(&vm, 0x40, 0);
    vm.dev.set_balloon_target(2);
    assert!(vm.line.level.load(Ordering::SeqCst));
    let mut get = request(36, 111);
    set_u32(&mut get, 32, 0x40);
    assert_eq!(vm.send(REQ, &get), 0);
    assert_eq!(vm.u32_at(REQ + 24), 2);
    assert_eq!(vm.u32_at(REQ + 28), (RAM_SIZE >> 20) as u32);
    let mut change = request(2080, 113);
    set_u32(&mut change, 24, 256);
    set_u32(&mut change, 28, 1);
    for i in 0..256u64 {
        set_u64(&mut change, 32 + 8 * i as usize, 0x20_0000 + 0x1000 * i);
    }
    let changes = vm.dev.subscribe();
    assert_eq!(vm.send(REQ, &change), 0);
    assert_eq!(changes.try_iter().count(), 1);
    set_u32(&mut change, 28, 0);
    assert_eq!(vm.send(REQ, &change), 0);
    assert_eq!(vm.send(REQ, &change), Status::VERR_INVALID_PARAMETER.raw());
}

#[test]
fn fast_acknowledge_returns_events_and_lowers_the_line() {
    let vm = reported_vm();
    set_filter(&vm, 0x200, 0);
    vm.dev.raise_events(Events::MOUSE_POSITION_CHANGED);
    assert!(vm.line.level.load(Ordering::SeqCst));
    let mut data = [0u8; 4];
    vm.dev.pio_read(PioAddress(0xD000), 8, &mut data);
    assert_eq!(u32::from_le_bytes(data), 0x200);
    assert!(!vm.line.level.load(Ordering::SeqCst));
    assert!(!vm.dev.ram().have_events());
}

#[test]
fn intx_disable_holds_the_line_low_but_keeps_events() {
    let vm = reported_vm();
    set_filter(&vm, 0x200, 0);
    vm.dev.pci_config_write(4, &(1u16 << 10).to_le_bytes());
    vm.dev.raise_events(Events::MOUSE_POSITION_CHANGED);
    assert!(!vm.line.level.load(Ordering::SeqCst));
    assert!(vm.dev.ram().have_events());
    let mut status = [0u8; 2];
    vm.dev.pci_config_read(6, &mut status);
    assert_eq!(
        u16::from_le_bytes(status) & 0x8,
        0x8,
        "interrupt status shows the internal state"
    );
    vm.dev.pci_config_write(4, &0u16.to_le_bytes());
    assert!(vm.line.level.load(Ordering::SeqCst));
}

#[test]
fn reset_lowers_the_line_and_clears_have_events() {
    let vm = reported_vm();
    set_filter(&vm, 0x200, 0);
    vm.dev.raise_events(Events::MOUSE_POSITION_CHANGED);
    assert!(vm.line.level.load(Ordering::SeqCst));
    vm.dev.reset();
    assert!(!vm.line.level.load(Ordering::SeqCst));
    assert!(!vm.dev.ram().have_events());
}

fn echo_call(client: u32, input: HgcmParameter, output: HgcmParameter, extra: &[u8]) -> Vec<u8> {
    call64(client, FN_ECHO, &[parm(input), parm(output)], extra)
}

#[test]
fn embedded_buffers_are_written_back_with_their_size() {
    let vm = reported_vm();
    let client = vm.connect(0x2000);
    let extra_at = extra_offset(2);
    let mut extra = b"ping".to_vec();
    extra.extend_from_slice(&[0xAA; 8]);
    let req = echo_call(
        client,
        HgcmParameter::Embedded {
            flags: 1,
            offset: extra_at,
            size: 4,
        },
        HgcmParameter::Embedded {
            flags: 2,
            offset: extra_at + 4,
            size: 8,
        },
        &extra,
    );
    assert_eq!(vm.send(REQ, &req), 2903);
    assert!(vm.wait_done(REQ));
    assert_eq!(vm.result(REQ), 0);
    assert_eq!(vm.get(REQ + u64::from(extra_at) + 4, 4), b"ping");
    assert_eq!(vm.u32_at(REQ + 44 + 16 + 8), 4, "cbData = reported size");
}

#[test]
fn contiguous_page_list_size_is_reported_back() {
    let vm = reported_vm();
    let client = vm.connect(0x2000);
    vm.put(0x8000, b"contiguous!");
    let extra_at = extra_offset(2);
    let mut extra = Vec::new();
    extra.extend_from_slice(&page_list(1, 0, &[0x8000]));
    extra.extend_from_slice(&page_list(2, 0, &[0xA000]));
    let req = echo_call(
        client,
        HgcmParameter::PageList {
            kind: ParameterType::CONTIGUOUS_PAGE_LIST,
            size: 11,
            offset: extra_at,
        },
        HgcmParameter::PageList {
            kind: ParameterType::CONTIGUOUS_PAGE_LIST,
            size: 0x2000,
            offset: extra_at + 16,
        },
        &extra,
    );
    assert_eq!(vm.send(REQ, &req), 2903);
    assert!(vm.wait_done(REQ));
    assert_eq!(vm.get(0xA000, 11), b"contiguous!");
    assert_eq!(vm.u32_at(REQ + 44 + 16 + 4), 11);
}

#[test]
fn page_list_size_is_never_rewritten() {
    let vm = reported_vm();
    let client = vm.connect(0x2000);
    vm.put(0x8000, b"abc");
    let extra_at = extra_offset(2);
    let mut extra = page_list(1, 0, &[0x8000]);
    extra.extend_from_slice(&page_list(2, 0, &[0xA000]));
    let req = echo_call(
        client,
        HgcmParameter::PageList {
            kind: ParameterType::PAGE_LIST,
            size: 3,
            offset: extra_at,
        },
        HgcmParameter::PageList {
            kind: ParameterType::PAGE_LIST,
            size: 100,
            offset: extra_at + 16,
        },
        &extra,
    );
    assert_eq!(vm.send(REQ, &req), 2903);
    assert!(vm.wait_done(REQ));
    assert_eq!(vm.u32_at(REQ + 44 + 16 + 4), 100, "H-4.5: size left alone");
    assert_eq!(vm.get(0xA000, 3), b"abc");
}

#[test]
fn call32_requests_are_served() {
    let vm = reported_vm();
    let client = vm.connect(0x2000);
    let mut req = request(44 + 24, 62);
    set_u32(&mut req, 24, 0);
    set_u32(&mut req, 32, client);
    set_u32(&mut req, 36, FN_WAIT);
    set_u32(&mut req, 40, 2);
    for i in 0..2 {
        let mut p = [0u8; 12];
        HgcmParameter::U32(0).encode(Width::W32, &mut p).unwrap();
        req[44 + 12 * i..56 + 12 * i].copy_from_slice(&p);
    }
    assert_eq!(vm.send(REQ, &req), 2903);
    vm.wait_waiters(1);
    vm.wake_all();
    assert!(vm.wait_done(REQ));
    assert_eq!(vm.result(REQ), 0);
    assert_eq!(vm.u32_at(REQ + 56 + 4), vmmdev_svc_echo::WAKE_REASON_HOST);
}

struct Identity;

impl GuestVirtualTranslator for Identity {
    fn translate(&self, gva: u64) -> Option<GuestAddress> {
        Some(GuestAddress(gva))
    }
}

#[test]
fn lin_addr_buffers_work_with_a_translator() {
    let mem = Arc::new(
        vm_memory::GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), RAM_SIZE)]).unwrap(),
    );
    let line = Arc::new(Line::default());
    let dev = VmmDev::builder(
        vm_memory::GuestMemoryAtomic::from(mem.clone()),
        hgcm(),
        line.clone(),
    )
    .translator(Arc::new(Identity))
    .build()
    .unwrap();
    let vm = Vm {
        dev,
        atomic: vm_memory::GuestMemoryAtomic::from(mem.clone()),
        mem,
        line,
    };
    vm.report();
    let client = vm.connect(0x2000);
    vm.put(0x8FF0, b"crosses a page");
    let req = echo_call(
        client,
        HgcmParameter::LinAddr {
            kind: ParameterType::LIN_ADDR_IN,
            size: 14,
            addr: 0x8FF0,
        },
        HgcmParameter::LinAddr {
            kind: ParameterType::LIN_ADDR_OUT,
            size: 14,
            addr: 0xC000,
        },
        &[],
    );
    assert_eq!(vm.send(REQ, &req), 2903);
    assert!(vm.wait_done(REQ));
    assert_eq!(vm.get(0xC000, 14), b"crosses a page");
}

#[test]
fn restore_completes_requests_that_can_no_longer_be_submitted() {
    let vm = reported_vm();
    let client = vm.connect(0x2000);
    vm.dev.pause();
    assert_eq!(
        vm.send(
            REQ,
            &call64(
                client,
                FN_WAIT,
                &[parm(HgcmParameter::U32(0)), parm(HgcmParameter::U32(0))],
                &[]
            )
        ),
        2903
    );
    let state = vm.dev.save().unwrap();
    // The guest memory no longer holds a call at that address.
    vm.put(REQ + 8, &4u32.to_le_bytes());
    vm.dev.restore(&state).unwrap();
    assert!(vm.done(REQ));
    assert_eq!(vm.result(REQ), Status::VERR_MISMATCH.raw());
    assert_eq!(vm.rc(REQ), Status::VERR_MISMATCH.raw());
}

#[test]
fn restore_raises_the_restored_event() {
    let vm = reported_vm();
    set_filter(&vm, 0x10, 0);
    vm.dev.pause();
    let state = vm.dev.save().unwrap();
    vm.dev.restore(&state).unwrap();
    let mut ack = request(28, 41);
    set_u32(&mut ack, 24, 0);
    assert_eq!(vm.send(0x4000, &ack), 0);
    assert_eq!(vm.u32_at(0x4000 + 24) & 0x10, 0x10);
}

#[test]
fn dropping_the_device_with_calls_pending_releases_it() {
    let vm = reported_vm();
    let client = vm.connect(0x2000);
    let wait = call64(
        client,
        FN_WAIT,
        &[parm(HgcmParameter::U32(0)), parm(HgcmParameter::U32(0))],
        &[],
    );
    assert_eq!(vm.send(REQ, &wait), 2903);
    vm.wait_waiters(1);
    let ram_file = vm.dev.ram().file().clone();
    let hgcm = vm.dev.hgcm().clone();
    drop(vm);
    assert_eq!(
        Arc::strong_count(&ram_file),
        1,
        "the framework's pending completion does not keep the device alive"
    );
    // The late completion finds no device and does nothing.
    let mut params = [vmmdev_hgcm::Parm::U32(0)];
    hgcm.host_call(
        vmmdev_svc_echo::SERVICE_NAME,
        vmmdev_svc_echo::HOST_FN_WAKE_ALL,
        &mut params,
    )
    .unwrap();
}

fn info_call(vm: &Vm, client: u32, requestor: u32) -> u32 {
    let mut req = call64(
        client,
        vmmdev_svc_echo::FN_INFO,
        &[
            parm(HgcmParameter::U32(0)),
            parm(HgcmParameter::U32(0)),
            parm(HgcmParameter::U32(0)),
        ],
        &[],
    );
    set_u32(&mut req, 20, requestor);
    assert_eq!(vm.send(REQ, &req), 2903);
    assert!(vm.wait_done(REQ));
    assert_eq!(vm.result(REQ), 0);
    vm.u32_at(REQ + 44 + 4)
}

#[test]
fn calls_carry_the_guest_requestor_once_announced() {
    let vm = reported_vm();
    let client = vm.connect(0x2000);
    assert_eq!(info_call(&vm, client, 0x808B), 0x808B);
}

#[test]
fn guests_without_requestor_info_are_legacy() {
    let vm = vm();
    let mut info2 = request(168, 58);
    info2[24..26].copy_from_slice(&6u16.to_le_bytes());
    info2[26..28].copy_from_slice(&0u16.to_le_bytes());
    set_u32(&mut info2, 28, 0);
    set_u32(&mut info2, 32, 0);
    set_u32(&mut info2, 36, 0);
    info2[40..46].copy_from_slice(b"6.0.0\0");
    assert_eq!(vm.send(REQ, &info2), 0);
    let mut info = request(32, 50);
    set_u32(&mut info, 24, 0x0001_0004);
    set_u32(&mut info, 28, 0);
    assert_eq!(vm.send(REQ, &info), 0);
    let client = vm.connect(0x2000);
    assert_eq!(info_call(&vm, client, 0x808B), 0xFFFF_FFFF);
}
