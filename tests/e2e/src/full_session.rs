//! The whole scripted session with every service: the steps beyond the device's own, the host side they
//! need (shares with their fixtures, host-set properties, a property policy, the automount share, the
//! host agent and the host's rewrite for `sf-host-change`) and the host's checks afterwards. The QEMU
//! boot (`tests/boot_with_device.rs`) and the KVM session (`tests/kvm_session.rs`) both run it, so every
//! step that passes under QEMU must pass on KVM too.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use crate::backend::{Backend, BootSpec, DeviceServer};
use crate::expect::Expectations;
use crate::host_agent::control_socket_path;
use crate::host_side;
use crate::runner::{BootRun, RunError, RunOptions, boot_with_agent};
use crate::steps::DEVICE_STEPS;

/// The text the `backdoor-log` step writes through the LOG ioctl.
pub const BACKDOOR_TEXT: &str = "hello-0x504";

/// The steps beyond [`DEVICE_STEPS`] that the session adds: the host agent, guest properties, the share
/// mount and the shared-folder checks, the guest daemon and the clipboard, each of which must pass.
pub const SERVICE_STEPS: &[&str] = &[
    "host-agent",
    "guestprop-set-get",
    "guestprop-from-host",
    "guestprop-enumerate",
    "guestprop-wait",
    "guestprop-wait-signal",
    "guestprop-wait-timeout",
    "guestprop-wait-kill",
    "guestprop-wait-many",
    "guestprop-host-wait",
    "guestprop-host-wait-cli",
    "guestprop-wait-host-set",
    "guestprop-rdonlyguest",
    "guestprop-user-policy",
    "guestprop-get-rtt",
    "demo-mount",
    "sf-mount-unknown",
    "sf-list",
    "sf-read",
    "sf-write-readback",
    "sf-append-overwrite",
    "sf-truncate",
    "sf-otrunc-mode",
    "sf-mkdir-rmdir",
    "sf-rename",
    "sf-unlink",
    "sf-chmod-utimes",
    "sf-symlink",
    "sf-statfs",
    "sf-big-copy",
    "sf-exec",
    "sf-mmap-write",
    "sf-unicode",
    "sf-read-only",
    "sf-second-mount",
    "sf-escape",
    "sf-symlink-outside",
    "sf-concurrent-reads",
    "sf-symlink-deny",
    "sf-irq-quiet",
    "sf-host-change",
    "sf-reprobe",
    "guestd-start",
    "guestd-guest-info",
    "guestd-info-update",
    "guestd-automount",
    "guestd-runtime-add",
    "guestd-runtime-remove",
    "guestd-stop",
    "clip-host-text",
    "clip-guest-text",
    "clip-html",
    "clip-bitmap",
    "clip-watch",
    "clip-modes",
    "clip-silent-guest",
    "clip-bridge-none",
];

/// The guest property the host sets before boot, as the `guestprop-from-host` step expects it.
const HOST_PROPERTY: &str = "/Test/FromHost=hello-from-host";

/// The guest-property policy `guestprop-user-policy` checks: a prefix hidden from users and one read-only
/// for them.
const PROPERTY_POLICY: &[&str] = &[
    "user:none:/Test/Policy/Hidden/",
    "user:ro:/Test/Policy/UserRo/",
];
/// The property the host sets before boot in each of the [`PROPERTY_POLICY`] prefixes.
const POLICY_PROPERTIES: &[&str] = &[
    "/Test/Policy/Hidden/Key=hidden",
    "/Test/Policy/UserRo/Key=user-ro",
];

/// The share the host offers and `demo-mount` mounts.
const SHARE: &str = "e2e";

/// The name the `sf-unicode` step creates in the share's `work-unicode` directory.
const UNICODE_NAME: &str = "héllo_ü_日本.txt";

/// The share with the default symlink policy (deny) the `sf-symlink-deny` step mounts.
const NO_LINKS_SHARE: &str = "e2e-nolinks";

/// The modification time of `fixtures/lines.txt`, as `sf-list` expects it.
const FIXTURE_MTIME: u64 = 1_000_000_000;

/// The permission bits of `fixtures/lines.txt`, as `sf-list` expects them.
const FIXTURE_MODE: u32 = 0o640;

/// The modification time `sf-chmod-utimes` sets: 2001-02-03 04:05:06 UTC (the guest has no time zone).
const GUEST_MTIME: u64 = 981_173_106;

