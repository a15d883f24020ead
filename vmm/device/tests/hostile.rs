//! Hostile guest input: every case must end in a VirtualBox status (or be ignored when the
//! protocol says nothing is written), never in a panic, a hang, unbounded allocation or an
//! access outside guest RAM.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use vm_device::bus::{MmioAddress, PioAddress};
use vm_device::{DeviceMmio, DevicePio};
use vm_memory::{GuestAddress, GuestMemoryMmap};
use vmmdev_device::{PendingLimits, VmmDevConfig};
use vmmdev_protocol::Status;
use vmmdev_protocol::hgcm::{HgcmParameter, ParameterType};
use vmmdev_svc_echo::{FN_ECHO, FN_NOOP, FN_WAIT};

const VERR_INVALID_PARAMETER: i32 = Status::VERR_INVALID_PARAMETER.raw();
const VERR_NOT_SUPPORTED: i32 = Status::VERR_NOT_SUPPORTED.raw();
const VERR_NOT_FOUND: i32 = Status::VERR_NOT_FOUND.raw();
const VERR_INVALID_FLAGS: i32 = Status::VERR_INVALID_FLAGS.raw();
const VERR_NO_MEMORY: i32 = Status::VERR_NO_MEMORY.raw();
const ASYNC: i32 = Status::VINF_HGCM_ASYNC_EXECUTE.raw();

fn reported_vm() -> Vm {
    let vm = vm();
    vm.report();
    vm
}

fn log_len(vm: &Vm) -> usize {
    vm.dev.request_log().len()
}

/// A call whose single parameter is a page list with the given descriptor bytes.
fn page_list_call(client: u32, size: u32, descriptor: &[u8]) -> Vec<u8> {
    call64(
        client,
        FN_ECHO,
        &[page_list_parm(size, extra_offset(1))],
        descriptor,
    )
}

fn wait_call(client: u32) -> Vec<u8> {
    call64(
        client,
        FN_WAIT,
        &[parm(HgcmParameter::U32(0)), parm(HgcmParameter::U32(0))],
        &[],
    )
}

fn cancel2(target: u32) -> Vec<u8> {
    let mut req = request(28, 65);
    set_u32(&mut req, 24, target);
    req
}

// --- Headers and transport -------------------------------------------------------------

#[test]
fn request_outside_guest_ram_is_ignored() {
    let vm = vm();
    vm.dev.submit_request(RAM_SIZE as u64 + 0x1000);
    vm.dev.submit_request(u64::MAX);
    assert_eq!(log_len(&vm), 0);
}

#[test]
fn header_straddling_the_end_of_ram_is_ignored() {
    let vm = vm();
    vm.dev.submit_request(RAM_SIZE as u64 - 8);
    assert_eq!(log_len(&vm), 0);
}

#[test]
fn port_write_of_all_ones_is_harmless() {
    let vm = vm();
    vm.dev
        .pio_write(PioAddress(0xD000), 0, &u32::MAX.to_le_bytes());
    vm.dev.pio_write(PioAddress(0xD000), 8, &[0xFF]);
    assert_eq!(log_len(&vm), 0);
}

#[test]
fn size_below_the_header_writes_nothing() {
    let vm = vm();
    let mut req = request(40, 4);
    set_u32(&mut req, 0, 23);
    assert_eq!(vm.send(REQ, &req), -1, "rc untouched");
    assert_eq!(vm.get(REQ + 24, 16), vec![0xAA; 16]);
}

#[test]
fn size_zero_writes_nothing() {
    let vm = vm();
    let mut req = request(40, 4);
    set_u32(&mut req, 0, 0);
    assert_eq!(vm.send(REQ, &req), -1);
}

#[test]
fn wrong_header_version_writes_nothing() {
    let vm = vm();
    let mut req = request(40, 4);
    set_u32(&mut req, 4, 0x0001_0002);
    assert_eq!(vm.send(REQ, &req), -1);
    assert_eq!(vm.get(REQ + 24, 16), vec![0xAA; 16]);
}

