//! Identities that travel with every HGCM request and the framework's view of them.
//!
//! Client ids and requestor bits are wire concepts, defined once by `vmmdev-protocol` and
//! re-exported here. What is specific to the framework lives here: the quota category a
//! requestor falls into (hgcm.md §9.7) and the VM lifecycle events services are told about.

pub use vmmdev_protocol::hgcm::ClientId;
pub use vmmdev_protocol::vmmdev::{Requestor, RequestorUserClass};

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

    /// The category VirtualBox assigns to a client connecting with `requestor`: by the user
    /// class, drivers are kernel, root and system accounts are root, everything else is user.
    /// A [`Requestor::LEGACY`] client (the guest gave no requestor information) gets `legacy`,
    /// which each service chooses.
    pub fn of(requestor: Requestor, legacy: ClientCategory) -> ClientCategory {
        if requestor.is_legacy() {
            return legacy;
        }
        match requestor.user_class() {
            RequestorUserClass::DRV | RequestorUserClass::DRV_OTHER => Self::Kernel,
            RequestorUserClass::ROOT | RequestorUserClass::SYSTEM => Self::Root,
            _ => Self::User,
        }
    }

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
    /// Every event, in code order.
    pub const ALL: [VmEvent; 5] = [
        Self::PowerOn,
        Self::Resume,
        Self::Suspend,
        Self::Reset,
        Self::PowerOff,
    ];

    /// The ABI code of the event.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The event with the given ABI code.
    pub fn from_code(code: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|event| event.code() == code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_drivers_are_kernel_category() {
        assert_eq!(
            ClientCategory::of(Requestor::KERNEL_DRIVER, ClientCategory::User),
            ClientCategory::Kernel
        );
        assert_eq!(
            ClientCategory::of(Requestor::KERNEL_OTHER_DRIVER, ClientCategory::User),
            ClientCategory::Kernel
        );
    }

    #[test]
    fn root_user_session_is_root_category() {
        let root_session = Requestor(Requestor::USERMODE | Requestor::GRP_VBOX | 0x3);
        assert_eq!(
            ClientCategory::of(root_session, ClientCategory::Kernel),
            ClientCategory::Root
        );
    }

    #[test]
    fn not_given_user_class_is_user_category() {
        assert_eq!(
            ClientCategory::of(Requestor(0), ClientCategory::Kernel),
            ClientCategory::User
        );
    }

    #[test]
    fn legacy_requestor_uses_the_service_legacy_category() {
        assert_eq!(
            ClientCategory::of(Requestor::LEGACY, ClientCategory::Root),
            ClientCategory::Root
        );
    }

    #[test]
    fn lowest_requestor_is_user_category() {
        assert_eq!(
            ClientCategory::of(Requestor::LOWEST, ClientCategory::Kernel),
            ClientCategory::User
        );
    }

    #[test]
    fn vm_event_codes_round_trip() {
        for event in VmEvent::ALL {
            assert_eq!(VmEvent::from_code(event.code()), Some(event));
        }
        assert_eq!(VmEvent::from_code(0), None);
    }
}
