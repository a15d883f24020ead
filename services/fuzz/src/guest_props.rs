//! The guest properties service under a hostile guest: a root client and a /dev/vboxuser client
//! (so the requestor policy is in play) calling any function with any parameters, waits and
//! their cancels included, while the host sets, deletes and enumerates.

use vmmdev_protocol::services::guest_props::SERVICE_NAME;

use crate::script;
use crate::session::{ROOT, Session, Target, USER_DEVICE};

/// Runs one fuzz input.
pub fn run(input: &[u8]) {
    let target = Target {
        service: SERVICE_NAME,
        requestors: [ROOT, USER_DEVICE],
        frame_text: c_string,
        host_functions: |_| true,
    };
    // Fewer properties than the default, so inputs reach that limit; values above the 1 KiB
    // default, so the raised-limit path runs.
    let session = Session::start(
        vmmdev_svc_guest_props::guest_props_entry,
        "max_props=32,max_value_len=2048,max_events=64",
        target,
    );
    session.run(&script::decode(input));
}

/// Guest property names, values, flags and patterns are NUL-terminated UTF-8.
fn c_string(bytes: &[u8]) -> Vec<u8> {
    let mut framed = bytes.to_vec();
    framed.push(0);
    framed
}
