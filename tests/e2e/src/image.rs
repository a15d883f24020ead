//! The guest image: an initramfs (`initrd.cpio.gz`) holding a static busybox with its applet links,
//! Debian's stock modules, the project's static guest programs and the scripted `/init` with its steps.
//!
//! The inputs come from the provisioning scripts: `tests/scripts/fetch-guest.sh` leaves `bin/busybox` and
//! `lib/modules/<release>/` in a guest directory, the guest programs are built for
//! `x86_64-unknown-linux-gnu` with `-C target-feature=+crt-static`, and the scripts live in
//! `tests/e2e/guest/`. The archive is reproducible: the same inputs give the same bytes.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use flate2::Compression;
use flate2::write::GzEncoder;

use crate::cpio::{CpioError, CpioWriter};

/// Where the step library and the step files live in the image.
pub const SCRIPTS_DIR: &str = "usr/lib/vmmdev-e2e";
/// Where the project's guest programs are installed in the image (first in the guest's `PATH`).
pub const GUEST_BIN_DIR: &str = "usr/local/bin";

/// `PT_INTERP`: the program header naming a dynamic loader.
const PT_INTERP: u32 = 3;
/// `EM_X86_64`.
const EM_X86_64: u16 = 62;
/// The misc character device numbers of `/dev/console`.
const CONSOLE_MAJOR: u32 = 5;
const CONSOLE_MINOR: u32 = 1;

/// Errors of building the image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// An input file or directory could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The input.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The guest directory does not look like fetch-guest.sh's output.
    #[error(
        "{0} is not a guest directory from fetch-guest.sh (needs bin/busybox and one lib/modules/<release>)"
    )]
    NotAGuestDirectory(PathBuf),
    /// Running busybox on the build host to list its applets failed.
    #[error("cannot list the applets of {path} (it must run on the build host)")]
    BusyboxApplets {
        /// The busybox binary.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A guest program is not something the guest can run as it is.
    #[error("{path}: {reason}")]
    UnusableProgram {
        /// The program.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two inputs want the same path in the image.
    #[error("two inputs want the image path /{0}")]
    Duplicate(String),
    /// A path cannot be stored in the archive.
    #[error("{0:?} cannot be stored in the image (not UTF-8)")]
    UnstorablePath(PathBuf),
    /// Writing the archive failed.
    #[error("cannot write the image")]
    Archive(#[from] CpioError),
    /// Writing the output file failed.
    #[error("cannot write {path}")]
    Write {
        /// The output.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Everything the image is made of.
#[derive(Debug, Clone)]
pub struct ImageSources {
    /// The guest directory written by `tests/scripts/fetch-guest.sh`.
    pub guest_dir: PathBuf,
    /// The directory with `init`, `lib.sh`, `vmmdev-step` and `steps/*.sh` (see [`default_scripts_dir`]).
    pub scripts_dir: PathBuf,
    /// Directories of static guest programs; each executable file in them goes to `/usr/local/bin`.
    pub bin_dirs: Vec<PathBuf>,
}

/// What was built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSummary {
    /// The kernel release the modules belong to (`uname -r` in the guest).
    pub kernel_release: String,
    /// The guest programs installed in `/usr/local/bin`, by name.
    pub programs: Vec<String>,
    /// Number of archive entries.
    pub entries: usize,
    /// Size of the compressed image in bytes.
    pub compressed_bytes: u64,
}

/// The scripts shipped with this crate (`tests/e2e/guest`).
pub fn default_scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("guest")
}

/// Builds the image from `sources` and writes it, gzip-compressed, to `out` (replaced atomically).
pub fn build(sources: &ImageSources, out: &Path) -> Result<ImageSummary, ImageError> {
    let mut tree = Tree::with_base_layout();
    let kernel_release = add_guest_dir(&mut tree, &sources.guest_dir)?;
    add_scripts(&mut tree, &sources.scripts_dir)?;
    let mut programs = Vec::new();
    for dir in &sources.bin_dirs {
        programs.extend(add_programs(&mut tree, dir)?);
    }
    programs.sort();

    let entries = tree.nodes.len();
    let temporary = out.with_extension("tmp");
    let write_error = |source: io::Error| ImageError::Write {
        path: out.to_owned(),
        source,
    };
    let file = fs::File::create(&temporary).map_err(write_error)?;
    let encoder = GzEncoder::new(io::BufWriter::new(file), Compression::default());
    let encoder = tree.write(CpioWriter::new(encoder))?.finish()?;
    encoder
        .finish()
        .map_err(write_error)?
        .into_inner()
        .map_err(|e| write_error(e.into_error()))?
        .sync_all()
        .map_err(write_error)?;
    fs::rename(&temporary, out).map_err(write_error)?;
    let compressed_bytes = fs::metadata(out).map_err(write_error)?.len();
    Ok(ImageSummary {
        kernel_release,
        programs,
        entries,
        compressed_bytes,
    })
}

/// One entry of the image.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Directory {
        permissions: u32,
    },
    File {
        permissions: u32,
        data: Vec<u8>,
    },
    Symlink {
        target: String,
    },
    CharDevice {
        permissions: u32,
        major: u32,
        minor: u32,
    },
}

