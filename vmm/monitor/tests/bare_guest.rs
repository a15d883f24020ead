//! The monitor on real `/dev/kvm` with a guest of a few instructions instead of Linux: the 64-bit boot
//! state, the serial console, PCI configuration mechanism #1 with VMMDev in slot 4, the exit counters, the
//! end of a run through the keyboard controller's reset line, and HGCM calls through the in-process device
//! (the exit count per call and per acknowledge is the monitor's figure in docs/PERFORMANCE.md). Skipped
//! (with a `SKIPPED:` line) where `/dev/kvm` cannot be opened.

mod common;

use std::time::Duration;

use vm_memory::{Bytes, GuestAddress};
use vmmdev_monitor::exits::ExitKind;
use vmmdev_monitor::loader::KernelFormat;
use vmmdev_monitor::vm::VmExit;
use vmmdev_protocol::Status;
use vmmdev_protocol::hgcm::{
    HgcmCallRequest, HgcmCancel2Request32, HgcmConnectRequest, HgcmRequestHeader,
    HgcmServiceLocation, LocationType, ParameterType,
};
use vmmdev_protocol::vmmdev::{
    Events, EventsRequest, GuestInfoRequest, RequestHeader, RequestType, Requestor,
    VBOXOSTYPE_LINUX26, VBOXOSTYPE_X64, VMMDEV_VERSION,
};
use zerocopy::IntoBytes;
use zerocopy::little_endian::{I32, U32};

use common::{BareVm, ENTRY, bare_vm, kvm_or_skip};

/// Prints 'K', reads the vendor/device dword of 00:04.0 through 0xCF8/0xCFC and prints its four bytes,
/// then the Interrupt Line and Interrupt Pin bytes, then pulses the i8042 reset line.
const GUEST: &[u8] = &[
    0x66, 0xba, 0xf8, 0x03, // mov dx, 0x3f8
    0xb0, b'K', // mov al, 'K'
    0xee, // out dx, al
    0x66, 0xba, 0xf8, 0x0c, // mov dx, 0xcf8
    0xb8, 0x00, 0x20, 0x00,
    0x80, // mov eax, 0x8000_2000 (bus 0, device 4, function 0, register 0)
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
    0x66, 0xba, 0xf8, 0x0c, // mov dx, 0xcf8
    0xb8, 0x3c, 0x20, 0x00, 0x80, // mov eax, 0x8000_203c (Interrupt Line and Pin)
    0xef, // out dx, eax
    0x66, 0xba, 0xfc, 0x0c, // mov dx, 0xcfc
    0xed, // in eax, dx
    0x66, 0xba, 0xf8, 0x03, // mov dx, 0x3f8
    0xee, // out dx, al
    0xc1, 0xe8, 0x08, // shr eax, 8
    0xee, // out dx, al
    0xb0, 0xfe, // mov al, 0xfe
    0xe6, 0x64, // out 0x64, al
    0xf4, // hlt
    0xeb, 0xfd, // jmp back to hlt
];

#[test]
fn bare_guest_reads_vmmdev_identity_through_conf1_and_resets_the_machine() {
    let test = "bare_guest_reads_vmmdev_identity_through_conf1_and_resets_the_machine";
    if !kvm_or_skip(test) {
        return;
    }
    let BareVm {
        mut vm,
        hgcm,
        console: receiver,
    } = bare_vm("bare", GUEST, 1, false);
    let stop = vm.stop_handle();
    let watchdog = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(120));
        stop.stop();
    });
    let (exit, times) = vm.run().unwrap();
    drop(watchdog);

    assert_eq!(vm.entry().format, KernelFormat::Elf);
    assert_eq!(vm.entry().rip, ENTRY);
    assert_eq!(exit, VmExit::Reset);
    assert!(times.to_first_entry.is_some());
    let console: Vec<u8> = receiver.try_iter().collect();
    // Line 10, as firmware leaves it (Linux keeps it until the driver enables the device); pin 1, INTA#.
    assert_eq!(console, [b'K', 0xee, 0x80, 0xfe, 0xca, 10, 1]);
    let exits = vm.counters().snapshot();
    assert_eq!(exits.of(ExitKind::Serial), 7);
    assert_eq!(exits.of(ExitKind::PciConfig), 4);
    drop(vm);
    hgcm.shutdown();
}

