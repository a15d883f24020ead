//! Notifications from services to the embedder (`notify_host` in the plugin ABI).
//!
//! Every subscriber gets its own bounded channel. A service never blocks on a slow subscriber:
//! when a channel is full the notification is dropped for that subscriber and counted.

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use parking_lot::Mutex;

/// Capacity of each subscriber's channel.
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

/// Fans notifications out to subscribers.
#[derive(Debug, Default)]
pub(crate) struct Notifier {
    subscribers: Mutex<Vec<Sender<ServiceNotification>>>,
    dropped: AtomicU64,
}

impl Notifier {
    pub(crate) fn subscribe(&self) -> Receiver<ServiceNotification> {
        let (tx, rx) = crossbeam_channel::bounded(SUBSCRIBER_CAPACITY);
        self.subscribers.lock().push(tx);
        rx
    }

    /// Delivers to every live subscriber without blocking; forgets subscribers that went away.
    pub(crate) fn publish(&self, notification: ServiceNotification) {
        let mut subscribers = self.subscribers.lock();
        subscribers.retain(|tx| match tx.try_send(notification.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        });
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(code: u32) -> ServiceNotification {
        ServiceNotification {
            service: "svc".into(),
            code,
            payload: vec![],
        }
    }

    #[test]
    fn every_subscriber_receives_a_notification() {
        let notifier = Notifier::default();
        let (a, b) = (notifier.subscribe(), notifier.subscribe());
        notifier.publish(note(7));
        assert_eq!(a.try_recv().map(|n| n.code), Ok(7));
        assert_eq!(b.try_recv().map(|n| n.code), Ok(7));
    }

    #[test]
    fn full_subscriber_drops_and_counts_instead_of_blocking() {
        let notifier = Notifier::default();
        let rx = notifier.subscribe();
        for code in 0..SUBSCRIBER_CAPACITY as u32 + 3 {
            notifier.publish(note(code));
        }
        assert_eq!(notifier.dropped(), 3);
        assert_eq!(rx.len(), SUBSCRIBER_CAPACITY);
    }

    #[test]
    fn departed_subscriber_is_forgotten() {
        let notifier = Notifier::default();
        drop(notifier.subscribe());
        notifier.publish(note(1));
        assert!(notifier.subscribers.lock().is_empty());
    }
}
