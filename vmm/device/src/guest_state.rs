//! What the guest reported about itself, and change notifications for the embedder.
//!
//! The guest additions describe themselves through VMMDev requests: interface version and OS
//! type (ReportGuestInfo), additions version and features (ReportGuestInfo2), facility states
//! (ReportGuestStatus), capabilities, mouse capabilities and the logged-in user state. The
//! device keeps the latest values here and publishes every change on channels returned by
//! [`GuestStateTracker::subscribe`], like VirtualBox's `onAdditionsStateChange`. Subscribers that
//! stop reading lose notifications (counted), they never block the device.

use std::time::SystemTime;

use vmmdev_hgcm::{Fanout, Subscription};
use vmmdev_protocol::vmmdev::{
    FacilityStatus, FacilityType, GUEST_USER_STATE_MAX_DETAILS_SIZE,
    GUEST_USER_STATE_MAX_DOMAIN_SIZE, GUEST_USER_STATE_MAX_USER_SIZE, GuestCapabilities,
    GuestInfo2Features, MouseFeatures,
};

/// Bounded depth of each subscriber's channel.
const SUBSCRIBER_QUEUE_DEPTH: usize = 256;
/// Facility table capacity (VirtualBox's).
const MAX_FACILITIES: usize = 32;
/// Facility type "all facilities".
const FACILITY_ALL: u32 = FacilityType::ALL.raw();
/// Facilities that exist from construction and are never evicted.
const FIXED_FACILITIES: [u32; 5] = [
    FacilityType::VBOXGUEST_DRIVER.raw(),
    FacilityType::VBOX_SERVICE.raw(),
    FacilityType::VBOX_TRAY_CLIENT.raw(),
    FacilityType::SEAMLESS.raw(),
    FacilityType::GRAPHICS.raw(),
];
/// Facility status "inactive".
const FACILITY_STATUS_INACTIVE: u16 = FacilityStatus::INACTIVE.raw() as u16;
/// Capability bit VirtualBox forces on for the legacy capability report.
const CAPABILITY_GRAPHICS: u32 = GuestCapabilities::GRAPHICS.bits();
/// Mouse feature bits the guest controls.
const MOUSE_GUEST_MASK: u32 = MouseFeatures::GUEST_MASK.bits();
/// Mouse feature bits the host controls.
const MOUSE_HOST_MASK: u32 = MouseFeatures::HOST_MASK.bits();
/// Mouse bits VirtualBox always reports on the host side (re-checks host cursor, full state).
pub const MOUSE_HOST_DEFAULT: u32 = MouseFeatures::HOST_RECHECKS_NEEDS_HOST_CURSOR.bits()
    | MouseFeatures::HOST_SUPPORTS_FULL_STATE_PROTOCOL.bits();
/// Mouse bits whose change the frontend must hear about (can-absolute, needs-host-cursor).
const MOUSE_GUEST_NOTIFY_MASK: u32 =
    MouseFeatures::GUEST_CAN_ABSOLUTE.bits() | MouseFeatures::GUEST_NEEDS_HOST_CURSOR.bits();

/// Errors of guest-reported state, mapped to VirtualBox statuses by the request handlers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuestStateError {
    /// A field has a value the protocol does not allow.
    #[error("invalid value: {0}")]
    Invalid(&'static str),
    /// A value does not fit the range the protocol allows.
    #[error("value out of range: {0}")]
    OutOfRange(&'static str),
    /// The facility table is full of active entries.
    #[error("facility table full")]
    FacilityTableFull,
    /// A user-state report exceeds the size limits.
    #[error("user state too large")]
    TooMuchData,
}

/// ReportGuestInfo contents.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestInfo {
    /// VMMDev interface version the additions speak (0x00010004 for Linux).
    pub interface_version: u32,
    /// `VBOXOSTYPE` value.
    pub os_type: u32,
}

/// ReportGuestInfo2 contents.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AdditionsVersion {
    /// Major version.
    pub major: u16,
    /// Minor version.
    pub minor: u16,
    /// Build number.
    pub build: u32,
    /// Source revision.
    pub revision: u32,
    /// Feature bits (bit 0: the guest fills in requestor information).
    pub features: u32,
    /// Version name, e.g. "6.0.0" or "7.1.6_RC1".
    pub name: String,
}

