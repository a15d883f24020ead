//! Identities that travel with every HGCM request: client ids, the guest's requestor bits, client
//! categories and VM lifecycle events.

use std::fmt;

/// A connected HGCM client.
///
/// Ids are global across services, non-zero, handed out in increasing order and never reused while
/// the client is connected (hgcm.md §8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub u32);

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "client {}", self.0)
    }
}

/// Quota class of a client (hgcm.md §9.7); also the index into per-category limit arrays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientCategory {
    /// Guest kernel code (and, by default, guests that report no requestor information).
    Kernel = 0,
    /// Root / administrator processes.
    Root = 1,
    /// Everything else.
    User = 2,
}

impl ClientCategory {
    /// All categories in index order.
    pub const ALL: [ClientCategory; 3] = [Self::Kernel, Self::Root, Self::User];

    /// Index into per-category arrays (`[u32; 3]`).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The category with the given index, if it names one.
    pub fn from_index(index: u32) -> Option<Self> {
        match index {
            0 => Some(Self::Kernel),
            1 => Some(Self::Root),
            2 => Some(Self::User),
            _ => None,
        }
    }
}

/// The user class of a requestor (bits 0–2 of `fRequestor`, vmmdev.md §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UserClass {
    /// 0: the guest did not say.
    NotGiven,
    /// 1: the guest's core driver.
    Driver,
    /// 2: another guest kernel driver.
    OtherDriver,
    /// 3: a root process.
    Root,
    /// 4: a system service account.
    System,
    /// 5: reserved, treated as a user.
    Reserved,
    /// 6: a regular user process.
    User,
    /// 7: a guest account.
    Guest,
}

/// The VMMDev `fRequestor` word as the guest reported it for a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Requestor(pub u32);

impl Requestor {
    /// The host-internal value for guests that do not report requestor information.
    pub const LEGACY: Requestor = Requestor(0xFFFF_FFFF);
    /// The host-internal "least trusted" value (untrusted user on the user device, not on console).
    pub const LOWEST: Requestor = Requestor(0x0000_901F);

    const USER_CLASS_MASK: u32 = 0x7;
    const USER_MODE: u32 = 0x8;
    const TRUST_MASK: u32 = 0x7000;
    const TRUST_SHIFT: u32 = 12;
    const USER_DEVICE: u32 = 0x8000;

    /// Whether this is the LEGACY value (no requestor information from the guest).
    pub fn is_legacy(self) -> bool {
        self == Self::LEGACY
    }

    /// The user class bits; `None` for LEGACY.
    pub fn user_class(self) -> Option<UserClass> {
        if self.is_legacy() {
            return None;
        }
        Some(match self.0 & Self::USER_CLASS_MASK {
            0 => UserClass::NotGiven,
            1 => UserClass::Driver,
            2 => UserClass::OtherDriver,
            3 => UserClass::Root,
            4 => UserClass::System,
            5 => UserClass::Reserved,
            6 => UserClass::User,
            _ => UserClass::Guest,
        })
    }

    /// Whether the request came from guest user mode (false for kernel callers and for LEGACY).
    pub fn is_user_mode(self) -> bool {
        !self.is_legacy() && self.0 & Self::USER_MODE != 0
    }

    /// Whether the caller used the less trusted user device node (`/dev/vboxuser`).
    pub fn is_user_device(self) -> bool {
        !self.is_legacy() && self.0 & Self::USER_DEVICE != 0
    }

    /// The trust level field (0 = not given, 1 = untrusted … 7 = protected); 0 for LEGACY.
    pub fn trust_level(self) -> u32 {
        if self.is_legacy() {
            return 0;
        }
        (self.0 & Self::TRUST_MASK) >> Self::TRUST_SHIFT
    }

    /// The client category VirtualBox assigns to a client connecting with this requestor
    /// (hgcm.md §9.7); LEGACY maps to `legacy`, which services may choose.
    pub fn category(self, legacy: ClientCategory) -> ClientCategory {
        match self.user_class() {
            None => legacy,
            Some(UserClass::Driver | UserClass::OtherDriver) => ClientCategory::Kernel,
            Some(UserClass::Root | UserClass::System) => ClientCategory::Root,
            Some(_) => ClientCategory::User,
        }
    }
}

/// A VM lifecycle event broadcast to every service (`HGCMNOTIFYEVENT` numbering).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VmEvent {
    /// The VM was powered on.
    PowerOn = 1,
    /// The VM resumed after a suspend.
    Resume = 2,
    /// The VM is suspended.
    Suspend = 3,
    /// The guest was reset; every client has already been disconnected.
    Reset = 4,
    /// The VM is powering off.
    PowerOff = 5,
}

impl VmEvent {
    /// The ABI code of the event.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The event with the given ABI code.
    pub fn from_code(code: u32) -> Option<Self> {
        match code {
            1 => Some(Self::PowerOn),
            2 => Some(Self::Resume),
            3 => Some(Self::Suspend),
            4 => Some(Self::Reset),
            5 => Some(Self::PowerOff),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_core_driver_requestor_is_kernel_category() {
        assert_eq!(
            Requestor(0x1).category(ClientCategory::Kernel),
            ClientCategory::Kernel
        );
        assert_eq!(
            Requestor(0x2).category(ClientCategory::User),
            ClientCategory::Kernel
        );
    }

    #[test]
    fn root_user_session_is_root_category_and_user_mode() {
        let root_session = Requestor(0x8 | 0x3 | 0x80);
        assert_eq!(
            root_session.category(ClientCategory::Kernel),
            ClientCategory::Root
        );
        assert!(root_session.is_user_mode());
        assert!(!root_session.is_user_device());
    }

    #[test]
    fn not_given_user_class_is_user_category() {
        assert_eq!(
            Requestor(0).category(ClientCategory::Kernel),
            ClientCategory::User
        );
    }

    #[test]
    fn legacy_requestor_uses_the_service_legacy_category() {
        assert_eq!(
            Requestor::LEGACY.category(ClientCategory::Root),
            ClientCategory::Root
        );
        assert_eq!(Requestor::LEGACY.user_class(), None);
        assert!(!Requestor::LEGACY.is_user_mode());
    }

    #[test]
    fn lowest_requestor_is_untrusted_user_device() {
        assert_eq!(Requestor::LOWEST.trust_level(), 1);
        assert!(Requestor::LOWEST.is_user_device());
        assert_eq!(Requestor::LOWEST.user_class(), Some(UserClass::Guest));
    }

    #[test]
    fn vm_event_codes_round_trip() {
        for event in [
            VmEvent::PowerOn,
            VmEvent::Resume,
            VmEvent::Suspend,
            VmEvent::Reset,
            VmEvent::PowerOff,
        ] {
            assert_eq!(VmEvent::from_code(event.code()), Some(event));
        }
        assert_eq!(VmEvent::from_code(0), None);
    }
}
