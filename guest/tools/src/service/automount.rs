//! The automount subservice: mounts every share the host marks for auto-mounting with the
//! kernel's `vboxsf`, and follows the host adding and removing shares while the guest runs.
//!
//! Each round reads the offered shares (QUERY_MAPPINGS with the auto-mount flag, then
//! QUERY_MAP_INFO for name, mount point and root version), [`plan`]s the difference to what this
//! subservice mounted, carries it out, and blocks in WAIT_FOR_MAPPINGS_CHANGES until the host's
//! table changes. A share whose mount or unmount failed is retried every interval (the wait then
//! has that timeout); a host that cannot wait is polled every interval.
//!
//! Where a share goes ([`mount_point`]), as VirtualBox decides it: the host's auto-mount point
//! when it is a clean absolute path; otherwise `<dir>/<prefix><name>`. The directory and prefix
//! come from `--mount-dir`/`--mount-prefix`, else from the host's
//! `/VirtualBox/GuestAdd/SharedFolders/MountDir` and `MountPrefix` properties (trusted only when
//! the guest cannot write them, `RDONLYGUEST`), else `/media` and `sf_`. Share names are the
//! host's, so they are sanitised: `/`, control characters and NUL become `_`.
//!
//! A share already mounted at its point with vboxsf (by hand, or by an earlier run) is taken
//! over rather than mounted twice. When a share disappears, or its root ID is reused for another
//! share, it is unmounted (and a mount point this subservice created is removed). On SIGTERM the
//! wait is cancelled (CANCEL_MAPPINGS_CHANGES_WAITS) and the shares stay mounted, as with
//! VirtualBox.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use vmmdev_guest_ioctl::GuestTransport;
use vmmdev_guest_ioctl::guest_props::{GuestPropClient, PropertyFlags};
use vmmdev_protocol::services::shared_folders::MapInfoFlags;

use super::mappings::{MapInfo, MappingsClient, MappingsError, WaitOutcome};
use super::mounts::{MountRequest, Mounter};
use super::shutdown::Shutdown;

/// The host property naming the mount directory.
pub const MOUNT_DIR_PROPERTY: &str = "/VirtualBox/GuestAdd/SharedFolders/MountDir";
/// The host property naming the mount prefix.
pub const MOUNT_PREFIX_PROPERTY: &str = "/VirtualBox/GuestAdd/SharedFolders/MountPrefix";
/// The default mount directory.
pub const DEFAULT_MOUNT_DIR: &str = "/media";
/// The default mount prefix.
pub const DEFAULT_MOUNT_PREFIX: &str = "sf_";
/// The longest mount point accepted, in bytes.
const MAX_POINT_LEN: usize = 4095;

/// How the subservice runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AutomountConfig {
    /// `--mount-dir`, overriding the host's and the default.
    pub mount_dir: Option<PathBuf>,
    /// `--mount-prefix`, overriding the host's and the default.
    pub mount_prefix: Option<String>,
    /// Retry and polling interval.
    pub interval: Duration,
}

/// Where shares without a usable host mount point go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The directory.
    pub dir: PathBuf,
    /// The prefix before the share name.
    pub prefix: String,
}

impl Default for Placement {
    fn default() -> Self {
        Self {
            dir: PathBuf::from(DEFAULT_MOUNT_DIR),
            prefix: DEFAULT_MOUNT_PREFIX.to_owned(),
        }
    }
}

/// A share the host offers for auto-mounting, with the place it goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offered {
    /// Root ID.
    pub root: u32,
    /// Root ID version.
    pub version: u32,
    /// Share name.
    pub name: String,
    /// Where it goes.
    pub point: PathBuf,
    /// Whether the guest may write.
    pub writable: bool,
}

/// A share this subservice mounted (or took over).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mounted {
    /// Root ID.
    pub root: u32,
    /// Root ID version.
    pub version: u32,
    /// Share name.
    pub name: String,
    /// Where it is mounted.
    pub point: PathBuf,
    /// Whether this subservice created the mount point.
    pub created_dir: bool,
}

/// One step of a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Unmount a share that is no longer offered.
    Unmount(Mounted),
    /// Mount an offered share.
    Mount(Offered),
}

/// Why a share cannot be placed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MountPointError {
    /// The sanitised name or the resulting path is unusable.
    #[error("share name {0:?} gives no usable mount point")]
    BadName(String),
}

/// Replaces what must not appear in a path component.
pub fn sanitize_name(name: &str) -> String {
    name.chars()
        .map(|c| if c == '/' || c.is_control() { '_' } else { c })
        .collect()
}