/// One facility's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Facility {
    /// Facility type (20 = VBoxGuest driver, 100 = VBoxService, ...).
    pub facility: u32,
    /// Status (0 inactive, 50 active, ...).
    pub status: u16,
    /// Flags as reported.
    pub flags: u32,
    /// When the status last changed.
    pub changed: SystemTime,
}

/// A user login/logout report (ReportGuestUserState).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserState {
    /// State (login, logout, idle, ...).
    pub state: u32,
    /// User name.
    pub user: String,
    /// Domain, possibly empty.
    pub domain: String,
    /// State-specific details.
    pub details: Vec<u8>,
}

/// A change of guest-reported state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuestStateChange {
    /// ReportGuestInfo changed.
    GuestInfo(GuestInfo),
    /// ReportGuestInfo2 arrived.
    AdditionsVersion(AdditionsVersion),
    /// A facility's status changed.
    Facility(Facility),
    /// Guest capabilities were set (sent on every request, changed or not).
    Capabilities(u32),
    /// Guest mouse capabilities changed in a bit the frontend cares about.
    MouseCapabilities(u32),
    /// A user logged in/out or changed state.
    UserState(UserState),
    /// The memory balloon was inflated (`true`) or deflated by one chunk.
    Balloon {
        /// Inflated (pages handed to the host) or deflated.
        inflate: bool,
        /// Guest-physical page addresses of the chunk.
        pages: Vec<u64>,
    },
    /// The device was reset: everything above is back to its initial state.
    Reset,
}

/// Everything the guest reported, as a value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GuestStateSnapshot {
    /// Last ReportGuestInfo.
    pub info: Option<GuestInfo>,
    /// Last ReportGuestInfo2.
    pub additions: Option<AdditionsVersion>,
    /// Known facilities, sorted by type.
    pub facilities: Vec<Facility>,
    /// Guest capabilities.
    pub capabilities: u32,
    /// Mouse feature bits (guest and host parts).
    pub mouse_features: u32,
    /// Last user state report.
    pub user_state: Option<UserState>,
}

/// Keeper of guest-reported state and its subscribers.
#[derive(Debug)]
pub struct GuestStateTracker {
    state: GuestStateSnapshot,
    subscribers: Fanout<GuestStateChange>,
}

impl Default for GuestStateTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl GuestStateTracker {
    /// Initial state: no reports, fixed facilities inactive, host mouse defaults.
    pub fn new() -> Self {
        GuestStateTracker {
            state: initial_state(),
            subscribers: Fanout::new(SUBSCRIBER_QUEUE_DEPTH),
        }
    }

    /// A subscription receiving every later change; dropping it unsubscribes.
    pub fn subscribe(&self) -> Subscription<GuestStateChange> {
        self.subscribers.subscribe()
    }

    /// Notifications dropped because a subscriber's queue was full.
    pub fn lost_notifications(&self) -> u64 {
        self.subscribers.dropped()
    }

    /// The current state.
    pub fn snapshot(&self) -> GuestStateSnapshot {
        self.state.clone()
    }

    /// Whether the guest asked for requestor information to be honoured.
    pub fn requestor_info_enabled(&self) -> bool {
        self.state
            .additions
            .as_ref()
            .is_some_and(|a| a.features & GuestInfo2Features::REQUESTOR_INFO.bits() != 0)
    }

    /// Replaces the state (restore); subscribers are told nothing.
    pub fn restore(&mut self, state: GuestStateSnapshot) {
        self.state = state;
    }

    /// ReportGuestInfo: stores the info and notifies when it changed.
    pub fn report_info(&mut self, info: GuestInfo) {
        if self.state.info != Some(info) {
            self.state.info = Some(info);
            self.publish(GuestStateChange::GuestInfo(info));
        }
    }

