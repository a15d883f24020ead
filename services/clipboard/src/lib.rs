//! The shared clipboard HGCM service (`VBoxSharedClipboard`).
