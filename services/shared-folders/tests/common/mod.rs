//! A Linux-vboxsf-like guest driving the real service through `vmmdev-hgcm`: every call is
//! shaped as the Linux 6.1 driver sends it (32/64-bit values, page-list buffers with the
//! driver's directions, the size-0 `LINADDR_IN` filter of LIST), with host memory standing in
//! for the guest's pages.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_channel::bounded;
use vmmdev_hgcm::{
    Buffer, CallOutcome, CallRequest, ClientId, Direction, Hgcm, HgcmConfig, Parm, RequestId,
    Requestor,
};
use vmmdev_protocol::services::shared_folders::{
    CreateParms, DirInfo, FsObjInfo, Function, SHFL_HANDLE_NIL, VolInfo,
};
use vmmdev_protocol::status::Status;
use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, FromZeros, IntoBytes};

/// How long a test waits for a completion that must come.
pub const DEADLINE: Duration = Duration::from_secs(10);
/// The requestor the Linux vboxsf driver sends (kernel).
pub const KERNEL: Requestor = Requestor(0x2);

/// CREATE flags the Linux driver uses.
pub mod cf {
    pub const LOOKUP: u32 = 0x1;
    pub const OPEN_TARGET_DIRECTORY: u32 = 0x2;
    pub const DIRECTORY: u32 = 0x4;
    pub const FAIL_IF_EXISTS: u32 = 0x10;
    pub const REPLACE_IF_EXISTS: u32 = 0x20;
    pub const OVERWRITE_IF_EXISTS: u32 = 0x30;
    pub const FAIL_IF_NEW: u32 = 0x100;
    pub const READ: u32 = 0x1000;
    pub const WRITE: u32 = 0x2000;
    pub const READWRITE: u32 = 0x3000;
    pub const ATTR_WRITE: u32 = 0x20000;
    pub const APPEND: u32 = 0x40000;
    /// stat / lookup.
    pub const STAT: u32 = LOOKUP | FAIL_IF_NEW;
    /// opendir.
    pub const OPENDIR: u32 = DIRECTORY | FAIL_IF_NEW | READ;
    /// mkdir.
    pub const MKDIR: u32 = DIRECTORY | FAIL_IF_EXISTS | READWRITE;
    /// creat() / open(O_CREAT) of a new file.
    pub const CREAT: u32 = READWRITE;
    /// setattr.
    pub const SETATTR: u32 = FAIL_IF_NEW | ATTR_WRITE;
}

/// `SHFL_TYPE_*` bits.
pub const TYPE_FILE: u32 = 0o100000;
pub const TYPE_DIRECTORY: u32 = 0o040000;
pub const TYPE_SYMLINK: u32 = 0o120000;
pub const TYPE_MASK: u32 = 0o170000;

/// A directory under the system temporary directory, removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new() -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "vmmdev-sf-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create temporary directory");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A temporary tree with a `share/` directory (what is shared) and `outside/secret` next to it
/// (what must stay unreachable).
pub struct Tree {
    pub dir: TempDir,
}

impl Tree {
    pub fn new() -> Tree {
        let dir = TempDir::new();
        std::fs::create_dir(dir.path().join("share")).expect("mkdir share");
        std::fs::create_dir(dir.path().join("outside")).expect("mkdir outside");
        std::fs::write(dir.path().join("outside/secret"), b"top secret").expect("write");
        Tree { dir }
    }

    pub fn share(&self) -> PathBuf {
        self.dir.path().join("share")
    }

    pub fn outside(&self) -> PathBuf {
        self.dir.path().join("outside")
    }

    /// A host path inside the share.
    pub fn host(&self, relative: &str) -> PathBuf {
        self.share().join(relative)
    }

    /// The configuration entry escaping of a path.
    pub fn share_entry(&self, name: &str, options: &str) -> String {
        let path = self
            .share()
            .to_string_lossy()
            .replace('\\', "\\\\")
            .replace(':', "\\:");
        format!("share={name}:{path}{options}")
    }
}