#[test]
fn oversize_request_gets_only_the_header_back() {
    let vm = vm();
    let mut req = request(64, 4);
    set_u32(&mut req, 0, (1 << 20) + 1);
    assert_eq!(vm.send(REQ, &req), VERR_NOT_SUPPORTED);
    assert_eq!(vm.get(REQ + 24, 40), vec![0xAA; 40], "body untouched");
}

#[test]
fn size_lie_beyond_the_end_of_ram_is_ignored() {
    let vm = vm();
    let gpa = RAM_SIZE as u64 - 0x100;
    let mut req = request(40, 4);
    set_u32(&mut req, 0, 0x1000);
    assert_eq!(vm.send(gpa, &req), -1);
}

#[test]
fn request_ending_exactly_at_the_end_of_ram_is_served() {
    let vm = vm();
    let gpa = RAM_SIZE as u64 - 40;
    assert_eq!(vm.send(gpa, &request(40, 4)), 0);
    assert_ne!(vm.u32_at(gpa + 36) & 1, 0);
}

#[test]
fn gated_request_gets_only_the_header_back() {
    let vm = vm();
    let mut req = request(32, 42);
    set_u32(&mut req, 24, 0x202);
    set_u32(&mut req, 28, !0x202);
    assert_eq!(vm.send(REQ, &req), VERR_NOT_SUPPORTED);
    assert_eq!(vm.u32_at(REQ + 24), 0x202, "body untouched");
}

#[test]
fn unknown_request_type_is_not_implemented() {
    let vm = reported_vm();
    assert_eq!(
        vm.send(REQ, &request(64, 9999)),
        Status::VERR_NOT_IMPLEMENTED.raw()
    );
}

#[test]
fn exact_size_mismatch_is_invalid_parameter() {
    let vm = vm();
    assert_eq!(vm.send(REQ, &request(44, 4)), VERR_INVALID_PARAMETER);
    assert_eq!(vm.send(REQ, &request(36, 4)), VERR_INVALID_PARAMETER);
}

#[test]
fn non_zero_reserved1_is_accepted() {
    let vm = vm();
    let mut req = request(40, 4);
    set_u32(&mut req, 16, 40);
    assert_eq!(vm.send(REQ, &req), 0);
}

#[test]
fn unterminated_additions_name_is_invalid() {
    let vm = vm();
    let mut info2 = request(168, 58);
    info2[24..26].copy_from_slice(&6u16.to_le_bytes());
    info2[26..28].copy_from_slice(&0u16.to_le_bytes());
    set_u32(&mut info2, 28, 0);
    assert_eq!(vm.send(REQ, &info2), VERR_INVALID_PARAMETER);
}

#[test]
fn unsupported_interface_version_keeps_the_gate_closed() {
    let vm = vm();
    let mut info = request(32, 50);
    set_u32(&mut info, 24, 0x0002_0000);
    set_u32(&mut info, 28, 0);
    assert_eq!(vm.send(REQ, &info), Status::VERR_VERSION_MISMATCH.raw());
    assert_eq!(vm.send(REQ, &request(28, 41)), VERR_NOT_SUPPORTED);
}

#[test]
fn facility_outside_the_valid_range_is_refused() {
    let vm = reported_vm();
    let mut status = request(36, 59);
    set_u32(&mut status, 24, 0);
    set_u32(&mut status, 28, 50);
    set_u32(&mut status, 32, 0);
    assert_eq!(vm.send(REQ, &status), VERR_INVALID_PARAMETER);
    set_u32(&mut status, 24, 20);
    set_u32(&mut status, 28, 0x1_0000);
    assert_eq!(vm.send(REQ, &status), Status::VERR_OUT_OF_RANGE.raw());
}

