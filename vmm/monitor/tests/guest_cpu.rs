//! What a Linux guest needs from the host's CPU virtualization besides the device, checked with guests
//! of a few instructions on real `/dev/kvm`: a second vCPU started with INIT/SIPI that goes from real
//! mode through protected mode to long mode (Linux's trampoline path), and system calls from ring 3 that
//! arrive in ring 0 at `MSR_LSTAR` and return with `sysretq` (`/init`'s first `syscall`).
//!
//! On PVM's native mode SYSCALL stays in ring 3 and the monitor completes it
//! (`vmmdev_monitor::syscall_bridge`); the test asserts the same outcome on every host. Skipped where
//! `/dev/kvm` cannot be opened.

mod common;

use std::time::Duration;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmmdev_monitor::layout::{BOOT_PD, BOOT_PDPT, BOOT_PML4};
use vmmdev_monitor::vm::VmExit;

use common::{BareVm, ENTRY, bare_vm, kvm_or_skip};

/// What a run left behind: how it ended, the console bytes and the guest memory.
struct Run {
    exit: VmExit,
    console: Vec<u8>,
    mem: GuestMemoryMmap,
}

/// Boots `code` at [`ENTRY`] on `vcpus` vCPUs after `prepare` wrote the guest's tables; stops after
/// 120 s at most.
fn run(name: &str, code: &[u8], vcpus: u8, prepare: impl FnOnce(&GuestMemoryMmap)) -> Run {
    let BareVm {
        mut vm,
        hgcm,
        console: receiver,
    } = bare_vm(name, code, vcpus, true);
    let mem = vm.memory().clone();
    prepare(&mem);
    let stop = vm.stop_handle();
    let _watchdog = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(120));
        stop.stop();
    });
    let (exit, _) = vm.run().unwrap();
    drop(vm);
    hgcm.shutdown();
    Run {
        exit,
        console: receiver.try_iter().collect(),
        mem,
    }
}

const RESET: [u8; 7] = [0xb0, 0xfe, 0xe6, 0x64, 0xf4, 0xeb, 0xfd]; // out 0x64, 0xfe; hlt loop

/// Where the trampoline of the second vCPU lives (SIPI vector 0x08), and the flag it sets in long mode.
const TRAMPOLINE: u64 = 0x8000;
const AP_FLAG: u32 = 0x20_6000;
/// The boot PDPT's entry for the fourth GiB and the page directory the tests map it with (LAPIC).
const HIGH_PD: u64 = 0x30_0000;

/// Maps 3–4 GiB (IOAPIC, LAPIC) with 2 MiB pages; the boot page tables map only the first GiB.
fn map_fourth_gib(mem: &GuestMemoryMmap) {
    mem.write_obj(HIGH_PD | 0x3, GuestAddress(BOOT_PDPT + 3 * 8))
        .unwrap();
    for index in 0..512u64 {
        let page = (3 << 30) + (index << 21);
        mem.write_obj(page | 0x83, GuestAddress(HIGH_PD + index * 8))
            .unwrap();
    }
}

