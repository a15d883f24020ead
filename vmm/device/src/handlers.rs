//! Handlers of the non-HGCM requests (vmmdev.md §6–§7, linux-guest §2).
//!
//! Each handler works on the request copy, checks the exact size VirtualBox checks (a wrong
//! size is `VERR_INVALID_PARAMETER`), writes its outputs into the copy and returns the status
//! for `rc`; the dispatcher writes the copy back. Request types not listed here answer
//! `VERR_NOT_IMPLEMENTED`, which the Linux driver's fallbacks key on (H-2.5).

use std::mem::size_of;

use vm_memory::{GuestAddress, GuestMemoryBackend};
use vmmdev_protocol::Status;
use vmmdev_protocol::vmmdev::{
    ChangeMemBalloonRequest, Events, EventsRequest, GUEST_USER_STATE_MAX_REQUEST_SIZE,
    GuestCapabilitiesRequest, GuestInfo2Request, GuestInfoRequest, GuestStatusRequest,
    GuestUserStateRequest, HostTimeRequest, HostVersionRequest, HypervisorInfoRequest, MaskRequest,
    MemBalloonInfoRequest, MouseFeatures, MouseStatusExRequest, MouseStatusRequest, RequestType,
    SessionIdRequest, VMMDEV_MAX_MEMORY_BALLOON_PERCENT, VMMDEV_MEMORY_BALLOON_CHUNK_PAGES,
    VMMDEV_PAGE_OFFSET_MASK, VMMDEV_VERSION_MAJOR, VMMDEV_VERSION_MINOR, WriteCoreDumpRequest,
};

use crate::device::{HOST_FEATURES, Shared, host_time_ms};
use crate::guest_state::{GuestInfo, GuestStateError, parse_user_state};
use crate::request::RequestCopy;

/// Mouse feature bits reported by GetMouseStatus: every defined bit.
const MOUSE_STATUS_MASK: u32 = MouseFeatures::all().bits();

impl Shared {
    /// Handles a non-HGCM request; returns the status for `rc`.
    pub(crate) fn handle_request(&self, copy: &mut RequestCopy) -> Status {
        match copy.request_type() {
            RequestType::GET_HOST_VERSION => self.get_host_version(copy),
            RequestType::REPORT_GUEST_INFO => self.report_guest_info(copy),
            RequestType::REPORT_GUEST_INFO2 => self.report_guest_info2(copy),
            RequestType::REPORT_GUEST_STATUS => self.report_guest_status(copy),
            RequestType::ACKNOWLEDGE_EVENTS => self.acknowledge_events(copy),
            RequestType::CTL_GUEST_FILTER_MASK => self.ctl_guest_filter_mask(copy),
            RequestType::SET_GUEST_CAPABILITIES => self.set_guest_capabilities(copy),
            RequestType::REPORT_GUEST_CAPABILITIES => self.report_guest_capabilities(copy),
            RequestType::GET_MOUSE_STATUS => self.get_mouse_status(copy),
            RequestType::SET_MOUSE_STATUS => self.set_mouse_status(copy),
            RequestType::GET_MOUSE_STATUS_EX => self.get_mouse_status_ex(copy),
            RequestType::GET_HYPERVISOR_INFO => self.get_hypervisor_info(copy),
            RequestType::SET_HYPERVISOR_INFO => self.set_hypervisor_info(copy),
            // Linux's heartbeat timer fires every tick once enabled (H-2.7): refuse.
            RequestType::HEARTBEAT_CONFIGURE => Status::VERR_NOT_IMPLEMENTED,
            // The heartbeat is never active, so a beat is a successful no-op.
            RequestType::GUEST_HEARTBEAT => Status::VINF_SUCCESS,
            RequestType::GET_SESSION_ID => self.get_session_id(copy),
            RequestType::GET_HOST_TIME => get_host_time(copy),
            RequestType::GET_MEM_BALLOON_CHANGE_REQ => self.get_balloon_request(copy),
            RequestType::CHANGE_MEM_BALLOON => self.change_balloon(copy),
            RequestType::WRITE_CORE_DUMP => write_core_dump(copy),
            RequestType::REPORT_GUEST_USER_STATE => self.report_user_state(copy),
            _ => Status::VERR_NOT_IMPLEMENTED,
        }
    }