#[test]
fn user_state_size_lies_are_refused() {
    let vm = reported_vm();
    let mut state = request(48, 74);
    set_u32(&mut state, 24, 1);
    set_u32(&mut state, 28, 200);
    set_u32(&mut state, 32, 0);
    set_u32(&mut state, 36, 0);
    assert_eq!(vm.send(REQ, &state), VERR_INVALID_PARAMETER);
    let big = request(4096, 74);
    assert_eq!(vm.send(REQ, &big), Status::VERR_TOO_MUCH_DATA.raw());
}

#[test]
fn balloon_chunk_with_pages_outside_ram_is_refused() {
    let vm = reported_vm();
    let mut req = request(2080, 113);
    set_u32(&mut req, 24, 256);
    set_u32(&mut req, 28, 1);
    for i in 0..256 {
        set_u64(&mut req, 32 + 8 * i, RAM_SIZE as u64 + 0x1000 * i as u64);
    }
    assert_eq!(vm.send(REQ, &req), VERR_INVALID_PARAMETER);
}

#[test]
fn balloon_chunk_with_wrong_page_count_is_refused() {
    let vm = reported_vm();
    let mut req = request(2080, 113);
    set_u32(&mut req, 24, 255);
    assert_eq!(vm.send(REQ, &req), VERR_INVALID_PARAMETER);
}

#[test]
fn fast_acknowledge_before_guest_info_reads_all_ones() {
    let vm = vm();
    let mut data = [0u8; 4];
    vm.dev.pio_read(PioAddress(0xD000), 8, &mut data);
    assert_eq!(u32::from_le_bytes(data), u32::MAX);
    let mut narrow = [0u8; 2];
    vm.dev.pio_read(PioAddress(0xD000), 8, &mut narrow);
    assert_eq!(narrow, [0xFF; 2]);
}

#[test]
fn random_port_mmio_and_config_accesses_never_panic() {
    let vm = reported_vm();
    let mut seed = 0x0123_4567_89AB_CDEF_u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..2000 {
        let width = [0usize, 1, 2, 3, 4, 8, 300][next() as usize % 7];
        let mut data = vec![0u8; width];
        data.iter_mut().for_each(|b| *b = next() as u8);
        let offset = next();
        match next() % 6 {
            0 => vm
                .dev
                .pio_read(PioAddress(next() as u16), offset as u16, &mut data),
            1 => vm
                .dev
                .pio_write(PioAddress(0x504), offset as u16 % 2, &data),
            2 => vm.dev.mmio_read(MmioAddress(0), offset, &mut data),
            3 => vm.dev.mmio_write(MmioAddress(0), offset % (8 << 20), &data),
            4 => vm.dev.pci_config_read(offset % 0x2000, &mut data),
            _ => {
                vm.dev.pci_config_write(offset % 0x2000, &data);
            }
        }
    }
}

// --- HGCM submission -------------------------------------------------------------------

#[test]
fn truncated_connect_is_invalid() {
    let vm = reported_vm();
    assert_eq!(vm.send(REQ, &request(100, 60)), VERR_INVALID_PARAMETER);
}

#[test]
fn connect_with_unterminated_name_is_invalid() {
    let vm = reported_vm();
    let mut req = request(168, 60);
    set_u32(&mut req, 24, 0);
    set_u32(&mut req, 32, 2);
    assert_eq!(vm.send(REQ, &req), VERR_INVALID_PARAMETER);
}

#[test]
fn disconnect_of_client_zero_is_invalid() {
    let vm = reported_vm();
    let mut req = request(36, 61);
    set_u32(&mut req, 32, 0);
    assert_eq!(vm.send(REQ, &req), VERR_INVALID_PARAMETER);
}

#[test]
fn misaligned_hgcm_request_is_refused() {
    let vm = reported_vm();
    let client = vm.connect(0x2000);
    let req = call64(client, FN_NOOP, &[], &[]);
    assert_eq!(vm.send(REQ + 2, &req), VERR_INVALID_PARAMETER);
}

#[test]
fn call_to_an_unknown_client_fails_synchronously() {
    let vm = reported_vm();
    let req = call64(4242, FN_NOOP, &[], &[]);
    assert_eq!(
        vm.send(REQ, &req),
        Status::VERR_HGCM_INVALID_CLIENT_ID.raw()
    );
    assert_eq!(vm.dev.pending_hgcm_requests(), 0);
}

