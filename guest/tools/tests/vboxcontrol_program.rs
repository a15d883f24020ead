//! The `vboxcontrol` program outside a guest: version output, banner, usage errors and the
//! failure to reach a driver.

use std::process::{Command, Output};

fn vboxcontrol(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vboxcontrol"))
        .args(args)
        .output()
        .expect("run vboxcontrol")
}

#[test]
fn version_prints_the_project_version_alone() {
    for flag in ["--version", "-V", "-version"] {
        let output = vboxcontrol(&[flag]);
        assert!(output.status.success(), "{flag}");
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            format!("{}\n", env!("CARGO_PKG_VERSION")),
            "{flag}"
        );
    }
}

#[test]
fn banner_comes_first_unless_nologo() {
    let with_logo = vboxcontrol(&["version"]);
    let text = String::from_utf8_lossy(&with_logo.stdout);
    assert!(
        text.starts_with("vmmdev-rs Guest Additions Command Line Management Interface Version "),
        "{text}"
    );
    let without = vboxcontrol(&["--nologo", "version"]);
    assert_eq!(
        String::from_utf8_lossy(&without.stdout),
        format!("{}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn missing_command_is_a_usage_error() {
    assert_eq!(vboxcontrol(&["--nologo"]).status.code(), Some(2));
    assert_eq!(
        vboxcontrol(&["--nologo", "guestproperty"]).status.code(),
        Some(2)
    );
    assert_eq!(
        vboxcontrol(&["--nologo", "guestproperty", "get"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn missing_driver_fails_with_an_explanation() {
    let output = vboxcontrol(&[
        "--nologo",
        "--device",
        "/dev/vboxguest-does-not-exist",
        "guestproperty",
        "get",
        "/A",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.starts_with("vboxcontrol: error: Could not contact the host system."),
        "{err}"
    );
    assert!(err.contains("/dev/vboxguest-does-not-exist"), "{err}");
}