/// Guest-physical addresses of the requests the HGCM guest submits.
const INFO: u32 = 0x20_0000;
const CONNECT: u32 = 0x20_1000;
const CALL: u32 = 0x20_2000;
const ACK: u32 = 0x20_3000;
/// HGCM calls the guest makes.
const CALLS: u32 = 100;
/// Offset of `fu32Flags` (DONE is bit 0) and of the client ID in the connect and call requests.
const FLAGS: u32 = 24;
const CONNECT_CLIENT_ID: u32 = std::mem::offset_of!(HgcmConnectRequest, client_id) as u32;
const CALL_CLIENT_ID: u32 = std::mem::offset_of!(HgcmCallRequest, client_id) as u32;

/// Reports the guest info, connects to Echo and waits for DONE, then makes [`CALLS`] NOOP calls, each
/// followed by an AcknowledgeEvents request as the Linux interrupt handler sends, polling DONE in guest
/// memory in between (no interrupts: the guest runs with IF clear). Then resets the machine.
fn hgcm_guest() -> Vec<u8> {
    let le = |value: u32| value.to_le_bytes();
    let mut code = Vec::new();
    code.extend_from_slice(&[0x66, 0xba, 0x00, 0xd0]); // mov dx, 0xd000
    for request in [INFO, CONNECT] {
        code.push(0xb8); // mov eax, request
        code.extend_from_slice(&le(request));
        code.push(0xef); // out dx, eax
    }
    code.extend_from_slice(&[0xf6, 0x04, 0x25]); // test byte [CONNECT + FLAGS], 1
    code.extend_from_slice(&le(CONNECT + FLAGS));
    code.extend_from_slice(&[0x01, 0x74, 0xf6]); // jz back to the test
    code.extend_from_slice(&[0x8b, 0x04, 0x25]); // mov eax, [CONNECT + client_id]
    code.extend_from_slice(&le(CONNECT + CONNECT_CLIENT_ID));
    code.extend_from_slice(&[0x89, 0x04, 0x25]); // mov [CALL + client_id], eax
    code.extend_from_slice(&le(CALL + CALL_CLIENT_ID));
    code.push(0xb9); // mov ecx, CALLS
    code.extend_from_slice(&le(CALLS));
    let loop_start = code.len();
    code.extend_from_slice(&[0xc6, 0x04, 0x25]); // mov byte [CALL + FLAGS], 0
    code.extend_from_slice(&le(CALL + FLAGS));
    code.push(0x00);
    code.push(0xb8); // mov eax, CALL
    code.extend_from_slice(&le(CALL));
    code.push(0xef); // out dx, eax
    code.extend_from_slice(&[0xf6, 0x04, 0x25]); // test byte [CALL + FLAGS], 1
    code.extend_from_slice(&le(CALL + FLAGS));
    code.extend_from_slice(&[0x01, 0x74, 0xf6]); // jz back to the test
    code.push(0xb8); // mov eax, ACK
    code.extend_from_slice(&le(ACK));
    code.push(0xef); // out dx, eax
    code.extend_from_slice(&[0xff, 0xc9]); // dec ecx
    let back = loop_start as i64 - (code.len() as i64 + 2);
    code.extend_from_slice(&[0x75, back as i8 as u8]); // jnz loop
    code.extend_from_slice(&[0xb0, 0xfe, 0xe6, 0x64, 0xf4, 0xeb, 0xfd]); // reset, hlt
    code
}

fn header(size: usize, request_type: RequestType) -> RequestHeader {
    RequestHeader::new(size as u32, request_type, Requestor(0))
}

fn hgcm_header(size: usize, request_type: RequestType) -> HgcmRequestHeader {
    HgcmRequestHeader {
        header: header(size, request_type),
        flags: U32::new(0),
        result: I32::new(0),
    }
}