#[test]
fn parameter_count_beyond_the_request_is_invalid() {
    let vm = reported_vm();
    let client = vm.connect(0x2000);
    let mut req = call64(client, FN_NOOP, &[parm(HgcmParameter::U32(1))], &[]);
    set_u32(&mut req, 40, 2);
    assert_eq!(vm.send(REQ, &req), VERR_INVALID_PARAMETER);
}

#[test]
fn more_than_32_parameters_are_invalid() {
    let vm = reported_vm();
    let client = vm.connect(0x2000);
    let params = vec![parm(HgcmParameter::U32(1)); 33];
    assert_eq!(
        vm.send(REQ, &call64(client, FN_NOOP, &params, &[])),
        VERR_INVALID_PARAMETER
    );
}

#[test]
fn absurd_parameter_count_is_invalid() {
    let vm = reported_vm();
    let client = vm.connect(0x2000);
    let mut req = call64(client, FN_NOOP, &[], &[]);
    set_u32(&mut req, 40, u32::MAX);
    assert_eq!(vm.send(REQ, &req), VERR_INVALID_PARAMETER);
}

#[test]
fn rejected_parameter_types_are_invalid() {
    let vm = reported_vm();
    let client = vm.connect(0x2000);
    for ty in [0u32, 3, 14, 0xFFFF_FFFF] {
        let mut p = [0u8; 16];
        p[..4].copy_from_slice(&ty.to_le_bytes());
        assert_eq!(
            vm.send(REQ, &call64(client, FN_NOOP, &[p], &[])),
            VERR_INVALID_PARAMETER,
            "type {ty}"
        );
    }
}

#[test]
fn non_empty_kernel_lin_addr_is_invalid() {
    let vm = reported_vm();
    let client = vm.connect(0x2000);
    let p = parm(HgcmParameter::LinAddr {
        kind: ParameterType::LIN_ADDR_LOCKED_IN,
        size: 16,
        addr: 0x1000,
    });
    assert_eq!(
        vm.send(REQ, &call64(client, FN_NOOP, &[p], &[])),
        VERR_INVALID_PARAMETER
    );
}

#[test]
fn non_empty_lin_addr_without_translator_is_not_supported() {
    let vm = reported_vm();
    let client = vm.connect(0x2000);
    let p = parm(HgcmParameter::LinAddr {
        kind: ParameterType::LIN_ADDR_IN,
        size: 16,
        addr: 0x7fff_0000,
    });
    assert_eq!(
        vm.send(REQ, &call64(client, FN_NOOP, &[p], &[])),
        VERR_NOT_SUPPORTED
    );
}

#[test]
fn page_list_inside_the_parameter_array_is_invalid() {
    let vm = reported_vm();
    let client = vm.connect(0x2000);
    let req = call64(
        client,
        FN_ECHO,
        &[page_list_parm(16, 44)],
        &page_list(1, 0, &[0x3000]),
    );
    assert_eq!(vm.send(REQ, &req), VERR_INVALID_PARAMETER);
}

#[test]
fn page_list_beyond_the_request_is_invalid() {
    let vm = reported_vm();
    let client = vm.connect(0x2000);
    let req = call64(
        client,
        FN_ECHO,
        &[page_list_parm(16, 0xFFFF)],
        &page_list(1, 0, &[0x3000]),
    );
    assert_eq!(vm.send(REQ, &req), VERR_INVALID_PARAMETER);
}

#[test]
fn page_list_with_zero_pages_is_invalid() {
    let vm = reported_vm();
    let client = vm.connect(0x2000);
    let mut descriptor = page_list(1, 0, &[0x3000]);
    descriptor[6..8].copy_from_slice(&0u16.to_le_bytes());
    assert_eq!(
        vm.send(REQ, &page_list_call(client, 16, &descriptor)),
        VERR_INVALID_PARAMETER
    );
}