/// A UTF-8 `SHFLSTRING` as Linux builds it (`size = length + 1`).
pub fn shfl(text: &str) -> Vec<u8> {
    shfl_bytes(text.as_bytes())
}

/// A UTF-8 `SHFLSTRING` of arbitrary bytes.
pub fn shfl_bytes(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 5);
    out.extend_from_slice(&u16::try_from(text.len() + 1).expect("short").to_le_bytes());
    out.extend_from_slice(&u16::try_from(text.len()).expect("short").to_le_bytes());
    out.extend_from_slice(text);
    out.push(0);
    out
}

/// A UTF-16 `SHFLSTRING`.
pub fn shfl16(text: &str) -> Vec<u8> {
    let units: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let mut out = Vec::new();
    out.extend_from_slice(&u16::try_from(units.len() + 2).expect("short").to_le_bytes());
    out.extend_from_slice(&u16::try_from(units.len()).expect("short").to_le_bytes());
    out.extend_from_slice(&units);
    out.extend_from_slice(&[0, 0]);
    out
}

/// A page-list buffer in both directions (`LINADDR_KERNEL`).
pub fn both(bytes: &[u8]) -> Parm {
    Parm::Buffer(Buffer::host(bytes.to_vec(), Direction::Both))
}

/// A page-list buffer to the host (`LINADDR_KERNEL_IN`).
pub fn to_host(bytes: &[u8]) -> Parm {
    Parm::Buffer(Buffer::host(bytes.to_vec(), Direction::ToHost))
}

/// A page-list buffer from the host (`LINADDR_KERNEL_OUT`), zero-filled.
pub fn from_host(len: usize) -> Parm {
    Parm::Buffer(Buffer::host(vec![0; len], Direction::FromHost))
}

/// The size-0 `LINADDR_IN` LIST filter.
pub fn no_filter() -> Parm {
    Parm::Buffer(Buffer::host(Vec::new(), Direction::ToHost))
}

pub fn buffer_bytes(parm: &Parm) -> Vec<u8> {
    let buffer = parm.as_buffer().expect("buffer parameter");
    let mut bytes = vec![0; buffer.len()];
    let read = buffer.read_at(0, &mut bytes).expect("readable");
    bytes.truncate(read);
    bytes
}

pub fn u32_of(parm: &Parm) -> u32 {
    parm.as_u32().expect("u32 parameter")
}

pub fn u64_of(parm: &Parm) -> u64 {
    parm.as_u64().expect("u64 parameter")
}

pub fn parms(flags: u32, mode: u32) -> CreateParms {
    let mut parms = CreateParms::new_zeroed();
    parms.handle = U64::new(SHFL_HANDLE_NIL);
    parms.create_flags = U32::new(flags);
    parms.info.attr.mode = U32::new(mode);
    parms.info.attr.additional = U32::new(1);
    parms
}

/// One LIST entry.
#[derive(Clone, Debug)]
pub struct Entry {
    pub name: String,
    pub info: FsObjInfo,
}

/// Parses packed `SHFLDIRINFO` records exactly as Linux walks them.
pub fn parse_records(bytes: &[u8], count: u32) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut at = 0usize;
    for _ in 0..count {
        let (header, _) = DirInfo::read_from_prefix(&bytes[at..]).expect("record header");
        let length = usize::from(header.name.length.get());
        let size = usize::from(header.name.size.get());
        assert!(
            size > length,
            "name size {size} must exceed length {length}"
        );
        let name = &bytes[at + 126..at + 126 + length];
        entries.push(Entry {
            name: String::from_utf8(name.to_vec()).expect("UTF-8 name"),
            info: header.info,
        });
        at += 126 + size;
    }
    assert_eq!(
        at,
        bytes.len(),
        "records must fill exactly the reported bytes"
    );
    entries
}

/// One connected client that has mapped one share.
pub struct Guest {
    pub hgcm: Hgcm,
    pub client: ClientId,
    pub root: u32,
}