/// Whether `point` is an absolute path of non-empty components other than `.` and `..`, not
/// `/` itself, without control characters, of a sane length.
fn is_clean_absolute(point: &Path) -> bool {
    let Some(text) = point.to_str() else {
        return false;
    };
    let Some(rest) = text.strip_prefix('/') else {
        return false;
    };
    text.len() <= MAX_POINT_LEN
        && !text.chars().any(char::is_control)
        && rest
            .split('/')
            .all(|component| !matches!(component, "" | "." | ".."))
}

/// Where share `name` goes: the host's `host_point` if clean and absolute, else
/// `<dir>/<prefix><sanitised name>`.
pub fn mount_point(
    name: &str,
    host_point: &str,
    placement: &Placement,
) -> Result<PathBuf, MountPointError> {
    let host_point = Path::new(host_point);
    if !host_point.as_os_str().is_empty() && is_clean_absolute(host_point) {
        return Ok(host_point.to_path_buf());
    }
    let component = format!("{}{}", placement.prefix, sanitize_name(name));
    let point = placement.dir.join(&component);
    if name.is_empty() || !is_clean_absolute(&point) {
        return Err(MountPointError::BadName(name.to_owned()));
    }
    Ok(point)
}

/// The steps from `mounted` to `offered`: unmount what is gone (or whose root ID now names
/// another share), then mount what is new. Of two shares that resolve to one mount point only
/// the first (lowest root ID) is mounted.
pub fn plan(offered: &[Offered], mounted: &[Mounted]) -> Vec<Action> {
    let same = |o: &Offered, m: &Mounted| {
        o.root == m.root && o.version == m.version && o.name == m.name && o.point == m.point
    };
    let mut actions: Vec<Action> = mounted
        .iter()
        .filter(|m| !offered.iter().any(|o| same(o, m)))
        .cloned()
        .map(Action::Unmount)
        .collect();
    let mut taken: BTreeSet<&Path> = mounted
        .iter()
        .filter(|m| offered.iter().any(|o| same(o, m)))
        .map(|m| m.point.as_path())
        .collect();
    let mut sorted: Vec<&Offered> = offered.iter().collect();
    sorted.sort_by_key(|o| o.root);
    for share in sorted {
        if mounted.iter().any(|m| same(share, m)) {
            continue;
        }
        if !taken.insert(share.point.as_path()) {
            log::warn!(
                "automount: share {:?} would go to {}, which another share uses; not mounted",
                share.name,
                share.point.display()
            );
            continue;
        }
        actions.push(Action::Mount(share.clone()));
    }
    actions
}

/// The automounter's state.
#[derive(Debug)]
pub struct Automounter<M: Mounter> {
    config: AutomountConfig,
    mounter: M,
    mounted: Vec<Mounted>,
    failures: usize,
    /// Mount points whose last mount or unmount failed: a repeated failure is logged at debug
    /// level, so a share that cannot be mounted does not fill the log every interval.
    failing: BTreeSet<PathBuf>,
}

impl<M: Mounter> Automounter<M> {
    /// An automounter that has mounted nothing yet.
    pub fn new(config: AutomountConfig, mounter: M) -> Self {
        Self {
            config,
            mounter,
            mounted: Vec::new(),
            failures: 0,
            failing: BTreeSet::new(),
        }
    }

    /// What this automounter has mounted.
    pub fn mounted(&self) -> &[Mounted] {
        &self.mounted
    }

    /// Where shares go: the command line's choice, else the host's (if the guest cannot have
    /// written it), else the default.
    pub fn placement<T: GuestTransport>(
        &self,
        props: Option<&GuestPropClient<'_, T>>,
    ) -> Placement {
        let host = |name: &str| -> Option<String> {
            let property = props?.get(name).ok()??;
            property
                .flags
                .contains(PropertyFlags::RDONLYGUEST)
                .then_some(property.value)
                .filter(|value| !value.is_empty())
        };
        let defaults = Placement::default();
        Placement {
            dir: self
                .config
                .mount_dir
                .clone()
                .or_else(|| host(MOUNT_DIR_PROPERTY).map(PathBuf::from))
                .unwrap_or(defaults.dir),
            prefix: self
                .config
                .mount_prefix
                .clone()
                .or_else(|| host(MOUNT_PREFIX_PROPERTY))
                .unwrap_or(defaults.prefix),
        }
    }

    /// The shares the host offers now, placed.
    pub fn offered<T: GuestTransport>(
        &self,
        client: &MappingsClient<'_, T>,
        placement: &Placement,
    ) -> Result<Vec<Offered>, MappingsError> {
        let mut offered = Vec::new();
        for root in client.auto_mount_roots()? {
            let info: MapInfo = match client.info(root) {
                Ok(info) => info,
                // Removed between the two calls: the next round sees the change.
                Err(error) => {
                    log::debug!("automount: share {root} vanished: {error}");
                    continue;
                }
            };
            match mount_point(&info.name, &info.mount_point, placement) {
                Ok(point) => offered.push(Offered {
                    root,
                    version: info.version,
                    name: info.name,
                    point,
                    writable: info.flags.contains(MapInfoFlags::WRITABLE),
                }),
                Err(error) => log::warn!("automount: {error}"),
            }
        }
        Ok(offered)
    }

