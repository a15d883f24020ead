//! GET_NOTIFICATION through the HGCM framework: waiting, the event queue, the overflow retry,
//! supersession, limits, guest timeouts (cancellation), disconnect, many waiters, and the change
//! notifications to the embedder.

mod common;

use std::time::Duration;

use common::*;
use vmmdev_protocol::status::Status;
use vmmdev_svc_guest_props::{NOTIFY_PROPERTY_CHANGED, PropertyChange};

/// A buffer large enough for any notification under the default limits.
const BIG: usize = 64 + 1024 + 35 + 1024;

fn fixture() -> (Fixture, Guest) {
    let fixture = Fixture::new("");
    let guest = fixture.connect(KERNEL);
    (fixture, guest)
}

#[test]
fn wait_from_zero_completes_with_the_next_change() {
    let (_f, guest) = fixture();
    guest.set("/T/before", "old", None);
    let (_, rx) = guest.wait("", 0, BIG);
    assert!(
        rx.recv_timeout(QUIET).is_err(),
        "a wait from 0 ignores old events"
    );
    guest.set("/T/a", "1", Some("TRANSIENT"));
    let n = decode_notification(rx.recv_timeout(DEADLINE).expect("woken"));
    assert_eq!(n.status, Status::VINF_SUCCESS);
    assert_eq!(
        (n.name.as_str(), n.value.as_str(), n.flags.as_str()),
        ("/T/a", "1", "TRANSIENT")
    );
    assert!(!n.deleted);
    assert_eq!(n.timestamp, guest.get("/T/a").timestamp);
    assert_eq!(
        n.needed as usize,
        "/T/a".len() + 1 + 2 + "TRANSIENT".len() + 1 + 2
    );
}

#[test]
fn wait_ignores_changes_its_patterns_do_not_match() {
    let (_f, guest) = fixture();
    let (_, rx) = guest.wait("/T/watched|/T/also*", 0, BIG);
    guest.set("/T/other", "1", None);
    assert!(rx.recv_timeout(QUIET).is_err());
    guest.set("/T/also-this", "2", None);
    let n = decode_notification(rx.recv_timeout(DEADLINE).expect("woken"));
    assert_eq!(n.name, "/T/also-this");
}

#[test]
fn deletion_is_notified_with_empty_value_and_flags() {
    let (_f, guest) = fixture();
    guest.set("/T/a", "1", Some("TRANSIENT"));
    let (_, rx) = guest.wait("/T/*", 0, BIG);
    guest.del("/T/a");
    let n = decode_notification(rx.recv_timeout(DEADLINE).expect("woken"));
    assert!(n.deleted);
    assert_eq!((n.value.as_str(), n.flags.as_str()), ("", ""));
}

#[test]
fn deleting_a_missing_property_notifies_nobody() {
    let (_f, guest) = fixture();
    let (_, rx) = guest.wait("", 0, BIG);
    guest.del("/T/never");
    assert!(rx.recv_timeout(QUIET).is_err());
}

#[test]
fn known_timestamp_returns_the_next_queued_change_at_once() {
    let (_f, guest) = fixture();
    guest.set("/T/a", "1", None);
    let first = guest.get("/T/a").timestamp;
    guest.set("/T/b", "2", None);
    guest.set("/T/a", "3", None);
    let n = guest.notification("/T/a", first, BIG);
    assert_eq!(n.status, Status::VINF_SUCCESS);
    assert_eq!(n.value, "3");
    let next = guest.notification("/T/*", first, BIG);
    assert_eq!(next.name, "/T/b");
}

#[test]
fn walking_the_queue_by_returned_timestamps_sees_every_change_once() {
    let (_f, guest) = fixture();
    let (_, first) = guest.wait("/T/*", 0, BIG);
    for i in 0..5 {
        guest.set(&format!("/T/{i}"), "v", None);
    }
    let mut seen = vec![decode_notification(
        first.recv_timeout(DEADLINE).expect("woken"),
    )];
    for _ in 1..5 {
        let last = seen.last().map(|n| n.timestamp).unwrap_or_default();
        seen.push(guest.notification("/T/*", last, BIG));
    }
    let names: Vec<&str> = seen.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["/T/0", "/T/1", "/T/2", "/T/3", "/T/4"]);
    assert!(seen.iter().all(|n| n.status == Status::VINF_SUCCESS));
}

