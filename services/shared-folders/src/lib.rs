//! The shared folders HGCM service (`VBoxSharedFolders`).
