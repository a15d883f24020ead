//! The shared-clipboard client against the real `VBoxSharedClipboard` service, without a VM: the
//! test transport plays the vboxguest driver's ioctl layer on top of the in-process guest, which
//! drives the real device model and HGCM framework.

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use support::inproc_driver::InprocDriver;
use vmmdev_guest_ioctl::Device;
use vmmdev_guest_ioctl::clipboard::{
    ClipboardClient, ClipboardError, Format, Formats, HostEvent, Protocol, encoding,
};
use vmmdev_hgcm::{Hgcm, HgcmConfig, HostCallError, Parm};
use vmmdev_svc_clipboard::{ClipboardHost, Content, HostError, Mode, SERVICE_NAME};

/// How long a host read waits for the guest's answer in tests that expect one.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

fn device_with_mode(mode: &str) -> Device<InprocDriver> {
    let hgcm = Hgcm::new(HgcmConfig::default());
    hgcm.register_builtin(
        vmmdev_svc_clipboard::clipboard_entry,
        &format!("mode={mode}"),
    )
    .expect("register the clipboard service");
    Device::with_transport(InprocDriver::new(hgcm)).expect("version handshake")
}

fn device() -> Device<InprocDriver> {
    device_with_mode("bidirectional")
}

type HostCall<'a> = Box<dyn FnMut(u32, &mut [Parm]) -> Result<i32, HostCallError> + 'a>;

/// The host side of the service in `device`.
fn host(device: &Device<InprocDriver>) -> ClipboardHost<HostCall<'_>> {
    let hgcm = device.transport().vm.device.hgcm();
    ClipboardHost::new(Box::new(move |function, params: &mut [Parm]| {
        hgcm.host_call(SERVICE_NAME, function, params)
    }))
}

fn text(text: &str) -> Content {
    Content {
        text: Some(text.to_owned()),
        ..Content::default()
    }
}

/// A 2x2 24-bit BMP file.
fn bmp() -> Vec<u8> {
    let mut dib = Vec::new();
    dib.extend_from_slice(&40u32.to_le_bytes());
    dib.extend_from_slice(&2i32.to_le_bytes());
    dib.extend_from_slice(&2i32.to_le_bytes());
    dib.extend_from_slice(&1u16.to_le_bytes());
    dib.extend_from_slice(&24u16.to_le_bytes());
    dib.extend_from_slice(&[0; 24]);
    dib.extend_from_slice(&[0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0, 0]);
    dib.extend_from_slice(&[0x70, 0x80, 0x90, 0xA0, 0xB0, 0xC0, 0, 0]);
    encoding::dib_to_bmp(&dib).expect("valid DIB")
}

/// Answers host data requests on `client` with `user` data in `format` until one was
/// answered.
fn answer_one(client: &ClipboardClient<'_, InprocDriver>, format: Format, user: &[u8]) {
    let wire = encoding::to_wire(format, user).expect("encodable");
    loop {
        match client
            .next_event(Some(ANSWER_WITHIN))
            .expect("host message")
        {
            HostEvent::DataRequest(request) => {
                assert_eq!(request.format(), Some(format));
                assert!(request.context.is_some(), "a context-ID request");
                client.write(&request, &wire).expect("answer");
                return;
            }
            HostEvent::Formats(_) | HostEvent::Canceled => {}
            HostEvent::Quit => panic!("the service closed the client"),
        }
    }
}

/// Reads the guest's data in `format` from the host while `client` answers with `user`.
fn host_reads_guest(
    device: &Device<InprocDriver>,
    client: &ClipboardClient<'_, InprocDriver>,
    format: Format,
    user: &[u8],
) -> Vec<u8> {
    let host_format = match format {
        Format::UnicodeText => vmmdev_svc_clipboard::Format::Text,
        Format::Html => vmmdev_svc_clipboard::Format::Html,
        Format::Bitmap => vmmdev_svc_clipboard::Format::Bitmap,
    };
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| host(device).read_guest(host_format, ANSWER_WITHIN));
        answer_one(client, format, user);
        reader.join().expect("host reader").expect("host read")
    })
}

#[test]
fn the_client_negotiates_the_message_protocol() {
    let device = device();
    let client = ClipboardClient::connect(&device).unwrap();
    assert_eq!(client.protocol(), Protocol::Message);
}

