//! Loading the guest: kernel (bzImage or ELF `vmlinux`), initramfs, command line and the zero page, as
//! the Linux 64-bit boot protocol expects them (kvm-vmm.md §2, steps 7–10).
//!
//! A bzImage is what real KVM users pass; its 64-bit entry is `startup_64` of the decompressor, 0x200
//! bytes into the protected-mode part. An ELF `vmlinux` (the same kernel, decompressed) is entered at its
//! ELF entry point and skips the decompressor, which matters where guest kernel code is emulated: the
//! decompressor alone would take minutes there (kvm-vmm.md §0). The format is recognised by its magic.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use linux_loader::loader::bootparam::{self, boot_params, setup_header};
use linux_loader::loader::{BzImage, Elf, KernelLoader};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use crate::layout;
use crate::memory::{E820Entry, e820_map};

/// Offset of the 64-bit entry point in a bzImage's protected-mode part.
const BZIMAGE_ENTRY_64: u64 = 0x200;
/// Oldest boot protocol with a 64-bit entry point.
const MIN_BOOT_PROTOCOL: u16 = 0x020c;
/// "HdrS": the setup header's magic.
const SETUP_MAGIC: u32 = 0x5372_6448;
/// The boot sector's magic.
const BOOT_FLAG: u16 = 0xAA55;
/// "Loader type undefined" (0 makes some kernels misbehave).
const LOADER_TYPE_UNDEFINED: u8 = 0xFF;
/// Alignment synthesised for an ELF kernel's setup header.
const ELF_KERNEL_ALIGNMENT: u32 = 0x0100_0000;
/// Highest initrd address synthesised for an ELF kernel's setup header.
const ELF_INITRD_ADDR_MAX: u32 = 0x7fff_ffff;
const PAGE_SIZE: u64 = 4096;

/// Errors of loading the guest.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file could not be opened or read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The kernel file is neither an ELF file nor a bzImage.
    #[error("{0} is neither an ELF vmlinux nor a bzImage")]
    UnknownFormat(PathBuf),
    /// linux-loader refused the kernel.
    #[error("cannot load the kernel {path}")]
    Kernel {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: linux_loader::loader::Error,
    },
    /// The bzImage cannot be entered in 64-bit mode.
    #[error(
        "{path}: boot protocol {version:#06x} without a 64-bit entry point (need 2.12 and XLF_KERNEL_64)"
    )]
    No64BitEntry {
        /// The file.
        path: PathBuf,
        /// The image's boot protocol version.
        version: u16,
    },
    /// The command line is too long or holds a NUL byte.
    #[error("the kernel command line must be shorter than {max} bytes and hold no NUL byte")]
    Cmdline {
        /// The limit, terminator included.
        max: usize,
    },
    /// The initramfs does not fit between the kernel and the end of low memory.
    #[error(
        "the initramfs ({size} bytes) does not fit in guest memory above the kernel (end {kernel_end:#x})"
    )]
    InitrdTooLarge {
        /// Its size.
        size: u64,
        /// Where the kernel ends.
        kernel_end: u64,
    },
    /// Writing into guest memory failed.
    #[error("cannot write the {what} into guest memory")]
    Memory {
        /// What was written.
        what: &'static str,
        /// Why.
        #[source]
        source: vm_memory::GuestMemoryError,
    },
}

/// What the guest boots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootSource {
    /// The kernel: a bzImage or an ELF vmlinux.
    pub kernel: PathBuf,
    /// The initramfs, if any.
    pub initrd: Option<PathBuf>,
    /// The kernel command line.
    pub cmdline: String,
}

/// Which kind of kernel image was loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelFormat {
    /// A compressed bzImage, entered through its decompressor.
    BzImage,
    /// A decompressed ELF vmlinux, entered directly.
    Elf,
}

/// Where the boot CPU starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootEntry {
    /// The kernel's 64-bit entry point.
    pub rip: u64,
    /// The zero page, passed in `rsi`.
    pub zero_page: u64,
    /// What was loaded.
    pub format: KernelFormat,
}

