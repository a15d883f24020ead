//! Checks of the driver-local ioctls and the VMMDev pass-through (linux-guest.md §7 items 5–9).

use std::fs;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use vmmdev_guest_ioctl::{Device, Error, Events, GuestCapabilities, RequestType};
use vmmdev_protocol::vmmdev::HostVersionRequest;
use zerocopy::FromBytes;

use crate::{Failure, Outcome};

/// Where the driver publishes the host version it read at probe time.
const SYSFS_DRIVER_DIR: &str = "/sys/bus/pci/drivers/vboxguest";

/// How long `wait-interrupt` lets its waiter block before interrupting it.
const INTERRUPT_DELAY: Duration = Duration::from_millis(200);

/// Upper bound for the interrupted wait, so a broken interrupt fails instead of hanging.
const INTERRUPT_WAIT_LIMIT: Duration = Duration::from_secs(10);

/// Size of the request buffer `vmmreq-denied` offers to the driver; any size passes its checks.
const DENIED_REQUEST_SIZE: usize = 64;

pub fn log(device: &Device, text: &str) -> Outcome {
    device.log(text)?;
    Ok(format!("sent {} bytes", text.len()))
}

pub fn version(device: &Device) -> Outcome {
    let version = device.query_driver_version()?;
    Ok(format!(
        "session_version={:#010x} driver_version={:#010x} driver_revision={}",
        version.session_version, version.driver_version, version.driver_revision
    ))
}

pub fn balloon(device: &Device) -> Outcome {
    let balloon = device.check_balloon()?;
    Ok(format!(
        "chunks={} handled_by_user_space={}",
        balloon.chunks,
        if balloon.handled_by_user_space {
            "yes"
        } else {
            "no"
        }
    ))
}

pub fn vmmreq_hostver(node: &Path) -> Outcome {
    let device = Device::open_path(node)?;
    let mut request = [0u8; size_of::<HostVersionRequest>()];
    let status = device.vmmdev_request(RequestType::GET_HOST_VERSION, &mut request)?;
    let (reply, _) = HostVersionRequest::read_from_prefix(&request)
        .map_err(|_| Failure("reply shorter than GET_HOST_VERSION".to_owned()))?;
    let version = format!(
        "{}.{}.{}r{}",
        reply.major.get(),
        reply.minor.get(),
        reply.build.get(),
        reply.revision.get()
    );
    let sysfs = match sysfs_host_version() {
        None => "absent".to_owned(),
        Some(published) if published == version => "match".to_owned(),
        Some(published) => {
            return Err(Failure(format!(
                "host reports {version}, sysfs host_version is {published}"
            )));
        }
    };
    Ok(format!(
        "{} rc={status} host_version={version} host_features={:#x} sysfs={sysfs}",
        node.display(),
        reply.features.get()
    ))
}

/// The first `host_version` attribute of a device bound to vboxguest.
fn sysfs_host_version() -> Option<String> {
    fs::read_dir(SYSFS_DRIVER_DIR)
        .ok()?
        .flatten()
        .find_map(|entry| fs::read_to_string(entry.path().join("host_version")).ok())
        .map(|text| text.trim().to_owned())
}

pub fn vmmreq_denied(node: &Path, request_type: u32) -> Outcome {
    let device = Device::open_path(node)?;
    let request_type = RequestType::from(request_type);
    let mut request = [0u8; DENIED_REQUEST_SIZE];
    match device.vmmdev_request(request_type, &mut request) {
        Err(Error::PermissionDenied { .. }) => {
            Ok(format!("{} refused {request_type} (EPERM)", node.display()))
        }
        Ok(status) => Err(Failure(format!(
            "{} passed {request_type} to the host (rc {status})",
            node.display()
        ))),
        Err(Error::Host { status, .. }) => Err(Failure(format!(
            "{} passed {request_type} to the host (rc {status})",
            node.display()
        ))),
        Err(err) => Err(err.into()),
    }
}

pub fn coredump(device: &Device) -> Outcome {
    let status = match device.write_core_dump() {
        Ok(status) => status,
        Err(Error::Host { status, .. }) => status,
        Err(err) => return Err(err.into()),
    };
    Ok(format!("ioctl succeeded, host rc={status}"))
}

pub fn wait_event(device: &Device, mask: u32, ms: u32, expect_event: bool) -> Outcome {
    let events = Events::from_bits_retain(mask);
    device.change_filter_mask(events, Events::empty())?;
    let started = Instant::now();
    let result = device.wait_for_events(events, Some(Duration::from_millis(ms.into())));
    let elapsed = started.elapsed().as_millis();
    match (result, expect_event) {
        (Err(Error::TimedOut { .. }), false) => Ok(format!(
            "mask={mask:#x} timed out (ETIMEDOUT) after {elapsed} ms"
        )),
        (Ok(arrived), true) => Ok(format!(
            "mask={mask:#x} events={:#x} after {elapsed} ms",
            arrived.bits()
        )),
        (Ok(arrived), false) => Err(Failure(format!(
            "expected a timeout, got events {:#x} after {elapsed} ms",
            arrived.bits()
        ))),
        (Err(err), _) => Err(err.into()),
    }
}

pub fn wait_interrupt(device: &Device, mask: u32) -> Outcome {
    let events = Events::from_bits_retain(mask);
    let started = Instant::now();
    let (waited, interrupted) = thread::scope(|scope| {
        let waiter = scope.spawn(|| device.wait_for_events(events, Some(INTERRUPT_WAIT_LIMIT)));
        thread::sleep(INTERRUPT_DELAY);
        let interrupted = device.interrupt_all_waiters();
        (waiter.join(), interrupted)
    });
    interrupted?;
    let elapsed = started.elapsed().as_millis();
    match waited {
        Ok(Err(Error::Interrupted { .. })) => {
            Ok(format!("waiter interrupted (EINTR) after {elapsed} ms"))
        }
        Ok(Ok(arrived)) => Err(Failure(format!(
            "waiter received events {:#x} instead of EINTR",
            arrived.bits()
        ))),
        Ok(Err(err)) => Err(err.into()),
        Err(_) => Err(Failure("waiter thread panicked".to_owned())),
    }
}

pub fn caps(device: &Device, mask: u32) -> Outcome {
    let wanted = GuestCapabilities::from_bits_retain(mask);
    let state = device.change_guest_capabilities(wanted, GuestCapabilities::empty())?;
    let facts = format!(
        "session={:#x} global={:#x}",
        state.session.bits(),
        state.global.bits()
    );
    if state.session.contains(wanted) && state.global.contains(wanted) {
        Ok(facts)
    } else {
        Err(Failure(format!("{facts}: {mask:#x} not set")))
    }
}
