//! The guest-information subservice: publishes what the host wants to know about the guest as
//! guest properties, in VirtualBox's names and formats (VBoxService's "VMInfo").
//!
//! | Properties | Source | Written |
//! |---|---|---|
//! | `/VirtualBox/GuestAdd/Version`, `VersionExt`, `Revision` | this program: the project version, `<version>_vmmdev-rs`, `0` (no source revision number exists) | once, no flags |
//! | `/VirtualBox/GuestInfo/OS/Product`, `Release`, `Version`, `ServicePack` | `uname`: sysname, release, version; service pack empty | once, no flags |
//! | `/VirtualBox/GuestInfo/Net/*` | [`super::net`] | on change, no flags |
//! | `/VirtualBox/GuestInfo/OS/LoggedInUsers*`, `NoLoggedInUsers` | [`super::users`] | on change, `TRANSIENT, TRANSRESET` |
//!
//! Every interval the subservice takes a new [`Snapshot`] and writes only the properties whose
//! value changed, then deletes stale `Net/<n>` entries. Unlike VirtualBox it does not rewrite
//! `Net/Count` every interval as a liveness beacon. At start it takes over what an earlier run
//! left (so a restarted daemon deletes entries of interfaces that are gone). When the VMMDev
//! session ID changes (the VM was restored or reset, and the host's properties may be older than
//! what this subservice wrote), it reads the host's properties again and rewrites what differs,
//! where VBoxService rewrites its fixed properties. When it stops it
//! leaves the `OS/*` and `GuestAdd/*` properties, deletes every `Net/*` property and
//! `LoggedInUsersList`, and sets `LoggedInUsers` to `0` and `NoLoggedInUsers` to `true`, as
//! VBoxService does.

use std::path::PathBuf;
use std::time::Duration;

use vmmdev_guest_ioctl::guest_props::{GuestPropClient, GuestPropError};
use vmmdev_guest_ioctl::{Device, GuestTransport, RequestType};
use vmmdev_protocol::vmmdev::SessionIdRequest;
use zerocopy::FromBytes;

use super::net::{self, Interface, NET_PREFIX};
use super::published::{Desired, PropertySink, Published, Value};
use super::shutdown::Shutdown;
use super::users;

/// `/VirtualBox/GuestAdd/Version`.
pub const ADDITIONS_VERSION: &str = "/VirtualBox/GuestAdd/Version";
/// `/VirtualBox/GuestAdd/VersionExt`.
pub const ADDITIONS_VERSION_EXT: &str = "/VirtualBox/GuestAdd/VersionExt";
/// `/VirtualBox/GuestAdd/Revision`.
pub const ADDITIONS_REVISION: &str = "/VirtualBox/GuestAdd/Revision";
/// Prefix of the OS properties.
pub const OS_PREFIX: &str = "/VirtualBox/GuestInfo/OS/";

/// The names an earlier run may have left and this subservice takes over at start.
const LEFTOVER_PATTERNS: &[&str] = &[
    "/VirtualBox/GuestInfo/Net/*",
    "/VirtualBox/GuestInfo/OS/*",
    "/VirtualBox/GuestAdd/Version*",
    "/VirtualBox/GuestAdd/Revision",
];

/// How the subservice runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestInfoConfig {
    /// Time between two snapshots.
    pub interval: Duration,
    /// Report the loopback interface too.
    pub include_loopback: bool,
    /// The utmp file users are read from.
    pub utmp: PathBuf,
}

/// A failure that ends the subservice.
#[derive(Debug, thiserror::Error)]
pub enum GuestInfoError {
    /// The guest-properties service could not be reached.
    #[error("connecting to the guest properties service: {0}")]
    Connect(#[source] GuestPropError),
}

/// The operating system's identity (`uname`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OsInfo {
    /// `sysname`, e.g. `Linux`.
    pub product: String,
    /// `release`, e.g. `6.1.0-48-amd64`.
    pub release: String,
    /// `version`, e.g. `#1 SMP PREEMPT_DYNAMIC Debian ...`.
    pub version: String,
}

