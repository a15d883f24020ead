//! `vboxservice`'s subservices against the real host services without a VM: the guest ioctl
//! library over a test transport playing the vboxguest driver, the in-process guest and device,
//! and the real guest-properties and shared-folders services.

#[path = "../../ioctl/tests/support/inproc_driver.rs"]
mod inproc_driver;

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use inproc_driver::InprocDriver;
use vmmdev_guest_ioctl::Device;
use vmmdev_guest_ioctl::guest_props::{GuestPropClient, PropertyFlags};
use vmmdev_guest_tools::service::automount::{AutomountConfig, Automounter};
use vmmdev_guest_tools::service::guest_info::{GuestInfo, OsInfo, Snapshot};
use vmmdev_guest_tools::service::mappings::{MappingsClient, WaitOutcome};
use vmmdev_guest_tools::service::mounts::{MountRequest, Mounter};
use vmmdev_guest_tools::service::net::{Interface, Ipv4Info};
use vmmdev_guest_tools::service::shutdown::Shutdown;
use vmmdev_hgcm::{Hgcm, HgcmConfig};
use vmmdev_protocol::services::shared_folders::MapInfoFlags;
use vmmdev_svc_shared_folders::config::ShareConfig;
use vmmdev_svc_shared_folders::host;

/// Host function numbers of the shared-folders service.
const ADD_MAPPING: u32 = 1;
const REMOVE_MAPPING: u32 = 2;

/// A directory for one test's shares, removed at the end.
struct ShareDirs(PathBuf);

