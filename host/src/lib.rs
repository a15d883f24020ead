//! The HGCM host-service framework: clients, per-service threads, asynchronous calls, cancellation, plugins, save/restore.
