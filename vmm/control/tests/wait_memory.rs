//! A management agent that polls `guestproperty wait` with a timeout while nothing changes (Vagrant
//! waiting for the guest's address does this for minutes) must not make the VMM grow: each wait's
//! subscription to the service's notifications is freed when the wait ends, not when the next
//! property change happens to come. Before that, every timed-out wait kept a 64 KiB queue until the
//! next change, which made the reference monitor grow by tens of MiB during a guest session.
//!
//! Counted by `vmmdev_live_heap`, so this binary holds a single test.

use std::time::Duration;

use vmmdev_control::Control;
use vmmdev_host_options::HostOptions;
use vmmdev_live_heap::{CountingAllocator, growth_over_rounds};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Rounds run before the baseline is taken.
const WARM_UP_ROUNDS: usize = 10;
/// Timed-out waits measured; at the old 64 KiB each they would have kept 13 MiB.
const MEASURED_ROUNDS: usize = 200;
/// Growth allowed over the measured rounds: less than one small allocation per ten waits.
const ALLOWED_GROWTH: isize = 2048;

#[test]
fn timed_out_property_waits_leave_the_live_heap_unchanged() {
    let hgcm = HostOptions::default()
        .build_hgcm()
        .expect("built-in services");
    let control = Control::new(hgcm);
    let growth = growth_over_rounds(WARM_UP_ROUNDS, MEASURED_ROUNDS, |_| {
        let change = control
            .wait_property("/Nothing/Sets/This", Duration::from_millis(1))
            .expect("the wait runs");
        assert!(change.is_none(), "nothing changed: {change:?}");
    });
    assert!(
        growth <= ALLOWED_GROWTH,
        "{MEASURED_ROUNDS} timed-out waits left {growth} more bytes allocated (allowed: \
         {ALLOWED_GROWTH})"
    );
}