pub fn hgcm_with(config: &str) -> Hgcm {
    let hgcm = Hgcm::new(HgcmConfig::default());
    hgcm.register_builtin(vmmdev_svc_shared_folders::shared_folders_entry, config)
        .expect("shared folders registers");
    hgcm
}

pub fn connect(hgcm: &Hgcm) -> ClientId {
    let (tx, rx) = bounded(1);
    hgcm.connect(
        vmmdev_svc_shared_folders::SERVICE_NAME,
        KERNEL,
        Box::new(move |o| {
            let _ = tx.send(o);
        }),
    )
    .expect("connect accepted");
    let outcome = rx.recv_timeout(DEADLINE).expect("connect completes");
    assert_eq!(outcome.status, 0);
    outcome.client
}

/// Submits a call; the receiver gets its outcome.
pub fn submit(
    hgcm: &Hgcm,
    client: ClientId,
    function: Function,
    params: Vec<Parm>,
) -> (RequestId, crossbeam_channel::Receiver<CallOutcome>) {
    let (tx, rx) = bounded(1);
    let id = hgcm
        .call(
            CallRequest {
                client,
                function: function.raw(),
                params,
                requestor: KERNEL,
                restored: false,
            },
            Box::new(move |o| {
                let _ = tx.send(o);
            }),
        )
        .expect("call accepted");
    (id, rx)
}

pub fn call_on(
    hgcm: &Hgcm,
    client: ClientId,
    function: Function,
    params: Vec<Parm>,
) -> CallOutcome {
    let (_, rx) = submit(hgcm, client, function, params);
    rx.recv_timeout(DEADLINE).expect("call completes")
}

impl Guest {
    /// Loads the service with `config`, connects, and mounts `share` as Linux does (SET_UTF8,
    /// SET_SYMLINKS, MAP_FOLDER).
    pub fn mount(config: &str, share: &str) -> Guest {
        let hgcm = hgcm_with(config);
        let client = connect(&hgcm);
        let mut guest = Guest {
            hgcm,
            client,
            root: 0,
        };
        assert_eq!(guest.call(Function::SET_UTF8, vec![]).status, 0);
        assert_eq!(guest.call(Function::SET_SYMLINKS, vec![]).status, 0);
        let (status, root) = guest.map(share);
        assert_eq!(status, 0, "MAP_FOLDER {share}");
        guest.root = root;
        guest
    }

    pub fn call(&self, function: Function, params: Vec<Parm>) -> CallOutcome {
        call_on(&self.hgcm, self.client, function, params)
    }

    pub fn map(&self, share: &str) -> (i32, u32) {
        let outcome = self.call(
            Function::MAP_FOLDER,
            vec![
                both(&shfl(share)),
                Parm::U32(0),
                Parm::U32(u32::from(b'/')),
                Parm::U32(1),
            ],
        );
        (outcome.status, u32_of(&outcome.params[1]))
    }

    pub fn unmap(&self, root: u32) -> i32 {
        self.call(Function::UNMAP_FOLDER, vec![Parm::U32(root)])
            .status
    }

    /// CREATE with `flags` and `mode` on `path`; returns the status and the parameters.
    pub fn create(&self, path: &str, flags: u32, mode: u32) -> (i32, CreateParms) {
        self.create_parms(path, parms(flags, mode))
    }

    pub fn create_parms(&self, path: &str, parms: CreateParms) -> (i32, CreateParms) {
        let outcome = self.call(
            Function::CREATE,
            vec![
                Parm::U32(self.root),
                both(&shfl(path)),
                both(parms.as_bytes()),
            ],
        );
        let bytes = buffer_bytes(&outcome.params[2]);
        (
            outcome.status,
            CreateParms::read_from_bytes(&bytes).expect("108 bytes"),
        )
    }

    /// stat: the status, the result and the info.
    pub fn stat(&self, path: &str) -> (i32, u32, FsObjInfo) {
        let (status, parms) = self.create(path, cf::STAT, 0);
        (status, parms.result.get(), parms.info)
    }