    fn get_host_version(&self, copy: &mut RequestCopy) -> Status {
        let version = self.config.host_version;
        let Some(req) = copy.exact::<HostVersionRequest>() else {
            return Status::VERR_INVALID_PARAMETER;
        };
        req.major.set(version.major);
        req.minor.set(version.minor);
        req.build.set(version.build);
        req.revision.set(version.revision);
        req.features.set(HOST_FEATURES.bits());
        Status::VINF_SUCCESS
    }

    fn report_guest_info(&self, copy: &mut RequestCopy) -> Status {
        let Some(req) = copy.exact::<GuestInfoRequest>() else {
            return Status::VERR_INVALID_PARAMETER;
        };
        let info = GuestInfo {
            interface_version: req.interface_version.get(),
            os_type: req.os_type.get(),
        };
        let major = (info.interface_version >> 16) as u16;
        let minor = info.interface_version as u16;
        // Only the 1.04 interface is implemented: the legacy 1.03 event scheme is not.
        let ok = major == VMMDEV_VERSION_MAJOR && minor == VMMDEV_VERSION_MINOR;
        self.guest.lock().report_info(info);
        let mut irq = self.irq.lock();
        irq.events.set_additions_ok(ok);
        self.update_line(&mut irq);
        if ok {
            Status::VINF_SUCCESS
        } else {
            drop(irq);
            self.diagnose(format_args!(
                "guest reported unsupported interface version {:#x}",
                info.interface_version
            ));
            Status::VERR_VERSION_MISMATCH
        }
    }

    fn report_guest_info2(&self, copy: &mut RequestCopy) -> Status {
        let Some(req) = copy.exact::<GuestInfo2Request>() else {
            return Status::VERR_INVALID_PARAMETER;
        };
        let result = self.guest.lock().report_additions(
            req.additions_major.get(),
            req.additions_minor.get(),
            req.additions_build.get(),
            req.additions_revision.get(),
            req.additions_features.get(),
            &req.name,
        );
        match result {
            Ok(()) => Status::VINF_SUCCESS,
            Err(error) => guest_state_status(&error),
        }
    }

    fn report_guest_status(&self, copy: &mut RequestCopy) -> Status {
        let Some(req) = copy.exact::<GuestStatusRequest>() else {
            return Status::VERR_INVALID_PARAMETER;
        };
        let result = self.guest.lock().report_facility(
            req.facility.get(),
            req.status.get(),
            req.flags.get(),
        );
        match result {
            Ok(()) => Status::VINF_SUCCESS,
            Err(error) => guest_state_status(&error),
        }
    }

    fn acknowledge_events(&self, copy: &mut RequestCopy) -> Status {
        let Some(req) = copy.exact::<EventsRequest>() else {
            return Status::VERR_INVALID_PARAMETER;
        };
        let mut irq = self.irq.lock();
        let events = irq.events.acknowledge();
        self.update_line(&mut irq);
        req.events.set(events);
        Status::VINF_SUCCESS
    }

    fn ctl_guest_filter_mask(&self, copy: &mut RequestCopy) -> Status {
        let Some(req) = copy.exact::<MaskRequest>() else {
            return Status::VERR_INVALID_PARAMETER;
        };
        let mut irq = self.irq.lock();
        irq.events
            .change_filter(req.or_mask.get(), req.not_mask.get());
        self.update_line(&mut irq);
        Status::VINF_SUCCESS
    }

    fn set_guest_capabilities(&self, copy: &mut RequestCopy) -> Status {
        let Some(req) = copy.exact::<MaskRequest>() else {
            return Status::VERR_INVALID_PARAMETER;
        };
        self.guest
            .lock()
            .set_capabilities(req.or_mask.get(), req.not_mask.get());
        Status::VINF_SUCCESS
    }

