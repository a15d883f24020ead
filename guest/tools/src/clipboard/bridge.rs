//! `vboxcontrol clipboard bridge`: keeps the guest desktop's clipboard and the host's in sync,
//! the job of VirtualBox's `VBoxClient --clipboard`.
//!
//! * Host to guest: when the host clipboard changes, the bridge reads it in the best format the
//!   host offers (text, then bitmap, then HTML) and puts it on the desktop clipboard at once;
//!   desktop tools cannot offer data lazily.
//! * Guest to host: the bridge checks the desktop clipboard every interval; when its content
//!   changed it announces the formats to the host, and answers the host's requests with the
//!   desktop's content at the time of the request.
//!
//! What the bridge puts on the desktop itself is remembered, so it is not announced back to the
//! host as a guest change. At start the desktop's current content is taken as known: the host's
//! clipboard (which the service reports to every new client) wins.
//!
//! A clipboard mode that forbids a direction is reported once and the bridge carries on: the
//! host may change the mode at run time. Failures of single transfers are reported and skipped;
//! only a failure to wait for the host ends the bridge.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use vmmdev_guest_ioctl::clipboard::{
    ClipboardClient, ClipboardError, DataRequest, Format, Formats, HostEvent, encoding,
};
use vmmdev_guest_ioctl::{Device, GuestTransport};

use super::describe;
use super::desktop::{self, DesktopClipboard};
use crate::control::{ExitStatus, fail};

/// Where the bridge reports what it could not do.
pub type Notices = Box<dyn Fn(&str) + Send + Sync>;

/// One bridge between the host clipboard (through `client`) and a desktop clipboard.
pub struct Bridge<'c, 'd, T: GuestTransport, D: DesktopClipboard> {
    client: &'c ClipboardClient<'d, T>,
    desktop: D,
    /// The fingerprint of the desktop content last seen or written by the bridge. Held while
    /// the desktop is read or written, so a check never races a write from the host.
    known: Mutex<Option<u64>>,
    /// Whether a refusal by the clipboard mode was reported (reset when a transfer works).
    denial_reported: AtomicBool,
    notices: Notices,
}

impl<T: GuestTransport, D: DesktopClipboard> std::fmt::Debug for Bridge<'_, '_, T, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge")
            .field("client", &self.client.id())
            .field("desktop", &self.desktop.describe())
            .finish()
    }
}

impl<'c, 'd, T: GuestTransport, D: DesktopClipboard> Bridge<'c, 'd, T, D> {
    /// A bridge over `client` and `desktop` that reports problems to `notices`.
    pub fn new(client: &'c ClipboardClient<'d, T>, desktop: D, notices: Notices) -> Self {
        Self {
            client,
            desktop,
            known: Mutex::new(None),
            denial_reported: AtomicBool::new(false),
            notices,
        }
    }

    /// Takes the desktop's current content as known, so only later changes are announced.
    pub fn prime(&self) {
        let mut known = self.lock_known();
        match self.desktop_fingerprint() {
            Ok((_, fingerprint)) => *known = Some(fingerprint),
            Err(error) => self.notice(&format!("reading the desktop clipboard: {error}")),
        }
    }

    /// Acts on one message of the host. Returns `false` when the service closed the client.
    pub fn on_host_event(&self, event: HostEvent) -> bool {
        match event {
            HostEvent::Formats(formats) => self.copy_from_host(formats),
            HostEvent::DataRequest(request) => self.answer(&request),
            HostEvent::Quit => return false,
            HostEvent::Canceled => {}
        }
        true
    }

    /// Announces the desktop's formats to the host if its content changed since the last
    /// check. Returns whether it announced.
    pub fn check_desktop(&self) -> bool {
        let mut known = self.lock_known();
        let (formats, fingerprint) = match self.desktop_fingerprint() {
            Ok(current) => current,
            Err(error) => {
                self.notice(&format!("reading the desktop clipboard: {error}"));
                return false;
            }
        };
        if *known == Some(fingerprint) {
            return false;
        }
        *known = Some(fingerprint);
        match self.client.report_formats(formats) {
            Ok(()) => {
                self.denial_reported.store(false, Ordering::Relaxed);
                true
            }
            Err(error) => {
                self.report_failure(&error, "announce the desktop clipboard to the host");
                false
            }
        }
    }