/// The image's file tree, ordered so that every directory precedes its contents.
#[derive(Debug, Default)]
struct Tree {
    nodes: BTreeMap<String, Node>,
}

impl Tree {
    fn with_base_layout() -> Self {
        let mut tree = Self::default();
        for dir in [
            "bin",
            "sbin",
            "usr/bin",
            "usr/sbin",
            GUEST_BIN_DIR,
            "lib",
            "etc",
            "proc",
            "sys",
            "dev",
            "run",
            "mnt",
        ] {
            tree.directory(dir, 0o755);
        }
        tree.directory("root", 0o700);
        tree.directory("tmp", 0o1777);
        let base_files: [(&str, &[u8]); 3] = [
            ("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"),
            ("etc/group", b"root:x:0:\n"),
            (
                "etc/profile",
                b"export PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin\nexport PS1='vmmdev-guest# '\n",
            ),
        ];
        for (path, data) in base_files {
            // The tree is empty apart from directories, so these cannot collide.
            tree.nodes.insert(
                path.to_owned(),
                Node::File {
                    permissions: 0o644,
                    data: data.to_vec(),
                },
            );
        }
        // The kernel opens /dev/console for init's stdio before init can mount devtmpfs.
        tree.nodes.insert(
            "dev/console".to_owned(),
            Node::CharDevice {
                permissions: 0o600,
                major: CONSOLE_MAJOR,
                minor: CONSOLE_MINOR,
            },
        );
        tree
    }

    /// Adds a directory and its missing parents; an existing directory is kept.
    fn directory(&mut self, path: &str, permissions: u32) {
        let mut prefix = String::new();
        for part in path.split('/') {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            let permissions = if prefix.len() == path.len() {
                permissions
            } else {
                0o755
            };
            self.nodes
                .entry(prefix.clone())
                .or_insert(Node::Directory { permissions });
        }
    }

    /// Adds a non-directory entry (with its missing parent directories); the path must be new.
    fn insert(&mut self, path: &str, node: Node) -> Result<(), ImageError> {
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.directory(parent, 0o755);
        }
        if self.nodes.contains_key(path) {
            return Err(ImageError::Duplicate(path.to_owned()));
        }
        self.nodes.insert(path.to_owned(), node);
        Ok(())
    }

    fn write<W: Write>(&self, mut writer: CpioWriter<W>) -> Result<CpioWriter<W>, CpioError> {
        for (path, node) in &self.nodes {
            match node {
                Node::Directory { permissions } => writer.directory(path, *permissions)?,
                Node::File { permissions, data } => writer.file(path, *permissions, data)?,
                Node::Symlink { target } => writer.symlink(path, target)?,
                Node::CharDevice {
                    permissions,
                    major,
                    minor,
                } => writer.char_device(path, *permissions, *major, *minor)?,
            }
        }
        Ok(writer)
    }
}

fn read(path: &Path) -> Result<Vec<u8>, ImageError> {
    fs::read(path).map_err(|source| ImageError::Read {
        path: path.to_owned(),
        source,
    })
}

fn utf8(path: &Path) -> Result<&str, ImageError> {
    path.to_str()
        .ok_or_else(|| ImageError::UnstorablePath(path.to_owned()))
}