#[test]
fn unknown_timestamp_returns_the_oldest_match_with_vwrn_not_found() {
    let (_f, guest) = fixture();
    guest.set("/T/a", "1", None);
    guest.set("/T/a", "2", None);
    let n = guest.notification("/T/a", 12345, BIG);
    assert_eq!(n.status, Status::VWRN_NOT_FOUND);
    assert_eq!(n.value, "1");
}

#[test]
fn unknown_timestamp_without_match_parks_and_completes_with_vwrn_not_found() {
    let (_f, guest) = fixture();
    let (_, rx) = guest.wait("/T/later", 12345, BIG);
    assert!(rx.recv_timeout(QUIET).is_err());
    guest.set("/T/later", "x", None);
    let n = decode_notification(rx.recv_timeout(DEADLINE).expect("woken"));
    assert_eq!(n.status, Status::VWRN_NOT_FOUND);
}

#[test]
fn overflow_reports_needed_size_and_the_events_timestamp() {
    let (_f, guest) = fixture();
    let (_, rx) = guest.wait("/T/*", 0, 8);
    guest.set("/T/a", "a longer value", None);
    let n = decode_notification(rx.recv_timeout(DEADLINE).expect("woken"));
    assert_eq!(n.status, Status::VERR_BUFFER_OVERFLOW);
    assert_eq!(n.needed as usize, 5 + 15 + 1 + 2);
    assert_eq!(n.timestamp, guest.get("/T/a").timestamp);
}

#[test]
fn overflow_retry_with_timestamp_zero_gets_the_same_event() {
    let (_f, guest) = fixture();
    let (_, rx) = guest.wait("/T/*", 0, 8);
    guest.set("/T/a", "a longer value", None);
    let overflow = decode_notification(rx.recv_timeout(DEADLINE).expect("woken"));
    assert_eq!(overflow.status, Status::VERR_BUFFER_OVERFLOW);
    // VBoxControl's retry: same patterns, same input timestamp (0), the size it was told.
    let retry = guest.notification("/T/*", 0, overflow.needed as usize);
    assert_eq!(retry.status, Status::VINF_SUCCESS);
    assert_eq!(
        (retry.name.as_str(), retry.value.as_str()),
        ("/T/a", "a longer value")
    );
    assert_eq!(retry.timestamp, overflow.timestamp);
}

#[test]
fn overflow_retry_with_the_original_timestamp_gets_the_same_event() {
    let (_f, guest) = fixture();
    guest.set("/T/start", "s", None);
    let start = guest.get("/T/start").timestamp;
    guest.set("/T/a", "a longer value", None);
    let overflow = guest.notification("/T/a", start, 8);
    assert_eq!(overflow.status, Status::VERR_BUFFER_OVERFLOW);
    let retry = guest.notification("/T/a", start, BIG);
    assert_eq!(
        (retry.status, retry.value.as_str()),
        (Status::VINF_SUCCESS, "a longer value")
    );
}

#[test]
fn after_the_retry_a_wait_from_zero_waits_for_new_changes_again() {
    let (_f, guest) = fixture();
    let (_, rx) = guest.wait("/T/*", 0, 4);
    guest.set("/T/a", "value", None);
    let overflow = decode_notification(rx.recv_timeout(DEADLINE).expect("woken"));
    guest.notification("/T/*", 0, overflow.needed as usize);
    let (_, again) = guest.wait("/T/*", 0, BIG);
    assert!(
        again.recv_timeout(QUIET).is_err(),
        "the overflowed event is served only once"
    );
}