/// The second vCPU's code at [`TRAMPOLINE`], entered in real mode with CS = 0x0800, IP = 0: loads its
/// own GDT, enters protected mode, enables PAE with the monitor's boot page tables and long mode, jumps
/// to 64-bit code, prints 'A', sets [`AP_FLAG`] and halts.
fn trampoline() -> Vec<u8> {
    let at = |offset: usize| (TRAMPOLINE as u32 + offset as u32).to_le_bytes();
    // Fixed lengths: real-mode part 28 bytes, 32-bit part 57, 64-bit part 22, then the GDT (8-aligned).
    const PROTECTED: usize = 28;
    const LONG: usize = PROTECTED + 57;
    const GDT: usize = 112;
    const GDTR: usize = GDT + 32;
    let mut code = vec![
        0xfa, // cli
        0x8c, 0xc8, // mov ax, cs
        0x8e, 0xd8, // mov ds, ax
        0x0f, 0x01, 0x16, // lgdt [GDTR] (16-bit offset)
    ];
    code.extend_from_slice(&(GDTR as u16).to_le_bytes());
    code.extend_from_slice(&[0x0f, 0x20, 0xc0]); // mov eax, cr0
    code.extend_from_slice(&[0x66, 0x83, 0xc8, 0x01]); // or eax, PE
    code.extend_from_slice(&[0x0f, 0x22, 0xc0]); // mov cr0, eax
    code.extend_from_slice(&[0x66, 0xea]); // jmp far 0x08:protected (32-bit offset)
    code.extend_from_slice(&at(PROTECTED));
    code.extend_from_slice(&[0x08, 0x00]);
    assert_eq!(code.len(), PROTECTED);
    code.extend_from_slice(&[0x66, 0xb8, 0x10, 0x00]); // mov ax, 0x10
    code.extend_from_slice(&[0x8e, 0xd8, 0x8e, 0xd0]); // mov ds, ax; mov ss, ax
    code.extend_from_slice(&[0x0f, 0x20, 0xe0]); // mov eax, cr4
    code.extend_from_slice(&[0x83, 0xc8, 0x20]); // or eax, PAE
    code.extend_from_slice(&[0x0f, 0x22, 0xe0]); // mov cr4, eax
    code.push(0xb8); // mov eax, BOOT_PML4
    code.extend_from_slice(&(BOOT_PML4 as u32).to_le_bytes());
    code.extend_from_slice(&[0x0f, 0x22, 0xd8]); // mov cr3, eax
    code.extend_from_slice(&[0xb9, 0x80, 0x00, 0x00, 0xc0]); // mov ecx, IA32_EFER
    code.extend_from_slice(&[0x0f, 0x32]); // rdmsr
    code.extend_from_slice(&[0x0d, 0x00, 0x01, 0x00, 0x00]); // or eax, LME
    code.extend_from_slice(&[0x0f, 0x30]); // wrmsr
    code.extend_from_slice(&[0x0f, 0x20, 0xc0]); // mov eax, cr0
    code.extend_from_slice(&[0x0d, 0x00, 0x00, 0x00, 0x80]); // or eax, PG
    code.extend_from_slice(&[0x0f, 0x22, 0xc0]); // mov cr0, eax
    code.push(0xea); // jmp far 0x18:long
    code.extend_from_slice(&at(LONG));
    code.extend_from_slice(&[0x18, 0x00]);
    assert_eq!(code.len(), LONG);
    // Print before raising the flag: the boot vCPU prints 'B' as soon as it sees the flag.
    code.extend_from_slice(&[0x66, 0xba, 0xf8, 0x03, 0xb0, b'A', 0xee]); // print 'A'
    code.extend_from_slice(&[0xc7, 0x04, 0x25]); // mov dword [AP_FLAG], 1
    code.extend_from_slice(&AP_FLAG.to_le_bytes());
    code.extend_from_slice(&1u32.to_le_bytes());
    code.extend_from_slice(&[0xfa, 0xf4, 0xeb, 0xfd]); // cli; hlt loop
    code.resize(GDT, 0);
    for descriptor in [
        0u64,
        0x00cf_9a00_0000_ffff, // 0x08: 32-bit code
        0x00cf_9200_0000_ffff, // 0x10: data
        0x00af_9a00_0000_ffff, // 0x18: 64-bit code
    ] {
        code.extend_from_slice(&descriptor.to_le_bytes());
    }
    code.extend_from_slice(&31u16.to_le_bytes());
    code.extend_from_slice(&at(GDT));
    code
}

/// The boot vCPU: enables its LAPIC, sends INIT and one SIPI (vector 0x08) to APIC 1, waits for
/// [`AP_FLAG`], prints 'B' and resets the machine.
fn boot_cpu() -> Vec<u8> {
    let mut code = vec![0xbb, 0x00, 0x00, 0xe0, 0xfe]; // mov ebx, LAPIC
    let apic_write = |code: &mut Vec<u8>, register: u32, value: u32| {
        code.extend_from_slice(&[0xc7, 0x83]); // mov dword [rbx + register], value
        code.extend_from_slice(&register.to_le_bytes());
        code.extend_from_slice(&value.to_le_bytes());
    };
    apic_write(&mut code, 0xf0, 0x1ff); // spurious vector register: software enable
    apic_write(&mut code, 0x310, 1 << 24); // ICR high: APIC 1
    apic_write(&mut code, 0x300, 0x4500); // ICR low: INIT, level assert
    apic_write(&mut code, 0x310, 1 << 24);
    apic_write(&mut code, 0x300, 0x4600 | (TRAMPOLINE >> 12) as u32); // STARTUP
    let wait = code.len();
    code.extend_from_slice(&[0xf3, 0x90]); // pause
    code.extend_from_slice(&[0x83, 0x3c, 0x25]); // cmp dword [AP_FLAG], 1
    code.extend_from_slice(&AP_FLAG.to_le_bytes());
    code.push(0x01);
    let back = wait as i64 - (code.len() as i64 + 2);
    code.extend_from_slice(&[0x75, back as i8 as u8]); // jne wait
    code.extend_from_slice(&[0x66, 0xba, 0xf8, 0x03, 0xb0, b'B', 0xee]); // print 'B'
    code.extend_from_slice(&RESET);
    code
}

