//! `vboxcontrol clipboard` and the desktop bridge end to end without a VM: the commands run
//! over the ioctl library, a test transport playing the vboxguest driver, the in-process guest
//! and device, and the real shared-clipboard service.

#[path = "../../ioctl/tests/support/inproc_driver.rs"]
mod inproc_driver;

use std::collections::HashMap;
use std::ffi::OsString;
use std::io;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::Parser;
use inproc_driver::InprocDriver;
use vmmdev_guest_ioctl::Device;
use vmmdev_guest_ioctl::clipboard::{ClipboardClient, Format, Formats, encoding};
use vmmdev_guest_tools::clipboard;
use vmmdev_guest_tools::clipboard::bridge::Bridge;
use vmmdev_guest_tools::clipboard::desktop::DesktopClipboard;
use vmmdev_guest_tools::control::{Cli, Command, ExitStatus};
use vmmdev_hgcm::{Hgcm, HgcmConfig, HostCallError, Parm};
use vmmdev_svc_clipboard::{ClipboardHost, Content, Mode, SERVICE_NAME};

/// How long the host waits for the guest in tests that expect an answer.
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

/// A 1x1 24-bit BMP file.
fn bmp() -> Vec<u8> {
    let mut dib = Vec::new();
    dib.extend_from_slice(&40u32.to_le_bytes());
    dib.extend_from_slice(&1i32.to_le_bytes());
    dib.extend_from_slice(&1i32.to_le_bytes());
    dib.extend_from_slice(&1u16.to_le_bytes());
    dib.extend_from_slice(&24u16.to_le_bytes());
    dib.extend_from_slice(&[0; 24]);
    dib.extend_from_slice(&[0xFF, 0x80, 0x00, 0x00]);
    encoding::dib_to_bmp(&dib).expect("valid DIB")
}

/// What one command printed and returned.
#[derive(Debug)]
struct Run {
    status: ExitStatus,
    out: Vec<u8>,
    err: String,
}

