//! One-to-many delivery of events to subscribers that come and go: each subscriber has its own
//! bounded queue, a publisher never blocks on a slow one (the event is dropped for it and
//! counted), and a subscription ends when its [`Subscription`] is dropped, at once.
//!
//! Ending at once matters for embedders that subscribe for each short-lived wait (a control
//! endpoint's `guestproperty wait`, called in a loop with a timeout while nothing changes): a
//! subscription forgotten only when the next event finds its receiver gone keeps its queue until
//! then, without bound when no event comes.

use std::fmt;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use parking_lot::Mutex;

/// The subscribers of one kind of event, each with a queue of `capacity` events.
pub struct Fanout<T> {
    shared: Arc<Shared<T>>,
}

struct Shared<T> {
    capacity: usize,
    subscribers: Mutex<Vec<Subscriber<T>>>,
    next_id: AtomicU64,
    dropped: AtomicU64,
}

/// One subscriber: its id (to unsubscribe) and the sending half of its queue.
struct Subscriber<T> {
    id: u64,
    queue: Sender<T>,
}

impl<T: Clone> Fanout<T> {
    /// A fan-out whose subscribers each queue up to `capacity` events (at least one).
    pub fn new(capacity: usize) -> Self {
        Fanout {
            shared: Arc::new(Shared {
                capacity: capacity.max(1),
                subscribers: Mutex::new(Vec::new()),
                next_id: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
            }),
        }
    }

    /// A new subscription receiving every event published from now on.
    pub fn subscribe(&self) -> Subscription<T> {
        let (queue, receiver) = crossbeam_channel::bounded(self.shared.capacity);
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        self.shared
            .subscribers
            .lock()
            .push(Subscriber { id, queue });
        Subscription {
            receiver,
            id,
            shared: Arc::downgrade(&self.shared),
        }
    }

    /// Delivers `event` to every subscriber without blocking: a full queue loses it (counted in
    /// [`Self::dropped`]).
    pub fn publish(&self, event: T) {
        let mut subscribers = self.shared.subscribers.lock();
        subscribers.retain(
            |subscriber| match subscriber.queue.try_send(event.clone()) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                    true
                }
                // Only a receiver cloned out of a dropped subscription could be left; nobody listens.
                Err(TrySendError::Disconnected(_)) => false,
            },
        );
    }

    /// Events lost because a subscriber's queue was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Live subscriptions.
    pub fn subscriber_count(&self) -> usize {
        self.shared.subscribers.lock().len()
    }
}

impl<T> fmt::Debug for Fanout<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fanout")
            .field("capacity", &self.shared.capacity)
            .field("subscribers", &self.shared.subscribers.lock().len())
            .field("dropped", &self.shared.dropped.load(Ordering::Relaxed))
            .finish()
    }
}

/// A subscription: the receiving half of its queue (it dereferences to a [`Receiver`]). Dropping it
/// unsubscribes and frees the queue; a receiver cloned from it sees the channel disconnected from
/// then on.
pub struct Subscription<T> {
    receiver: Receiver<T>,
    id: u64,
    shared: Weak<Shared<T>>,
}

impl<T> Deref for Subscription<T> {
    type Target = Receiver<T>;

    fn deref(&self) -> &Self::Target {
        &self.receiver
    }
}

impl<T> Drop for Subscription<T> {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.upgrade() {
            shared
                .subscribers
                .lock()
                .retain(|subscriber| subscriber.id != self.id);
        }
    }
}

/// A subscription consumed as a blocking iterator: events until the fan-out is dropped.
impl<T> IntoIterator for Subscription<T> {
    type Item = T;
    type IntoIter = Events<T>;

    fn into_iter(self) -> Events<T> {
        Events { subscription: self }
    }
}

/// The events of a [`Subscription`], waiting for each; ends when its fan-out is dropped.
#[derive(Debug)]
pub struct Events<T> {
    subscription: Subscription<T>,
}

impl<T> Iterator for Events<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.subscription.recv().ok()
    }
}

impl<T> fmt::Debug for Subscription<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .field("queued", &self.receiver.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::TryRecvError;

    #[test]
    fn every_subscriber_receives_an_event() {
        let fanout = Fanout::new(4);
        let (a, b) = (fanout.subscribe(), fanout.subscribe());
        fanout.publish(7);
        assert_eq!(a.try_recv(), Ok(7));
        assert_eq!(b.try_recv(), Ok(7));
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_blocking() {
        let fanout = Fanout::new(4);
        let subscription = fanout.subscribe();
        for event in 0..7 {
            fanout.publish(event);
        }
        assert_eq!(fanout.dropped(), 3);
        assert_eq!(subscription.len(), 4);
        assert_eq!(subscription.try_recv(), Ok(0), "the oldest events are kept");
    }

    #[test]
    fn a_dropped_subscription_is_forgotten_at_once() {
        let fanout = Fanout::new(4);
        let kept = fanout.subscribe();
        for _ in 0..100 {
            drop(fanout.subscribe());
        }
        assert_eq!(
            fanout.subscriber_count(),
            1,
            "no event was needed to forget them"
        );
        fanout.publish(1);
        assert_eq!(kept.try_recv(), Ok(1));
    }

    #[test]
    fn a_receiver_cloned_from_a_dropped_subscription_sees_the_end() {
        let fanout = Fanout::new(4);
        let subscription = fanout.subscribe();
        let receiver = (*subscription).clone();
        drop(subscription);
        fanout.publish(1);
        assert_eq!(receiver.try_recv(), Err(TryRecvError::Disconnected));
    }

    #[test]
    fn a_subscription_outliving_its_fanout_ends_quietly() {
        let fanout = Fanout::<u32>::new(4);
        let subscription = fanout.subscribe();
        drop(fanout);
        assert_eq!(subscription.try_recv(), Err(TryRecvError::Disconnected));
    }

    #[test]
    fn a_consumed_subscription_yields_events_until_its_fanout_is_dropped() {
        let fanout = Fanout::new(4);
        let subscription = fanout.subscribe();
        fanout.publish(1);
        fanout.publish(2);
        drop(fanout);
        assert_eq!(subscription.into_iter().collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn capacity_zero_still_queues_one_event() {
        let fanout = Fanout::new(0);
        let subscription = fanout.subscribe();
        fanout.publish(1);
        assert_eq!(subscription.try_recv(), Ok(1));
    }
}
