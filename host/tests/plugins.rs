//! The plugin loader against real shared libraries: the Echo plugin built by cargo, and C plugins
//! compiled here from `host/include/vmmdev_hgcm_plugin.h` and `tests/c/echo_plugin.c`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use vmmdev_hgcm::{Direction, Hgcm, HgcmConfig, LoadError, Parm, RegisterError, Status};

const ECHO_PLUGIN: &str = "vmmdev_echo";

fn scratch_dir(tag: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("plugins-{tag}"));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Compiles `tests/c/echo_plugin.c` into a shared library with the given extra flags.
fn build_c_plugin(tag: &str, defines: &[&str]) -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = scratch_dir(tag).join(format!("libcecho_{tag}.so"));
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let status = Command::new(compiler)
        .args([
            "-shared", "-fPIC", "-std=c99", "-Wall", "-Wextra", "-Werror", "-o",
        ])
        .arg(&out)
        .arg("-I")
        .arg(manifest.join("include"))
        .args(defines)
        .arg(manifest.join("tests/c/echo_plugin.c"))
        .status()
        .expect("the C compiler runs");
    assert!(status.success(), "compiling the C plugin failed");
    out
}

fn load_err(hgcm: &Hgcm, path: &Path, config: &str) -> LoadError {
    let err = hgcm
        .load_plugin(path.to_str().expect("utf-8 path"), config)
        .expect_err("must fail");
    assert_eq!(err.to_string().lines().count(), 1, "not one line: {err}");
    err
}

#[test]
fn echo_plugin_loads_by_path_and_serves_calls() {
    let hgcm = Hgcm::new(HgcmConfig::default());
    let path = echo_plugin_dir().join(format!("lib{ECHO_PLUGIN}.so"));
    let name = hgcm
        .load_plugin(path.to_str().expect("utf-8"), "")
        .expect("loads");
    assert_eq!(name, vmmdev_svc_echo::SERVICE_NAME);
    let client = connect_ok(&hgcm, &name);
    let outcome = call(
        &hgcm,
        client,
        vmmdev_svc_echo::FN_ECHO,
        vec![
            host_buffer(b"plugin", Direction::ToHost),
            host_buffer(&[0; 6], Direction::FromHost),
        ],
    );
    assert_eq!(outcome.status, Status::VINF_SUCCESS.raw());
    assert_eq!(
        outcome.params[1].as_buffer().expect("buffer").copy_in(6),
        Ok(b"plugin".to_vec())
    );
    hgcm.shutdown();
}

#[test]
fn echo_plugin_is_found_by_name_on_the_search_path() {
    let config = HgcmConfig {
        plugin_search_path: vec![scratch_dir("empty"), echo_plugin_dir()],
        ..HgcmConfig::default()
    };
    let hgcm = Hgcm::new(config);
    assert_eq!(
        hgcm.load_plugin(ECHO_PLUGIN, "").expect("loads"),
        vmmdev_svc_echo::SERVICE_NAME
    );
}

#[test]
fn unknown_plugin_name_is_not_found() {
    let hgcm = Hgcm::new(HgcmConfig {
        plugin_search_path: vec![scratch_dir("empty")],
        ..HgcmConfig::default()
    });
    let err = hgcm
        .load_plugin("no_such_plugin", "")
        .expect_err("must fail");
    assert!(matches!(err, LoadError::NotFound { .. }), "{err}");
}

#[test]
fn missing_plugin_file_is_reported() {
    let hgcm = Hgcm::new(HgcmConfig::default());
    let err = load_err(&hgcm, &scratch_dir("missing").join("libgone.so"), "");
    assert!(matches!(err, LoadError::FileMissing(_)), "{err}");
}

#[test]
fn file_that_is_not_a_library_is_reported() {
    let hgcm = Hgcm::new(HgcmConfig::default());
    let path = scratch_dir("garbage").join("libgarbage.so");
    std::fs::write(&path, b"not an ELF object").expect("write");
    let err = load_err(&hgcm, &path, "");
    assert!(matches!(err, LoadError::NotLoadable { .. }), "{err}");
}