/// Runs `vboxcontrol clipboard ARGS...` over `device` with `input` on stdin.
fn run(device: &Device<InprocDriver>, args: &[&str], input: &[u8]) -> Run {
    let args = ["vboxcontrol", "--nologo", "clipboard"]
        .iter()
        .chain(args)
        .map(OsString::from);
    let cli = Cli::try_parse_from(args).expect("valid command line");
    let Some(Command::Clipboard(command)) = cli.command else {
        panic!("not a clipboard command");
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let status = clipboard::clipboard(device, &command, &mut &input[..], &mut out, &mut err);
    Run {
        status,
        out,
        err: String::from_utf8(err).expect("UTF-8 errors"),
    }
}

/// Waits until a guest owns the clipboard with `formats`.
fn until_guest_offers(device: &Device<InprocDriver>, formats: Formats) {
    let deadline = Instant::now() + ANSWER_WITHIN;
    loop {
        let state = host(device).state().unwrap();
        if state.guest_owns() && state.guest_formats == formats {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the guest never offered {formats:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn get_prints_host_text_with_non_ascii() {
    let device = device();
    host(&device)
        .set_content(&text("Grüße aus dem Host 🦀\nZeile 2"))
        .unwrap();
    let run = run(&device, &["get"], b"");
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    assert_eq!(run.out, "Grüße aus dem Host 🦀\nZeile 2".as_bytes());
}

#[test]
fn get_prints_html_and_bitmaps_as_bmp_files() {
    let device = device();
    let content = Content {
        html: Some("<h1>x</h1>".to_owned()),
        bitmap: Some(bmp()),
        ..Content::default()
    };
    host(&device).set_content(&content).unwrap();
    assert_eq!(
        run(&device, &["get", "--format", "html"], b"").out,
        b"<h1>x</h1>"
    );
    assert_eq!(run(&device, &["get", "--format", "bitmap"], b"").out, bmp());
}

#[test]
fn get_of_a_missing_format_fails_and_says_so() {
    let device = device();
    host(&device).set_content(&text("t")).unwrap();
    let run = run(&device, &["get", "--format", "bitmap"], b"");
    assert_eq!(run.status, ExitStatus::Failure);
    assert_eq!(
        run.err,
        "vboxcontrol: error: The host clipboard holds no bitmap\n"
    );
}

#[test]
fn get_in_guest_to_host_mode_fails_with_the_mode() {
    let device = device_with_mode("guest-to-host");
    let run = run(&device, &["get"], b"");
    assert_eq!(run.status, ExitStatus::Failure);
    assert!(
        run.err
            .contains("the clipboard mode forbids this direction"),
        "{}",
        run.err
    );
}

#[test]
fn set_serves_the_host_until_the_host_clipboard_changes() {
    let device = device();
    let (set, read) = std::thread::scope(|scope| {
        let set = scope.spawn(|| run(&device, &["set"], "vom Gast: ÄÖÜ\n".as_bytes()));
        until_guest_offers(&device, Formats::UNICODETEXT);
        let read = host(&device)
            .read_guest(vmmdev_svc_clipboard::Format::Text, ANSWER_WITHIN)
            .unwrap();
        host(&device).set_content(&text("host again")).unwrap();
        (set.join().unwrap(), read)
    });
    assert_eq!(read, "vom Gast: ÄÖÜ\n".as_bytes());
    assert_eq!(set.status, ExitStatus::Success, "{}", set.err);
}

#[test]
fn set_once_ends_after_one_answer() {
    let device = device();
    let (set, read) = std::thread::scope(|scope| {
        let set = scope.spawn(|| run(&device, &["set", "--format", "html", "--once"], b"<u>u</u>"));
        until_guest_offers(&device, Formats::HTML);
        let read = host(&device)
            .read_guest(vmmdev_svc_clipboard::Format::Html, ANSWER_WITHIN)
            .unwrap();
        (set.join().unwrap(), read)
    });
    assert_eq!(read, b"<u>u</u>");
    assert_eq!(set.status, ExitStatus::Success, "{}", set.err);
}

#[test]
fn set_bitmap_offers_the_bmp_file_as_a_dib() {
    let device = device();
    let read = std::thread::scope(|scope| {
        let set = scope.spawn(|| run(&device, &["set", "--format", "bitmap", "--once"], &bmp()));
        until_guest_offers(&device, Formats::BITMAP);
        let read = host(&device)
            .read_guest(vmmdev_svc_clipboard::Format::Bitmap, ANSWER_WITHIN)
            .unwrap();
        assert_eq!(set.join().unwrap().status, ExitStatus::Success);
        read
    });
    assert_eq!(read, bmp());
}

#[test]
fn set_of_data_that_is_not_a_bmp_fails_before_offering() {
    let device = device();
    let run = run(&device, &["set", "--format", "bitmap"], b"GIF89a");
    assert_eq!(run.status, ExitStatus::Failure);
    assert!(run.err.contains("not a BMP file"), "{}", run.err);
    assert!(!host(&device).state().unwrap().guest_owns());
}

#[test]
fn set_with_a_timeout_withdraws_its_offer() {
    let device = device();
    let run = run(&device, &["set", "--timeout", "100"], b"brief");
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    let state = host(&device).state().unwrap();
    assert!(!state.guest_owns(), "{state:?}");
    assert_eq!(state.guest_formats, Formats::NONE);
}

#[test]
fn set_in_host_to_guest_mode_fails_with_the_mode() {
    let device = device_with_mode("host-to-guest");
    let run = run(&device, &["set"], b"x");
    assert_eq!(run.status, ExitStatus::Failure);
    assert!(
        run.err
            .contains("the clipboard mode forbids this direction"),
        "{}",
        run.err
    );
}

#[test]
fn watch_prints_the_current_formats_then_each_change() {
    let device = device();
    host(&device).set_content(&text("first")).unwrap();
    let watch = std::thread::scope(|scope| {
        let watch = scope.spawn(|| {
            run(
                &device,
                &["watch", "--count", "2", "--timeout", "10000"],
                b"",
            )
        });
        std::thread::sleep(Duration::from_millis(200));
        host(&device)
            .set_content(&Content {
                html: Some("<p/>".to_owned()),
                bitmap: Some(bmp()),
                ..Content::default()
            })
            .unwrap();
        watch.join().unwrap()
    });
    assert_eq!(watch.status, ExitStatus::Success, "{}", watch.err);
    assert_eq!(
        String::from_utf8(watch.out).unwrap(),
        "Host clipboard: text\nHost clipboard: bitmap, html\n"
    );
}

#[test]
fn watch_without_enough_changes_times_out() {
    let device = device();
    let run = run(&device, &["watch", "--count", "2", "--timeout", "100"], b"");
    assert_eq!(run.status, ExitStatus::Failure);
    assert_eq!(
        String::from_utf8(run.out).unwrap(),
        "Host clipboard: empty\n"
    );
    assert!(run.err.contains("No clipboard change"), "{}", run.err);
}

#[test]
fn bridge_without_a_desktop_says_why() {
    let device = device();
    let run = run(&device, &["bridge"], b"");
    // The test environment has no desktop session (or no clipboard tool for it).
    if std::env::var_os("DISPLAY").is_none() && std::env::var_os("WAYLAND_DISPLAY").is_none() {
        assert_eq!(run.status, ExitStatus::Failure);
        assert!(
            run.err
                .contains("no guest desktop clipboard: neither WAYLAND_DISPLAY nor DISPLAY"),
            "{}",
            run.err
        );
    }
}

/// A desktop clipboard in memory.
#[derive(Default)]
struct MemoryDesktop {
    content: Mutex<HashMap<Format, Vec<u8>>>,
}

impl MemoryDesktop {
    fn copy(&self, format: Format, data: &[u8]) {
        let mut content = self.content.lock().unwrap();
        content.clear();
        content.insert(format, data.to_vec());
    }

    fn get(&self, format: Format) -> Option<Vec<u8>> {
        self.content.lock().unwrap().get(&format).cloned()
    }
}

impl DesktopClipboard for &MemoryDesktop {
    fn describe(&self) -> String {
        "memory".to_owned()
    }

    fn formats(&self) -> io::Result<Formats> {
        Ok(self
            .content
            .lock()
            .unwrap()
            .keys()
            .fold(Formats::NONE, |all, format| all | format.flag()))
    }

    fn read(&self, format: Format) -> io::Result<Option<Vec<u8>>> {
        Ok(self.get(format))
    }

    fn write(&self, format: Format, data: &[u8]) -> io::Result<()> {
        self.copy(format, data);
        Ok(())
    }
}

/// Notices a bridge reported.
#[derive(Default, Clone)]
struct Notices(std::sync::Arc<Mutex<Vec<String>>>);

impl Notices {
    fn sink(&self) -> Box<dyn Fn(&str) + Send + Sync> {
        let notices = self.0.clone();
        Box::new(move |message| notices.lock().unwrap().push(message.to_owned()))
    }

    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// Delivers the host's messages to `bridge` until none is left.
fn deliver<T: vmmdev_guest_ioctl::GuestTransport, D: DesktopClipboard>(
    client: &ClipboardClient<'_, T>,
    bridge: &Bridge<'_, '_, T, D>,
) {
    while let Some(event) = client.poll_event().unwrap() {
        assert!(bridge.on_host_event(event));
    }
}

#[test]
fn the_bridge_puts_host_text_on_the_desktop_without_echoing_it_back() {
    let device = device();
    let desktop = MemoryDesktop::default();
    let client = ClipboardClient::connect(&device).unwrap();
    let notices = Notices::default();
    let bridge = Bridge::new(&client, &desktop, notices.sink());
    bridge.prime();
    host(&device).set_content(&text("nach Gast: ß")).unwrap();
    deliver(&client, &bridge);
    assert_eq!(
        desktop.get(Format::UnicodeText).as_deref(),
        Some("nach Gast: ß".as_bytes())
    );
    assert!(
        !bridge.check_desktop(),
        "the host's own text is not announced back"
    );
    assert!(!host(&device).state().unwrap().guest_owns());
    assert_eq!(notices.all(), Vec::<String>::new());
}

#[test]
fn the_bridge_offers_a_desktop_copy_and_answers_the_host() {
    let device = device();
    let desktop = MemoryDesktop::default();
    let client = ClipboardClient::connect(&device).unwrap();
    let bridge = Bridge::new(&client, &desktop, Notices::default().sink());
    bridge.prime();
    deliver(&client, &bridge);
    desktop.copy(Format::Html, b"<em>desktop</em>");
    assert!(bridge.check_desktop());
    assert!(!bridge.check_desktop(), "announced once");
    let read = std::thread::scope(|scope| {
        let reader = scope
            .spawn(|| host(&device).read_guest(vmmdev_svc_clipboard::Format::Html, ANSWER_WITHIN));
        let event = client.next_event(Some(ANSWER_WITHIN)).unwrap();
        assert!(bridge.on_host_event(event));
        reader.join().unwrap()
    });
    assert_eq!(read.unwrap(), b"<em>desktop</em>");
}

#[test]
fn the_bridge_reports_a_refusing_mode_once_and_carries_on() {
    let device = device();
    let desktop = MemoryDesktop::default();
    let client = ClipboardClient::connect(&device).unwrap();
    let notices = Notices::default();
    let bridge = Bridge::new(&client, &desktop, notices.sink());
    bridge.prime();
    host(&device).set_mode(Mode::HOST_TO_GUEST).unwrap();
    desktop.copy(Format::UnicodeText, b"one");
    assert!(!bridge.check_desktop());
    desktop.copy(Format::UnicodeText, b"two");
    assert!(!bridge.check_desktop());
    assert_eq!(notices.all().len(), 1, "{:?}", notices.all());
    assert!(notices.all()[0].contains("forbids"), "{:?}", notices.all());
    host(&device).set_mode(Mode::BIDIRECTIONAL).unwrap();
    desktop.copy(Format::UnicodeText, b"three");
    assert!(bridge.check_desktop());
}

#[test]
fn the_bridge_stops_when_the_service_closes_the_client() {
    let device = device();
    let desktop = MemoryDesktop::default();
    let client = ClipboardClient::connect(&device).unwrap();
    let bridge = Bridge::new(&client, &desktop, Notices::default().sink());
    assert!(!bridge.on_host_event(vmmdev_guest_ioctl::clipboard::HostEvent::Quit));
}