    /// Opens `path` with `flags`, asserting a handle comes back.
    pub fn open(&self, path: &str, flags: u32) -> u64 {
        let (status, parms) = self.create(path, flags, TYPE_FILE | 0o644);
        assert_eq!(status, 0, "open {path}");
        let handle = parms.handle.get();
        assert_ne!(
            handle,
            SHFL_HANDLE_NIL,
            "open {path}: result {}",
            parms.result.get()
        );
        handle
    }

    pub fn close(&self, handle: u64) -> i32 {
        self.call(
            Function::CLOSE,
            vec![Parm::U32(self.root), Parm::U64(handle)],
        )
        .status
    }

    pub fn read(&self, handle: u64, offset: u64, count: u32) -> (i32, Vec<u8>) {
        let outcome = self.call(
            Function::READ,
            vec![
                Parm::U32(self.root),
                Parm::U64(handle),
                Parm::U64(offset),
                Parm::U32(count),
                from_host(count as usize),
            ],
        );
        let n = u32_of(&outcome.params[3]) as usize;
        let mut data = buffer_bytes(&outcome.params[4]);
        data.truncate(n);
        (outcome.status, data)
    }

    /// WRITE: status, bytes written, new offset.
    pub fn write(&self, handle: u64, offset: u64, data: &[u8]) -> (i32, u32, u64) {
        let outcome = self.call(
            Function::WRITE,
            vec![
                Parm::U32(self.root),
                Parm::U64(handle),
                Parm::U64(offset),
                Parm::U32(u32::try_from(data.len()).expect("small")),
                to_host(data),
            ],
        );
        (
            outcome.status,
            u32_of(&outcome.params[3]),
            u64_of(&outcome.params[2]),
        )
    }

    /// One LIST call with a fresh 16 KiB buffer: status, bytes, entries, resume point.
    pub fn list_once(&self, handle: u64, flags: u32, capacity: u32) -> (i32, Vec<Entry>, u32) {
        let outcome = self.call(
            Function::LIST,
            vec![
                Parm::U32(self.root),
                Parm::U64(handle),
                Parm::U32(flags),
                Parm::U32(capacity),
                no_filter(),
                from_host(capacity as usize),
                Parm::U32(0),
                Parm::U32(0),
            ],
        );
        let bytes = u32_of(&outcome.params[3]) as usize;
        let count = u32_of(&outcome.params[7]);
        let data = buffer_bytes(&outcome.params[5]);
        let entries = if outcome.status >= 0 {
            parse_records(&data[..bytes], count)
        } else {
            Vec::new()
        };
        (outcome.status, entries, u32_of(&outcome.params[6]))
    }

    /// opendir + LIST until `VERR_NO_MORE_FILES` + CLOSE, as Linux's readdir does.
    pub fn list_dir(&self, path: &str) -> Vec<Entry> {
        let (status, parms) = self.create(path, cf::OPENDIR, 0);
        assert_eq!((status, parms.result.get()), (0, 3), "opendir {path}");
        let handle = parms.handle.get();
        let mut all = Vec::new();
        for _ in 0..100_000 {
            let (status, entries, _) = self.list_once(handle, 0, 16384);
            all.extend(entries);
            if status == Status::VERR_NO_MORE_FILES.raw() {
                assert_eq!(self.close(handle), 0);
                return all;
            }
            assert!(status >= 0, "LIST failed with {status}");
        }
        panic!("LIST never reported VERR_NO_MORE_FILES");
    }

    /// The sorted names of a directory.
    pub fn names(&self, path: &str) -> Vec<String> {
        let mut names: Vec<String> = self.list_dir(path).into_iter().map(|e| e.name).collect();
        names.sort();
        names
    }

    pub fn remove(&self, path: &str, flags: u32) -> i32 {
        self.call(
            Function::REMOVE,
            vec![Parm::U32(self.root), to_host(&shfl(path)), Parm::U32(flags)],
        )
        .status
    }

