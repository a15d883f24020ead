//! Cost of the shared-folders operations inside the service, each next to the native system
//! calls a host program would make for the same work, measured in the same run.
//!
//! The service side drives [`FileServer`] directly with decoded arguments, exactly as the
//! service layer calls it (path strings as `SHFLSTRING` bytes, READ into page-sized volatile
//! slices), so the figures are the service's own cost: string validation, confined path
//! resolution (`openat2(RESOLVE_BENEATH)`), handle bookkeeping, metadata conversion.
//!
//! Three variants per operation:
//! * `service`: the `FileServer` operation;
//! * `native`: the plain system calls (`statx`/`open`/`pread`/… on absolute paths);
//! * `native_confined`: the system calls a native program confining itself to the directory
//!   with `openat2(RESOLVE_BENEATH)` would make — separates the price of confinement from the
//!   service's own work.
//!
//! `hgcm_stat` adds the full HGCM round trip (submission, service thread, completion) for
//! scale.
//!
//! Two passes: criterion means, then an interleaved pass (variants alternate in small batches
//! in one process, so load changes on a shared machine hit all alike) that prints p50s and the
//! ratios as a Markdown table.
//!
//! Run: `cargo bench -p vmmdev-svc-shared-folders --bench shared_folders`
//! (`-- --quick` for a short smoke run).

use std::ffi::CStr;
use std::fs::File;
use std::hint::black_box;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::Criterion;
use crossbeam_channel::bounded;
use vm_memory::VolatileSlice;
use vmmdev_hgcm::{Buffer, CallRequest, Direction, Hgcm, HgcmConfig, Parm, Requestor};
use vmmdev_hgcm_sdk::ClientId;
use vmmdev_protocol::services::shared_folders::{
    CreateParms, Function, ListFlags, SHFL_HANDLE_NIL,
};
use vmmdev_svc_shared_folders::{FileServer, ServiceConfig, ShareConfig};
use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromZeros, IntoBytes};

const CLIENT: ClientId = ClientId(1);
const LOOKUP: u32 = 0x101;
const OPEN_READ: u32 = 0x1100;
const CREAT: u32 = 0x3000;
const OPENDIR: u32 = 0x1104;
const LIST_ENTRIES: usize = 2000;
const MIB: usize = 1 << 20;

/// The operations measured.
#[derive(Clone, Copy, Debug)]
enum Op {
    /// CREATE with LOOKUP of an entry of the share root.
    StatDepth1,
    /// CREATE with LOOKUP of `dir/file`.
    StatDepth2,
    /// CREATE (open for reading) + CLOSE of `dir/file`.
    OpenClose,
    /// READ of 4 KiB.
    Read4k,
    /// READ of 1 MiB into 256 page-sized pieces.
    Read1m,
    /// CREATE of a new file + CLOSE + REMOVE.
    CreateUnlink,
    /// opendir + LIST until the end + CLOSE over 2000 entries.
    List2000,
}

impl Op {
    const ALL: [Op; 7] = [
        Op::StatDepth1,
        Op::StatDepth2,
        Op::OpenClose,
        Op::Read4k,
        Op::Read1m,
        Op::CreateUnlink,
        Op::List2000,
    ];

    fn name(self) -> &'static str {
        match self {
            Op::StatDepth1 => "stat_depth1",
            Op::StatDepth2 => "stat_depth2",
            Op::OpenClose => "open_close",
            Op::Read4k => "read_4k",
            Op::Read1m => "read_1m",
            Op::CreateUnlink => "create_unlink",
            Op::List2000 => "list_2000",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    Service,
    Native,
    NativeConfined,
}

impl Variant {
    const ALL: [Variant; 3] = [Variant::Service, Variant::Native, Variant::NativeConfined];

    fn name(self) -> &'static str {
        match self {
            Variant::Service => "service",
            Variant::Native => "native",
            Variant::NativeConfined => "native_confined",
        }
    }
}

/// `openat2(dir, path, flags, mode, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`.
fn openat2(dir: BorrowedFd<'_>, path: &CStr, flags: i32, mode: u64) -> OwnedFd {
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    let how = OpenHow {
        flags: u64::from((flags | libc::O_CLOEXEC) as u32),
        mode,
        resolve: 0x08 | 0x02,
    };
    // SAFETY: `path` is NUL-terminated and `how` is a valid open_how of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            path.as_ptr(),
            &raw const how,
            size_of::<OpenHow>(),
        )
    };
    assert!(fd >= 0, "openat2 failed");
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

