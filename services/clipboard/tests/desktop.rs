//! The desktop backend against a real X server: Xvfb with xclip playing the host application.
//! Skips, saying so, when Xvfb or xclip is missing (`tests/scripts/install-desktop-clipboard-deps.sh`
//! installs them). Run: `cargo test -p vmmdev-svc-clipboard --features desktop --test desktop`.

#![cfg(feature = "desktop")]

mod common;

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use vmmdev_protocol::status::Status;
use vmmdev_svc_clipboard::{Content, DesktopSync, Format};

fn installed(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// An Xvfb server on a free display, killed on drop.
struct Xvfb {
    child: Child,
    display: String,
}

impl Xvfb {
    fn start() -> Xvfb {
        let display = format!(":{}", 90 + std::process::id() % 100);
        let child = Command::new("Xvfb")
            .args([
                display.as_str(),
                "-nolisten",
                "tcp",
                "-screen",
                "0",
                "64x64x24",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb starts");
        let socket = format!("/tmp/.X11-unix/X{}", &display[1..]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::path::Path::new(&socket).exists() {
            assert!(Instant::now() < deadline, "Xvfb did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        Xvfb { child, display }
    }

    fn xclip_out(&self, target: &str) -> String {
        let output = Command::new("xclip")
            .args(["-o", "-selection", "clipboard", "-t", target])
            .env("DISPLAY", &self.display)
            .output()
            .expect("xclip runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn xclip_in(&self, text: &str) {
        let mut child = Command::new("xclip")
            .args(["-i", "-selection", "clipboard"])
            .env("DISPLAY", &self.display)
            .stdin(Stdio::piped())
            .spawn()
            .expect("xclip runs");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write");
        child.wait().expect("xclip forks and exits");
        // The forked xclip takes the selection a moment later: wait until it serves the text.
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.xclip_out("UTF8_STRING") != text {
            assert!(Instant::now() < deadline, "xclip never took the clipboard");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn desktop_clipboard_carries_text_both_ways() {
    if !installed("Xvfb") || !installed("xclip") {
        eprintln!(
            "SKIPPED desktop_clipboard_carries_text_both_ways: Xvfb or xclip is not installed \
             (tests/scripts/install-desktop-clipboard-deps.sh)"
        );
        return;
    }
    let x = Xvfb::start();
    // SAFETY: set before the service (and its X connection) starts; this test binary has no other
    // test that reads the environment concurrently.
    unsafe { std::env::set_var("DISPLAY", &x.display) };
    let f = Fixture::new("mode=bidirectional,backend=desktop");
    let guest = f.modern();

    // Host API → desktop: a host application pastes what the host set.
    f.host()
        .set_content(&Content {
            text: Some("Grüße vom Host".into()),
            ..Content::default()
        })
        .expect("set");
    assert_eq!(x.xclip_out("UTF8_STRING"), "Grüße vom Host");

    // Desktop → guest: a host application copies; the sync tells the guest, which reads it.
    x.xclip_in("copied on the desktop");
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
    assert_eq!(x.xclip_out("UTF8_STRING"), "vom Gast\n");

    // The sync does both without being asked: a desktop copy reaches the guest...
    let _sync = DesktopSync::start(f.host(), Duration::from_millis(20)).expect("sync thread");
    x.xclip_in("copied again");
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
    let deadline = Instant::now() + DEADLINE;
    while x.xclip_out("UTF8_STRING") != "zweite Kopie" {
        assert!(
            Instant::now() < deadline,
            "the guest's copy never reached the desktop"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
