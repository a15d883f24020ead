//! The shared folders service under a hostile guest, with confinement checked after every input.
//!
//! Each input gets a fresh host tree: a writable share `data` (symlinks allowed), a read-only
//! share `ro` and a share `inner` whose symlinks must stay inside, next to a directory
//! `outside/` holding a secret. Host symlinks in the shares point at the secret and at each
//! other. Whatever the guest sends, after the input:
//! * no buffer the service filled holds the secret's bytes (unless the guest sent them);
//! * nothing under `outside/` changed, and nothing new appeared beside the shares;
//! * the read-only share is exactly as it was.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use vmmdev_protocol::services::shared_folders::{HostFunction, SERVICE_NAME};

use crate::script;
use crate::session::{KERNEL, ROOT, Session, Target, output_buffers};

/// Bytes that must never reach the guest: the content of `outside/secret`.
pub const SECRET: &[u8] = b"vmmdev fuzz: this secret lives outside every share";

/// Runs one fuzz input.
pub fn run(input: &[u8]) {
    let tree = Tree::new();
    let before = tree.snapshot();
    let target = Target {
        service: SERVICE_NAME,
        requestors: [KERNEL, ROOT],
        frame_text: shfl_string,
        // Removing a share is the host event guests wait for; adding one names a host path.
        host_functions: |function| u32::from(function) == HostFunction::REMOVE_MAPPING.raw(),
    };
    let session = Session::start(
        vmmdev_svc_shared_folders::shared_folders_entry,
        &tree.config(),
        target,
    );
    let outcomes = session.run(&script::decode(input));
    // A guest that sent the secret itself (libFuzzer learns it from this very comparison) may
    // get it back from its own buffers or files.
    if !contains_secret(input) {
        for outcome in &outcomes {
            if output_buffers(outcome).any(|bytes| contains_secret(&bytes)) {
                panic!("the secret outside the shares reached the guest: {outcome:?}");
            }
        }
    }
    let after = tree.snapshot();
    if after.outside != before.outside {
        panic!(
            "the guest changed the host outside its shares: {:?} became {:?}",
            before.outside, after.outside
        );
    }
    if after.read_only != before.read_only {
        panic!(
            "the guest changed a read-only share: {:?} became {:?}",
            before.read_only, after.read_only
        );
    }
}

fn contains_secret(bytes: &[u8]) -> bool {
    bytes.windows(SECRET.len()).any(|window| window == SECRET)
}

/// A UTF-8 `SHFLSTRING` as the Linux driver builds it: size, length, bytes, NUL.
pub fn shfl_string(text: &[u8]) -> Vec<u8> {
    let text = &text[..text.len().min(usize::from(u16::MAX) - 1)];
    let length = text.len() as u16;
    let mut framed = Vec::with_capacity(text.len() + 5);
    framed.extend((length + 1).to_le_bytes());
    framed.extend(length.to_le_bytes());
    framed.extend(text);
    framed.push(0);
    framed
}

/// What a snapshot records of each path: its type, mode, size and content (or link target).
type Listing = BTreeMap<PathBuf, (u32, u64, Vec<u8>)>;

/// The parts of the host tree the guest must not change.
struct Snapshot {
    /// The temporary directory's own entries and everything under `outside/`.
    outside: Listing,
    /// Everything under the read-only share.
    read_only: Listing,
}

/// The host tree of one input, removed when dropped.
struct Tree {
    root: PathBuf,
}

impl Tree {
    fn new() -> Tree {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let root = std::env::temp_dir().join(format!(
            "vmmdev-sf-fuzz-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let tree = Tree { root };
        if let Err(error) = tree.populate() {
            panic!(
                "cannot build the fuzz tree at {}: {error}",
                tree.root.display()
            );
        }
        tree
    }

    fn populate(&self) -> std::io::Result<()> {
        let at = |relative: &str| self.root.join(relative);
        for dir in ["outside", "data/dir/sub", "ro/dir", "inner/dir"] {
            fs::create_dir_all(at(dir))?;
        }
        fs::write(at("outside/secret"), SECRET)?;
        for share in ["data", "ro", "inner"] {
            fs::write(at(&format!("{share}/file")), b"0123456789abcdef")?;
            fs::write(at(&format!("{share}/dir/nested")), b"nested")?;
            symlink("../outside/secret", at(&format!("{share}/escape")))?;
            symlink(at("outside"), at(&format!("{share}/absolute")))?;
            symlink("file", at(&format!("{share}/inside")))?;
            symlink("../../ro/file", at(&format!("{share}/dir/sibling")))?;
        }
        Ok(())
    }

    /// The service configuration sharing the three directories.
    fn config(&self) -> String {
        let share = |name: &str, options: &str| {
            let path = self.root.join(name).to_string_lossy().replace('\\', "\\\\");
            format!("share={name}:{}{options}", path.replace(':', "\\:"))
        };
        [
            share("data", ":symlinks=allow"),
            share("ro", ":ro:auto"),
            share("inner", ":symlinks=inside:auto"),
            "max_handles=64".to_owned(),
        ]
        .join(";")
    }

    fn snapshot(&self) -> Snapshot {
        let mut outside = Listing::new();
        // The temporary directory itself: its entries (the three shares and outside/).
        if let Ok(entries) = fs::read_dir(&self.root) {
            for entry in entries.flatten() {
                outside.insert(entry.path(), (0, 0, Vec::new()));
            }
        }
        record(&self.root.join("outside"), &mut outside);
        let mut read_only = Listing::new();
        record(&self.root.join("ro"), &mut read_only);
        Snapshot { outside, read_only }
    }
}

/// Records `path` and everything beneath it, without following symlinks.
fn record(path: &Path, listing: &mut Listing) {
    let Ok(metadata) = fs::symlink_metadata(path) else {
        return;
    };
    let content = if metadata.is_file() {
        fs::read(path).unwrap_or_default()
    } else if metadata.is_symlink() {
        fs::read_link(path)
            .map(|target| target.into_os_string().into_encoded_bytes())
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    listing.insert(
        path.to_owned(),
        (metadata.mode(), metadata.mtime() as u64, content),
    );
    if metadata.is_dir()
        && let Ok(entries) = fs::read_dir(path)
    {
        for entry in entries.flatten() {
            record(&entry.path(), listing);
        }
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        // Make everything writable again first: the guest may have chmod-ed directories.
        restore_permissions(&self.root);
        let _ = fs::remove_dir_all(&self.root);
    }
}

fn restore_permissions(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(metadata) = fs::symlink_metadata(path) else {
        return;
    };
    if metadata.is_dir() {
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o755));
        if let Ok(entries) = fs::read_dir(path) {
            for entry in entries.flatten() {
                restore_permissions(&entry.path());
            }
        }
    }
}
