//! Safe Rust SDK for writing HGCM host services as plugins.