#[test]
fn same_patterns_again_interrupt_the_earlier_wait() {
    let (_f, guest) = fixture();
    let (_, first) = guest.wait("/T/*", 0, BIG);
    let (_, second) = guest.wait("/T/*", 0, BIG);
    let old = first.recv_timeout(DEADLINE).expect("superseded");
    assert_eq!(Status(old.status), Status::VERR_INTERRUPTED);
    guest.set("/T/a", "1", None);
    let n = decode_notification(second.recv_timeout(DEADLINE).expect("woken"));
    assert_eq!(n.name, "/T/a");
}

#[test]
fn seventeenth_wait_of_a_client_is_out_of_resources() {
    let (f, guest) = fixture();
    let _waits: Vec<_> = (0..16)
        .map(|i| guest.wait(&format!("/T/{i}"), 0, BIG))
        .collect();
    let (_, rx) = guest.wait("/T/16", 0, BIG);
    let refused = rx.recv_timeout(DEADLINE).expect("refused at once");
    assert_eq!(Status(refused.status), Status::VERR_OUT_OF_RESOURCES);
    let other = f.connect(KERNEL);
    let (_, fine) = other.wait("/T/16", 0, BIG);
    assert!(
        fine.recv_timeout(QUIET).is_err(),
        "another client may still wait"
    );
}

#[test]
fn configured_wait_limit_applies() {
    let fixture = Fixture::new("max_waits_per_client=2");
    let guest = fixture.connect(KERNEL);
    let _a = guest.wait("/a", 0, BIG);
    let _b = guest.wait("/b", 0, BIG);
    let (_, rx) = guest.wait("/c", 0, BIG);
    let refused = rx.recv_timeout(DEADLINE).expect("refused at once");
    assert_eq!(Status(refused.status), Status::VERR_OUT_OF_RESOURCES);
}

#[test]
fn guest_timeout_cancels_the_wait_and_frees_its_slot() {
    let (f, guest) = fixture();
    let waits: Vec<_> = (0..16)
        .map(|i| guest.wait(&format!("/T/{i}"), 0, BIG))
        .collect();
    // The guest driver's timeout expires for every wait: it cancels them.
    for (id, _) in &waits {
        f.hgcm.cancel(*id).expect("pending");
    }
    let (_, rx) = guest.wait("/T/new", 0, BIG);
    guest.set("/T/new", "1", None);
    let n = decode_notification(rx.recv_timeout(DEADLINE).expect("woken"));
    assert_eq!(n.status, Status::VINF_SUCCESS);
    for (_, cancelled) in waits {
        assert!(
            cancelled.try_recv().is_err(),
            "a cancelled call never completes"
        );
    }
}

#[test]
fn change_between_a_timeout_and_the_next_wait_is_not_lost() {
    let (f, guest) = fixture();
    guest.set("/T/a", "1", None);
    let seen = guest.get("/T/a").timestamp;
    let (id, _) = guest.wait("/T/a", seen, BIG);
    std::thread::sleep(Duration::from_millis(20));
    f.hgcm.cancel(id).expect("pending");
    guest.set("/T/a", "2", None);
    let n = guest.notification("/T/a", seen, BIG);
    assert_eq!((n.status, n.value.as_str()), (Status::VINF_SUCCESS, "2"));
}

#[test]
fn disconnect_ends_the_clients_waits() {
    let (f, guest) = fixture();
    let (_, rx) = guest.wait("", 0, BIG);
    let other = f.connect(KERNEL);
    guest.disconnect();
    let ended = rx.recv_timeout(DEADLINE).expect("ended by the disconnect");
    assert!(
        Status(ended.status).is_failure(),
        "{}",
        Status(ended.status)
    );
    // The service is still fine for others.
    let (_, still) = other.wait("", 0, BIG);
    other.set("/T/a", "1", None);
    assert!(still.recv_timeout(DEADLINE).is_ok());
}