/// Adds busybox with its applet links and the module tree; returns the kernel release.
fn add_guest_dir(tree: &mut Tree, guest_dir: &Path) -> Result<String, ImageError> {
    let busybox = guest_dir.join("bin/busybox");
    let modules = guest_dir.join("lib/modules");
    if !busybox.is_file() || !modules.is_dir() {
        return Err(ImageError::NotAGuestDirectory(guest_dir.to_owned()));
    }
    let releases = sorted_entries(&modules)?;
    let [release] = releases.as_slice() else {
        return Err(ImageError::NotAGuestDirectory(guest_dir.to_owned()));
    };
    let release_name = release
        .file_name()
        .and_then(|name| name.to_str())
        .ok_or_else(|| ImageError::NotAGuestDirectory(guest_dir.to_owned()))?
        .to_owned();

    tree.insert(
        "bin/busybox",
        Node::File {
            permissions: 0o755,
            data: read(&busybox)?,
        },
    )?;
    for applet in busybox_applets(&busybox)? {
        // busybox lists itself and a root-level linuxrc; neither needs a link.
        if applet == "bin/busybox" || !applet.contains('/') {
            continue;
        }
        tree.insert(
            &applet,
            Node::Symlink {
                target: "/bin/busybox".to_owned(),
            },
        )?;
    }
    add_host_tree(tree, release, &format!("lib/modules/{release_name}"))?;
    Ok(release_name)
}

/// The applets of a busybox binary as image paths (`bin/sh`, `usr/bin/awk`, ...).
fn busybox_applets(busybox: &Path) -> Result<Vec<String>, ImageError> {
    let applet_error = |source| ImageError::BusyboxApplets {
        path: busybox.to_owned(),
        source,
    };
    let output = Command::new(busybox)
        .arg("--list-full")
        .output()
        .map_err(applet_error)?;
    if !output.status.success() {
        return Err(applet_error(io::Error::other(format!(
            "busybox --list-full exited with {}",
            output.status
        ))));
    }
    let list = String::from_utf8(output.stdout)
        .map_err(|_| applet_error(io::Error::other("the applet list is not UTF-8")))?;
    Ok(list
        .lines()
        .map(str::trim)
        .filter(|line| {
            !line.is_empty() && !line.starts_with('/') && !line.split('/').any(|p| p == "..")
        })
        .map(str::to_owned)
        .collect())
}

/// Copies a host directory tree (regular files with their permission bits, symlinks) into the image.
fn add_host_tree(tree: &mut Tree, source: &Path, image_path: &str) -> Result<(), ImageError> {
    use std::os::unix::fs::PermissionsExt;

    tree.directory(image_path, 0o755);
    for entry in sorted_entries(source)? {
        let name = entry
            .file_name()
            .ok_or_else(|| ImageError::UnstorablePath(entry.clone()))?;
        let target_path = format!("{image_path}/{}", utf8(Path::new(name))?);
        let metadata = fs::symlink_metadata(&entry).map_err(|source| ImageError::Read {
            path: entry.clone(),
            source,
        })?;
        if metadata.is_dir() {
            add_host_tree(tree, &entry, &target_path)?;
        } else if metadata.file_type().is_symlink() {
            let target = fs::read_link(&entry).map_err(|source| ImageError::Read {
                path: entry.clone(),
                source,
            })?;
            tree.insert(
                &target_path,
                Node::Symlink {
                    target: utf8(&target)?.to_owned(),
                },
            )?;
        } else if metadata.is_file() {
            tree.insert(
                &target_path,
                Node::File {
                    permissions: metadata.permissions().mode() & 0o777,
                    data: read(&entry)?,
                },
            )?;
        }
    }
    Ok(())
}

/// Installs `init`, the step library, the step files and the `vmmdev-step` command.
fn add_scripts(tree: &mut Tree, scripts_dir: &Path) -> Result<(), ImageError> {
    let script = |name: &str| read(&scripts_dir.join(name));
    tree.insert(
        "init",
        Node::File {
            permissions: 0o755,
            data: script("init")?,
        },
    )?;
    tree.insert(
        &format!("{SCRIPTS_DIR}/lib.sh"),
        Node::File {
            permissions: 0o644,
            data: script("lib.sh")?,
        },
    )?;
    tree.insert(
        &format!("{GUEST_BIN_DIR}/vmmdev-step"),
        Node::File {
            permissions: 0o755,
            data: script("vmmdev-step")?,
        },
    )?;
    for step_file in sorted_entries(&scripts_dir.join("steps"))? {
        let Some(name) = step_file.file_name().and_then(|n| n.to_str()) else {
            return Err(ImageError::UnstorablePath(step_file));
        };
        if !name.ends_with(".sh") {
            continue;
        }
        tree.insert(
            &format!("{SCRIPTS_DIR}/steps/{name}"),
            Node::File {
                permissions: 0o644,
                data: read(&step_file)?,
            },
        )?;
    }
    Ok(())
}

