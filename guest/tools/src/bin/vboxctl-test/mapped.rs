//! Writes through a shared file mapping (linux-guest.md §7 item 36): the write path a file system
//! sees only as dirty pages written back, never as `write(2)` calls. Busybox has no way to do it.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::{Failure, Outcome};

/// Length of one record of the pattern: 15 decimal digits and a newline.
const RECORD: usize = 16;

/// The pattern: the offset of each 16-byte record, as 15 zero-padded digits and a newline, so a
/// shell can produce the same bytes with `awk '{ printf "%015d\n", $1 }'`.
fn pattern(size: usize) -> Vec<u8> {
    (0..size)
        .step_by(RECORD)
        .flat_map(|offset| format!("{offset:015}\n").into_bytes())
        .take(size)
        .collect()
}

/// Creates (or truncates) `path`, sizes it to `size` bytes with `ftruncate`, maps it
/// `MAP_SHARED`, writes the pattern through the mapping, unmaps it and closes the file.
pub fn mmap_write(path: &Path, size: usize) -> Outcome {
    if size == 0 || size % RECORD != 0 {
        return Err(Failure(format!(
            "size {size} is not a positive multiple of {RECORD}"
        )));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|err| Failure(format!("open {}: {err}", path.display())))?;
    let length = u64::try_from(size).map_err(|_| Failure(format!("size {size} too large")))?;
    file.set_len(length)
        .map_err(|err| Failure(format!("ftruncate to {size}: {err}")))?;
    // SAFETY: a new shared mapping of `size` bytes of an open file; the kernel picks the address
    // and nothing else refers to the mapping.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(Failure(format!(
            "mmap MAP_SHARED: {}",
            std::io::Error::last_os_error()
        )));
    }
    let data = pattern(size);
    // SAFETY: the mapping is `size` bytes long, writable, and `data` holds exactly `size` bytes;
    // the two do not overlap.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), base.cast::<u8>(), size) };
    // SAFETY: unmaps exactly the mapping made above, which nothing uses afterwards.
    if unsafe { libc::munmap(base, size) } != 0 {
        return Err(Failure(format!(
            "munmap: {}",
            std::io::Error::last_os_error()
        )));
    }
    drop(file);
    Ok(format!(
        "wrote {size} bytes through a MAP_SHARED mapping of {}",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_records_are_their_zero_padded_offsets() {
        let bytes = pattern(48);
        assert_eq!(
            bytes,
            b"000000000000000\n000000000000016\n000000000000032\n".to_vec()
        );
    }

    #[test]
    fn the_file_holds_the_pattern_after_unmap_and_close() {
        let path = std::env::temp_dir().join(format!("vboxctl-mmap-{}", std::process::id()));
        mmap_write(&path, 8192).expect("mmap-write");
        let written = std::fs::read(&path).expect("read back");
        let _ = std::fs::remove_file(&path);
        assert_eq!(written, pattern(8192));
    }

    #[test]
    fn sizes_that_cut_a_record_are_refused() {
        let path = std::env::temp_dir().join("vboxctl-mmap-never-created");
        assert!(mmap_write(&path, 100).is_err());
        assert!(!path.exists());
    }
}
