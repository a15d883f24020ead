//! The HGCM plumbing the typed service clients ([`crate::clipboard`], [`crate::guest_props`])
//! share: a connection whose calls take the service's typed function numbers and fail with the
//! service's own error type.
//!
//! Each service classifies host statuses its own way; what is common is how a driver failure
//! becomes that error: a host status goes to the service's classification, a signal or the
//! driver's timeout keep their meaning (the client stays usable), anything else is a driver
//! error. A service that is not there is reported as such on connect.

use std::marker::PhantomData;

use vmmdev_protocol::hgcm::ClientId;
use vmmdev_protocol::status::Status;

use crate::device::Device;
use crate::error::Error;
use crate::hgcm::{CallOptions, HgcmClient, Param};
use crate::transport::GuestTransport;

/// The error type of a typed service client.
pub(crate) trait ServiceError: From<Error> {
    /// The service's function numbers.
    type Function: Copy + Into<u32>;

    /// The host has no such service (`VERR_HGCM_SERVICE_NOT_FOUND` on connect).
    fn service_unavailable() -> Self;
    /// The service answered a call of `function` with the failure `status`.
    fn from_status(function: Self::Function, status: Status) -> Self;
    /// A signal ended the call of `function`.
    fn interrupted(function: Self::Function) -> Self;
    /// The driver's timeout cancelled the call of `function`.
    fn timed_out(function: Self::Function) -> Self;
}

/// A connection to one HGCM service, disconnected on drop, whose failures are `E`s.
#[derive(Debug)]
pub(crate) struct ServiceClient<'d, T: GuestTransport, E> {
    client: HgcmClient<'d, T>,
    error: PhantomData<fn() -> E>,
}

impl<'d, T: GuestTransport, E: ServiceError> ServiceClient<'d, T, E> {
    /// Connects to the service called `name`.
    pub(crate) fn connect(device: &'d Device<T>, name: &str) -> Result<Self, E> {
        match device.connect(name) {
            Ok(client) => Ok(Self::new(client)),
            Err(Error::Host {
                status: Status::VERR_HGCM_SERVICE_NOT_FOUND,
                ..
            }) => Err(E::service_unavailable()),
            Err(other) => Err(E::from(other)),
        }
    }

    /// Uses an existing connection.
    pub(crate) fn new(client: HgcmClient<'d, T>) -> Self {
        Self {
            client,
            error: PhantomData,
        }
    }

    /// The client id the host assigned.
    pub(crate) fn id(&self) -> ClientId {
        self.client.id()
    }

    /// Calls `function`; on success, the (possibly informational) status the host answered.
    pub(crate) fn call(
        &self,
        function: E::Function,
        params: &mut [Param<'_>],
        options: CallOptions,
    ) -> Result<Status, E> {
        self.client
            .call(function.into(), params, options)
            .map_err(|error| match error {
                Error::Host { status, .. } => E::from_status(function, status),
                Error::Interrupted { .. } => E::interrupted(function),
                Error::TimedOut { .. } => E::timed_out(function),
                other => E::from(other),
            })
    }

    /// Disconnects explicitly, reporting the host's answer.
    pub(crate) fn disconnect(self) -> Result<(), E> {
        Ok(self.client.disconnect()?)
    }
}
