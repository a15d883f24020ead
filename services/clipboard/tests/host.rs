//! The host side and the service's robustness: modes enforced on every operation, asynchronous
//! reads that time out without blocking anything, disconnects, reset, save/restore, limits, and a
//! hostile-parameter sweep.

mod common;

use std::time::{Duration, Instant};

use common::*;
use vmmdev_hgcm::{Hgcm, HgcmConfig, HgcmSnapshot, Parm};
use vmmdev_protocol::services::clipboard::{Function, HostFunction, Mode};
use vmmdev_protocol::status::Status;
use vmmdev_svc_clipboard::host::{
    HOST_FN_FETCH_GUEST_DATA, HOST_FN_GET_MODE, HOST_FN_REQUEST_GUEST_DATA,
};
use vmmdev_svc_clipboard::{Content, Format, HostError};

fn text(s: &str) -> Content {
    Content {
        text: Some(s.into()),
        ..Content::default()
    }
}

fn refused(status: Status) -> impl Fn(&HostError<vmmdev_hgcm::HostCallError>) -> bool {
    move |e| matches!(e, HostError::Refused { status: s, .. } if *s == status)
}

#[test]
fn without_configuration_the_mode_is_off() {
    let f = Fixture::new("");
    assert_eq!(f.host().mode().expect("mode"), Mode::OFF);
}

#[test]
fn host_to_guest_mode_refuses_guest_announcements_and_writes() {
    let f = Fixture::new("mode=host-to-guest");
    let guest = f.modern();
    assert_eq!(guest.report_formats(1), Status::VERR_ACCESS_DENIED);
    assert_eq!(guest.write(1, 1, &[0, 0]), Status::VERR_ACCESS_DENIED);
    f.host().set_content(&text("x")).expect("set");
    assert_eq!(guest.read(1, 64).0, Status::VINF_SUCCESS);
}

#[test]
fn guest_to_host_mode_refuses_guest_reads_and_keeps_host_announcements_away() {
    let f = Fixture::new("mode=guest-to-host");
    let guest = f.modern();
    f.host().set_content(&text("secret")).expect("set");
    assert_eq!(
        guest.peek().0,
        Status::VERR_TRY_AGAIN,
        "no announcement queued"
    );
    assert_eq!(guest.read(1, 64).0, Status::VERR_ACCESS_DENIED);
    assert_eq!(guest.report_formats(1), Status::VINF_SUCCESS);
}

#[test]
fn off_mode_refuses_both_directions_including_host_reads() {
    let f = Fixture::bidirectional();
    let guest = f.modern();
    guest.report_formats(1);
    f.host().set_mode(Mode::OFF).expect("set mode");
    assert_eq!(guest.read(1, 64).0, Status::VERR_ACCESS_DENIED);
    assert_eq!(guest.report_formats(1), Status::VERR_ACCESS_DENIED);
    let error = f
        .host()
        .read_guest(Format::Text, Duration::from_secs(1))
        .expect_err("refused");
    assert!(refused(Status::VERR_ACCESS_DENIED)(&error), "{error}");
}

#[test]
fn enabling_host_to_guest_announces_the_host_content() {
    let f = Fixture::new("mode=off");
    let guest = f.modern();
    f.host().set_content(&text("x")).expect("set");
    assert_eq!(guest.peek().0, Status::VERR_TRY_AGAIN);
    f.host().set_mode(Mode::BIDIRECTIONAL).expect("set mode");
    assert_eq!(guest.get_formats(), (Status::VINF_SUCCESS, 1));
}

#[test]
fn unknown_mode_turns_sharing_off() {
    let f = Fixture::bidirectional();
    let status = f.host_call(HostFunction::SET_MODE.raw(), &mut [Parm::U32(9)]);
    assert_eq!(status, Status::VERR_NOT_SUPPORTED);
    let mut params = [Parm::U32(7)];
    f.host_call(HOST_FN_GET_MODE, &mut params);
    assert_eq!(params[0].as_u32(), Some(Mode::OFF.raw()));
}

#[test]
fn host_read_of_a_format_the_guest_does_not_offer_is_not_found() {
    let f = Fixture::bidirectional();
    let guest = f.modern();
    guest.report_formats(1);
    let error = f
        .host()
        .read_guest(Format::Html, Duration::from_secs(1))
        .expect_err("not offered");
    assert!(refused(Status::VERR_NOT_FOUND)(&error), "{error}");
}