    /// ReportGuestInfo2: validates and stores the additions version.
    pub fn report_additions(
        &mut self,
        major: u16,
        minor: u16,
        build: u32,
        revision: u32,
        features: u32,
        name: &[u8],
    ) -> Result<(), GuestStateError> {
        let name = validate_additions_name(major, minor, build, name)?;
        let version = AdditionsVersion {
            major,
            minor,
            build,
            revision,
            features,
            name,
        };
        self.state.additions = Some(version.clone());
        self.publish(GuestStateChange::AdditionsVersion(version));
        Ok(())
    }

    /// ReportGuestStatus: updates one facility (or all known ones).
    pub fn report_facility(
        &mut self,
        facility: u32,
        status: u32,
        flags: u32,
    ) -> Result<(), GuestStateError> {
        if facility == 0 || facility > FACILITY_ALL {
            return Err(GuestStateError::Invalid("facility type"));
        }
        let status =
            u16::try_from(status).map_err(|_| GuestStateError::OutOfRange("facility status"))?;
        let now = SystemTime::now();
        let facilities = &mut self.state.facilities;
        let mut changed = Vec::new();
        if facility == FACILITY_ALL {
            for entry in facilities.iter_mut() {
                if entry.status != status || entry.flags != flags {
                    *entry = Facility {
                        facility: entry.facility,
                        status,
                        flags,
                        changed: now,
                    };
                    changed.push(*entry);
                }
            }
        } else {
            let index = match facilities.binary_search_by_key(&facility, |f| f.facility) {
                Ok(index) => index,
                Err(mut insert_at) => {
                    if facilities.len() >= MAX_FACILITIES {
                        let victim = facilities
                            .iter()
                            .position(|f| {
                                f.status == FACILITY_STATUS_INACTIVE
                                    && !FIXED_FACILITIES.contains(&f.facility)
                            })
                            .ok_or(GuestStateError::FacilityTableFull)?;
                        facilities.remove(victim);
                        if victim < insert_at {
                            insert_at -= 1;
                        }
                    }
                    facilities.insert(
                        insert_at,
                        Facility {
                            facility,
                            status: FACILITY_STATUS_INACTIVE,
                            flags: 0,
                            changed: now,
                        },
                    );
                    insert_at
                }
            };
            if let Some(entry) = facilities.get_mut(index) {
                if entry.status != status || entry.flags != flags {
                    entry.status = status;
                    entry.flags = flags;
                    entry.changed = now;
                    changed.push(*entry);
                }
            }
        }
        for entry in changed {
            self.publish(GuestStateChange::Facility(entry));
        }
        Ok(())
    }

    /// SetGuestCapabilities: `caps = (caps | or) & !not`; always notifies.
    pub fn set_capabilities(&mut self, or_mask: u32, not_mask: u32) -> u32 {
        self.state.capabilities = (self.state.capabilities | or_mask) & !not_mask;
        self.publish(GuestStateChange::Capabilities(self.state.capabilities));
        self.state.capabilities
    }

    /// ReportGuestCapabilities (legacy): stores `caps | GRAPHICS`, notifies on change.
    pub fn report_capabilities(&mut self, caps: u32) {
        let caps = caps | CAPABILITY_GRAPHICS;
        if caps != self.state.capabilities {
            self.state.capabilities = caps;
            self.publish(GuestStateChange::Capabilities(caps));
        }
    }

    /// Current mouse feature bits (guest and host parts).
    pub fn mouse_features(&self) -> u32 {
        self.state.mouse_features
    }

    /// SetMouseStatus: replaces the guest-controlled bits.
    pub fn set_guest_mouse_features(&mut self, features: u32) {
        let old = self.state.mouse_features;
        let new = (old & !MOUSE_GUEST_MASK) | (features & MOUSE_GUEST_MASK);
        self.state.mouse_features = new;
        if (old ^ new) & MOUSE_GUEST_NOTIFY_MASK != 0 {
            self.publish(GuestStateChange::MouseCapabilities(new));
        }
    }

    /// Replaces the host-controlled mouse bits; returns whether they changed.
    pub fn set_host_mouse_features(&mut self, features: u32) -> bool {
        let old = self.state.mouse_features;
        let new = (old & !MOUSE_HOST_MASK) | (features & MOUSE_HOST_MASK);
        self.state.mouse_features = new;
        old != new
    }