#[test]
fn hundred_concurrent_waiters_all_receive_one_change() {
    let fixture = Fixture::new("");
    let waiters: Vec<_> = (0..100)
        .map(|i| {
            let guest = fixture.connect(if i % 2 == 0 { KERNEL } else { USER_DEVICE });
            let (_, rx) = guest.wait("/T/*|/Other", 0, BIG);
            (guest, rx)
        })
        .collect();
    let unrelated = fixture.connect(KERNEL);
    let (_, not_woken) = unrelated.wait("/Unrelated", 0, BIG);
    fixture.host().set("/T/go", "now", None);
    let stamp = fixture.host().get("/T/go").timestamp;
    for (_, rx) in &waiters {
        let n = decode_notification(rx.recv_timeout(DEADLINE).expect("every waiter woken"));
        assert_eq!(
            (n.status, n.name.as_str(), n.value.as_str()),
            (Status::VINF_SUCCESS, "/T/go", "now")
        );
        assert_eq!(n.timestamp, stamp);
    }
    assert!(not_woken.recv_timeout(QUIET).is_err());
}

#[test]
fn host_changes_wake_guest_waiters() {
    let (f, guest) = fixture();
    let (_, rx) = guest.wait("/VirtualBox/GuestAdd/*", 0, BIG);
    f.host()
        .set("/VirtualBox/GuestAdd/PAM/CredsWait", "1", None);
    let n = decode_notification(rx.recv_timeout(DEADLINE).expect("woken"));
    assert_eq!(n.flags, "RDONLYGUEST");
}

#[test]
fn policy_hides_changes_from_callers_that_may_not_read_them() {
    let fixture = Fixture::new("policy=vboxuser:none:/Secret/");
    let user = fixture.connect(USER_DEVICE);
    let kernel = fixture.connect(KERNEL);
    let (_, rx) = user.wait("", 0, BIG);
    kernel.set("/Secret/key", "k", None);
    assert!(rx.recv_timeout(QUIET).is_err());
    kernel.set("/Public/x", "1", None);
    let n = decode_notification(rx.recv_timeout(DEADLINE).expect("woken"));
    assert_eq!(n.name, "/Public/x");
}

#[test]
fn wait_with_bad_parameters_is_refused_at_once() {
    let (_f, guest) = fixture();
    let mut params = notification_params("", 0, BIG);
    params.swap(1, 3);
    let outcome = guest.call(vmmdev_svc_guest_props::Function::GET_NOTIFICATION, params);
    assert_eq!(Status(outcome.status), Status::VERR_INVALID_PARAMETER);
    let long = "a".repeat(1024);
    let outcome = guest.call(
        vmmdev_svc_guest_props::Function::GET_NOTIFICATION,
        notification_params(&long, 0, BIG),
    );
    assert_eq!(Status(outcome.status), Status::VERR_TOO_MUCH_DATA);
}

// ----- notifications to the embedder ------------------------------------------------------------

fn next_change(f: &Fixture) -> PropertyChange {
    let note = f
        .notifications
        .recv_timeout(DEADLINE)
        .expect("notification");
    assert_eq!(note.service, vmmdev_svc_guest_props::SERVICE_NAME);
    assert_eq!(note.code, NOTIFY_PROPERTY_CHANGED);
    PropertyChange::decode(&note.payload).expect("decodes")
}

#[test]
fn every_change_is_sent_to_the_embedder() {
    let (f, guest) = fixture();
    f.drain_notifications();
    guest.set("/T/a", "1", Some("TRANSIENT"));
    let set = next_change(&f);
    assert_eq!(
        (set.name.as_str(), set.value.as_deref(), set.flags.as_str()),
        ("/T/a", Some("1"), "TRANSIENT")
    );
    assert_eq!(set.timestamp, guest.get("/T/a").timestamp);
    f.host().set("/T/h", "host", None);
    assert_eq!(next_change(&f).name, "/T/h");
    guest.del("/T/a");
    let deleted = next_change(&f);
    assert!(deleted.is_deletion());
    assert_eq!(deleted.name, "/T/a");
}

#[test]
fn refused_writes_send_nothing_to_the_embedder() {
    let (f, guest) = fixture();
    f.drain_notifications();
    guest.set("/VirtualBox/HostInfo/X", "1", None);
    guest.set("/T/a", "1", Some("BAD"));
    guest.del("/T/missing");
    assert!(f.notifications.recv_timeout(QUIET).is_err());
}
