//! The C header `host/include/vmmdev_hgcm_plugin.h` against the Rust definitions: every constant
//! it defines has the Rust value, and every structure has the Rust layout (checked by the C
//! compiler through static assertions generated from `offset_of!`/`size_of`).

use std::collections::BTreeMap;
use std::mem::{offset_of, size_of};
use std::path::{Path, PathBuf};
use std::process::Command;

use vmmdev_hgcm::Status;
use vmmdev_hgcm::{ClientCategory, VmEvent};
use vmmdev_hgcm_abi::ffi::*;

fn header_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("include/vmmdev_hgcm_plugin.h")
}

/// `#define NAME VALUE` lines of the header (the include guard, which has no value, is skipped).
fn header_defines() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(header_path()).expect("header readable");
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("#define "))
        .filter_map(|rest| {
            let (name, value) = rest.trim().split_once(char::is_whitespace)?;
            Some((name.to_owned(), value.trim().to_owned()))
        })
        .collect()
}

/// The numeric value of a C integer literal as the header writes them: `7`, `7u`, `0x1u`, `(-2)`.
fn c_integer(literal: &str) -> Option<i64> {
    let literal = literal.trim_start_matches('(').trim_end_matches(')');
    let literal = literal.trim_end_matches(['u', 'U']);
    let (negative, digits) = match literal.strip_prefix('-') {
        Some(digits) => (true, digits),
        None => (false, literal),
    };
    let value = match digits.strip_prefix("0x") {
        Some(hex) => i64::from_str_radix(hex, 16).ok()?,
        None => digits.parse().ok()?,
    };
    Some(if negative { -value } else { value })
}

/// The Rust value of every non-status constant the header must define.
fn rust_constants() -> BTreeMap<&'static str, i64> {
    let mut constants = BTreeMap::from([
        ("VMMDEV_HGCM_ABI_MAJOR", i64::from(ABI_MAJOR)),
        ("VMMDEV_HGCM_ABI_MINOR", i64::from(ABI_MINOR)),
        (
            "VMMDEV_HGCM_MAX_SERVICE_NAME_LEN",
            MAX_SERVICE_NAME_LEN as i64,
        ),
        ("VMMDEV_HGCM_PARM_U32", i64::from(PARM_U32)),
        ("VMMDEV_HGCM_PARM_U64", i64::from(PARM_U64)),
        ("VMMDEV_HGCM_PARM_BUFFER", i64::from(PARM_BUFFER)),
        ("VMMDEV_HGCM_DIR_TO_HOST", i64::from(DIR_TO_HOST)),
        ("VMMDEV_HGCM_DIR_FROM_HOST", i64::from(DIR_FROM_HOST)),
        ("VMMDEV_HGCM_DIR_BOTH", i64::from(DIR_BOTH)),
        (
            "VMMDEV_HGCM_CALL_FLAG_RESTORED",
            i64::from(CALL_FLAG_RESTORED),
        ),
        ("VMMDEV_HGCM_LOG_ERROR", i64::from(LOG_ERROR)),
        ("VMMDEV_HGCM_LOG_WARN", i64::from(LOG_WARN)),
        ("VMMDEV_HGCM_LOG_INFO", i64::from(LOG_INFO)),
        ("VMMDEV_HGCM_LOG_DEBUG", i64::from(LOG_DEBUG)),
        ("VMMDEV_HGCM_LOG_TRACE", i64::from(LOG_TRACE)),
        (
            "VMMDEV_HGCM_CATEGORY_KERNEL",
            ClientCategory::Kernel.index() as i64,
        ),
        (
            "VMMDEV_HGCM_CATEGORY_ROOT",
            ClientCategory::Root.index() as i64,
        ),
        (
            "VMMDEV_HGCM_CATEGORY_USER",
            ClientCategory::User.index() as i64,
        ),
    ]);
    for (name, event) in [
        ("VMMDEV_HGCM_EVENT_POWER_ON", VmEvent::PowerOn),
        ("VMMDEV_HGCM_EVENT_RESUME", VmEvent::Resume),
        ("VMMDEV_HGCM_EVENT_SUSPEND", VmEvent::Suspend),
        ("VMMDEV_HGCM_EVENT_RESET", VmEvent::Reset),
        ("VMMDEV_HGCM_EVENT_POWER_OFF", VmEvent::PowerOff),
    ] {
        constants.insert(name, i64::from(event.code()));
    }
    constants
}

