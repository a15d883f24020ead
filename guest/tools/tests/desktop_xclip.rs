//! The desktop clipboard of `vboxcontrol clipboard bridge` against a real X server: Xvfb, with xclip
//! both as the bridge's tool and as the X application that copies and pastes. Skips, saying so, when
//! Xvfb or xclip is missing (`tests/scripts/install-desktop-clipboard-deps.sh` installs them).

#[path = "../../ioctl/tests/support/inproc_driver.rs"]
mod inproc_driver;

use std::ffi::OsString;
use std::time::Duration;

use inproc_driver::InprocDriver;
use vmmdev_guest_ioctl::Device;
use vmmdev_guest_ioctl::clipboard::{ClipboardClient, Format, Formats, encoding};
use vmmdev_guest_tools::clipboard::bridge::Bridge;
use vmmdev_guest_tools::clipboard::desktop::{self, DesktopClipboard, Session, ToolClipboard};
use vmmdev_hgcm::{Hgcm, HgcmConfig, Parm};
use vmmdev_svc_clipboard::{ClipboardHost, Content, SERVICE_NAME};
use vmmdev_test_xvfb::{Xvfb, available};

/// The bridge's clipboard tool for `x`'s display.
fn tool_clipboard(x: &Xvfb) -> ToolClipboard {
    let display = OsString::from(x.display());
    let path = std::env::var_os("PATH");
    let found = desktop::detect(
        |name| (name == "DISPLAY").then(|| display.clone()),
        path.as_deref(),
    )
    .expect("xclip is found");
    assert_eq!(found.session(), Session::X11);
    found
}

/// A 1x1 24-bit BMP file.
fn bmp() -> Vec<u8> {
    let mut dib = Vec::new();
    dib.extend_from_slice(&40u32.to_le_bytes());
    dib.extend_from_slice(&1i32.to_le_bytes());
    dib.extend_from_slice(&1i32.to_le_bytes());
    dib.extend_from_slice(&1u16.to_le_bytes());
    dib.extend_from_slice(&24u16.to_le_bytes());
    dib.extend_from_slice(&[0; 24]);
    dib.extend_from_slice(&[0x11, 0x22, 0x33, 0x00]);
    encoding::dib_to_bmp(&dib).expect("valid DIB")
}

#[test]
fn xclip_carries_text_html_and_bitmaps_through_the_x_clipboard() {
    if !available("xclip_carries_text_html_and_bitmaps_through_the_x_clipboard") {
        return;
    }
    let x = Xvfb::start();
    let clipboard = tool_clipboard(&x);
    clipboard
        .write(Format::UnicodeText, "Grüße ✓\nzwei".as_bytes())
        .unwrap();
    assert_eq!(x.paste("UTF8_STRING"), "Grüße ✓\nzwei".as_bytes());
    assert_eq!(clipboard.formats().unwrap(), Formats::UNICODETEXT);
    x.copy("text/html", b"<b>x</b>");
    assert_eq!(clipboard.formats().unwrap(), Formats::HTML);
    assert_eq!(
        clipboard.read(Format::Html).unwrap().as_deref(),
        Some(&b"<b>x</b>"[..])
    );
    clipboard.write(Format::Bitmap, &bmp()).unwrap();
    assert_eq!(clipboard.read(Format::Bitmap).unwrap(), Some(bmp()));
}

#[test]
fn the_bridge_syncs_a_real_x_clipboard_with_the_host_both_ways() {
    if !available("the_bridge_syncs_a_real_x_clipboard_with_the_host_both_ways") {
        return;
    }
    let x = Xvfb::start();
    let hgcm = Hgcm::new(HgcmConfig::default());
    hgcm.register_builtin(vmmdev_svc_clipboard::clipboard_entry, "mode=bidirectional")
        .expect("register the clipboard service");
    let device = Device::with_transport(InprocDriver::new(hgcm)).expect("version handshake");
    let hgcm = device.transport().vm.device.hgcm();
    let mut host = ClipboardHost::new(|function, params: &mut [Parm]| {
        hgcm.host_call(SERVICE_NAME, function, params)
    });
    let client = ClipboardClient::connect(&device).unwrap();
    let bridge = Bridge::new(
        &client,
        tool_clipboard(&x),
        Box::new(|message| panic!("{message}")),
    );
    bridge.prime();

    // Host to guest: the X application pastes what the host copied.
    host.set_content(&Content {
        text: Some("vom Host: ß".to_owned()),
        ..Content::default()
    })
    .unwrap();
    while let Some(event) = client.poll_event().unwrap() {
        assert!(bridge.on_host_event(event));
    }
    assert_eq!(x.paste("UTF8_STRING"), "vom Host: ß".as_bytes());
    assert!(
        !bridge.check_desktop(),
        "the host's text is not announced back"
    );

    // Guest to host: an X application copies, the bridge announces it and answers the host's read.
    x.copy("UTF8_STRING", "aus X11: ü".as_bytes());
    assert!(bridge.check_desktop());
    let read = std::thread::scope(|scope| {
        let reader = scope
            .spawn(|| host.read_guest(vmmdev_svc_clipboard::Format::Text, Duration::from_secs(10)));
        let event = client.next_event(Some(Duration::from_secs(10))).unwrap();
        assert!(bridge.on_host_event(event));
        reader.join().unwrap()
    });
    assert_eq!(read.unwrap(), "aus X11: ü".as_bytes());
}
