//! Notifications from services to the embedder (`notify_host` in the plugin ABI).
//!
//! Every subscriber gets its own bounded channel. A service never blocks on a slow subscriber:
//! when a channel is full the notification is dropped for that subscriber and counted.
//!
//! A subscription ends when its [`Subscription`] is dropped, at once: its queue is freed then, not
//! when the next notification happens to find it gone. An embedder that subscribes for each
//! short-lived wait (a control endpoint's `guestproperty wait`, called in a loop with a timeout
//! while no property changes) must not pile up queues.

use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

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

/// One subscriber: its id (to unsubscribe) and the sending half of its queue.
#[derive(Debug)]
struct Subscriber {
    id: u64,
    queue: Sender<ServiceNotification>,
}

/// Fans notifications out to subscribers.
#[derive(Debug, Default)]
pub(crate) struct Notifier {
    subscribers: Mutex<Vec<Subscriber>>,
    next_id: AtomicU64,
    dropped: AtomicU64,
}

impl Notifier {
    pub(crate) fn subscribe(self: &Arc<Self>) -> Subscription {
        let (queue, receiver) = crossbeam_channel::bounded(SUBSCRIBER_CAPACITY);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.subscribers.lock().push(Subscriber { id, queue });
        Subscription {
            receiver,
            id,
            notifier: Arc::downgrade(self),
        }
    }

    fn unsubscribe(&self, id: u64) {
        self.subscribers
            .lock()
            .retain(|subscriber| subscriber.id != id);
    }

    /// Delivers to every subscriber without blocking; forgets those whose receivers are all gone.
    pub(crate) fn publish(&self, notification: ServiceNotification) {
        let mut subscribers = self.subscribers.lock();
        subscribers.retain(
            |subscriber| match subscriber.queue.try_send(notification.clone()) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    true
                }
                Err(TrySendError::Disconnected(_)) => false,
            },
        );
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    fn subscriber_count(&self) -> usize {
        self.subscribers.lock().len()
    }
}

/// A subscription to the notifications services send to the embedder: the receiving half of its
/// queue (it dereferences to a [`Receiver`]). Dropping it unsubscribes and frees the queue; a clone
/// of the receiver taken from it sees the channel disconnected from then on.
#[derive(Debug)]
pub struct Subscription {
    receiver: Receiver<ServiceNotification>,
    id: u64,
    notifier: Weak<Notifier>,
}

impl Deref for Subscription {
    type Target = Receiver<ServiceNotification>;

    fn deref(&self) -> &Self::Target {
        &self.receiver
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(notifier) = self.notifier.upgrade() {
            notifier.unsubscribe(self.id);
        }
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
        let notifier = Arc::new(Notifier::default());
        let (a, b) = (notifier.subscribe(), notifier.subscribe());
        notifier.publish(note(7));
        assert_eq!(a.try_recv().map(|n| n.code), Ok(7));
        assert_eq!(b.try_recv().map(|n| n.code), Ok(7));
    }

    #[test]
    fn full_subscriber_drops_and_counts_instead_of_blocking() {
        let notifier = Arc::new(Notifier::default());
        let rx = notifier.subscribe();
        for code in 0..SUBSCRIBER_CAPACITY as u32 + 3 {
            notifier.publish(note(code));
        }
        assert_eq!(notifier.dropped(), 3);
        assert_eq!(rx.len(), SUBSCRIBER_CAPACITY);
    }

    #[test]
    fn a_dropped_subscription_is_forgotten_at_once() {
        let notifier = Arc::new(Notifier::default());
        let kept = notifier.subscribe();
        for _ in 0..100 {
            drop(notifier.subscribe());
        }
        assert_eq!(
            notifier.subscriber_count(),
            1,
            "no notification was needed to forget them"
        );
        notifier.publish(note(1));
        assert_eq!(kept.try_recv().map(|n| n.code), Ok(1));
    }

    #[test]
    fn a_receiver_cloned_from_a_dropped_subscription_sees_the_end() {
        let notifier = Arc::new(Notifier::default());
        let subscription = notifier.subscribe();
        let receiver = (*subscription).clone();
        drop(subscription);
        notifier.publish(note(1));
        assert_eq!(
            receiver.try_recv(),
            Err(crossbeam_channel::TryRecvError::Disconnected)
        );
    }

    #[test]
    fn a_subscription_outliving_the_notifier_drops_quietly() {
        let notifier = Arc::new(Notifier::default());
        let subscription = notifier.subscribe();
        drop(notifier);
        assert!(subscription.try_recv().is_err());
        drop(subscription);
    }
}
