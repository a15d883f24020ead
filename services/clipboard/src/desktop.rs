//! The host desktop's clipboard as a [`Backend`] (cargo feature `desktop`), through `arboard`.
//!
//! Text and HTML go to and come from the desktop's clipboard: on Wayland (`WAYLAND_DISPLAY`) through
//! the data-control protocol where the compositor offers it (wlroots-based ones, KDE), otherwise the
//! X11 clipboard of `DISPLAY` (XWayland on other Wayland desktops). Only the X11 path is tested here
//! (against Xvfb). `arboard` serves what was stored from its own thread for as long as
//! the backend lives, so a host application pasting never waits for the guest: the service stores
//! guest data once it has been read ([`crate::DesktopSync`] reads each new guest copy), and host
//! applications see it from then on.
//! Bitmaps stay in memory on the host side: `arboard`'s image support needs the `image` crate,
//! which this build leaves out.
//!
//! A host application copying something does not reach the service by itself (HGCM services run
//! only when called), nor does a guest's copy reach the desktop before the host reads it: the
//! embedder keeps a [`crate::DesktopSync`] running, which does both.
//!
//! Reading the desktop's content costs a new X connection per read, and megabytes held by another
//! application take `arboard` a long time (INCR transfers). So on X11 the backend watches the
//! clipboard's owner with XFixes (`OwnerWatch`) on a connection of its own and loads the content
//! only after an application took the clipboard; a sync tick with nothing new is one non-blocking
//! read of that connection. Where the watch cannot run (Wayland, no XFixes) every tick compares
//! the content.

use vmmdev_protocol::services::clipboard::Formats;

use crate::backend::{Backend, BackendError};
use crate::content::{Content, Format};

/// The desktop clipboard.
pub struct DesktopBackend {
    clipboard: arboard::Clipboard,
    bitmap: Option<Vec<u8>>,
    /// Tells of owner changes on X11; `None` where every sync compares the content.
    watch: Option<OwnerWatch>,
    /// An owner change (or a failed load) that a sync has not handled yet.
    pending: bool,
    /// The formats of the content as last loaded or stored, while the watch says it is current.
    formats: Option<Formats>,
}

/// XFixes selection-owner events for the X11 `CLIPBOARD`, on a connection of its own: every
/// copy makes the copying application take the selection again, which the server reports.
struct OwnerWatch {
    connection: x11rb::rust_connection::RustConnection,
}

impl OwnerWatch {
    /// Watches `DISPLAY`'s clipboard; `Err` with why not (no display, no XFixes).
    fn open() -> Result<OwnerWatch, String> {
        use x11rb::connection::Connection;
        use x11rb::protocol::xfixes::{self, SelectionEventMask};
        use x11rb::protocol::xproto::ConnectionExt;

        let (connection, screen) = x11rb::connect(None).map_err(|e| e.to_string())?;
        let root = connection
            .setup()
            .roots
            .get(screen)
            .ok_or("the display has no such screen")?
            .root;
        xfixes::query_version(&connection, 5, 0)
            .map_err(|e| e.to_string())?
            .reply()
            .map_err(|e| format!("no XFixes: {e}"))?;
        let clipboard = connection
            .intern_atom(false, b"CLIPBOARD")
            .map_err(|e| e.to_string())?
            .reply()
            .map_err(|e| e.to_string())?
            .atom;
        xfixes::select_selection_input(
            &connection,
            root,
            clipboard,
            SelectionEventMask::SET_SELECTION_OWNER
                | SelectionEventMask::SELECTION_WINDOW_DESTROY
                | SelectionEventMask::SELECTION_CLIENT_CLOSE,
        )
        .map_err(|e| e.to_string())?
        .check()
        .map_err(|e| e.to_string())?;
        Ok(OwnerWatch { connection })
    }

    /// Whether the owner changed since the last call (without waiting); `Err` if the connection
    /// broke.
    fn changed(&self) -> Result<bool, String> {
        use x11rb::connection::Connection;

        let mut changed = false;
        while let Some(event) = self
            .connection
            .poll_for_event()
            .map_err(|e| e.to_string())?
        {
            changed |= matches!(event, x11rb::protocol::Event::XfixesSelectionNotify(_));
        }
        Ok(changed)
    }
}

impl std::fmt::Debug for DesktopBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DesktopBackend").finish_non_exhaustive()
    }
}

fn desktop_error(error: arboard::Error) -> BackendError {
    BackendError::Desktop(error.to_string())
}

/// `Ok(None)` for "nothing in that format", the error otherwise.
fn optional<T>(result: Result<T, arboard::Error>) -> Result<Option<T>, BackendError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(arboard::Error::ContentNotAvailable) => Ok(None),
        Err(error) => Err(desktop_error(error)),
    }
}

