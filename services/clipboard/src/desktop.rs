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

use vmmdev_protocol::services::clipboard::Formats;

use crate::backend::{Backend, BackendError};
use crate::content::{Content, Format};

/// The desktop clipboard.
pub struct DesktopBackend {
    clipboard: arboard::Clipboard,
    bitmap: Option<Vec<u8>>,
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
        Ok(DesktopBackend {
            clipboard: arboard::Clipboard::new().map_err(desktop_error)?,
            bitmap: None,
        })
    }
}

impl Backend for DesktopBackend {
    fn changes_outside(&self) -> bool {
        true
    }

    fn load(&mut self) -> Result<Content, BackendError> {
        Ok(Content {
            text: optional(self.clipboard.get_text())?,
            html: html(&mut self.clipboard)?,
            bitmap: self.bitmap.clone(),
        })
    }

    fn store(&mut self, content: &Content) -> Result<(), BackendError> {
        self.bitmap = content.bitmap.clone();
        match (&content.html, &content.text) {
            (Some(html), text) => self
                .clipboard
                .set_html(html.as_str(), text.as_deref())
                .map_err(desktop_error),
            (None, Some(text)) => self
                .clipboard
                .set_text(text.as_str())
                .map_err(desktop_error),
            (None, None) => self.clipboard.clear().map_err(desktop_error),
        }
    }

    fn formats(&mut self) -> Result<Formats, BackendError> {
        let mut formats = Formats::NONE;
        formats.set(
            Formats::UNICODETEXT,
            optional(self.clipboard.get_text())?.is_some(),
        );
        formats.set(Formats::HTML, html(&mut self.clipboard)?.is_some());
        formats.set(Formats::BITMAP, self.bitmap.is_some());
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