#[test]
fn bare_guest_hgcm_call_and_acknowledge_cost_one_exit_each() {
    let test = "bare_guest_hgcm_call_and_acknowledge_cost_one_exit_each";
    if !kvm_or_skip(test) {
        return;
    }
    let BareVm {
        mut vm,
        hgcm,
        console: _,
    } = bare_vm("hgcm", &hgcm_guest(), 1, false);
    let mem = vm.memory().clone();
    let write = |address: u32, bytes: &[u8]| {
        mem.write_slice(bytes, GuestAddress(address.into()))
            .unwrap()
    };
    write(
        INFO,
        GuestInfoRequest {
            header: header(
                size_of::<GuestInfoRequest>(),
                RequestType::REPORT_GUEST_INFO,
            ),
            interface_version: U32::new(VMMDEV_VERSION),
            os_type: U32::new(VBOXOSTYPE_LINUX26 | VBOXOSTYPE_X64),
        }
        .as_bytes(),
    );
    write(
        CONNECT,
        HgcmConnectRequest {
            header: hgcm_header(size_of::<HgcmConnectRequest>(), RequestType::HGCM_CONNECT),
            location: HgcmServiceLocation::new(LocationType::LOCAL_HOST_EXISTING, b"Echo").unwrap(),
            client_id: U32::new(0),
        }
        .as_bytes(),
    );
    write(
        CALL,
        HgcmCallRequest {
            header: hgcm_header(size_of::<HgcmCallRequest>(), RequestType::HGCM_CALL64),
            client_id: U32::new(0),
            function: U32::new(vmmdev_svc_echo::FN_NOOP),
            parameter_count: U32::new(0),
        }
        .as_bytes(),
    );
    write(
        ACK,
        EventsRequest {
            header: header(size_of::<EventsRequest>(), RequestType::ACKNOWLEDGE_EVENTS),
            events: U32::new(0),
        }
        .as_bytes(),
    );
    let stop = vm.stop_handle();
    let _watchdog = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(300));
        stop.stop();
    });

    let (exit, _) = vm.run().unwrap();

    assert_eq!(exit, VmExit::Reset);
    let read = |address: u32| -> i32 { mem.read_obj(GuestAddress(address.into())).unwrap() };
    assert_ne!(
        read(CONNECT + CONNECT_CLIENT_ID),
        0,
        "connect gave no client ID"
    );
    assert_eq!(
        read(CALL + FLAGS + 4),
        Status::VINF_SUCCESS.raw(),
        "NOOP result"
    );
    let exits = vm.counters().snapshot();
    println!("{test}: {exits}");
    assert_eq!(exits.hgcm_calls, u64::from(CALLS));
    assert_eq!(exits.acknowledges, u64::from(CALLS));
    assert_eq!(exits.of(ExitKind::VmmDevRequest), 2 + 2 * u64::from(CALLS));
    assert_eq!(
        exits.total() - exits.of(ExitKind::Other),
        2 + 2 * u64::from(CALLS) + 1,
        "exits beyond the request writes and the reset: {exits}"
    );
    drop(vm);
    hgcm.shutdown();
}

/// Where the cancel guest puts its parked call and the Cancel2 that cancels it.
const WAIT: u32 = 0x20_4000;
const CANCEL: u32 = 0x20_5000;
/// Iterations of the guest's idle loop after the cancel: time for a wrong completion to land.
const IDLE_LOOPS: u32 = 100_000;

/// Reports the guest info, connects to Echo, parks an `FN_WAIT` call without timeout, cancels it with
/// Cancel2, idles, then resets the machine.
fn cancel_guest() -> Vec<u8> {
    let le = |value: u32| value.to_le_bytes();
    let mut code = Vec::new();
    code.extend_from_slice(&[0x66, 0xba, 0x00, 0xd0]); // mov dx, 0xd000
    for request in [INFO, CONNECT] {
        code.push(0xb8);
        code.extend_from_slice(&le(request));
        code.push(0xef);
    }
    code.extend_from_slice(&[0xf6, 0x04, 0x25]); // test byte [CONNECT + FLAGS], 1
    code.extend_from_slice(&le(CONNECT + FLAGS));
    code.extend_from_slice(&[0x01, 0x74, 0xf6]); // jz back
    code.extend_from_slice(&[0x8b, 0x04, 0x25]); // mov eax, [CONNECT + client_id]
    code.extend_from_slice(&le(CONNECT + CONNECT_CLIENT_ID));
    code.extend_from_slice(&[0x89, 0x04, 0x25]); // mov [WAIT + client_id], eax
    code.extend_from_slice(&le(WAIT + CALL_CLIENT_ID));
    for request in [WAIT, CANCEL] {
        code.push(0xb8);
        code.extend_from_slice(&le(request));
        code.push(0xef);
    }
    code.push(0xb9); // mov ecx, IDLE_LOOPS
    code.extend_from_slice(&le(IDLE_LOOPS));
    code.extend_from_slice(&[0xff, 0xc9, 0x75, 0xfc]); // dec ecx; jnz back to dec
    code.extend_from_slice(&[0xb0, 0xfe, 0xe6, 0x64, 0xf4, 0xeb, 0xfd]); // reset, hlt
    code
}