#[test]
fn guest_that_never_answers_times_out_without_blocking_the_service() {
    let f = Fixture::bidirectional();
    let guest = f.modern();
    guest.report_formats(1);
    let started = Instant::now();
    let error = f
        .host()
        .read_guest(Format::Text, Duration::from_millis(100))
        .expect_err("times out");
    assert!(matches!(error, HostError::Timeout(_)), "{error}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // The service answered calls all along, and still does.
    assert_eq!(guest.report_formats(1), Status::VINF_SUCCESS);
    assert_eq!(f.host().mode().expect("mode"), Mode::BIDIRECTIONAL);
}

#[test]
fn late_answer_after_the_timeout_is_dropped_with_success() {
    let f = Fixture::bidirectional();
    let guest = f.modern();
    guest.report_formats(1);
    let mut params = [Parm::U32(1), Parm::U32(1), Parm::U32(0)];
    assert_eq!(
        f.host_call(HOST_FN_REQUEST_GUEST_DATA, &mut params),
        Status::VINF_SUCCESS
    );
    let id = params[2].as_u32().expect("id");
    let (_, context, format) = guest.get_read_cid();
    std::thread::sleep(Duration::from_millis(20));
    let mut fetch = [Parm::U32(id), out(64), Parm::U32(0)];
    assert_eq!(
        f.host_call(HOST_FN_FETCH_GUEST_DATA, &mut fetch),
        Status::VERR_TIMEOUT
    );
    assert_eq!(
        guest.write(context, format, &utf16("late\0")),
        Status::VINF_SUCCESS
    );
    let mut again = [Parm::U32(id), out(64), Parm::U32(0)];
    assert_eq!(
        f.host_call(HOST_FN_FETCH_GUEST_DATA, &mut again),
        Status::VERR_NOT_FOUND
    );
}

#[test]
fn timed_out_request_leaves_the_guest_queue() {
    let f = Fixture::bidirectional();
    let guest = f.modern();
    guest.report_formats(1);
    let mut params = [Parm::U32(1), Parm::U32(1), Parm::U32(0)];
    f.host_call(HOST_FN_REQUEST_GUEST_DATA, &mut params);
    let id = params[2].as_u32().expect("id");
    std::thread::sleep(Duration::from_millis(20));
    let mut fetch = [Parm::U32(id), out(64), Parm::U32(0)];
    assert_eq!(
        f.host_call(HOST_FN_FETCH_GUEST_DATA, &mut fetch),
        Status::VERR_TIMEOUT
    );
    assert_eq!(guest.peek().0, Status::VERR_TRY_AGAIN);
}

#[test]
fn fetch_into_a_small_buffer_keeps_the_answer() {
    let f = Fixture::bidirectional();
    let guest = f.modern();
    guest.report_formats(1);
    let mut params = [Parm::U32(1), Parm::U32(5000), Parm::U32(0)];
    f.host_call(HOST_FN_REQUEST_GUEST_DATA, &mut params);
    let id = params[2].as_u32().expect("id");
    let (_, context, format) = guest.get_read_cid();
    guest.write(context, format, &utf16("twelve bytes\0"));
    let mut small = [Parm::U32(id), out(4), Parm::U32(0)];
    assert_eq!(
        f.host_call(HOST_FN_FETCH_GUEST_DATA, &mut small),
        Status::VERR_BUFFER_OVERFLOW
    );
    assert_eq!(small[2].as_u32(), Some(12));
    let mut fits = [Parm::U32(id), out(12), Parm::U32(0)];
    assert_eq!(
        f.host_call(HOST_FN_FETCH_GUEST_DATA, &mut fits),
        Status::VINF_SUCCESS
    );
    assert_eq!(reported(&fits, 1), b"twelve bytes");
}

#[test]
fn disconnect_of_the_owner_fails_its_pending_read() {
    let f = Fixture::bidirectional();
    let guest = f.modern();
    guest.report_formats(1);
    let mut host = f.host();
    let reader = std::thread::spawn(move || host.read_guest(Format::Text, Duration::from_secs(5)));
    let (_, parked) = guest.peek_wait();
    parked.recv_timeout(DEADLINE).expect("request queued");
    guest.disconnect();
    let error = reader.join().expect("reader").expect_err("cancelled");
    assert!(refused(Status::VERR_CANCELLED)(&error), "{error}");
    assert!(!f.host().state().expect("state").guest_owns());
}

#[test]
fn reset_forgets_guest_ownership_and_keeps_the_host_content() {
    let f = Fixture::bidirectional();
    f.host().set_content(&text("host")).expect("set");
    let guest = f.modern();
    guest.report_formats(1);
    f.hgcm.reset();
    let state = f.host().state().expect("state");
    assert!(!state.guest_owns());
    let fresh = f.connect();
    fresh.report_features();
    assert_eq!(
        fresh.peek().0,
        Status::VINF_SUCCESS,
        "new clients get an announcement"
    );
}

#[test]
fn save_restore_keeps_mode_content_features_and_queue() {
    let source = Fixture::new("mode=host-to-guest");
    let guest = source.modern();
    source.host().set_content(&text("kept")).expect("set");
    let bytes = source.hgcm.save().expect("saves").to_bytes();
    source.hgcm.shutdown();

    let target = Hgcm::new(HgcmConfig::default());
    target
        .register_builtin(vmmdev_svc_clipboard::clipboard_entry, "mode=bidirectional")
        .expect("registers");
    target
        .restore(&HgcmSnapshot::from_bytes(&bytes).expect("parses"))
        .expect("restores");
    let restored = Guest {
        hgcm: target.clone(),
        client: guest.client,
    };
    let f = Fixture { hgcm: target };
    assert_eq!(f.host().mode().expect("mode"), Mode::HOST_TO_GUEST);
    assert_eq!(
        restored.get_formats(),
        (Status::VINF_SUCCESS, 1),
        "queue restored"
    );
    assert_eq!(restored.read(1, 64).1, utf16("kept\0"));
    // Features survived: a request uses the context-ID message.
    f.host().set_mode(Mode::BIDIRECTIONAL).expect("mode");
    restored.report_formats(1);
    let mut params = [Parm::U32(1), Parm::U32(5000), Parm::U32(0)];
    f.host_call(HOST_FN_REQUEST_GUEST_DATA, &mut params);
    assert_eq!(restored.peek().1, 5);
}

#[test]
fn oversized_data_is_refused_both_ways() {
    let f = Fixture::new("mode=bidirectional,max_data=4096");
    let error = f
        .host()
        .set_content(&text(&"x".repeat(4097)))
        .expect_err("too large");
    assert!(refused(Status::VERR_TOO_MUCH_DATA)(&error), "{error}");
    let guest = f.modern();
    guest.report_formats(1);
    let mut params = [Parm::U32(1), Parm::U32(5000), Parm::U32(0)];
    f.host_call(HOST_FN_REQUEST_GUEST_DATA, &mut params);
    let (_, context, format) = guest.get_read_cid();
    assert_eq!(
        guest.write(context, format, &vec![b'a'; 4098]),
        Status::VERR_TOO_MUCH_DATA
    );
}

#[test]
fn host_reads_are_bounded() {
    let f = Fixture::bidirectional();
    let guest = f.modern();
    guest.report_formats(1);
    for _ in 0..64 {
        let mut params = [Parm::U32(1), Parm::U32(60_000), Parm::U32(0)];
        assert_eq!(
            f.host_call(HOST_FN_REQUEST_GUEST_DATA, &mut params),
            Status::VINF_SUCCESS
        );
    }
    let mut params = [Parm::U32(1), Parm::U32(60_000), Parm::U32(0)];
    assert_eq!(
        f.host_call(HOST_FN_REQUEST_GUEST_DATA, &mut params),
        Status::VERR_OUT_OF_RESOURCES
    );
}

/// A small deterministic generator (xorshift), so a failure names its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn hostile_parm(rng: &mut Rng) -> Parm {
    let interesting = [
        0,
        1,
        2,
        3,
        4,
        5,
        0xFF,
        u64::from(u32::MAX),
        u64::MAX,
        1 << 63,
    ];
    let value = if rng.next() % 2 == 0 {
        interesting[(rng.next() % interesting.len() as u64) as usize]
    } else {
        rng.next()
    };
    match rng.next() % 4 {
        0 => Parm::U32(value as u32),
        1 => Parm::U64(value),
        2 => bytes_in(&vec![(value & 0xFF) as u8; (rng.next() % 300) as usize]),
        _ => out((rng.next() % 300) as usize),
    }
}

