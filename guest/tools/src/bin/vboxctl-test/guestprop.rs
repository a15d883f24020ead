//! Timing of guest-property reads from a guest user program: the figure next to the echo service's
//! null call (`null-calls`), so the two round trips are measured the same way.

use std::time::Instant;

use vmmdev_guest_ioctl::guest_props::GuestPropClient;
use vmmdev_guest_ioctl::{Device, GuestTransport};

use crate::{Failure, Outcome};

/// Reads `name` `count` times over one connection and prints the time per round trip. Every read
/// must find the property with the value of the first one.
pub fn prop_gets<T: GuestTransport>(device: &Device<T>, name: &str, count: u32) -> Outcome {
    let client = GuestPropClient::connect(device).map_err(|err| Failure(err.to_string()))?;
    let read = || -> Result<String, Failure> {
        match client.get(name) {
            Ok(Some(property)) => Ok(property.value),
            Ok(None) => Err(Failure(format!("{name} is not set"))),
            Err(err) => Err(Failure(err.to_string())),
        }
    };
    let expected = read()?;
    let started = Instant::now();
    for _ in 0..count {
        let value = read()?;
        if value != expected {
            return Err(Failure(format!(
                "{name} changed from {expected:?} to {value:?} during the reads"
            )));
        }
    }
    let elapsed = started.elapsed();
    let per_call = elapsed.as_secs_f64() * 1e6 / f64::from(count.max(1));
    Ok(format!(
        "{count} calls in {} us, {per_call:.1} us per call",
        elapsed.as_micros()
    ))
}

/// The driver's ioctl layer over the in-process guest, shared with the crate's integration tests.
#[cfg(test)]
#[path = "../../../../ioctl/tests/support/inproc_driver.rs"]
mod inproc_driver;

#[cfg(test)]
mod tests {
    use super::inproc_driver::InprocDriver;
    use vmmdev_hgcm::{Hgcm, HgcmConfig};

    use super::*;

    fn device() -> Device<InprocDriver> {
        let hgcm = Hgcm::new(HgcmConfig::default());
        hgcm.register_builtin(vmmdev_svc_guest_props::guest_props_entry, "")
            .expect("register the guest properties service");
        Device::with_transport(InprocDriver::new(hgcm)).expect("version handshake")
    }

    #[test]
    fn prop_gets_reports_the_time_per_read_of_an_existing_property() {
        let device = device();
        GuestPropClient::connect(&device)
            .and_then(|client| client.set_value("/Test/P", "v"))
            .expect("set /Test/P");
        let facts = prop_gets(&device, "/Test/P", 5).expect("five reads");
        assert!(facts.starts_with("5 calls in "), "{facts}");
        assert!(facts.ends_with(" us per call"), "{facts}");
    }

    #[test]
    fn prop_gets_of_a_missing_property_fails() {
        let Err(Failure(reason)) = prop_gets(&device(), "/Test/Missing", 5) else {
            panic!("reading a missing property succeeded");
        };
        assert!(reason.contains("not set"), "{reason}");
    }
}