/// The desktop's HTML, if any. Owners that lack HTML do not always say so properly (xclip answers
/// with its one target, which `arboard` reports as an unknown error): anything but an unreachable
/// clipboard means "no HTML".
fn html(clipboard: &mut arboard::Clipboard) -> Result<Option<String>, BackendError> {
    match clipboard.get().html() {
        Ok(html) => Ok(Some(html)),
        Err(
            error @ (arboard::Error::ClipboardNotSupported | arboard::Error::ClipboardOccupied),
        ) => Err(desktop_error(error)),
        Err(error) => {
            log::debug!("shared clipboard: no HTML on the desktop clipboard: {error}");
            Ok(None)
        }
    }
}

impl DesktopBackend {
    /// Connects to the desktop's clipboard.
    pub fn open() -> Result<DesktopBackend, BackendError> {
        let clipboard = arboard::Clipboard::new().map_err(desktop_error)?;
        // `arboard` takes Wayland's data-control where WAYLAND_DISPLAY is set; the watch is X11's.
        let wayland = std::env::var_os("WAYLAND_DISPLAY").is_some_and(|d| !d.is_empty());
        let watch = if wayland {
            None
        } else {
            OwnerWatch::open()
                .inspect_err(|e| {
                    log::info!(
                        "shared clipboard: no owner watch on the X clipboard ({e}); every sync \
                         compares the content"
                    )
                })
                .ok()
        };
        Ok(DesktopBackend {
            clipboard,
            bitmap: None,
            watch,
            pending: true,
            formats: None,
        })
    }

    /// Takes the owner changes the watch has seen: each one makes a sync due and forgets the
    /// cached formats. Without a working watch nothing is cached.
    fn drain_owner_changes(&mut self) {
        let Some(watch) = &self.watch else {
            self.formats = None;
            return;
        };
        match watch.changed() {
            Ok(false) => {}
            Ok(true) => {
                self.pending = true;
                self.formats = None;
            }
            Err(e) => {
                log::warn!(
                    "shared clipboard: the X clipboard's owner watch failed ({e}); every sync \
                     compares the content from now on"
                );
                self.watch = None;
                self.formats = None;
            }
        }
    }
}

impl Backend for DesktopBackend {
    fn changes_outside(&self) -> bool {
        true
    }

    fn take_outside_change(&mut self) -> bool {
        self.drain_owner_changes();
        self.watch.is_none() | std::mem::take(&mut self.pending)
    }

    fn load(&mut self) -> Result<Content, BackendError> {
        self.drain_owner_changes();
        let loaded = (|| {
            Ok(Content {
                text: optional(self.clipboard.get_text())?,
                html: html(&mut self.clipboard)?,
                bitmap: self.bitmap.clone(),
            })
        })();
        match &loaded {
            Ok(content) if self.watch.is_some() => self.formats = Some(content.formats()),
            Ok(_) => {}
            // A change the sync could not read is taken again at the next sync.
            Err(_) => self.pending = true,
        }
        loaded
    }

    fn store(&mut self, content: &Content) -> Result<(), BackendError> {
        self.drain_owner_changes();
        self.bitmap = content.bitmap.clone();
        self.formats = None;
        let stored = match (&content.html, &content.text) {
            (Some(html), text) => self
                .clipboard
                .set_html(html.as_str(), text.as_deref())
                .map_err(desktop_error),
            (None, Some(text)) => self
                .clipboard
                .set_text(text.as_str())
                .map_err(desktop_error),
            (None, None) => self.clipboard.clear().map_err(desktop_error),
        };
        if stored.is_ok() && self.watch.is_some() {
            self.formats = Some(content.formats());
        }
        stored
    }

    fn formats(&mut self) -> Result<Formats, BackendError> {
        self.drain_owner_changes();
        if let Some(formats) = self.formats {
            return Ok(formats);
        }
        let mut formats = Formats::NONE;
        formats.set(
            Formats::UNICODETEXT,
            optional(self.clipboard.get_text())?.is_some(),
        );
        formats.set(Formats::HTML, html(&mut self.clipboard)?.is_some());
        formats.set(Formats::BITMAP, self.bitmap.is_some());
        if self.watch.is_some() {
            self.formats = Some(formats);
        }
        Ok(formats)
    }

    fn read(&mut self, format: Format) -> Result<Option<Vec<u8>>, BackendError> {
        Ok(match format {
            Format::Text => optional(self.clipboard.get_text())?.map(String::into_bytes),
            Format::Html => html(&mut self.clipboard)?.map(String::into_bytes),
            Format::Bitmap => self.bitmap.clone(),
        })
    }
}
