//! Guest tools: the control CLI and the service daemon.
