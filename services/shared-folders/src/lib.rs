//! The shared folders HGCM service (`VBoxSharedFolders`), wire-compatible with VirtualBox's, so
//! an unmodified Linux guest mounts host directories with its in-tree `vboxsf` driver.
//!
//! Register [`shared_folders_entry`] as a built-in, or load the plugin library built by the
//! `vmmdev-svc-shared-folders-plugin` crate (`libvmmdev_shared_folders.so`, `Hgcm::load_plugin`;
//! the same entry behind the same C ABI):
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let hgcm = vmmdev_hgcm::Hgcm::new(vmmdev_hgcm::HgcmConfig::default());
//! hgcm.register_builtin(
//!     vmmdev_svc_shared_folders::shared_folders_entry,
//!     "share=data:/srv/data:rw:symlinks=inside share=docs:/srv/docs:ro:auto",
//! )?;
//! # Ok(())
//! # }
//! ```
//!
//! # Layers
//!
//! * [`service`]: the HGCM boundary. Decodes parameters (copying strings and structures out of
//!   guest memory once, bounded), runs the operation, writes outputs, turns errors into
//!   VirtualBox statuses.
//! * [`server`]: the operations with decoded arguments, driven directly by the service layer
//!   (and by benchmarks): shares, client [`session`]s, mapping functions; `create` (CREATE's
//!   result conventions), [`handle_ops`] (READ/WRITE straight between files and guest pages
//!   with `preadv`/`pwritev` on the guest buffer's volatile slices, LIST, INFORMATION, …) and
//!   [`path_ops`] (REMOVE, RENAME, SYMLINK, …).
//! * [`share`]: confinement. Every path is resolved by the kernel beneath the share's root
//!   descriptor (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`); entry operations act
//!   on one name relative to a parent descriptor resolved the same way.
//! * `dircache`: confined directory descriptors kept open per share, dropped on inotify
//!   events, so lookups below the root skip resolving the parent again.
//! * [`config`], [`mappings`], [`handles`], [`dir`], [`info`], [`string`], [`path`],
//!   [`persist`], [`error`]: configuration, the share table, per-client handle tables,
//!   directory cursors, metadata conversion, `SHFLSTRING`s, guest paths, saved sessions,
//!   errors.
//! * [`stats`]: calls per client and function, logged when the client disconnects.
//! * [`host`]: the host calls (add, remove, list shares at run time) and their parameter
//!   builders.
//!
//! # Guest functions
//!
//! Every function of VirtualBox 7.0 (1–29) is served. Notes where behaviour is chosen:
//!
//! * CREATE: "not found"/"exists" for files are successful calls with the result code, as the
//!   Linux guest requires; an existing directory is always opened as a directory.
//! * LIST: the cursor lives in the handle; `.` and `..` are listed (`..` of the share root shows
//!   the root itself); records are packed without padding; the call after the last entry fails
//!   with `VERR_NO_MORE_FILES`; an entry that does not fit is returned by the next call.
//! * INFORMATION SET: zero times and a zero mode mean "unchanged"; set-uid/set-gid/sticky are
//!   never set; host errors are reported (VirtualBox ignores them).
//! * Volume information never reports a zero allocation unit.
//! * LOCK validates and succeeds without locking (VirtualBox's behaviour on POSIX hosts).
//! * Read-only shares refuse every modifying function, SYMLINK and COPY_FILE included, with
//!   `VERR_WRITE_PROTECT`.
//! * WAIT_FOR_MAPPINGS_CHANGES completes with `VINF_SUCCESS` and the new version when shares
//!   change (VirtualBox 7.0.14 answers `VERR_CANCELLED`; guests treat any answer as "re-read").
//! * SET_ERROR_STYLE accepts the Linux style only (`VERR_NOT_SUPPORTED` for Windows).
//! * MAP_FOLDER accepts case-insensitive guests but performs no case correction, and does not
//!   retry old Windows additions' UTF-16 names that count their terminator.
//! * Path and handle functions require the calling client to have mapped the root.
//! * Client sessions (encoding, symlink mode, delimiter, maps) survive save/restore; handles do
//!   not, as in VirtualBox.
//! * Host errors map to statuses that the Linux guest turns into the same errno; nothing
//!   ordinary becomes `EPROTO`.
//!
//! # Configuration
//!
//! See [`config`]: `share=NAME:PATH[:ro|:rw][:auto][:symlinks=deny|inside|allow][:mount=POINT]`
//! entries and `max_handles=N`. The symlink policies are described at [`SymlinkPolicy`].

pub mod config;
mod create;
pub mod dir;
mod dircache;
pub mod error;
pub mod handle_ops;
pub mod handles;
pub mod host;
pub mod info;
pub mod mappings;
pub mod path;
pub mod path_ops;
pub mod persist;
pub mod server;
pub mod service;
pub mod session;
pub mod share;
pub mod stats;
pub mod string;
mod sys;
mod waits;

#[cfg(test)]
mod testutil;

pub use config::{ServiceConfig, ShareConfig, SymlinkPolicy};
pub use error::FsError;
pub use server::FileServer;
pub use service::SharedFolders;
pub use vmmdev_protocol::services::shared_folders::SERVICE_NAME;

vmmdev_hgcm_sdk::service_entry!(
    pub fn shared_folders_entry,
    SharedFolders,
    "VBoxSharedFolders",
    |_host: vmmdev_hgcm_sdk::Host, config: &str| SharedFolders::new(config)
);