/// An HGCM call of `function` with two 32-bit value parameters (the 64-bit parameter layout).
fn call_with_two_values(function: u32, values: [u32; 2]) -> Vec<u8> {
    const PARAMETER_SIZE: usize = 16;
    let size = size_of::<HgcmCallRequest>() + 2 * PARAMETER_SIZE;
    let mut bytes = HgcmCallRequest {
        header: hgcm_header(size, RequestType::HGCM_CALL64),
        client_id: U32::new(0),
        function: U32::new(function),
        parameter_count: U32::new(2),
    }
    .as_bytes()
    .to_vec();
    for value in values {
        let mut parameter = [0u8; PARAMETER_SIZE];
        parameter[..4].copy_from_slice(&ParameterType::BIT32.raw().to_le_bytes());
        parameter[4..8].copy_from_slice(&value.to_le_bytes());
        bytes.extend_from_slice(&parameter);
    }
    bytes
}

#[test]
fn bare_guest_cancelled_call_is_never_written_after_the_cancel() {
    let test = "bare_guest_cancelled_call_is_never_written_after_the_cancel";
    if !kvm_or_skip(test) {
        return;
    }
    let BareVm {
        mut vm,
        hgcm,
        console: _,
    } = bare_vm("cancel", &cancel_guest(), 1, false);
    let mem = vm.memory().clone();
    let write = |address: u32, bytes: &[u8]| {
        mem.write_slice(bytes, GuestAddress(address.into()))
            .unwrap()
    };
    write(
        INFO,
        GuestInfoRequest {
            header: header(
                size_of::<GuestInfoRequest>(),
                RequestType::REPORT_GUEST_INFO,
            ),
            interface_version: U32::new(VMMDEV_VERSION),
            os_type: U32::new(VBOXOSTYPE_LINUX26 | VBOXOSTYPE_X64),
        }
        .as_bytes(),
    );
    write(
        CONNECT,
        HgcmConnectRequest {
            header: hgcm_header(size_of::<HgcmConnectRequest>(), RequestType::HGCM_CONNECT),
            location: HgcmServiceLocation::new(LocationType::LOCAL_HOST_EXISTING, b"Echo").unwrap(),
            client_id: U32::new(0),
        }
        .as_bytes(),
    );
    write(
        WAIT,
        &call_with_two_values(vmmdev_svc_echo::FN_WAIT, [0, 0]),
    );
    write(
        CANCEL,
        HgcmCancel2Request32 {
            header: header(size_of::<HgcmCancel2Request32>(), RequestType::HGCM_CANCEL2),
            phys_req_to_cancel: U32::new(WAIT),
        }
        .as_bytes(),
    );
    let stop = vm.stop_handle();
    let _watchdog = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(300));
        stop.stop();
    });

    let (exit, _) = vm.run().unwrap();

    assert_eq!(exit, VmExit::Reset);
    let read = |address: u32| -> i32 { mem.read_obj(GuestAddress(address.into())).unwrap() };
    assert_eq!(read(CANCEL + 12), Status::VINF_SUCCESS.raw(), "Cancel2 rc");
    assert_eq!(
        read(WAIT + 12),
        Status::VINF_HGCM_ASYNC_EXECUTE.raw(),
        "the call was accepted"
    );
    assert_eq!(read(WAIT + FLAGS) & 1, 0, "DONE set in the cancelled call");
    let audit = vm.cancel_audit();
    println!("{test}: {audit}");
    assert_eq!(audit.cancels, 1);
    assert!(audit.violations.is_empty(), "{audit:?}");
    drop(vm);
    hgcm.shutdown();
}

/// A page directory mapping 3–4 GiB with 2 MiB pages, so that the guest can reach the VMMDev RAM BAR
/// (the boot page tables map only the first GiB).
const HIGH_PD: u64 = 0x30_0000;
/// The boot PDPT (`layout::BOOT_PDPT`) and its entry for the fourth GiB.
const PDPT_ENTRY_3: u64 = vmmdev_monitor::layout::BOOT_PDPT + 3 * 8;