    /// Brings the mounts to `offered`; returns how many steps failed (retried next round).
    pub fn apply(&mut self, offered: &[Offered]) -> usize {
        let mut failed = 0;
        let mut failing = BTreeSet::new();
        for action in plan(offered, &self.mounted) {
            match action {
                Action::Unmount(share) => {
                    match self.mounter.unmount(&share.point, share.created_dir) {
                        Ok(()) => {
                            log::info!(
                                "automount: unmounted {:?} from {}",
                                share.name,
                                share.point.display()
                            );
                            self.mounted.retain(|m| m != &share);
                        }
                        Err(error) => {
                            let message =
                                format!("automount: unmounting {}: {error}", share.point.display());
                            self.report_failure(&share.point, &message);
                            failing.insert(share.point);
                            failed += 1;
                        }
                    }
                }
                Action::Mount(share) => {
                    let created_dir = if self.mounter.is_mounted(&share.name, &share.point) {
                        log::info!(
                            "automount: {:?} is already mounted at {}",
                            share.name,
                            share.point.display()
                        );
                        Ok(false)
                    } else {
                        self.mounter.mount(&MountRequest {
                            name: share.name.clone(),
                            point: share.point.clone(),
                            writable: share.writable,
                        })
                    };
                    match created_dir {
                        Ok(created_dir) => {
                            log::info!(
                                "automount: mounted {:?} at {}",
                                share.name,
                                share.point.display()
                            );
                            self.mounted.push(Mounted {
                                root: share.root,
                                version: share.version,
                                name: share.name,
                                point: share.point,
                                created_dir,
                            });
                        }
                        Err(error) => {
                            let message = format!(
                                "automount: mounting {:?} at {}: {error}",
                                share.name,
                                share.point.display()
                            );
                            self.report_failure(&share.point, &message);
                            failing.insert(share.point);
                            failed += 1;
                        }
                    }
                }
            }
        }
        self.failing = failing;
        failed
    }

    /// Logs a failure at `point`: a warning the first time, at debug level while it repeats.
    fn report_failure(&self, point: &Path, message: &str) {
        if self.failing.contains(point) {
            log::debug!("{message} (again)");
        } else {
            log::warn!(
                "{message}; retrying every {} ms",
                self.config.interval.as_millis()
            );
        }
    }

    /// One round: read what the host offers and mount or unmount accordingly.
    pub fn reconcile<T: GuestTransport>(
        &mut self,
        client: &MappingsClient<'_, T>,
        props: Option<&GuestPropClient<'_, T>>,
    ) -> Result<(), MappingsError> {
        let placement = self.placement(props);
        let offered = self.offered(client, &placement)?;
        self.failures = self.apply(&offered);
        Ok(())
    }

