//! Checks of HGCM through the driver against the example echo service (linux-guest.md §7 items 10
//! and 13–15, with the echo service's blocking WAIT in place of the guest-property wait).

use std::io::Write;
use std::time::{Duration, Instant};

use vmmdev_guest_ioctl::{CallOptions, Device, Error, LinuxTransport};
use vmmdev_guest_tools::echo::EchoClient;
use vmmdev_guest_tools::signal;

use crate::{Failure, Outcome};

/// What the client echoes after an interrupted or timed-out wait to show it still works.
const PROBE: &[u8] = b"still alive";

pub fn connect(device: &Device, service: &str) -> Outcome {
    let client = device.connect(service)?;
    let id = client.id();
    client.disconnect()?;
    Ok(format!(
        "service={service} client_id={} disconnected",
        id.raw()
    ))
}

pub fn connect_fail(device: &Device, service: &str) -> Outcome {
    match device.connect(service) {
        Err(Error::Host { status, .. }) => Ok(format!("service={service} refused with {status}")),
        Ok(client) => Err(Failure(format!(
            "service={service} accepted the connection as {}",
            client.id()
        ))),
        Err(err) => Err(err.into()),
    }
}

pub fn echo(device: &Device, service: &str, text: &str) -> Outcome {
    let client = EchoClient::connect(device, service)?;
    check_echo(&client, text.as_bytes())?;
    client.disconnect()?;
    Ok(format!("{} bytes echoed intact", text.len()))
}

/// Echoes `data` and compares the answer.
fn check_echo(client: &EchoClient<'_, LinuxTransport>, data: &[u8]) -> Result<(), Failure> {
    let answer = client.echo(data)?;
    if answer == data {
        Ok(())
    } else {
        Err(Failure(format!(
            "sent {} bytes, got back {} bytes that differ",
            data.len(),
            answer.len()
        )))
    }
}

pub fn wait_alarm(device: &Device, service: &str, seconds: u32) -> Outcome {
    let client = EchoClient::connect(device, service)?;
    signal::interrupt_after(seconds)
        .map_err(|err| Failure(format!("installing the SIGALRM handler: {err}")))?;
    let started = Instant::now();
    let result = client.wait(None, CallOptions::default());
    let elapsed = started.elapsed().as_millis();
    signal::interrupt_after(0).map_err(|err| Failure(format!("cancelling the alarm: {err}")))?;
    match result {
        Err(Error::Interrupted { .. }) => {}
        Ok(reason) => {
            return Err(Failure(format!(
                "WAIT completed ({reason:?}) after {elapsed} ms instead of being interrupted"
            )));
        }
        Err(err) => return Err(err.into()),
    }
    check_echo(&client, PROBE)?;
    Ok(format!(
        "interrupted (EINTR) after {elapsed} ms; {} still echoes",
        client.id()
    ))
}

pub fn wait_timeout(device: &Device, service: &str, ms: u32) -> Outcome {
    let client = EchoClient::connect(device, service)?;
    let started = Instant::now();
    let result = client.wait(
        None,
        CallOptions::with_timeout(Duration::from_millis(ms.into())),
    );
    let elapsed = started.elapsed().as_millis();
    match result {
        Err(Error::TimedOut { .. }) => {}
        Ok(reason) => {
            return Err(Failure(format!(
                "WAIT completed ({reason:?}) after {elapsed} ms instead of timing out"
            )));
        }
        Err(err) => return Err(err.into()),
    }
    check_echo(&client, PROBE)?;
    Ok(format!(
        "timed out (ETIMEDOUT) after {elapsed} ms; {} still echoes",
        client.id()
    ))
}

pub fn wait_forever(device: &Device, service: &str) -> Outcome {
    let client = EchoClient::connect(device, service)?;
    println!(
        "wait-forever: waiting as {} (pid {})",
        client.id(),
        std::process::id()
    );
    // A failed flush only loses the progress line; the wait itself is what matters.
    let _ = std::io::stdout().flush();
    let result = client.wait(None, CallOptions::default());
    Err(Failure(format!("WAIT returned: {result:?}")))
}

pub fn null_calls(device: &Device, service: &str, count: u32) -> Outcome {
    let client = EchoClient::connect(device, service)?;
    let started = Instant::now();
    for _ in 0..count {
        client.noop()?;
    }
    let elapsed = started.elapsed();
    let per_call = elapsed.as_secs_f64() * 1e6 / f64::from(count.max(1));
    Ok(format!(
        "{count} calls in {} us, {per_call:.1} us per call",
        elapsed.as_micros()
    ))
}