    /// ReportGuestUserState: stores a report parsed by [`parse_user_state`].
    pub fn report_user_state(&mut self, user_state: UserState) {
        self.state.user_state = Some(user_state.clone());
        self.publish(GuestStateChange::UserState(user_state));
    }

    /// Tells subscribers about a balloon change.
    pub fn balloon_changed(&mut self, inflate: bool, pages: Vec<u64>) {
        self.publish(GuestStateChange::Balloon { inflate, pages });
    }

    /// Device reset: forget the guest's reports (mouse guest bits cleared, facilities
    /// inactive), keep the host mouse bits and the subscribers.
    pub fn reset(&mut self) {
        let host_mouse = self.state.mouse_features & MOUSE_HOST_MASK;
        self.state = initial_state();
        self.state.mouse_features = host_mouse;
        self.publish(GuestStateChange::Reset);
    }

    fn publish(&self, change: GuestStateChange) {
        self.subscribers.publish(change);
    }
}

fn initial_state() -> GuestStateSnapshot {
    let now = SystemTime::now();
    GuestStateSnapshot {
        facilities: FIXED_FACILITIES
            .iter()
            .map(|&facility| Facility {
                facility,
                status: FACILITY_STATUS_INACTIVE,
                flags: 0,
                changed: now,
            })
            .collect(),
        mouse_features: MOUSE_HOST_DEFAULT,
        ..GuestStateSnapshot::default()
    }
}

/// Parses the variable part of ReportGuestUserState: three lengths and the data after them.
pub fn parse_user_state(
    state: u32,
    cb_user: u32,
    cb_domain: u32,
    cb_details: u32,
    data: &[u8],
) -> Result<UserState, GuestStateError> {
    if cb_user == 0
        || cb_user > GUEST_USER_STATE_MAX_USER_SIZE
        || cb_domain > GUEST_USER_STATE_MAX_DOMAIN_SIZE
        || cb_details > GUEST_USER_STATE_MAX_DETAILS_SIZE
    {
        return Err(GuestStateError::TooMuchData);
    }
    let (user, rest) = split_field(data, cb_user)?;
    let (domain, rest) = split_field(rest, cb_domain)?;
    let (details, _) = split_field(rest, cb_details)?;
    Ok(UserState {
        state,
        user: nul_terminated_utf8(user)?,
        domain: if domain.is_empty() {
            String::new()
        } else {
            nul_terminated_utf8(domain)?
        },
        details: details.to_vec(),
    })
}

fn split_field(data: &[u8], len: u32) -> Result<(&[u8], &[u8]), GuestStateError> {
    let len = usize::try_from(len).map_err(|_| GuestStateError::TooMuchData)?;
    if len > data.len() {
        return Err(GuestStateError::Invalid(
            "user state field beyond the request",
        ));
    }
    Ok(data.split_at(len))
}

fn nul_terminated_utf8(bytes: &[u8]) -> Result<String, GuestStateError> {
    let end = bytes
        .iter()
        .position(|&b| b == 0)
        .ok_or(GuestStateError::Invalid("string not NUL-terminated"))?;
    std::str::from_utf8(&bytes[..end])
        .map(str::to_owned)
        .map_err(|_| GuestStateError::Invalid("string not UTF-8"))
}

/// Validates the ReportGuestInfo2 version and name (vmmdev.md §7.2) and returns the name.
pub fn validate_additions_name(
    major: u16,
    minor: u16,
    build: u32,
    name: &[u8],
) -> Result<String, GuestStateError> {
    if major < 3 {
        return Err(GuestStateError::Invalid("additions major version below 3"));
    }
    if major > 0xFF || minor > 0xFF || build > 0xFFFF {
        return Err(GuestStateError::OutOfRange("additions version"));
    }
    let name = nul_terminated_utf8(name)?;
    let prefix = format!("{major}.{minor}.{build}");
    let suffix = name.strip_prefix(&prefix).ok_or(GuestStateError::Invalid(
        "name does not start with the version",
    ))?;
    if suffix.is_empty() || valid_suffix(suffix) {
        return Ok(name);
    }
    let strict = (major, minor, build) >= (4, 1, 50);
    if strict {
        Err(GuestStateError::Invalid("unparsable version suffix"))
    } else {
        Ok(prefix)
    }
}