/// Loads kernel, initramfs and command line into `mem` and writes the zero page.
pub fn load(mem: &GuestMemoryMmap, source: &BootSource) -> Result<BootEntry, LoadError> {
    let read_error = |path: &Path| {
        let path = path.to_owned();
        move |source| LoadError::Read { path, source }
    };
    let mut kernel = File::open(&source.kernel).map_err(read_error(&source.kernel))?;
    let format = detect_format(&mut kernel).map_err(read_error(&source.kernel))?;
    let format = format.ok_or_else(|| LoadError::UnknownFormat(source.kernel.clone()))?;
    let kernel_error = |source_error| LoadError::Kernel {
        path: source.kernel.clone(),
        source: source_error,
    };
    let high_memory = Some(GuestAddress(layout::HIGH_MEMORY));
    let (rip, header, kernel_end) = match format {
        KernelFormat::Elf => {
            let loaded = Elf::load(mem, None, &mut kernel, high_memory).map_err(kernel_error)?;
            (loaded.kernel_load.0, elf_setup_header(), loaded.kernel_end)
        }
        KernelFormat::BzImage => {
            let loaded =
                BzImage::load(mem, None, &mut kernel, high_memory).map_err(kernel_error)?;
            let header = loaded.setup_header.unwrap_or_default();
            let version = header.version;
            if version < MIN_BOOT_PROTOCOL || header.xloadflags & bootparam::XLF_KERNEL_64 == 0 {
                return Err(LoadError::No64BitEntry {
                    path: source.kernel.clone(),
                    version,
                });
            }
            // The decompressor needs `init_size` bytes from the load address.
            let end = loaded.kernel_load.0 + u64::from(header.init_size);
            (
                loaded.kernel_load.0 + BZIMAGE_ENTRY_64,
                header,
                end.max(loaded.kernel_end),
            )
        }
    };

    let mut params = boot_params {
        hdr: header,
        ..boot_params::default()
    };
    params.hdr.type_of_loader = LOADER_TYPE_UNDEFINED;
    write_cmdline(mem, &source.cmdline)?;
    params.hdr.cmd_line_ptr = layout::CMDLINE as u32;
    params.hdr.cmdline_size = source.cmdline.len() as u32;
    if let Some(initrd) = &source.initrd {
        let max = u64::from(params.hdr.initrd_addr_max);
        let (address, size) = load_initrd(mem, initrd, kernel_end, max)?;
        params.hdr.ramdisk_image = address as u32;
        params.hdr.ramdisk_size = size as u32;
    }
    let ram: u64 = mem.iter().map(GuestMemoryRegion::len).sum();
    fill_e820(&mut params, &e820_map(ram));
    mem.write_obj(params, GuestAddress(layout::ZERO_PAGE))
        .map_err(|source| LoadError::Memory {
            what: "zero page",
            source,
        })?;
    log::info!(
        "loaded {:?} kernel {} (entry {rip:#x}, end {kernel_end:#x}), command line: {}",
        format,
        source.kernel.display(),
        source.cmdline
    );
    Ok(BootEntry {
        rip,
        zero_page: layout::ZERO_PAGE,
        format,
    })
}