#[test]
fn page_list_with_absurd_page_count_is_invalid() {
    let vm = reported_vm();
    let client = vm.connect(0x2000);
    let mut descriptor = page_list(1, 0, &[0x3000]);
    descriptor[6..8].copy_from_slice(&u16::MAX.to_le_bytes());
    assert_eq!(
        vm.send(REQ, &page_list_call(client, 16, &descriptor)),
        VERR_INVALID_PARAMETER
    );
}

#[test]
fn page_list_first_offset_beyond_the_page_is_invalid() {
    let vm = reported_vm();
    let client = vm.connect(0x2000);
    assert_eq!(
        vm.send(
            REQ,
            &page_list_call(client, 16, &page_list(1, 4096, &[0x3000]))
        ),
        VERR_INVALID_PARAMETER
    );
}

#[test]
fn page_list_with_bad_direction_flags_is_invalid_flags() {
    let vm = reported_vm();
    let client = vm.connect(0x2000);
    for flags in [0, 4, 0x8000_0001] {
        assert_eq!(
            vm.send(
                REQ,
                &page_list_call(client, 16, &page_list(flags, 0, &[0x3000]))
            ),
            VERR_INVALID_FLAGS,
            "flags {flags:#x}"
        );
    }
}

#[test]
fn page_list_outside_ram_is_invalid() {
    let vm = reported_vm();
    let client = vm.connect(0x2000);
    let far = page_list(1, 0, &[0x10_0000_0000]);
    assert_eq!(
        vm.send(REQ, &page_list_call(client, 16, &far)),
        VERR_INVALID_PARAMETER
    );
    let overflow = page_list(1, 0, &[!0xFFF_u64]);
    assert_eq!(
        vm.send(REQ, &page_list_call(client, 16, &overflow)),
        VERR_INVALID_PARAMETER
    );
}

#[test]
fn page_list_straddling_the_end_of_ram_is_invalid() {
    let vm = reported_vm();
    let client = vm.connect(0x2000);
    let last = RAM_SIZE as u64 - 0x1000;
    let descriptor = page_list(1, 0x800, &[last, RAM_SIZE as u64]);
    assert_eq!(
        vm.send(REQ, &page_list_call(client, 0x1000, &descriptor)),
        VERR_INVALID_PARAMETER
    );
}

#[test]
fn page_list_shorter_than_its_buffer_is_invalid() {
    let vm = reported_vm();
    let client = vm.connect(0x2000);
    assert_eq!(
        vm.send(
            REQ,
            &page_list_call(client, 0x2000, &page_list(1, 0, &[0x3000]))
        ),
        VERR_INVALID_PARAMETER
    );
}

#[test]
fn buffer_above_128_mib_is_invalid() {
    let vm = reported_vm();
    let client = vm.connect(0x2000);
    assert_eq!(
        vm.send(
            REQ,
            &page_list_call(client, (128 << 20) + 1, &page_list(1, 0, &[0x3000]))
        ),
        VERR_INVALID_PARAMETER
    );
}

#[test]
fn embedded_buffer_outside_the_extra_area_is_invalid() {
    let vm = reported_vm();
    let client = vm.connect(0x2000);
    let inside_array = parm(HgcmParameter::Embedded {
        flags: 1,
        offset: 44,
        size: 8,
    });
    assert_eq!(
        vm.send(REQ, &call64(client, FN_ECHO, &[inside_array], &[0; 8])),
        VERR_INVALID_PARAMETER
    );
    let past_end = parm(HgcmParameter::Embedded {
        flags: 1,
        offset: extra_offset(1),
        size: 9,
    });
    assert_eq!(
        vm.send(REQ, &call64(client, FN_ECHO, &[past_end], &[0; 8])),
        VERR_INVALID_PARAMETER
    );
}

