//! The service loaded as a plugin library (`libvmmdev_shared_folders.so`, crate
//! `vmmdev-svc-shared-folders-plugin`) through the C ABI.

mod common;

use std::path::PathBuf;

use common::*;
use vmmdev_hgcm::{Hgcm, HgcmConfig};
use vmmdev_protocol::services::shared_folders::Function;

/// The plugin library next to the test binary, building it if needed.
fn plugin_path() -> PathBuf {
    const LIBRARY: &str = "libvmmdev_shared_folders.so";
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe.parent().expect("deps dir").to_path_buf();
    let profile_dir = deps.parent().expect("profile dir").to_path_buf();
    for dir in [&profile_dir, &deps] {
        if dir.join(LIBRARY).is_file() {
            return dir.join(LIBRARY);
        }
    }
    let target_dir = profile_dir.parent().expect("target dir");
    let status = std::process::Command::new(env!("CARGO"))
        .args(["build", "-p", "vmmdev-svc-shared-folders-plugin"])
        .env("CARGO_TARGET_DIR", target_dir)
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the plugin failed");
    profile_dir.join(LIBRARY)
}

#[test]
fn plugin_library_serves_a_mount() {
    let tree = Tree::new();
    std::fs::write(tree.host("hello"), b"from the plugin").expect("write");
    let hgcm = Hgcm::new(HgcmConfig::default());
    let name = hgcm
        .load_plugin(
            &plugin_path().to_string_lossy(),
            &tree.share_entry("data", ":ro"),
        )
        .expect("plugin loads");
    assert_eq!(name.as_str(), vmmdev_svc_shared_folders::SERVICE_NAME);
    let client = connect(&hgcm);
    let mut guest = Guest {
        hgcm,
        client,
        root: 0,
    };
    assert_eq!(guest.call(Function::SET_UTF8, vec![]).status, 0);
    guest.root = guest.map("data").1;
    assert_eq!(guest.get("/hello"), b"from the plugin");
}

#[test]
fn plugin_refuses_an_invalid_configuration() {
    let hgcm = Hgcm::new(HgcmConfig::default());
    assert!(
        hgcm.load_plugin(&plugin_path().to_string_lossy(), "share=nopath")
            .is_err()
    );
}