/// Installs every executable regular file of `dir` in `/usr/local/bin`; returns their names.
fn add_programs(tree: &mut Tree, dir: &Path) -> Result<Vec<String>, ImageError> {
    use std::os::unix::fs::PermissionsExt;

    let mut names = Vec::new();
    for path in sorted_entries(dir)? {
        let metadata = fs::metadata(&path).map_err(|source| ImageError::Read {
            path: path.clone(),
            source,
        })?;
        if !metadata.is_file() || metadata.permissions().mode() & 0o111 == 0 {
            continue;
        }
        let data = read(&path)?;
        check_runnable_in_guest(&data).map_err(|reason| ImageError::UnusableProgram {
            path: path.clone(),
            reason,
        })?;
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            return Err(ImageError::UnstorablePath(path));
        };
        tree.insert(
            &format!("{GUEST_BIN_DIR}/{name}"),
            Node::File {
                permissions: 0o755,
                data,
            },
        )?;
        names.push(name.to_owned());
    }
    Ok(names)
}

/// Accepts scripts and static x86-64 ELF programs: the image has no dynamic loader and no libc.
fn check_runnable_in_guest(data: &[u8]) -> Result<(), &'static str> {
    if data.starts_with(b"#!") {
        return Ok(());
    }
    if !data.starts_with(b"\x7fELF") {
        return Err("neither an ELF program nor a script");
    }
    let bytes = |at: usize, len: usize| at.checked_add(len).and_then(|end| data.get(at..end));
    let u16_at = |at: usize| bytes(at, 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |at: usize| bytes(at, 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let u64_at = |at: usize| {
        bytes(at, 8).map(|b| {
            let mut word = [0; 8];
            word.copy_from_slice(b);
            u64::from_le_bytes(word)
        })
    };
    // ELFCLASS64, little-endian, x86-64.
    if data.get(4) != Some(&2) || data.get(5) != Some(&1) || u16_at(18) != Some(EM_X86_64) {
        return Err("not a 64-bit x86-64 ELF program");
    }
    let truncated = "truncated ELF program headers";
    let program_headers = u64_at(32)
        .and_then(|v| usize::try_from(v).ok())
        .ok_or(truncated)?;
    let entry_size = usize::from(u16_at(54).ok_or(truncated)?);
    let count = usize::from(u16_at(56).ok_or(truncated)?);
    for index in 0..count {
        let at = index
            .checked_mul(entry_size)
            .and_then(|offset| offset.checked_add(program_headers))
            .ok_or(truncated)?;
        if u32_at(at).ok_or(truncated)? == PT_INTERP {
            return Err(
                "dynamically linked (has an ELF interpreter): build it with \
                        RUSTFLAGS=\"-C target-feature=+crt-static\" --target x86_64-unknown-linux-gnu",
            );
        }
    }
    Ok(())
}

/// The entries of a directory, sorted by name (for reproducible images).
fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, ImageError> {
    let read_error = |source| ImageError::Read {
        path: dir.to_owned(),
        source,
    };
    let mut entries = fs::read_dir(dir)
        .map_err(read_error)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_error)?;
    entries.sort();
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf_header(class: u8, machine: u16, program_headers: &[u32]) -> Vec<u8> {
        let mut data = vec![0u8; 64];
        data[..4].copy_from_slice(b"\x7fELF");
        data[4] = class;
        data[5] = 1;
        data[18..20].copy_from_slice(&machine.to_le_bytes());
        data[32..40].copy_from_slice(&64u64.to_le_bytes());
        data[54..56].copy_from_slice(&56u16.to_le_bytes());
        let count = u16::try_from(program_headers.len()).unwrap();
        data[56..58].copy_from_slice(&count.to_le_bytes());
        for kind in program_headers {
            let mut entry = vec![0u8; 56];
            entry[..4].copy_from_slice(&kind.to_le_bytes());
            data.extend(entry);
        }
        data
    }

    #[test]
    fn static_elf_is_accepted() {
        assert_eq!(
            check_runnable_in_guest(&elf_header(2, EM_X86_64, &[1, 1, 4])),
            Ok(())
        );
    }

    #[test]
    fn elf_with_interpreter_is_rejected_as_dynamic() {
        let result = check_runnable_in_guest(&elf_header(2, EM_X86_64, &[6, PT_INTERP, 1]));
        assert!(result.unwrap_err().starts_with("dynamically linked"));
    }

    #[test]
    fn elf_for_another_machine_is_rejected() {
        assert!(check_runnable_in_guest(&elf_header(2, 183, &[1])).is_err());
        assert!(check_runnable_in_guest(&elf_header(1, EM_X86_64, &[1])).is_err());
    }

    #[test]
    fn elf_with_program_headers_past_the_end_is_rejected_without_panic() {
        let mut data = elf_header(2, EM_X86_64, &[1]);
        data[56..58].copy_from_slice(&u16::MAX.to_le_bytes());
        assert_eq!(
            check_runnable_in_guest(&data),
            Err("truncated ELF program headers")
        );
        data[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(
            check_runnable_in_guest(&data),
            Err("truncated ELF program headers")
        );
    }

    #[test]
    fn script_is_accepted_and_other_data_rejected() {
        assert_eq!(check_runnable_in_guest(b"#!/bin/sh\n"), Ok(()));
        assert!(check_runnable_in_guest(b"plain text").is_err());
    }

    #[test]
    fn tree_puts_parent_directories_before_their_contents() {
        let mut tree = Tree::default();
        tree.insert("a/b/c", Node::Symlink { target: "x".into() })
            .unwrap();
        tree.insert("a-b", Node::Symlink { target: "x".into() })
            .unwrap();
        let paths: Vec<&str> = tree.nodes.keys().map(String::as_str).collect();
        let position = |p: &str| paths.iter().position(|q| *q == p).unwrap();
        assert!(position("a") < position("a/b"));
        assert!(position("a/b") < position("a/b/c"));
    }

    #[test]
    fn inserting_the_same_path_twice_is_an_error() {
        let mut tree = Tree::default();
        tree.insert("bin/x", Node::Symlink { target: "y".into() })
            .unwrap();
        let again = tree.insert("bin/x", Node::Symlink { target: "z".into() });
        assert!(matches!(again, Err(ImageError::Duplicate(path)) if path == "bin/x"));
    }

    #[test]
    fn base_layout_has_a_console_node_and_a_sticky_tmp() {
        let tree = Tree::with_base_layout();
        assert_eq!(
            tree.nodes.get("dev/console"),
            Some(&Node::CharDevice {
                permissions: 0o600,
                major: 5,
                minor: 1
            })
        );
        assert_eq!(
            tree.nodes.get("tmp"),
            Some(&Node::Directory {
                permissions: 0o1777
            })
        );
    }

    #[test]
    fn guest_directory_without_busybox_is_rejected() {
        let dir =
            std::env::temp_dir().join(format!("vmmdev-e2e-image-test-{}", std::process::id()));
        fs::create_dir_all(dir.join("lib/modules/6.1.0-1-amd64")).unwrap();
        let result = add_guest_dir(&mut Tree::default(), &dir);
        fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(result, Err(ImageError::NotAGuestDirectory(_))));
    }

    #[test]
    fn shipped_scripts_are_all_installed() {
        let mut tree = Tree::default();
        add_scripts(&mut tree, &default_scripts_dir()).unwrap();
        assert!(matches!(
            tree.nodes.get("init"),
            Some(Node::File {
                permissions: 0o755,
                ..
            })
        ));
        assert!(tree.nodes.contains_key("usr/lib/vmmdev-e2e/lib.sh"));
        assert!(
            tree.nodes
                .contains_key("usr/lib/vmmdev-e2e/steps/10-base.sh")
        );
        assert!(tree.nodes.contains_key("usr/local/bin/vmmdev-step"));
    }
}