    /// Runs until the service closes the client: waits for the host here and checks the
    /// desktop every `interval` on a second thread.
    pub fn run(&self, interval: Duration) -> Result<(), ClipboardError> {
        self.prime();
        let stop = AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(interval);
                    if !stop.load(Ordering::Relaxed) {
                        self.check_desktop();
                    }
                }
            });
            let outcome = loop {
                match self.client.next_event(None) {
                    Ok(event) => {
                        if !self.on_host_event(event) {
                            break Ok(());
                        }
                    }
                    Err(error) => break Err(error),
                }
            };
            stop.store(true, Ordering::Relaxed);
            outcome
        })
    }

    /// Puts the host clipboard on the desktop, in the best format the host offers.
    fn copy_from_host(&self, formats: Formats) {
        // An empty host clipboard leaves the desktop's alone.
        let Some(format) = Format::first_in(formats) else {
            return;
        };
        let wire = match self.client.read(format) {
            Ok(Some(wire)) => wire,
            Ok(None) => return,
            Err(error) => return self.report_failure(&error, "read the host clipboard"),
        };
        self.denial_reported.store(false, Ordering::Relaxed);
        let data = match encoding::from_wire(format, &wire) {
            Ok(data) => data,
            Err(error) => return self.notice(&format!("the host clipboard is unusable: {error}")),
        };
        let mut known = self.lock_known();
        match self.desktop.write(format, &data) {
            Ok(()) => *known = Some(fingerprint(Some(format), &data)),
            Err(error) => self.notice(&format!("writing the desktop clipboard: {error}")),
        }
    }

    /// Answers a host request with the desktop's content, or with nothing when the desktop
    /// has nothing in that format.
    fn answer(&self, request: &DataRequest) {
        let wire = request
            .format()
            .and_then(|format| {
                let data = match self.desktop.read(format) {
                    Ok(data) => data?,
                    Err(error) => {
                        self.notice(&format!("reading the desktop clipboard: {error}"));
                        return None;
                    }
                };
                match encoding::to_wire(format, &data) {
                    Ok(wire) => Some(wire),
                    Err(error) => {
                        self.notice(&format!("the desktop clipboard is unusable: {error}"));
                        None
                    }
                }
            })
            .unwrap_or_default();
        if let Err(error) = self.client.write(request, &wire) {
            self.report_failure(&error, "answer the host's request");
        }
    }

    /// The desktop's known formats and the fingerprint of its content in the best of them.
    fn desktop_fingerprint(&self) -> std::io::Result<(Formats, u64)> {
        let formats = self.desktop.formats()?;
        let best = Format::first_in(formats);
        let content = match best {
            Some(format) => self.desktop.read(format)?.unwrap_or_default(),
            None => Vec::new(),
        };
        let known = Format::ALL
            .into_iter()
            .filter(|format| formats.contains(format.flag()))
            .fold(Formats::NONE, |all, format| all | format.flag());
        Ok((known, fingerprint(best, &content)))
    }

    fn lock_known(&self) -> std::sync::MutexGuard<'_, Option<u64>> {
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reports a failed transfer; a refusal by the clipboard mode only once in a row.
    fn report_failure(&self, error: &ClipboardError, what: &str) {
        if matches!(error, ClipboardError::AccessDenied { .. })
            && self.denial_reported.swap(true, Ordering::Relaxed)
        {
            return;
        }
        self.notice(&describe(error, what));
    }

    fn notice(&self, message: &str) {
        (self.notices)(message);
    }
}

/// Identifies clipboard content: its best format and its bytes.
fn fingerprint(format: Option<Format>, content: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    format.hash(&mut hasher);
    content.hash(&mut hasher);
    hasher.finish()
}

/// `clipboard bridge`: finds the session's desktop clipboard and bridges it until the service
/// closes the client. Without a desktop clipboard it says why and fails.
pub fn run_detected<T: GuestTransport>(
    device: &Device<T>,
    interval: Duration,
    err: &mut dyn Write,
) -> ExitStatus {
    let path = std::env::var_os("PATH");
    let desktop = match desktop::detect(|name| std::env::var_os(name), path.as_deref()) {
        Ok(desktop) => desktop,
        Err(error) => return fail(err, &error.to_string()),
    };
    let client = match ClipboardClient::connect(device) {
        Ok(client) => client,
        Err(error) => {
            return fail(
                err,
                &format!("Failed to connect to the shared clipboard service: {error}"),
            );
        }
    };
    let described = desktop.describe();
    let bridge = Bridge::new(
        &client,
        desktop,
        Box::new(|message| eprintln!("vboxcontrol: clipboard bridge: {message}")),
    );
    eprintln!("vboxcontrol: clipboard bridge: bridging the {described} clipboard");
    let status = match bridge.run(interval) {
        Ok(()) => ExitStatus::Success,
        Err(error) => fail(err, &describe(&error, "wait for the host clipboard")),
    };
    drop(bridge);
    if let Err(error) = client.disconnect() {
        log::warn!("disconnecting from the shared clipboard service: {error}");
    }
    status
}
