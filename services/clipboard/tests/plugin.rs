//! The service loaded as a plugin library (`libvmmdev_clipboard.so`, crate
//! `vmmdev-svc-clipboard-plugin`) through the C ABI.

mod common;

use std::path::PathBuf;

use common::*;
use vmmdev_hgcm::{Hgcm, HgcmConfig};
use vmmdev_protocol::services::clipboard::Mode;
use vmmdev_protocol::status::Status;
use vmmdev_svc_clipboard::Content;

/// The plugin library next to the test binary, building it if needed.
fn plugin_path() -> PathBuf {
    const LIBRARY: &str = "libvmmdev_clipboard.so";
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
        .args(["build", "-p", "vmmdev-svc-clipboard-plugin"])
        .env("CARGO_TARGET_DIR", target_dir)
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the plugin failed");
    profile_dir.join(LIBRARY)
}

#[test]
fn plugin_library_carries_host_text_to_the_guest() {
    let hgcm = Hgcm::new(HgcmConfig::default());
    let name = hgcm
        .load_plugin(&plugin_path().to_string_lossy(), "mode=host-to-guest")
        .expect("plugin loads");
    assert_eq!(name.as_str(), vmmdev_svc_clipboard::SERVICE_NAME);
    let f = Fixture { hgcm };
    assert_eq!(f.host().mode().expect("mode"), Mode::HOST_TO_GUEST);
    f.host()
        .set_content(&Content {
            text: Some("über das Plugin".into()),
            ..Content::default()
        })
        .expect("set");
    let guest = f.modern();
    let (status, bytes, _) = guest.read(1, 256);
    assert_eq!(status, Status::VINF_SUCCESS);
    assert_eq!(bytes, utf16("über das Plugin\0"));
}

#[test]
fn plugin_refuses_an_invalid_configuration() {
    let hgcm = Hgcm::new(HgcmConfig::default());
    assert!(
        hgcm.load_plugin(&plugin_path().to_string_lossy(), "mode=sideways")
            .is_err()
    );
}