#[test]
fn contiguous_page_list_with_two_entries_is_invalid() {
    let vm = reported_vm();
    let client = vm.connect(0x2000);
    let p = parm(HgcmParameter::PageList {
        kind: ParameterType::CONTIGUOUS_PAGE_LIST,
        size: 16,
        offset: extra_offset(1),
    });
    let req = call64(client, FN_ECHO, &[p], &page_list(1, 0, &[0x3000, 0x4000]));
    assert_eq!(vm.send(REQ, &req), VERR_INVALID_PARAMETER);
}

#[test]
fn no_bounce_page_list_with_misaligned_page_is_invalid_pointer() {
    let vm = reported_vm();
    let client = vm.connect(0x2000);
    let p = parm(HgcmParameter::PageList {
        kind: ParameterType::NO_BOUNCE_PAGE_LIST,
        size: 0x1800,
        offset: extra_offset(1),
    });
    let req = call64(client, FN_ECHO, &[p], &page_list(1, 0, &[0x3000, 0x4010]));
    assert_eq!(vm.send(REQ, &req), Status::VERR_INVALID_POINTER.raw());
}

#[test]
fn no_bounce_page_count_mismatch_is_invalid() {
    let vm = reported_vm();
    let client = vm.connect(0x2000);
    let p = parm(HgcmParameter::PageList {
        kind: ParameterType::NO_BOUNCE_PAGE_LIST,
        size: 16,
        offset: extra_offset(1),
    });
    let req = call64(client, FN_ECHO, &[p], &page_list(1, 0, &[0x3000, 0x4000]));
    assert_eq!(vm.send(REQ, &req), VERR_INVALID_PARAMETER);
}

#[test]
fn duplicate_submission_of_a_pending_request_is_refused() {
    let vm = reported_vm();
    let client = vm.connect(0x2000);
    assert_eq!(vm.send(REQ, &wait_call(client)), ASYNC);
    assert_eq!(vm.send(REQ, &wait_call(client)), VERR_INVALID_PARAMETER);
    assert_eq!(vm.dev.pending_hgcm_requests(), 1);
}

#[test]
fn request_overlapping_a_pending_one_is_refused() {
    let vm = reported_vm();
    let client = vm.connect(0x2000);
    assert_eq!(vm.send(REQ, &wait_call(client)), ASYNC);
    assert_eq!(
        vm.send(REQ + 32, &wait_call(client)),
        VERR_INVALID_PARAMETER
    );
}

#[test]
fn flood_of_pending_calls_hits_the_limit() {
    let vm = vm_with(VmmDevConfig {
        hgcm_limits: PendingLimits {
            max_pending: 16,
            ..PendingLimits::default()
        },
        ..VmmDevConfig::default()
    });
    vm.report();
    let client = vm.connect(0x2000);
    for i in 0..16 {
        assert_eq!(vm.send(0x10_0000 + i * 0x100, &wait_call(client)), ASYNC);
    }
    assert_eq!(vm.send(0x20_0000, &wait_call(client)), VERR_NO_MEMORY);
    assert_eq!(vm.dev.pending_hgcm_requests(), 16);
    vm.wait_waiters(16);
    vm.wake_all();
    for i in 0..16 {
        assert!(vm.wait_done(0x10_0000 + i * 0x100));
    }
    assert_eq!(vm.dev.pending_hgcm_host_bytes(), [0, 0, 0]);
    assert_eq!(vm.send(0x20_0000, &wait_call(client)), ASYNC);
}

#[test]
fn host_memory_budget_bounds_embedded_buffers() {
    let vm = vm_with(VmmDevConfig {
        hgcm_limits: PendingLimits {
            max_pending: 1024,
            host_bytes: [64 << 10; 3],
        },
        ..VmmDevConfig::default()
    });
    vm.report();
    let client = vm.connect(0x2000);
    let embedded = |size: u32| {
        call64(
            client,
            FN_WAIT,
            &[
                parm(HgcmParameter::U32(0)),
                parm(HgcmParameter::U32(0)),
                parm(HgcmParameter::Embedded {
                    flags: 1,
                    offset: extra_offset(3),
                    size,
                }),
            ],
            &vec![0u8; size as usize],
        )
    };
    // Paused, completions stay parked and the calls keep their memory.
    vm.dev.pause();
    assert_eq!(vm.send(0x10_0000, &embedded(40 << 10)), ASYNC);
    assert_eq!(vm.send(0x18_0000, &embedded(40 << 10)), VERR_NO_MEMORY);
    assert!(vm.dev.pending_hgcm_host_bytes()[0] <= 64 << 10);
    vm.dev.resume();
    assert!(vm.wait_done(0x10_0000));
}