#[test]
fn hostile_parameters_never_break_the_service() {
    let f = Fixture::bidirectional();
    f.host().set_content(&text("content")).expect("set");
    let guest = f.modern();
    let legacy = f.legacy();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for round in 0..3000 {
        let function = (rng.next() % 32) as u32;
        let count = (rng.next() % 7) as usize;
        let params: Vec<Parm> = (0..count).map(|_| hostile_parm(&mut rng)).collect();
        let client = if round % 2 == 0 { &guest } else { &legacy };
        let (id, rx) = client.submit(Function(function), params);
        if rx.recv_timeout(Duration::from_millis(20)).is_err() {
            // A parked wait: cancel it like a guest driver would.
            let _ = f.hgcm.cancel(id);
        }
        if round % 10 == 0 {
            let host_fn =
                [1, 3, 0x100, 0x101, 0x102, 0x103, 0x104, 0x105][(rng.next() % 8) as usize];
            let mut params: Vec<Parm> = (0..(rng.next() % 5))
                .map(|_| hostile_parm(&mut rng))
                .collect();
            let _ = f.hgcm.host_call(
                vmmdev_protocol::services::clipboard::SERVICE_NAME,
                host_fn,
                &mut params,
            );
        }
    }
    // Still alive and serving: a full round trip works.
    f.host().set_mode(Mode::BIDIRECTIONAL).expect("mode");
    f.host().set_content(&text("after")).expect("set");
    let fresh = f.modern();
    assert_eq!(fresh.read(1, 64).1, utf16("after\0"));
    assert!(f.hgcm.services().iter().all(|s| !s.failed));
}