impl OsInfo {
    /// The running kernel's identity.
    pub fn current() -> std::io::Result<Self> {
        // SAFETY: an all-zero `utsname` is a valid out-parameter.
        let mut names: libc::utsname = unsafe { std::mem::zeroed() };
        // SAFETY: `names` is a valid, exclusively borrowed out-parameter.
        if unsafe { libc::uname(&mut names) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let text = |field: &[libc::c_char]| {
            // The C characters' bytes, as they are.
            let bytes: Vec<u8> = field
                .iter()
                .map(|&c| c as u8)
                .take_while(|&b| b != 0)
                .collect();
            String::from_utf8_lossy(&bytes).into_owned()
        };
        Ok(Self {
            product: text(&names.sysname),
            release: text(&names.release),
            version: text(&names.version),
        })
    }
}

/// Everything the subservice reports, taken at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The OS identity.
    pub os: OsInfo,
    /// The network interfaces.
    pub interfaces: Vec<Interface>,
    /// The logged-in users.
    pub users: Vec<String>,
}

impl Snapshot {
    /// Takes a snapshot of this guest. A part that cannot be read is logged and left empty.
    pub fn take(config: &GuestInfoConfig) -> Self {
        let os = OsInfo::current().unwrap_or_else(|error| {
            log::warn!("guest info: uname failed: {error}");
            OsInfo::default()
        });
        let interfaces = net::interfaces().unwrap_or_else(|error| {
            log::warn!("guest info: reading the network interfaces failed: {error}");
            Vec::new()
        });
        let users = users::read_logged_in_users(&config.utmp).unwrap_or_else(|error| {
            log::warn!(
                "guest info: reading {} failed: {error}",
                config.utmp.display()
            );
            Vec::new()
        });
        Self {
            os,
            interfaces,
            users,
        }
    }
}

/// The Guest Additions version properties.
pub fn version_properties() -> Desired {
    let version = env!("CARGO_PKG_VERSION");
    [
        (ADDITIONS_VERSION, version.to_owned()),
        (ADDITIONS_VERSION_EXT, format!("{version}_vmmdev-rs")),
        (ADDITIONS_REVISION, "0".to_owned()),
    ]
    .into_iter()
    .map(|(name, text)| (name.to_owned(), Value::plain(text)))
    .collect()
}

/// The OS properties of `os`.
pub fn os_properties(os: &OsInfo) -> Desired {
    [
        ("Product", &os.product),
        ("Release", &os.release),
        ("Version", &os.version),
        ("ServicePack", &String::new()),
    ]
    .into_iter()
    .map(|(key, text)| (format!("{OS_PREFIX}{key}"), Value::plain(text.as_str())))
    .collect()
}

/// Every property for `snapshot`.
pub fn desired(snapshot: &Snapshot, include_loopback: bool) -> Desired {
    let mut all = version_properties();
    all.extend(os_properties(&snapshot.os));
    all.extend(net::net_properties(&snapshot.interfaces, include_loopback));
    all.extend(users::user_properties(&snapshot.users));
    all
}

/// What stays on the host after the subservice stops: `desired` without `Net/*`, with nobody
/// logged in.
pub fn after_stop(desired: &Desired) -> Desired {
    let mut kept: Desired = desired
        .iter()
        .filter(|(name, _)| {
            !name.starts_with(NET_PREFIX) && name.as_str() != users::LOGGED_IN_USERS_LIST
        })
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    kept.extend(users::user_properties(&[]));
    kept
}

/// The subservice's state between rounds.
#[derive(Debug)]
pub struct GuestInfo {
    include_loopback: bool,
    published: Published,
    last: Desired,
}

impl GuestInfo {
    /// Starts publishing through `client`, taking over what an earlier run left on the host.
    pub fn start<T: GuestTransport>(
        client: &GuestPropClient<'_, T>,
        include_loopback: bool,
    ) -> Self {
        let mut published = Published::new();
        match client.enumerate(LEFTOVER_PATTERNS) {
            Ok(leftovers) => published.adopt(leftovers.into_iter().filter(|property| {
                property.name.starts_with(NET_PREFIX)
                    || [
                        users::LOGGED_IN_USERS,
                        users::LOGGED_IN_USERS_LIST,
                        users::NO_LOGGED_IN_USERS,
                        ADDITIONS_VERSION,
                        ADDITIONS_VERSION_EXT,
                        ADDITIONS_REVISION,
                    ]
                    .contains(&property.name.as_str())
                    || os_properties(&OsInfo::default()).contains_key(&property.name)
            })),
            Err(error) => log::warn!("guest info: listing earlier properties failed: {error}"),
        }
        Self {
            include_loopback,
            published,
            last: Desired::new(),
        }
    }