fn valid_suffix(suffix: &str) -> bool {
    let Some(tags) = suffix.strip_prefix('_') else {
        return false;
    };
    match tags.split_once('_') {
        None => is_build_tag(tags) || is_publisher_tag(tags),
        Some((build, publisher)) => is_build_tag(build) && is_publisher_tag(publisher),
    }
}

fn is_build_tag(tag: &str) -> bool {
    ["RC", "BETA", "ALPHA"].iter().any(|kind| {
        tag.strip_prefix(kind).is_some_and(|number| {
            number.is_empty()
                || (number.len() <= 3
                    && number.bytes().all(|b| b.is_ascii_digit())
                    && number.parse::<u16>().is_ok_and(|n| n <= 255))
        })
    })
}

fn is_publisher_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"()[]{}+-.,".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> Vec<u8> {
        let mut bytes = vec![0xAA; 128];
        bytes[..text.len()].copy_from_slice(text.as_bytes());
        bytes[text.len()] = 0;
        bytes
    }

    #[test]
    fn linux_additions_name_is_accepted() {
        assert_eq!(
            validate_additions_name(6, 0, 0, &name("6.0.0")).unwrap(),
            "6.0.0"
        );
    }

    #[test]
    fn tagged_names_are_accepted() {
        for text in [
            "7.1.6_RC1",
            "7.1.6_BETA",
            "7.1.6_RC2_Debian",
            "7.1.6_ubuntu(1)",
        ] {
            assert!(
                validate_additions_name(7, 1, 6, &name(text)).is_ok(),
                "{text}"
            );
        }
    }

    #[test]
    fn old_major_versions_are_invalid() {
        assert_eq!(
            validate_additions_name(2, 0, 0, &name("2.0.0")),
            Err(GuestStateError::Invalid("additions major version below 3"))
        );
    }

    #[test]
    fn unpackable_versions_are_out_of_range() {
        assert!(matches!(
            validate_additions_name(6, 0, 0x1_0000, &name("6.0.65536")),
            Err(GuestStateError::OutOfRange(_))
        ));
    }

    #[test]
    fn name_must_be_terminated_and_match_the_version() {
        assert!(validate_additions_name(6, 0, 0, &[b'6'; 128]).is_err());
        assert!(validate_additions_name(6, 0, 0, &name("6.0.1")).is_err());
    }

    #[test]
    fn bad_suffix_is_an_error_for_new_additions_and_dropped_for_old_ones() {
        assert!(validate_additions_name(6, 0, 0, &name("6.0.0 junk")).is_err());
        assert_eq!(
            validate_additions_name(4, 0, 0, &name("4.0.0 junk")).unwrap(),
            "4.0.0"
        );
    }

    #[test]
    fn facility_report_creates_and_updates_entries_and_notifies() {
        let mut tracker = GuestStateTracker::new();
        let rx = tracker.subscribe();
        tracker.report_facility(20, 50, 0).unwrap();
        let GuestStateChange::Facility(f) = rx.try_recv().unwrap() else {
            panic!("expected a facility change");
        };
        assert_eq!((f.facility, f.status), (20, 50));
        tracker.report_facility(20, 50, 0).unwrap();
        assert!(rx.try_recv().is_err(), "no notification without a change");
    }

    #[test]
    fn facility_type_and_status_are_validated() {
        let mut tracker = GuestStateTracker::new();
        assert!(matches!(
            tracker.report_facility(0, 50, 0),
            Err(GuestStateError::Invalid(_))
        ));
        assert!(matches!(
            tracker.report_facility(0x7FFF_FFFF, 50, 0),
            Err(GuestStateError::Invalid(_))
        ));
        assert!(matches!(
            tracker.report_facility(20, 0x1_0000, 0),
            Err(GuestStateError::OutOfRange(_))
        ));
    }

    #[test]
    fn full_facility_table_evicts_inactive_entries_then_refuses() {
        let mut tracker = GuestStateTracker::new();
        for facility in 2000..2000 + (MAX_FACILITIES - FIXED_FACILITIES.len()) as u32 {
            tracker.report_facility(facility, 50, 0).unwrap();
        }
        assert_eq!(
            tracker.report_facility(5000, 50, 0),
            Err(GuestStateError::FacilityTableFull)
        );
        tracker.report_facility(2000, 0, 0).unwrap();
        tracker.report_facility(5000, 50, 0).unwrap();
        let facilities = tracker.snapshot().facilities;
        assert_eq!(facilities.len(), MAX_FACILITIES);
        assert!(facilities.windows(2).all(|w| w[0].facility < w[1].facility));
        assert!(facilities.iter().all(|f| f.facility != 2000));
    }

    #[test]
    fn facility_all_updates_every_entry() {
        let mut tracker = GuestStateTracker::new();
        tracker.report_facility(FACILITY_ALL, 100, 0).unwrap();
        assert!(
            tracker
                .snapshot()
                .facilities
                .iter()
                .all(|f| f.status == 100)
        );
    }

    #[test]
    fn mouse_status_keeps_host_bits() {
        let mut tracker = GuestStateTracker::new();
        let rx = tracker.subscribe();
        tracker.set_guest_mouse_features(0xFFFF_FFFF);
        assert_eq!(
            tracker.mouse_features(),
            MOUSE_HOST_DEFAULT | MOUSE_GUEST_MASK
        );
        assert!(matches!(
            rx.try_recv(),
            Ok(GuestStateChange::MouseCapabilities(_))
        ));
        tracker.set_guest_mouse_features(0);
        assert_eq!(tracker.mouse_features(), MOUSE_HOST_DEFAULT);
    }

    #[test]
    fn capabilities_or_not_update_always_notifies() {
        let mut tracker = GuestStateTracker::new();
        let rx = tracker.subscribe();
        assert_eq!(tracker.set_capabilities(0, u32::MAX), 0);
        assert_eq!(rx.try_recv(), Ok(GuestStateChange::Capabilities(0)));
        assert_eq!(tracker.set_capabilities(0x5, 0), 0x5);
        tracker.report_capabilities(0x1);
        assert_eq!(tracker.snapshot().capabilities, 0x5);
    }

    #[test]
    fn full_subscriber_queue_loses_notifications_without_blocking() {
        let mut tracker = GuestStateTracker::new();
        let _rx = tracker.subscribe();
        for _ in 0..SUBSCRIBER_QUEUE_DEPTH + 3 {
            tracker.set_capabilities(0, 0);
        }
        assert_eq!(tracker.lost_notifications(), 3);
    }

    #[test]
    fn dropped_subscribers_are_forgotten_at_once() {
        let tracker = GuestStateTracker::new();
        drop(tracker.subscribe());
        assert_eq!(tracker.subscribers.subscriber_count(), 0);
    }

    #[test]
    fn user_state_is_parsed_within_limits() {
        let data = b"alice\0corp\0xyz";
        let state = parse_user_state(1, 6, 5, 3, data).unwrap();
        assert_eq!(
            (state.user.as_str(), state.domain.as_str()),
            ("alice", "corp")
        );
        assert_eq!(state.details, b"xyz");
        assert_eq!(
            parse_user_state(1, 0, 0, 0, data),
            Err(GuestStateError::TooMuchData)
        );
        assert!(parse_user_state(1, 6, 5, 100, data).is_err());
        assert!(parse_user_state(1, 3, 0, 0, data).is_err(), "missing NUL");
    }

    #[test]
    fn reset_forgets_reports_but_keeps_host_mouse_bits() {
        let mut tracker = GuestStateTracker::new();
        tracker.set_host_mouse_features(0x40);
        tracker.set_guest_mouse_features(0x11);
        tracker.report_info(GuestInfo {
            interface_version: 0x10004,
            os_type: 0x53100,
        });
        tracker.reset();
        let state = tracker.snapshot();
        assert_eq!(state.info, None);
        assert_eq!(state.mouse_features, 0x40);
    }
}
