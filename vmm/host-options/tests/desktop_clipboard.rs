//! `--clipboard-backend desktop` against a real X server (Xvfb, with xclip as the desktop
//! application): the binaries' option, the service's desktop backend and the sync thread together.
//! Skips, saying so, where Xvfb or xclip is missing. Run: `cargo test -p vmmdev-host-options
//! --features desktop-clipboard --test desktop_clipboard`.

#![cfg(feature = "desktop-clipboard")]

#[path = "../../../services/clipboard/tests/common/mod.rs"]
mod common;

use clap::Parser;
use common::{DEADLINE, Fixture, utf16};
use vmmdev_hgcm::Status;
use vmmdev_host_options::HostOptions;
use vmmdev_test_xvfb::{Xvfb, available};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    host: HostOptions,
}

#[test]
fn desktop_backend_carries_copies_both_ways_and_names_a_missing_display() {
    if !available("desktop_backend_carries_copies_both_ways_and_names_a_missing_display") {
        return;
    }
    let host = Cli::try_parse_from(["prog", "--clipboard-backend", "desktop"])
        .expect("the option parses")
        .host;
    assert_eq!(
        host.unsupported(),
        None,
        "this build has the desktop clipboard"
    );

    // No display: one line naming the option and what is missing.
    // SAFETY: this test binary has one test, and nothing else reads the environment meanwhile.
    unsafe {
        std::env::remove_var("DISPLAY");
        std::env::remove_var("WAYLAND_DISPLAY");
    }
    let error = host
        .build_hgcm()
        .expect_err("no display to open")
        .to_string();
    assert!(
        error.starts_with(
            "--clipboard-backend desktop: the host desktop's clipboard cannot be opened"
        ) && error.contains("DISPLAY=None"),
        "{error}"
    );

    let x = Xvfb::start();
    // SAFETY: as above.
    unsafe { std::env::set_var("DISPLAY", x.display()) };
    let hgcm = host.build_hgcm().expect("the desktop clipboard opens");
    let sync = host
        .start_clipboard_sync(&hgcm)
        .expect("the sync thread starts")
        .expect("the desktop backend is synced");
    let guest = Fixture { hgcm: hgcm.clone() }.modern();

    // An X application copies; with no host call the guest is told and reads it.
    let (_, parked) = guest.peek_wait();
    x.copy("UTF8_STRING", "vom Desktop: ß".as_bytes());
    parked
        .recv_timeout(DEADLINE)
        .expect("the sync announces the copy");
    assert_eq!(guest.get_formats().0, Status::VINF_SUCCESS);
    assert_eq!(guest.read(1, 256).1, utf16("vom Desktop: ß\0"));

    // The guest copies; the sync fetches it and an X application pastes it.
    assert_eq!(guest.report_formats(1), Status::VINF_SUCCESS);
    let (_, parked) = guest.peek_wait();
    parked
        .recv_timeout(DEADLINE)
        .expect("the sync asks for the copy");
    let (status, context, format) = guest.get_read_cid();
    assert_eq!(status, Status::VINF_SUCCESS);
    assert_eq!(
        guest.write(context, format, &utf16("vom Gast: ü\r\n\0")),
        Status::VINF_SUCCESS
    );
    x.wait_for("UTF8_STRING", "vom Gast: ü\n".as_bytes());

    drop(sync);
    hgcm.shutdown();
}
