//! The reference KVM monitor: boots a Linux guest with the VMMDev device in-process.
//!
//! Built from rust-vmm crates (kvm-ioctls, vm-memory, linux-loader, vm-superio), it gives an unmodified
//! Linux guest what its in-tree `vboxguest` driver needs and nothing more: a 64-bit boot with kernel,
//! initramfs and command line; the in-kernel irqchip and PIT; a serial console; a PCI host bridge and
//! the VMMDev function on bus 0 behind configuration mechanism #1; and an MP table that routes VMMDev's
//! level-triggered INTA# to its own IOAPIC pin, so Linux finds everything without ACPI. VMMDev's RAM
//! BAR is a KVM memory slot (the guest reads it without exits); its interrupt is an irqfd with a
//! resample eventfd.
//!
//! The modules follow the machine, one concept each:
//!
//! - [`layout`]: every guest-physical address, port and GSI.
//! - [`memory`]: guest RAM, its KVM slots and the e820 map; [`loader`]: kernel, initramfs, command line,
//!   zero page; [`mptable`]: the MP tables; [`cpu`]: a vCPU's boot state.
//! - [`pci`]: configuration mechanism #1 with the host bridge; [`serial`]: the console; [`intx`]: VMMDev's
//!   interrupt on KVM.
//! - [`emulation`]: instructions KVM could not emulate (hosts that emulate guest kernel code), with
//!   [`xsave`] (the extended state those hosts cannot save) and [`page_walk`] (guest memory accessed on
//!   the guest's behalf); [`host`]:
//!   what the host's KVM is, where that changes the machine (PVM); [`syscall_bridge`]: ring-3 system calls
//!   where that KVM leaves SYSCALL in ring 3.
//! - [`exits`]: VM exit counters; [`audit`]: the host's check that cancelled requests stay untouched.
//! - [`vm`]: the VM and how a run ends; inside it, the machine the vCPUs see (port map, BARs) and the
//!   vCPU threads.
//!
//! ```no_run
//! use std::path::PathBuf;
//! use vmmdev_hgcm::{Hgcm, HgcmConfig};
//! use vmmdev_monitor::intx::IntxMode;
//! use vmmdev_monitor::loader::BootSource;
//! use vmmdev_monitor::vm::{Vm, VmConfig};
//!
//! let config = VmConfig {
//!     memory_mib: 512,
//!     vcpus: 1,
//!     boot: BootSource {
//!         kernel: PathBuf::from("vmlinux"),
//!         initrd: Some(PathBuf::from("initrd.cpio.gz")),
//!         cmdline: "console=ttyS0 reboot=k panic=-1 acpi=off pci=conf1".into(),
//!     },
//!     intx: IntxMode::Irqfd,
//!     syscall_bridge: false,
//!     console_output: Box::new(std::io::stdout()),
//!     console_input: None,
//! };
//! let mut vm = Vm::new(config, Hgcm::new(HgcmConfig::default())).unwrap();
//! let (exit, _times) = vm.run().unwrap();
//! println!("{exit:?}; {}", vm.counters().snapshot());
//! ```

pub mod audit;
pub mod cpu;
pub mod emulation;
pub mod exits;
pub mod host;
pub mod intx;
pub mod layout;
pub mod loader;
mod machine;
pub mod memory;
pub mod mptable;
pub mod page_walk;
pub mod pci;
pub mod serial;
pub mod syscall_bridge;
mod vcpu;
pub mod vm;
pub mod xsave;
