//! A guest-side client for the example echo HGCM service (crate `vmmdev-svc-echo`).
//!
//! The service is the project's stand-in for a real host service in end-to-end checks: it returns
//! what it is given, and it has a call that blocks until the host wakes it, which exercises the
//! asynchronous completion, timeout and cancellation paths of the whole stack. The names and
//! numbers below mirror the service's crate documentation (the guest tools do not link the host
//! side).

use std::time::Duration;

use vmmdev_guest_ioctl::{
    CallOptions, ClientId, Device, Error, GuestTransport, HgcmClient, Param, Result,
};

/// The service's HGCM name.
pub const SERVICE_NAME: &str = "Echo";

/// The service's guest function numbers.
pub mod function {
    /// Copies parameter 0 (input buffer) into parameter 1 (output buffer) and reports the copied
    /// length on parameter 1.
    pub const ECHO: u32 = 1;
    /// Blocks until the host wakes the caller, the service-side timeout in parameter 0 (ms, 0 =
    /// none) passes, or the call is cancelled; parameter 1 receives the wake reason.
    pub const WAIT: u32 = 2;
    /// Returns at once, without parameters.
    pub const NOOP: u32 = 4;
}

/// Why a WAIT call completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WakeReason {
    /// The host woke all waiters.
    Host,
    /// The service-side timeout passed.
    Timeout,
    /// A reason this client does not know.
    Other(u32),
}

impl From<u32> for WakeReason {
    fn from(raw: u32) -> Self {
        match raw {
            1 => Self::Host,
            2 => Self::Timeout,
            other => Self::Other(other),
        }
    }
}

/// A connection to the echo service.
#[derive(Debug)]
pub struct EchoClient<'d, T: GuestTransport> {
    client: HgcmClient<'d, T>,
}

impl<'d, T: GuestTransport> EchoClient<'d, T> {
    /// Connects to the service called `service` (normally [`SERVICE_NAME`]).
    pub fn connect(device: &'d Device<T>, service: &str) -> Result<Self> {
        Ok(Self {
            client: device.connect(service)?,
        })
    }

    /// The client id the host assigned.
    pub fn id(&self) -> ClientId {
        self.client.id()
    }

    /// Sends `data` through ECHO and returns what came back.
    pub fn echo(&self, data: &[u8]) -> Result<Vec<u8>> {
        let mut reply = vec![0u8; data.len()];
        let mut params = [Param::In(data), Param::out(&mut reply)];
        self.client
            .call(function::ECHO, &mut params, CallOptions::default())?;
        let [_, output] = &params;
        let returned = output.returned().map_or(0, <[u8]>::len);
        reply.truncate(returned);
        Ok(reply)
    }

    /// Calls WAIT and returns why it completed. `service_timeout` is the service's own limit
    /// (`None`: only the host or a cancel ends the call); `options` are the driver's (a driver
    /// timeout or a signal cancels the call).
    ///
    /// The service reports its own timeout as a failure status whose wake reason is
    /// [`WakeReason::Timeout`]; that is returned as `Ok` too.
    pub fn wait(
        &self,
        service_timeout: Option<Duration>,
        options: CallOptions,
    ) -> Result<WakeReason> {
        let timeout_ms = service_timeout.map_or(0, |timeout| {
            u32::try_from(timeout.as_millis())
                .unwrap_or(u32::MAX)
                .max(1)
        });
        let mut params = [Param::U32(timeout_ms), Param::U32(0)];
        let outcome = self.client.call(function::WAIT, &mut params, options);
        let [_, reason] = &params;
        let reason = WakeReason::from(reason.as_u32().unwrap_or(0));
        match outcome {
            Ok(_) => Ok(reason),
            Err(Error::Host { .. }) if reason == WakeReason::Timeout => Ok(reason),
            Err(err) => Err(err),
        }
    }

    /// Makes one NOOP call: a complete HGCM round trip without data.
    pub fn noop(&self) -> Result<()> {
        self.client
            .call(function::NOOP, &mut [], CallOptions::default())
            .map(drop)
    }

    /// Disconnects, reporting the host's answer.
    pub fn disconnect(self) -> Result<()> {
        self.client.disconnect()
    }
}