/// Tells an ELF file from a bzImage by their magic numbers.
fn detect_format(file: &mut File) -> io::Result<Option<KernelFormat>> {
    let mut head = [0u8; 0x206];
    file.seek(SeekFrom::Start(0))?;
    let mut filled = 0;
    while filled < head.len() {
        match file.read(&mut head[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    file.seek(SeekFrom::Start(0))?;
    if filled >= 4 && head[..4] == *b"\x7fELF" {
        return Ok(Some(KernelFormat::Elf));
    }
    if filled == head.len()
        && u32::from_le_bytes([head[0x202], head[0x203], head[0x204], head[0x205]]) == SETUP_MAGIC
    {
        return Ok(Some(KernelFormat::BzImage));
    }
    Ok(None)
}

/// The setup header a bootloader would take from a bzImage, for an ELF kernel that has none.
fn elf_setup_header() -> setup_header {
    setup_header {
        boot_flag: BOOT_FLAG,
        header: SETUP_MAGIC,
        kernel_alignment: ELF_KERNEL_ALIGNMENT,
        initrd_addr_max: ELF_INITRD_ADDR_MAX,
        ..setup_header::default()
    }
}

fn write_cmdline(mem: &GuestMemoryMmap, cmdline: &str) -> Result<(), LoadError> {
    if cmdline.len() >= layout::CMDLINE_MAX || cmdline.contains('\0') {
        return Err(LoadError::Cmdline {
            max: layout::CMDLINE_MAX,
        });
    }
    let mut bytes = cmdline.as_bytes().to_vec();
    bytes.push(0);
    mem.write_slice(&bytes, GuestAddress(layout::CMDLINE))
        .map_err(|source| LoadError::Memory {
            what: "command line",
            source,
        })
}

/// Places the initramfs page-aligned at the top of low memory (below `max_address`), above the kernel.
fn load_initrd(
    mem: &GuestMemoryMmap,
    path: &Path,
    kernel_end: u64,
    max_address: u64,
) -> Result<(u64, u64), LoadError> {
    let read_error = |source| LoadError::Read {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(read_error)?;
    let size = file.metadata().map_err(read_error)?.len();
    let low_end = mem
        .iter()
        .next()
        .map_or(0, |region| region.start_addr().0 + region.len());
    let top = low_end.min(max_address.saturating_add(1));
    let address = top.checked_sub(size).map(|a| a & !(PAGE_SIZE - 1));
    let Some(address) = address.filter(|&a| a >= kernel_end) else {
        return Err(LoadError::InitrdTooLarge { size, kernel_end });
    };
    let length =
        usize::try_from(size).map_err(|_| LoadError::InitrdTooLarge { size, kernel_end })?;
    mem.read_exact_volatile_from(GuestAddress(address), &mut file, length)
        .map_err(|source| LoadError::Memory {
            what: "initramfs",
            source,
        })?;
    Ok((address, size))
}

fn fill_e820(params: &mut boot_params, map: &[E820Entry]) {
    let mut table = params.e820_table;
    for (slot, entry) in table.iter_mut().zip(map) {
        slot.addr = entry.addr;
        slot.size = entry.size;
        slot.r#type = entry.kind;
    }
    params.e820_table = table;
    params.e820_entries = map.len().min(table.len()) as u8;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 256 << 20)]).unwrap()
    }

    fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("vmmdev-monitor-{}-{name}", std::process::id()));
        File::create(&path).unwrap().write_all(bytes).unwrap();
        path
    }

    #[test]
    fn file_that_is_no_kernel_is_refused_by_name() {
        let path = temp_file("not-a-kernel", b"hello");
        let error = load(
            &mem(),
            &BootSource {
                kernel: path.clone(),
                initrd: None,
                cmdline: String::new(),
            },
        )
        .unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(error, LoadError::UnknownFormat(p) if p == path));
    }

    #[test]
    fn bzimage_magic_is_recognised() {
        let mut image = vec![0u8; 0x400];
        image[0x202..0x206].copy_from_slice(b"HdrS");
        let path = temp_file("bzimage-magic", &image);
        let format = detect_format(&mut File::open(&path).unwrap()).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(format, Some(KernelFormat::BzImage));
    }

    #[test]
    fn command_line_is_written_nul_terminated() {
        let mem = mem();
        write_cmdline(&mem, "console=ttyS0").unwrap();
        let mut bytes = [0xAAu8; 14];
        mem.read_slice(&mut bytes, GuestAddress(layout::CMDLINE))
            .unwrap();
        assert_eq!(&bytes, b"console=ttyS0\0");
    }

    #[test]
    fn overlong_command_line_is_refused() {
        let long = "x".repeat(layout::CMDLINE_MAX);
        assert!(matches!(
            write_cmdline(&mem(), &long),
            Err(LoadError::Cmdline { .. })
        ));
    }

    #[test]
    fn initrd_goes_page_aligned_to_the_top_of_ram() {
        let path = temp_file("initrd-top", &[7u8; 5000]);
        let (address, size) = load_initrd(&mem(), &path, 32 << 20, u64::from(u32::MAX)).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(size, 5000);
        assert_eq!(address % PAGE_SIZE, 0);
        assert!(address + size <= 256 << 20);
        assert!(address + size > (256 << 20) - PAGE_SIZE * 2);
    }

    #[test]
    fn initrd_that_would_overlap_the_kernel_is_refused() {
        let path = temp_file("initrd-overlap", &[7u8; 8192]);
        let error =
            load_initrd(&mem(), &path, (256 << 20) - 4096, u64::from(u32::MAX)).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            error,
            LoadError::InitrdTooLarge { size: 8192, .. }
        ));
    }

    #[test]
    fn e820_entries_are_copied_into_the_zero_page() {
        let mut params = boot_params::default();
        fill_e820(&mut params, &e820_map(256 << 20));
        assert_eq!(params.e820_entries, 3);
        let table = params.e820_table;
        assert_eq!({ table[2].addr }, 1 << 20);
    }
}