    pub fn rename(&self, from: &str, to: &str, flags: u32) -> i32 {
        self.call(
            Function::RENAME,
            vec![
                Parm::U32(self.root),
                to_host(&shfl(from)),
                to_host(&shfl(to)),
                Parm::U32(flags),
            ],
        )
        .status
    }

    /// INFORMATION with a 92-byte object info buffer.
    pub fn information(&self, handle: u64, flags: u32, info: &FsObjInfo) -> (i32, u32, FsObjInfo) {
        let outcome = self.call(
            Function::INFORMATION,
            vec![
                Parm::U32(self.root),
                Parm::U64(handle),
                Parm::U32(flags),
                Parm::U32(92),
                both(info.as_bytes()),
            ],
        );
        let bytes = buffer_bytes(&outcome.params[4]);
        (
            outcome.status,
            u32_of(&outcome.params[3]),
            FsObjInfo::read_from_bytes(&bytes).expect("92 bytes"),
        )
    }

    /// statfs: INFORMATION GET|VOLUME with handle 0.
    pub fn statfs(&self) -> (i32, VolInfo) {
        let outcome = self.call(
            Function::INFORMATION,
            vec![
                Parm::U32(self.root),
                Parm::U64(0),
                Parm::U32(0x10),
                Parm::U32(40),
                both(&[0; 40]),
            ],
        );
        let bytes = buffer_bytes(&outcome.params[4]);
        (
            outcome.status,
            VolInfo::read_from_bytes(&bytes).expect("40 bytes"),
        )
    }

    pub fn readlink(&self, path: &str) -> (i32, Vec<u8>) {
        let outcome = self.call(
            Function::READLINK,
            vec![Parm::U32(self.root), to_host(&shfl(path)), from_host(4096)],
        );
        let bytes = buffer_bytes(&outcome.params[2]);
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        (outcome.status, bytes[..end].to_vec())
    }

    pub fn symlink(&self, path: &str, target: &str) -> (i32, FsObjInfo) {
        let outcome = self.call(
            Function::SYMLINK,
            vec![
                Parm::U32(self.root),
                to_host(&shfl(path)),
                to_host(&shfl(target)),
                from_host(92),
            ],
        );
        let bytes = buffer_bytes(&outcome.params[3]);
        (
            outcome.status,
            FsObjInfo::read_from_bytes(&bytes).expect("92 bytes"),
        )
    }

    /// mkdir as Linux does it (create, then close the handle).
    pub fn mkdir(&self, path: &str, mode: u32) -> (i32, u32) {
        let (status, parms) = self.create(path, cf::MKDIR, TYPE_DIRECTORY | mode);
        if parms.handle.get() != SHFL_HANDLE_NIL {
            self.close(parms.handle.get());
        }
        (status, parms.result.get())
    }

    /// creat() as Linux does it: returns the handle.
    pub fn creat(&self, path: &str, mode: u32) -> u64 {
        let (status, parms) = self.create(path, cf::CREAT, TYPE_FILE | mode);
        assert_eq!((status, parms.result.get()), (0, 4), "creat {path}");
        parms.handle.get()
    }

    /// Writes a whole file through the guest interface.
    pub fn put(&self, path: &str, data: &[u8]) {
        let handle = self.open(path, cf::OVERWRITE_IF_EXISTS | cf::READWRITE);
        let (status, written, _) = self.write(handle, 0, data);
        assert_eq!((status, written as usize), (0, data.len()));
        assert_eq!(self.close(handle), 0);
    }

    /// Reads a whole (small) file through the guest interface.
    pub fn get(&self, path: &str) -> Vec<u8> {
        let handle = self.open(path, cf::FAIL_IF_NEW | cf::READ);
        let mut data = Vec::new();
        loop {
            let (status, chunk) = self.read(handle, data.len() as u64, 4096);
            assert_eq!(status, 0);
            if chunk.is_empty() {
                break;
            }
            data.extend(chunk);
        }
        assert_eq!(self.close(handle), 0);
        data
    }
}

/// Status constants as raw values.
pub fn st(status: Status) -> i32 {
    status.raw()
}