/// Reads the VMMDev RAM's size and version words at the BAR and prints their bytes; turns memory decoding
/// off, reads (and prints) again, turns it back on, reads and prints once more; resets.
fn ram_bar_guest() -> Vec<u8> {
    let bar = vmmdev_monitor::layout::VMMDEV_RAM_BAR.to_le_bytes();
    let mut code = vec![0xbb, bar[0], bar[1], bar[2], bar[3]]; // mov ebx, BAR (zero-extended into rbx)
    let print_eax = [
        0x66, 0xba, 0xf8, 0x03, // mov dx, 0x3f8
        0xee, 0xc1, 0xe8, 0x08, 0xee, 0xc1, 0xe8, 0x08, 0xee, 0xc1, 0xe8, 0x08,
        0xee, // four bytes of eax
    ];
    let set_command = |value: u8| {
        vec![
            0x66, 0xba, 0xf8, 0x0c, // mov dx, 0xcf8
            0xb8, 0x04, 0x20, 0x00, 0x80, // mov eax, 0x8000_2004 (00:04.0, command register)
            0xef, // out dx, eax
            0x66, 0xba, 0xfc, 0x0c, // mov dx, 0xcfc
            0x66, 0xb8, value, 0x00, // mov ax, value
            0x66, 0xef, // out dx, ax
        ]
    };
    code.extend_from_slice(&[0x8b, 0x03]); // mov eax, [rbx]: size
    code.extend_from_slice(&print_eax);
    code.extend_from_slice(&[0x8b, 0x43, 0x04]); // mov eax, [rbx + 4]: version
    code.extend_from_slice(&print_eax);
    code.extend(set_command(0x01)); // I/O only: the BAR stops decoding
    code.extend_from_slice(&[0x8b, 0x03]);
    code.extend_from_slice(&print_eax);
    code.extend(set_command(0x03)); // I/O and memory again
    code.extend_from_slice(&[0x8b, 0x03]);
    code.extend_from_slice(&print_eax);
    code.extend_from_slice(&[0xb0, 0xfe, 0xe6, 0x64, 0xf4, 0xeb, 0xfd]); // reset, hlt
    code
}

#[test]
fn bare_guest_reads_vmmdev_ram_without_exits_and_the_slot_follows_memory_decoding() {
    let test = "bare_guest_reads_vmmdev_ram_without_exits_and_the_slot_follows_memory_decoding";
    if !kvm_or_skip(test) {
        return;
    }
    let BareVm {
        mut vm,
        hgcm,
        console: receiver,
    } = bare_vm("ram", &ram_bar_guest(), 1, false);
    let mem = vm.memory().clone();
    mem.write_obj(HIGH_PD | 0x3, GuestAddress(PDPT_ENTRY_3))
        .unwrap();
    for index in 0..512u64 {
        let page = (3 << 30) + (index << 21);
        mem.write_obj(page | 0x83, GuestAddress(HIGH_PD + index * 8))
            .unwrap();
    }
    let stop = vm.stop_handle();
    let _watchdog = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(120));
        stop.stop();
    });

    let (exit, _) = vm.run().unwrap();

    assert_eq!(exit, VmExit::Reset);
    let console: Vec<u8> = receiver.try_iter().collect();
    let words: Vec<u32> = console
        .chunks(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(
        words,
        [0x003f_fd28, 1, u32::MAX, 0x003f_fd28],
        "size, version, size with decoding off, size with decoding on"
    );
    let exits = vm.counters().snapshot();
    assert_eq!(
        exits.of(ExitKind::Mmio),
        1,
        "only the read with decoding off leaves KVM: {exits}"
    );
    drop(vm);
    hgcm.shutdown();
}

/// Interrupts handled by the interrupt guest's handler, and its IDT register image and IDT.
const COUNT: u32 = 0x20_6000;
const IDTR: u32 = 0x20_7000;
const IDT: u64 = 0x31_0000;
/// The vector the guest programs for IOAPIC pin 16 (VMMDev's INTA#).
const VECTOR: u8 = 0x40;