    /// Runs until `shutdown` is requested (the caller then cancels the client's wait).
    pub fn run<T: GuestTransport>(
        &mut self,
        client: &MappingsClient<'_, T>,
        props: Option<&GuestPropClient<'_, T>>,
        shutdown: &Shutdown,
    ) {
        let interval = self.config.interval;
        let mut version = 0;
        let mut polling = false;
        log::info!("automount: started");
        while !shutdown.is_requested() {
            if let Err(error) = self.reconcile(client, props) {
                log::warn!("automount: reading the shares failed: {error}");
                if shutdown.sleep(interval) {
                    break;
                }
                continue;
            }
            if polling {
                if shutdown.sleep(interval) {
                    break;
                }
                continue;
            }
            let timeout = (self.failures > 0).then_some(interval);
            match client.wait_for_changes(version, timeout) {
                Ok(WaitOutcome::Woken { version: current }) => version = current,
                Ok(WaitOutcome::TimedOut) => {}
                Ok(WaitOutcome::Unsupported) => {
                    log::info!("automount: the host cannot wait for changes; polling");
                    polling = true;
                }
                Err(error) => {
                    log::warn!("automount: waiting for changes failed: {error}");
                    if shutdown.sleep(interval) {
                        break;
                    }
                }
            }
        }
        log::info!(
            "automount: stopped; {} shares stay mounted",
            self.mounted.len()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offered(root: u32, name: &str) -> Offered {
        Offered {
            root,
            version: 1,
            name: name.into(),
            point: PathBuf::from(format!("/media/sf_{name}")),
            writable: true,
        }
    }

    fn mounted(root: u32, name: &str) -> Mounted {
        Mounted {
            root,
            version: 1,
            name: name.into(),
            point: PathBuf::from(format!("/media/sf_{name}")),
            created_dir: true,
        }
    }

    #[test]
    fn default_place_is_media_sf_name() {
        assert_eq!(
            mount_point("data", "", &Placement::default()).unwrap(),
            PathBuf::from("/media/sf_data")
        );
    }

    #[test]
    fn a_clean_absolute_host_point_wins() {
        assert_eq!(
            mount_point("data", "/srv/data", &Placement::default()).unwrap(),
            PathBuf::from("/srv/data")
        );
    }

    #[test]
    fn a_relative_or_dotted_host_point_is_ignored() {
        for bad in [
            "srv/data",
            "/srv/../etc",
            "/",
            "/srv/./x",
            "/srv//x",
            "/srv/",
            "D:",
        ] {
            assert_eq!(
                mount_point("data", bad, &Placement::default()).unwrap(),
                PathBuf::from("/media/sf_data"),
                "{bad}"
            );
        }
    }

    #[test]
    fn slashes_and_control_characters_in_names_become_underscores() {
        assert_eq!(
            mount_point("../etc/x\n", "", &Placement::default()).unwrap(),
            PathBuf::from("/media/sf_.._etc_x_")
        );
    }

    #[test]
    fn dot_names_without_a_prefix_are_refused() {
        let placement = Placement {
            dir: PathBuf::from("/mnt"),
            prefix: String::new(),
        };
        assert!(mount_point("..", "", &placement).is_err());
        assert!(mount_point(".", "", &placement).is_err());
        assert!(mount_point("", "", &placement).is_err());
        assert_eq!(
            mount_point("x", "", &placement).unwrap(),
            PathBuf::from("/mnt/x")
        );
    }

    #[test]
    fn new_shares_are_mounted_and_kept_ones_left_alone() {
        let actions = plan(&[offered(0, "a"), offered(1, "b")], &[mounted(0, "a")]);
        assert_eq!(actions, [Action::Mount(offered(1, "b"))]);
    }

    #[test]
    fn removed_shares_are_unmounted_before_new_ones_are_mounted() {
        let actions = plan(&[offered(1, "b")], &[mounted(0, "a")]);
        assert_eq!(
            actions,
            [
                Action::Unmount(mounted(0, "a")),
                Action::Mount(offered(1, "b"))
            ]
        );
    }

    #[test]
    fn a_reused_root_id_unmounts_the_old_share_and_mounts_the_new() {
        let reused = Offered {
            version: 2,
            ..offered(0, "a")
        };
        let actions = plan(std::slice::from_ref(&reused), &[mounted(0, "a")]);
        assert_eq!(
            actions,
            [Action::Unmount(mounted(0, "a")), Action::Mount(reused)]
        );
    }

    #[test]
    fn of_two_shares_with_one_mount_point_only_the_lower_root_is_mounted() {
        let clash = Offered {
            point: PathBuf::from("/media/sf_a"),
            ..offered(3, "other")
        };
        let actions = plan(&[clash, offered(1, "a")], &[]);
        assert_eq!(actions, [Action::Mount(offered(1, "a"))]);
    }

    /// Fails every mount while `broken`.
    #[derive(Debug, Default)]
    struct FlakyMounter {
        broken: bool,
        mounts: usize,
    }

    impl Mounter for FlakyMounter {
        fn is_mounted(&self, _name: &str, _point: &Path) -> bool {
            false
        }

        fn mount(&mut self, _request: &MountRequest) -> std::io::Result<bool> {
            if self.broken {
                return Err(std::io::Error::from_raw_os_error(libc::ENODEV));
            }
            self.mounts += 1;
            Ok(true)
        }

        fn unmount(&mut self, _point: &Path, _remove_dir: bool) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failed_mount_is_retried_by_the_next_apply_until_it_works() {
        let config = AutomountConfig {
            mount_dir: None,
            mount_prefix: None,
            interval: Duration::from_millis(100),
        };
        let mounter = FlakyMounter {
            broken: true,
            mounts: 0,
        };
        let mut automounter = Automounter::new(config, mounter);
        let shares = [offered(0, "a")];
        assert_eq!(automounter.apply(&shares), 1);
        assert_eq!(automounter.apply(&shares), 1);
        assert!(automounter.mounted().is_empty());
        automounter.mounter.broken = false;
        assert_eq!(automounter.apply(&shares), 0);
        assert_eq!(automounter.mounted().len(), 1);
        assert_eq!(automounter.apply(&shares), 0);
        assert_eq!(
            automounter.mounter.mounts, 1,
            "mounted once, then left alone"
        );
    }

    #[test]
    fn nothing_offered_and_nothing_mounted_plans_nothing() {
        assert!(plan(&[], &[]).is_empty());
    }
}