// --- Cancellation ----------------------------------------------------------------------

#[test]
fn cancel2_of_an_unknown_address_is_not_found() {
    let vm = reported_vm();
    assert_eq!(vm.send(0x3000, &cancel2(0x5000)), VERR_NOT_FOUND);
}

#[test]
fn cancel2_of_reserved_addresses_is_invalid() {
    let vm = reported_vm();
    assert_eq!(vm.send(0x3000, &cancel2(0)), VERR_INVALID_PARAMETER);
    assert_eq!(vm.send(0x3000, &cancel2(u32::MAX)), VERR_INVALID_PARAMETER);
    let mut wide = request(32, 65);
    set_u64(&mut wide, 24, u64::MAX);
    assert_eq!(vm.send(0x3000, &wide), VERR_INVALID_PARAMETER);
}

#[test]
fn cancel2_with_a_bad_size_is_invalid() {
    let vm = reported_vm();
    let mut req = request(30, 65);
    set_u32(&mut req, 24, REQ as u32);
    assert_eq!(vm.send(0x3000, &req), VERR_INVALID_PARAMETER);
}

#[test]
fn cancel2_of_a_pending_call_succeeds_and_the_call_is_never_touched() {
    let vm = reported_vm();
    let client = vm.connect(0x2000);
    assert_eq!(vm.send(REQ, &wait_call(client)), ASYNC);
    vm.wait_waiters(1);
    let before = vm.get(REQ, 76);
    assert_eq!(vm.send(0x3000, &cancel2(REQ as u32)), 0);
    assert_eq!(vm.dev.pending_hgcm_requests(), 0);
    // The guest frees and reuses the memory at once.
    vm.put(REQ, &[0x55; 76]);
    vm.wake_all();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(vm.get(REQ, 76), vec![0x55; 76]);
    assert_ne!(before, vec![0x55; 76]);
}

#[test]
fn cancel2_of_a_completed_call_is_not_found_and_done_is_set() {
    let vm = reported_vm();
    let client = vm.connect(0x2000);
    assert_eq!(vm.send(REQ, &call64(client, FN_NOOP, &[], &[])), ASYNC);
    assert!(vm.wait_done(REQ));
    assert_eq!(vm.send(0x3000, &cancel2(REQ as u32)), VERR_NOT_FOUND);
}

#[test]
fn double_cancel_reports_not_found_the_second_time() {
    let vm = reported_vm();
    let client = vm.connect(0x2000);
    assert_eq!(vm.send(REQ, &wait_call(client)), ASYNC);
    assert_eq!(vm.send(0x3000, &cancel2(REQ as u32)), 0);
    assert_eq!(vm.send(0x3000, &cancel2(REQ as u32)), VERR_NOT_FOUND);
}

#[test]
fn cancel_of_a_foreign_address_does_not_touch_the_pending_call() {
    let vm = reported_vm();
    let client = vm.connect(0x2000);
    assert_eq!(vm.send(REQ, &wait_call(client)), ASYNC);
    assert_eq!(vm.send(0x3000, &cancel2(REQ as u32 + 4)), VERR_NOT_FOUND);
    assert_eq!(vm.dev.pending_hgcm_requests(), 1);
    vm.wait_waiters(1);
    vm.wake_all();
    assert!(vm.wait_done(REQ));
}

#[test]
fn legacy_cancel_of_nothing_pending_is_invalid_parameter() {
    let vm = reported_vm();
    let mut req = call64(1, FN_NOOP, &[], &[]);
    set_u32(&mut req, 8, 64);
    assert_eq!(vm.send(REQ, &req), VERR_INVALID_PARAMETER);
}

