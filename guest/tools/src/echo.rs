//! A guest-side client for the example echo HGCM service (crate `vmmdev-svc-echo`).
//!
//! The service is the project's stand-in for a real host service in end-to-end checks: it returns
//! what it is given, and it has a call that blocks until the host wakes it, which exercises the
//! asynchronous completion, timeout and cancellation paths of the whole stack.

use vmmdev_guest_ioctl::{
    CallOptions, ClientId, Device, GuestTransport, HgcmClient, Param, Result,
};

/// The service's HGCM name.
pub const SERVICE_NAME: &str = "VBoxEcho";

/// The service's function numbers.
pub mod function {
    /// Copies parameter 0 (input buffer) into parameter 1 (output buffer).
    pub const ECHO: u32 = 1;
    /// Blocks until the host wakes the caller or the call is cancelled.
    pub const WAIT: u32 = 2;
    /// Returns immediately, with no parameters.
    pub const NULL: u32 = 3;
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
        let returned = params[1].returned().map_or(0, <[u8]>::len);
        reply.truncate(returned);
        Ok(reply)
    }

    /// Calls WAIT, which blocks until the host wakes it; `options` decide how long the driver waits
    /// and whether a signal may interrupt it.
    pub fn wait(&self, options: CallOptions) -> Result<()> {
        self.client.call(function::WAIT, &mut [], options).map(drop)
    }

    /// Makes one NULL call: a complete HGCM round trip without data.
    pub fn null(&self) -> Result<()> {
        self.client
            .call(function::NULL, &mut [], CallOptions::default())
            .map(drop)
    }

    /// Disconnects, reporting the host's answer.
    pub fn disconnect(self) -> Result<()> {
        self.client.disconnect()
    }
}