#[test]
fn second_vcpu_starts_with_init_sipi_and_reaches_long_mode_from_real_mode() {
    let test = "second_vcpu_starts_with_init_sipi_and_reaches_long_mode_from_real_mode";
    if !kvm_or_skip(test) {
        return;
    }
    let run = run("ap", &boot_cpu(), 2, |mem| {
        map_fourth_gib(mem);
        mem.write_slice(&trampoline(), GuestAddress(TRAMPOLINE))
            .unwrap();
    });

    assert_eq!(run.exit, VmExit::Reset);
    assert_eq!(
        run.console, b"AB",
        "the second vCPU ran its trampoline to 64-bit code"
    );
    let flag: u32 = run.mem.read_obj(GuestAddress(AP_FLAG.into())).unwrap();
    assert_eq!(flag, 1);
}

/// The system-call guest's tables: GDT (Linux's selectors: kernel CS 0x10, SS 0x18, user CS 0x33,
/// SS 0x2b, TSS 0x40), its register image, the TSS with the ring-0 stack, the IDT and its image.
const GDT: u64 = 0x20_9000;
const GDTR: u32 = 0x20_8000;
const TSS: u64 = 0x20_a000;
const KERNEL_STACK: u64 = 0x20_f000;
const IDT: u64 = 0x31_0000;
const IDTR: u32 = 0x20_7000;
/// Ring 3's code and stack, in the 2 MiB page after the kernel's (the only page open to ring 3; the
/// system-call entry stays supervisor-only, as Linux's).
const USER_CODE: u64 = 0x120_0000;
const USER_STACK: u32 = 0x13f_0000;
/// Where the fault handler stores the faulting RIP, and the system calls the entry has seen.
const FAULT_RIP: u32 = 0x20_6000;
const SYSCALLS: u32 = 0x20_6010;
const KERNEL_CS: u8 = 0x10;
const USER_CS: u8 = 0x33;

/// The guest's code with the address of each part: `main` loads the tables, sets EFER.SCE, STAR, LSTAR
/// and SFMASK, prints 'R' and returns to ring 3 at [`USER_CODE`] with `iretq`; `lstar` prints 'S' and
/// the low byte of CS, returns to ring 3 with `sysretq` after the first system call and resets after
/// the second; `fault` (#GP, #PF; it begins with a NOP, as Linux's entries do) stores the faulting RIP,
/// prints 'F' and the low byte of the interrupted CS and resets. `user` (two system calls) is written
/// to [`USER_CODE`] separately.
struct SyscallGuest {
    code: Vec<u8>,
    user: Vec<u8>,
    fault: u64,
}

