//! Timing of guest-property reads from a guest user program: the figure next to the echo service's
//! null call (`null-calls`), so the two round trips are measured the same way.

use std::time::Instant;

use vmmdev_guest_ioctl::Device;
use vmmdev_guest_ioctl::guest_props::GuestPropClient;

use crate::{Failure, Outcome};

/// Reads `name` `count` times over one connection and prints the time per round trip. Every read
/// must find the property with the value of the first one.
pub fn prop_gets(device: &Device, name: &str, count: u32) -> Outcome {
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