    fn report_guest_capabilities(&self, copy: &mut RequestCopy) -> Status {
        let Some(req) = copy.exact::<GuestCapabilitiesRequest>() else {
            return Status::VERR_INVALID_PARAMETER;
        };
        self.guest.lock().report_capabilities(req.caps.get());
        Status::VINF_SUCCESS
    }

    fn get_mouse_status(&self, copy: &mut RequestCopy) -> Status {
        let features = self.guest.lock().mouse_features() & MOUSE_STATUS_MASK;
        let pointer = self.host.lock().pointer;
        let Some(req) = copy.exact::<MouseStatusRequest>() else {
            return Status::VERR_INVALID_PARAMETER;
        };
        req.mouse_features.set(features);
        req.pointer_x.set(pointer.x);
        req.pointer_y.set(pointer.y);
        Status::VINF_SUCCESS
    }

    fn get_mouse_status_ex(&self, copy: &mut RequestCopy) -> Status {
        if copy.size() != size_of::<MouseStatusExRequest>() {
            return Status::VERR_INVALID_PARAMETER;
        }
        let features = self.guest.lock().mouse_features() & MOUSE_STATUS_MASK;
        let pointer = {
            let mut host = self.host.lock();
            let pointer = host.pointer;
            // Wheel deltas are reported once.
            host.pointer.dz = 0;
            host.pointer.dw = 0;
            pointer
        };
        let Some(req) = copy.exact::<MouseStatusExRequest>() else {
            return Status::VERR_INVALID_PARAMETER;
        };
        req.core.mouse_features.set(features);
        req.core.pointer_x.set(pointer.x);
        req.core.pointer_y.set(pointer.y);
        req.dz.set(pointer.dz);
        req.dw.set(pointer.dw);
        req.buttons.set(pointer.buttons);
        Status::VINF_SUCCESS
    }

    fn set_mouse_status(&self, copy: &mut RequestCopy) -> Status {
        let Some(req) = copy.exact::<MouseStatusRequest>() else {
            return Status::VERR_INVALID_PARAMETER;
        };
        self.guest
            .lock()
            .set_guest_mouse_features(req.mouse_features.get());
        Status::VINF_SUCCESS
    }

    fn get_hypervisor_info(&self, copy: &mut RequestCopy) -> Status {
        let Some(req) = copy.exact::<HypervisorInfoRequest>() else {
            return Status::VERR_INVALID_PARAMETER;
        };
        // Nothing to map: raw mode is gone (linux-guest §2.2 step 7).
        req.hypervisor_start.set(0);
        req.hypervisor_size.set(0);
        Status::VINF_SUCCESS
    }

    fn set_hypervisor_info(&self, copy: &mut RequestCopy) -> Status {
        let Some(req) = copy.exact::<HypervisorInfoRequest>() else {
            return Status::VERR_INVALID_PARAMETER;
        };
        if req.hypervisor_start.get() == 0 || req.hypervisor_size.get() == 0 {
            Status::VINF_SUCCESS
        } else {
            Status::VERR_TRY_AGAIN
        }
    }

    fn get_session_id(&self, copy: &mut RequestCopy) -> Status {
        let session_id = self.host.lock().session_id;
        let Some(req) = copy.exact::<SessionIdRequest>() else {
            return Status::VERR_INVALID_PARAMETER;
        };
        req.session_id.set(session_id);
        Status::VINF_SUCCESS
    }

    fn get_balloon_request(&self, copy: &mut RequestCopy) -> Status {
        let ram_mib = self.guest_ram_mib();
        let Some(req) = copy.exact::<MemBalloonInfoRequest>() else {
            return Status::VERR_INVALID_PARAMETER;
        };
        let mut host = self.host.lock();
        req.balloon_chunks.set(host.balloon_target_mib);
        req.phys_mem_chunks.set(ram_mib);
        if req.event_ack.get() == Events::BALLOON_CHANGE_REQUEST.bits() {
            host.balloon_last_read_mib = Some(host.balloon_target_mib);
        }
        Status::VINF_SUCCESS
    }

