//! Framework configuration: resource limits and where plugins are found.

use std::path::PathBuf;

/// Resource limits, applied per service unless stated otherwise.
///
/// The defaults are VirtualBox's (hgcm.md §4.1, §9.7). A plugin may override the per-client limits
/// for its own service in its plugin table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Maximum simultaneous clients, by category (kernel, root, user).
    pub max_clients: [u32; 3],
    /// Maximum simultaneously pending calls of one client, by the client's category.
    pub max_calls_per_client: [u32; 3],
    /// Maximum parameters in one call.
    pub max_params_per_call: u32,
    /// Maximum sum of the buffer lengths of one call.
    pub max_buffer_bytes_per_call: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_clients: [2048, 1024, 1024],
            max_calls_per_client: [8192, 4096, 2048],
            max_params_per_call: 32,
            max_buffer_bytes_per_call: 128 * 1024 * 1024,
        }
    }
}

/// Configuration of an [`crate::Hgcm`] instance.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HgcmConfig {
    /// Resource limits.
    pub limits: Limits,
    /// Directories searched, in order, for plugins loaded by name.
    pub plugin_search_path: Vec<PathBuf>,
}