/// The interrupt handler (returned first) and the main program of the interrupt guest. The handler does
/// what Linux's vboxguest handler does (AcknowledgeEvents), prints 'I', counts and sends the LAPIC EOI.
/// The main program loads the IDT, enables the LAPIC, routes IOAPIC pin 16 level-triggered and active-low
/// to the vector, reports the guest info and connects to Echo, waits for the first interrupt, makes one
/// NOOP call, waits for the second, and resets the machine.
fn interrupt_guest() -> (Vec<u8>, Vec<u8>) {
    let le = |value: u32| value.to_le_bytes();
    let mut handler = vec![0x50, 0x53, 0x52]; // push rax, rbx, rdx
    handler.extend_from_slice(&[0x66, 0xba, 0x00, 0xd0, 0xb8]); // mov dx, 0xd000; mov eax, ACK
    handler.extend_from_slice(&le(ACK));
    handler.push(0xef); // out dx, eax
    handler.extend_from_slice(&[0x66, 0xba, 0xf8, 0x03, 0xb0, b'I', 0xee]); // print 'I'
    handler.extend_from_slice(&[0xff, 0x04, 0x25]); // inc dword [COUNT]
    handler.extend_from_slice(&le(COUNT));
    handler.extend_from_slice(&[0xbb, 0xb0, 0x00, 0xe0, 0xfe]); // mov ebx, LAPIC EOI register
    handler.extend_from_slice(&[0xc7, 0x03, 0, 0, 0, 0]); // mov dword [rbx], 0
    handler.extend_from_slice(&[0x5a, 0x5b, 0x58, 0x48, 0xcf]); // pop rdx, rbx, rax; iretq

    let mut main = vec![0x0f, 0x01, 0x1c, 0x25]; // lidt [IDTR]
    main.extend_from_slice(&le(IDTR));
    main.extend_from_slice(&[0xbb, 0xf0, 0x00, 0xe0, 0xfe]); // mov ebx, LAPIC spurious vector register
    main.extend_from_slice(&[0xc7, 0x03, 0xff, 0x01, 0, 0]); // software-enable the LAPIC
    main.extend_from_slice(&[0xbb, 0x00, 0x00, 0xc0, 0xfe]); // mov ebx, IOAPIC
    let redirection_low = u32::from(VECTOR) | (1 << 13) | (1 << 15); // active low, level
    main.extend_from_slice(&[0xc7, 0x03, 0x30, 0, 0, 0, 0xc7, 0x43, 0x10]); // pin 16, low dword
    main.extend_from_slice(&le(redirection_low));
    main.extend_from_slice(&[0xc7, 0x03, 0x31, 0, 0, 0, 0xc7, 0x43, 0x10, 0, 0, 0, 0]); // high: APIC 0
    main.extend_from_slice(&[0x66, 0xba, 0x00, 0xd0]); // mov dx, 0xd000
    for request in [INFO, CONNECT] {
        main.push(0xb8);
        main.extend_from_slice(&le(request));
        main.push(0xef);
    }
    let wait_for = |code: &mut Vec<u8>, count: u8| {
        let start = code.len();
        code.extend_from_slice(&[0xfb, 0xf4, 0xfa]); // sti; hlt; cli
        code.extend_from_slice(&[0x83, 0x3c, 0x25]); // cmp dword [COUNT], count
        code.extend_from_slice(&le(COUNT));
        code.push(count);
        let back = start as i64 - (code.len() as i64 + 2);
        code.extend_from_slice(&[0x72, back as i8 as u8]); // jb back to sti
    };
    wait_for(&mut main, 1);
    main.extend_from_slice(&[0x8b, 0x04, 0x25]); // mov eax, [CONNECT + client_id]
    main.extend_from_slice(&le(CONNECT + CONNECT_CLIENT_ID));
    main.extend_from_slice(&[0x89, 0x04, 0x25]); // mov [CALL + client_id], eax
    main.extend_from_slice(&le(CALL + CALL_CLIENT_ID));
    main.extend_from_slice(&[0x66, 0xba, 0x00, 0xd0, 0xb8]); // mov dx, 0xd000; mov eax, CALL
    main.extend_from_slice(&le(CALL));
    main.push(0xef);
    wait_for(&mut main, 2);
    main.extend_from_slice(&[0xb0, 0xfe, 0xe6, 0x64, 0xf4, 0xeb, 0xfd]); // reset, hlt
    (handler, main)
}