/// `statx(dir, name, flags | AT_SYMLINK_NOFOLLOW)`; returns the size.
fn statx_size(dir: BorrowedFd<'_>, name: &CStr, flags: i32) -> u64 {
    let mut buf = std::mem::MaybeUninit::<libc::statx>::uninit();
    // SAFETY: `name` is NUL-terminated and `buf` is writable storage for one statx.
    let ret = unsafe {
        libc::statx(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_BASIC_STATS | libc::STATX_BTIME,
            buf.as_mut_ptr(),
        )
    };
    assert_eq!(ret, 0, "statx failed");
    // SAFETY: statx succeeded and filled the structure.
    unsafe { buf.assume_init() }.stx_size
}

fn shfl(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(text.len() as u16 + 1).to_le_bytes());
    out.extend_from_slice(&(text.len() as u16).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    out.push(0);
    out
}

fn parms(flags: u32) -> CreateParms {
    let mut parms = CreateParms::new_zeroed();
    parms.handle = U64::new(SHFL_HANDLE_NIL);
    parms.create_flags = U32::new(flags);
    parms.info.attr.mode = U32::new(0o100644);
    parms
}

/// A share with `top`, `dir/file` (1 MiB) and `many/` (2000 entries), served to one client.
struct Bench {
    base: PathBuf,
    base_dir: File,
    data: File,
    server: FileServer,
    root: u32,
    read_handle: u64,
    memory: Vec<u8>,
    list_out: Vec<u8>,
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

impl Bench {
    fn new() -> Bench {
        let base = std::env::temp_dir().join(format!("vmmdev-sf-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("dir")).expect("mkdir");
        std::fs::create_dir_all(base.join("many")).expect("mkdir");
        std::fs::write(base.join("dir/file"), vec![0x5A; MIB]).expect("write");
        std::fs::write(base.join("top"), b"top").expect("write");
        for i in 0..LIST_ENTRIES {
            std::fs::write(base.join(format!("many/entry-{i:05}")), b"").expect("write");
        }
        let config = ServiceConfig {
            shares: vec![ShareConfig::new("bench", &base)],
            ..ServiceConfig::default()
        };
        let mut server = FileServer::new(&config).expect("server");
        server.connect(CLIENT);
        server.set_utf8(CLIENT).expect("utf8");
        server.set_symlinks(CLIENT).expect("symlinks");
        let root = server
            .map_folder(CLIENT, &shfl("bench"), u32::from(b'/'), true)
            .expect("map");
        let mut bench = Bench {
            base_dir: File::open(&base).expect("open base"),
            data: File::open(base.join("dir/file")).expect("open data"),
            base,
            server,
            root,
            read_handle: 0,
            memory: vec![0; MIB],
            list_out: Vec::new(),
        };
        bench.read_handle = bench.open(&shfl("/dir/file"));
        bench
    }

    fn open(&mut self, path: &[u8]) -> u64 {
        let mut p = parms(OPEN_READ);
        self.server
            .create(CLIENT, self.root, path, &mut p)
            .expect("open");
        p.handle.get()
    }

    fn service_stat(&mut self, path: &[u8]) {
        let mut p = parms(LOOKUP);
        self.server
            .create(CLIENT, self.root, black_box(path), &mut p)
            .expect("stat");
        black_box(p.info.object_size.get());
    }

    fn service_read(&mut self, size: usize) {
        // Page-sized pieces, as a guest page list arrives.
        let slices: Vec<VolatileSlice<'_>> = self.memory[..size]
            .chunks_mut(4096)
            .map(VolatileSlice::from)
            .collect();
        let n = self
            .server
            .read(CLIENT, self.root, self.read_handle, 0, size, &slices)
            .expect("read");
        black_box(n);
    }

    fn run(&mut self, op: Op, variant: Variant) {
        match (op, variant) {
            (Op::StatDepth1, Variant::Service) => self.service_stat(&shfl("/top")),
            (Op::StatDepth1, Variant::Native) => {
                black_box(std::fs::symlink_metadata(self.base.join("top")).expect("stat"));
            }
            (Op::StatDepth1, Variant::NativeConfined) => {
                black_box(statx_size(self.base_dir.as_fd(), c"top", 0));
            }
            (Op::StatDepth2, Variant::Service) => self.service_stat(&shfl("/dir/file")),
            (Op::StatDepth2, Variant::Native) => {
                black_box(std::fs::symlink_metadata(self.base.join("dir/file")).expect("stat"));
            }
            (Op::StatDepth2, Variant::NativeConfined) => {
                let dir = openat2(
                    self.base_dir.as_fd(),
                    c"dir",
                    libc::O_PATH | libc::O_DIRECTORY,
                    0,
                );
                black_box(statx_size(dir.as_fd(), c"file", 0));
            }
            (Op::OpenClose, Variant::Service) => {
                let handle = self.open(&shfl("/dir/file"));
                self.server.close(CLIENT, self.root, handle).expect("close");
            }
            (Op::OpenClose, Variant::Native) => {
                // open + fstat: what the service answers CREATE with.
                let file = File::open(self.base.join("dir/file")).expect("open");
                black_box(file.metadata().expect("fstat").len());
            }
            (Op::OpenClose, Variant::NativeConfined) => {
                let file = openat2(self.base_dir.as_fd(), c"dir/file", libc::O_RDONLY, 0);
                black_box(statx_size(file.as_fd(), c"", libc::AT_EMPTY_PATH));
            }
            (Op::Read4k, Variant::Service) => self.service_read(4096),
            (Op::Read1m, Variant::Service) => self.service_read(MIB),
            (Op::Read4k | Op::Read1m, _) => {
                let size = if matches!(op, Op::Read4k) { 4096 } else { MIB };
                black_box(
                    self.data
                        .read_at(&mut self.memory[..size], 0)
                        .expect("pread"),
                );
            }
            (Op::CreateUnlink, Variant::Service) => {
                let path = shfl("/dir/new");
                let mut p = parms(CREAT);
                self.server
                    .create(CLIENT, self.root, &path, &mut p)
                    .expect("create");
                self.server
                    .close(CLIENT, self.root, p.handle.get())
                    .expect("close");
                self.server
                    .remove(CLIENT, self.root, &path, 1)
                    .expect("unlink");
            }
            (Op::CreateUnlink, Variant::Native) => {
                let path = self.base.join("dir/new");
                let file = File::create_new(&path).expect("create");
                black_box(file.metadata().expect("fstat").len());
                drop(file);
                std::fs::remove_file(&path).expect("unlink");
            }
            (Op::CreateUnlink, Variant::NativeConfined) => {
                let flags = libc::O_RDWR | libc::O_CREAT | libc::O_EXCL;
                let file = openat2(self.base_dir.as_fd(), c"dir/new", flags, 0o644);
                black_box(statx_size(file.as_fd(), c"", libc::AT_EMPTY_PATH));
                drop(file);
                let dir = openat2(
                    self.base_dir.as_fd(),
                    c"dir",
                    libc::O_PATH | libc::O_DIRECTORY,
                    0,
                );
                // SAFETY: the name is a NUL-terminated literal.
                let unlinked = unsafe { libc::unlinkat(dir.as_raw_fd(), c"new".as_ptr(), 0) };
                assert_eq!(unlinked, 0);
            }
            (Op::List2000, Variant::Service) => {
                let mut p = parms(OPENDIR);
                self.server
                    .create(CLIENT, self.root, &shfl("/many"), &mut p)
                    .expect("opendir");
                let handle = p.handle.get();
                let mut entries = 0;
                loop {
                    let filled = self
                        .server
                        .list(
                            CLIENT,
                            self.root,
                            handle,
                            ListFlags::empty(),
                            None,
                            16384,
                            &mut self.list_out,
                        )
                        .expect("list");
                    entries += filled.entries as usize;
                    if filled.exhausted {
                        break;
                    }
                }
                self.server.close(CLIENT, self.root, handle).expect("close");
                assert_eq!(entries, LIST_ENTRIES + 2);
            }
            (Op::List2000, Variant::Native) => {
                let mut entries = 0;
                for entry in std::fs::read_dir(self.base.join("many")).expect("opendir") {
                    let entry = entry.expect("entry");
                    black_box(
                        std::fs::symlink_metadata(entry.path())
                            .expect("lstat")
                            .len(),
                    );
                    entries += 1;
                }
                assert_eq!(entries, LIST_ENTRIES);
            }
            (Op::List2000, Variant::NativeConfined) => {
                let dir = openat2(
                    self.base_dir.as_fd(),
                    c"many",
                    libc::O_RDONLY | libc::O_DIRECTORY,
                    0,
                );
                let directory = File::from(dir.try_clone().expect("dup"));
                let mut entries = 0;
                for entry in std::fs::read_dir(format!("/proc/self/fd/{}", directory.as_raw_fd()))
                    .expect("opendir")
                {
                    let name = entry.expect("entry").file_name();
                    let name = std::ffi::CString::new(name.into_encoded_bytes()).expect("name");
                    black_box(statx_size(dir.as_fd(), &name, 0));
                    entries += 1;
                }
                assert_eq!(entries, LIST_ENTRIES);
            }
        }
    }
}

fn criterion_pass(bench: &mut Bench, criterion: &mut Criterion) {
    for op in Op::ALL {
        let mut group = criterion.benchmark_group(op.name());
        if matches!(op, Op::List2000 | Op::Read1m) {
            group.sample_size(20);
        }
        for variant in Variant::ALL {
            group.bench_function(variant.name(), |b| b.iter(|| bench.run(op, variant)));
        }
        group.finish();
    }
}

fn p50(samples: &mut [Duration]) -> Duration {
    samples.sort_unstable();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Alternates the variants in batches; prints one Markdown row per operation.
fn interleaved_pass(bench: &mut Bench, quick: bool) {
    println!();
    println!(
        "| operation | service p50 (µs) | native p50 (µs) | confined p50 (µs) | service / native | service / confined |"
    );
    println!("|---|---|---|---|---|---|");
    for op in Op::ALL {
        let (batches, per_batch) = match (quick, op) {
            (true, _) => (3, 5),
            (false, Op::List2000 | Op::Read1m) => (20, 10),
            (false, _) => (50, 200),
        };
        let mut samples: [Vec<Duration>; 3] = Default::default();
        for _ in 0..batches {
            for (index, variant) in Variant::ALL.into_iter().enumerate() {
                for _ in 0..per_batch {
                    let start = Instant::now();
                    bench.run(op, variant);
                    samples[index].push(start.elapsed());
                }
            }
        }
        let [service, native, confined] = samples.map(|mut s| p50(&mut s));
        println!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            op.name(),
            micros(service),
            micros(native),
            micros(confined),
            service.as_secs_f64() / native.as_secs_f64(),
            service.as_secs_f64() / confined.as_secs_f64(),
        );
    }
}

/// A stat through the whole HGCM path, for scale.
fn hgcm_stat(base: &Path, criterion: &mut Criterion) {
    let hgcm = Hgcm::new(HgcmConfig::default());
    let config = format!("share=bench:{}", base.display());
    hgcm.register_builtin(vmmdev_svc_shared_folders::shared_folders_entry, &config)
        .expect("registers");
    let (tx, rx) = bounded(1);
    hgcm.connect(
        vmmdev_svc_shared_folders::SERVICE_NAME,
        Requestor(0x2),
        Box::new(move |o| {
            let _ = tx.send(o);
        }),
    )
    .expect("connect");
    let client = rx.recv().expect("connected").client;
    let call = |function: Function, params: Vec<Parm>| {
        let (tx, rx) = bounded(1);
        hgcm.call(
            CallRequest {
                client,
                function: function.raw(),
                params,
                requestor: Requestor(0x2),
                restored: false,
            },
            Box::new(move |o| {
                let _ = tx.send(o);
            }),
        )
        .expect("call");
        rx.recv().expect("completed")
    };
    call(Function::SET_UTF8, vec![]);
    let mapped = call(
        Function::MAP_FOLDER,
        vec![
            Parm::Buffer(Buffer::host(shfl("bench"), Direction::Both)),
            Parm::U32(0),
            Parm::U32(u32::from(b'/')),
            Parm::U32(1),
        ],
    );
    let root = mapped.params[1].as_u32().expect("root");
    let path = shfl("/dir/file");
    let request = parms(LOOKUP);
    criterion.bench_function("hgcm_stat", |b| {
        b.iter(|| {
            let outcome = call(
                Function::CREATE,
                vec![
                    Parm::U32(root),
                    Parm::Buffer(Buffer::host(path.clone(), Direction::Both)),
                    Parm::Buffer(Buffer::host(request.as_bytes().to_vec(), Direction::Both)),
                ],
            );
            black_box(outcome.status)
        })
    });
    hgcm.shutdown();
}

fn main() {
    let quick = std::env::args().any(|a| a == "--test" || a == "--quick");
    let mut bench = Bench::new();
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_millis(if quick { 10 } else { 500 }))
        .measurement_time(Duration::from_millis(if quick { 50 } else { 2000 }))
        .configure_from_args();
    if !quick {
        criterion_pass(&mut bench, &mut criterion);
        hgcm_stat(&bench.base.clone(), &mut criterion);
    }
    interleaved_pass(&mut bench, quick);
    criterion.final_summary();
}