    /// Forgets what this subservice believes the host holds and reads it from the host again, so
    /// the next [`update`](Self::update) rewrites whatever the host lost or holds differently.
    pub fn resync<T: GuestTransport>(&mut self, client: &GuestPropClient<'_, T>) {
        self.published = Self::start(client, self.include_loopback).published;
    }

    /// Publishes `snapshot`, writing only what changed.
    pub fn update(&mut self, sink: &mut dyn PropertySink, snapshot: &Snapshot) {
        self.last = desired(snapshot, self.include_loopback);
        let report = self.published.publish(sink, &self.last);
        if report.written + report.deleted > 0 {
            log::debug!(
                "guest info: {} properties written, {} deleted",
                report.written,
                report.deleted
            );
        }
        for (name, error) in report.failed {
            log::warn!("guest info: updating {name} failed: {error}");
        }
    }

    /// Withdraws what must not outlive the subservice (see the module docs).
    pub fn stop(&mut self, sink: &mut dyn PropertySink) {
        let report = self.published.publish(sink, &after_stop(&self.last));
        for (name, error) in report.failed {
            log::warn!("guest info: withdrawing {name} failed: {error}");
        }
    }
}

/// The VMMDev session ID (GetSessionId), new after every restore and reset of the VM; `None` if
/// the driver or the device does not answer.
pub fn session_id<T: GuestTransport>(device: &Device<T>) -> Option<u64> {
    let mut request = [0u8; std::mem::size_of::<SessionIdRequest>()];
    match device.vmmdev_request(RequestType::GET_SESSION_ID, &mut request) {
        Ok(status) if !status.is_failure() => SessionIdRequest::read_from_bytes(&request)
            .ok()
            .map(|reply| reply.session_id.get()),
        Ok(_) | Err(_) => None,
    }
}

/// Whether the VM was restored or reset between two session ID readings.
pub fn session_changed(previous: Option<u64>, current: Option<u64>) -> bool {
    matches!((previous, current), (Some(previous), Some(current)) if previous != current)
}

