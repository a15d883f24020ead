//! What transports submit and what they get back: request ids, call requests, outcomes and the
//! synchronous submission errors.

use vmmdev_hgcm_abi::status::Status;
use vmmdev_hgcm_abi::{ClientId, Parm, Requestor};

/// Handle of a submitted request, used to cancel it. Unique per [`crate::Hgcm`] instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub(crate) u64);

impl RequestId {
    /// The raw value (for logs and for matching saved pending requests).
    pub fn raw(self) -> u64 {
        self.0
    }
}

/// A guest call as a transport submits it.
#[derive(Debug)]
pub struct CallRequest {
    /// The calling client.
    pub client: ClientId,
    /// Service-defined function number.
    pub function: u32,
    /// Parameters; given back, with outputs written, in [`CallOutcome::params`].
    pub params: Vec<Parm>,
    /// The requestor bits the guest sent with this call.
    pub requestor: Requestor,
    /// Whether this call is being resubmitted after a restore.
    pub restored: bool,
}

/// Called exactly once with the outcome, on whichever thread completes the request, unless the
/// request is cancelled or dropped by a reset (then never). Keep it short and non-blocking.
pub type Completion<T> = Box<dyn FnOnce(T) + Send>;

/// Result of a connect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectOutcome {
    /// The service's status (the guest's `result`).
    pub status: i32,
    /// The new client; `ClientId(0)` if the status is a failure.
    pub client: ClientId,
}

/// Result of a disconnect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DisconnectOutcome {
    /// The service's status (the guest's `result`).
    pub status: i32,
}

/// Result of a call.
#[derive(Debug)]
pub struct CallOutcome {
    /// The service's status (the guest's `result`).
    pub status: i32,
    /// The submitted parameters, with the service's outputs: values and reported lengths updated,
    /// buffer contents written in place.
    pub params: Vec<Parm>,
}

/// Why a request was refused at submission; nothing is pending and no completion will run.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubmitError {
    /// No service of that name is loaded.
    #[error("service {0:?} is not loaded")]
    ServiceNotFound(String),
    /// The service has failed and takes no new work.
    #[error("service {0:?} has failed")]
    ServiceFailed(String),
    /// Unknown, not yet connected, or disconnected client.
    #[error("{0} is not connected")]
    InvalidClient(ClientId),
    /// The service's client limit for the requestor's category is reached.
    #[error("service {service:?} has reached its limit of {limit} clients of this category")]
    TooManyClients {
        /// The service.
        service: String,
        /// The limit in force.
        limit: u32,
    },
    /// The client has reached its pending call limit.
    #[error("{client} has reached its limit of {limit} pending calls")]
    TooManyCalls {
        /// The client.
        client: ClientId,
        /// The limit in force.
        limit: u32,
    },
    /// More parameters than allowed.
    #[error("{count} parameters exceed the limit of {limit}")]
    TooManyParams {
        /// Parameters in the call.
        count: usize,
        /// The limit in force.
        limit: u32,
    },
    /// The buffers of the call are larger in total than allowed.
    #[error("{bytes} buffer bytes exceed the per-call limit of {limit}")]
    BuffersTooLarge {
        /// Sum of the buffer lengths.
        bytes: u64,
        /// The limit in force.
        limit: u64,
    },
    /// The framework is shutting down.
    #[error("the HGCM framework is shut down")]
    ShutDown,
}

impl SubmitError {
    /// The VirtualBox status a transport reports to the guest.
    pub fn status(&self) -> i32 {
        match self {
            Self::ServiceNotFound(_) => Status::VERR_HGCM_SERVICE_NOT_FOUND.raw(),
            Self::ServiceFailed(_) => Status::VERR_HGCM_INTERNAL.raw(),
            Self::InvalidClient(_) => Status::VERR_HGCM_INVALID_CLIENT_ID.raw(),
            Self::TooManyClients { .. } => Status::VERR_HGCM_TOO_MANY_CLIENTS.raw(),
            Self::TooManyCalls { .. } => Status::VERR_HGCM_TOO_MANY_CLIENT_CALLS.raw(),
            Self::TooManyParams { .. } => Status::VERR_INVALID_PARAMETER.raw(),
            Self::BuffersTooLarge { .. } => Status::VERR_NO_MEMORY.raw(),
            Self::ShutDown => Status::VERR_INVALID_STATE.raw(),
        }
    }
}

/// Why a cancel did nothing.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CancelError {
    /// Unknown request, already completed, or already cancelled.
    #[error("request {0:?} is not pending")]
    NotFound(RequestId),
}

impl CancelError {
    /// The VirtualBox status a transport reports to the guest (Cancel2 semantics).
    pub fn status(&self) -> i32 {
        Status::VERR_NOT_FOUND.raw()
    }
}