#[test]
fn a_new_client_hears_the_host_formats_first() {
    let device = device();
    host(&device).set_content(&text("x")).unwrap();
    let client = ClipboardClient::connect(&device).unwrap();
    assert_eq!(
        client.poll_event().unwrap(),
        Some(HostEvent::Formats(Formats::UNICODETEXT))
    );
    assert_eq!(client.poll_event().unwrap(), None);
}

#[test]
fn host_text_with_non_ascii_reaches_the_guest() {
    let device = device();
    let original = "grüße, 日本語 🦀\nzweite Zeile\n";
    host(&device).set_content(&text(original)).unwrap();
    let client = ClipboardClient::connect(&device).unwrap();
    let wire = client.read(Format::UnicodeText).unwrap().expect("text");
    assert!(wire.ends_with(&[0, 0]), "NUL-terminated on the wire");
    assert_eq!(encoding::text_from_wire(&wire).unwrap(), original);
}

#[test]
fn a_mebibyte_of_host_text_is_read_whole() {
    let device = device();
    let original: String = "0123456789abcdef\n".repeat(64 << 10);
    host(&device).set_content(&text(&original)).unwrap();
    let client = ClipboardClient::connect(&device).unwrap();
    let wire = client.read(Format::UnicodeText).unwrap().expect("text");
    assert_eq!(encoding::text_from_wire(&wire).unwrap(), original);
}

#[test]
fn a_format_the_host_lacks_reads_as_none() {
    let device = device();
    host(&device).set_content(&text("only text")).unwrap();
    let client = ClipboardClient::connect(&device).unwrap();
    assert_eq!(client.read(Format::Html).unwrap(), None);
}

#[test]
fn host_html_and_bitmaps_reach_the_guest() {
    let device = device();
    let content = Content {
        html: Some("<p>ä</p>".to_owned()),
        bitmap: Some(bmp()),
        ..Content::default()
    };
    host(&device).set_content(&content).unwrap();
    let client = ClipboardClient::connect(&device).unwrap();
    let html = client.read(Format::Html).unwrap().expect("html");
    assert_eq!(
        encoding::html_from_wire(&html).unwrap(),
        "<p>ä</p>".as_bytes()
    );
    let dib = client.read(Format::Bitmap).unwrap().expect("bitmap");
    assert_eq!(encoding::dib_to_bmp(&dib).unwrap(), bmp());
}

#[test]
fn guest_text_reaches_the_host() {
    let device = device();
    let client = ClipboardClient::connect(&device).unwrap();
    client.report_formats(Formats::UNICODETEXT).unwrap();
    let original = "vom Gast: ünïcödé\nline 2";
    let read = host_reads_guest(&device, &client, Format::UnicodeText, original.as_bytes());
    assert_eq!(read, original.as_bytes());
}

#[test]
fn guest_html_and_bitmaps_reach_the_host() {
    let device = device();
    let client = ClipboardClient::connect(&device).unwrap();
    client
        .report_formats(Formats::HTML | Formats::BITMAP)
        .unwrap();
    let html = host_reads_guest(&device, &client, Format::Html, b"<i>guest</i>");
    assert_eq!(html, b"<i>guest</i>");
    let bitmap = host_reads_guest(&device, &client, Format::Bitmap, &bmp());
    assert_eq!(bitmap, bmp());
}

#[test]
fn host_to_guest_mode_refuses_the_guest_offer() {
    let device = device_with_mode("host-to-guest");
    let client = ClipboardClient::connect(&device).unwrap();
    let err = client.report_formats(Formats::UNICODETEXT).unwrap_err();
    assert!(
        matches!(err, ClipboardError::AccessDenied { .. }),
        "{err:?}"
    );
}

#[test]
fn guest_to_host_mode_refuses_the_guest_read() {
    let device = device_with_mode("guest-to-host");
    let client = ClipboardClient::connect(&device).unwrap();
    let err = client.read(Format::UnicodeText).unwrap_err();
    assert!(
        matches!(err, ClipboardError::AccessDenied { .. }),
        "{err:?}"
    );
}

#[test]
fn off_mode_refuses_both_directions() {
    let device = device_with_mode("off");
    let client = ClipboardClient::connect(&device).unwrap();
    assert!(matches!(
        client.read(Format::UnicodeText),
        Err(ClipboardError::AccessDenied { .. })
    ));
    assert!(matches!(
        client.report_formats(Formats::UNICODETEXT),
        Err(ClipboardError::AccessDenied { .. })
    ));
}