/// Runs the subservice on `device` until `shutdown` is requested.
pub fn run<T: GuestTransport>(
    device: &Device<T>,
    config: &GuestInfoConfig,
    shutdown: &Shutdown,
) -> Result<(), GuestInfoError> {
    let mut client = GuestPropClient::connect(device).map_err(GuestInfoError::Connect)?;
    let mut info = GuestInfo::start(&client, config.include_loopback);
    log::info!(
        "guest info: publishing every {} ms",
        config.interval.as_millis()
    );
    let mut session = session_id(device);
    loop {
        let current = session_id(device);
        if session_changed(session, current) {
            log::info!("guest info: the VM was restored or reset; comparing with the host again");
            info.resync(&client);
        }
        session = current.or(session);
        let snapshot = Snapshot::take(config);
        info.update(&mut client, &snapshot);
        if shutdown.sleep(config.interval) {
            break;
        }
    }
    info.stop(&mut client);
    log::info!("guest info: stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::net::Ipv4Info;
    use crate::service::published::tests::RecordingSink;
    use std::net::Ipv4Addr;

    fn snapshot(interfaces: usize, users: &[&str]) -> Snapshot {
        let interface = |n: usize| Interface {
            name: format!("eth{n}"),
            index: u32::try_from(n).unwrap() + 2,
            up: true,
            ipv4: vec![Ipv4Info {
                address: Ipv4Addr::new(10, 0, 0, u8::try_from(n).unwrap() + 1),
                netmask: Ipv4Addr::new(255, 255, 255, 0),
                broadcast: None,
            }],
            ..Interface::default()
        };
        Snapshot {
            os: OsInfo {
                product: "Linux".into(),
                release: "6.1.0-test".into(),
                version: "#1 SMP".into(),
            },
            interfaces: (0..interfaces).map(interface).collect(),
            users: users.iter().map(|user| (*user).to_owned()).collect(),
        }
    }

    #[test]
    fn os_properties_follow_uname_and_service_pack_is_empty() {
        let properties = desired(&snapshot(0, &[]), false);
        let text = |key: &str| properties[&format!("{OS_PREFIX}{key}")].text.clone();
        assert_eq!(text("Product"), "Linux");
        assert_eq!(text("Release"), "6.1.0-test");
        assert_eq!(text("Version"), "#1 SMP");
        assert_eq!(text("ServicePack"), "");
    }

    #[test]
    fn version_is_the_project_version() {
        let properties = version_properties();
        assert_eq!(
            properties[ADDITIONS_VERSION].text,
            env!("CARGO_PKG_VERSION")
        );
        assert!(
            properties[ADDITIONS_VERSION_EXT]
                .text
                .starts_with(env!("CARGO_PKG_VERSION"))
        );
    }

    #[test]
    fn only_a_different_known_session_id_means_a_restore() {
        assert!(session_changed(Some(1), Some(2)));
        assert!(!session_changed(Some(1), Some(1)));
        assert!(!session_changed(None, Some(1)));
        assert!(!session_changed(Some(1), None));
    }

    #[test]
    fn current_os_release_is_not_empty() {
        assert!(!OsInfo::current().unwrap().release.is_empty());
    }

    #[test]
    fn a_second_identical_round_writes_nothing() {
        let mut info = GuestInfo {
            include_loopback: false,
            published: Published::new(),
            last: Desired::new(),
        };
        let mut sink = RecordingSink::default();
        info.update(&mut sink, &snapshot(2, &["root"]));
        sink.calls.clear();
        info.update(&mut sink, &snapshot(2, &["root"]));
        assert!(sink.calls.is_empty(), "{:?}", sink.calls);
    }

    #[test]
    fn an_interface_that_went_away_has_its_entries_deleted_and_the_count_lowered() {
        let mut info = GuestInfo {
            include_loopback: false,
            published: Published::new(),
            last: Desired::new(),
        };
        let mut sink = RecordingSink::default();
        info.update(&mut sink, &snapshot(2, &[]));
        sink.calls.clear();
        info.update(&mut sink, &snapshot(1, &[]));
        assert_eq!(
            sink.calls,
            [
                "set /VirtualBox/GuestInfo/Net/Count=1",
                "delete /VirtualBox/GuestInfo/Net/1/Name",
                "delete /VirtualBox/GuestInfo/Net/1/Status",
                "delete /VirtualBox/GuestInfo/Net/1/V4/Broadcast",
                "delete /VirtualBox/GuestInfo/Net/1/V4/IP",
                "delete /VirtualBox/GuestInfo/Net/1/V4/Netmask",
            ]
        );
    }

    #[test]
    fn stop_deletes_net_and_the_user_list_and_resets_the_user_count() {
        let mut info = GuestInfo {
            include_loopback: false,
            published: Published::new(),
            last: Desired::new(),
        };
        let mut sink = RecordingSink::default();
        info.update(&mut sink, &snapshot(1, &["alice"]));
        sink.calls.clear();
        info.stop(&mut sink);
        assert!(
            sink.calls
                .contains(&"set /VirtualBox/GuestInfo/OS/LoggedInUsers=0".to_owned())
        );
        assert!(
            sink.calls
                .contains(&"set /VirtualBox/GuestInfo/OS/NoLoggedInUsers=true".to_owned())
        );
        assert!(
            sink.calls
                .contains(&"delete /VirtualBox/GuestInfo/OS/LoggedInUsersList".to_owned())
        );
        assert!(
            sink.calls
                .contains(&"delete /VirtualBox/GuestInfo/Net/Count".to_owned())
        );
        assert!(!sink.calls.iter().any(|call| call.contains("OS/Release")));
    }
}