fn syscall_guest() -> SyscallGuest {
    let le = |value: u32| value.to_le_bytes();
    let main = |user: u32, lstar: u32| {
        let mut code = vec![0x0f, 0x01, 0x14, 0x25]; // lgdt [GDTR]
        code.extend_from_slice(&le(GDTR));
        code.extend_from_slice(&[0x0f, 0x01, 0x1c, 0x25]); // lidt [IDTR]
        code.extend_from_slice(&le(IDTR));
        code.extend_from_slice(&[0x6a, KERNEL_CS, 0x68]); // push KERNEL_CS; push reload
        let reload = ENTRY as u32 + code.len() as u32 + 4 + 2;
        code.extend_from_slice(&le(reload));
        code.extend_from_slice(&[0x48, 0xcb]); // retfq
        code.extend_from_slice(&[0x66, 0xb8, KERNEL_CS + 8, 0x00]); // mov ax, kernel SS
        code.extend_from_slice(&[0x8e, 0xd8, 0x8e, 0xc0, 0x8e, 0xd0]); // mov ds/es/ss, ax
        code.extend_from_slice(&[0x66, 0xb8, 0x40, 0x00, 0x0f, 0x00, 0xd8]); // ltr 0x40
        code.extend_from_slice(&[0xb9, 0x80, 0x00, 0x00, 0xc0, 0x0f, 0x32]); // rdmsr IA32_EFER
        code.extend_from_slice(&[0x83, 0xc8, 0x01, 0x0f, 0x30]); // or eax, SCE; wrmsr
        code.extend_from_slice(&[0xb9, 0x81, 0x00, 0x00, 0xc0, 0x31, 0xc0]); // ecx = STAR, eax = 0
        code.extend_from_slice(&[0xba, KERNEL_CS, 0x00, 0x23, 0x00, 0x0f, 0x30]); // edx: 0x23, CS; wrmsr
        code.extend_from_slice(&[0xb9, 0x82, 0x00, 0x00, 0xc0, 0xb8]); // ecx = LSTAR, eax = lstar
        code.extend_from_slice(&le(lstar));
        code.extend_from_slice(&[0x31, 0xd2, 0x0f, 0x30]); // edx = 0; wrmsr
        code.extend_from_slice(&[0xb9, 0x84, 0x00, 0x00, 0xc0, 0xb8]); // ecx = SFMASK, eax = IF|TF|DF|AC
        code.extend_from_slice(&le(0x4_7700));
        code.extend_from_slice(&[0x31, 0xd2, 0x0f, 0x30]); // edx = 0; wrmsr
        code.extend_from_slice(&[0x66, 0xba, 0xf8, 0x03, 0xb0, b'R', 0xee]); // print 'R'
        code.extend_from_slice(&[0x6a, USER_CS - 8, 0x68]); // push user SS; push USER_STACK
        code.extend_from_slice(&le(USER_STACK));
        code.extend_from_slice(&[0x6a, 0x02, 0x6a, USER_CS, 0x68]); // push RFLAGS; push USER_CS; push user
        code.extend_from_slice(&le(user));
        code.extend_from_slice(&[0x48, 0xcf]); // iretq
        code
    };
    let user = vec![0x0f, 0x05, 0x0f, 0x05, 0x0f, 0x0b]; // syscall; syscall; ud2
    let mut lstar = vec![0x66, 0xba, 0xf8, 0x03, 0xb0, b'S', 0xee]; // print 'S'
    lstar.extend_from_slice(&[0x66, 0x8c, 0xc8, 0xee]); // mov ax, cs; print al
    lstar.extend_from_slice(&[0xff, 0x04, 0x25]); // inc dword [SYSCALLS]
    lstar.extend_from_slice(&le(SYSCALLS));
    lstar.extend_from_slice(&[0x83, 0x3c, 0x25]); // cmp dword [SYSCALLS], 2
    lstar.extend_from_slice(&le(SYSCALLS));
    lstar.push(0x02);
    lstar.extend_from_slice(&[0x73, 0x03]); // jae over sysretq to the reset
    lstar.extend_from_slice(&[0x48, 0x0f, 0x07]); // sysretq
    lstar.extend_from_slice(&RESET);
    let mut fault = vec![0x90]; // nop
    fault.extend_from_slice(&[0x48, 0x8b, 0x44, 0x24, 0x08]); // mov rax, [rsp + 8]: RIP
    fault.extend_from_slice(&[0x48, 0x89, 0x04, 0x25]); // mov [FAULT_RIP], rax
    fault.extend_from_slice(&le(FAULT_RIP));
    fault.extend_from_slice(&[0x66, 0xba, 0xf8, 0x03, 0xb0, b'F', 0xee]); // print 'F'
    fault.extend_from_slice(&[0x8a, 0x44, 0x24, 0x10, 0xee]); // mov al, [rsp + 16]: CS; print
    fault.extend_from_slice(&RESET);

    let lstar_at = ENTRY + main(0, 0).len() as u64;
    let fault_at = lstar_at + lstar.len() as u64;
    let mut code = main(USER_CODE as u32, lstar_at as u32);
    code.extend_from_slice(&lstar);
    code.extend_from_slice(&fault);
    SyscallGuest {
        code,
        user,
        fault: fault_at,
    }
}