/// The read-only share the `sf-read-only` step mounts.
const READ_ONLY_SHARE: &str = "e2e-ro";

/// Fills the shares' host directories with what the shared-folder steps (steps/70-sf.sh) expect: files the
/// guest reads, an empty and a 600-entry directory, and an absolute symlink to a host directory outside
/// the share whose file the guest must not reach. Returns the read-write, the read-only and the
/// no-symlinks directory.
fn prepare_shares(dir: &Path) -> std::io::Result<(PathBuf, PathBuf, PathBuf)> {
    use std::os::unix::fs::PermissionsExt;

    let share_dir = dir.join("share");
    let read_only_dir = dir.join("share-ro");
    let no_links_dir = dir.join("share-nolinks");
    let outside_dir = dir.join("outside");
    for stale in [&share_dir, &read_only_dir, &no_links_dir, &outside_dir] {
        if stale.exists() {
            std::fs::remove_dir_all(stale)?;
        }
    }
    let fixtures = share_dir.join("fixtures");
    std::fs::create_dir_all(fixtures.join("empty"))?;
    std::fs::create_dir_all(fixtures.join("many"))?;
    std::fs::create_dir_all(&read_only_dir)?;
    std::fs::create_dir_all(&no_links_dir)?;
    std::fs::create_dir_all(&outside_dir)?;
    std::fs::write(share_dir.join("from-host.txt"), "hello from the host\n")?;
    let lines: String = (1..=20_000).map(|n| format!("line {n}\n")).collect();
    std::fs::write(fixtures.join("lines.txt"), lines)?;
    let fixture = std::fs::File::options()
        .write(true)
        .open(fixtures.join("lines.txt"))?;
    fixture.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(FIXTURE_MTIME))?;
    fixture.set_permissions(std::fs::Permissions::from_mode(FIXTURE_MODE))?;
    for n in 0..600 {
        std::fs::write(fixtures.join("many").join(format!("many-{n}")), "")?;
    }
    std::fs::write(outside_dir.join("secret.txt"), "HOST-SECRET\n")?;
    std::os::unix::fs::symlink(&outside_dir, share_dir.join("escape"))?;
    std::os::unix::fs::symlink("fixtures/lines.txt", share_dir.join("host-link"))?;
    std::fs::write(read_only_dir.join("ro.txt"), "read-only share\n")?;
    std::fs::write(share_dir.join("hv.txt"), "before\n")?;
    Ok((share_dir, read_only_dir, no_links_dir))
}