impl ShareDirs {
    fn new(test: &str) -> Self {
        let root = std::env::temp_dir().join(format!("vboxservice-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        Self(root)
    }

    fn dir(&self, name: &str) -> PathBuf {
        let dir = self.0.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}

impl Drop for ShareDirs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn device(shares: &str) -> Device<InprocDriver> {
    let hgcm = Hgcm::new(HgcmConfig::default());
    hgcm.register_builtin(vmmdev_svc_guest_props::guest_props_entry, "")
        .expect("register the guest properties service");
    hgcm.register_builtin(vmmdev_svc_shared_folders::shared_folders_entry, shares)
        .expect("register the shared folders service");
    Device::with_transport(InprocDriver::new(hgcm)).expect("version handshake")
}

fn host_call(device: &Device<InprocDriver>, function: u32, mut params: Vec<vmmdev_hgcm::Parm>) {
    let status = device
        .transport()
        .vm
        .device
        .hgcm()
        .host_call(
            vmmdev_svc_shared_folders::SERVICE_NAME,
            function,
            &mut params,
        )
        .expect("host call");
    assert_eq!(status, 0, "host function {function}");
}

fn add_share(device: &Device<InprocDriver>, name: &str, path: &Path, auto: bool) {
    let mut share = ShareConfig::new(name, path);
    share.auto_mount = auto;
    host_call(
        device,
        ADD_MAPPING,
        host::add_mapping_params(&share, false).unwrap(),
    );
}

fn remove_share(device: &Device<InprocDriver>, name: &str) {
    host_call(
        device,
        REMOVE_MAPPING,
        host::remove_mapping_params(name).unwrap(),
    );
}

/// Records mounts instead of making them.
#[derive(Clone, Debug, Default)]
struct FakeMounter {
    mounted: Arc<Mutex<BTreeSet<(String, PathBuf)>>>,
}

impl FakeMounter {
    fn points(&self) -> Vec<String> {
        let mounted = self.mounted.lock().unwrap();
        mounted
            .iter()
            .map(|(name, point)| format!("{name}@{}", point.display()))
            .collect()
    }
}

impl Mounter for FakeMounter {
    fn is_mounted(&self, name: &str, point: &Path) -> bool {
        let mounted = self.mounted.lock().unwrap();
        mounted.contains(&(name.to_owned(), point.to_path_buf()))
    }

    fn mount(&mut self, request: &MountRequest) -> io::Result<bool> {
        let mut mounted = self.mounted.lock().unwrap();
        mounted.insert((request.name.clone(), request.point.clone()));
        Ok(true)
    }

    fn unmount(&mut self, point: &Path, _remove_dir: bool) -> io::Result<()> {
        let mut mounted = self.mounted.lock().unwrap();
        mounted.retain(|(_, mounted_point)| mounted_point != point);
        Ok(())
    }
}

fn config() -> AutomountConfig {
    AutomountConfig {
        mount_dir: None,
        mount_prefix: None,
        interval: Duration::from_millis(200),
    }
}

/// Waits until `condition` holds, at most 10 s.
fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn snapshot(interfaces: usize, users: &[&str]) -> Snapshot {
    Snapshot {
        os: OsInfo {
            product: "Linux".into(),
            release: "6.1.0-inproc".into(),
            version: "#1 SMP".into(),
        },
        interfaces: (0..interfaces)
            .map(|n| Interface {
                name: format!("eth{n}"),
                index: u32::try_from(n).unwrap() + 2,
                up: true,
                mac: Some([2, 0, 0, 0, 0, u8::try_from(n).unwrap()]),
                ipv4: vec![Ipv4Info {
                    address: [10, 0, 0, u8::try_from(n).unwrap() + 1].into(),
                    netmask: [255, 255, 255, 0].into(),
                    broadcast: Some([10, 0, 0, 255].into()),
                }],
                ..Interface::default()
            })
            .collect(),
        users: users.iter().map(|user| (*user).to_owned()).collect(),
    }
}

fn value(client: &GuestPropClient<'_, InprocDriver>, name: &str) -> Option<String> {
    client.get(name).unwrap().map(|property| property.value)
}

#[test]
fn guest_info_publishes_version_os_network_and_users_on_the_host() {
    let device = device("");
    let mut client = GuestPropClient::connect(&device).unwrap();
    let mut info = GuestInfo::start(&client, false);
    info.update(&mut client, &snapshot(1, &["alice"]));
    let get = |name: &str| value(&client, name);
    assert_eq!(
        get("/VirtualBox/GuestAdd/Version").as_deref(),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        get("/VirtualBox/GuestInfo/OS/Release").as_deref(),
        Some("6.1.0-inproc")
    );
    assert_eq!(get("/VirtualBox/GuestInfo/Net/Count").as_deref(), Some("1"));
    assert_eq!(
        get("/VirtualBox/GuestInfo/Net/0/V4/IP").as_deref(),
        Some("10.0.0.1")
    );
    assert_eq!(
        get("/VirtualBox/GuestInfo/Net/0/MAC").as_deref(),
        Some("020000000000")
    );
    assert_eq!(
        get("/VirtualBox/GuestInfo/OS/LoggedInUsersList").as_deref(),
        Some("alice")
    );
    let users = client
        .get("/VirtualBox/GuestInfo/OS/LoggedInUsers")
        .unwrap()
        .unwrap();
    assert!(users.flags.contains(PropertyFlags::TRANSRESET));
}

#[test]
fn guest_info_unchanged_values_keep_their_timestamp() {
    let device = device("");
    let mut client = GuestPropClient::connect(&device).unwrap();
    let mut info = GuestInfo::start(&client, false);
    info.update(&mut client, &snapshot(1, &[]));
    let before = client.get("/VirtualBox/GuestInfo/Net/0/V4/IP").unwrap();
    info.update(&mut client, &snapshot(1, &[]));
    let after = client.get("/VirtualBox/GuestInfo/Net/0/V4/IP").unwrap();
    assert_eq!(before, after);
}

#[test]
fn guest_info_restart_deletes_entries_of_interfaces_an_earlier_run_reported() {
    let device = device("");
    let mut client = GuestPropClient::connect(&device).unwrap();
    client
        .set_value("/VirtualBox/GuestInfo/Net/5/V4/IP", "192.0.2.5")
        .unwrap();
    let mut info = GuestInfo::start(&client, false);
    info.update(&mut client, &snapshot(1, &[]));
    assert_eq!(value(&client, "/VirtualBox/GuestInfo/Net/5/V4/IP"), None);
    assert!(value(&client, "/VirtualBox/GuestInfo/Net/0/V4/IP").is_some());
}

#[test]
fn guest_info_stop_removes_network_and_users_but_keeps_the_os() {
    let device = device("");
    let mut client = GuestPropClient::connect(&device).unwrap();
    let mut info = GuestInfo::start(&client, false);
    info.update(&mut client, &snapshot(2, &["alice"]));
    info.stop(&mut client);
    assert!(
        client
            .enumerate(&["/VirtualBox/GuestInfo/Net/*"])
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        value(&client, "/VirtualBox/GuestInfo/OS/LoggedInUsers").as_deref(),
        Some("0")
    );
    assert_eq!(
        value(&client, "/VirtualBox/GuestInfo/OS/NoLoggedInUsers").as_deref(),
        Some("true")
    );
    assert_eq!(
        value(&client, "/VirtualBox/GuestInfo/OS/LoggedInUsersList"),
        None
    );
    assert!(value(&client, "/VirtualBox/GuestInfo/OS/Release").is_some());
}

#[test]
fn guest_info_resync_rewrites_what_the_host_lost() {
    let device = device("");
    let mut client = GuestPropClient::connect(&device).unwrap();
    let mut info = GuestInfo::start(&client, false);
    info.update(&mut client, &snapshot(1, &[]));
    // As after restoring an older saved state: the host no longer has the entry.
    let string = |text: &str| {
        let mut bytes = text.as_bytes().to_vec();
        bytes.push(0);
        vmmdev_hgcm::Parm::Buffer(vmmdev_hgcm::Buffer::host(
            bytes,
            vmmdev_hgcm::Direction::ToHost,
        ))
    };
    let mut params = [string("/VirtualBox/GuestInfo/Net/0/V4/IP")];
    let status = device
        .transport()
        .vm
        .device
        .hgcm()
        .host_call(
            vmmdev_svc_guest_props::SERVICE_NAME,
            vmmdev_svc_guest_props::HostFunction::DEL_PROP.raw(),
            &mut params,
        )
        .unwrap();
    assert_eq!(status, 0);
    info.update(&mut client, &snapshot(1, &[]));
    assert_eq!(value(&client, "/VirtualBox/GuestInfo/Net/0/V4/IP"), None);
    info.resync(&client);
    info.update(&mut client, &snapshot(1, &[]));
    assert_eq!(
        value(&client, "/VirtualBox/GuestInfo/Net/0/V4/IP").as_deref(),
        Some("10.0.0.1")
    );
}

#[test]
fn mapping_info_reports_name_host_mount_point_and_flags() {
    let dirs = ShareDirs::new("info");
    let shares = format!(
        "share=docs:{}:ro:auto:mount=/srv/docs share=plain:{}",
        dirs.dir("docs").display(),
        dirs.dir("plain").display()
    );
    let device = device(&shares);
    let client = MappingsClient::connect(&device).unwrap();
    let roots = client.auto_mount_roots().unwrap();
    assert_eq!(roots.len(), 1, "only the auto-mount share is listed");
    let info = client.info(roots[0]).unwrap();
    assert_eq!(info.name, "docs");
    assert_eq!(info.mount_point, "/srv/docs");
    assert!(info.flags.contains(MapInfoFlags::AUTO_MOUNT));
    assert!(!info.flags.contains(MapInfoFlags::WRITABLE));
}

#[test]
fn automount_mounts_only_auto_shares_at_media_sf_name() {
    let dirs = ShareDirs::new("initial");
    let shares = format!(
        "share=auto1:{}:auto share=manual:{}",
        dirs.dir("auto1").display(),
        dirs.dir("manual").display()
    );
    let device = device(&shares);
    let client = MappingsClient::connect(&device).unwrap();
    let mounter = FakeMounter::default();
    let mut automounter = Automounter::new(config(), mounter.clone());
    automounter
        .reconcile(&client, None::<&GuestPropClient<'_, InprocDriver>>)
        .unwrap();
    assert_eq!(mounter.points(), ["auto1@/media/sf_auto1"]);
}

fn host_set_property(device: &Device<InprocDriver>, name: &str, value: &str, flags: &str) {
    let string = |text: &str| {
        let mut bytes = text.as_bytes().to_vec();
        bytes.push(0);
        vmmdev_hgcm::Parm::Buffer(vmmdev_hgcm::Buffer::host(
            bytes,
            vmmdev_hgcm::Direction::ToHost,
        ))
    };
    let mut params = [string(name), string(value), string(flags)];
    let status = device
        .transport()
        .vm
        .device
        .hgcm()
        .host_call(
            vmmdev_svc_guest_props::SERVICE_NAME,
            vmmdev_svc_guest_props::HostFunction::SET_PROP.raw(),
            &mut params,
        )
        .unwrap();
    assert_eq!(status, 0);
}

#[test]
fn automount_placement_follows_the_hosts_mount_dir_and_prefix_unless_overridden() {
    let device = device("");
    let props = GuestPropClient::connect(&device).unwrap();
    // Host-reserved names: the service adds RDONLYGUEST, so the automounter trusts them.
    host_set_property(
        &device,
        "/VirtualBox/GuestAdd/SharedFolders/MountPrefix",
        "host_",
        "",
    );
    host_set_property(
        &device,
        "/VirtualBox/GuestAdd/SharedFolders/MountDir",
        "/mnt/host",
        "",
    );
    let automounter = Automounter::new(config(), FakeMounter::default());
    let placement = automounter.placement(Some(&props));
    assert_eq!(placement.dir, PathBuf::from("/mnt/host"));
    assert_eq!(placement.prefix, "host_");
    let overridden = AutomountConfig {
        mount_prefix: Some("cli_".into()),
        ..config()
    };
    let automounter = Automounter::new(overridden, FakeMounter::default());
    assert_eq!(automounter.placement(Some(&props)).prefix, "cli_");
}

#[test]
fn automount_follows_shares_added_and_removed_at_run_time_and_stops_on_cancel() {
    let dirs = ShareDirs::new("runtime");
    let device = device("");
    let client = MappingsClient::connect(&device).unwrap();
    let mounter = FakeMounter::default();
    let shutdown = Shutdown::new();
    std::thread::scope(|scope| {
        let runner = scope.spawn(|| {
            let mut automounter = Automounter::new(config(), mounter.clone());
            automounter.run(
                &client,
                None::<&GuestPropClient<'_, InprocDriver>>,
                &shutdown,
            );
        });
        add_share(&device, "late", &dirs.dir("late"), true);
        add_share(&device, "manual", &dirs.dir("manual"), false);
        eventually("the added share is mounted", || {
            mounter.points() == ["late@/media/sf_late"]
        });
        remove_share(&device, "late");
        eventually("the removed share is unmounted", || {
            mounter.points().is_empty()
        });
        shutdown.request();
        client.cancel_waits().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !runner.is_finished() {
            assert!(Instant::now() < deadline, "the automounter did not stop");
            std::thread::sleep(Duration::from_millis(10));
        }
    });
}

#[test]
fn cancel_ends_a_pending_wait_for_mapping_changes() {
    let device = device("");
    let client = MappingsClient::connect(&device).unwrap();
    let Ok(WaitOutcome::Woken { version }) = client.wait_for_changes(0, None) else {
        // A host whose version is 0 answers only on a change: start from 0 then.
        return cancel_from(&client, 0);
    };
    cancel_from(&client, version);
}

fn cancel_from(client: &MappingsClient<'_, InprocDriver>, version: u32) {
    std::thread::scope(|scope| {
        let waiter = scope.spawn(|| client.wait_for_changes(version, None));
        std::thread::sleep(Duration::from_millis(100));
        client.cancel_waits().unwrap();
        let outcome = waiter.join().unwrap().unwrap();
        assert_eq!(outcome, WaitOutcome::Woken { version });
    });
}

#[test]
fn a_wait_with_a_timeout_ends_without_a_change() {
    let device = device("");
    let client = MappingsClient::connect(&device).unwrap();
    let version = match client
        .wait_for_changes(0, Some(Duration::from_millis(200)))
        .unwrap()
    {
        WaitOutcome::Woken { version } => version,
        other => panic!("first wait: {other:?}"),
    };
    assert_eq!(
        client
            .wait_for_changes(version, Some(Duration::from_millis(200)))
            .unwrap(),
        WaitOutcome::TimedOut
    );
}