#[test]
fn legacy_in_place_cancel_of_a_pending_call_succeeds() {
    let vm = reported_vm();
    let client = vm.connect(0x2000);
    assert_eq!(vm.send(REQ, &wait_call(client)), ASYNC);
    let mut cancel = wait_call(client);
    set_u32(&mut cancel, 8, 64);
    set_u32(&mut cancel, 24, 2);
    assert_eq!(vm.send(REQ, &cancel), 0);
    assert_eq!(vm.dev.pending_hgcm_requests(), 0);
}

#[test]
fn request_rewritten_while_pending_gets_no_outputs() {
    let vm = reported_vm();
    let client = vm.connect(0x2000);
    assert_eq!(vm.send(REQ, &wait_call(client)), ASYNC);
    vm.wait_waiters(1);
    // The guest scribbles over its pending request, type included.
    let mut scribble = wait_call(client);
    set_u32(&mut scribble, 8, 4);
    set_u32(&mut scribble, 64, 0xDEAD);
    vm.put(REQ, &scribble);
    vm.wake_all();
    assert!(vm.wait_done(REQ));
    assert_eq!(vm.result(REQ), VERR_INVALID_PARAMETER);
    assert_eq!(vm.u32_at(REQ + 44 + 16 + 4), 0xDEAD, "outputs skipped");
}

#[test]
fn completion_after_the_memory_map_changed_uses_its_snapshot() {
    let vm = reported_vm();
    let client = vm.connect(0x2000);
    assert_eq!(vm.send(REQ, &wait_call(client)), ASYNC);
    vm.wait_waiters(1);
    // A vfio-user DMA unmap replaces the map while the call is pending.
    let empty =
        GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0x1_0000_0000), 0x1000)]).expect("map");
    vm.atomic.lock().expect("lock").replace(empty);
    vm.wake_all();
    assert!(
        vm.wait_done(REQ),
        "the completion wrote through its snapshot"
    );
}

#[test]
fn completion_raises_the_line_and_acknowledge_lowers_it() {
    let vm = reported_vm();
    let mut filter = request(32, 42);
    set_u32(&mut filter, 24, 0x202);
    set_u32(&mut filter, 28, !0x202);
    assert_eq!(vm.send(0x4000, &filter), 0);
    let client = vm.connect(0x2000);
    assert!(vm.line.level.load(Ordering::SeqCst));
    assert!(vm.dev.ram().have_events());
    let mut ack = request(28, 41);
    set_u32(&mut ack, 24, 0);
    assert_eq!(vm.send(0x4000, &ack), 0);
    assert_eq!(vm.u32_at(0x4000 + 24), 0x2);
    assert!(!vm.line.level.load(Ordering::SeqCst));
    assert!(!vm.dev.ram().have_events());
    assert_ne!(client, 0);
}

#[test]
fn cancel2_wide_form_finds_the_request_by_its_64_bit_address() {
    let vm = reported_vm();
    let client = vm.connect(0x2000);
    assert_eq!(vm.send(REQ, &wait_call(client)), ASYNC);
    let mut wide = request(32, 65);
    set_u64(&mut wide, 24, REQ);
    assert_eq!(vm.send(0x3000, &wide), 0);
    assert_eq!(vm.dev.pending_hgcm_requests(), 0);
}

#[test]
fn completions_parked_across_a_reset_are_never_written() {
    let vm = reported_vm();
    let client = vm.connect(0x2000);
    vm.dev.pause();
    assert_eq!(vm.send(REQ, &call64(client, FN_NOOP, &[], &[])), ASYNC);
    std::thread::sleep(Duration::from_millis(20));
    vm.dev.reset();
    vm.dev.resume();
    std::thread::sleep(Duration::from_millis(20));
    assert!(!vm.done(REQ));
    assert_eq!(vm.rc(REQ), ASYNC);
}