// This host's PVM signals the resample eventfd before the guest's handler runs: this test is the
// regression test for re-asserting the line at that point (a spurious second interrupt, see `intx`).
#[test]
fn bare_guest_takes_one_level_interrupt_per_completion_through_the_irqfd() {
    let test = "bare_guest_takes_one_level_interrupt_per_completion_through_the_irqfd";
    if !kvm_or_skip(test) {
        return;
    }
    let (handler, main) = interrupt_guest();
    // The ELF entry is the start of the code: jump over the handler to the main program.
    let mut code = vec![0xe9];
    code.extend_from_slice(&(handler.len() as u32).to_le_bytes()); // jmp rel32 over the handler
    let handler_address = ENTRY + code.len() as u64;
    code.extend_from_slice(&handler);
    code.extend_from_slice(&main);
    let BareVm {
        mut vm,
        hgcm,
        console: receiver,
    } = bare_vm("irq", &code, 1, false);
    let mem = vm.memory().clone();
    let write = |address: u64, bytes: &[u8]| mem.write_slice(bytes, GuestAddress(address)).unwrap();
    // The fourth GiB (IOAPIC, LAPIC) mapped with 2 MiB pages.
    mem.write_obj(HIGH_PD | 0x3, GuestAddress(PDPT_ENTRY_3))
        .unwrap();
    for index in 0..512u64 {
        let page = (3 << 30) + (index << 21);
        mem.write_obj(page | 0x83, GuestAddress(HIGH_PD + index * 8))
            .unwrap();
    }
    // A 64-bit interrupt gate for the vector, and the IDT register image.
    let mut gate = [0u8; 16];
    gate[0..2].copy_from_slice(&(handler_address as u16).to_le_bytes());
    gate[2..4].copy_from_slice(&0x08u16.to_le_bytes());
    gate[5] = 0x8e;
    gate[6..8].copy_from_slice(&((handler_address >> 16) as u16).to_le_bytes());
    gate[8..12].copy_from_slice(&((handler_address >> 32) as u32).to_le_bytes());
    write(IDT + u64::from(VECTOR) * 16, &gate);
    let mut idtr = [0u8; 10];
    idtr[0..2].copy_from_slice(&0x0fffu16.to_le_bytes());
    idtr[2..10].copy_from_slice(&IDT.to_le_bytes());
    write(IDTR.into(), &idtr);
    write(
        INFO.into(),
        GuestInfoRequest {
            header: header(
                size_of::<GuestInfoRequest>(),
                RequestType::REPORT_GUEST_INFO,
            ),
            interface_version: U32::new(VMMDEV_VERSION),
            os_type: U32::new(VBOXOSTYPE_LINUX26 | VBOXOSTYPE_X64),
        }
        .as_bytes(),
    );
    write(
        CONNECT.into(),
        HgcmConnectRequest {
            header: hgcm_header(size_of::<HgcmConnectRequest>(), RequestType::HGCM_CONNECT),
            location: HgcmServiceLocation::new(LocationType::LOCAL_HOST_EXISTING, b"Echo").unwrap(),
            client_id: U32::new(0),
        }
        .as_bytes(),
    );
    write(
        CALL.into(),
        HgcmCallRequest {
            header: hgcm_header(size_of::<HgcmCallRequest>(), RequestType::HGCM_CALL64),
            client_id: U32::new(0),
            function: U32::new(vmmdev_svc_echo::FN_NOOP),
            parameter_count: U32::new(0),
        }
        .as_bytes(),
    );
    write(
        ACK.into(),
        EventsRequest {
            header: header(size_of::<EventsRequest>(), RequestType::ACKNOWLEDGE_EVENTS),
            events: U32::new(0),
        }
        .as_bytes(),
    );
    let stop = vm.stop_handle();
    let _watchdog = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(120));
        stop.stop();
    });

    let (exit, _) = vm.run().unwrap();

    let console: Vec<u8> = receiver.try_iter().collect();
    let exits = vm.counters().snapshot();
    println!(
        "{test}: {exit:?} console {:?} {exits}",
        String::from_utf8_lossy(&console)
    );
    assert_eq!(exit, VmExit::Reset);
    assert_eq!(
        console, b"II",
        "one interrupt per completion (connect, call), none spurious"
    );
    let read = |address: u32| -> u32 { mem.read_obj(GuestAddress(address.into())).unwrap() };
    assert_eq!(read(COUNT), 2);
    assert_eq!(
        read(ACK + 24),
        Events::HGCM.bits(),
        "the second acknowledge returned the HGCM event"
    );
    assert_eq!(exits.acknowledges, 2);
    assert_eq!(
        exits.of(ExitKind::Mmio),
        0,
        "LAPIC and IOAPIC are in-kernel: {exits}"
    );
    assert_eq!(
        exits.total() - exits.of(ExitKind::Other),
        3 + 2 + 2 + 1,
        "three requests, two acknowledges, two serial bytes and the reset: {exits}"
    );
    drop(vm);
    hgcm.shutdown();
}
