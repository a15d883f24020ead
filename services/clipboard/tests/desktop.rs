//! The desktop backend against a real X server: Xvfb with xclip playing the host application.
//! Skips, saying so, when Xvfb or xclip is missing (`tests/scripts/install-desktop-clipboard-deps.sh`
//! installs them). Run: `cargo test -p vmmdev-svc-clipboard --features desktop --test desktop`.

#![cfg(feature = "desktop")]

mod common;

use std::time::{Duration, Instant};

use common::*;
use vmmdev_protocol::status::Status;
use vmmdev_svc_clipboard::desktop::DesktopBackend;
use vmmdev_svc_clipboard::{Backend, Content, DesktopSync, Format, Formats};
use vmmdev_test_xvfb::{Xvfb, available};

#[test]
fn desktop_clipboard_carries_text_both_ways() {
    if !available("desktop_clipboard_carries_text_both_ways") {
        return;
    }
    let x = Xvfb::start();
    // SAFETY: set before the service (and its X connection) starts; this test binary has no other
    // test that reads the environment concurrently.
    unsafe { std::env::set_var("DISPLAY", x.display()) };
    let f = Fixture::new("mode=bidirectional,backend=desktop");
    let guest = f.modern();

    // Host API → desktop: a host application pastes what the host set.
    f.host()
        .set_content(&Content {
            text: Some("Grüße vom Host".into()),
            ..Content::default()
        })
        .expect("set");
    x.wait_for("UTF8_STRING", "Grüße vom Host".as_bytes());

    // Desktop → guest: a host application copies; the sync tells the guest, which reads it.
    x.copy("UTF8_STRING", "copied on the desktop".as_bytes());
    guest.drain();
    f.host().sync_host().expect("sync");
    assert_eq!(guest.get_formats().0, Status::VINF_SUCCESS);
    assert_eq!(guest.read(1, 256).1, utf16("copied on the desktop\0"));

    // Guest → desktop: once read, the guest's text is on the desktop clipboard.
    guest.report_formats(1);
    let mut host = f.host();
    let reader = std::thread::spawn(move || host.read(Format::Text, Duration::from_secs(5)));
    let (_, parked) = guest.peek_wait();
    parked.recv_timeout(DEADLINE).expect("request");
    let (_, context, format) = guest.get_read_cid();
    assert_eq!(
        guest.write(context, format, &utf16("vom Gast\r\n\0")),
        Status::VINF_SUCCESS
    );
    reader.join().expect("reader").expect("read");
    x.wait_for("UTF8_STRING", "vom Gast\n".as_bytes());

    // The sync does both without being asked: a desktop copy reaches the guest...
    let _sync = DesktopSync::start(f.host(), Duration::from_millis(20)).expect("sync thread");
    x.copy("UTF8_STRING", "copied again".as_bytes());
    let (_, parked) = guest.peek_wait();
    parked
        .recv_timeout(DEADLINE)
        .expect("announced by the sync");
    assert_eq!(guest.get_formats().0, Status::VINF_SUCCESS);
    assert_eq!(guest.read(1, 256).1, utf16("copied again\0"));

    // ...and a guest copy reaches the desktop with no host read: the sync fetches it.
    guest.report_formats(1);
    let (_, parked) = guest.peek_wait();
    parked
        .recv_timeout(DEADLINE)
        .expect("the sync asks for the copy");
    let (_, context, format) = guest.get_read_cid();
    assert_eq!(
        guest.write(context, format, &utf16("zweite Kopie\0")),
        Status::VINF_SUCCESS
    );
    x.wait_for("UTF8_STRING", "zweite Kopie".as_bytes());

    // On X11 the backend learns of copies from the server: a quiet sync reads nothing, a copy
    // makes exactly one sync due.
    let mut backend = DesktopBackend::open().expect("the backend opens");
    assert!(backend.take_outside_change(), "the first sync compares");
    assert!(!backend.take_outside_change(), "nothing happened since");
    x.copy("UTF8_STRING", "dritte Kopie".as_bytes());
    let deadline = Instant::now() + DEADLINE;
    while !backend.take_outside_change() {
        assert!(Instant::now() < deadline, "the copy was never noticed");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!backend.take_outside_change(), "one copy, one sync");
    assert_eq!(backend.formats().expect("formats"), Formats::UNICODETEXT);
    assert_eq!(
        backend.load().expect("load").text.as_deref(),
        Some("dritte Kopie")
    );
}
