//! Where the host's side of the clipboard lives.
//!
//! The service keeps the protocol state; a [`Backend`] holds the host clipboard's content. The
//! headless default is [`MemoryBackend`], driven by the host functions (the control endpoint and
//! embedders). With the `desktop` feature, `DesktopBackend` puts the content on the real desktop
//! clipboard of the machine the VMM runs on (X11 or Wayland, through `arboard`).
//!
//! Backends are called on the service thread, so they must answer promptly: a backend never
//! waits for the guest, and a desktop backend bounds its own waits on the display server.

use vmmdev_protocol::services::clipboard::Formats;

use crate::content::{Content, Format};

/// A backend failure.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The desktop clipboard could not be reached or refused the operation.
    #[error("desktop clipboard: {0}")]
    Desktop(String),
}

/// The host clipboard.
pub trait Backend: Send + std::fmt::Debug {
    /// The current content.
    fn load(&mut self) -> Result<Content, BackendError>;

    /// Replaces the content.
    fn store(&mut self, content: &Content) -> Result<(), BackendError>;

    /// Whether the content can change without the service storing it (a desktop clipboard that
    /// host applications write); the service then compares on SYNC_HOST.
    fn changes_outside(&self) -> bool {
        false
    }

    /// Whether the content may have changed outside the service since the last call, so SYNC_HOST
    /// must load and compare it. A backend that learns of changes cheaply (the X11 desktop through
    /// XFixes) answers `false` while nothing happened and spares the comparison; the default is
    /// [`Backend::changes_outside`].
    fn take_outside_change(&mut self) -> bool {
        self.changes_outside()
    }

    /// The formats the content holds.
    fn formats(&mut self) -> Result<Formats, BackendError> {
        Ok(self.load()?.formats())
    }

    /// The host bytes of one format, if present.
    fn read(&mut self, format: Format) -> Result<Option<Vec<u8>>, BackendError> {
        Ok(self.load()?.host_bytes(format).map(<[u8]>::to_vec))
    }
}

/// The headless host clipboard: content held in memory.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    content: Content,
}

impl Backend for MemoryBackend {
    fn load(&mut self) -> Result<Content, BackendError> {
        Ok(self.content.clone())
    }

    fn store(&mut self, content: &Content) -> Result<(), BackendError> {
        self.content = content.clone();
        Ok(())
    }

    fn formats(&mut self) -> Result<Formats, BackendError> {
        Ok(self.content.formats())
    }

    fn read(&mut self, format: Format) -> Result<Option<Vec<u8>>, BackendError> {
        Ok(self.content.host_bytes(format).map(<[u8]>::to_vec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_backend_returns_what_was_stored() {
        let mut backend = MemoryBackend::default();
        assert_eq!(backend.load().expect("load"), Content::default());
        let content = Content {
            text: Some("x".into()),
            ..Content::default()
        };
        backend.store(&content).expect("store");
        assert_eq!(backend.load().expect("load"), content);
    }
}