#[test]
fn sync_without_an_outside_change_announces_nothing() {
    let f = Fixture::bidirectional();
    f.host().set_content(&text("x")).expect("set");
    let guest = f.modern();
    f.host().sync_host().expect("sync");
    assert_eq!(guest.peek().0, Status::VERR_TRY_AGAIN);
}

#[test]
fn formats_change_notifications_name_the_owner() {
    let f = Fixture::bidirectional();
    let notifications = f.hgcm.subscribe();
    let guest = f.modern();
    guest.report_formats(5);
    f.host().set_content(&text("x")).expect("set");
    let changes: Vec<(u32, u32)> = std::iter::from_fn(|| notifications.recv_timeout(QUIET).ok())
        .filter(|n| n.code == vmmdev_svc_clipboard::host::NOTIFY_FORMATS_CHANGED)
        .filter_map(|n| vmmdev_svc_clipboard::host::decode_formats_changed(&n.payload))
        .map(|(formats, owner)| (formats.bits(), owner))
        .collect();
    assert_eq!(changes, [(5, 2), (1, 1)]);
}

#[test]
fn every_guest_announcement_counts_even_in_the_same_formats() {
    let f = Fixture::bidirectional();
    let guest = f.modern();
    let before = f.host().state().expect("state").announcements;
    guest.report_formats(1);
    let first = f.host().state().expect("state");
    assert!(first.guest_owns());
    assert_eq!(first.announcements, before.wrapping_add(1));
    // A second copy in the same format is a new announcement.
    guest.report_formats(1);
    let second = f.host().state().expect("state");
    assert_eq!(second.announcements, before.wrapping_add(2));
    assert_eq!(second.guest_formats, first.guest_formats);
    // The host's own content does not count as a guest announcement.
    f.host().set_content(&text("x")).expect("set");
    assert_eq!(
        f.host().state().expect("state").announcements,
        second.announcements
    );
}

#[test]
fn query_state_keeps_its_three_parameter_form() {
    let f = Fixture::bidirectional();
    let guest = f.modern();
    guest.report_formats(1);
    let mut params = [Parm::U32(0), Parm::U32(0), Parm::U32(0)];
    let status = f
        .hgcm
        .host_call(
            vmmdev_svc_clipboard::SERVICE_NAME,
            vmmdev_svc_clipboard::host::HOST_FN_QUERY_STATE,
            &mut params,
        )
        .expect("host call");
    assert_eq!(status, 0);
    assert_eq!(params[0].as_u32(), Some(1));
    assert_eq!(params[2].as_u32(), Some(2));
}
