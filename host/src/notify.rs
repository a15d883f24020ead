//! Notifications from services to the embedder (`notify_host` in the plugin ABI), fanned out to the
//! embedder's subscribers ([`crate::Fanout`]: bounded queues, never blocking a service).

/// Capacity of each subscriber's queue.
pub const SUBSCRIBER_CAPACITY: usize = 1024;
/// Largest payload a service may attach to one notification.
pub const MAX_NOTIFICATION_PAYLOAD: usize = 64 * 1024;

/// A notification a service sent to the embedder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceNotification {
    /// The sending service.
    pub service: String,
    /// Service-defined code.
    pub code: u32,
    /// Service-defined payload (at most [`MAX_NOTIFICATION_PAYLOAD`] bytes).
    pub payload: Vec<u8>,
}