/// What the shared-folder steps left on the host: the bytes and attributes the guest wrote, the guest's
/// UTF-8 name as the same bytes, and the directory outside the share untouched.
fn check_host_side_of_the_shares(share_dir: &Path, outside_dir: &Path) {
    use std::os::unix::fs::PermissionsExt;

    let read = |path: &str| std::fs::read_to_string(share_dir.join(path)).unwrap_or_default();
    assert_eq!(
        read("work-write/w.txt"),
        "hello\n",
        "sf-write-readback on the host"
    );
    assert_eq!(
        read("work-append/w.txt"),
        "hXYlo\nmore\n",
        "sf-append-overwrite on the host"
    );
    assert_eq!(read("work-rename/db/r2"), "1\n", "sf-rename on the host");
    let mapped: String = (0..8192)
        .step_by(16)
        .map(|offset| format!("{offset:015}\n"))
        .collect();
    assert!(
        read("work-mmap/m.bin") == mapped,
        "sf-mmap-write: the host file lacks the pattern written through the mapping"
    );
    let chmodded = std::fs::metadata(share_dir.join("work-chmod/w.txt")).unwrap();
    assert_eq!(
        chmodded.permissions().mode() & 0o777,
        0o644,
        "sf-chmod-utimes: mode on the host"
    );
    let mtime = chmodded
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    assert_eq!(
        mtime.as_secs(),
        GUEST_MTIME,
        "sf-chmod-utimes: mtime on the host"
    );
    let unicode_name = share_dir.join("work-unicode").join(UNICODE_NAME);
    assert!(
        unicode_name.is_file(),
        "the guest's UTF-8 file name did not arrive as the same bytes: no {}",
        unicode_name.display()
    );
    let outside: Vec<_> = std::fs::read_dir(outside_dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(
        outside,
        ["secret.txt"],
        "the guest changed the directory outside the share"
    );
}

/// The host's side of `sf-host-change`: until `stop` is set, waits for the guest's `hv-request` in the
/// share, then rewrites `hv.txt` with a newer modification time and answers with `hv-done`.
fn rewrite_on_request(share_dir: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            if share_dir.join("hv-request").exists() {
                let rewrite = || -> std::io::Result<()> {
                    let file = std::fs::File::create(share_dir.join("hv.txt"))?;
                    std::io::Write::write_all(&mut &file, b"after\n")?;
                    file.set_modified(SystemTime::now() + Duration::from_secs(10))?;
                    std::fs::write(share_dir.join("hv-done"), "")
                };
                if let Err(error) = rewrite() {
                    eprintln!("sf-host-change: rewriting hv.txt failed: {error}");
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
}

/// A prepared session in a run directory: the shares exist with their fixtures.
#[derive(Debug)]
pub struct FullSession {
    dir: PathBuf,
    share_dir: PathBuf,
    read_only_dir: PathBuf,
    no_links_dir: PathBuf,
    auto_share_dir: PathBuf,
}

impl FullSession {
    /// Creates the shares' host directories under `dir` (replacing what an earlier run left).
    pub fn prepare(dir: &Path) -> std::io::Result<Self> {
        let (share_dir, read_only_dir, no_links_dir) = prepare_shares(dir)?;
        let auto_share_dir = host_side::guestd::prepare_auto_share(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            share_dir,
            read_only_dir,
            no_links_dir,
            auto_share_dir,
        })
    }

    /// What every step must do: pass.
    pub fn expectations() -> Expectations {
        Expectations::new().pass(DEVICE_STEPS).pass(SERVICE_STEPS)
    }

    /// The host options of the device (vfio-user server or KVM monitor alike): control endpoint,
    /// properties and their policy, the shares.
    pub fn device_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "--control".into(),
            control_socket_path(&self.dir).into(),
            "--guest-property".into(),
            HOST_PROPERTY.into(),
            "--share".into(),
            format!("{SHARE}={},symlinks=inside", self.share_dir.display()).into(),
            "--share".into(),
            format!("{READ_ONLY_SHARE}={},ro", self.read_only_dir.display()).into(),
            "--share".into(),
            format!("{NO_LINKS_SHARE}={}", self.no_links_dir.display()).into(),
        ];
        for rule in PROPERTY_POLICY {
            args.extend(["--guest-property-policy".into(), (*rule).into()]);
        }
        for property in POLICY_PROPERTIES {
            args.extend(["--guest-property".into(), (*property).into()]);
        }
        args.extend([
            "--share".into(),
            host_side::guestd::auto_share_argument(&self.auto_share_dir).into(),
        ]);
        args
    }

    /// The boot of `kernel` and `initrd` running every step, with `program` serving the device with
    /// [`FullSession::device_args`] (the vfio-user server, or the KVM monitor that embeds the device).
    pub fn boot_spec(&self, kernel: &Path, initrd: &Path, program: &Path) -> BootSpec {
        let mut device = DeviceServer::new(program);
        device.args.extend(self.device_args());
        let mut spec =
            BootSpec::test(kernel, initrd, &Self::expectations().step_names()).with_device(device);
        spec.cmdline.push_str(&format!(" vmmdev.mount={SHARE}"));
        spec
    }

    /// Boots `spec` on `backend` with the host agent and the host's rewriter, then checks the step
    /// results and what the shared-folder steps left on the host; panics on any mismatch.
    pub fn run(
        &self,
        backend: &dyn Backend,
        spec: &BootSpec,
        options: &RunOptions,
    ) -> Result<BootRun, RunError> {
        let stop_rewriter = Arc::new(AtomicBool::new(false));
        let rewriter = rewrite_on_request(self.share_dir.clone(), Arc::clone(&stop_rewriter));
        let run = boot_with_agent(host_side::agent(), backend, spec, &self.dir, options);
        stop_rewriter.store(true, Ordering::Relaxed);
        if rewriter.join().is_err() {
            eprintln!("sf-host-change: the host's rewriter panicked");
        }
        let (run, _) = run?;
        if let Err(mismatch) = run.verify(&Self::expectations()) {
            panic!("{mismatch}");
        }
        check_host_side_of_the_shares(&self.share_dir, &self.dir.join("outside"));
        Ok(run)
    }
}