#[test]
fn every_header_constant_has_the_rust_value() {
    let defines = header_defines();
    let rust = rust_constants();
    let mut unchecked = Vec::new();
    for (name, value) in &defines {
        if name == "VMMDEV_HGCM_PLUGIN_H" {
            continue;
        }
        if name == "VMMDEV_HGCM_LOAD_SYMBOL" {
            assert_eq!(value, &format!("\"{LOAD_SYMBOL}\""), "{name}");
            continue;
        }
        let number = c_integer(value).unwrap_or_else(|| panic!("{name}: {value} is no integer"));
        if let Some(status_name) = name.strip_prefix("VMMDEV_") {
            if let Some(status) = Status::KNOWN.iter().find(|s| s.name() == Some(status_name)) {
                assert_eq!(number, i64::from(status.raw()), "{name}");
                continue;
            }
        }
        match rust.get(name.as_str()) {
            Some(expected) => assert_eq!(number, *expected, "{name}"),
            None => unchecked.push(name.clone()),
        }
    }
    assert!(
        unchecked.is_empty(),
        "header constants without a Rust counterpart: {unchecked:?}"
    );
    for name in rust.keys() {
        assert!(
            defines.contains_key(*name),
            "{name} is missing from the header"
        );
    }
}

/// `_Static_assert`s for the size of `c_type` and the offset of each field, from Rust's layout.
macro_rules! layout_asserts {
    ($out:ident, $rust:ty, $c_type:literal, [$($field:ident),* $(,)?]) => {
        $out.push_str(&format!(
            "_Static_assert(sizeof({}) == {}, \"size of {}\");\n",
            $c_type,
            size_of::<$rust>(),
            $c_type
        ));
        $(
            $out.push_str(&format!(
                "_Static_assert(offsetof({}, {}) == {}, \"{}.{}\");\n",
                $c_type,
                stringify!($field),
                offset_of!($rust, $field),
                $c_type,
                stringify!($field)
            ));
        )*
    };
}

#[test]
fn c_structures_have_the_rust_layout() {
    let mut source = String::from("#include <stddef.h>\n#include \"vmmdev_hgcm_plugin.h\"\n");
    layout_asserts!(source, IoVec, "vmmdev_hgcm_iovec", [base, len]);
    layout_asserts!(
        source,
        RawBuffer,
        "vmmdev_hgcm_buffer",
        [iov, iov_count, direction, len, reported_len]
    );
    layout_asserts!(source, RawParm, "vmmdev_hgcm_parm", [kind, reserved, value]);
    layout_asserts!(
        source,
        StateWriter,
        "vmmdev_hgcm_state_writer",
        [ctx, write]
    );
    layout_asserts!(
        source,
        HostApi,
        "vmmdev_hgcm_host_api",
        [
            size,
            abi_major,
            abi_minor,
            ctx,
            complete,
            is_cancelled,
            begin_guest_access,
            end_guest_access,
            is_restored,
            requestor,
            notify_host,
            disconnect_client,
            log,
            report_failure,
        ]
    );
    layout_asserts!(
        source,
        PluginTable,
        "vmmdev_hgcm_plugin_table",
        [
            size,
            abi_major,
            abi_minor,
            name,
            max_clients,
            max_calls_per_client,
            legacy_category,
            state_version,
            instance,
            unload,
            connect,
            disconnect,
            call,
            cancelled,
            host_call,
            save_state,
            load_state,
            save_client,
            load_client,
            notify,
        ]
    );
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("header-layout");
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let file = dir.join("layout.c");
    std::fs::write(&file, source).expect("write layout check");
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let output = Command::new(compiler)
        .args(["-std=c11", "-fsyntax-only", "-Wall", "-Werror", "-I"])
        .arg(header_path().parent().expect("include dir"))
        .arg(&file)
        .output()
        .expect("the C compiler runs");
    assert!(
        output.status.success(),
        "the header's layout differs from the Rust ABI:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