#[test]
fn a_mode_change_at_run_time_applies_to_the_next_call() {
    let device = device();
    let client = ClipboardClient::connect(&device).unwrap();
    host(&device).set_mode(Mode::GUEST_TO_HOST).unwrap();
    assert!(matches!(
        client.read(Format::UnicodeText),
        Err(ClipboardError::AccessDenied { .. })
    ));
    host(&device).set_mode(Mode::BIDIRECTIONAL).unwrap();
    assert_eq!(client.read(Format::UnicodeText).unwrap(), None);
}

#[test]
fn a_host_change_wakes_a_waiting_guest() {
    let device = device();
    let client = ClipboardClient::connect(&device).unwrap();
    while client.poll_event().unwrap().is_some() {}
    let event = std::thread::scope(|scope| {
        let waiter = scope.spawn(|| client.next_event(Some(ANSWER_WITHIN)));
        std::thread::sleep(Duration::from_millis(100));
        host(&device)
            .set_content(&Content {
                html: Some("<b/>".to_owned()),
                ..text("t")
            })
            .unwrap();
        waiter.join().unwrap()
    });
    assert_eq!(
        event.unwrap(),
        HostEvent::Formats(Formats::UNICODETEXT | Formats::HTML)
    );
}

#[test]
fn a_timed_out_wait_leaves_the_client_free_to_wait_again() {
    let device = device();
    let client = ClipboardClient::connect(&device).unwrap();
    while client.poll_event().unwrap().is_some() {}
    for _ in 0..2 {
        let err = client
            .next_event(Some(Duration::from_millis(50)))
            .unwrap_err();
        assert!(matches!(err, ClipboardError::TimedOut { .. }), "{err:?}");
    }
}

#[test]
fn an_interrupted_wait_leaves_the_client_free_to_wait_again() {
    let device = device();
    let client = ClipboardClient::connect(&device).unwrap();
    while client.poll_event().unwrap().is_some() {}
    let signal = device.transport().signal.clone();
    let outcome = std::thread::scope(|scope| {
        let waiter = scope.spawn(|| client.next_event(None));
        std::thread::sleep(Duration::from_millis(100));
        signal.store(true, Ordering::SeqCst);
        waiter.join().unwrap()
    });
    signal.store(false, Ordering::SeqCst);
    let err = outcome.unwrap_err();
    assert!(matches!(err, ClipboardError::Interrupted { .. }), "{err:?}");
    let err = client
        .next_event(Some(Duration::from_millis(50)))
        .unwrap_err();
    assert!(
        matches!(err, ClipboardError::TimedOut { .. }),
        "not busy: {err:?}"
    );
}

#[test]
fn cancel_wait_ends_a_wait_of_another_thread() {
    let device = device();
    let client = ClipboardClient::connect(&device).unwrap();
    while client.poll_event().unwrap().is_some() {}
    let (event, cancelled) = std::thread::scope(|scope| {
        let waiter = scope.spawn(|| client.next_event(Some(ANSWER_WITHIN)));
        let deadline = Instant::now() + ANSWER_WITHIN;
        // The wait may not have reached the service yet: cancel until it was parked.
        let cancelled = loop {
            std::thread::sleep(Duration::from_millis(20));
            if client.cancel_wait().unwrap() {
                break true;
            }
            if Instant::now() > deadline {
                break false;
            }
        };
        (waiter.join().unwrap(), cancelled)
    });
    assert!(cancelled);
    assert_eq!(event.unwrap(), HostEvent::Canceled);
}

#[test]
fn a_guest_that_never_answers_times_out_the_host_read_only() {
    let device = device();
    let client = ClipboardClient::connect(&device).unwrap();
    client.report_formats(Formats::UNICODETEXT).unwrap();
    let started = Instant::now();
    let err = host(&device)
        .read_guest(
            vmmdev_svc_clipboard::Format::Text,
            Duration::from_millis(200),
        )
        .unwrap_err();
    assert!(matches!(err, HostError::Timeout(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // The service and the client carry on.
    host(&device).set_content(&text("after")).unwrap();
    let wire = client.read(Format::UnicodeText).unwrap().expect("text");
    assert_eq!(encoding::text_from_wire(&wire).unwrap(), "after");
}