#[test]
fn library_without_the_load_symbol_is_reported() {
    let hgcm = Hgcm::new(HgcmConfig::default());
    let err = load_err(&hgcm, &build_c_plugin("nosym", &["-DTEST_NO_EXPORT"]), "");
    assert!(matches!(err, LoadError::SymbolMissing { .. }), "{err}");
}

#[test]
fn plugin_built_for_abi_1_without_guest_access_is_refused() {
    let hgcm = Hgcm::new(HgcmConfig::default());
    let err = load_err(
        &hgcm,
        &build_c_plugin("abi1", &["-DTEST_CLAIM_ABI_MAJOR=1"]),
        "",
    );
    assert_eq!(
        err.register_error(),
        Some(&RegisterError::AbiMismatch {
            plugin_major: 1,
            plugin_minor: 0
        })
    );
}

#[test]
fn plugin_table_smaller_than_abi_1_0_is_refused() {
    let hgcm = Hgcm::new(HgcmConfig::default());
    let err = load_err(
        &hgcm,
        &build_c_plugin("small", &["-DTEST_TABLE_SIZE=8"]),
        "",
    );
    assert!(
        matches!(
            err.register_error(),
            Some(RegisterError::TableTooSmall { size: 8, .. })
        ),
        "{err}"
    );
}

#[test]
fn plugin_that_refuses_its_configuration_reports_the_status() {
    let hgcm = Hgcm::new(HgcmConfig::default());
    let err = load_err(&hgcm, &build_c_plugin("refuse", &[]), "refuse");
    assert_eq!(
        err.register_error(),
        Some(&RegisterError::InitRefused(
            Status::VERR_INVALID_PARAMETER.raw()
        ))
    );
}

#[test]
fn second_plugin_with_an_existing_name_is_refused() {
    let hgcm = hgcm_with_echo("");
    let path = echo_plugin_dir().join(format!("lib{ECHO_PLUGIN}.so"));
    let err = load_err(&hgcm, &path, "");
    assert_eq!(
        err.register_error(),
        Some(&RegisterError::DuplicateName(
            vmmdev_svc_echo::SERVICE_NAME.into()
        ))
    );
}

#[test]
fn c_plugin_built_from_the_header_echoes_guest_data() {
    let hgcm = Hgcm::new(HgcmConfig::default());
    let path = build_c_plugin("ok", &[]);
    assert_eq!(
        hgcm.load_plugin(path.to_str().expect("utf-8"), "")
            .expect("loads"),
        "CEcho"
    );
    let mem = guest_memory();
    use vm_memory::{Bytes, GuestAddress};
    mem.write_slice(b"from C", GuestAddress(0x3000))
        .expect("write");
    let input = vmmdev_hgcm::Buffer::guest(
        mem.clone(),
        vec![(GuestAddress(0x3000), 6)],
        Direction::ToHost,
    )
    .expect("in RAM");
    let output = vmmdev_hgcm::Buffer::guest(
        mem.clone(),
        vec![(GuestAddress(0x4FFD), 3), (GuestAddress(0x9000), 5)],
        Direction::FromHost,
    )
    .expect("in RAM");
    let client = connect_ok(&hgcm, "CEcho");
    let outcome = call(
        &hgcm,
        client,
        1,
        vec![Parm::Buffer(input), Parm::Buffer(output)],
    );
    assert_eq!(outcome.status, Status::VINF_SUCCESS.raw());
    assert_eq!(
        outcome.params[1].as_buffer().map(|b| b.reported_len()),
        Some(6)
    );
    let mut head = [0u8; 3];
    let mut tail = [0u8; 3];
    mem.read_slice(&mut head, GuestAddress(0x4FFD))
        .expect("read");
    mem.read_slice(&mut tail, GuestAddress(0x9000))
        .expect("read");
    assert_eq!((&head, &tail), (b"fro", b"m C"));
    let mut served = [Parm::U32(0)];
    assert_eq!(
        hgcm.host_call("CEcho", 1, &mut served),
        Ok(Status::VINF_SUCCESS.raw())
    );
    assert_eq!(served[0].as_u32(), Some(1));
    hgcm.shutdown();
}