    fn change_balloon(&self, copy: &mut RequestCopy) -> Status {
        let ram_mib = self.guest_ram_mib();
        let mem = self.memory();
        let Some(req) = copy.exact::<ChangeMemBalloonRequest>() else {
            return Status::VERR_INVALID_PARAMETER;
        };
        if req.page_count.get() as usize != VMMDEV_MEMORY_BALLOON_CHUNK_PAGES {
            return Status::VERR_INVALID_PARAMETER;
        }
        let pages: Vec<u64> = req.pages.iter().map(|p| p.get()).collect();
        let page_size = u64::from(VMMDEV_PAGE_OFFSET_MASK) + 1;
        let valid = pages.iter().all(|&page| {
            page & u64::from(VMMDEV_PAGE_OFFSET_MASK) == 0
                && mem.check_range(GuestAddress(page), page_size as usize)
        });
        if !valid {
            self.diagnose(format_args!("balloon chunk with pages outside guest RAM"));
            return Status::VERR_INVALID_PARAMETER;
        }
        let inflate = req.inflate.get() != 0;
        {
            let mut host = self.host.lock();
            if inflate {
                let limit = u64::from(ram_mib) * u64::from(VMMDEV_MAX_MEMORY_BALLOON_PERCENT) / 100;
                if u64::from(host.balloon_inflated_chunks) + 1 > limit {
                    return Status::VERR_NO_MEMORY;
                }
                host.balloon_inflated_chunks += 1;
            } else if host.balloon_inflated_chunks == 0 {
                return Status::VERR_INVALID_PARAMETER;
            } else {
                host.balloon_inflated_chunks -= 1;
            }
        }
        self.guest.lock().balloon_changed(inflate, pages);
        Status::VINF_SUCCESS
    }

    fn report_user_state(&self, copy: &mut RequestCopy) -> Status {
        let size = copy.size();
        if size > GUEST_USER_STATE_MAX_REQUEST_SIZE as usize {
            return Status::VERR_TOO_MUCH_DATA;
        }
        let fixed = size_of::<GuestUserStateRequest>();
        let Some(req) = copy.prefix::<GuestUserStateRequest>() else {
            return Status::VERR_INVALID_PARAMETER;
        };
        let (state, user, domain, details) = (
            req.state.get(),
            req.user_size.get(),
            req.domain_size.get(),
            req.details_size.get(),
        );
        let data = copy.bytes().get(fixed..).unwrap_or_default();
        match parse_user_state(state, user, domain, details, data) {
            Ok(report) => {
                self.guest.lock().report_user_state(report);
                Status::VINF_SUCCESS
            }
            Err(error) => guest_state_status(&error),
        }
    }
}

fn get_host_time(copy: &mut RequestCopy) -> Status {
    let Some(req) = copy.exact::<HostTimeRequest>() else {
        return Status::VERR_INVALID_PARAMETER;
    };
    req.time_ms.set(host_time_ms());
    Status::VINF_SUCCESS
}

fn write_core_dump(copy: &mut RequestCopy) -> Status {
    if copy.exact::<WriteCoreDumpRequest>().is_none() {
        return Status::VERR_INVALID_PARAMETER;
    }
    // Guest-triggered core dumps are not offered (VirtualBox's default: disabled).
    Status::VERR_ACCESS_DENIED
}

fn guest_state_status(error: &GuestStateError) -> Status {
    match error {
        GuestStateError::Invalid(_) => Status::VERR_INVALID_PARAMETER,
        GuestStateError::OutOfRange(_) => Status::VERR_OUT_OF_RANGE,
        GuestStateError::FacilityTableFull => Status::VERR_OUT_OF_RESOURCES,
        GuestStateError::TooMuchData => Status::VERR_TOO_MUCH_DATA,
    }
}