/// Writes the GDT, the TSS, the IDT (#GP and #PF, the faults that push an error code, to `fault`) and
/// ring 3's code, and opens [`USER_CODE`]'s 2 MiB page to ring 3.
fn write_syscall_tables(mem: &GuestMemoryMmap, guest: &SyscallGuest) {
    let fault = guest.fault;
    mem.write_slice(&guest.user, GuestAddress(USER_CODE))
        .unwrap();
    let tss_descriptor_low =
        0x67 | ((TSS & 0xff_ffff) << 16) | (0x89 << 40) | (((TSS >> 24) & 0xff) << 56);
    let gdt: [u64; 10] = [
        0,
        0x00af_9b00_0000_ffff, // 0x08: kernel 64-bit code
        0x00af_9b00_0000_ffff, // 0x10: kernel 64-bit code (STAR's kernel CS)
        0x00cf_9300_0000_ffff, // 0x18: kernel data
        0x00cf_fb00_0000_ffff, // 0x23: user 32-bit code
        0x00cf_f300_0000_ffff, // 0x2b: user data
        0x00af_fb00_0000_ffff, // 0x33: user 64-bit code
        0,
        tss_descriptor_low, // 0x40: 64-bit TSS
        TSS >> 32,
    ];
    for (index, descriptor) in gdt.iter().enumerate() {
        mem.write_obj(*descriptor, GuestAddress(GDT + 8 * index as u64))
            .unwrap();
    }
    let mut gdtr = [0u8; 10];
    gdtr[0..2].copy_from_slice(&((gdt.len() * 8 - 1) as u16).to_le_bytes());
    gdtr[2..10].copy_from_slice(&GDT.to_le_bytes());
    mem.write_slice(&gdtr, GuestAddress(GDTR.into())).unwrap();
    mem.write_obj(KERNEL_STACK, GuestAddress(TSS + 4)).unwrap(); // RSP0
    for vector in [13u64, 14] {
        let mut gate = [0u8; 16];
        gate[0..2].copy_from_slice(&(fault as u16).to_le_bytes());
        gate[2..4].copy_from_slice(&u16::from(KERNEL_CS).to_le_bytes());
        gate[5] = 0x8e;
        gate[6..8].copy_from_slice(&((fault >> 16) as u16).to_le_bytes());
        gate[8..12].copy_from_slice(&((fault >> 32) as u32).to_le_bytes());
        mem.write_slice(&gate, GuestAddress(IDT + vector * 16))
            .unwrap();
    }
    let mut idtr = [0u8; 10];
    idtr[0..2].copy_from_slice(&0x0fffu16.to_le_bytes());
    idtr[2..10].copy_from_slice(&IDT.to_le_bytes());
    mem.write_slice(&idtr, GuestAddress(IDTR.into())).unwrap();
    let user_bit = |address: u64| {
        let entry: u64 = mem.read_obj(GuestAddress(address)).unwrap();
        mem.write_obj(entry | 0x4, GuestAddress(address)).unwrap();
    };
    user_bit(BOOT_PML4);
    user_bit(BOOT_PDPT);
    user_bit(BOOT_PD + (USER_CODE >> 21) * 8);
}

#[test]
fn system_calls_from_ring_3_enter_ring_0_at_lstar_and_return_with_sysret() {
    let test = "system_calls_from_ring_3_enter_ring_0_at_lstar_and_return_with_sysret";
    if !kvm_or_skip(test) {
        return;
    }
    let guest = syscall_guest();
    let run = run("syscall", &guest.code, 1, |mem| {
        write_syscall_tables(mem, &guest)
    });

    let fault_rip: u64 = run.mem.read_obj(GuestAddress(FAULT_RIP.into())).unwrap();
    println!(
        "{test}: {:?} console {:x?} fault RIP {fault_rip:#x}",
        run.exit, run.console
    );
    assert_eq!(run.exit, VmExit::Reset);
    assert_eq!(
        run.console,
        [b'R', b'S', KERNEL_CS, b'S', KERNEL_CS],
        "each SYSCALL from ring 3 runs the LSTAR entry in ring 0 with STAR's kernel CS, and sysretq \
         returns to ring 3"
    );
}
