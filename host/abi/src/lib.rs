//! The stable, versioned C ABI between the HGCM framework and service plugins.
